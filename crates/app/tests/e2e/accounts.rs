//! Requirement 4: registration, login, the password policy, hashing.

use serde_json::{json, Value};
use sqlx::Row;

use crate::support::*;

#[tokio::test]
async fn register_and_login_round_trip() {
    let s = TestServer::start().await;
    let v = s.register("Alice@Example.COM").await;
    assert_eq!(v["email"], "alice@example.com");
    assert!(v["id"].as_str().unwrap().starts_with("acc_"));
    let token = s.login("ALICE@example.com", STRONG).await;
    assert!(token.len() >= 43, "256-bit token");
    let me: Value = s.get_auth("/api/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["role"], "member");
}

#[tokio::test]
async fn normalised_email_is_unique() {
    let s = TestServer::start().await;
    s.register("bob@example.com").await;
    for dup in ["BOB@example.com", "bob@EXAMPLE.com"] {
        let r = s
            .post(
                "/api/v1/auth/register",
                json!({"email": dup, "password": STRONG}),
            )
            .await;
        problem(r, 409, "email_taken").await;
    }
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "not-an-email", "password": STRONG}),
        )
        .await;
    problem(r, 422, "invalid_email").await;
}

async fn rejected_codes(
    s: &TestServer,
    email: &str,
    password: &str,
    name: Option<&str>,
) -> Vec<String> {
    let mut body = json!({"email": email, "password": password});
    if let Some(n) = name {
        body["display_name"] = json!(n);
    }
    let r = s.post("/api/v1/auth/register", body).await;
    let v = problem(r, 422, "weak_password").await;
    for violation in v["violations"].as_array().unwrap() {
        assert!(violation["code"].is_string());
        assert!(violation["message"].as_str().unwrap().ends_with('.'));
    }
    assert!(!v["suggestions"].as_array().unwrap().is_empty());
    if password.len() >= 8 {
        assert!(!v.to_string().contains(password), "password echoed");
    }
    v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn weak_passwords_are_rejected_with_every_reason() {
    let s = TestServer::start().await;
    let c = rejected_codes(&s, "w1@example.com", "abc", None).await;
    for want in [
        "too_short",
        "missing_uppercase",
        "missing_digit",
        "missing_symbol",
        "too_guessable",
    ] {
        assert!(c.contains(&want.to_owned()), "{want} not in {c:?}");
    }
    let c = rejected_codes(&s, "w2@example.com", "PASSWORD-WITHOUT-LOWER-1", None).await;
    assert!(c.contains(&"missing_lowercase".to_owned()), "{c:?}");
    let c = rejected_codes(&s, "w3@example.com", "Password123!", None).await;
    assert!(c.contains(&"too_guessable".to_owned()), "{c:?}");
    let c = rejected_codes(&s, "w4@example.com", "trustno1", None).await;
    assert!(c.contains(&"common_password".to_owned()), "{c:?}");
    let c = rejected_codes(&s, "margarethe@example.com", "Margarethe#2024-xQ", None).await;
    assert!(c.contains(&"contains_personal_info".to_owned()), "{c:?}");
    let c = rejected_codes(
        &s,
        "w5@example.com",
        "Xq7!Tobermory-Lane#Z",
        Some("Tobermory"),
    )
    .await;
    assert!(c.contains(&"contains_personal_info".to_owned()), "{c:?}");
    let c = rejected_codes(&s, "w6@example.com", &"Aa1!".repeat(70), None).await;
    assert!(c.contains(&"too_long".to_owned()), "{c:?}");
    // Nothing was stored for any of them.
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "w1@example.com", "password": "abc"}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn passwords_are_not_trimmed() {
    let s = TestServer::start().await;
    let pw = format!(" {STRONG} ");
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "sp@example.com", "password": pw}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "sp@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    s.login("sp@example.com", &pw).await;
}

#[tokio::test]
async fn nist_preset_is_one_line_away() {
    let s = TestServer::with(Options::default().env("RAMPART_PASSWORD__PRESET", "nist")).await;
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "n@example.com", "password": "plum orbit cactus violin"}),
        )
        .await;
    assert_eq!(r.status(), 201, "no composition rules under nist");
    let c = rejected_codes(&s, "n2@example.com", "Quartz-9-Ferry", None).await;
    assert_eq!(c, vec!["too_short".to_owned()], "15 characters under nist");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let s = TestServer::start().await;
    s.register("carol@example.com").await;
    let a = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "carol@example.com", "password": "Wrong-Password-42!"}),
        )
        .await;
    let b = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "Wrong-Password-42!"}),
        )
        .await;
    let c = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "not an email", "password": "x"}),
        )
        .await;
    let mut bodies = Vec::new();
    for r in [a, b, c] {
        let mut v = problem(r, 401, "invalid_credentials").await;
        v.as_object_mut().unwrap().remove("request_id");
        bodies.push(v);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
}

