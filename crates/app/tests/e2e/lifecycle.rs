//! The account lifecycle (ADR 0015): verified addresses, forgotten
//! passwords, address changes and their undo, deletion and export,
//! administrators' management, and device tokens.

use std::time::Duration;

use rampart_core::Clock;
use reqwest::Response;
use serde_json::{json, Value};

use crate::support::*;

const NEW_PASSWORD: &str = "Harbor-Violet-58-Anchor";

async fn delete_auth(s: &TestServer, path: &str, token: &str) -> Response {
    s.client
        .delete(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The body of a 202 answer, with the request id (which differs) removed.
async fn accepted(r: Response) -> Value {
    assert_eq!(r.status(), 202);
    r.json().await.unwrap()
}

async fn me(s: &TestServer, token: &str) -> Value {
    let r = s.get_auth("/api/v1/me", token).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The trail's events of `action` about `account`, oldest first.
async fn trail(s: &TestServer, admin: &str, action: &str, account: Option<&str>) -> Vec<Value> {
    let mut path = format!("/api/v1/admin/events?type={action}&limit=500");
    if let Some(a) = account {
        path.push_str(&format!("&account={a}"));
    }
    let r = s.get_auth(&path, admin).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let mut e = v["events"].as_array().unwrap().clone();
    e.reverse();
    e
}

/// A code of the same shape that is not `code`.
fn other_code(code: &str) -> String {
    code.chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

/// Opens a mailed address-change link.
async fn confirm_change(s: &TestServer, token: &str) -> Response {
    s.post(
        "/api/v1/auth/email-change/confirm",
        json!({ "token": token }),
    )
    .await
}

/// Opens a mailed undo link.
async fn undo_change(s: &TestServer, token: &str) -> Response {
    s.post("/api/v1/auth/email-change/undo", json!({ "token": token }))
        .await
}

/// An administrator's `POST /api/v1/admin/accounts/{id}/{verb}`.
async fn admin_act(s: &TestServer, admin: &str, id: &str, verb: &str) -> Response {
    s.post_auth(
        &format!("/api/v1/admin/accounts/{id}/{verb}"),
        admin,
        json!({}),
    )
    .await
}

/// Asks for a new verification message; the (address-blind) answer.
async fn resend(s: &TestServer, email: &str) -> Value {
    accepted(
        s.post(
            "/api/v1/auth/verify-email/resend",
            json!({ "email": email }),
        )
        .await,
    )
    .await
}

fn login_body(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

#[tokio::test]
async fn verification_is_optional_with_the_outbox_and_a_link_proves_the_address_once() {
    let s = TestServer::start().await;
    s.register("v@example.com").await;
    let token = s.login("v@example.com", STRONG).await;
    assert_eq!(me(&s, &token).await["email_verified"], false);
    let link = mailed_token(&s.outbox(), "v@example.com", "verify-email").await;
    let r = s
        .post("/api/v1/auth/verify-email", json!({"token": link}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(me(&s, &token).await["email_verified"], true);
    // Single use.
    let r = s
        .post("/api/v1/auth/verify-email", json!({"token": link}))
        .await;
    problem(r, 403, "invalid_verification").await;
    // A verified account asks for nothing more.
    resend(&s, "v@example.com").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        mails_to(&s.outbox(), "v@example.com", "verify-email#token="),
        1
    );
}

#[tokio::test]
async fn required_verification_refuses_sign_in_until_a_link_or_code_proves_the_address() {
    let s = TestServer::with(
        Options::default().env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "required"),
    )
    .await;
    s.register("r@example.com").await;
    let r = s
        .post("/api/v1/auth/login", login_body("r@example.com", STRONG))
        .await;
    problem(r, 403, "email_unverified").await;
    // A wrong password still reads as one: nothing about the account.
    let r = s
        .post(
            "/api/v1/auth/login",
            login_body("r@example.com", "Wrong-Password-77!"),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    // The code, with the address: wrong codes are refused alike for a
    // known and an unknown address, and a code allows five tries.
    let code = mailed_code(&s.outbox(), "r@example.com").await;
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{code}");
    let wrong = other_code(&code);
    let a = s
        .post(
            "/api/v1/auth/verify-email",
            json!({"email": "r@example.com", "code": wrong}),
        )
        .await;
    let b = s
        .post(
            "/api/v1/auth/verify-email",
            json!({"email": "nobody@example.com", "code": wrong}),
        )
        .await;
    let mut a = problem(a, 403, "invalid_verification").await;
    let mut b = problem(b, 403, "invalid_verification").await;
    a.as_object_mut().unwrap().remove("request_id");
    b.as_object_mut().unwrap().remove("request_id");
    assert_eq!(a, b);
    let r = s
        .post(
            "/api/v1/auth/verify-email",
            json!({"email": "r@example.com", "code": code}),
        )
        .await;
    assert_eq!(r.status(), 204);
    s.login("r@example.com", STRONG).await;

    // Tries run out: after ten wrong codes in an hour the right one is
    // refused, and a new message (asked for with the same answer as any
    // address) works by its link.
    s.register("t@example.com").await;
    let code = mailed_code(&s.outbox(), "t@example.com").await;
    let wrong = other_code(&code);
    for _ in 0..10 {
        let r = s
            .post(
                "/api/v1/auth/verify-email",
                json!({"email": "t@example.com", "code": wrong}),
            )
            .await;
        problem(r, 403, "invalid_verification").await;
    }
    let r = s
        .post(
            "/api/v1/auth/verify-email",
            json!({"email": "t@example.com", "code": code}),
        )
        .await;
    problem(r, 403, "invalid_verification").await;
    let known = resend(&s, "t@example.com").await;
    let unknown = resend(&s, "nobody@example.com").await;
    assert_eq!(known, unknown);
    await_mails(&s.outbox(), "t@example.com", "verify-email#token=", 2).await;
    // The tries are the address's, not the code's: the new code is refused
    // too within the hour (its link is not).
    let new_code = mailed_code(&s.outbox(), "t@example.com").await;
    assert_ne!(new_code, code);
    let r = s
        .post(
            "/api/v1/auth/verify-email",
            json!({"email": "t@example.com", "code": new_code}),
        )
        .await;
    problem(r, 403, "invalid_verification").await;
    let link = mailed_token(&s.outbox(), "t@example.com", "verify-email").await;
    let r = s
        .post("/api/v1/auth/verify-email", json!({"token": link}))
        .await;
    assert_eq!(r.status(), 204);
    s.login("t@example.com", STRONG).await;
    // At most three messages an hour to one account.
    for _ in 0..5 {
        resend(&s, "u@example.com").await;
    }
    s.register("u@example.com").await;
    for _ in 0..5 {
        resend(&s, "u@example.com").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The registration's message and three resends.
    assert_eq!(
        mails_to(&s.outbox(), "u@example.com", "verify-email#token="),
        4
    );
}

#[tokio::test]
async fn before_data_verification_lets_sign_in_but_not_the_data_routes() {
    let s = TestServer::with(
        Options::default().env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "before_data"),
    )
    .await;
    let admin = s.admin().await;
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            &admin,
            json!({"name": "notes", "fields": {"text": {"type": "text"}}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let user = s.user("d@example.com").await;
    let r = s
        .post_auth(
            "/api/v1/collections/notes/records",
            &user,
            json!({"text": "hi"}),
        )
        .await;
    problem(r, 403, "email_unverified").await;
    let link = mailed_token(&s.outbox(), "d@example.com", "verify-email").await;
    let r = s
        .post("/api/v1/auth/verify-email", json!({"token": link}))
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .post_auth(
            "/api/v1/collections/notes/records",
            &user,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_a_single_use_link_without_enumeration() {
    let s = TestServer::start().await;
    s.admin().await;
    let acc = s.register("f@example.com").await;
    let old_session = s.login("f@example.com", STRONG).await;
    let pool = s.running().auth.pool().clone();
    // Known and unknown addresses: the same status and body, no hashing.
    let mut answers = Vec::new();
    for email in ["f@example.com", "nobody@example.com", "not an address"] {
        let before = pool.completed();
        let r = s
            .post("/api/v1/auth/password-reset", json!({"email": email}))
            .await;
        answers.push(accepted(r).await);
        assert_eq!(pool.completed(), before, "{email}: no hashing");
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let link = mailed_token(&s.outbox(), "f@example.com", "reset-password").await;
    assert_eq!(
        mails_to(&s.outbox(), "nobody@example.com", "reset-password"),
        0
    );
    // A weak password is refused without spending the link.
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": "password1"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // Every session ended; the old password is gone; the owner was told.
    assert_eq!(s.get_auth("/api/v1/me", &old_session).await.status(), 401);
    let r = s
        .post("/api/v1/auth/login", login_body("f@example.com", STRONG))
        .await;
    problem(r, 401, "invalid_credentials").await;
    let token = s.login("f@example.com", NEW_PASSWORD).await;
    // The link came to the address: it is proven.
    assert_eq!(me(&s, &token).await["email_verified"], true);
    mail_to(&s.outbox(), "f@example.com", "with a mailed reset code").await;
    // Used twice: refused.
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": "Another-Harbor-71-Owl"}),
        )
        .await;
    problem(r, 403, "invalid_reset_token").await;
    // Late: refused after 30 minutes.
    s.post(
        "/api/v1/auth/password-reset",
        json!({"email": "f@example.com"}),
    )
    .await;
    await_mails(&s.outbox(), "f@example.com", "reset-password#token=", 2).await;
    let late = mailed_token(&s.outbox(), "f@example.com", "reset-password").await;
    assert_ne!(late, link);
    s.clock.advance(Duration::from_secs(31 * 60));
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": late, "new_password": "Another-Harbor-71-Owl"}),
        )
        .await;
    problem(r, 403, "invalid_reset_token").await;
    let admin = s.login_mfa("owner@example.com").await;
    let id = acc["id"].as_str().unwrap();
    // The success is the account's; the refused codes name nobody.
    let resets = trail(&s, &admin, "account.password_reset", None).await;
    let outcomes: Vec<(&str, &str)> = resets
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["account_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [("success", id), ("failure", "-"), ("failure", "-")],
        "{resets:?}"
    );
    let requests = trail(&s, &admin, "account.password_reset_requested", None).await;
    assert!(requests
        .iter()
        .any(|e| e["reason"] == "unknown_account" && e["account_id"].is_null()));
}

#[tokio::test]
async fn a_reset_never_replaces_the_second_factor() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    // A member with TOTP: the reset creates no session, and the next
    // sign-in asks for the factor.
    let member = s.user("m@example.com").await;
    s.enrol_totp("m@example.com", &member).await;
    s.post(
        "/api/v1/auth/password-reset",
        json!({"email": "m@example.com"}),
    )
    .await;
    let link = mailed_token(&s.outbox(), "m@example.com", "reset-password").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .post(
            "/api/v1/auth/login",
            login_body("m@example.com", NEW_PASSWORD),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
    assert!(v.get("token").is_none());

    // An administrator with TOTP cannot finish a reset without it.
    s.post(
        "/api/v1/auth/password-reset",
        json!({"email": "owner@example.com"}),
    )
    .await;
    let link = mailed_token(&s.outbox(), "owner@example.com", "reset-password").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD}),
        )
        .await;
    problem(r, 403, "second_factor_required").await;
    let right = s.next_totp("owner@example.com");
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD,
                   "second_factor": {"method": "totp", "code": wrong}}),
        )
        .await;
    problem(r, 401, "invalid_mfa_code").await;
    // Neither attempt spent the link or changed the password.
    assert_eq!(s.get_auth("/api/v1/me", &admin).await.status(), 200);
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD,
                   "second_factor": {"method": "totp", "code": right}}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_auth("/api/v1/me", &admin).await.status(), 401);
    let r = s
        .post(
            "/api/v1/auth/login",
            login_body("owner@example.com", NEW_PASSWORD),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
}

#[tokio::test]
async fn an_email_change_is_confirmed_from_the_new_address_and_undone_from_the_old() {
    let s = TestServer::start().await;
    s.admin().await;
    let acc = s.register("old@example.com").await;
    let token = s.login("old@example.com", STRONG).await;
    // A step-up is needed: ten minutes after sign-in it is stale.
    s.clock.advance(Duration::from_secs(11 * 60));
    let r = s
        .post_auth(
            "/api/v1/me/email",
            &token,
            json!({"new_email": "new@example.com"}),
        )
        .await;
    problem(r, 403, "step_up_required").await;
    let r = s
        .post_auth("/api/v1/auth/step-up", &token, json!({"password": STRONG}))
        .await;
    assert_eq!(r.status(), 200);
    for bad in ["not an address", "OLD@example.com"] {
        let r = s
            .post_auth("/api/v1/me/email", &token, json!({"new_email": bad}))
            .await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    accepted(
        s.post_auth(
            "/api/v1/me/email",
            &token,
            json!({"new_email": "New@Example.com"}),
        )
        .await,
    )
    .await;
    // Nothing changes until the new address confirms.
    assert_eq!(me(&s, &token).await["email"], "old@example.com");
    let confirm = mailed_token(&s.outbox(), "new@example.com", "confirm-email").await;
    let r = confirm_change(&s, &confirm).await;
    assert_eq!(r.status(), 204);
    let v = me(&s, &token).await;
    assert_eq!(v["email"], "new@example.com");
    assert_eq!(v["email_verified"], true);
    s.login("new@example.com", STRONG).await;
    let r = confirm_change(&s, &confirm).await;
    problem(r, 403, "invalid_email_link").await;
    // While the move may be undone, nobody else may take the old address.
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "old@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 409, "email_taken").await;
    // The old address was told, with an undo link: it restores the
    // address, ends every session, turns the password off and mails a
    // reset link there.
    let undo = mailed_token(&s.outbox(), "old@example.com", "undo-email-change").await;
    let r = undo_change(&s, &undo).await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 401);
    let r = s
        .post("/api/v1/auth/login", login_body("old@example.com", STRONG))
        .await;
    problem(r, 401, "invalid_credentials").await;
    let reset = mailed_token(&s.outbox(), "old@example.com", "reset-password").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let token = s.login("old@example.com", NEW_PASSWORD).await;
    assert_eq!(me(&s, &token).await["email"], "old@example.com");
    let r = undo_change(&s, &undo).await;
    problem(r, 403, "invalid_email_link").await;
    // Past 72 hours an undo link is refused, and the address is free.
    let confirm = ask_move(&s, &token, "third@example.com").await;
    let r = confirm_change(&s, &confirm).await;
    assert_eq!(r.status(), 204);
    await_mails(
        &s.outbox(),
        "old@example.com",
        "undo-email-change#token=",
        2,
    )
    .await;
    let late = mailed_token(&s.outbox(), "old@example.com", "undo-email-change").await;
    assert_ne!(late, undo);
    s.clock.advance(Duration::from_secs(73 * 3600));
    let r = undo_change(&s, &late).await;
    problem(r, 403, "invalid_email_link").await;
    s.register("old@example.com").await;
    // An address another account holds: the same answer, nothing sent to
    // confirm, and its owner is told.
    s.register("taken@example.com").await;
    let token = s.login("third@example.com", NEW_PASSWORD).await;
    accepted(
        s.post_auth(
            "/api/v1/me/email",
            &token,
            json!({"new_email": "taken@example.com"}),
        )
        .await,
    )
    .await;
    mail_to(&s.outbox(), "taken@example.com", "already has an account").await;
    assert_eq!(
        mails_to(&s.outbox(), "taken@example.com", "confirm-email#token="),
        0
    );
    // Each request mails an address of the caller's choosing: three an hour.
    for (i, to) in ["a1@example.com", "a2@example.com", "a3@example.com"]
        .into_iter()
        .enumerate()
    {
        let r = s
            .post_auth("/api/v1/me/email", &token, json!({"new_email": to}))
            .await;
        if i < 2 {
            assert_eq!(r.status(), 202, "{to}");
        } else {
            problem(r, 429, "code_rate_limited").await;
        }
    }
    let admin = s.login_mfa("owner@example.com").await;
    let id = acc["id"].as_str().unwrap();
    assert_eq!(
        trail(&s, &admin, "account.email_changed", Some(id))
            .await
            .len(),
        2
    );
    assert_eq!(
        trail(&s, &admin, "account.email_change_undone", Some(id))
            .await
            .len(),
        1
    );
}

/// A collection whose records go with their owner, and one whose stay.
async fn two_collections(s: &TestServer, admin: &str) {
    for (name, owner_deletes) in [("diary", true), ("orders", false)] {
        let r = s
            .post_auth(
                "/api/v1/admin/collections",
                admin,
                json!({"name": name, "owner_deletes": owner_deletes, "fields": {
                    "text": {"type": "text"},
                    "secret": {"type": "text", "sensitive": true, "required": false}}}),
            )
            .await;
        assert_eq!(r.status(), 201, "{name}");
    }
}

async fn record(s: &TestServer, token: &str, collection: &str, body: Value) -> String {
    let r = s
        .post_auth(
            &format!("/api/v1/collections/{collection}/records"),
            token,
            body,
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn deletion_waits_for_its_grace_period_which_a_sign_in_cancels() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    two_collections(&s, &admin).await;
    let acc = s.register("gone@example.com").await;
    let id = acc["id"].as_str().unwrap().to_owned();
    let token = s.login("gone@example.com", STRONG).await;
    let diary = record(&s, &token, "diary", json!({"text": "mine"})).await;
    let order = record(&s, &token, "orders", json!({"text": "order"})).await;
    let r = delete_auth(&s, "/api/v1/me", &token).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deleted"], false);
    // Signed out at once.
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 401);
    mail_to(&s.outbox(), "gone@example.com", "will be deleted").await;
    // Signing in during the grace period keeps the account.
    s.clock.advance(Duration::from_secs(24 * 3600));
    let token = s.login("gone@example.com", STRONG).await;
    let admin = s.login_mfa("owner@example.com").await;
    assert_eq!(
        trail(&s, &admin, "account.deletion_cancelled", Some(&id))
            .await
            .len(),
        1
    );
    drop(token);
    s.clock.advance(Duration::from_secs(8 * 24 * 3600));
    assert_eq!(
        s.running().data.owner_deleting_collections().await.unwrap(),
        ["diary"]
    );
    assert_eq!(s.running().data.delete_due_accounts().await.unwrap(), 0);
    // Asked again, and left alone: it goes after seven days.
    let token = s.login("gone@example.com", STRONG).await;
    let r = delete_auth(&s, "/api/v1/me", &token).await;
    assert_eq!(r.status(), 202);
    s.clock.advance(Duration::from_secs(6 * 24 * 3600));
    assert_eq!(s.running().data.delete_due_accounts().await.unwrap(), 0);
    s.clock.advance(Duration::from_secs(24 * 3600 + 60));
    assert_eq!(s.running().data.delete_due_accounts().await.unwrap(), 1);
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 401);
    let r = s
        .post("/api/v1/auth/login", login_body("gone@example.com", STRONG))
        .await;
    problem(r, 401, "invalid_credentials").await;
    // The diary entry went with it; the order stays, without an owner.
    let admin = s.login_mfa("owner@example.com").await;
    let r = s
        .get_auth(
            &format!("/api/v1/collections/diary/records/{diary}"),
            &admin,
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = s
        .get_auth(
            &format!("/api/v1/collections/orders/records/{order}"),
            &admin,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("owner").is_none(), "{v}");
    // The trail keeps that it happened, under the id alone.
    let deleted = trail(&s, &admin, "account.deleted", Some(&id)).await;
    assert_eq!(deleted.len(), 1);
    assert!(!deleted[0].to_string().contains("gone@example.com"));
    // The address is free again.
    s.register("gone@example.com").await;
}

#[tokio::test]
async fn the_last_administrator_cannot_delete_or_disable_themselves() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let r = delete_auth(&s, "/api/v1/me", &admin).await;
    problem(r, 409, "last_admin").await;
    let me_id = me(&s, &admin).await["id"].as_str().unwrap().to_owned();
    let r = admin_act(&s, &admin, &me_id, "disable").await;
    problem(r, 409, "last_admin").await;
    let r = delete_auth(&s, &format!("/api/v1/admin/accounts/{me_id}"), &admin).await;
    problem(r, 409, "last_admin").await;
    assert_eq!(me(&s, &admin).await["id"], me_id.as_str());
}

#[tokio::test]
async fn zero_grace_deletes_at_once() {
    let s = TestServer::with(Options::default().env("RAMPART_ACCOUNTS__DELETION_GRACE_DAYS", "0"))
        .await;
    let token = s.user("now@example.com").await;
    let r = delete_auth(&s, "/api/v1/me", &token).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deleted"], true);
    s.register("now@example.com").await;
}

#[tokio::test]
async fn the_export_holds_exactly_the_account_s_own_data() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    two_collections(&s, &admin).await;
    let acc = s.register("x@example.com").await;
    let token = s.login("x@example.com", STRONG).await;
    let other = s.user("y@example.com").await;
    let mine = record(
        &s,
        &token,
        "diary",
        json!({"text": "my entry", "secret": "my-sealed-value-31"}),
    )
    .await;
    record(
        &s,
        &other,
        "diary",
        json!({"text": "their entry", "secret": "their-sealed-value"}),
    )
    .await;
    record(&s, &token, "orders", json!({"text": "my order"})).await;
    s.clock.advance(Duration::from_secs(11 * 60));
    let r = s.get_auth("/api/v1/me/export", &token).await;
    problem(r, 403, "step_up_required").await;
    s.post_auth("/api/v1/auth/step-up", &token, json!({"password": STRONG}))
        .await;
    let r = s.get_auth("/api/v1/me/export", &token).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let v: Value = r.json().await.unwrap();
    let text = v.to_string();
    assert_eq!(v["account"]["id"], acc["id"]);
    assert_eq!(v["account"]["email"], "x@example.com");
    let diary = v["records"]["diary"].as_array().unwrap();
    assert_eq!(diary.len(), 1);
    assert_eq!(diary[0]["id"], mine.as_str());
    // Sensitive fields decrypted for the owner.
    assert_eq!(diary[0]["data"]["secret"], "my-sealed-value-31");
    assert_eq!(v["records"]["orders"].as_array().unwrap().len(), 1);
    assert!(!text.contains("their"), "another account's data: {text}");
    assert!(!text.contains("y@example.com"));
    assert!(!text.contains("password_hash") && !text.contains("argon2"));
    // Its own security events only.
    let events = v["security_events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["action"] == "login_success"));
    assert!(!events.is_empty());
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].get("token_hash").is_none());
    // The export itself is in the trail.
    let id = acc["id"].as_str().unwrap();
    assert_eq!(
        trail(&s, &admin, "account.exported", Some(id)).await.len(),
        1
    );
}

