//! The binary as a user runs it: first start, CLI commands, signals,
//! permission checks, and the canary test for secrets in logs and storage.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use crate::support::rampart_cli as rampart;
use crate::support::*;

#[test]
fn every_command_has_help_and_version() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["admin", "create", "--help"],
        vec!["config", "check", "--help"],
        vec!["openapi", "--help"],
        vec!["collections", "apply", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "status", "--help"],
    ] {
        let (ok, out, _) = rampart(&args, None);
        assert!(ok && out.contains("Usage:"), "{args:?}");
    }
    let (ok, out, _) = rampart(&["--version"], None);
    assert!(ok && out.contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn first_start_creates_a_private_data_dir_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Proc::spawn(&data, &[]);
    let err = p.stderr_text();
    for want in [
        "Master key:",
        "Certificate:",
        "Database:",
        "Back up",
        "setup#token=",
    ] {
        assert!(err.contains(want), "banner lacks {want}: {err}");
    }
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("tls/key.pem")), 0o600);
    assert_eq!(mode(&data.join("rampart.db")), 0o600);
    let cert = std::fs::read_to_string(data.join("tls/cert.pem")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    let r = p.client.get(p.url("/api/v1/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The self-signed certificate covers 127.0.0.1 too.
    let r = p
        .client
        .get(format!("https://127.0.0.1:{}/api/v1/healthz", p.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = p.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    // Logs are JSON lines with a request id per request.
    let logs = p.stdout_text();
    let requests: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{logs}");
    assert!(requests
        .iter()
        .all(|v| v["request_id"].as_str().unwrap().len() == 16));
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "non-JSON log line"
    );
}

#[tokio::test]
async fn loose_permissions_warn_and_strict_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Proc::spawn(&data, &[]);
    drop(p);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let p = Proc::spawn(&data, &[]);
    // The warnings may still be on their way through the pipe when the
    // banner's address line has arrived.
    let mut err = p.stderr_text();
    for _ in 0..100 {
        if err.contains("WARNING: data directory") && err.contains("WARNING: master key file") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        err = p.stderr_text();
    }
    assert!(err.contains("WARNING: data directory"), "{err}");
    assert!(err.contains("WARNING: master key file"), "{err}");
    drop(p);
    let (ok, _, err) = rampart(
        &[
            "serve",
            "--strict",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("refusing to start") && err.contains("chmod 600"),
        "{err}"
    );
    let (ok, _, err) = rampart(
        &[
            "config",
            "check",
            "--strict",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok, "{err}");
}

#[test]
fn config_check_names_unknown_keys_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rampart.toml");
    std::fs::write(&file, "version = 1\nlisten = \"127.0.0.1:9443\"\n").unwrap();
    let (ok, out, _) = rampart(
        &[
            "--config",
            file.to_str().unwrap(),
            "config",
            "check",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ],
        None,
    );
    assert!(
        ok && out.contains("127.0.0.1:9443") && out.contains("check passed"),
        "{out}"
    );
    std::fs::write(&file, "[session]\nidle_timeout = 5\n").unwrap();
    let (ok, _, err) = rampart(
        &["--config", file.to_str().unwrap(), "config", "check"],
        None,
    );
    assert!(!ok && err.contains("idle_timeout"), "{err}");
    std::fs::write(&file, "registration = \"sometimes\"\n").unwrap();
    let (ok, _, err) = rampart(
        &["--config", file.to_str().unwrap(), "config", "check"],
        None,
    );
    assert!(!ok && err.contains("sometimes"), "{err}");
}

#[tokio::test]
async fn admin_create_applies_the_policy_and_the_admin_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (ok, _, err) = rampart(
        &[
            "admin",
            "create",
            "--data-dir",
            d,
            "--email",
            "boss@example.com",
            "--password-stdin",
        ],
        Some("password\n"),
    );
    assert!(!ok);
    assert!(
        err.contains("too_short") && err.contains("common_password"),
        "{err}"
    );
    let (ok, out, err) = rampart(
        &[
            "admin",
            "create",
            "--data-dir",
            d,
            "--email",
            "boss@example.com",
            "--password-stdin",
        ],
        Some(&format!("{STRONG}\n")),
    );
    assert!(ok, "{err}");
    assert!(out.contains("boss@example.com"));
    let p = Proc::spawn(&data, &[]);
    assert!(
        !p.stderr_text().contains("setup#token="),
        "admin exists: no setup token"
    );
    let v: Value = p
        .client
        .post(p.url("/api/v1/auth/login"))
        .json(&json!({"email": "boss@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = p
        .client
        .get(p.url("/api/v1/me"))
        .bearer_auth(v["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(Proc::spawn(&data, &[]));
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("rampart.db").display()))
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let (ok, _, err) = rampart(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("newer Rampart") && err.contains("9999"),
        "{err}"
    );
}

/// Plants canary passwords and collects canary tokens while driving every
/// endpoint, then proves none of them appears in a log line, an error
/// body, or the database files.
#[tokio::test]
async fn canary_secrets_never_reach_logs_errors_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Proc::spawn(&data, &[]);
    let c = &p.client;
    let pw1 = "Canary-Pw1-Zq81!xLm";
    let pw2 = "Canary-Pw2-Rt55#vKe";
    let wrong = "Canary-Wrong-77#qYp";
    let weak = "canaryweak";
    let mut secrets: Vec<String> = vec![pw1.into(), pw2.into(), wrong.into(), weak.into()];
    let mut bodies: Vec<String> = Vec::new();
    let setup_token = p
        .stderr_text()
        .split("setup#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // One request: POST with a JSON body, or GET without one; a Bearer
    // token or a session cookie. Returns the body text.
    enum Auth<'a> {
        None,
        Bearer(&'a str),
        Cookie(&'a str),
    }
    let call = |path: String, body: Option<Value>, auth: Auth<'_>| {
        let mut req = match &body {
            Some(b) => c.post(p.url(&path)).json(b),
            None => c.get(p.url(&path)),
        };
        req = match auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Cookie(t) => req.header("cookie", format!("__Host-rampart_session={t}")),
        };
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    // Calls whose answers must hold no secret.
    for (path, body) in [
        (
            "/api/v1/setup",
            json!({"token": setup_token, "email": "root@example.com", "password": pw1}),
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "u@example.com", "password": pw1, "display_name": "U"}),
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "w@example.com", "password": weak}),
        ),
        (
            "/api/v1/auth/register",
            json!({"email": 5, "password": wrong}),
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "u@example.com", "password": wrong}),
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "nobody@example.com", "password": wrong}),
        ),
        // The strength meter of the hosted pages: a password typed, rated,
        // and nowhere kept.
        (
            "/api/v1/password-check",
            json!({"password": pw2, "email": "u@example.com"}),
        ),
        ("/api/v1/password-check", json!({"password": weak})),
    ] {
        bodies.push(call(path.to_owned(), Some(body), Auth::None).await);
    }
    // Logins, whose answers carry the tokens we then watch for.
    let login = |email: &'static str| {
        let fut = call(
            "/api/v1/auth/login".to_owned(),
            Some(json!({"email": email, "password": pw1})),
            Auth::None,
        );
        async move {
            let v: Value = serde_json::from_str(&fut.await).unwrap();
            (
                v["token"].as_str().unwrap().to_owned(),
                v["csrf_token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (token, csrf) = login("u@example.com").await;
    let (other, other_csrf) = login("u@example.com").await;
    let (admin_token, _) = login("root@example.com").await;
    secrets.extend([
        token.clone(),
        csrf.clone(),
        other.clone(),
        other_csrf.clone(),
        admin_token.clone(),
    ]);
    // `GET /me` tells a session its own CSRF token (for a page opened
    // after the sign-in), as the login did: that one field is checked to
    // be the session's own and set aside; the rest must hold no secret.
    let own_csrf_only = |body: String, expected: &str| {
        let mut v: Value = serde_json::from_str(&body).unwrap();
        if v.get("csrf_token").is_none() {
            // A refusal (the session was revoked): checked whole.
            return body;
        }
        assert_eq!(v["csrf_token"], expected, "{body}");
        v.as_object_mut().unwrap().remove("csrf_token");
        v.to_string()
    };
    // The administrator enrols TOTP; its secret, URI and recovery codes are
    // canaries, and so are the codes and the mfa token of a second login.
    let enrol: Value = serde_json::from_str(
        &call(
            "/api/v1/me/mfa/totp".into(),
            Some(json!({})),
            Auth::Bearer(&admin_token),
        )
        .await,
    )
    .unwrap();
    let totp_secret = enrol["secret"].as_str().unwrap().to_owned();
    secrets.push(totp_secret.clone());
    secrets.push(enrol["otpauth_uri"].as_str().unwrap().to_owned());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let confirmed: Value = serde_json::from_str(
        &call(
            "/api/v1/me/mfa/totp/confirm".into(),
            Some(json!({"code": totp_at(&totp_secret, now())})),
            Auth::Bearer(&admin_token),
        )
        .await,
    )
    .unwrap();
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    secrets.extend(recovery.iter().cloned());
    let pending: Value = serde_json::from_str(
        &call(
            "/api/v1/auth/login".into(),
            Some(json!({"email": "root@example.com", "password": pw1})),
            Auth::None,
        )
        .await,
    )
    .unwrap();
    let mfa_token = pending["mfa_token"].as_str().unwrap().to_owned();
    secrets.push(mfa_token.clone());
    bodies.push(
        call(
            "/api/v1/auth/mfa".into(),
            Some(json!({"mfa_token": mfa_token, "method": "recovery_code", "code": "0000-0000-0000-0000"})),
            Auth::None,
        )
        .await,
    );
    let second: Value = serde_json::from_str(
        &call(
            "/api/v1/auth/mfa".into(),
            Some(json!({"mfa_token": mfa_token, "method": "recovery_code", "code": recovery[0]})),
            Auth::None,
        )
        .await,
    )
    .unwrap();
    secrets.push(second["token"].as_str().unwrap().to_owned());
    // An email factor for the member: the code goes to the outbox file.
    bodies.push(
        call(
            "/api/v1/me/mfa/email".into(),
            Some(json!({})),
            Auth::Bearer(&token),
        )
        .await,
    );
    let outbox = std::fs::read_to_string(data.join("outbox.log")).unwrap();
    let email_code = outbox
        .split("code is ")
        .nth(1)
        .unwrap()
        .chars()
        .take(6)
        .collect::<String>();
    bodies.push(
        call(
            "/api/v1/me/mfa/email/confirm".into(),
            Some(json!({"code": email_code})),
            Auth::Bearer(&token),
        )
        .await,
    );
    bodies.push(call("/api/v1/me/mfa".into(), None, Auth::Bearer(&token)).await);
    bodies.push(own_csrf_only(
        call("/api/v1/me".into(), None, Auth::Bearer(&token)).await,
        &csrf,
    ));
    bodies.push(call("/api/v1/me/sessions".into(), None, Auth::Bearer(&token)).await);
    for body in [
        json!({"current_password": wrong, "new_password": pw2}),
        json!({"current_password": pw1, "new_password": weak}),
        json!({"current_password": pw1, "new_password": pw2}),
    ] {
        bodies.push(
            call(
                "/api/v1/me/password".into(),
                Some(body),
                Auth::Bearer(&token),
            )
            .await,
        );
    }
    bodies.push(own_csrf_only(
        call("/api/v1/me".into(), None, Auth::Cookie(&other)).await,
        &other_csrf,
    ));
    // A cookie write without the CSRF proof: refused.
    bodies.push(
        call(
            "/api/v1/auth/logout".into(),
            Some(json!({})),
            Auth::Cookie(&token),
        )
        .await,
    );
    let invite: Value = serde_json::from_str(
        &call(
            "/api/v1/admin/invites".into(),
            Some(json!({})),
            Auth::Bearer(&admin_token),
        )
        .await,
    )
    .unwrap();
    secrets.push(invite["invite_token"].as_str().unwrap().to_owned());
    // Protected data: a sensitive value, an API key, filters naming the
    // value. Answers that legitimately return the value are not kept.
    let data_canary = "canary-sensitive-9f2k@example.com";
    secrets.push(data_canary.into());
    bodies.push(
        call(
            "/api/v1/admin/collections".into(),
            Some(json!({"name": "clients", "fields": {
                "email": {"type": "email", "sensitive": true, "searchable": true, "unique": true}}})),
            Auth::Bearer(&admin_token),
        )
        .await,
    );
    let key: Value = serde_json::from_str(
        &call(
            "/api/v1/admin/api-keys".into(),
            Some(json!({"name": "k", "scopes": [{"collection": "clients", "actions": ["create", "read", "list"]}]})),
            Auth::Bearer(&admin_token),
        )
        .await,
    )
    .unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    secrets.push(key.clone());
    let created = call(
        "/api/v1/collections/clients/records".into(),
        Some(json!({"email": data_canary})),
        Auth::Bearer(&key),
    )
    .await;
    assert!(created.contains(data_canary), "{created}");
    // The console's reveal: the value in its answer (not kept), and in no
    // log line or event; a masked read and a refused reveal hold none.
    let record_id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revealed = call(
        format!("/api/v1/collections/clients/records/{record_id}/reveal?field=email"),
        None,
        Auth::Bearer(&admin_token),
    )
    .await;
    assert!(revealed.contains(data_canary), "{revealed}");
    for path in [
        format!("/api/v1/collections/clients/records/{record_id}?masked=true"),
        format!("/api/v1/collections/clients/records/{record_id}/reveal?field=nope"),
    ] {
        bodies.push(call(path, None, Auth::Bearer(&admin_token)).await);
    }
    for bad in [
        json!({"email": data_canary, "nope": data_canary}),
        json!({"email": data_canary}),
        json!({"email": format!("{data_canary}\n")}),
    ] {
        bodies.push(
            call(
                "/api/v1/collections/clients/records".into(),
                Some(bad),
                Auth::Bearer(&key),
            )
            .await,
        );
    }
    let found = call(
        format!("/api/v1/collections/clients/records?filter=email%20%3D%20%22{data_canary}%22"),
        None,
        Auth::Bearer(&key),
    )
    .await;
    assert!(found.contains(data_canary), "{found}");
    bodies.push(
        call(
            format!("/api/v1/collections/clients/records?filter=email%20%3E%20%22{data_canary}%22"),
            None,
            Auth::Bearer(&key),
        )
        .await,
    );
    // The brute-force path: ten wrong passwords, then the right one while
    // blocked, then the administrator's unlock.
    let b: Value = serde_json::from_str(
        &call(
            "/api/v1/auth/register".into(),
            Some(json!({"email": "b@example.com", "password": pw1})),
            Auth::None,
        )
        .await,
    )
    .unwrap();
    for password in std::iter::repeat_n(wrong, 10).chain([pw1]) {
        bodies.push(
            call(
                "/api/v1/auth/login".into(),
                Some(json!({"email": "b@example.com", "password": password})),
                Auth::None,
            )
            .await,
        );
    }
    bodies.push(
        call(
            format!(
                "/api/v1/admin/accounts/{}/unlock",
                b["id"].as_str().unwrap()
            ),
            Some(json!({})),
            Auth::Bearer(&admin_token),
        )
        .await,
    );
    bodies.push(
        call(
            "/api/v1/admin/events?limit=500".into(),
            None,
            Auth::Bearer(&admin_token),
        )
        .await,
    );
    let events = bodies.last().unwrap();
    assert!(
        events.contains(r#""reason":"blocked""#) && events.contains("account_unlocked"),
        "the brute-force path was not exercised"
    );
    assert!(
        events.contains("recovery_code_used") && events.contains(r#""reason":"email""#),
        "the second-factor path was not exercised"
    );
    // The account lifecycle (ADR 0015): verification link and code, a
    // reset link and the new password, an address change and its undo,
    // device tokens, the export.
    let outbox = data.join("outbox.log");
    bodies.push(
        call(
            "/api/v1/auth/register".into(),
            Some(json!({"email": "l@example.com", "password": pw1})),
            Auth::None,
        )
        .await,
    );
    for path in [
        "/api/v1/auth/verify-email/resend",
        "/api/v1/auth/password-reset",
    ] {
        bodies.push(
            call(
                path.into(),
                Some(json!({"email": "l@example.com"})),
                Auth::None,
            )
            .await,
        );
    }
    let verify = mailed_token(&outbox, "l@example.com", "verify-email").await;
    let code = mailed_code(&outbox, "l@example.com").await;
    let reset = mailed_token(&outbox, "l@example.com", "reset-password").await;
    let pw3 = "Canary-Pw3-Hn42$wQz";
    secrets.extend([verify.clone(), code.clone(), reset.clone(), pw3.to_owned()]);
    for (path, body) in [
        (
            "/api/v1/auth/verify-email",
            json!({"email": "l@example.com", "code": code}),
        ),
        ("/api/v1/auth/verify-email", json!({"token": verify})),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": weak}),
        ),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": pw3}),
        ),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": pw3}),
        ),
    ] {
        bodies.push(call(path.into(), Some(body), Auth::None).await);
    }
    let signed_in: Value = serde_json::from_str(
        &call(
            "/api/v1/auth/login".into(),
            Some(json!({"email": "l@example.com", "password": pw3})),
            Auth::None,
        )
        .await,
    )
    .unwrap();
    let lifecycle_token = signed_in["token"].as_str().unwrap().to_owned();
    let device = signed_in["device_token"].as_str().unwrap().to_owned();
    secrets.extend([lifecycle_token.clone(), device.clone()]);
    bodies.push(
        call(
            "/api/v1/auth/login".into(),
            Some(json!({"email": "l@example.com", "password": wrong, "device_token": device})),
            Auth::None,
        )
        .await,
    );
    bodies.push(
        call(
            "/api/v1/me/email".into(),
            Some(json!({"new_email": "l2@example.com"})),
            Auth::Bearer(&lifecycle_token),
        )
        .await,
    );
    let confirm = mailed_token(&outbox, "l2@example.com", "confirm-email").await;
    secrets.push(confirm.clone());
    bodies.push(
        call(
            "/api/v1/auth/email-change/confirm".into(),
            Some(json!({"token": confirm})),
            Auth::None,
        )
        .await,
    );
    let undo = mailed_token(&outbox, "l@example.com", "undo-email-change").await;
    secrets.push(undo.clone());
    bodies.push(
        call(
            "/api/v1/me/export".into(),
            None,
            Auth::Bearer(&lifecycle_token),
        )
        .await,
    );
    assert!(
        bodies.last().unwrap().contains("security_events"),
        "the export was not exercised"
    );
    for _ in 0..2 {
        bodies.push(
            call(
                "/api/v1/auth/email-change/undo".into(),
                Some(json!({"token": undo})),
                Auth::None,
            )
            .await,
        );
    }
    // The undo's own reset link (the second to this address).
    await_mails(&outbox, "l@example.com", "reset-password#token=", 2).await;
    secrets.push(mailed_token(&outbox, "l@example.com", "reset-password").await);
    bodies.push(
        call(
            "/api/v1/auth/logout".into(),
            Some(json!({})),
            Auth::Bearer(&token),
        )
        .await,
    );
    bodies.push(call(format!("/api/v1/me?token={token}"), None, Auth::None).await);
    let status = p.terminate().await;
    assert!(status.success());

    let logs = p.stdout_text();
    let banner = p.stderr_text();
    // Codes go to the outbox, never to the log.
    assert!(!logs.contains("code is"), "a code message reached the log");
    // The setup token is shown once on stderr by design; nowhere else.
    for (name, bytes) in [("logs".to_owned(), logs.as_bytes().to_vec())]
        .into_iter()
        .chain(std::fs::read_dir(&data).unwrap().filter_map(|e| {
            let path = e.ok()?.path();
            path.is_file()
                .then(|| (path.display().to_string(), std::fs::read(&path).unwrap()))
        }))
    {
        let needle = setup_token.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{name} holds the setup token"
        );
    }
    assert!(logs.lines().count() > 15, "logs were captured");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file()
            && path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("rampart.db")
        {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(!files.is_empty());
    // The trail's witness files, and what `audit verify` prints.
    let witness = data.with_file_name("data-witness");
    for entry in std::fs::read_dir(&witness).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    assert!(
        files.len() >= 3,
        "the witness holds checkpoints and the key"
    );
    let (code, verified, err) = rampart_run(
        &["audit", "verify", "--data-dir", data.to_str().unwrap()],
        None,
    );
    assert_eq!(code, Some(0), "{verified}{err}");
    files.push((
        "audit verify".into(),
        format!("{verified}{err}").into_bytes(),
    ));
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "log leaks {secret}");
        assert!(!banner.contains(secret.as_str()), "stderr leaks {secret}");
        for b in &bodies {
            assert!(!b.contains(secret.as_str()), "response leaks {secret}: {b}");
        }
        for (name, bytes) in &files {
            let needle = secret.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{name} holds {secret} in plaintext"
            );
        }
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Proc::spawn(&data, &[]);
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(p.child.id() as i32, libc::SIGHUP);
    }
    let mut reloaded = false;
    for _ in 0..100 {
        if p.stdout_text().contains("\"TLS certificate reloaded\"") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "{}", p.stdout_text());
    let r = p.client.get(p.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still serving after SIGHUP");
    assert!(p.terminate().await.success());
}