#[tokio::test]
async fn an_unknown_account_costs_one_argon2_verification_like_a_wrong_password() {
    let s = TestServer::start().await;
    s.register("cost@example.com").await;
    let pool = s.running().auth.pool().clone();
    for email in ["cost@example.com", "nobody@example.com", "not an email"] {
        let before = pool.completed();
        let r = s
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": "Wrong-Password-42!"}),
            )
            .await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            pool.completed() - before,
            1,
            "{email}: exactly one verification"
        );
    }
}

#[tokio::test]
async fn oversized_passwords_are_refused_before_any_work() {
    let s = TestServer::start().await;
    s.register("big@example.com").await;
    let huge = "\u{FDFA}".repeat(300_000); // ~900 KB that NFKC would grow 18-fold
    let pool = s.running().auth.pool().clone();
    let before = pool.completed();
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "big@example.com", "password": huge}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "big2@example.com", "password": huge}),
        )
        .await;
    let v = problem(r, 422, "weak_password").await;
    assert_eq!(v["violations"][0]["code"], "too_long");
    assert_eq!(pool.completed(), before, "no hashing for oversized input");
}

#[tokio::test]
async fn password_hashes_are_argon2id_with_unique_salts_and_upgraded_on_login() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    s.register("d1@example.com").await;
    s.register("d2@example.com").await;
    let db = s.data_dir().join("rampart.db");
    let read_hashes = |db: std::path::PathBuf| async move {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let rows = sqlx::query("SELECT email, password_hash FROM accounts ORDER BY email")
            .fetch_all(&pool)
            .await
            .unwrap();
        let out: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect();
        pool.close().await;
        out
    };
    let hashes = read_hashes(db.clone()).await;
    for (_, h) in &hashes {
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    }
    let salt = |h: &str| h.split('$').nth(4).unwrap().to_owned();
    assert_ne!(
        salt(&hashes[0].1),
        salt(&hashes[1].1),
        "same password, different salts"
    );

    // Restart with stronger parameters; the next login upgrades the hash.
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s2 = TestServer::with(
        Options {
            dir: Some(dir),
            ..Options::default()
        }
        .env("RAMPART_ARGON2__ITERATIONS", "3"),
    )
    .await;
    s2.login("d1@example.com", STRONG).await;
    let hashes = read_hashes(s2.data_dir().join("rampart.db")).await;
    assert!(hashes[0].1.contains("m=19456,t=3,p=1"), "{}", hashes[0].1);
    assert!(
        hashes[1].1.contains("t=2"),
        "untouched account keeps its hash"
    );
    s2.login("d1@example.com", STRONG).await;
}

#[tokio::test]
async fn a_login_flood_gets_503_with_retry_after_not_a_queue() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_HASHING__WORKERS", "1")
            .env("RAMPART_HASHING__QUEUE", "1"),
    )
    .await;
    s.register("flood@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let client = s.client.clone();
        let url = s.url("/api/v1/auth/login");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"email": "flood@example.com", "password": "Wrong-Password-42!"}))
                .send()
                .await
                .unwrap()
        }));
    }
    let mut busy = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
            problem(r, 503, "overloaded").await;
            busy += 1;
        } else {
            assert_eq!(r.status(), 401);
        }
    }
    assert!(busy > 0, "a saturated pool must shed load");
    // Other requests still work.
    let r = s.client.get(s.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn registration_modes_closed_and_invite() {
    let s = TestServer::with(Options::default().env("RAMPART_REGISTRATION", "closed")).await;
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "c@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 403, "registration_closed").await;

    let s = TestServer::with(Options::default().env("RAMPART_REGISTRATION", "invite")).await;
    let admin = s.admin().await;
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "i@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 403, "invite_required").await;
    let r = s
        .post_auth("/api/v1/admin/invites", &admin, json!({}))
        .await;
    assert_eq!(r.status(), 201);
    let invite: Value = r.json().await.unwrap();
    let token = invite["invite_token"].as_str().unwrap();
    let body = json!({"email": "i@example.com", "password": STRONG, "invite_token": token});
    assert_eq!(
        s.post("/api/v1/auth/register", body.clone()).await.status(),
        201
    );
    let body = json!({"email": "i2@example.com", "password": STRONG, "invite_token": token});
    problem(
        s.post("/api/v1/auth/register", body).await,
        403,
        "invite_required",
    )
    .await;
}
