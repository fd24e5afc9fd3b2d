//! Second factors over real HTTPS: TOTP, passkeys (a software
//! authenticator), email codes through a local SMTP server, SMS codes
//! through a local HTTPS webhook, recovery codes, step-up, the
//! administrators' requirement and resets.

use std::time::Duration;

use hmac::Mac;
use serde_json::{json, Value};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

use crate::sinks::{code_in, SmtpSink, WebhookSink};
use crate::support::*;

const WEBHOOK_SECRET: &str = "webhook-signing-key-0123456789abcdef";

/// Security events of one kind, newest first, as the administrator sees
/// them.
async fn events(s: &TestServer, admin: &str, kind: &str) -> Vec<Value> {
    let r = s
        .get_auth(
            &format!("/api/v1/admin/events?type={kind}&limit=500"),
            admin,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["events"].as_array().unwrap().clone()
}

fn reasons(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The development outbox, once it holds `needle` `count` times.
async fn outbox_with(s: &TestServer, needle: &str, count: usize) -> String {
    for _ in 0..250 {
        let text = std::fs::read_to_string(s.data_dir().join("outbox.log")).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("outbox never held {needle:?} {count} times");
}

/// Password step of a login for an account with a second factor.
async fn pending(s: &TestServer, email: &str) -> Value {
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": STRONG}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no session before the second factor"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
    assert!(v.get("token").is_none(), "{v}");
    v
}

async fn second_step(s: &TestServer, token: &Value, body: Value) -> reqwest::Response {
    let mut body = body;
    body["mfa_token"] = token.clone();
    s.post("/api/v1/auth/mfa", body).await
}

/// Every file of the SQLite database, for plaintext searches.
fn database_bytes(s: &TestServer) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(s.data_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("rampart.db")
        {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!all.is_empty());
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn totp_enrols_then_guards_login_refusing_replays_and_far_steps() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let token = s.user("t@example.com").await;

    let r = s.post_auth("/api/v1/me/mfa/totp", &token, json!({})).await;
    assert_eq!(r.status(), 201);
    let e: Value = r.json().await.unwrap();
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Rampart:t%40example.com?") && uri.contains(&secret),
        "{uri}"
    );
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));

    // Not active until confirmed; a wrong code does not confirm it.
    let r = s
        .post_auth(
            "/api/v1/me/mfa/totp/confirm",
            &token,
            json!({"code": "000000"}),
        )
        .await;
    problem(r, 401, "invalid_mfa_code").await;
    let earlier = s.login("t@example.com", STRONG).await;
    s.totp
        .lock()
        .unwrap()
        .insert("t@example.com".into(), secret.clone());
    let r = s
        .post_auth(
            "/api/v1/me/mfa/totp/confirm",
            &token,
            json!({"code": s.next_totp("t@example.com")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["factor"]["kind"], "totp");
    let codes = v["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    for c in codes {
        let c = c.as_str().unwrap();
        assert_eq!(c.len(), 19, "16 base32 characters (80 bits) in groups: {c}");
    }

    // The secret is sealed in the database: neither the base32 form nor
    // the raw bytes are there.
    let raw = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap();
    let db = database_bytes(&s);
    assert!(
        !contains(&db, secret.as_bytes()),
        "base32 TOTP secret in the database"
    );
    assert!(!contains(&db, &raw), "raw TOTP secret in the database");

    let me: Value = s.get_auth("/api/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], true);
    // The session opened with the password alone before the factor was
    // turned on is gone; the one that turned it on stays.
    problem(
        s.get_auth("/api/v1/me", &earlier).await,
        401,
        "unauthenticated",
    )
    .await;

    // A login now needs the second step.
    let p = pending(&s, "t@example.com").await;
    assert_eq!(p["methods"], json!(["totp", "recovery_code"]));
    // Two steps on from the one used to confirm, so both neighbours are fresh.
    s.clock.advance(Duration::from_secs(60));
    let now = s.unix_now();
    for far in [now - 60, now + 60] {
        let r = second_step(
            &s,
            &p["mfa_token"],
            json!({"method": "totp", "code": totp_at(&secret, far)}),
        )
        .await;
        problem(r, 401, "invalid_mfa_code").await;
    }
    // One step of drift either way is accepted.
    let code = totp_at(&secret, now - 30);
    let r = second_step(&s, &p["mfa_token"], json!({"method": "totp", "code": code})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some());
    let v: Value = r.json().await.unwrap();
    let session = v["token"].as_str().unwrap();
    assert_eq!(s.get_auth("/api/v1/me", session).await.status(), 200);
    // The mfa token was spent.
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "totp", "code": totp_at(&secret, now)}),
    )
    .await;
    problem(r, 401, "mfa_token_invalid").await;

    // A used code (or an earlier step) is refused on the next login.
    let p = pending(&s, "t@example.com").await;
    let r = second_step(&s, &p["mfa_token"], json!({"method": "totp", "code": code})).await;
    problem(r, 401, "invalid_mfa_code").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "totp", "code": totp_at(&secret, now)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "totp", "code": totp_at(&secret, now + 30)}),
    )
    .await;
    problem(r, 401, "mfa_token_invalid").await;

    // A pending login lasts five minutes.
    let p = pending(&s, "t@example.com").await;
    s.clock.advance(Duration::from_secs(301));
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "totp", "code": s.next_totp("t@example.com")}),
    )
    .await;
    problem(r, 401, "mfa_token_invalid").await;

    // Methods the account does not have are refused, not counted.
    let p = pending(&s, "t@example.com").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "email", "code": "123456"}),
    )
    .await;
    problem(r, 422, "mfa_method_unavailable").await;
    let r = second_step(&s, &p["mfa_token"], json!({"method": "totp"})).await;
    problem(r, 422, "invalid_body").await;

    // A new authenticator app replaces the old one, and that is told too.
    let code = s.next_totp("t@example.com");
    let r = s
        .post_auth(
            "/api/v1/auth/step-up",
            session,
            json!({"method": "totp", "code": code}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let fresh = s.enrol_totp("t@example.com", session).await;
    assert!(fresh["recovery_codes"].is_null());
    let v: Value = s
        .get_auth("/api/v1/me/mfa", session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["factors"].as_array().unwrap().len(), 1);
    outbox_with(&s, "replacing the one of that kind you had", 1).await;

    s.step_up("owner@example.com", &admin).await;
    assert_eq!(
        reasons(&events(&s, &admin, "mfa_enrolled").await),
        ["totp", "totp", "totp"]
    );
    assert_eq!(
        reasons(&events(&s, &admin, "mfa_removed").await),
        ["totp:replaced"]
    );
    let revoked = reasons(&events(&s, &admin, "session_revoked").await);
    assert!(revoked.contains(&"mfa_enabled".to_owned()), "{revoked:?}");
    let failures = reasons(&events(&s, &admin, "mfa_failure").await);
    assert_eq!(
        failures.iter().filter(|r| *r == "login:totp").count(),
        3,
        "{failures:?}"
    );
    assert!(failures.contains(&"enrol:totp".to_owned()));
    assert_eq!(
        reasons(&events(&s, &admin, "mfa_success").await)
            .iter()
            .filter(|r| *r == "login:totp")
            .count(),
        2
    );
    // The owner was told of the new factor.
    outbox_with(&s, "A second factor (totp: Authenticator app) was added", 1).await;
}

#[tokio::test]
async fn failed_second_factors_are_limited_per_account_and_void_the_login() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let token = s.user("m@example.com").await;
    s.enrol_totp("m@example.com", &token).await;

    let p = pending(&s, "m@example.com").await;
    for _ in 0..5 {
        let r = second_step(
            &s,
            &p["mfa_token"],
            json!({"method": "totp", "code": "000000"}),
        )
        .await;
        problem(r, 401, "invalid_mfa_code").await;
    }
    // The fifth failure voided the pending login: even the right code is
    // refused now.
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "totp", "code": s.next_totp("m@example.com")}),
    )
    .await;
    problem(r, 401, "mfa_token_invalid").await;
    // A new login with the right password cannot try again for a while.
    let p = pending(&s, "m@example.com").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "totp", "code": s.next_totp("m@example.com")}),
    )
    .await;
    let retry = r.headers()["retry-after"].to_str().unwrap().to_owned();
    problem(r, 429, "mfa_attempts_exceeded").await;
    assert_eq!(retry, "900");
    // Fifteen minutes on, it can.
    s.clock.advance(Duration::from_secs(901));
    let token = s.login_mfa("m@example.com").await;
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 200);

    // Locked again, an administrator's unlock lifts the pause at once.
    let p = pending(&s, "m@example.com").await;
    for _ in 0..5 {
        second_step(
            &s,
            &p["mfa_token"],
            json!({"method": "totp", "code": "000000"}),
        )
        .await;
    }
    let me: Value = s.get_auth("/api/v1/me", &token).await.json().await.unwrap();
    s.step_up("owner@example.com", &admin).await;
    let r = s
        .post_auth(
            &format!(
                "/api/v1/admin/accounts/{}/unlock",
                me["id"].as_str().unwrap()
            ),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    s.login_mfa("m@example.com").await;

    // Failed step-ups pause that session's step-ups, not the owner's
    // sign-ins: a thief holding one session cannot lock the owner out.
    for _ in 0..5 {
        let r = s
            .post_auth(
                "/api/v1/auth/step-up",
                &token,
                json!({"method": "totp", "code": "000000"}),
            )
            .await;
        problem(r, 401, "invalid_mfa_code").await;
    }
    let r = s
        .post_auth(
            "/api/v1/auth/step-up",
            &token,
            json!({"method": "totp", "code": s.next_totp("m@example.com")}),
        )
        .await;
    problem(r, 429, "mfa_attempts_exceeded").await;
    s.login_mfa("m@example.com").await;

    s.step_up("owner@example.com", &admin).await;
    assert_eq!(
        reasons(&events(&s, &admin, "mfa_locked").await),
        [
            "failed_step_up",
            "failed_second_factor",
            "failed_second_factor"
        ]
    );
    assert_eq!(events(&s, &admin, "mfa_failure").await.len(), 15);
    // The owner hears once per sign-in that their password is known.
    let outbox = outbox_with(&s, "failed the second step", 2).await;
    assert_eq!(
        outbox.matches("failed the second step").count(),
        2,
        "{outbox}"
    );
}