#[tokio::test]
async fn the_export_lists_factors_without_their_secrets() {
    let s = TestServer::start().await;
    let token = s.user("f2@example.com").await;
    let enrol = s.enrol_totp("f2@example.com", &token).await;
    let codes: Vec<String> = enrol["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let secret = s.totp.lock().unwrap()["f2@example.com"].clone();
    let r = s.get_auth("/api/v1/me/export", &token).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["factors"][0]["kind"], "totp");
    assert_eq!(v["recovery_codes_left"], 10);
    assert!(!text.contains(&secret), "the TOTP secret");
    for c in &codes {
        assert!(!text.contains(c.as_str()), "a recovery code");
    }
}

#[tokio::test]
async fn administrators_search_and_manage_accounts() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let mut ids = Vec::new();
    for e in ["ann@shop.example", "bob@shop.example", "cat@other.example"] {
        // Apart in time, so creation order is the order of the names.
        s.clock.advance(Duration::from_secs(1));
        ids.push(s.register(e).await["id"].as_str().unwrap().to_owned());
    }
    let bob = s.login("bob@shop.example", STRONG).await;
    let list = |q: &'static str| listed(&s, &admin, q);
    assert_eq!(
        list("?email=SHOP").await.0,
        Vec::<String>::new(),
        "a prefix of the address"
    );
    assert_eq!(list("?email=b").await.0, ["bob@shop.example"]);
    assert_eq!(list("?role=admin").await.0, ["owner@example.com"]);
    assert_eq!(list("?mfa=true").await.0, ["owner@example.com"]);
    assert_eq!(
        list("?mfa=false&sort=-email").await.0,
        ["cat@other.example", "bob@shop.example", "ann@shop.example"]
    );
    assert_eq!(
        list("?status=unverified").await.0,
        ["ann@shop.example", "bob@shop.example", "cat@other.example"]
    );
    // Sign-ins: owner and bob signed in.
    let since = s.clock.now().plus(Duration::from_secs(1)).to_rfc3339();
    s.clock.advance(Duration::from_secs(60));
    s.login("cat@other.example", STRONG).await;
    let q = format!("?signed_in_after={}", urlencode(&since));
    assert_eq!(listed(&s, &admin, &q).await.0, ["cat@other.example"]);
    let q = format!("?signed_in_before={}&sort=email", urlencode(&since));
    assert_eq!(
        listed(&s, &admin, &q).await.0,
        ["bob@shop.example", "owner@example.com"]
    );
    // Paging: one at a time, in order, every account once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/accounts?sort=created_at&limit=1&cursor={c}"),
            None => "/api/v1/admin/accounts?sort=created_at&limit=1".to_owned(),
        };
        let r = s.get_auth(&path, &admin).await;
        let v: Value = r.json().await.unwrap();
        seen.extend(
            v["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["email"].as_str().unwrap().to_owned()),
        );
        cursor = v["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "owner@example.com",
            "ann@shop.example",
            "bob@shop.example",
            "cat@other.example"
        ]
    );
    for bad in [
        "?sort=password",
        "?limit=0",
        "?status=gone",
        "?cursor=zz",
        "?nope=1",
        "?signed_in_before=yesterday",
    ] {
        let r = s
            .get_auth(&format!("/api/v1/admin/accounts{bad}"), &admin)
            .await;
        problem(r, 400, "invalid_query").await;
    }
    // One account in detail: sessions, no secrets.
    let r = s
        .get_auth(&format!("/api/v1/admin/accounts/{}", ids[1]), &admin)
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["account"]["email"], "bob@shop.example");
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["sign_ins"][0]["type"], "login_success");
    assert!(!v.to_string().contains("argon2"));
    let r = s.get_auth("/api/v1/admin/accounts/acc_nope", &admin).await;
    problem(r, 404, "not_found").await;
    // A member may not look.
    let r = s.get_auth("/api/v1/admin/accounts", &bob).await;
    assert_eq!(r.status(), 403);

    // Disable: the session stops at once, sign-in is refused with a clear
    // code, the listing says so; enable undoes it.
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{}/disable", ids[1]),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_auth("/api/v1/me", &bob).await.status(), 401);
    let r = s
        .post("/api/v1/auth/login", login_body("bob@shop.example", STRONG))
        .await;
    problem(r, 403, "account_disabled").await;
    assert_eq!(list("?status=disabled").await.0, ["bob@shop.example"]);
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{}/enable", ids[1]),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let bob = s.login("bob@shop.example", STRONG).await;
    // End every session.
    let r = delete_auth(
        &s,
        &format!("/api/v1/admin/accounts/{}/sessions", ids[1]),
        &admin,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_auth("/api/v1/me", &bob).await.status(), 401);
    // Require a reset: the password stops working and a link is mailed.
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{}/password-reset", ids[0]),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .post("/api/v1/auth/login", login_body("ann@shop.example", STRONG))
        .await;
    problem(r, 401, "invalid_credentials").await;
    let link = mailed_token(&s.outbox(), "ann@shop.example", "reset-password").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    s.login("ann@shop.example", NEW_PASSWORD).await;
    // Delete.
    let r = delete_auth(&s, &format!("/api/v1/admin/accounts/{}", ids[2]), &admin).await;
    assert_eq!(r.status(), 204);
    assert_eq!(list("?email=cat").await.0, Vec::<String>::new());
    // Every write needs a step-up, and is in the trail.
    s.clock.advance(Duration::from_secs(11 * 60));
    let r = s
        .post_auth(
            &format!("/api/v1/admin/accounts/{}/disable", ids[0]),
            &admin,
            json!({}),
        )
        .await;
    problem(r, 403, "step_up_required").await;
    for action in [
        "account.disabled",
        "account.enabled",
        "account.password_reset_required",
        "account.deleted",
    ] {
        assert_eq!(trail(&s, &admin, action, None).await.len(), 1, "{action}");
    }
}

