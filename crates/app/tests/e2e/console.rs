//! The console's server side (ADR 0017), without a browser: how its pages
//! are served, and the API features the pages brought (the password
//! meter, the settings page, masked reads and a stepped-up reveal). The
//! pages themselves are driven in Chromium in `browser.rs`.

use std::time::Duration;

use rampart_core::Clock;
use serde_json::{json, Value};

use crate::support::*;

const PAGES: [&str; 9] = [
    "/sign-in",
    "/setup",
    "/verify-email",
    "/reset-password",
    "/confirm-email",
    "/undo-email-change",
    "/account/",
    "/console/",
    "/console/accounts",
];

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_never_cached() {
    let s = TestServer::start().await;
    for page in PAGES {
        let r = s.client.get(s.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let h = r.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{page}");
        assert_eq!(
            h["content-security-policy"],
            rampart_http::console::PAGE_POLICY,
            "{page}"
        );
        assert_eq!(h["cache-control"], "no-store", "{page}");
        assert_eq!(h["x-frame-options"], "DENY", "{page}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<script src=\"/assets/console.js\" defer></script>"),
            "{page}"
        );
    }
    for (asset, kind) in [
        ("/assets/console.js", "text/javascript; charset=utf-8"),
        ("/assets/console.css", "text/css; charset=utf-8"),
    ] {
        let r = s.client.get(s.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], kind);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    // The API keeps its own, stricter policy.
    let r = s.client.get(s.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    // An unknown section is the usual 404, not a page.
    let r = s
        .client
        .get(s.url("/console/nothing"))
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;
    let r = s
        .client
        .get(s.url("/assets/other.js"))
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;
    // Bare names lead to the pages.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    for (from, to) in [("/console", "/console/"), ("/account", "/account/")] {
        let r = plain.get(s.url(from)).send().await.unwrap();
        assert!(r.status().is_redirection(), "{from}: {}", r.status());
        assert_eq!(r.headers()["location"], to);
    }
}