/// A server whose notifier delivers: email to a local SMTP server, SMS to
/// a local HTTPS webhook.
async fn delivering(
    implicit_tls: bool,
    extra: &[(&str, &str)],
) -> (TestServer, SmtpSink, WebhookSink, tempfile::TempDir) {
    let sinks = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(sinks.path(), implicit_tls).await;
    let hook = WebhookSink::start(sinks.path()).await;
    let port = smtp.port.to_string();
    let mut opts = Options::default()
        .env("RAMPART_NOTIFIER", "deliver")
        // These tests are about codes and alerts: addresses need no proof.
        .env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "optional")
        .env("RAMPART_SMTP__HOST", "localhost")
        .env("RAMPART_SMTP__PORT", &port)
        .env(
            "RAMPART_SMTP__SECURITY",
            if implicit_tls { "tls" } else { "starttls" },
        )
        .env("RAMPART_SMTP__FROM", "Rampart <security@example.com>")
        .env("RAMPART_SMTP__USERNAME", "rampart")
        .env("RAMPART_SMTP__PASSWORD", "smtp-relay-password")
        .env("RAMPART_SMTP__CA_FILE", smtp.cert.to_str().unwrap())
        .env("RAMPART_SMS_WEBHOOK__URL", &hook.url)
        .env("RAMPART_SMS_WEBHOOK__SECRET", WEBHOOK_SECRET)
        .env("RAMPART_SMS_WEBHOOK__CA_FILE", hook.cert.to_str().unwrap());
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    (TestServer::with(opts).await, smtp, hook, sinks)
}

