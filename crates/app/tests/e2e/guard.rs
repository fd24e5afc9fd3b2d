//! Issue 6: the guard. Address rules (v4 and v6), forwarding headers,
//! rate limits, stored blocks across restarts and nodes, per-address
//! brute-force blocks, inspection modes per route group, folded events.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

async fn status(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = s.client.get(s.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Waits (at most 5 s) until the server refuses this address.
async fn wait_until_blocked(s: &TestServer) {
    let started = std::time::Instant::now();
    while status(s, "/api/v1/healthz", &[]).await.0 != 403 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "address never blocked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A data dir for a second node of `a`'s database: as every node must, it
/// holds the same master key.
fn second_node_dir(a: &TestServer) -> tempfile::TempDir {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.path().join("data"))
        .unwrap();
    let key = dir.path().join("data").join("master.key");
    std::fs::copy(a.data_dir().join("master.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

async fn guard_events(s: &TestServer, kind: &str) -> Vec<Value> {
    let q = rampart_core::audit::EventQuery {
        actions: vec![kind.to_owned()],
        limit: 100,
        ..Default::default()
    };
    s.running().audit.flush().await;
    let events = s.running().auth.events(&q).await.unwrap();
    events
        .into_iter()
        .map(|e| json!({"reason": e.reason, "ip": e.source_ip}))
        .collect()
}

#[tokio::test]
async fn address_rules_per_group_deny_wins_and_v6_ranges_match() {
    // 127.0.0.1 may use the admin routes only if listed; a v6 range is
    // denied everywhere. The client address comes from a trusted proxy
    // (this test's own connection) so v6 clients can be played.
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env(
                "RAMPART_GUARD__ADMIN__ALLOW",
                r#"["10.0.0.0/8", "2001:db8:aa::/48"]"#,
            )
            .env(
                "RAMPART_GUARD__DENY",
                r#"["2001:db8:aa:bad::/64", "203.0.113.0/24"]"#,
            ),
    )
    .await;
    let admin = "/api/v1/admin/events";
    // Not in the admin allow list: refused before any authentication.
    let (st, body) = status(&s, admin, &[]).await;
    assert_eq!((st, body["code"].as_str()), (403, Some("address_denied")));
    assert_eq!(
        status(&s, "/api/v1/healthz", &[]).await.0,
        200,
        "other groups open"
    );
    // From an allowed v4 and v6 address the admin group is reachable (401:
    // on to authentication).
    assert_eq!(
        status(&s, admin, &[("x-forwarded-for", "10.9.8.7")])
            .await
            .0,
        401
    );
    assert_eq!(
        status(&s, admin, &[("x-forwarded-for", "2001:db8:aa:1::5")])
            .await
            .0,
        401
    );
    // Deny wins over allow, for v6 and v4.
    let (st, body) = status(&s, admin, &[("x-forwarded-for", "2001:db8:aa:bad::77")]).await;
    assert_eq!((st, body["code"].as_str()), (403, Some("address_denied")));
    assert_eq!(
        status(
            &s,
            "/api/v1/healthz",
            &[("x-forwarded-for", "203.0.113.50")]
        )
        .await
        .0,
        403
    );
    // Only the configured header (X-Forwarded-For by default) is read: a
    // client's own `Forwarded`, which a proxy passes through, is not.
    assert_eq!(
        status(&s, "/api/v1/healthz", &[("forwarded", "for=203.0.113.50")])
            .await
            .0,
        200
    );
    let rfc = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env("RAMPART_GUARD__FORWARDED_HEADER", "forwarded")
            .env("RAMPART_GUARD__DENY", r#"["2001:db8:aa:bad::/64"]"#),
    )
    .await;
    assert_eq!(
        status(
            &rfc,
            "/api/v1/healthz",
            &[("forwarded", "for=\"[2001:db8:aa:bad::1]:443\"")]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        status(
            &rfc,
            "/api/v1/healthz",
            &[("x-forwarded-for", "2001:db8:aa:bad::1")]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        status(
            &s,
            "/api/v1/healthz",
            &[("x-forwarded-for", "198.51.100.1")]
        )
        .await
        .0,
        200
    );
    let denied = guard_events(&s, "request_blocked").await;
    assert!(
        denied
            .iter()
            .any(|e| e["reason"].as_str().unwrap().starts_with("firewall.admin")),
        "{denied:?}"
    );
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_change_nothing() {
    // No trusted proxies (the default): a spoofed header neither escapes a
    // deny nor earns an allow, and events carry the real peer.
    let s = TestServer::with(
        Options::default().env("RAMPART_GUARD__ADMIN__ALLOW", r#"["10.0.0.0/8"]"#),
    )
    .await;
    for h in [
        ("x-forwarded-for", "10.0.0.1"),
        ("forwarded", "for=10.0.0.1"),
    ] {
        let (st, body) = status(&s, "/api/v1/admin/events", &[h]).await;
        assert_eq!(
            (st, body["code"].as_str()),
            (403, Some("address_denied")),
            "{h:?}"
        );
    }
    let denied = guard_events(&s, "request_blocked").await;
    assert!(denied.iter().all(|e| e["ip"] == "127.0.0.1"), "{denied:?}");

    let s =
        TestServer::with(Options::default().env("RAMPART_GUARD__DENY", r#"["127.0.0.1"]"#)).await;
    assert_eq!(
        status(&s, "/api/v1/healthz", &[("x-forwarded-for", "8.8.8.8")])
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn over_the_rate_is_429_with_retry_after_per_address() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env("RAMPART_GUARD__AUTH__IP_PER_MINUTE", "6")
            .env("RAMPART_GUARD__AUTH__IP_BURST", "3"),
    )
    .await;
    let login = |ip: &'static str| {
        s.client
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": "nobody@example.com", "password": "Wrong-Password-123"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(login("198.51.100.1").await.unwrap().status(), 401);
    }
    let r = login("198.51.100.1").await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    problem(r, 429, "rate_limited").await;
    // Another address has its own budget; other groups are not limited.
    assert_eq!(login("198.51.100.2").await.unwrap().status(), 401);
    assert_eq!(
        status(
            &s,
            "/api/v1/healthz",
            &[("x-forwarded-for", "198.51.100.1")]
        )
        .await
        .0,
        200
    );
    assert!(!guard_events(&s, "rate_limited").await.is_empty());
}

#[tokio::test]
async fn blocks_refuse_survive_a_restart_and_lift() {
    let mut s = TestServer::start().await;
    let guard = s.running().guard.clone();
    let block = guard
        .add_block(
            "127.0.0.0/8",
            Some(Duration::from_secs(600)),
            "drill",
            "cli",
        )
        .await
        .unwrap();
    let (st, body) = status(&s, "/api/v1/healthz", &[]).await;
    assert_eq!((st, body["code"].as_str()), (403, Some("address_blocked")));
    // A nonsensical block is refused with a reason.
    assert!(guard.add_block("0.0.0.0/0", None, "", "cli").await.is_err());
    assert!(guard
        .add_block("10.1.2.3/8", None, "", "cli")
        .await
        .is_err());

    // Stored: a restarted server still refuses.
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s2 = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    assert_eq!(status(&s2, "/api/v1/healthz", &[]).await.0, 403);
    assert!(s2.running().guard.lift_block(&block.id).await.unwrap());
    assert_eq!(status(&s2, "/api/v1/healthz", &[]).await.0, 200);
}

#[tokio::test]
async fn repeat_offenders_get_doubling_capped_blocks_and_expiry_frees_them() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__BLOCK_SECS", "60")
            .env("RAMPART_GUARD__BLOCK_MAX_SECS", "200"),
    )
    .await;
    let guard = s.running().guard.clone();
    let mut lengths = Vec::new();
    for _ in 0..4 {
        let b = guard
            .add_block("198.51.100.9", None, "", "auto:test")
            .await
            .unwrap();
        lengths.push((b.expires_at.millis() - b.created_at.millis()) / 1000);
        assert_eq!(b.network, "198.51.100.9/32");
    }
    assert_eq!(lengths, [60, 120, 200, 200]);
    // An expired block lets the address back in (controlled clock).
    guard
        .add_block("127.0.0.1", Some(Duration::from_secs(30)), "", "cli")
        .await
        .unwrap();
    assert_eq!(status(&s, "/api/v1/healthz", &[]).await.0, 403);
    s.clock.advance(Duration::from_secs(31));
    assert_eq!(status(&s, "/api/v1/healthz", &[]).await.0, 200);
}

#[tokio::test]
async fn administrators_block_and_unblock_through_the_api() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    s.step_up("owner@example.com", &admin).await;
    let post = |body: Value| {
        s.client
            .post(s.url("/api/v1/admin/blocks"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let r = post(json!({"network": "203.0.113.0/24", "reason": "scraper"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["network"], "203.0.113.0/24");
    assert_eq!(b["offence"], 1);
    problem(
        post(json!({"network": "127.0.0.0/8"})).await.unwrap(),
        409,
        "block_includes_you",
    )
    .await;
    problem(
        post(json!({"network": "not-an-ip"})).await.unwrap(),
        422,
        "invalid_block",
    )
    .await;
    let list: Value = s
        .get_auth("/api/v1/admin/blocks", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["blocks"].as_array().unwrap().len(), 1);
    let id = b["id"].as_str().unwrap();
    let del = |id: String| {
        s.client
            .delete(s.url(&format!("/api/v1/admin/blocks/{id}")))
            .bearer_auth(&admin)
            .send()
    };
    assert_eq!(del(id.to_owned()).await.unwrap().status(), 204);
    assert_eq!(del(id.to_owned()).await.unwrap().status(), 404);
    assert_eq!(guard_events(&s, "block_added").await.len(), 1);
    assert_eq!(guard_events(&s, "block_removed").await.len(), 1);
}

#[tokio::test]
async fn a_block_set_on_one_node_is_refused_by_another_within_two_seconds() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let a = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        ..Options::default()
    })
    .await;
    // Node b shares the database.
    let dir = second_node_dir(&a);
    let b = TestServer::with(Options {
        db: Db::Postgres(url),
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    assert_eq!(status(&b, "/api/v1/healthz", &[]).await.0, 200);
    a.running()
        .guard
        .add_block("127.0.0.1", Some(Duration::from_secs(600)), "", "cli")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if status(&b, "/api/v1/healthz", &[]).await.0 == 403 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "node b did not refuse within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn credential_stuffing_blocks_the_address_not_the_owner_elsewhere() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env("RAMPART_GUARD__IP_FAILURES", "8"),
    )
    .await;
    s.register("owner@shop.example").await;
    let login = |ip: &'static str, email: String, password: &'static str| {
        s.client
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    // One guess each at many accounts (stuffing), the owner's among them.
    for i in 0..8 {
        let email = if i == 3 {
            "owner@shop.example".to_owned()
        } else {
            format!("u{i}@shop.example")
        };
        assert_eq!(
            login("198.51.100.66", email, "Leaked-Password-2019")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let started = std::time::Instant::now();
    loop {
        let r = login("198.51.100.66", "u9@shop.example".into(), "x")
            .await
            .unwrap();
        if r.status() == 403 {
            problem(r, 403, "address_blocked").await;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "attacker never blocked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The owner, from another address, signs in at once.
    assert_eq!(
        login("203.0.113.5", "owner@shop.example".into(), STRONG)
            .await
            .unwrap()
            .status(),
        200
    );
    // Failures that name no client come from the trusted proxy itself,
    // which stands for everyone behind it: they never block it. (Another
    // address is blocked after them, so the proxy's turn has come.)
    let direct = |email: String| {
        s.client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": "Leaked-Password-2019"}))
            .send()
    };
    for i in 0..8 {
        assert_eq!(
            direct(format!("p{i}@shop.example")).await.unwrap().status(),
            401
        );
    }
    for i in 0..8 {
        login("198.51.100.77", format!("q{i}@shop.example"), "x")
            .await
            .unwrap();
    }
    while login("198.51.100.77", "q@shop.example".into(), "x")
        .await
        .unwrap()
        .status()
        != 403
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "second attacker never blocked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&s, "/api/v1/healthz", &[]).await.0, 200);
    let mut added = guard_events(&s, "block_added").await;
    while added.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        added = guard_events(&s, "block_added").await;
    }
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(
        added[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("ip_failures"),
        "{added:?}"
    );
}

#[tokio::test]
async fn inspection_blocks_heads_detects_record_bodies_and_modes_are_per_group() {
    let s = TestServer::with(
        Options::default().env("RAMPART_GUARD__BLOCK_BODIES_OF", r#"["strict_notes"]"#),
    )
    .await;
    // A probe in the query of an ordinary route: blocked, with an id to quote.
    let r = s
        .client
        .get(s.url("/api/v1/healthz?next=%27%20UNION%20SELECT%20password%20FROM%20accounts--"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = problem(r, 403, "request_blocked").await;
    assert_eq!(body["request_id"], id.as_str());
    assert!(body["detail"].as_str().unwrap().contains(&id));
    // An attack in a sign-in body: blocked. (Passwords themselves are
    // never run through the detectors: a password may contain anything.)
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "${jndi:ldap://x.example/a}", "password": "x"}),
        )
        .await;
    problem(r, 403, "request_blocked").await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "a@example.com", "password": "${jndi:ldap://x.example/a}"}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    // Half a probe in the query and half in the body (each below the
    // threshold alone) is one attack.
    let split = |query: &'static str, email: &'static str| {
        s.client
            .post(s.url(&format!("/api/v1/auth/login?q={query}")))
            .json(&json!({"email": email, "password": "x"}))
            .send()
    };
    let r = split("it%27s%20fine%27%20--", "user(x),").await.unwrap();
    problem(r, 403, "request_blocked").await;
    let r = split("it%27s%20fine%27%20--", "a@example.com")
        .await
        .unwrap();
    problem(r, 401, "invalid_credentials").await;
    let r = split("plain", "user(x),").await.unwrap();
    assert_ne!(r.status(), 403);

    // A record that quotes an attack is stored (detect), and recorded.
    let admin = s.admin().await;
    s.step_up("owner@example.com", &admin).await;
    for name in ["notes", "strict_notes"] {
        let r = s
            .post_auth(
                "/api/v1/admin/collections",
                &admin,
                json!({"name": name, "fields": {"text": {"type": "text", "max_length": 500}},
                       "access": {"create": ["owner"], "read": ["owner"]}}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let quote = json!({"text": "Customer wrote: <script>alert(1)</script> in the form"});
    let r = s
        .post_auth("/api/v1/collections/notes/records", &admin, quote.clone())
        .await;
    assert_eq!(r.status(), 201);
    let r = s
        .post_auth("/api/v1/collections/strict_notes/records", &admin, quote)
        .await;
    problem(r, 403, "request_blocked").await;
    // Block-mode collections are matched as the router reads the name.
    let r = s
        .post_auth(
            "/api/v1/collections/strict%5Fnotes/records",
            &admin,
            json!({"text": "<script>alert(1)</script>"}),
        )
        .await;
    problem(r, 403, "request_blocked").await;
    let matches = guard_events(&s, "inspection_match").await;
    assert!(
        matches
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("detected")),
        "{matches:?}"
    );
    assert!(
        matches
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("blocked")),
        "{matches:?}"
    );
    // Events name rules, never the values.
    assert!(matches
        .iter()
        .all(|e| !e["reason"].as_str().unwrap().contains("alert(1)")));

    // With inspection off for a group, the same probe passes.
    let off = TestServer::with(Options::default().env("RAMPART_GUARD__API__INSPECT", "off")).await;
    let (st, _) = status(
        &off,
        "/api/v1/healthz?next=%27%20UNION%20SELECT%20password%20FROM%20accounts--",
        &[],
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn repeated_events_are_folded_into_counts_not_dropped() {
    let s =
        TestServer::with(Options::default().env("RAMPART_GUARD__DENY", r#"["127.0.0.1"]"#)).await;
    for _ in 0..25 {
        assert_eq!(status(&s, "/api/v1/healthz", &[]).await.0, 403);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        guard_events(&s, "request_blocked").await.len(),
        1,
        "one event for the first"
    );
    s.clock.advance(Duration::from_secs(61));
    s.running().guard.flush_events().await;
    let events = guard_events(&s, "request_blocked").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("repeated 24 more times"),
        "{events:?}"
    );
}

// Multi-threaded: the commands below block this thread while they write
// to the database, and the in-process server must keep running meanwhile
// (on one thread, a server task caught inside a write transaction held the
// lock until the command gave up: "database is locked").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_command_reaches_a_running_server() {
    let s = TestServer::start().await;
    let dir = s.data_dir();
    let dir = dir.to_str().unwrap();
    let (ok, out, err) = rampart_cli(
        &[
            "block",
            "add",
            "127.0.0.1",
            "--for",
            "2h",
            "--reason",
            "drill",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("blocked 127.0.0.1/32 until"), "{out}");
    let started = std::time::Instant::now();
    while status(&s, "/api/v1/healthz", &[]).await.0 != 403 {
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the running server never refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out, _) = rampart_cli(&["block", "list", "--data-dir", dir], None);
    assert!(
        ok && out.contains("127.0.0.1/32") && out.contains("drill"),
        "{out}"
    );
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("blk_"))
        .unwrap()
        .to_owned();
    let (ok, _, err) = rampart_cli(&["block", "add", "10.1.2.3/8", "--data-dir", dir], None);
    assert!(!ok && err.contains("10.0.0.0/8"), "{err}");
    let (ok, _, err) = rampart_cli(
        &["block", "add", "1.2.3.4", "--for", "5x", "--data-dir", dir],
        None,
    );
    assert!(!ok && err.contains("unit"), "{err}");
    let (ok, out, err) = rampart_cli(&["block", "remove", &id, "--data-dir", dir], None);
    assert!(ok, "{out}{err}");
    let started = std::time::Instant::now();
    while status(&s, "/api/v1/healthz", &[]).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "never lifted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, _, err) = rampart_cli(&["block", "remove", &id, "--data-dir", dir], None);
    assert!(!ok && err.contains("no block"), "{err}");
}

#[tokio::test]
async fn shared_sign_in_limits_hold_across_nodes() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let limits = |o: Options| {
        o.env("RAMPART_GUARD__AUTH__IP_PER_MINUTE", "6")
            .env("RAMPART_GUARD__AUTH__IP_BURST", "3")
            .env("RAMPART_GUARD__SHARED_AUTH_LIMITS", "true")
    };
    let a = TestServer::with(limits(Options {
        db: Db::Postgres(url.clone()),
        ..Options::default()
    }))
    .await;
    let dir = second_node_dir(&a);
    let b = TestServer::with(limits(Options {
        db: Db::Postgres(url),
        dir: Some(dir),
        ..Options::default()
    }))
    .await;
    let login = |s: &TestServer| {
        s.client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"email": "nobody@example.com", "password": "Wrong-Password-123"}))
            .send()
    };
    // A burst of 3 across both nodes, not 3 on each.
    assert_eq!(login(&a).await.unwrap().status(), 401);
    assert_eq!(login(&b).await.unwrap().status(), 401);
    assert_eq!(login(&a).await.unwrap().status(), 401);
    let r = login(&b).await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429, "rate_limited").await;
    problem(login(&a).await.unwrap(), 429, "rate_limited").await;
}

/// The per-account limit counts all of an account's sessions together (a
/// second session is no second budget), and another account is unaffected.
#[tokio::test]
async fn the_account_limit_spans_sessions() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__API__ACCOUNT_PER_MINUTE", "6")
            .env("RAMPART_GUARD__API__ACCOUNT_BURST", "3"),
    )
    .await;
    let first = s.user("busy@example.com").await;
    let second = s.login("busy@example.com", STRONG).await;
    let other = s.user("calm@example.com").await;
    assert_eq!(s.get_auth("/api/v1/me", &first).await.status(), 200);
    assert_eq!(s.get_auth("/api/v1/me", &second).await.status(), 200);
    assert_eq!(s.get_auth("/api/v1/me", &first).await.status(), 200);
    let r = s.get_auth("/api/v1/me", &second).await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429, "rate_limited").await;
    assert_eq!(s.get_auth("/api/v1/me", &other).await.status(), 200);
    // Other groups have their own budget.
    assert_eq!(
        s.get_auth("/api/v1/collections/none/records", &first)
            .await
            .status(),
        404
    );
}

/// Wrong current passwords (password change) and wrong step-up proofs count
/// toward the address's failures like wrong sign-ins.
#[tokio::test]
async fn wrong_passwords_behind_a_session_count_toward_the_address_block() {
    let s = TestServer::with(Options::default().env("RAMPART_GUARD__IP_FAILURES", "3")).await;
    let token = s.user("guesser@example.com").await;
    for _ in 0..2 {
        let r = s
            .post_auth(
                "/api/v1/me/password",
                &token,
                json!({"current_password": "Not-The-Password-1", "new_password": "Amber-Lattice-Quay-58-Vole"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let r = s
        .post_auth(
            "/api/v1/auth/step-up",
            &token,
            json!({"password": "Not-The-Password-2"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    wait_until_blocked(&s).await;
}

/// The guard decides from the answer what is a guess: wrong API keys count
/// toward the address block; requests without credentials do not.
#[tokio::test]
async fn wrong_api_keys_count_and_missing_credentials_do_not() {
    let s = TestServer::with(Options::default().env("RAMPART_GUARD__IP_FAILURES", "3")).await;
    for _ in 0..10 {
        assert_eq!(status(&s, "/api/v1/me", &[]).await.0, 401);
    }
    assert_eq!(
        status(&s, "/api/v1/healthz", &[]).await.0,
        200,
        "no guesses yet"
    );
    for i in 0..3 {
        let key = format!("Bearer rk_{i:0>8}_{}", "x".repeat(43));
        let (st, _) = status(
            &s,
            "/api/v1/collections/notes/records",
            &[("authorization", key.as_str())],
        )
        .await;
        assert_eq!(st, 401);
    }
    wait_until_blocked(&s).await;
}

/// A guard event written off the request path is in the trail after a
/// stop that follows at once, and so is the stop itself after it.
#[tokio::test]
async fn guard_events_under_way_are_written_before_the_trail_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let (st, _) = status(&s, "/api/v1/me?q=1%27%20OR%20%271%27%3D%271%27%20--", &[]).await;
    assert_eq!(st, 403);
    let node = s.running().audit.node().to_owned();
    s.stop().await;
    let store = rampart_store::open(&format!(
        "sqlite://{}?mode=rw",
        s.data_dir().join("rampart.db").display()
    ))
    .await
    .unwrap();
    use rampart_core::audit::AuditStore;
    let events = store.audit_range(&node, 0, 100).await.unwrap();
    let at = |a: &str| events.iter().position(|e| e.action == a);
    let matched = at("inspection_match").expect("the guard's event was written");
    assert!(matched < at("audit.stopped").unwrap());
}