/// The console's pages are in the guard's admin group: an address the
/// admin rules refuse does not get them, while the hosted pages stay open.
#[tokio::test]
async fn console_pages_follow_the_admin_address_rules() {
    let s = TestServer::with(
        Options::default().env("RAMPART_GUARD__ADMIN__ALLOW", r#"["10.0.0.0/8"]"#),
    )
    .await;
    for page in ["/console/", "/console/events", "/console"] {
        let r = s.client.get(s.url(page)).send().await.unwrap();
        problem(r, 403, "address_denied").await;
    }
    for page in ["/sign-in", "/account/", "/reset-password"] {
        let r = s.client.get(s.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
    }
}

#[tokio::test]
async fn the_password_meter_rates_with_the_servers_policy_and_keeps_nothing() {
    let s = TestServer::start().await;
    let check = |body: Value| {
        let s = &s;
        async move {
            let r = s.post("/api/v1/auth/password-check", body).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let codes = |v: &Value| -> Vec<String> {
        v["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["code"].as_str().unwrap().to_owned())
            .collect()
    };
    let weak = check(json!({"password": "password1"})).await;
    assert_eq!(weak["acceptable"], false);
    assert!(weak["score"].as_u64().unwrap() <= 1, "{weak}");
    let weak_codes = codes(&weak);
    assert!(weak_codes.contains(&"too_short".to_owned()), "{weak}");
    assert!(weak_codes.contains(&"common_password".to_owned()), "{weak}");
    assert!(!weak["suggestions"].as_array().unwrap().is_empty());

    let strong = check(json!({"password": "Lantern-Quarry-Oak-41-Vessel"})).await;
    assert_eq!(strong["acceptable"], true, "{strong}");
    assert!(strong["score"].as_u64().unwrap() >= 3, "{strong}");
    assert!(codes(&strong).is_empty());

    // The account's own name, when the page knows the address.
    let personal = check(
        json!({"password": "Marguerite-Lantern-41-Vessel", "email": "marguerite@example.com"}),
    )
    .await;
    assert_eq!(personal["acceptable"], false);
    assert_eq!(codes(&personal), ["contains_personal_info"]);

    // Past the bound: refused before any estimate.
    let long = check(json!({"password": "A1-".repeat(2000)})).await;
    assert_eq!(codes(&long), ["too_long"]);

    // Malformed: a 4xx problem.
    let r = s
        .post("/api/v1/auth/password-check", json!({"password": 5}))
        .await;
    assert!(r.status().is_client_error());
    let r = s
        .post(
            "/api/v1/auth/password-check",
            json!({"password": "x", "other": 1}),
        )
        .await;
    assert!(r.status().is_client_error());
    // The display name counts too.
    let named = check(
        json!({"password": "Wolfgang-Lantern-41-Vessel", "display_name": "Wolfgang Amadeus"}),
    )
    .await;
    assert_eq!(codes(&named), ["contains_personal_info"]);
}

/// The meter is in the sign-in group: its per-address limit is the one of
/// logins, so it cannot be used to burn the server's time.
#[tokio::test]
async fn the_password_meter_has_the_sign_in_limits() {
    let s = TestServer::with(Options::default().guard_defaults()).await;
    let mut limited = 0;
    for _ in 0..40 {
        let r = s
            .post(
                "/api/v1/auth/password-check",
                json!({"password": "Lantern-Quarry-Oak-41"}),
            )
            .await;
        if r.status() == 429 {
            problem(r, 429, "rate_limited").await;
            limited += 1;
        } else {
            assert_eq!(r.status(), 200);
        }
    }
    assert!(
        limited > 0,
        "40 checks at once from one address are limited"
    );
}

/// A page opened after the sign-in (a bookmark, a new tab) learns the
/// session's CSRF token from `GET /me`, and writes with it.
#[tokio::test]
async fn me_says_the_sessions_csrf_token() {
    let s = TestServer::start().await;
    s.register("tab@example.com").await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "tab@example.com", "password": STRONG}),
        )
        .await;
    let login: Value = r.json().await.unwrap();
    let token = login["token"].as_str().unwrap();
    let cookie = format!("__Host-rampart_session={token}");
    let me: Value = s
        .client
        .get(s.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["csrf_token"], login["csrf_token"]);
    // Without it (and with no Origin), a cookie write is refused; with it,
    // allowed.
    let sessions = |csrf: Option<&str>| {
        let mut r = s
            .client
            .post(s.url("/api/v1/auth/step-up"))
            .header("cookie", &cookie)
            .json(&json!({"password": STRONG}));
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    problem(sessions(None).await.unwrap(), 403, "csrf_failed").await;
    let r = sessions(me["csrf_token"].as_str()).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_settings_page_shows_the_settings_in_force_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hook.key");
    std::fs::write(&key, "canary-hook-key-0123456789abcdefghijklmnop").unwrap();
    let s = TestServer::with(
        Options::default()
            .env(
                "RAMPART_DETECT__WEBHOOK_URL",
                "https://hooks.example.com/services/T000/canary-hook-path",
            )
            .env("RAMPART_DETECT__WEBHOOK_SECRET_FILE", key.to_str().unwrap())
            .env("RAMPART_MFA__STEP_UP_SECS", "420"),
    )
    .await;
    let admin = s.admin().await;
    let user = s.user("plain@example.com").await;
    let r = s.get_auth("/api/v1/admin/settings", &user).await;
    problem(r, 403, "admin_required").await;
    let r = s.get_auth("/api/v1/admin/settings", &admin).await;
    assert_eq!(r.status(), 200);
    let text = r.json::<Value>().await.unwrap()["settings"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("step_up_secs: 420"), "{text}");
    assert!(
        text.contains("https://hooks.example.com/(redacted)"),
        "{text}"
    );
    assert!(!text.contains("canary"), "{text}");
}

async fn patients(s: &TestServer, admin: &str) -> String {
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            admin,
            json!({"name": "patients", "fields": {
                "name": {"type": "text", "required": true},
                "ssn": {"type": "text", "sensitive": true},
                "allergy": {"type": "text", "sensitive": true}}}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = s
        .post_auth(
            "/api/v1/collections/patients/records",
            admin,
            json!({"name": "Ada", "ssn": "078-05-1120", "allergy": "penicillin"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The record browser's masked reads and the reveal of one value after a
/// step-up, recorded with the field's name even where ordinary reads are
/// not recorded.
#[tokio::test]
async fn a_sensitive_value_is_revealed_one_at_a_time_after_a_step_up() {
    let s = TestServer::with(Options::default().env("RAMPART_AUDIT__DATA_READS", "false")).await;
    let admin = s.admin().await;
    let id = patients(&s, &admin).await;
    let data = |v: &Value| v["data"].as_object().unwrap().clone();

    // Plain reads are as before: every field the caller may read.
    let v: Value = s
        .get_auth(
            &format!("/api/v1/collections/patients/records/{id}"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(data(&v)["ssn"], "078-05-1120");
    // Masked: no sensitive value, in a list or a read.
    let v: Value = s
        .get_auth("/api/v1/collections/patients/records?masked=true", &admin)
        .await
        .json()
        .await
        .unwrap();
    let rec = &v["records"][0];
    assert_eq!(data(rec).keys().collect::<Vec<_>>(), ["name"], "{v}");
    let v: Value = s
        .get_auth(
            &format!("/api/v1/collections/patients/records/{id}?masked=true"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(data(&v).keys().collect::<Vec<_>>(), ["name"], "{v}");
    let r = s
        .get_auth(
            &format!("/api/v1/collections/patients/records/{id}?masked=maybe"),
            &admin,
        )
        .await;
    problem(r, 400, "invalid_query").await;

    // A reveal needs a proof of identity from the last minutes.
    let reveal =
        |field: &str| format!("/api/v1/collections/patients/records/{id}/reveal?field={field}");
    s.clock.advance(Duration::from_secs(11 * 60));
    let r = s.get_auth(&reveal("ssn"), &admin).await;
    problem(r, 403, "step_up_required").await;
    s.step_up("owner@example.com", &admin).await;
    let v: Value = s
        .get_auth(&reveal("ssn"), &admin)
        .await
        .json()
        .await
        .unwrap();
    let shown = data(&v);
    assert_eq!(shown["ssn"], "078-05-1120");
    assert!(!shown.contains_key("allergy"), "one at a time: {v}");
    // Only a sensitive field of the collection; the name is not echoed.
    for field in ["name", "nopefield"] {
        let r = s.get_auth(&reveal(field), &admin).await;
        let p = problem(r, 400, "invalid_query").await;
        assert!(!p.to_string().contains("nopefield"), "{p}");
    }
    let r = s
        .get_auth(
            &format!("/api/v1/collections/patients/records/{id}/reveal"),
            &admin,
        )
        .await;
    problem(r, 400, "invalid_query").await;
    // Not someone else's record, not a missing one: the usual 404.
    let other = s.user("other@example.com").await;
    let r = s.get_auth(&reveal("ssn"), &other).await;
    problem(r, 404, "not_found").await;
    let r = s
        .get_auth(
            &format!(
                "/api/v1/collections/patients/records/rec_{}/reveal?field=ssn",
                "0".repeat(32)
            ),
            &admin,
        )
        .await;
    problem(r, 404, "not_found").await;

    // An API key cannot step up, so it cannot reveal.
    let r = s
        .post_auth(
            "/api/v1/admin/api-keys",
            &admin,
            json!({"name": "reader", "scopes": [{"collection": "patients", "actions": ["read"]}]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s.get_auth(&reveal("ssn"), &key).await;
    assert_eq!(r.status(), 401);

    // The reveal is recorded with its field, reads being off; the value
    // is in no event.
    let (revealed, all) = reveals(&s, &admin).await;
    assert_eq!(revealed.len(), 1, "{all}");
    assert_eq!(revealed[0]["fields"]["data.revealed"], "ssn");
    assert_eq!(revealed[0]["outcome"], "success");
    assert!(!all.to_string().contains("078-05-1120"));
}

/// The recorded reveals, newest first, and every data read recorded.
async fn reveals(s: &TestServer, admin: &str) -> (Vec<Value>, Value) {
    s.running().audit.flush().await;
    let all: Vec<Value> = events_of(s, admin, "data.read&data=include")
        .await
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let revealed = all
        .iter()
        .filter(|e| e["fields"]["data.revealed"].is_string())
        .cloned()
        .collect();
    (revealed, Value::Array(all))
}

/// A reveal shows only what its caller may read: a sensitive field kept
/// from the caller by the schema's read rule is refused like a field that
/// is not there, and nothing is recorded as revealed.
#[tokio::test]
async fn a_reveal_never_shows_a_field_hidden_from_its_caller() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            &admin,
            json!({"name": "vault", "fields": {
                "name": {"type": "text", "required": true},
                "note": {"type": "text", "sensitive": true},
                "pin": {"type": "text", "sensitive": true, "read": ["admin"]}}}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let member = s.user("m@example.com").await;
    let r = s
        .post_auth(
            "/api/v1/collections/vault/records",
            &member,
            json!({"name": "mine", "note": "my note", "pin": "4321"}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reveal =
        |field: &str| format!("/api/v1/collections/vault/records/{id}/reveal?field={field}");
    let v: Value = s
        .get_auth(&reveal("note"), &member)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["note"], "my note");
    assert!(v["data"].get("pin").is_none(), "{v}");
    let r = s.get_auth(&reveal("pin"), &member).await;
    let p = problem(r, 400, "invalid_query").await;
    assert!(!p.to_string().contains("4321"));
    // The administrator, whom the rule names, may.
    let v: Value = s
        .get_auth(&reveal("pin"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["pin"], "4321");
    assert!(v["data"].get("note").is_none(), "one at a time: {v}");
    let (revealed, all) = reveals(&s, &admin).await;
    let fields: Vec<&str> = revealed
        .iter()
        .filter_map(|e| e["fields"]["data.revealed"].as_str())
        .collect();
    // Newest first: the administrator's pin, the member's note; the
    // refused reveal is not among them.
    assert_eq!(fields, ["pin", "note"], "{all}");
}

/// An event's detail in the console shows its inclusion proof: the same
/// proof `rampart audit proof` writes, which checks offline with only the
/// public key.
#[tokio::test]
async fn an_events_inclusion_proof_checks_offline() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let setup: Value = serde_json::from_str(&events_of(&s, &admin, "setup_used").await[0]).unwrap();
    let id = setup["id"].as_str().unwrap().to_owned();
    // A checkpoint is signed within seconds of new events.
    let mut proof = Value::Null;
    for _ in 0..300 {
        let r = s
            .get_auth(&format!("/api/v1/admin/events/{id}/proof"), &admin)
            .await;
        if r.status() == 200 {
            proof = r.json().await.unwrap();
            break;
        }
        problem(r, 404, "no_proof_yet").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        format!("{}:{}", proof["node"].as_str().unwrap(), proof["seq"]),
        id
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    let key = s.data_dir().join("audit.pub");
    let (code, out, err) = rampart_run(
        &[
            "audit",
            "check-proof",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    for bad in ["nonsense", "node:abc", ":1"] {
        let r = s
            .get_auth(&format!("/api/v1/admin/events/{bad}/proof"), &admin)
            .await;
        problem(r, 404, "not_found").await;
    }
    let node = proof["node"].as_str().unwrap();
    let r = s
        .get_auth(&format!("/api/v1/admin/events/{node}:999999/proof"), &admin)
        .await;
    problem(r, 404, "not_found").await;
    let user = s.user("nosy@example.com").await;
    let r = s
        .get_auth(&format!("/api/v1/admin/events/{id}/proof"), &user)
        .await;
    problem(r, 403, "admin_required").await;
}

/// The dashboard's certificate tile: the validity of the certificate in
/// service, here the self-signed one `serve` made.
#[tokio::test]
async fn the_certificate_in_service_says_when_it_expires() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let v: Value = s
        .get_auth("/api/v1/admin/certificate", &admin)
        .await
        .json()
        .await
        .unwrap();
    let pem = std::fs::read_to_string(s.data_dir().join("tls/cert.pem")).unwrap();
    let (_, until) = rampart_crypto::certificate_validity(&pem).unwrap();
    let until = rampart_core::Timestamp::from_system_time(until);
    assert_eq!(v["not_after"], until.to_rfc3339(), "{v}");
    let days = (until.millis() - s.clock.now().millis()).div_euclid(86_400_000);
    assert_eq!(v["days_left"], days, "{v}");
    assert!(days > 0, "{v}");
    let user = s.user("u2@example.com").await;
    let r = s.get_auth("/api/v1/admin/certificate", &user).await;
    problem(r, 403, "admin_required").await;
}