#[tokio::test]
async fn email_codes_arrive_over_smtp_and_work_once() {
    let (s, smtp, _hook, _dir) = delivering(false, &[]).await;
    let token = s.user("e@example.com").await;

    let r = s.post_auth("/api/v1/me/mfa/email", &token, json!({})).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sent_to"], "e***@example.com");
    // The first message is the registration's verification link.
    let verify = smtp.wait_for("e@example.com", 1).await;
    assert!(verify.data.contains("/verify-email#token="));
    let mail = smtp.wait_for("e@example.com", 2).await;
    assert!(mail.tls, "sent inside STARTTLS");
    assert_eq!(mail.user.as_deref(), Some("rampart"));
    assert!(mail.from.contains("security@example.com"));
    let code = code_in(&mail.data);
    assert!(
        !s.dir.path().join("data/outbox.log").exists(),
        "nothing goes to the dev outbox"
    );

    // Five wrong tries, and the code itself no longer works.
    for _ in 0..5 {
        let r = s
            .post_auth(
                "/api/v1/me/mfa/email/confirm",
                &token,
                json!({"code": "000000"}),
            )
            .await;
        problem(r, 401, "invalid_mfa_code").await;
    }
    let r = s
        .post_auth(
            "/api/v1/me/mfa/email/confirm",
            &token,
            json!({"code": code}),
        )
        .await;
    problem(r, 401, "invalid_mfa_code").await;
    // A new code only after 30 s.
    let r = s.post_auth("/api/v1/me/mfa/email", &token, json!({})).await;
    assert_eq!(r.headers()["retry-after"], "30");
    problem(r, 429, "code_rate_limited").await;
    s.clock.advance(Duration::from_secs(31));
    assert_eq!(
        s.post_auth("/api/v1/me/mfa/email", &token, json!({}))
            .await
            .status(),
        202
    );
    let code = code_in(&smtp.wait_for("e@example.com", 3).await.data);
    let r = s
        .post_auth(
            "/api/v1/me/mfa/email/confirm",
            &token,
            json!({"code": code}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The owner is told a factor was added.
    let notice = smtp.wait_for("e@example.com", 4).await;
    assert!(notice.data.contains("was added"), "{}", notice.data);

    // Login: ask for a code (sends to one address are 30 s apart), use it
    // once.
    s.clock.advance(Duration::from_secs(31));
    let p = pending(&s, "e@example.com").await;
    assert_eq!(p["methods"], json!(["email", "recovery_code"]));
    let r = s
        .post(
            "/api/v1/auth/mfa/challenge",
            json!({"mfa_token": p["mfa_token"], "method": "email"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let code = code_in(&smtp.wait_for("e@example.com", 5).await.data);
    let r = s
        .post(
            "/api/v1/auth/mfa/challenge",
            json!({"mfa_token": p["mfa_token"], "method": "email"}),
        )
        .await;
    problem(r, 429, "code_rate_limited").await;
    let r = s
        .post(
            "/api/v1/auth/mfa/challenge",
            json!({"mfa_token": p["mfa_token"], "method": "totp"}),
        )
        .await;
    problem(r, 422, "nothing_to_send").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "email", "code": "999999"}),
    )
    .await;
    problem(r, 401, "invalid_mfa_code").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "email", "code": code}),
    )
    .await;
    assert_eq!(r.status(), 200);
    // The same code for another login: spent.
    let p = pending(&s, "e@example.com").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "email", "code": code}),
    )
    .await;
    problem(r, 401, "invalid_mfa_code").await;

    // A code lives ten minutes.
    s.clock.advance(Duration::from_secs(31));
    let p = pending(&s, "e@example.com").await;
    s.post(
        "/api/v1/auth/mfa/challenge",
        json!({"mfa_token": p["mfa_token"], "method": "email"}),
    )
    .await;
    let before = smtp.count_to("e@example.com");
    let code = code_in(&smtp.wait_for("e@example.com", before).await.data);
    s.clock.advance(Duration::from_secs(601));
    let p2 = pending(&s, "e@example.com").await;
    let r = second_step(
        &s,
        &p2["mfa_token"],
        json!({"method": "email", "code": code}),
    )
    .await;
    problem(r, 401, "invalid_mfa_code").await;
}

