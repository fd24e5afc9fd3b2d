//! The per-account brute-force defence: delays, then a lock, that answer
//! exactly like a wrong password; other accounts unaffected; an
//! administrator can lift it; the settings can never allow more than 100
//! failures an hour.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// Small numbers so the test walks the whole path: delays after 3
/// failures (1 s, 2 s), a one-hour lock at 5.
async fn server() -> TestServer {
    TestServer::with(
        Options::default()
            .env("RAMPART_BRUTE_FORCE__DELAY_AFTER", "3")
            .env("RAMPART_BRUTE_FORCE__LOCK_AFTER", "5"),
    )
    .await
}

/// A failed login's answer without its request id.
async fn refused(s: &TestServer, email: &str, password: &str) -> Value {
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await;
    let mut body = problem(r, 401, "invalid_credentials").await;
    body.as_object_mut().unwrap().remove("request_id");
    body
}

async fn reasons(s: &TestServer, admin: &str, kind: &str) -> Vec<String> {
    let r = s
        .get_auth(
            &format!("/api/v1/admin/events?type={kind}&limit=500"),
            admin,
        )
        .await;
    let v: Value = r.json().await.unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn wrong_passwords_delay_then_lock_without_telling_the_attacker() {
    let s = server().await;
    let admin = s.admin().await;
    let target = s.register("target@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.register("bystander@example.com").await;
    let wrong = refused(&s, "target@example.com", "Wrong-Guess-0001").await;
    for i in 2..=3 {
        refused(&s, "target@example.com", &format!("Wrong-Guess-{i:04}")).await;
    }

    // Third failure: blocked for 1 s. The right password is now refused,
    // and the answer is the wrong-password answer, byte for byte.
    let blocked = refused(&s, "target@example.com", STRONG).await;
    assert_eq!(blocked, wrong);
    // Nobody else is slowed.
    s.login("bystander@example.com", STRONG).await;

    // After the delay the password is checked again.
    s.clock.advance(Duration::from_millis(1_100));
    refused(&s, "target@example.com", "Wrong-Guess-0004").await; // 4th: 2 s
    s.clock.advance(Duration::from_millis(2_100));
    refused(&s, "target@example.com", "Wrong-Guess-0005").await; // 5th: lock

    // Locked: ten minutes later the right password still reads as wrong.
    s.clock.advance(Duration::from_secs(600));
    assert_eq!(refused(&s, "target@example.com", STRONG).await, wrong);
    s.login("bystander@example.com", STRONG).await;

    // The administrator sees it all.
    assert_eq!(
        reasons(&s, &admin, "account_locked").await,
        ["failed_logins"]
    );
    let failures = reasons(&s, &admin, "login_failure").await;
    assert_eq!(failures.iter().filter(|r| *r == "blocked").count(), 2);
    assert_eq!(
        failures.iter().filter(|r| *r == "wrong_password").count(),
        5
    );

    // ...and lifts the lock (an administrator's write: a fresh step-up,
    // since the login was over ten minutes ago); the owner gets in at once.
    s.step_up("owner@example.com", &admin).await;
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{target}/unlock"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    s.login("target@example.com", STRONG).await;
    let unlocked = reasons(&s, &admin, "account_unlocked").await;
    assert!(
        unlocked.len() == 1 && unlocked[0].starts_with("by acc_"),
        "{unlocked:?}"
    );
}

#[tokio::test]
async fn a_success_clears_the_count_and_a_lock_expires() {
    let s = server().await;
    s.register("patient@example.com").await;
    // Two failures, a success, two more: without the success clearing the
    // count, the fourth failure would have started a delay.
    for round in 0..2 {
        for i in 1..=2 {
            refused(
                &s,
                "patient@example.com",
                &format!("Wrong-Guess-{round}{i}"),
            )
            .await;
        }
        s.login("patient@example.com", STRONG).await;
    }
    // Locked, then the lock runs out.
    for i in 1..=5 {
        s.clock.advance(Duration::from_secs(3));
        refused(&s, "patient@example.com", &format!("Wrong-Guess-{i:04}")).await;
    }
    refused(&s, "patient@example.com", STRONG).await;
    s.clock.advance(Duration::from_secs(3599));
    refused(&s, "patient@example.com", STRONG).await;
    s.clock.advance(Duration::from_secs(2));
    s.login("patient@example.com", STRONG).await;
}

#[tokio::test]
async fn a_burst_of_concurrent_guesses_gets_no_more_checks_than_the_policy() {
    let s = server().await;
    let admin = s.admin().await;
    s.register("burst@example.com").await;
    let guesses = (0..20).map(|i| {
        s.post(
            "/api/v1/auth/login",
            json!({"email": "burst@example.com", "password": format!("Wrong-Guess-{i:04}")}),
        )
    });
    for r in futures_util::future::join_all(guesses).await {
        assert_eq!(r.status(), 401);
    }
    let failures = reasons(&s, &admin, "login_failure").await;
    assert_eq!(
        failures.iter().filter(|r| *r == "wrong_password").count(),
        3,
        "{failures:?}"
    );
    assert_eq!(
        failures.iter().filter(|r| *r == "blocked").count(),
        17,
        "{failures:?}"
    );
}

#[tokio::test]
async fn unknown_addresses_are_counted_and_blocked_like_real_ones() {
    let s = server().await;
    let admin = s.admin().await;
    let wrong = refused(&s, "nobody@example.com", "Wrong-Guess-0001").await;
    for i in 2..=3 {
        // Spelling variants of one address share its count.
        refused(&s, "NoBody@Example.com", &format!("Wrong-Guess-{i:04}")).await;
    }
    assert_eq!(refused(&s, "nobody@example.com", STRONG).await, wrong);
    let failures = reasons(&s, &admin, "login_failure").await;
    assert_eq!(
        failures.iter().filter(|r| *r == "unknown_account").count(),
        3
    );
    assert_eq!(failures.iter().filter(|r| *r == "blocked").count(), 1);
}

#[tokio::test]
async fn the_command_line_unlocks_an_account_when_no_administrator_can() {
    let s = server().await;
    s.register("owner2@example.com").await;
    for i in 1..=5 {
        s.clock.advance(Duration::from_secs(3));
        refused(&s, "owner2@example.com", &format!("Wrong-Guess-{i:04}")).await;
    }
    refused(&s, "owner2@example.com", STRONG).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "admin",
            "unlock",
            "--email",
            "Owner2@example.com",
            "--data-dir",
        ])
        .arg(s.data_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("owner2@example.com unlocked"), "{stdout}");
    s.login("owner2@example.com", STRONG).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "admin",
            "unlock",
            "--email",
            "ghost@example.com",
            "--data-dir",
        ])
        .arg(s.data_dir())
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account has the email address"));
}

