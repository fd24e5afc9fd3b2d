//! Requirement 5: tokens, cookies, CSRF, expiry, revocation.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;

use crate::support::*;

async fn login_full(s: &TestServer, email: &str) -> (Value, String) {
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": STRONG}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    (r.json().await.unwrap(), cookie)
}

#[tokio::test]
async fn login_sets_a_host_prefixed_strict_cookie() {
    let s = TestServer::start().await;
    s.register("ck@example.com").await;
    let (body, cookie) = login_full(&s, "ck@example.com").await;
    let token = body["token"].as_str().unwrap();
    assert!(cookie.starts_with(&format!("__Host-rampart_session={token};")));
    for attr in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    assert!(cookie.contains("Max-Age="));
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_new_session_per_login_and_none_reused() {
    let s = TestServer::start().await;
    s.register("fx@example.com").await;
    let a = s.login("fx@example.com", STRONG).await;
    let b = s.login("fx@example.com", STRONG).await;
    assert_ne!(a, b, "session fixation: login must mint a new token");
    // A token chosen by an attacker and planted in the cookie is not
    // adopted by login.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("cookie", "__Host-rampart_session=attacker-chosen-value")
        .json(&json!({"email": "fx@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["token"], "attacker-chosen-value");
    let r = s.get_auth("/api/v1/me", "attacker-chosen-value").await;
    problem(r, 401, "unauthenticated").await;
}

/// A request carrying only the session cookie plus `headers`.
async fn with_cookie(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = s
        .client
        .request(method, s.url(path))
        .header("cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn cookie_writes_need_a_csrf_proof() {
    use reqwest::Method;
    let s = TestServer::start().await;
    s.register("csrf@example.com").await;
    let (body, _) = login_full(&s, "csrf@example.com").await;
    let token = body["token"].as_str().unwrap();
    let csrf = body["csrf_token"].as_str().unwrap();
    let cookie = format!("__Host-rampart_session={token}");
    let me = |c: String| {
        let s = &s;
        async move {
            with_cookie(s, Method::GET, "/api/v1/me", &c, &[])
                .await
                .status()
        }
    };
    let logout = |c: String, h: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            with_cookie(s, Method::POST, "/api/v1/auth/logout", &c, &h).await
        }
    };
    // Reads with the cookie alone are fine.
    assert_eq!(me(cookie.clone()).await, 200);
    // A write with the cookie alone is refused, and so is one from a
    // foreign origin or with a wrong CSRF token.
    for headers in [
        vec![],
        vec![("origin", "https://evil.example".to_owned())],
        vec![("x-csrf-token", "0".repeat(64))],
    ] {
        problem(logout(cookie.clone(), headers).await, 403, "csrf_failed").await;
    }
    // The session is still alive after all that.
    assert_eq!(me(cookie.clone()).await, 200);
    // With the CSRF header it works.
    let r = logout(cookie.clone(), vec![("x-csrf-token", csrf.to_owned())]).await;
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // A matching Origin is proof too.
    let (body, _) = login_full(&s, "csrf@example.com").await;
    let cookie = format!("__Host-rampart_session={}", body["token"].as_str().unwrap());
    let origin = format!("https://localhost:{}", s.port());
    let r = logout(cookie, vec![("origin", origin)]).await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn logout_revokes_the_token() {
    let s = TestServer::start().await;
    let token = s.user("lo@example.com").await;
    let r = s.post_auth("/api/v1/auth/logout", &token, json!({})).await;
    assert_eq!(r.status(), 204);
    problem(
        s.get_auth("/api/v1/me", &token).await,
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn password_change_revokes_all_other_sessions() {
    let s = TestServer::start().await;
    s.register("pc@example.com").await;
    let keep = s.login("pc@example.com", STRONG).await;
    let other = s.login("pc@example.com", STRONG).await;
    let new = "Harbour-Violet-53-Mosaic";
    // Wrong current password: refused, nothing changes.
    let r = s
        .post_auth(
            "/api/v1/me/password",
            &keep,
            json!({"current_password": "Wrong-Password-1!", "new_password": new}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    // Weak new password: refused with reasons.
    let r = s
        .post_auth(
            "/api/v1/me/password",
            &keep,
            json!({"current_password": STRONG, "new_password": "short"}),
        )
        .await;
    problem(r, 422, "weak_password").await;
    assert_eq!(s.get_auth("/api/v1/me", &other).await.status(), 200);

    let r = s
        .post_auth(
            "/api/v1/me/password",
            &keep,
            json!({"current_password": STRONG, "new_password": new}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_auth("/api/v1/me", &keep).await.status(), 200);
    problem(
        s.get_auth("/api/v1/me", &other).await,
        401,
        "unauthenticated",
    )
    .await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "pc@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    s.login("pc@example.com", new).await;
}

#[tokio::test]
async fn sessions_are_listed_and_revocable_by_their_owner_only() {
    let s = TestServer::start().await;
    s.register("ls@example.com").await;
    let a = s.login("ls@example.com", STRONG).await;
    let b = s.login("ls@example.com", STRONG).await;
    let mallory = s.user("mallory@example.com").await;
    let list: Value = s
        .get_auth("/api/v1/me/sessions", &a)
        .await
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|x| x["current"] == true).count(), 1);
    assert!(!list.to_string().contains(&a), "tokens never listed");
    let b_id = sessions.iter().find(|x| x["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone else's session id looks like a missing one.
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/sessions/{b_id}")))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;
    assert_eq!(s.get_auth("/api/v1/me", &b).await.status(), 200);
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/sessions/{b_id}")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(s.get_auth("/api/v1/me", &b).await, 401, "unauthenticated").await;
}

async fn session_rows(s: &TestServer) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s.data_dir().join("rampart.db").display()
    ))
    .await
    .unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    pool.close().await;
    n
}

#[tokio::test]
async fn idle_sessions_expire_and_are_cleaned_up() {
    let s = TestServer::start().await;
    let token = s.user("idle@example.com").await;
    s.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        s.get_auth("/api/v1/me", &token).await.status(),
        200,
        "activity keeps it alive"
    );
    s.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 200);
    assert_eq!(session_rows(&s).await, 1);
    s.clock.advance(Duration::from_secs(31 * 60));
    problem(
        s.get_auth("/api/v1/me", &token).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(session_rows(&s).await, 0, "expired session removed");
    problem(
        s.get_auth("/api/v1/me", &token).await,
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime_despite_activity() {
    let s = TestServer::start().await;
    let token = s.user("abs@example.com").await;
    let idle_token = s.login("abs@example.com", STRONG).await;
    for i in 0..24 {
        s.clock.advance(Duration::from_secs(25 * 60));
        assert_eq!(
            s.get_auth("/api/v1/me", &token).await.status(),
            200,
            "alive at step {i}"
        );
    }
    // 24 × 25 min = 10 h: still alive. Two more hours end it.
    for _ in 0..5 {
        s.clock.advance(Duration::from_secs(25 * 60));
        let _ = s.get_auth("/api/v1/me", &token).await;
    }
    problem(
        s.get_auth("/api/v1/me", &token).await,
        401,
        "unauthenticated",
    )
    .await;
    // The idle one was swept by the periodic purge logic.
    let purged = s.running().auth.purge_expired_sessions().await.unwrap();
    assert_eq!(purged, 1);
    problem(
        s.get_auth("/api/v1/me", &idle_token).await,
        401,
        "unauthenticated",
    )
    .await;
}
