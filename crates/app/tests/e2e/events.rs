//! Requirement 6: security events and the admin query.

use serde_json::{json, Value};

use crate::support::*;

async fn events(s: &TestServer, admin: &str, q: &str) -> Value {
    let r = s
        .get_auth(&format!("/api/v1/admin/events?{q}"), admin)
        .await;
    assert_eq!(r.status(), 200, "{q}");
    r.json().await.unwrap()
}

fn kinds(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_account_action_is_recorded_with_reasons() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    s.register("ev@example.com").await;
    let _ = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "ev@example.com", "password": "Wrong-Password-1!"}),
        )
        .await;
    let _ = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "ghost@example.com", "password": "Wrong-Password-1!"}),
        )
        .await;
    let t1 = s.login("ev@example.com", STRONG).await;
    let t2 = s.login("ev@example.com", STRONG).await;
    let new = "Harbour-Violet-53-Mosaic";
    let r = s
        .post_auth(
            "/api/v1/me/password",
            &t1,
            json!({"current_password": STRONG, "new_password": new}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let _ = s.post_auth("/api/v1/auth/logout", &t1, json!({})).await;
    let _ = t2;

    let all = events(&s, &admin, "limit=100").await;
    let k = kinds(&all);
    for want in [
        "setup_used",
        "admin_created",
        "registration",
        "login_failure",
        "login_success",
        "password_change",
        "session_revoked",
        "logout",
    ] {
        assert!(k.contains(&want.to_owned()), "{want} missing from {k:?}");
    }
    let failures = events(&s, &admin, "type=login_failure").await;
    let reasons: Vec<&str> = failures["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"wrong_password") && reasons.contains(&"unknown_account"),
        "{reasons:?}"
    );
    for e in failures["events"].as_array().unwrap() {
        assert_eq!(e["outcome"], "failure");
        assert_eq!(e["ip"], "127.0.0.1");
        assert!(e["request_id"].as_str().unwrap().len() == 16);
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
    }
    let text = all.to_string();
    for secret in [STRONG, new, &t1, &t2, "Wrong-Password-1!", "argon2"] {
        assert!(!text.contains(secret), "event trail leaks {secret}");
    }
}

#[tokio::test]
async fn events_filter_and_page_newest_first() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let me: Value = s.get_auth("/api/v1/me", &admin).await.json().await.unwrap();
    for i in 0..7 {
        s.clock.advance(std::time::Duration::from_secs(1));
        let _ = s
            .post(
                "/api/v1/auth/login",
                json!({"email": format!("n{i}@example.com"), "password": "x"}),
            )
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = events(
            &s,
            &admin,
            &format!("type=login_failure&limit=3&cursor={cursor}"),
        )
        .await;
        let evs = page["events"].as_array().unwrap().clone();
        assert!(evs.len() <= 3);
        seen.extend(evs);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "all pages, no duplicates");
    let times: Vec<&str> = seen.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    let by_account = events(
        &s,
        &admin,
        &format!("account={}", me["id"].as_str().unwrap()),
    )
    .await;
    assert!(by_account["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["account_id"] == me["id"]));
    assert!(!by_account["events"].as_array().unwrap().is_empty());
    let none = events(&s, &admin, "ip=10.9.9.9").await;
    assert!(none["events"].as_array().unwrap().is_empty());
    let by_ip = events(&s, &admin, "ip=127.0.0.1&limit=500").await;
    assert!(by_ip["events"].as_array().unwrap().len() >= 9);
    let since = seen[2]["at"].as_str().unwrap();
    let recent = events(&s, &admin, &format!("type=login_failure&since={since}")).await;
    assert_eq!(recent["events"].as_array().unwrap().len(), 3);
    let older = events(&s, &admin, &format!("type=login_failure&until={since}")).await;
    assert_eq!(older["events"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn only_administrators_read_events() {
    let s = TestServer::start().await;
    let user = s.user("plain@example.com").await;
    problem(
        s.get_auth("/api/v1/admin/events", &user).await,
        403,
        "admin_required",
    )
    .await;
    problem(
        s.client
            .get(s.url("/api/v1/admin/events"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    problem(
        s.post_auth("/api/v1/admin/invites", &user, json!({})).await,
        403,
        "admin_required",
    )
    .await;
}
