//! Breach response (ADR 0014): lockdowns of the deployment and of one
//! account, on one node and on two PostgreSQL nodes; the dry run; forced
//! password resets; the forensic bundle and its offline check.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

async fn me(s: &TestServer, token: &str) -> reqwest::Response {
    s.get_auth("/api/v1/me", token).await
}

/// Waits (each node re-reads incidents every second) for the lockdown
/// header to be `present` or not on an answer to `token`.
async fn lockdown_header(s: &TestServer, token: &str, present: bool) {
    for _ in 0..50 {
        let r = me(s, token).await;
        if r.headers().contains_key("rampart-lockdown") == present {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the lockdown header never became {present}");
}

async fn admin_key(s: &TestServer, admin: &str) -> String {
    let r = s
        .post_auth(
            "/api/v1/admin/api-keys",
            admin,
            json!({"name": "sync", "scopes": [{"collection": "notes", "actions": ["list"]}]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["secret"].as_str().unwrap().to_owned()
}

/// A second administrator (made on the command line), with TOTP,
/// signed in.
async fn second_admin(s: &TestServer) -> String {
    let data = s.data_dir().to_str().unwrap().to_owned();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        rampart_cli(
            &[
                "admin",
                "create",
                "--email",
                "second@example.com",
                "--password-stdin",
                "--data-dir",
                &data,
            ],
            Some(&format!("{STRONG}\n")),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let token = s.login("second@example.com", STRONG).await;
    s.enrol_totp("second@example.com", &token).await;
    token
}

async fn notes(s: &TestServer, admin: &str) {
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            admin,
            json!({"name": "notes", "fields": {"text": {"type": "text", "sensitive": true}}}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn list_with_key(s: &TestServer, key: &str) -> u16 {
    s.get_auth("/api/v1/collections/notes/records", key)
        .await
        .status()
        .as_u16()
}

async fn actions_in_trail(s: &TestServer, admin: &str, action: &str) -> Vec<Value> {
    let r = s
        .get_auth(&format!("/api/v1/admin/events?type={action}"), admin)
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn lockdown_ends_every_session_and_key_but_the_break_glass_and_lift_restores_sign_in() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    notes(&s, &admin).await;
    let key = admin_key(&s, &admin).await;
    let second = second_admin(&s).await;
    let second_key = admin_key(&s, &second).await;
    let user = s.user("worker@example.com").await;
    s.register("other@example.com").await;
    assert_eq!(list_with_key(&s, &key).await, 200);

    // A lockdown needs a fresh step-up and a reason.
    s.clock.advance(Duration::from_secs(700));
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "x"}),
        )
        .await;
    problem(r, 403, "step_up_required").await;
    s.step_up("owner@example.com", &admin).await;
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "  "}),
        )
        .await;
    problem(r, 422, "invalid_incident").await;

    // The dry run says what would happen and changes nothing.
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "stolen laptop", "dry_run": true, "reset_passwords": "all"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["incident_id"], "");
    assert_eq!(dry["sessions_ended"], 2, "{dry}");
    assert_eq!(dry["api_keys_revoked"], 1, "{dry}");
    assert_eq!(dry["break_glass"], "owner@example.com");
    assert_eq!(
        dry["password_resets"],
        json!([
            "other@example.com",
            "second@example.com",
            "worker@example.com"
        ]),
        "the break-glass administrator's password is never reset"
    );
    assert_eq!(dry["keys_rotated"], json!(["notes"]));
    assert_eq!(me(&s, &user).await.status(), 200);
    s.login("other@example.com", STRONG).await;
    let status: Value = s
        .get_auth("/api/v1/admin/incident", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["locked_down"], false);

    // The lockdown.
    let keys_before: Value = s
        .get_auth("/api/v1/admin/keys", &admin)
        .await
        .json()
        .await
        .unwrap();
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "stolen laptop"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let done: Value = r.json().await.unwrap();
    let id = done["incident_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inc_"));
    assert_eq!(done["sessions_ended"], 3, "{done}");
    assert_eq!(done["api_keys_revoked"], 1, "{done}");
    assert_eq!(done["admin_writes_frozen"], true);

    // Everyone's sessions ended but the break-glass administrator's (whose
    // key still works too); only administrators sign in.
    assert_eq!(me(&s, &user).await.status(), 401);
    assert_eq!(me(&s, &admin).await.status(), 200);
    assert_eq!(list_with_key(&s, &key).await, 200);
    // The right password is answered like a wrong one: a lockdown
    // confirms no stolen password.
    for password in [STRONG, "wrong password entirely"] {
        let r = s
            .post(
                "/api/v1/auth/login",
                json!({"email": "worker@example.com", "password": password}),
            )
            .await;
        problem(r, 401, "invalid_credentials").await;
    }
    // Nobody new registers meanwhile.
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "newcomer@example.com", "password": STRONG}),
        )
        .await;
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    lockdown_header(&s, &admin, true).await;
    // Another administrator signs in and looks, but cannot act on the
    // incident (a stolen administrator's sign-in cannot lift it), and the
    // key they made before it no longer works.
    let second = s.login_mfa("second@example.com").await;
    assert_eq!(list_with_key(&s, &second_key).await, 401);
    assert_eq!(
        s.get_auth("/api/v1/admin/incident", &second).await.status(),
        200
    );
    let r = s
        .post_auth("/api/v1/admin/incident/lift", &second, json!({}))
        .await;
    problem(r, 423, "break_glass_only").await;
    let r = s
        .post_auth(
            "/api/v1/admin/blocks",
            &second,
            json!({"network": "203.0.113.10", "reason": "x"}),
        )
        .await;
    problem(r, 423, "break_glass_only").await;
    // The data keys were rotated.
    let keys_after: Value = s
        .get_auth("/api/v1/admin/keys", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(keys_before, keys_after);

    // Administrative changes are frozen but for the incident's own.
    let r = s
        .post_auth("/api/v1/admin/invites", &admin, json!({}))
        .await;
    problem(r, 423, "lockdown_frozen").await;
    let r = s
        .post_auth(
            "/api/v1/admin/blocks",
            &admin,
            json!({"network": "203.0.113.9", "reason": "attacker"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "again"}),
        )
        .await;
    problem(r, 409, "lockdown_in_force").await;

    // The record is signed with the audit key.
    let status: Value = s
        .get_auth("/api/v1/admin/incident", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["locked_down"], true);
    let record = status["in_force"][0]["record"].as_str().unwrap();
    let public = std::fs::read_to_string(s.data_dir().join("audit.pub")).unwrap();
    let checked = rampart_core::incident::check_record(record, public.trim()).unwrap();
    assert_eq!(checked["incident"], id.as_str());
    assert_eq!(checked["reason"], "stolen laptop");
    let forged = record.replacen("stolen laptop", "nothing happened", 1);
    assert!(rampart_core::incident::check_record(&forged, public.trim()).is_err());

    // Lifted: sign-in and changes are back; what ended stays ended.
    let r = s
        .post_auth("/api/v1/admin/incident/lift", &admin, json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(me(&s, &user).await.status(), 401);
    let again = s.login("worker@example.com", STRONG).await;
    assert_eq!(me(&s, &again).await.status(), 200);
    lockdown_header(&s, &admin, false).await;
    assert_eq!(
        s.post_auth("/api/v1/admin/invites", &admin, json!({}))
            .await
            .status(),
        201
    );
    let r = s
        .post_auth("/api/v1/admin/incident/lift", &admin, json!({}))
        .await;
    problem(r, 404, "not_found").await;
    // The lockdown, and the two refused (no reason; one in force already).
    let lockdowns = actions_in_trail(&s, &admin, "incident.lockdown").await;
    let outcomes: Vec<&str> = lockdowns
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failure", "success", "failure"], "{lockdowns:?}");
    assert_eq!(
        actions_in_trail(&s, &admin, "incident.lifted").await.len(),
        1
    );
}

/// The code in the newest "Choose a new password" message to `email`.
async fn reset_code(s: &TestServer, email: &str) -> String {
    for _ in 0..250 {
        let text = std::fs::read_to_string(s.data_dir().join("outbox.log")).unwrap_or_default();
        let code = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| {
                m.to_string().contains(email) && m.to_string().contains("Choose a new password")
            })
            .filter_map(|m| {
                let body = m.to_string();
                let start = body.find("hours):\\n\\n")? + "hours):\\n\\n".len();
                Some(body[start..start + 43].to_owned())
            })
            .next();
        if let Some(c) = code {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no reset code was mailed to {email}");
}

#[tokio::test]
async fn one_account_lockdown_leaves_everyone_else_alone_and_a_forced_reset_takes_the_mailed_code()
{
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let victim = s.user("victim@example.com").await;
    let bystander = s.user("bystander@example.com").await;
    s.step_up("owner@example.com", &admin).await;
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "phished", "accounts": ["victim@example.com"], "reset_passwords": "all"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["scope"], "accounts");
    assert_eq!(done["sessions_ended"], 1);
    assert_eq!(done["admin_writes_frozen"], false);
    assert_eq!(done["keys_rotated"], json!([]));

    // Only the victim is out.
    assert_eq!(me(&s, &victim).await.status(), 401);
    assert_eq!(me(&s, &bystander).await.status(), 200);
    assert_eq!(me(&s, &admin).await.status(), 200);
    s.login("bystander@example.com", STRONG).await;
    assert_eq!(
        s.post_auth("/api/v1/admin/invites", &admin, json!({}))
            .await
            .status(),
        201
    );
    lockdown_header(&s, &admin, false).await;
    // The old password stopped working (a thief who knows it gets only the
    // wrong-password answer).
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "victim@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;

    // The owner's mailed code sets a new password, once.
    let code = reset_code(&s, "victim@example.com").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": "not-the-code-0000000000000000000000000000000", "new_password": "Quartz-lantern-Meadow-7391"}),
        )
        .await;
    problem(r, 403, "invalid_reset_token").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": code, "new_password": "short"}),
        )
        .await;
    assert_eq!(r.status(), 422, "the new password meets the policy");
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": code, "new_password": "Quartz-lantern-Meadow-7391"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // The code is in the owner's mailbox only: not in the trail.
    let found: Value = s
        .get_auth(&format!("/api/v1/admin/events?q={code}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["events"], json!([]));
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": code, "new_password": "Copper-harbor-Violet-2864"}),
        )
        .await;
    problem(r, 403, "invalid_reset_token").await;
    // Still locked out until lifted, then in with the new password only.
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "victim@example.com", "password": "Quartz-lantern-Meadow-7391"}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    let id = done["incident_id"].as_str().unwrap();
    let r = s
        .post_auth("/api/v1/admin/incident/lift", &admin, json!({"id": id}))
        .await;
    assert_eq!(r.status(), 200);
    s.login("victim@example.com", "Quartz-lantern-Meadow-7391")
        .await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "victim@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
}