#[tokio::test]
async fn a_database_file_outside_the_data_dir_is_permission_checked_too() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("custom.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut s = TestServer::with(Options::default().env("RAMPART_DATABASE_URL", &url)).await;
    assert!(db.exists(), "database created where database_url says");
    assert!(
        s.running().warnings.is_empty(),
        "{:?}",
        s.running().warnings
    );
    s.stop().await;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s2 = TestServer::with(
        Options {
            dir: Some(dir),
            ..Options::default()
        }
        .env("RAMPART_DATABASE_URL", &url),
    )
    .await;
    assert!(
        s2.running()
            .warnings
            .iter()
            .any(|w| w.starts_with("database ") && w.contains("custom.db")),
        "{:?}",
        s2.running().warnings
    );
}

fn resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// Every Argon2id hash takes 19 MiB. Each hashing thread reuses one buffer;
/// a fresh allocation per hash left one block in every allocator heap and
/// grew the process past 300 MB on two cores.
#[tokio::test]
async fn memory_is_returned_after_each_password_hash() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(&dir.path().join("data"), &[]);
    let before = resident_mib(p.child.id());
    for i in 0..24 {
        let r = p
            .client
            .post(p.url("/api/v1/auth/login"))
            .json(
                &serde_json::json!({"email": format!("nobody{i}@example.com"), "password": STRONG}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let after = resident_mib(p.child.id());
    assert!(
        after < before + 60,
        "resident memory grew from {before} MiB to {after} MiB over 24 hashes"
    );
}
