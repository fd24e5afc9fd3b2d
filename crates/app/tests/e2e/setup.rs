//! Requirement 1: the one-time setup token for the first administrator.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn setup_token_creates_the_first_admin_once() {
    let s = TestServer::start().await;
    let token = s
        .running()
        .setup_token
        .clone()
        .expect("no admin, so a token");
    assert!(token.expose_secret().len() >= 22, "at least 128 bits");
    // A wrong token and a weak password both leave the real token usable.
    let r = s
        .post(
            "/api/v1/setup",
            json!({"token": "wrong", "email": "o@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 403, "invalid_setup_token").await;
    let r = s
        .post(
            "/api/v1/setup",
            json!({"token": token.expose_secret(), "email": "o@example.com", "password": "weak"}),
        )
        .await;
    problem(r, 422, "weak_password").await;
    let r = s
        .post(
            "/api/v1/setup",
            json!({"token": token.expose_secret(), "email": "o@example.com", "password": STRONG}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let admin = s.login("o@example.com", STRONG).await;
    let me: Value = s.get_auth("/api/v1/me", &admin).await.json().await.unwrap();
    assert_eq!(me["role"], "admin");
    let r = s
        .post(
            "/api/v1/setup",
            json!({"token": token.expose_secret(), "email": "o2@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 409, "setup_complete").await;
}

#[tokio::test]
async fn setup_token_expires_after_an_hour_and_is_stored_hashed() {
    let s = TestServer::start().await;
    let token = s.running().setup_token.clone().unwrap();
    let db = std::fs::read(s.data_dir().join("rampart.db")).unwrap();
    let wal = std::fs::read(s.data_dir().join("rampart.db-wal")).unwrap_or_default();
    let needle = token.expose_secret().as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));
    s.clock.advance(Duration::from_secs(3601));
    let r = s
        .post(
            "/api/v1/setup",
            json!({"token": token.expose_secret(), "email": "o@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 403, "invalid_setup_token").await;
}

#[tokio::test]
async fn no_setup_token_once_an_admin_exists() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    s.admin().await;
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s2 = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    assert!(s2.running().setup_token.is_none());
}

#[tokio::test]
async fn a_failed_setup_does_not_burn_the_token() {
    let s = TestServer::start().await;
    let token = s.running().setup_token.clone().unwrap();
    s.register("member@example.com").await;
    // The email is taken by a member: refused, and the token survives.
    let r = s
        .post("/api/v1/setup", json!({"token": token.expose_secret(), "email": "member@example.com", "password": STRONG}))
        .await;
    problem(r, 409, "email_taken").await;
    let r = s
        .post(
            "/api/v1/setup",
            json!({"token": token.expose_secret(), "email": "o@example.com", "password": STRONG}),
        )
        .await;
    assert_eq!(r.status(), 201);
}