fn pg_cli(args: &[&str], data: &std::path::Path, url: &str) -> (Option<i32>, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    let d = data.to_str().unwrap();
    all.extend(["--data-dir", d, "--database-url", url]);
    rampart_run(&all, None)
}

#[tokio::test]
async fn lockdown_holds_on_two_postgres_nodes_at_once_and_the_dry_run_changes_nothing() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = Proc::spawn(&d1.path().join("data"), &["--database-url", &url]);
    second_node_dir(&d1.path().join("data"), &d2.path().join("data"));
    let b = Proc::spawn(&d2.path().join("data"), &["--database-url", &url]);
    let data = d1.path().join("data");
    let (ok, _, err) = rampart_cli(
        &[
            "admin",
            "create",
            "--email",
            "boss@example.com",
            "--password-stdin",
            "--data-dir",
            data.to_str().unwrap(),
            "--database-url",
            &url,
        ],
        Some(&format!("{STRONG}\n")),
    );
    assert!(ok, "{err}");
    let post = |p: &Proc, path: &str, body: Value| {
        let req = p.client.post(p.url(path)).json(&body);
        async move { req.send().await.unwrap() }
    };
    let r = post(
        &a,
        "/api/v1/auth/register",
        json!({"email": "staff@example.com", "password": STRONG}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let login = |p: &Proc, email: &'static str| {
        let req = p
            .client
            .post(p.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": STRONG}));
        async move { req.send().await.unwrap() }
    };
    let token = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    };
    let me = |p: &Proc, t: &str| {
        let req = p.client.get(p.url("/api/v1/me")).bearer_auth(t.to_owned());
        async move { req.send().await.unwrap() }
    };
    let boss = token(login(&b, "boss@example.com").await).await;
    let staff_a = token(login(&a, "staff@example.com").await).await;
    let staff_b = token(login(&b, "staff@example.com").await).await;

    // The dry run changes nothing.
    let (code, out, err) = pg_cli(
        &[
            "incident",
            "lockdown",
            "--reason",
            "drill of the drill",
            "--break-glass",
            "boss@example.com",
            "--dry-run",
        ],
        &data,
        &url,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Dry run: nothing was changed"), "{out}");
    assert!(out.contains("sessions ended        2"), "{out}");
    for (p, t) in [(&a, &staff_a), (&b, &staff_a), (&a, &staff_b), (&b, &boss)] {
        assert_eq!(me(p, t).await.status(), 200);
    }
    let (_, out, _) = pg_cli(&["incident", "status"], &data, &url);
    assert!(out.contains("No incident is in force"), "{out}");

    // The lockdown, from the command line: every node refuses at once.
    let (code, out, err) = pg_cli(
        &[
            "incident",
            "lockdown",
            "--reason",
            "credentials leaked",
            "--break-glass",
            "boss@example.com",
        ],
        &data,
        &url,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Locked down (inc_"), "{out}");
    for p in [&a, &b] {
        for t in [&staff_a, &staff_b] {
            assert_eq!(me(p, t).await.status(), 401);
        }
        assert_eq!(
            me(p, &boss).await.status(),
            200,
            "the break-glass session lives"
        );
        let r = login(p, "staff@example.com").await;
        assert_eq!(r.status(), 401, "answered like a wrong password");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "invalid_credentials");
        // Administrators still sign in.
        token(login(p, "boss@example.com").await).await;
    }
    for p in [&a, &b] {
        let mut seen = false;
        for _ in 0..50 {
            if me(p, &boss)
                .await
                .headers()
                .contains_key("rampart-lockdown")
            {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "every node marks its answers while locked down");
    }
    let (_, out, _) = pg_cli(&["incident", "status"], &data, &url);
    assert!(out.contains("record signed and checked"), "{out}");
    // `scan self` says so.
    let (_, out, err) = pg_cli(&["scan", "self", "--format", "json"], &data, &url);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "ops.lockdown" && f["severity"] == "warning"),
        "{findings:?}"
    );

    // Lifted on the command line: sign-in works on both nodes again.
    let (code, out, err) = pg_cli(&["incident", "lift"], &data, &url);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Lifted inc_"), "{out}");
    for p in [&a, &b] {
        let t = token(login(p, "staff@example.com").await).await;
        assert_eq!(me(p, &t).await.status(), 200);
    }
    let (code, _, err) = pg_cli(&["incident", "lift"], &data, &url);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such incident is in force"), "{err}");
}

/// `rampart incident export` of the day from `since`, into `out`.
fn export(
    data: &std::path::Path,
    since: rampart_core::Timestamp,
    out: &std::path::Path,
) -> (Option<i32>, String, String) {
    rampart_run(
        &[
            "incident",
            "export",
            "--since",
            &since.to_rfc3339(),
            "--until",
            &since.plus(Duration::from_secs(86_400)).to_rfc3339(),
            "--out",
            out.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    )
}

#[tokio::test]
async fn the_forensic_bundle_verifies_and_fails_after_any_edit() {
    let mut s = TestServer::start().await;
    let since = rampart_core::Clock::now(s.clock.as_ref());
    let admin = s.admin().await;
    let user = s.user("someone@example.com").await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "someone@example.com", "password": "a wrong guess 123456"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    s.step_up("owner@example.com", &admin).await;
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "bundle test", "accounts": ["someone@example.com"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(me(&s, &user).await.status(), 401);
    let data = s.data_dir();
    let out = s.dir.path().join("evidence");
    s.stop().await;

    let (code, stdout, err) = export(&data, since, &out);
    assert_eq!(code, Some(0), "{err}");
    let bundle = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(stdout.contains(&bundle.display().to_string()), "{stdout}");
    let key = data.join("audit.pub");
    let verify = |dir: &std::path::Path| {
        rampart_run(
            &[
                "incident",
                "verify-bundle",
                dir.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
            None,
        )
    };
    let (code, ok, err) = verify(&bundle);
    assert_eq!(code, Some(0), "{ok}{err}");
    assert!(ok.starts_with("OK:"), "{ok}");
    // Every event of the stopped server is under a signed checkpoint.
    let manifest = std::fs::read_to_string(bundle.join("MANIFEST")).unwrap();
    let m: Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    assert!(m["events"].as_u64().unwrap() >= 5, "{m}");
    assert_eq!(m["events"], m["proven"], "{m}");
    let events = std::fs::read_to_string(bundle.join("events.ndjson")).unwrap();
    assert!(events.contains("incident.lockdown"));
    assert!(events.contains("login_failure"));
    let incidents = std::fs::read_to_string(bundle.join("incidents.json")).unwrap();
    assert!(incidents.contains("bundle test"));
    // Nothing secret: no password, no key, no master key.
    let master = std::fs::read_to_string(data.join("master.key")).unwrap();
    for f in std::fs::read_dir(&bundle).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(STRONG));
        assert!(!text.contains(master.trim()));
    }

    // Any edit, addition or removal is caught.
    let copy = |name: &str| {
        let dir = s.dir.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for f in std::fs::read_dir(&bundle).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
        dir
    };
    let edited = copy("edited");
    let text = events.replacen("login_failure", "login_success", 1);
    std::fs::write(edited.join("events.ndjson"), text).unwrap();
    let (code, out, _) = verify(&edited);
    assert_eq!(code, Some(3));
    assert!(out.contains("events.ndjson was changed"), "{out}");

    let added = copy("added");
    std::fs::write(added.join("notes.txt"), "planted").unwrap();
    assert_eq!(verify(&added).0, Some(3));

    let removed = copy("removed");
    std::fs::remove_file(removed.join("alerts.json")).unwrap();
    assert_eq!(verify(&removed).0, Some(3));

    let resigned = copy("resigned");
    let forged = manifest.replacen("\"proven\":", "\"proven\": ", 1);
    std::fs::write(resigned.join("MANIFEST"), forged).unwrap();
    let (code, out, _) = verify(&resigned);
    assert_eq!(code, Some(3));
    assert!(out.contains("not signed by this audit key"), "{out}");

    // Events removed from the database before an export leave a gap the
    // check names, although that bundle's manifest is signed.
    let store = rampart_store::open(&format!(
        "sqlite://{}?mode=rw",
        data.join("rampart.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE action = 'login_failure' AND seq > 0")
        .execute(store.pool())
        .await
        .unwrap();
    rampart_core::Store::close(&store).await;
    let later = s.dir.path().join("later");
    let (code, _, err) = export(&data, since, &later);
    assert_eq!(code, Some(0), "{err}");
    let gapped = std::fs::read_dir(&later)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (code, out, _) = verify(&gapped);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("has a gap"), "{out}");

    let proof = copy("proof");
    let proofs = std::fs::read_to_string(bundle.join("proofs.ndjson")).unwrap();
    let mut lines: Vec<&str> = proofs.lines().collect();
    lines.swap(0, 1);
    std::fs::write(proof.join("proofs.ndjson"), lines.join("\n") + "\n").unwrap();
    assert_eq!(verify(&proof).0, Some(3));
}

#[tokio::test]
async fn the_response_plan_is_written_once_and_served_to_administrators() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let user = s.user("staff@example.com").await;
    let r = s.get_auth("/api/v1/admin/incident/plan", &admin).await;
    problem(r, 404, "no_plan").await;
    let data = s.data_dir();
    let d = data.to_str().unwrap().to_owned();
    let init = move |force: bool| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["incident", "plan", "init", "--data-dir", d.as_str()];
            if force {
                args.push("--force");
            }
            rampart_run(&args, None)
        })
    };
    let (code, out, err) = init(false).await.unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("incident-plan.md"), "{out}");
    let r = s.get_auth("/api/v1/admin/incident/plan", &admin).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let plan = r.text().await.unwrap();
    for part in [
        "Who to call",
        "The first hour",
        "Evidence to keep",
        "72 hours",
        "rampart incident lockdown",
    ] {
        assert!(plan.contains(part), "{part}");
    }
    // Only administrators read it; an existing plan is never overwritten
    // unless asked.
    let r = s.get_auth("/api/v1/admin/incident/plan", &user).await;
    assert_eq!(r.status(), 403);
    std::fs::write(data.join("incident-plan.md"), "# Our plan\n").unwrap();
    let (code, _, err) = init(false).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("incident-plan.md")).unwrap(),
        "# Our plan\n"
    );
    let (code, _, _) = init(true).await.unwrap();
    assert_eq!(code, Some(0));
    assert!(std::fs::read_to_string(data.join("incident-plan.md"))
        .unwrap()
        .contains("72 hours"));
}

