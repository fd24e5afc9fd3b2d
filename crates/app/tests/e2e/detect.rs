//! Intrusion detection and alerts (ADR 0012), end to end over HTTPS: a
//! scripted attack, the rule firing, the block on every node, the alert at
//! a real webhook receiver, and the safeguards.

use std::time::Duration;

use hmac::Mac;
use serde_json::{json, Value};

use crate::sinks::WebhookSink;
use crate::support::*;

const SECRET: &str = "alert-webhook-secret-0123456789abcdef";

/// Settings for a server that trusts 127.0.0.1 as its proxy (the attack's
/// address is the one `X-Forwarded-For` names) and delivers alerts to
/// `hook`.
fn detect_env(dir: &std::path::Path, hook: Option<&WebhookSink>) -> Vec<(String, String)> {
    let mut env = vec![(
        "RAMPART_GUARD__TRUSTED_PROXIES".to_owned(),
        r#"["127.0.0.1"]"#.to_owned(),
    )];
    if let Some(h) = hook {
        let secret = dir.join("alert-secret");
        std::fs::write(&secret, SECRET).unwrap();
        env.push((
            "RAMPART_DETECT__WEBHOOK_URL".to_owned(),
            format!("https://localhost:{}/alerts", h.port),
        ));
        env.push((
            "RAMPART_DETECT__WEBHOOK_SECRET_FILE".to_owned(),
            secret.display().to_string(),
        ));
        env.push((
            "RAMPART_DETECT__WEBHOOK_CA_FILE".to_owned(),
            h.cert.display().to_string(),
        ));
    }
    env
}

/// One sign-in attempt for `email` from `ip` (as the proxy names it).
async fn guess(s: &TestServer, email: &str, ip: &str) -> u16 {
    s.client
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": "Wrong-Guess-Password-1"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Credential stuffing: one guess at each of ten accounts from `ip`.
async fn stuff(s: &TestServer, ip: &str, tag: &str) {
    for i in 0..10 {
        guess(s, &format!("victim{i}-{tag}@example.com"), ip).await;
    }
}

fn signature_holds(post: &crate::sinks::Post) -> bool {
    let Some(sig) = &post.signature else {
        return false;
    };
    let Some((t, v1)) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&post.body);
    hex(&mac.finalize().into_bytes()) == v1
}