/// The addresses an administrator's search finds.
async fn listed(s: &TestServer, admin: &str, q: &str) -> (Vec<String>, Option<String>) {
    let r = s
        .get_auth(&format!("/api/v1/admin/accounts{q}"), admin)
        .await;
    assert_eq!(r.status(), 200, "{q}");
    let v: Value = r.json().await.unwrap();
    let emails: Vec<String> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap().to_owned())
        .collect();
    (emails, v["next_cursor"].as_str().map(str::to_owned))
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn a_known_device_signs_in_while_a_stranger_s_guesses_lock_everyone_else() {
    let s = TestServer::start().await;
    s.admin().await;
    s.register("own@example.com").await;
    let r = s
        .post("/api/v1/auth/login", login_body("own@example.com", STRONG))
        .await;
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let v: Value = r.json().await.unwrap();
    let device = v["device_token"].as_str().unwrap().to_owned();
    let cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Host-rampart_device="))
        .expect("a device cookie");
    assert!(cookie.starts_with(&format!("__Host-rampart_device={device};")));
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    // A stranger guesses until the address is delayed (from the tenth).
    for _ in 0..25 {
        let r = s
            .post(
                "/api/v1/auth/login",
                login_body("own@example.com", "Wrong-Guess-12!x"),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    // Without the device token, even the right password is refused.
    let r = s
        .post("/api/v1/auth/login", login_body("own@example.com", STRONG))
        .await;
    problem(r, 401, "invalid_credentials").await;
    // The owner's device gets in: by the body (apps) and by the cookie.
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "own@example.com", "password": STRONG, "device_token": device}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("cookie", format!("__Host-rampart_device={device}"))
        .json(&login_body("own@example.com", STRONG))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A token signed for another account, or tampered with, is nobody's.
    s.register("else@example.com").await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "else@example.com", "password": STRONG}),
        )
        .await;
    let other: Value = r.json().await.unwrap();
    let other = other["device_token"].as_str().unwrap();
    let mut tampered = device.clone();
    tampered.pop();
    tampered.push(if device.ends_with('0') { '1' } else { '0' });
    for t in [other, tampered.as_str()] {
        let r = s
            .post(
                "/api/v1/auth/login",
                json!({"email": "own@example.com", "password": STRONG, "device_token": t}),
            )
            .await;
        problem(r, 401, "invalid_credentials").await;
    }
    // A stolen device token is limited on its own: its guesses are
    // delayed, and the twentieth locks it (an event for the
    // administrator; no unlock code, as the address is not locked).
    let wrong_with_device =
        json!({"email": "own@example.com", "password": "Wrong-Guess-12!x", "device_token": device});
    for _ in 0..20 {
        let r = s
            .post("/api/v1/auth/login", wrong_with_device.clone())
            .await;
        assert_eq!(r.status(), 401);
        // Past each delay (at most 15 minutes), inside the 30-minute window.
        s.clock.advance(Duration::from_secs(16 * 60));
    }
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "own@example.com", "password": STRONG, "device_token": device}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
    let admin = s.login_mfa("owner@example.com").await;
    let locks = trail(&s, &admin, "account_locked", None).await;
    assert!(
        locks.iter().any(|e| e["reason"] == "failed_logins_device"),
        "{locks:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        mails_to(&s.outbox(), "own@example.com", "unlock code"),
        0,
        "a device's lock mails no unlock code"
    );
}