#[tokio::test]
async fn drills_are_overdue_after_the_period_and_not_after_a_drill() {
    let s = TestServer::start().await;
    s.user("someone@example.com").await;
    let store = s.running().auth.store().clone();
    let now = rampart_core::Clock::now(s.clock.as_ref());
    let day = Duration::from_secs(86_400);
    // Before any drill, the period runs from the trail's first event.
    assert_eq!(
        rampart::incident::drill_overdue(store.as_ref(), 90, now)
            .await
            .unwrap(),
        None
    );
    let later = now.plus(day * 91);
    assert_eq!(
        rampart::incident::drill_overdue(store.as_ref(), 90, later)
            .await
            .unwrap(),
        Some(91)
    );
    assert_eq!(
        rampart::incident::drill_overdue(store.as_ref(), 0, later)
            .await
            .unwrap(),
        None
    );
    // A drill resets it.
    store
        .begin_drill("drill_t", "h", later, later.plus(day))
        .await
        .unwrap();
    store.end_drill("drill_t", later, "{}").await.unwrap();
    assert_eq!(
        rampart::incident::drill_overdue(store.as_ref(), 90, later.plus(day * 10))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        rampart::incident::drill_overdue(store.as_ref(), 90, later.plus(day * 95))
            .await
            .unwrap(),
        Some(95)
    );
}