#[tokio::test]
async fn unlock_is_for_administrators_and_existing_accounts() {
    let s = server().await;
    let admin = s.admin().await;
    let id = s.register("plain@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = s.login("plain@example.com", STRONG).await;
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{id}/unlock"),
            &user,
            json!({}),
        )
        .await;
    problem(r, 403, "admin_required").await;
    let r = s
        .post_auth(
            "/api/v1/admin/accounts/acc_nobody/unlock",
            &admin,
            json!({}),
        )
        .await;
    problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn settings_that_allow_over_100_failures_an_hour_are_refused() {
    let err = rampart::Settings::load(
        None,
        vec![
            (
                "RAMPART_BRUTE_FORCE__LOCK_AFTER".to_owned(),
                "40".to_owned(),
            ),
            (
                "RAMPART_BRUTE_FORCE__LOCK_FOR_SECS".to_owned(),
                "900".to_owned(),
            ),
        ],
        &rampart::Overrides::default(),
    )
    .expect_err("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("149 failed logins per account per hour"),
        "{text}"
    );
    assert!(text.contains("NIST"), "{text}");
}

/// The owner of a locked account gets an unlock code by email: with it
/// (and the right password) they sign in despite the lock, while the
/// attacker, without the mailbox, stays locked out.
#[tokio::test]
async fn the_owner_gets_in_with_the_emailed_unlock_code() {
    let s = server().await;
    s.register("locked@example.com").await;
    for i in 1..=3 {
        refused(&s, "locked@example.com", &format!("Wrong-Guess-{i:04}")).await;
    }
    s.clock.advance(Duration::from_millis(1_100));
    refused(&s, "locked@example.com", "Wrong-Guess-0004").await;
    s.clock.advance(Duration::from_millis(2_100));
    refused(&s, "locked@example.com", "Wrong-Guess-0005").await; // the lock
    let code = {
        let mut text = String::new();
        for _ in 0..250 {
            text = std::fs::read_to_string(s.data_dir().join("outbox.log")).unwrap_or_default();
            if text.contains("unlock code") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The outbox holds one JSON object per message.
        let body = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["subject"] == "Your account was locked")
            .expect("an unlock message")["body"]
            .as_str()
            .unwrap()
            .to_owned();
        let after = body.split("tries):").nth(1).expect("the code");
        after.split_whitespace().next().unwrap().to_owned()
    };
    let login = |password: &str, code: Option<&str>| {
        let mut body = json!({"email": "locked@example.com", "password": password});
        if let Some(c) = code {
            body["unlock_code"] = json!(c);
        }
        s.post("/api/v1/auth/login", body)
    };
    // Only the code's hash is stored: the database never holds the code.
    for e in std::fs::read_dir(s.data_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("rampart.db")
        {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
                "unlock code in {}",
                p.display()
            );
        }
    }
    // Without the code, or with a made-up one, the lock holds.
    assert_eq!(login(STRONG, None).await.status(), 401);
    assert_eq!(login(STRONG, Some("not-the-code")).await.status(), 401);
    // The code does not make a wrong password right.
    assert_eq!(login("Wrong-Guess-0006", Some(&code)).await.status(), 401);
    // With it, the owner is in, and the lock is gone.
    assert_eq!(login(STRONG, Some(&code)).await.status(), 200);
    s.login("locked@example.com", STRONG).await;
    // The code was spent: at the next lock it opens nothing.
    for i in 1..=3 {
        refused(&s, "locked@example.com", &format!("Wrong-Guess-1{i:03}")).await;
    }
    s.clock.advance(Duration::from_millis(1_100));
    refused(&s, "locked@example.com", "Wrong-Guess-1004").await;
    s.clock.advance(Duration::from_millis(2_100));
    refused(&s, "locked@example.com", "Wrong-Guess-1005").await;
    assert_eq!(
        login(STRONG, Some(&code)).await.status(),
        401,
        "a spent code opens nothing"
    );
}