#[tokio::test]
async fn smtp_with_tls_from_the_first_byte_delivers_too() {
    let (s, smtp, _hook, _dir) = delivering(true, &[]).await;
    let token = s.user("i@example.com").await;
    assert_eq!(
        s.post_auth("/api/v1/me/mfa/email", &token, json!({}))
            .await
            .status(),
        202
    );
    // The first message is the registration's verification link.
    let mail = smtp.wait_for("i@example.com", 2).await;
    assert!(mail.tls);
    assert_eq!(code_in(&mail.data).len(), 6);
}

#[tokio::test]
async fn sms_codes_are_posted_signed_to_the_webhook() {
    let (s, _smtp, hook, _dir) = delivering(false, &[]).await;
    let token = s.user("p@example.com").await;
    for bad in [
        "07700 900123",
        "+44 7700 900123",
        "447700900123",
        "+0123456789",
    ] {
        let r = s
            .post_auth("/api/v1/me/mfa/sms", &token, json!({"phone": bad}))
            .await;
        problem(r, 422, "invalid_phone").await;
    }
    let r = s
        .post_auth(
            "/api/v1/me/mfa/sms",
            &token,
            json!({"phone": "+447700900123"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sent_to"], "+44********23");

    let post = hook.wait_for(1).await;
    // The receiver checks the signature with the shared key, as a gateway
    // would: HMAC-SHA256 over "<t>.<body>".
    let sig = post.signature.clone().expect("signature header");
    let (t, v1) = sig.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&post.body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("valid signature");
    assert!((t.parse::<i64>().unwrap() - s.unix_now() as i64).abs() < 5);
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["to"], "+447700900123");
    let code = code_in(body["message"].as_str().unwrap());
    // Another number before the code is used: the code sent to the first
    // number does not confirm the second.
    let r = s
        .post_auth(
            "/api/v1/me/mfa/sms",
            &token,
            json!({"phone": "+447700900999"}),
        )
        .await;
    problem(r, 429, "code_rate_limited").await;
    let r = s
        .post_auth("/api/v1/me/mfa/sms/confirm", &token, json!({"code": code}))
        .await;
    problem(r, 401, "invalid_mfa_code").await;
    s.clock.advance(Duration::from_secs(31));
    let r = s
        .post_auth(
            "/api/v1/me/mfa/sms",
            &token,
            json!({"phone": "+447700900123"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = serde_json::from_slice(&hook.wait_for(2).await.body).unwrap();
    let code = code_in(body["message"].as_str().unwrap());
    let r = s
        .post_auth("/api/v1/me/mfa/sms/confirm", &token, json!({"code": code}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["factor"]["name"], "SMS to +44********23");

    // The phone number is sealed in the database.
    assert!(!contains(&database_bytes(&s), b"447700900123"));

    let p = pending(&s, "p@example.com").await;
    assert_eq!(p["methods"], json!(["sms", "recovery_code"]));
    s.clock.advance(Duration::from_secs(31));
    let r = s
        .post(
            "/api/v1/auth/mfa/challenge",
            json!({"mfa_token": p["mfa_token"], "method": "sms"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_slice(&hook.wait_for(3).await.body).unwrap();
    let code = code_in(body["message"].as_str().unwrap());
    // An SMS code is not an email code.
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "email", "code": code}),
    )
    .await;
    problem(r, 422, "mfa_method_unavailable").await;
    let r = second_step(&s, &p["mfa_token"], json!({"method": "sms", "code": code})).await;
    assert_eq!(r.status(), 200);
}

/// Codes to numbers nobody has confirmed (enrolments) are what SMS
/// pumping and spraying use: five an hour per number and per account.
/// Sign-in codes to a confirmed number are not drained by them.
#[tokio::test]
async fn enrolment_codes_are_limited_per_number_without_starving_sign_in() {
    let (s, _smtp, hook, _dir) = delivering(false, &[]).await;
    const NUMBER: &str = "+447700900555";
    let victim = s.user("victim@example.com").await;
    let r = s
        .post_auth("/api/v1/me/mfa/sms", &victim, json!({"phone": NUMBER}))
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = serde_json::from_slice(&hook.wait_for(1).await.body).unwrap();
    let code = code_in(body["message"].as_str().unwrap());
    let r = s
        .post_auth("/api/v1/me/mfa/sms/confirm", &victim, json!({"code": code}))
        .await;
    assert_eq!(r.status(), 200);

    // Other accounts aim enrolments at the victim's number.
    let mut attackers = Vec::new();
    for i in 0..3 {
        attackers.push(s.user(&format!("pump{i}@example.com")).await);
    }
    let mut sent = 1;
    'outer: for _round in 0..2 {
        for a in &attackers {
            let r = s
                .post_auth("/api/v1/me/mfa/sms", a, json!({"phone": NUMBER}))
                .await;
            if sent == 5 {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                problem(r, 429, "code_rate_limited").await;
                assert!(retry > 3000 && retry <= 3600, "{retry}");
                break 'outer;
            }
            assert_eq!(r.status(), 202);
            sent += 1;
        }
        s.clock.advance(Duration::from_secs(31));
    }
    assert_eq!(hook.posts.lock().unwrap().len(), 5);
    // The victim still gets a sign-in code.
    let p = pending(&s, "victim@example.com").await;
    let r = s
        .post(
            "/api/v1/auth/mfa/challenge",
            json!({"mfa_token": p["mfa_token"], "method": "sms"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(hook.posts.lock().unwrap().len(), 6);
}

/// One account spraying enrolment codes at many numbers, and the server's
/// hourly budget for them.
#[tokio::test]
async fn enrolment_codes_are_limited_per_account_and_per_server() {
    let (s, _smtp, hook, _dir) =
        delivering(false, &[("RAMPART_MFA__SMS_ENROLMENTS_PER_HOUR", "7")]).await;
    let sprayer = s.user("spray@example.com").await;
    for i in 0..6 {
        let r = s
            .post_auth(
                "/api/v1/me/mfa/sms",
                &sprayer,
                json!({"phone": format!("+4477009006{i:02}")}),
            )
            .await;
        if i < 5 {
            assert_eq!(r.status(), 202, "send {i}");
        } else {
            problem(r, 429, "code_rate_limited").await;
        }
        s.clock.advance(Duration::from_secs(31));
    }
    for (i, expect) in [(0, 202), (1, 202), (2, 429)] {
        let token = s.user(&format!("other{i}@example.com")).await;
        let r = s
            .post_auth(
                "/api/v1/me/mfa/sms",
                &token,
                json!({"phone": format!("+4477009007{i:02}")}),
            )
            .await;
        assert_eq!(r.status(), expect, "account {i}");
    }
    assert_eq!(hook.posts.lock().unwrap().len(), 7);
}

#[tokio::test]
async fn sms_can_be_switched_off() {
    let s = TestServer::with(Options::default().env(
        "RAMPART_MFA__METHODS",
        "[\"totp\", \"webauthn\", \"recovery_code\"]",
    ))
    .await;
    let token = s.user("n@example.com").await;
    let r = s
        .post_auth(
            "/api/v1/me/mfa/sms",
            &token,
            json!({"phone": "+447700900123"}),
        )
        .await;
    problem(r, 422, "mfa_method_unavailable").await;
    let r = s.post_auth("/api/v1/me/mfa/email", &token, json!({})).await;
    problem(r, 422, "mfa_method_unavailable").await;
    let v: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["methods_allowed"],
        json!(["totp", "webauthn", "recovery_code"])
    );
}

/// Registers a passkey: options from Rampart, the authenticator's
/// answer back to it.
async fn register_passkey(
    s: &TestServer,
    token: &str,
    origin: &url::Url,
    name: &str,
    key: &mut SoftPasskey,
) -> reqwest::Response {
    let r = s
        .post_auth("/api/v1/me/mfa/webauthn", token, json!({"name": name}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let options = serde_json::from_value(v["options"].clone()).unwrap();
    let cred = key.do_registration(origin.clone(), options).unwrap();
    s.post_auth(
        "/api/v1/me/mfa/webauthn/confirm",
        token,
        json!({"credential": serde_json::to_value(&cred).unwrap()}),
    )
    .await
}

#[tokio::test]
async fn passkeys_register_and_sign_in_with_a_software_authenticator() {
    let s = TestServer::start().await;
    let token = s.user("k@example.com").await;
    let origin = url::Url::parse(&format!("https://localhost:{}", s.port())).unwrap();
    let mut laptop = SoftPasskey::new(true);
    let mut phone = SoftPasskey::new(true);

    let r = register_passkey(&s, &token, &origin, "Laptop", &mut laptop).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["factor"]["name"], "Laptop");
    assert_eq!(v["recovery_codes"].as_array().unwrap().len(), 10);
    s.clock.advance(Duration::from_secs(1));
    let r = register_passkey(&s, &token, &origin, "Phone", &mut phone).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["recovery_codes"].is_null(),
        "only the first factor brings codes"
    );
    let r = s
        .post_auth(
            "/api/v1/me/mfa/webauthn",
            &token,
            json!({"name": " padded"}),
        )
        .await;
    problem(r, 422, "invalid_factor_name").await;
    let r = s
        .post_auth(
            "/api/v1/me/mfa/webauthn/confirm",
            &token,
            json!({"credential": {}}),
        )
        .await;
    problem(r, 409, "no_pending_enrolment").await;

    let list: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Laptop", "Phone"]);

    // Sign in with either passkey.
    for key in [&mut laptop, &mut phone] {
        let p = pending(&s, "k@example.com").await;
        assert_eq!(p["methods"], json!(["webauthn", "recovery_code"]));
        let r = s
            .post(
                "/api/v1/auth/mfa/challenge",
                json!({"mfa_token": p["mfa_token"], "method": "webauthn"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let options = serde_json::from_value(v["options"].clone()).unwrap();
        let assertion = key.do_authentication(origin.clone(), options).unwrap();
        let assertion = serde_json::to_value(&assertion).unwrap();
        let r = second_step(
            &s,
            &p["mfa_token"],
            json!({"method": "webauthn", "assertion": assertion}),
        )
        .await;
        assert_eq!(r.status(), 200);
        // The same assertion again: its challenge is spent.
        let p = pending(&s, "k@example.com").await;
        let r = second_step(
            &s,
            &p["mfa_token"],
            json!({"method": "webauthn", "assertion": assertion}),
        )
        .await;
        problem(r, 401, "invalid_mfa_code").await;
    }

    // An assertion made for another origin is refused.
    let p = pending(&s, "k@example.com").await;
    let v: Value = s
        .post(
            "/api/v1/auth/mfa/challenge",
            json!({"mfa_token": p["mfa_token"], "method": "webauthn"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let options = serde_json::from_value(v["options"].clone()).unwrap();
    let elsewhere = url::Url::parse("https://localhost:1").unwrap();
    let assertion = laptop.do_authentication(elsewhere, options).unwrap();
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "webauthn", "assertion": serde_json::to_value(&assertion).unwrap()}),
    )
    .await;
    problem(r, 401, "invalid_mfa_code").await;

    // Remove one; the other still works.
    let phone_id = list["factors"][1]["id"].as_str().unwrap();
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/mfa/{phone_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let list: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["factors"].as_array().unwrap().len(), 1);
    outbox_with(&s, "A second factor (webauthn) was removed", 1).await;
}

#[tokio::test]
async fn recovery_codes_work_once_are_replaced_and_tell_the_owner() {
    let s = TestServer::start().await;
    let token = s.user("r@example.com").await;
    let v = s.enrol_totp("r@example.com", &token).await;
    let codes: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();

    // Typed loosely: lower case, no dashes.
    let typed = codes[0].to_lowercase().replace('-', "");
    let p = pending(&s, "r@example.com").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "recovery_code", "code": typed}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let session: Value = r.json().await.unwrap();
    let session = session["token"].as_str().unwrap().to_owned();
    outbox_with(&s, "A recovery code was just used", 1).await;
    let p = pending(&s, "r@example.com").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "recovery_code", "code": codes[0]}),
    )
    .await;
    problem(r, 401, "invalid_mfa_code").await;
    let v: Value = s
        .get_auth("/api/v1/me/mfa", &session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["recovery_codes_left"], 9);

    // Regenerating replaces them all.
    let r = s
        .post_auth("/api/v1/me/mfa/recovery-codes", &session, json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    let fresh = fresh["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(fresh.len(), 10);
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "recovery_code", "code": codes[1]}),
    )
    .await;
    problem(r, 401, "invalid_mfa_code").await;
    let r = second_step(
        &s,
        &p["mfa_token"],
        json!({"method": "recovery_code", "code": fresh[0]}),
    )
    .await;
    assert_eq!(r.status(), 200);

    // Without a factor there is nothing to recover.
    let other = s.user("q@example.com").await;
    let r = s
        .post_auth("/api/v1/me/mfa/recovery-codes", &other, json!({}))
        .await;
    problem(r, 409, "mfa_not_enabled").await;
}

#[tokio::test]
async fn administrators_must_enrol_a_factor_before_the_admin_api() {
    let s = TestServer::start().await;
    let admin = s.admin_without_mfa().await;
    let r = s.get_auth("/api/v1/admin/events", &admin).await;
    let p = problem(r, 403, "mfa_enrollment_required").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/me/mfa/totp"),
        "{p}"
    );
    let r = s
        .post_auth("/api/v1/admin/invites", &admin, json!({}))
        .await;
    problem(r, 403, "mfa_enrollment_required").await;
    let me: Value = s.get_auth("/api/v1/me", &admin).await.json().await.unwrap();
    assert_eq!(me["mfa_enrollment_required"], true);
    let status: Value = s
        .get_auth("/api/v1/me/mfa", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["required"], true);

    s.enrol_totp("owner@example.com", &admin).await;
    assert_eq!(
        s.get_auth("/api/v1/admin/events", &admin).await.status(),
        200
    );
    assert_eq!(
        s.post_auth("/api/v1/admin/invites", &admin, json!({}))
            .await
            .status(),
        201
    );
    let me: Value = s.get_auth("/api/v1/me", &admin).await.json().await.unwrap();
    assert_eq!(me["mfa_enrollment_required"], false);

    // An administrator cannot drop the only factor.
    let status: Value = s
        .get_auth("/api/v1/me/mfa", &admin)
        .await
        .json()
        .await
        .unwrap();
    let id = status["factors"][0]["id"].as_str().unwrap();
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/mfa/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 409, "last_factor").await;
    let r = s
        .client
        .delete(s.url("/api/v1/me/mfa/mfa_nothing"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn sensitive_actions_need_a_recent_step_up() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let token = s.user("u@example.com").await;

    // Eleven minutes after login, the login no longer counts.
    s.clock.advance(Duration::from_secs(660));
    let r = s.post_auth("/api/v1/me/mfa/totp", &token, json!({})).await;
    problem(r, 403, "step_up_required").await;
    let r = s
        .post_auth(
            "/api/v1/me/password",
            &token,
            json!({"current_password": STRONG, "new_password": "Another-Strong-Phrase-42"}),
        )
        .await;
    problem(r, 403, "step_up_required").await;
    // Without a factor, the password is the proof.
    let r = s
        .post_auth(
            "/api/v1/auth/step-up",
            &token,
            json!({"password": "Wrong-Guess-123"}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    let r = s
        .post_auth("/api/v1/auth/step-up", &token, json!({"password": STRONG}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["step_up_until"].is_string());
    s.enrol_totp("u@example.com", &token).await;

    // With a factor, the password is not enough.
    s.clock.advance(Duration::from_secs(660));
    let r = s
        .post_auth("/api/v1/me/mfa/recovery-codes", &token, json!({}))
        .await;
    problem(r, 403, "step_up_required").await;
    let r = s
        .post_auth("/api/v1/auth/step-up", &token, json!({"password": STRONG}))
        .await;
    problem(r, 422, "factor_required").await;
    let r = s
        .post_auth(
            "/api/v1/auth/step-up",
            &token,
            json!({"method": "totp", "code": "000000"}),
        )
        .await;
    problem(r, 401, "invalid_mfa_code").await;
    let r = s
        .post_auth(
            "/api/v1/auth/step-up",
            &token,
            json!({"method": "totp", "password": STRONG}),
        )
        .await;
    problem(r, 422, "invalid_body").await;
    s.step_up("u@example.com", &token).await;
    assert_eq!(
        s.post_auth("/api/v1/me/mfa/recovery-codes", &token, json!({}))
            .await
            .status(),
        200
    );

    // Administrators' writes too; their reads do not.
    let r = s
        .post_auth("/api/v1/admin/invites", &admin, json!({}))
        .await;
    problem(r, 403, "step_up_required").await;
    assert_eq!(
        s.get_auth("/api/v1/admin/events", &admin).await.status(),
        200
    );
    s.step_up("owner@example.com", &admin).await;
    assert_eq!(
        s.post_auth("/api/v1/admin/invites", &admin, json!({}))
            .await
            .status(),
        201
    );

    let steps = events(&s, &admin, "step_up").await;
    let outcomes: Vec<&str> = steps
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "success").count(),
        3,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "failure").count(),
        2,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn an_administrator_resets_a_user_who_lost_every_factor() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let token = s.user("lost@example.com").await;
    s.enrol_totp("lost@example.com", &token).await;
    let id: Value = s.get_auth("/api/v1/me", &token).await.json().await.unwrap();
    let id = id["id"].as_str().unwrap().to_owned();

    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{id}/mfa/reset"),
            &token,
            json!({}),
        )
        .await;
    problem(r, 403, "admin_required").await;
    let me: Value = s.get_auth("/api/v1/me", &admin).await.json().await.unwrap();
    let r = s
        .post_auth(
            &format!(
                "/api/v1/admin/accounts/{}/mfa/reset",
                me["id"].as_str().unwrap()
            ),
            &admin,
            json!({}),
        )
        .await;
    problem(r, 403, "self_reset").await;
    let r = s
        .post_auth(
            "/api/v1/admin/accounts/acc_nobody/mfa/reset",
            &admin,
            json!({}),
        )
        .await;
    problem(r, 404, "not_found").await;
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{id}/mfa/reset"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // Every session ended; the password alone signs in again, and the
    // owner was told.
    problem(
        s.get_auth("/api/v1/me", &token).await,
        401,
        "unauthenticated",
    )
    .await;
    let token = s.login("lost@example.com", STRONG).await;
    let v: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["factors"], json!([]));
    assert_eq!(v["recovery_codes_left"], 0);
    outbox_with(&s, "An administrator removed every second factor", 1).await;
    let resets = reasons(&events(&s, &admin, "mfa_reset").await);
    assert_eq!(resets.len(), 1);
    assert!(resets[0].starts_with("by acc_"), "{resets:?}");

    // A member may remove their only factor (not required for members).
    s.enrol_totp("lost@example.com", &token).await;
    let v: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    let fid = v["factors"][0]["id"].as_str().unwrap();
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/mfa/{fid}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.login("lost@example.com", STRONG).await;
}

#[tokio::test]
async fn required_for_all_applies_to_members() {
    let s =
        TestServer::with(Options::default().env("RAMPART_MFA__REQUIRED_FOR", "[\"all\"]")).await;
    let token = s.user("a@example.com").await;
    let me: Value = s.get_auth("/api/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["mfa_enrollment_required"], true);
    s.enrol_totp("a@example.com", &token).await;
    let v: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    let fid = v["factors"][0]["id"].as_str().unwrap();
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/mfa/{fid}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(r, 409, "last_factor").await;
}

#[tokio::test]
async fn the_command_line_resets_a_locked_out_administrator() {
    let s = TestServer::start().await;
    let _admin = s.admin().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "admin",
            "reset-mfa",
            "--email",
            "owner@example.com",
            "--data-dir",
        ])
        .arg(s.data_dir())
        .env_remove("RAMPART_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reset"));
    // The password alone signs in; the admin API asks for a new factor.
    let token = s.login("owner@example.com", STRONG).await;
    problem(
        s.get_auth("/api/v1/admin/events", &token).await,
        403,
        "mfa_enrollment_required",
    )
    .await;
    outbox_with(&s, "An administrator removed every second factor", 1).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "admin",
            "reset-mfa",
            "--email",
            "nobody@example.com",
            "--data-dir",
        ])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
}