async fn status_from(s: &TestServer, path: &str, token: &str, ip: &str) -> u16 {
    s.client
        .get(s.url(path))
        .bearer_auth(token)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn credential_stuffing_is_blocked_on_every_node_and_alerted() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let hooks = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(hooks.path()).await;
    let a = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        env: detect_env(hooks.path(), Some(&hook)),
        ..Options::default()
    })
    .await;
    let admin = a.admin().await;
    let key = a.data_dir().join("master.key");
    let mut env_b = detect_env(hooks.path(), None);
    env_b.push((
        "RAMPART_MASTER_KEY_FILE".to_owned(),
        key.display().to_string(),
    ));
    let b = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        env: env_b,
        ..Options::default()
    })
    .await;
    b.user("bystander@example.com").await;
    let attacker = "198.51.100.23";
    // Sessions signed in where they are used (a session used from a
    // second place draws a rule of its own).
    let user_b = sign_in(&b, "bystander@example.com", attacker)
        .await
        .1
        .unwrap();
    let other_b = sign_in(&b, "bystander@example.com", "198.51.100.24")
        .await
        .1
        .unwrap();
    assert_eq!(status_from(&b, "/api/v1/me", &user_b, attacker).await, 200);

    stuff(&a, attacker, "a").await;

    // The rule fired on node A and blocked the address.
    let alert = wait_for_alert(&a, &admin, "rampart-credential-stuffing").await;
    assert_eq!(alert["source_ip"], attacker);
    assert_eq!(alert["level"], "high");
    assert_eq!(alert["evidence"].as_array().unwrap().len(), 10, "{alert}");
    let block = &alert["responses"][0];
    assert_eq!(block["response"], "block_address");
    assert_eq!(block["state"], "done", "{alert}");

    // Node B refuses the address within its block refresh (a second).
    let mut refused = false;
    for _ in 0..60 {
        if status_from(&b, "/api/v1/me", &user_b, attacker).await == 403 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "node B still serves the attacker");
    let r = b
        .client
        .get(b.url("/api/v1/me"))
        .bearer_auth(&user_b)
        .header("x-forwarded-for", attacker)
        .send()
        .await
        .unwrap();
    problem(r, 403, "address_blocked").await;
    // Everyone else is served, the attacker's neighbour too.
    assert_eq!(
        status_from(&b, "/api/v1/me", &other_b, "198.51.100.24").await,
        200
    );

    // The alert reached the webhook, signed; and node B lists it too.
    let post = hook.wait_for(1).await;
    assert!(signature_holds(&post), "bad signature {:?}", post.signature);
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["type"], "rampart.alert");
    assert_eq!(body["alert"]["rule_id"], "rampart-credential-stuffing");
    assert_eq!(body["alert"]["source_ip"], attacker);
    // Canary: neither the passwords tried nor the names tried reach the
    // alert, its delivery or the trail's events about it.
    let text = String::from_utf8_lossy(&post.body).to_string() + &alert.to_string();
    assert!(!text.contains("Wrong-Guess-Password"), "{text}");
    assert!(!text.contains("victim0-a"), "{text}");
    *b.totp.lock().unwrap() = a.totp.lock().unwrap().clone();
    b.clock.advance(Duration::from_secs(60));
    let admin_b = b.login_mfa("owner@example.com").await;
    let on_b = alerts(&b, &admin_b, "?status=open").await;
    assert!(on_b.iter().any(|x| x["id"] == alert["id"]));

    // Every evidence event is in the trail, and the trail verifies.
    let ev: Value = a
        .get_auth("/api/v1/admin/events?type=alert.raised", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(!ev["events"].as_array().unwrap().is_empty());
    let failures = a
        .get_auth("/api/v1/admin/events?type=login_failure&limit=50", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(failures.contains("login.key"), "{failures}");
    assert!(!failures.contains("victim0-a") && !failures.contains("Wrong-Guess"));
    let dir = a.data_dir();
    let (code, out, err) = rampart_run_env(
        &["audit", "verify", "--data-dir", dir.to_str().unwrap()],
        None,
        &[("RAMPART_DATABASE_URL", &url)],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
}

#[tokio::test]
async fn an_alert_pending_delivery_survives_a_restart() {
    let hooks = tempfile::tempdir().unwrap();
    // A port for the receiver, down while the alert is raised.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = WebhookSink {
        url: String::new(),
        cert: crate::sinks::tls_for_localhost(hooks.path(), "webhook").0,
        posts: Default::default(),
        port,
    };
    let env = detect_env(hooks.path(), Some(&down));
    let mut s = TestServer::with(Options {
        env: env.clone(),
        ..Options::default()
    })
    .await;
    let admin = s.admin().await;
    stuff(&s, "203.0.113.77", "r").await;
    let alert = wait_for_alert(&s, &admin, "rampart-credential-stuffing").await;
    // The first attempt fails, and says so.
    let mut failed = false;
    for _ in 0..200 {
        let ev: Value = s
            .get_auth("/api/v1/admin/events?type=alert.delivery_failed", &admin)
            .await
            .json()
            .await
            .unwrap();
        if !ev["events"].as_array().unwrap().is_empty() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "a failed delivery is visible as an event");
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());

    // The receiver comes up (same port, same certificate); Rampart starts
    // again on the same data and delivers the alert it had queued, once
    // its backoff has passed.
    let hook = WebhookSink::start_on(hooks.path(), port).await;
    let s = TestServer::with(Options {
        env,
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    s.clock.advance(Duration::from_secs(700));
    let post = hook.wait_for(1).await;
    assert!(signature_holds(&post));
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["alert"]["id"], alert["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.posts.lock().unwrap().len(), 1, "delivered once");
}

#[tokio::test]
async fn an_administrators_address_is_not_blocked_and_a_broken_rule_file_is_refused() {
    let hooks = tempfile::tempdir().unwrap();
    let s = detect_server(hooks.path()).await;
    let admin = s.admin().await;
    // An administrator signs in from the office network (IPv6: a block
    // would cover its whole /64).
    let office = "2001:db8:5:6::9";
    let colleague = "2001:db8:5:6::77";
    s.clock.advance(Duration::from_secs(60));
    let r: Value = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", office)
        .json(&json!({"email": "owner@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = s.next_totp("owner@example.com");
    let r = s
        .client
        .post(s.url("/api/v1/auth/mfa"))
        .header("x-forwarded-for", office)
        .json(&json!({"mfa_token": r["mfa_token"], "method": "totp", "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A colleague's machine in the same /64 stuffs credentials.
    stuff(&s, colleague, "o").await;
    let alert = wait_for_alert(&s, &admin, "rampart-credential-stuffing").await;
    assert_eq!(alert["responses"][0]["state"], "withheld", "{alert}");
    assert!(alert["responses"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("administrator"));
    assert_eq!(status_from(&s, "/api/v1/me", &admin, office).await, 200);

    // Acknowledge, then resolve (a fresh step-up).
    let id = alert["id"].as_str().unwrap();
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{id}/acknowledge"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "acknowledged");
    assert!(v["changed_by"].as_str().unwrap().starts_with("admin:"));

    // A user rule, then a broken file: refused with its line, and the
    // rules in force stay.
    let rules = s.data_dir().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("mine.yml"),
        "title: Sign-out\nid: my-logout\nlogsource: {product: rampart}\ndetection:\n  s:\n    event.action: logout\n  condition: s\nlevel: medium\n",
    )
    .unwrap();
    wait_for_event(&s, &admin, "detect.rules_loaded").await;
    let user = s.user("leaver@example.com").await;
    assert_eq!(
        s.post_auth("/api/v1/auth/logout", &user, json!({}))
            .await
            .status(),
        204
    );
    wait_for_alert(&s, &admin, "my-logout").await;
    std::fs::write(
        rules.join("mine.yml"),
        "title: Broken\nid: my-logout\ndetection:\n  s: [oops\n",
    )
    .unwrap();
    let refused = wait_for_event(&s, &admin, "detect.rules_refused").await;
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("mine.yml, line"),
        "{refused}"
    );
    // And a person hears of it: an alert, like any rule's.
    let alert = wait_for_alert(&s, &admin, "rampart-rules-refused").await;
    assert!(
        alert["title"].as_str().unwrap().contains("mine.yml, line"),
        "{alert}"
    );
    let user = s.login("leaver@example.com", STRONG).await;
    s.post_auth("/api/v1/auth/logout", &user, json!({})).await;
    // The rule in force fired again for the same account and address:
    // the same open alert, counted twice.
    let mut count = 0;
    for _ in 0..200 {
        count = alerts(&s, &admin, "?rule=my-logout").await[0]["count"]
            .as_u64()
            .unwrap();
        if count == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, 2);

    // A 404 is an event (folded per address), for the not-found rule.
    assert_eq!(
        status_from(&s, "/api/v1/no-such-thing", &admin, "192.0.2.44").await,
        404
    );
    let nf = wait_for_event(&s, &admin, "not_found").await;
    assert_eq!(nf["ip"], "192.0.2.44", "{nf}");
    // One a browser sent for another site's page is marked so, and the
    // rules do not count it against the reader.
    let r = s
        .client
        .get(s.url("/api/v1/also-missing"))
        .header("x-forwarded-for", "192.0.2.45")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let mut marked = Value::Null;
    for _ in 0..200 {
        let ev: Value = s
            .get_auth("/api/v1/admin/events?type=not_found&ip=192.0.2.45", &admin)
            .await
            .json()
            .await
            .unwrap();
        if let Some(e) = ev["events"].as_array().unwrap().first() {
            marked = e.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        marked["fields"]["http.request.cross_site"], true,
        "{marked}"
    );

    // Bad queries are 400s.
    for q in [
        "?status=maybe",
        "?level=huge",
        "?limit=0",
        "?cursor=zzz",
        "?colour=red",
    ] {
        let r = s
            .get_auth(&format!("/api/v1/admin/alerts{q}"), &admin)
            .await;
        problem(r, 400, "invalid_query").await;
    }
    let user = s.user("notadmin@example.com").await;
    assert_eq!(
        s.get_auth("/api/v1/admin/alerts", &user).await.status(),
        403
    );
}

/// A server set up as `detect_env` says, with no webhook.
async fn detect_server(hooks: &std::path::Path) -> TestServer {
    TestServer::with(Options {
        env: detect_env(hooks, None),
        ..Options::default()
    })
    .await
}

/// The events of `kind` in the trail, newest first.
async fn events(s: &TestServer, admin: &str, kind: &str) -> Vec<Value> {
    let v: Value = s
        .get_auth(&format!("/api/v1/admin/events?type={kind}"), admin)
        .await
        .json()
        .await
        .unwrap();
    v["events"].as_array().unwrap().clone()
}

async fn wait_for_event(s: &TestServer, admin: &str, kind: &str) -> Value {
    for _ in 0..200 {
        if let Some(e) = events(s, admin, kind).await.into_iter().next() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event within 10 s");
}

#[tokio::test]
async fn a_password_guessed_after_failures_loses_its_session() {
    let hooks = tempfile::tempdir().unwrap();
    let s = detect_server(hooks.path()).await;
    let admin = s.admin().await;
    s.user("target@example.com").await;
    let thief = "192.0.2.200";
    // A credential list: a few names, then one that works.
    for name in [
        "first@example.com",
        "second@example.com",
        "target@example.com",
    ] {
        assert_eq!(guess(&s, name, thief).await, 401);
    }
    let r: Value = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", thief)
        .json(&json!({"email": "target@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stolen = r["token"].as_str().unwrap().to_owned();
    let alert = wait_for_alert(&s, &admin, "rampart-success-after-failures").await;
    assert_eq!(alert["level"], "critical");
    assert_eq!(alert["responses"][0]["response"], "revoke_sessions");
    assert_eq!(alert["responses"][0]["state"], "done", "{alert}");
    assert_eq!(status_from(&s, "/api/v1/me", &stolen, thief).await, 401);
}

#[tokio::test]
async fn a_rule_can_require_a_step_up_before_the_next_request() {
    let hooks = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("data/rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("strict.yml"),
        "title: Users prove themselves twice\nid: my-step-up\nlogsource: {product: rampart}\n\
         detection:\n  s:\n    event.action: login_success\n    user.roles: member\n  condition: s\n\
         level: low\ncustom_attributes:\n  rampart.respond: [require_step_up]\n",
    )
    .unwrap();
    let s = TestServer::with(Options {
        env: detect_env(hooks.path(), None),
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let admin = s.admin().await;
    let token = s.user("careful@example.com").await;
    let alert = wait_for_alert(&s, &admin, "my-step-up").await;
    assert_eq!(alert["responses"][0]["state"], "done", "{alert}");
    let r = s.get_auth("/api/v1/me", &token).await;
    problem(r, 403, "step_up_required").await;
    let r = s
        .post_auth("/api/v1/auth/step-up", &token, json!({"password": STRONG}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 200);
    // The administrator's own session was never touched.
    assert_eq!(s.get_auth("/api/v1/me", &admin).await.status(), 200);
}

#[tokio::test]
async fn a_session_used_from_a_second_place_must_prove_its_owner() {
    let hooks = tempfile::tempdir().unwrap();
    let s = detect_server(hooks.path()).await;
    let admin = s.admin().await;
    s.user("roamer@example.com").await;
    let (status, token) = sign_in(&s, "roamer@example.com", "198.51.100.7").await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    // Another address of the same /24 is the same place: nothing moves.
    assert_eq!(
        status_from(&s, "/api/v1/me", &token, "198.51.100.99").await,
        200
    );
    // The token, used from elsewhere at once: the request is answered
    // (detection runs beside it), the session moves there, and the rule
    // asks its owner to prove themselves before anything else.
    let thief = "203.0.113.5";
    assert_eq!(status_from(&s, "/api/v1/me", &token, thief).await, 200);
    let moved = wait_for_event(&s, &admin, "session_moved").await;
    assert_eq!(moved["ip"], thief, "{moved}");
    assert_eq!(moved["reason"], "address", "{moved}");
    assert_eq!(
        moved["fields"]["session.previous_net"], "198.51.100.0/24",
        "{moved}"
    );
    assert!(moved["fields"]["session.quiet_secs"].as_u64().unwrap() < 600);
    let alert = wait_for_alert(&s, &admin, "rampart-session-second-place").await;
    assert_eq!(alert["responses"][0]["response"], "require_step_up");
    assert_eq!(alert["responses"][0]["state"], "done", "{alert}");
    let r = s
        .client
        .get(s.url("/api/v1/me"))
        .bearer_auth(&token)
        .header("x-forwarded-for", thief)
        .send()
        .await
        .unwrap();
    problem(r, 403, "step_up_required").await;
    assert_eq!(
        moved["fields"]["session.previous_ip"], "198.51.100.7",
        "{moved}"
    );
    // One move, one event: the same-/24 request recorded none.
    assert_eq!(events(&s, &admin, "session_moved").await.len(), 1);
    // The owner, back where they were, proves themselves and carries on.
    let r = s
        .client
        .post(s.url("/api/v1/auth/step-up"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"password": STRONG}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The proof anchored the session where it was given: no move back.
    assert_eq!(
        status_from(&s, "/api/v1/me", &token, "198.51.100.7").await,
        200
    );
    assert_eq!(events(&s, &admin, "session_moved").await.len(), 1);
}

async fn status_as(s: &TestServer, token: &str, ip: &str, agent: &str) -> u16 {
    s.client
        .get(s.url("/api/v1/me"))
        .bearer_auth(token)
        .header("x-forwarded-for", ip)
        .header("user-agent", agent)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_session_moves_with_its_device_not_with_a_browser_update() {
    let hooks = tempfile::tempdir().unwrap();
    let s = detect_server(hooks.path()).await;
    let admin = s.admin().await;
    s.user("agent@example.com").await;
    let home = "198.51.100.40";
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
    let r: Value = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", home)
        .header("user-agent", firefox)
        .json(&json!({"email": "agent@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["token"].as_str().unwrap().to_owned();
    // The same browser, updated; and the same client over IPv6 (one
    // dual-stack machine): neither is a move.
    let updated = firefox.replace("130.0", "131.0");
    assert_eq!(status_as(&s, &token, home, &updated).await, 200);
    assert_eq!(status_as(&s, &token, "2001:db8:40::1", firefox).await, 200);
    // Another device at the same address: a move by user agent.
    assert_eq!(status_as(&s, &token, home, "curl/8.5.0").await, 200);
    let moved = wait_for_event(&s, &admin, "session_moved").await;
    assert_eq!(moved["reason"], "agent", "{moved}");
    assert_eq!(
        moved["fields"]["session.previous_user_agent"], firefox,
        "{moved}"
    );
    wait_for_alert(&s, &admin, "rampart-session-second-place").await;
    assert_eq!(events(&s, &admin, "session_moved").await.len(), 1);
}

#[tokio::test]
async fn rules_list_and_test_replay_an_export_as_the_server_saw_it() {
    let hooks = tempfile::tempdir().unwrap();
    let s = detect_server(hooks.path()).await;
    let admin = s.admin().await;
    stuff(&s, "198.51.100.99", "t").await;
    wait_for_alert(&s, &admin, "rampart-credential-stuffing").await;
    s.running().audit.flush().await;
    let data = s.data_dir();
    let dir = data.to_str().unwrap();
    let out = hooks.path().join("events.jsonl");
    let (code, _, err) = rampart_run(
        &[
            "audit",
            "export",
            "--data-dir",
            dir,
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let events = out.to_str().unwrap();
    // `rampart rules test RULE --events FILE [--rules FILE]` on this data.
    let rules_test = |rule: &str, extra: Option<&std::path::Path>| {
        let mut args = vec!["rules", "test", rule, "--events", events, "--data-dir", dir];
        if let Some(f) = extra {
            args.extend(["--rules", f.to_str().unwrap()]);
        }
        rampart_run(&args, None)
    };
    let (code, stdout, err) = rules_test("rampart-credential-stuffing", None);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("fired 1 time over"), "{stdout}");
    assert!(
        stdout.contains("rampart.detect.source_net=198.51.100.99"),
        "{stdout}"
    );
    // A building block reports every event it matches.
    let (_, stdout, _) = rules_test("rampart-login-failure", None);
    assert!(stdout.contains("fired 10 times"), "{stdout}");
    // A rule file tried before it is turned on, and a broken one.
    let mine = hooks.path().join("mine.yml");
    std::fs::write(&mine, "title: Any failure\nid: my-failures\nlogsource: {product: rampart}\ndetection:\n  s:\n    event.action: login_failure\n  condition: s\n").unwrap();
    let (_, stdout, err) = rules_test("my-failures", Some(&mine));
    assert!(
        stdout.contains("my-failures: fired 10 times"),
        "{stdout}{err}"
    );
    std::fs::write(&mine, "title: Broken\nid: b\ndetection:\n  s: [oops\n").unwrap();
    let (code, _, err) = rules_test("b", Some(&mine));
    assert_eq!(code, Some(1));
    assert!(err.contains("mine.yml, line"), "{err}");
    let (code, stdout, _) = rampart_run(&["rules", "list", "--data-dir", dir], None);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("rampart-password-spraying"), "{stdout}");
    assert!(
        stdout.contains("value_count 20 in 1800s by event.action"),
        "{stdout}"
    );
    assert!(
        stdout.contains("value_count 10 in 600s by rampart.detect.source_net"),
        "{stdout}"
    );
}

/// Signs `email` in with its password from `ip`; the session token.
async fn sign_in(s: &TestServer, email: &str, ip: &str) -> (u16, Option<String>) {
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": STRONG}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or_default();
    (status, v["token"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn responses_wait_for_a_second_administrator_and_can_be_undone() {
    let sinks = tempfile::tempdir().unwrap();
    let smtp = crate::sinks::SmtpSink::start(sinks.path(), true).await;
    let mut opts = Options::default()
        .env("RAMPART_NOTIFIER", "deliver")
        // These tests are about codes and alerts: addresses need no proof.
        .env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "optional")
        .env("RAMPART_SMTP__HOST", "localhost")
        .env("RAMPART_SMTP__PORT", &smtp.port.to_string())
        .env("RAMPART_SMTP__SECURITY", "tls")
        .env("RAMPART_SMTP__FROM", "Rampart <security@example.com>")
        .env("RAMPART_SMTP__CA_FILE", smtp.cert.to_str().unwrap());
    opts.env.extend(detect_env(sinks.path(), None));
    let s = TestServer::with(opts).await;
    let owner = s.admin().await;
    let data = s.data_dir();
    let dir = data.to_str().unwrap();
    let rules = data.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("mine.yml"),
        "title: Administrator signed in\nid: my-admin-login\nlogsource: {product: rampart}\n\
         detection:\n  s:\n    event.action: login_success\n    user.roles: admin\n  condition: s\n\
         level: high\ncustom_attributes:\n  rampart.respond: [revoke_sessions]\n\
         ---\n\
         title: Member signed out\nid: my-lock\nlogsource: {product: rampart}\n\
         detection:\n  s:\n    event.action: logout\n  condition: s\n\
         level: low\ncustom_attributes:\n  rampart.respond: [lock_account]\n",
    )
    .unwrap();
    wait_for_event(&s, &owner, "detect.rules_loaded").await;

    // A second administrator signs in: the rule asks to end their
    // sessions, which waits for another administrator.
    let (code, _, err) = rampart_run(
        &[
            "admin",
            "create",
            "--email",
            "second@example.com",
            "--password-stdin",
            "--data-dir",
            dir,
        ],
        Some(&format!("{STRONG}\n")),
    );
    assert_eq!(code, Some(0), "{err}");
    let (status, second) = sign_in(&s, "second@example.com", "198.51.100.70").await;
    assert_eq!(status, 200);
    let second = second.unwrap();
    let alert = wait_for_alert(&s, &owner, "my-admin-login").await;
    assert_eq!(
        alert["responses"][0]["state"], "awaiting_confirmation",
        "{alert}"
    );
    assert_eq!(
        status_from(&s, "/api/v1/me", &second, "198.51.100.70").await,
        200
    );
    // The alert was emailed to the administrators.
    let mut emailed = false;
    for _ in 0..200 {
        emailed = smtp.mail.lock().unwrap().iter().any(|m| {
            m.to.iter().any(|t| t.contains("owner@example.com"))
                && m.data
                    .contains("Rampart alert (high): Administrator signed in")
        });
        if emailed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(emailed, "the alert was not emailed to the administrators");

    // Not by the administrator it is about.
    s.enrol_totp("second@example.com", &second).await;
    s.step_up("second@example.com", &second).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{id}/confirm"),
            &second,
            json!({}),
        )
        .await;
    problem(r, 403, "self_confirmation").await;
    // By another: carried out, and the second administrator is signed out.
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{id}/confirm"),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["responses"][0]["state"], "done", "{v}");
    assert!(v["responses"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("confirmed by admin:"));
    assert_eq!(s.get_auth("/api/v1/me", &second).await.status(), 401);
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{id}/confirm"),
            &owner,
            json!({}),
        )
        .await;
    problem(r, 409, "nothing_to_confirm").await;

    // A member's sign-out locks the account; undo lifts the lock.
    let member = s.user("member@example.com").await;
    assert_eq!(
        s.post_auth("/api/v1/auth/logout", &member, json!({}))
            .await
            .status(),
        204
    );
    let lock = wait_for_alert(&s, &owner, "my-lock").await;
    assert_eq!(lock["responses"][0]["state"], "done", "{lock}");
    assert_eq!(sign_in(&s, "member@example.com", "192.0.2.5").await.0, 401);
    let lid = lock["id"].as_str().unwrap().to_owned();
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{lid}/undo"),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["responses"][0]["state"], "undone", "{v}");
    assert_eq!(sign_in(&s, "member@example.com", "192.0.2.5").await.0, 200);
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{lid}/undo"),
            &owner,
            json!({}),
        )
        .await;
    problem(r, 409, "nothing_to_undo").await;

    // Resolved once; a resolved alert does not change.
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{lid}/resolve"),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = s
        .post_auth(
            &format!("/api/v1/admin/alerts/{lid}/acknowledge"),
            &owner,
            json!({}),
        )
        .await;
    problem(r, 409, "alert_resolved").await;
    let resolved = alerts(&s, &owner, "?status=resolved").await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["id"], lid.as_str());
    // Unknown ids are 404s, for every change.
    for what in ["acknowledge", "resolve", "confirm", "undo"] {
        let r = s
            .post_auth(
                &format!("/api/v1/admin/alerts/alr_nope/{what}"),
                &owner,
                json!({}),
            )
            .await;
        problem(r, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_flood_of_alerts_does_not_flood_the_receiver() {
    let hooks = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(hooks.path()).await;
    let mut env = detect_env(hooks.path(), Some(&hook));
    env.push(("RAMPART_DETECT__DELIVERIES_PER_HOUR".into(), "2".into()));
    let s = TestServer::with(Options {
        env,
        ..Options::default()
    })
    .await;
    let admin = s.admin().await;
    for i in 0..4 {
        stuff(&s, &format!("203.0.113.{}", 100 + i), &format!("f{i}")).await;
    }
    for _ in 0..200 {
        if alerts(&s, &admin, "?rule=rampart-credential-stuffing")
            .await
            .len()
            == 4
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        alerts(&s, &admin, "?rule=rampart-credential-stuffing")
            .await
            .len(),
        4
    );
    hook.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        hook.posts.lock().unwrap().len(),
        2,
        "two delivered, two only listed"
    );
    let ev = s
        .get_auth("/api/v1/admin/events?type=alert.raised&limit=10", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(ev.contains("held: deliveries_per_hour reached"), "{ev}");
}