#[tokio::test]
async fn reenrolment_removes_second_factors_and_an_administrators_password_with_them() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let second = second_admin(&s).await;
    let member = s.user("member@example.com").await;
    s.enrol_totp("member@example.com", &member).await;
    drop(second);
    s.step_up("owner@example.com", &admin).await;
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "factors phished", "reenrol_mfa": ["member@example.com", "second@example.com"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let done: Value = r.json().await.unwrap();
    assert_eq!(
        done["mfa_resets"],
        json!(["member@example.com", "second@example.com"])
    );
    assert_eq!(
        done["password_resets"],
        json!(["second@example.com"]),
        "{done}"
    );
    assert_eq!(done["problems"], json!([]));
    let r = s
        .post_auth("/api/v1/admin/incident/lift", &admin, json!({}))
        .await;
    assert_eq!(r.status(), 200);
    // The member signs in with the password alone, to set a factor up
    // again; the administrator's password no longer works.
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "member@example.com", "password": STRONG}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["token"].is_string(), "{v}");
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "second@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    reset_code(&s, "second@example.com").await;
}

#[tokio::test]
async fn serve_reminds_of_an_overdue_drill_with_an_event_and_an_alert() {
    let s = TestServer::start().await;
    s.admin().await;
    // 91 days on, the reminder's first look finds no drill since the trail
    // began.
    s.clock.advance(Duration::from_secs(91 * 86_400));
    let admin = s.login_mfa("owner@example.com").await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let reminder = tokio::spawn(rampart::incident::remind_drills(
        s.running().auth.store().clone(),
        s.running().audit.clone(),
        s.clock.clone(),
        90,
        Duration::ZERO,
        rx,
    ));
    let mut alerted = Value::Null;
    for _ in 0..100 {
        let v: Value = s
            .get_auth("/api/v1/admin/alerts?rule=rampart-drill-overdue", &admin)
            .await
            .json()
            .await
            .unwrap();
        if v["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            alerted = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alerted["alerts"][0]["level"], "low", "{alerted}");
    let events = actions_in_trail(&s, &admin, "drill.overdue").await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["reason"].as_str().unwrap().contains("91 days"),
        "{events:?}"
    );
    stop.send(true).unwrap();
    reminder.await.unwrap();
}