#[tokio::test]
async fn unsafe_notifier_settings_are_refused_with_a_clear_message() {
    let load = |env: &[(&str, &str)]| {
        rampart::Settings::load(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &rampart::Overrides::default(),
        )
    };
    let e = load(&[("RAMPART_NOTIFIER", "deliver")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[smtp]"), "{e}");
    let e = load(&[("RAMPART_SMS_WEBHOOK__URL", "https://127.0.0.1/x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("secret"), "{e}");
    let e = load(&[("RAMPART_MFA__METHODS", "[\"recovery_code\"]")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one"), "{e}");
    let e = load(&[("RAMPART_MFA__ISSUER", "Acme:Corp")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("issuer"), "{e}");
    // Reachable from other machines: the notifier must be chosen.
    let e = load(&[("RAMPART_LISTEN", "0.0.0.0:8443")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("notifier") && e.contains("deliver"), "{e}");
    assert!(load(&[
        ("RAMPART_LISTEN", "0.0.0.0:8443"),
        ("RAMPART_NOTIFIER", "log")
    ])
    .is_ok());
    let e = load(&[("RAMPART_MFA__METHODS", "[\"carrier_pigeon\"]")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("carrier_pigeon") || e.contains("unknown variant"),
        "{e}"
    );
    // A plain-HTTP webhook is refused when the server starts.
    let e = refused_start(&[
        ("RAMPART_NOTIFIER", "deliver"),
        ("RAMPART_SMTP__HOST", "localhost"),
        ("RAMPART_SMTP__FROM", "a@example.com"),
        ("RAMPART_SMS_WEBHOOK__URL", "http://127.0.0.1/sms"),
        ("RAMPART_SMS_WEBHOOK__SECRET", WEBHOOK_SECRET),
    ])
    .await;
    assert!(e.contains("https://"), "{e}");
    // Administrators must enrol, but the only method allowed cannot be
    // delivered (no SMS webhook): refused at start, not discovered later.
    let e = refused_start(&[
        ("RAMPART_NOTIFIER", "deliver"),
        ("RAMPART_SMTP__HOST", "localhost"),
        ("RAMPART_SMTP__FROM", "a@example.com"),
        ("RAMPART_MFA__METHODS", "[\"sms\", \"recovery_code\"]"),
    ])
    .await;
    assert!(e.contains("none of the allowed methods"), "{e}");
}

/// A relay or webhook whose certificate Rampart does not trust gets
/// nothing: the code is not sent, and the user is told to retry.
#[tokio::test]
async fn untrusted_relays_get_no_codes() {
    let sinks = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(sinks.path(), true).await;
    let hook = WebhookSink::start(sinks.path()).await;
    let port = smtp.port.to_string();
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_NOTIFIER", "deliver")
            // These tests are about codes and alerts: addresses need no proof.
            .env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "optional")
            .env("RAMPART_SMTP__HOST", "localhost")
            .env("RAMPART_SMTP__PORT", &port)
            .env("RAMPART_SMTP__FROM", "security@example.com")
            .env("RAMPART_SMS_WEBHOOK__URL", &hook.url)
            .env("RAMPART_SMS_WEBHOOK__SECRET", WEBHOOK_SECRET),
    )
    .await;
    let token = s.user("x@example.com").await;
    let r = s.post_auth("/api/v1/me/mfa/email", &token, json!({})).await;
    problem(r, 503, "delivery_failed").await;
    let r = s
        .post_auth(
            "/api/v1/me/mfa/sms",
            &token,
            json!({"phone": "+447700900123"}),
        )
        .await;
    problem(r, 503, "delivery_failed").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(smtp.mail.lock().unwrap().is_empty());
    assert!(hook.posts.lock().unwrap().is_empty());
}

/// Delivering email but with no SMS webhook: SMS is not offered.
#[tokio::test]
async fn sms_is_not_offered_without_a_webhook() {
    let sinks = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(sinks.path(), true).await;
    let port = smtp.port.to_string();
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_NOTIFIER", "deliver")
            // These tests are about codes and alerts: addresses need no proof.
            .env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "optional")
            .env("RAMPART_SMTP__HOST", "localhost")
            .env("RAMPART_SMTP__PORT", &port)
            .env("RAMPART_SMTP__FROM", "security@example.com")
            .env("RAMPART_SMTP__CA_FILE", smtp.cert.to_str().unwrap()),
    )
    .await;
    let token = s.user("y@example.com").await;
    let v: Value = s
        .get_auth("/api/v1/me/mfa", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["methods_allowed"],
        json!(["totp", "webauthn", "email", "recovery_code"])
    );
    let r = s
        .post_auth(
            "/api/v1/me/mfa/sms",
            &token,
            json!({"phone": "+447700900123"}),
        )
        .await;
    problem(r, 422, "mfa_method_unavailable").await;
    assert_eq!(
        s.post_auth("/api/v1/me/mfa/email", &token, json!({}))
            .await
            .status(),
        202
    );
}