#[tokio::test]
async fn a_disabled_account_s_session_is_refused_on_a_second_postgres_node_at_once() {
    let Some(url) = fresh_pg_schema().await else {
        eprintln!("skipped: no PostgreSQL");
        return;
    };
    let a = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        ..Options::default()
    })
    .await;
    let admin = a.admin().await;
    let key = a.data_dir().join("master.key");
    let b = TestServer::with(Options {
        db: Db::Postgres(url),
        env: vec![(
            "RAMPART_MASTER_KEY_FILE".to_owned(),
            key.display().to_string(),
        )],
        ..Options::default()
    })
    .await;
    let acc = b.register("two@example.com").await;
    let token = b.login("two@example.com", STRONG).await;
    assert_eq!(b.get_auth("/api/v1/me", &token).await.status(), 200);
    let r = a
        .post_auth(
            &format!(
                "/api/v1/admin/accounts/{}/disable",
                acc["id"].as_str().unwrap()
            ),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(b.get_auth("/api/v1/me", &token).await.status(), 401);
    let r = b
        .post("/api/v1/auth/login", login_body("two@example.com", STRONG))
        .await;
    problem(r, 403, "account_disabled").await;
}

/// `rampart accounts …` on the server's data directory, off the test's
/// one thread (the server answers meanwhile).
async fn accounts_cli(s: &TestServer, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all: Vec<String> = vec!["accounts".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--data-dir".into(), s.data_dir().display().to_string()]);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        rampart_run(&args, None)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_command_line_lists_shows_disables_and_enables_accounts() {
    let s = TestServer::start().await;
    s.admin().await;
    s.register("cli@example.com").await;
    let token = s.login("cli@example.com", STRONG).await;
    let (code, out, err) = accounts_cli(&s, &["list"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("owner@example.com  admin"), "{out}");
    assert!(out.contains("cli@example.com  member"), "{out}");
    assert!(out.contains("(unverified)"), "{out}");
    let (_, out, _) = accounts_cli(&s, &["list", "--email", "cli", "--status", "unverified"]).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, err) = accounts_cli(&s, &["show", "--email", "cli@example.com"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sessions:      1"), "{out}");
    assert!(out.contains("login_success"), "{out}");
    assert!(!out.contains("argon2"), "{out}");
    let (code, out, err) = accounts_cli(&s, &["disable", "--email", "cli@example.com"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("is disabled"), "{out}");
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 401);
    let r = s
        .post("/api/v1/auth/login", login_body("cli@example.com", STRONG))
        .await;
    problem(r, 403, "account_disabled").await;
    let (code, _, err) = accounts_cli(&s, &["disable", "--email", "owner@example.com"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("last administrator"), "{err}");
    let (code, _, err) = accounts_cli(&s, &["enable", "--email", "cli@example.com"]).await;
    assert_eq!(code, Some(0), "{err}");
    s.login("cli@example.com", STRONG).await;
    let (code, _, err) = accounts_cli(&s, &["show", "--email", "nobody@example.com"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no account has the email address"), "{err}");
    let (code, out, _) = tokio::task::spawn_blocking(|| rampart_run(&["accounts", "--help"], None))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    for sub in ["list", "show", "disable", "enable"] {
        assert!(out.contains(sub), "{out}");
    }
}

/// Asks to move the signed-in account to `to` (202): the link mailed there.
async fn ask_move(s: &TestServer, token: &str, to: &str) -> String {
    accepted(
        s.post_auth("/api/v1/me/email", token, json!({"new_email": to}))
            .await,
    )
    .await;
    mailed_token(&s.outbox(), to, "confirm-email").await
}

/// Asks for and confirms a move of the signed-in account to `to`, a
/// second after whatever came before (the test clock stands still).
async fn move_to(s: &TestServer, token: &str, to: &str) {
    s.clock.advance(Duration::from_secs(1));
    let confirm = ask_move(s, token, to).await;
    let r = confirm_change(s, &confirm).await;
    assert_eq!(r.status(), 204, "move to {to}");
}

#[tokio::test]
async fn the_earliest_undo_wins_whichever_is_opened_first() {
    let s = TestServer::start().await;
    // Someone with the password moves each account on twice: the owner's
    // undo goes to the first address, the thief's to the second.
    for (first, second, third, thief_first) in [
        ("a@example.com", "b@example.com", "c@example.com", true),
        ("d@example.com", "e@example.com", "f@example.com", false),
    ] {
        s.register(first).await;
        let token = s.login(first, STRONG).await;
        move_to(&s, &token, second).await;
        let owners = mailed_token(&s.outbox(), first, "undo-email-change").await;
        move_to(&s, &token, third).await;
        let thiefs = mailed_token(&s.outbox(), second, "undo-email-change").await;
        if thief_first {
            // The thief's undo takes the account back to their address...
            let r = undo_change(&s, &thiefs).await;
            assert_eq!(r.status(), 204);
        }
        // ...and the owner's, older, still brings theirs back.
        let r = undo_change(&s, &owners).await;
        assert_eq!(r.status(), 204, "{first}");
        if !thief_first {
            // Once the owner's undo is done, the later one is void.
            let r = undo_change(&s, &thiefs).await;
            problem(r, 403, "invalid_email_link").await;
        }
        let reset = mailed_token(&s.outbox(), first, "reset-password").await;
        let r = s
            .post(
                "/api/v1/auth/password-reset/confirm",
                json!({"token": reset, "new_password": NEW_PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 204);
        let token = s.login(first, NEW_PASSWORD).await;
        assert_eq!(me(&s, &token).await["email"], first);
    }
}

#[tokio::test]
async fn an_undo_keeps_the_second_factors() {
    // Whoever holds the old mailbox gets the undo link: it must not also
    // take the owner's factor away.
    let s = TestServer::start().await;
    s.register("old@example.com").await;
    let token = s.login("old@example.com", STRONG).await;
    move_to(&s, &token, "new@example.com").await;
    let undo = mailed_token(&s.outbox(), "old@example.com", "undo-email-change").await;
    s.enrol_totp("old@example.com", &token).await;
    let r = undo_change(&s, &undo).await;
    assert_eq!(r.status(), 204);
    let reset = mailed_token(&s.outbox(), "old@example.com", "reset-password").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .post(
            "/api/v1/auth/login",
            login_body("old@example.com", NEW_PASSWORD),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
}

#[tokio::test]
async fn a_held_address_is_no_one_else_s_but_its_own_account_may_move_back() {
    let s = TestServer::start().await;
    s.register("held@example.com").await;
    let token = s.login("held@example.com", STRONG).await;
    move_to(&s, &token, "moved@example.com").await;
    // Another account asking to move there gets the usual answer, and no
    // link is sent.
    let other = s.user("other@example.com").await;
    accepted(
        s.post_auth(
            "/api/v1/me/email",
            &other,
            json!({"new_email": "held@example.com"}),
        )
        .await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        mails_to(&s.outbox(), "held@example.com", "confirm-email#token="),
        0
    );
    // The account that left it may come back.
    move_to(&s, &token, "held@example.com").await;
    assert_eq!(me(&s, &token).await["email"], "held@example.com");
}

#[tokio::test]
async fn a_change_link_does_nothing_for_a_disabled_account() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let acc = s.register("d@example.com").await;
    let token = s.login("d@example.com", STRONG).await;
    let confirm = ask_move(&s, &token, "thief@example.com").await;
    let r = admin_act(&s, &admin, acc["id"].as_str().unwrap(), "disable").await;
    assert_eq!(r.status(), 204);
    let r = confirm_change(&s, &confirm).await;
    problem(r, 403, "invalid_email_link").await;
    // Enabled again, the link stays void: disabling ended it.
    let r = admin_act(&s, &admin, acc["id"].as_str().unwrap(), "enable").await;
    assert_eq!(r.status(), 204);
    let r = confirm_change(&s, &confirm).await;
    problem(r, 403, "invalid_email_link").await;
    let token = s.login("d@example.com", STRONG).await;
    assert_eq!(me(&s, &token).await["email"], "d@example.com");
}

#[tokio::test]
async fn a_stranger_s_reset_request_leaves_an_administrator_s_required_reset_in_force() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let acc = s.register("req@example.com").await;
    let r = admin_act(&s, &admin, acc["id"].as_str().unwrap(), "password-reset").await;
    assert_eq!(r.status(), 204);
    let required = mailed_token(&s.outbox(), "req@example.com", "reset-password").await;
    s.post(
        "/api/v1/auth/password-reset",
        json!({"email": "req@example.com"}),
    )
    .await;
    await_mails(&s.outbox(), "req@example.com", "reset-password#token=", 2).await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": required, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    s.login("req@example.com", NEW_PASSWORD).await;
    // An administrator cannot turn their own password off this way.
    let me_id = me(&s, &admin).await["id"].as_str().unwrap().to_owned();
    let r = admin_act(&s, &admin, &me_id, "password-reset").await;
    problem(r, 403, "own_account").await;
}

#[tokio::test]
async fn a_reset_voids_the_device_tokens_given_before_it() {
    let s = TestServer::start().await;
    s.register("dv@example.com").await;
    let r = s
        .post("/api/v1/auth/login", login_body("dv@example.com", STRONG))
        .await;
    let old: Value = r.json().await.unwrap();
    let old = old["device_token"].as_str().unwrap().to_owned();
    s.post(
        "/api/v1/auth/password-reset",
        json!({"email": "dv@example.com"}),
    )
    .await;
    let link = mailed_token(&s.outbox(), "dv@example.com", "reset-password").await;
    let r = s
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": link, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .post(
            "/api/v1/auth/login",
            login_body("dv@example.com", NEW_PASSWORD),
        )
        .await;
    let new: Value = r.json().await.unwrap();
    let new = new["device_token"].as_str().unwrap().to_owned();
    // A stranger blocks the address.
    for _ in 0..12 {
        s.post(
            "/api/v1/auth/login",
            login_body("dv@example.com", "Wrong-Guess-12!x"),
        )
        .await;
    }
    let with = |device: &str| json!({"email": "dv@example.com", "password": NEW_PASSWORD, "device_token": device});
    let r = s.post("/api/v1/auth/login", with(&old)).await;
    problem(r, 401, "invalid_credentials").await;
    let r = s.post("/api/v1/auth/login", with(&new)).await;
    assert_eq!(r.status(), 200);
    // A year on, the new one has lapsed too.
    s.clock.advance(Duration::from_secs(366 * 24 * 3600));
    for _ in 0..12 {
        s.post(
            "/api/v1/auth/login",
            login_body("dv@example.com", "Wrong-Guess-12!x"),
        )
        .await;
    }
    let r = s.post("/api/v1/auth/login", with(&new)).await;
    problem(r, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn a_disabled_administrator_does_not_count_as_the_one_left() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let dir = s.data_dir();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        rampart_run(
            &[
                "admin",
                "create",
                "--email",
                "second@example.com",
                "--password-stdin",
                "--data-dir",
                dir.to_str().unwrap(),
            ],
            Some(&format!("{STRONG}\n")),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    let second = accounts_id(&s, &admin, "second@example.com").await;
    let r = admin_act(&s, &admin, &second, "disable").await;
    assert_eq!(r.status(), 204);
    let me_id = me(&s, &admin).await["id"].as_str().unwrap().to_owned();
    let r = admin_act(&s, &admin, &me_id, "disable").await;
    problem(r, 409, "last_admin").await;
    let r = delete_auth(&s, "/api/v1/me", &admin).await;
    problem(r, 409, "last_admin").await;
    // Enabled again, the second one counts, and the first may go.
    let r = admin_act(&s, &admin, &second, "enable").await;
    assert_eq!(r.status(), 204);
    let r = delete_auth(&s, "/api/v1/me", &admin).await;
    assert_eq!(r.status(), 202);
}

/// The id of the account with this address, from an administrator's search.
async fn accounts_id(s: &TestServer, admin: &str, email: &str) -> String {
    let r = s
        .get_auth(&format!("/api/v1/admin/accounts?email={email}"), admin)
        .await;
    let v: Value = r.json().await.unwrap();
    v["accounts"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_lockdown_ends_pending_address_changes_and_device_tokens() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    s.register("lk@example.com").await;
    let r = s
        .post("/api/v1/auth/login", login_body("lk@example.com", STRONG))
        .await;
    let v: Value = r.json().await.unwrap();
    let device = v["device_token"].as_str().unwrap().to_owned();
    let token = v["token"].as_str().unwrap().to_owned();
    let confirm = ask_move(&s, &token, "lk-thief@example.com").await;
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lockdown",
            &admin,
            json!({"reason": "stolen password", "accounts": ["lk@example.com"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let incident: Value = r.json().await.unwrap();
    // While it holds, and after it is lifted, the link changes nothing.
    let r = confirm_change(&s, &confirm).await;
    problem(r, 403, "invalid_email_link").await;
    let r = s
        .post_auth(
            "/api/v1/admin/incident/lift",
            &admin,
            json!({"id": incident["incident_id"]}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = confirm_change(&s, &confirm).await;
    problem(r, 403, "invalid_email_link").await;
    // The device token from before the lockdown no longer counts apart.
    for _ in 0..12 {
        s.post(
            "/api/v1/auth/login",
            login_body("lk@example.com", "Wrong-Guess-12!x"),
        )
        .await;
    }
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "lk@example.com", "password": STRONG, "device_token": device}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn ending_an_account_s_sessions_also_ends_its_pending_sign_ins() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let acc = s.register("pend@example.com").await;
    let token = s.login("pend@example.com", STRONG).await;
    s.enrol_totp("pend@example.com", &token).await;
    let r = s
        .post("/api/v1/auth/login", login_body("pend@example.com", STRONG))
        .await;
    let v: Value = r.json().await.unwrap();
    let mfa_token = v["mfa_token"].as_str().unwrap().to_owned();
    let r = delete_auth(
        &s,
        &format!(
            "/api/v1/admin/accounts/{}/sessions",
            acc["id"].as_str().unwrap()
        ),
        &admin,
    )
    .await;
    assert_eq!(r.status(), 204);
    let code = s.next_totp("pend@example.com");
    let r = s
        .post(
            "/api/v1/auth/mfa",
            json!({"mfa_token": mfa_token, "method": "totp", "code": code}),
        )
        .await;
    problem(r, 401, "mfa_token_invalid").await;
}

#[tokio::test]
async fn control_characters_in_ids_and_searches_are_refused_not_errors() {
    for db in [Db::Sqlite, Db::Postgres(String::new())] {
        let db = match db {
            Db::Postgres(_) => match fresh_pg_schema().await {
                Some(url) => Db::Postgres(url),
                None => continue,
            },
            d => d,
        };
        let s = TestServer::with(Options {
            db,
            ..Options::default()
        })
        .await;
        let admin = s.admin().await;
        let r = s.get_auth("/api/v1/admin/accounts/acc%00x", &admin).await;
        problem(r, 404, "not_found").await;
        // A control character in a path is the guard's to refuse.
        let r = s
            .get_auth("/api/v1/admin/accounts/acc%01x/roles", &admin)
            .await;
        problem(r, 403, "request_blocked").await;
        let r = s
            .get_auth("/api/v1/admin/accounts?email=a%00b", &admin)
            .await;
        problem(r, 400, "invalid_query").await;
        let cursor = "610a00";
        let r = s
            .get_auth(&format!("/api/v1/admin/accounts?cursor={cursor}"), &admin)
            .await;
        problem(r, 400, "invalid_query").await;
    }
}

#[tokio::test]
async fn a_right_password_refused_for_an_unverified_address_still_counts() {
    let s = TestServer::with(
        Options::default().env("RAMPART_ACCOUNTS__EMAIL_VERIFICATION", "required"),
    )
    .await;
    s.register("uv@example.com").await;
    // Ten right passwords, each refused as unverified, reach the delay...
    for _ in 0..10 {
        let r = s
            .post("/api/v1/auth/login", login_body("uv@example.com", STRONG))
            .await;
        problem(r, 403, "email_unverified").await;
    }
    let link = mailed_token(&s.outbox(), "uv@example.com", "verify-email").await;
    let r = s
        .post("/api/v1/auth/verify-email", json!({"token": link}))
        .await;
    assert_eq!(r.status(), 204);
    // ...so even verified, the next one waits out the delay.
    let r = s
        .post("/api/v1/auth/login", login_body("uv@example.com", STRONG))
        .await;
    problem(r, 401, "invalid_credentials").await;
    s.clock.advance(Duration::from_secs(2));
    s.login("uv@example.com", STRONG).await;
}
