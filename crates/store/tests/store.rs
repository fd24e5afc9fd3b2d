//! Store tests, written once and run against both back ends: a fresh
//! SQLite file and a fresh PostgreSQL schema per test.

use rampart_core::events::{EventKind, Outcome, SecurityEvent};
use rampart_core::model::{
    Account, Challenge, ChallengePurpose, Factor, FactorKind, OneTimeKind, PendingLogin, Role,
    Session,
};
use rampart_core::{
    AccountId, Confirmed, Email, EventId, FactorId, FactorRemoval, IpBlock, SessionId, Store,
    StoreError, Timestamp,
};
use rampart_crypto::SecretString;
use rampart_store::{open, OpenError, SqlStore};

mod common;
use common::postgres_url;

fn account(email: &str, role: Role) -> Account {
    Account {
        id: AccountId(format!("acc_{email}")),
        email: Email::parse(email).unwrap(),
        display_name: Some("N".into()),
        password_hash: SecretString::from("$argon2id$v=19$m=19456,t=2,p=1$x$y"),
        role,
        created_at: Timestamp(1000),
        has_mfa: false,
        lifecycle: Default::default(),
    }
}

fn session(id: &str, account: &AccountId, at: i64) -> Session {
    Session {
        id: SessionId(id.into()),
        account_id: account.clone(),
        token_hash: format!("hash-{id}"),
        created_at: Timestamp(at),
        last_seen_at: Timestamp(at),
        expires_at: Timestamp(at + 10_000),
        ip: Some("127.0.0.1".into()),
        user_agent: None,
        last_ip: None,
        last_user_agent: None,
        step_up_at: Timestamp(at),
    }
}

both!(
    accounts_are_unique_by_email,
    |s: SqlStore, _url: String| async move {
        let a = account("a@example.com", Role::Member);
        s.insert_account(&a).await.unwrap();
        let mut dup = account("a@example.com", Role::Member);
        dup.id = AccountId("acc_other".into());
        assert!(matches!(
            s.insert_account(&dup).await,
            Err(StoreError::Conflict)
        ));
        let got = s.account_by_email(&a.email).await.unwrap().unwrap();
        assert_eq!(got.id, a.id);
        assert_eq!(got.display_name.as_deref(), Some("N"));
        assert!(s
            .account_by_id(&AccountId("nope".into()))
            .await
            .unwrap()
            .is_none());
        assert!(!s.admin_exists().await.unwrap());
        s.insert_account(&account("b@example.com", Role::Admin))
            .await
            .unwrap();
        assert!(s.admin_exists().await.unwrap());
        let old = a.password_hash.expose_secret();
        assert!(!s
            .replace_password_hash(&a.id, "not-the-current-hash", "new")
            .await
            .unwrap());
        assert!(s.replace_password_hash(&a.id, old, "new").await.unwrap());
        let got = s.account_by_id(&a.id).await.unwrap().unwrap();
        assert_eq!(got.password_hash.expose_secret(), "new");
    }
);

both!(sessions_lifecycle, |s: SqlStore, _url: String| async move {
    let a = account("s@example.com", Role::Member);
    let b = account("t@example.com", Role::Member);
    s.insert_account(&a).await.unwrap();
    s.insert_account(&b).await.unwrap();
    let hash = a.password_hash.expose_secret();
    for (id, at) in [("s1", 100), ("s2", 200), ("s3", 300)] {
        assert!(s
            .insert_session(&session(id, &a.id, at), hash)
            .await
            .unwrap());
    }
    assert!(s
        .insert_session(&session("t1", &b.id, 100), hash)
        .await
        .unwrap());
    // A login verified against a hash that has since changed is not stored.
    assert!(!s
        .insert_session(&session("stale", &a.id, 100), "old-hash")
        .await
        .unwrap());
    assert!(s
        .session_by_token_hash("hash-stale")
        .await
        .unwrap()
        .is_none());
    let (sess, acc) = s.session_by_token_hash("hash-s2").await.unwrap().unwrap();
    assert_eq!(sess.id.0, "s2", "session id not shadowed by account id");
    assert_eq!(sess.created_at, Timestamp(200));
    assert_eq!(acc.id, a.id);
    s.touch_session(&sess.id, Timestamp(250)).await.unwrap();
    s.touch_session(&sess.id, Timestamp(240)).await.unwrap(); // never backwards
    let (sess, _) = s.session_by_token_hash("hash-s2").await.unwrap().unwrap();
    assert_eq!(sess.last_seen_at, Timestamp(250));
    // A session moves only from where the caller saw it: of two requests
    // racing from a new place, one moves it.
    let here = (Some("127.0.0.1"), None);
    let there = (Some("203.0.113.9"), Some("curl/8"));
    assert!(s.move_session(&sess.id, here, there).await.unwrap());
    assert!(!s.move_session(&sess.id, here, there).await.unwrap());
    let (sess, _) = s.session_by_token_hash("hash-s2").await.unwrap().unwrap();
    assert_eq!(sess.last_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(sess.last_user_agent.as_deref(), Some("curl/8"));
    // Where its owner proved themselves stays.
    assert_eq!(sess.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(sess.user_agent, None);
    // A step-up anchors both there.
    s.anchor_session(&sess.id, Some("198.51.100.1"), None)
        .await
        .unwrap();
    let (sess, _) = s.session_by_token_hash("hash-s2").await.unwrap().unwrap();
    assert_eq!(sess.ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(sess.last_ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(sess.last_user_agent, None);
    // Where owners proved themselves in sessions in force, most recently
    // used first.
    let places = s.session_places(Timestamp(250), 10).await.unwrap();
    assert_eq!(places.len(), 4, "{places:?}");
    assert_eq!(places[0].1.as_deref(), Some("127.0.0.1"), "s3, seen at 300");
    assert_eq!(
        places[1],
        (a.id.clone(), Some("198.51.100.1".to_owned()), None),
        "s2, seen at 250: {places:?}"
    );
    assert_eq!(s.session_places(Timestamp(250), 1).await.unwrap().len(), 1);
    assert!(
        s.session_places(Timestamp(20_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "expired sessions are no one's place"
    );
    // Deleting requires the owner.
    assert!(!s
        .delete_session(&b.id, &SessionId("s1".into()))
        .await
        .unwrap());
    assert!(s
        .delete_session(&a.id, &SessionId("s1".into()))
        .await
        .unwrap());
    assert_eq!(s.sessions_of(&a.id).await.unwrap().len(), 2);
    assert_eq!(
        s.change_password(&a.id, hash, "next-hash", &SessionId("s3".into()))
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(s.sessions_of(&a.id).await.unwrap().len(), 1);
    assert_eq!(
        s.sessions_of(&b.id).await.unwrap().len(),
        1,
        "other account untouched"
    );
    // s3: last seen 300, expires 10300. t1: last seen 100.
    assert_eq!(
        s.delete_expired_sessions(Timestamp(5000), Timestamp(200))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.delete_expired_sessions(Timestamp(10_300), Timestamp(0))
            .await
            .unwrap(),
        1
    );
    assert!(s.session_by_token_hash("hash-s3").await.unwrap().is_none());
});

both!(
    one_time_tokens_are_single_use_even_under_races,
    |s: SqlStore, _url: String| async move {
        let spend = |s: SqlStore, n: usize, kind: OneTimeKind, hash: &'static str, now: i64| async move {
            let acc = account(&format!("race{n}@example.com"), Role::Member);
            s.insert_account_with_token(&acc, kind, hash, Timestamp(now))
                .await
                .unwrap()
        };
        s.insert_one_time_token(OneTimeKind::Invite, "h1", Timestamp(1000))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for n in 0..8 {
            tasks.push(tokio::spawn(spend(
                s.clone(),
                n,
                OneTimeKind::Invite,
                "h1",
                10,
            )));
        }
        let mut wins = 0;
        for t in tasks {
            wins += t.await.unwrap() as u32;
        }
        assert_eq!(wins, 1, "one token, one account");
        s.insert_one_time_token(OneTimeKind::Invite, "h2", Timestamp(1000))
            .await
            .unwrap();
        assert!(
            !spend(s.clone(), 10, OneTimeKind::Setup, "h2", 10).await,
            "kind must match"
        );
        assert!(
            !spend(s.clone(), 11, OneTimeKind::Invite, "h2", 1000).await,
            "expired"
        );
        s.replace_one_time_tokens(OneTimeKind::Setup, "a", Timestamp(1000))
            .await
            .unwrap();
        s.replace_one_time_tokens(OneTimeKind::Setup, "b", Timestamp(1000))
            .await
            .unwrap();
        assert!(
            !spend(s.clone(), 12, OneTimeKind::Setup, "a", 1).await,
            "replaced"
        );
        assert!(spend(s.clone(), 13, OneTimeKind::Setup, "b", 1).await);
    }
);

both!(
    password_change_and_token_accounts_are_atomic,
    |s: SqlStore, _url: String| async move {
        let a = account("p@example.com", Role::Member);
        s.insert_account(&a).await.unwrap();
        let hash = a.password_hash.expose_secret();
        for id in ["k", "o1", "o2"] {
            assert!(s
                .insert_session(&session(id, &a.id, 1), hash)
                .await
                .unwrap());
        }
        // A stale expected hash, or a kept session that is gone: nothing changes.
        assert_eq!(
            s.change_password(&a.id, "stale", "x", &SessionId("k".into()))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.change_password(&a.id, hash, "x", &SessionId("revoked".into()))
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.sessions_of(&a.id).await.unwrap().len(), 3);
        assert_eq!(
            s.change_password(&a.id, hash, "new-hash", &SessionId("k".into()))
                .await
                .unwrap(),
            Some(2)
        );
        assert_eq!(s.sessions_of(&a.id).await.unwrap().len(), 1);
        assert_eq!(
            s.account_by_id(&a.id)
                .await
                .unwrap()
                .unwrap()
                .password_hash
                .expose_secret(),
            "new-hash"
        );

        // A token that is not there: nothing stored.
        let b = account("q@example.com", Role::Admin);
        assert!(!s
            .insert_account_with_token(&b, OneTimeKind::Setup, "none", Timestamp(1))
            .await
            .unwrap());
        assert!(s.account_by_id(&b.id).await.unwrap().is_none());
        // A taken email: the token survives for the next attempt.
        s.insert_one_time_token(OneTimeKind::Setup, "t", Timestamp(100))
            .await
            .unwrap();
        let mut dup = account("p@example.com", Role::Admin);
        dup.id = AccountId("acc_dup".into());
        assert!(matches!(
            s.insert_account_with_token(&dup, OneTimeKind::Setup, "t", Timestamp(1))
                .await,
            Err(StoreError::Conflict)
        ));
        assert!(s
            .insert_account_with_token(&b, OneTimeKind::Setup, "t", Timestamp(1))
            .await
            .unwrap());
        assert!(s.account_by_id(&b.id).await.unwrap().is_some());
        assert!(
            !s.insert_account_with_token(&b, OneTimeKind::Setup, "t", Timestamp(1))
                .await
                .unwrap(),
            "spent"
        );
    }
);

both!(
    a_newer_schema_is_refused,
    |s: SqlStore, url: String| async move {
        sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'future', TRUE, $2, 0)",
    )
    .bind(9999i64)
    .bind(vec![0u8])
    .execute(s.pool())
    .await
    .unwrap();
        s.close().await;
        match open(&url).await {
            Err(OpenError::NewerSchema { found, known }) => {
                assert_eq!(found, 9999);
                assert_eq!(known, rampart_store::SCHEMA_VERSION);
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a newer schema was accepted"),
        }
    }
);

#[tokio::test]
async fn sqlite_runs_in_wal_with_foreign_keys_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let s = open(&url).await.unwrap();
    let pragma = |q: &'static str| {
        let s = s.clone();
        async move {
            use sqlx::Row;
            let row = sqlx::query(q).fetch_one(s.pool()).await.unwrap();
            row.try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
                .unwrap()
        }
    };
    assert_eq!(pragma("PRAGMA journal_mode").await, "wal");
    assert_eq!(pragma("PRAGMA foreign_keys").await, "1");
    assert_eq!(pragma("PRAGMA synchronous").await, "2", "FULL");
    // Foreign keys are enforced: a row pointing at a missing account is refused.
    let r = sqlx::query(
        "INSERT INTO sessions (id, account_id, token_hash, created_at, last_seen_at, expires_at) \
         VALUES ('x', 'missing', 'h', 1, 1, 2)",
    )
    .execute(s.pool())
    .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn connection_errors_do_not_echo_the_url() {
    let err = open("postgres://user:canary-secret@127.0.0.1:1/db")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("canary-secret"), "{err}");
    assert!(matches!(
        open("mysql://x").await,
        Err(OpenError::UnknownScheme)
    ));
}

both!(
    login_attempts_are_counted_blocked_and_cleared,
    |s: SqlStore, _url: String| async move {
        use rampart_core::LoginAttempt::{Allowed, Blocked};
        use std::time::Duration;
        // Block 10 s from the third attempt on.
        let policy = |n: u32| (n >= 3).then_some(Duration::from_secs(10));
        let t = Timestamp;
        let reserve = |at: i64, quiet: i64| s.reserve_login_attempt("k", t(at), t(quiet), &policy);
        assert_eq!(reserve(1_000, 0).await.unwrap(), Allowed { failures: 1 });
        assert_eq!(reserve(2_000, 0).await.unwrap(), Allowed { failures: 2 });
        assert_eq!(reserve(3_000, 0).await.unwrap(), Allowed { failures: 3 });
        // Blocked until 13 000: not counted, not checked.
        assert_eq!(reserve(12_999, 0).await.unwrap(), Blocked);
        assert_eq!(reserve(13_000, 0).await.unwrap(), Allowed { failures: 4 });
        // The block (to 23 000) ended after `quiet_since`: no reset.
        assert_eq!(
            reserve(30_000, 20_000).await.unwrap(),
            Allowed { failures: 5 }
        );
        // Quiet since after both: starts again at 1.
        assert_eq!(
            reserve(60_000, 50_000).await.unwrap(),
            Allowed { failures: 1 }
        );
        assert!(s.clear_login_failures("k").await.unwrap());
        assert!(!s.clear_login_failures("k").await.unwrap());
        assert_eq!(reserve(61_000, 0).await.unwrap(), Allowed { failures: 1 });

        // Concurrent attempts are counted one after another: exactly three get
        // through before the block the third sets, whatever the interleaving.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let s = s.clone();
            tasks.spawn(async move {
                let policy = |n: u32| (n >= 3).then_some(Duration::from_secs(10));
                s.reserve_login_attempt("burst", Timestamp(100_000 + i), Timestamp(0), &policy)
                    .await
                    .unwrap()
            });
        }
        let results = tasks.join_all().await;
        let allowed = results
            .iter()
            .filter(|r| matches!(r, Allowed { .. }))
            .count();
        assert_eq!(allowed, 3, "{results:?}");

        // A success forgets the count only when nothing was counted after it:
        // a guess made meanwhile is kept.
        use rampart_core::Settle::{Forget, Uncount};
        let r = |at: i64| s.reserve_login_attempt("settle", t(at), t(0), &policy);
        assert_eq!(r(200_000).await.unwrap(), Allowed { failures: 1 });
        assert_eq!(r(200_001).await.unwrap(), Allowed { failures: 2 });
        assert!(!s
            .settle_login_attempt("settle", 1, t(200_000), Forget)
            .await
            .unwrap());
        assert!(s
            .settle_login_attempt("settle", 2, t(200_001), Uncount)
            .await
            .unwrap());
        assert_eq!(r(200_002).await.unwrap(), Allowed { failures: 2 });
        assert!(s
            .settle_login_attempt("settle", 2, t(200_002), Forget)
            .await
            .unwrap());
        assert_eq!(r(200_003).await.unwrap(), Allowed { failures: 1 });

        // Quiet counts are purged; blocked or recent ones are kept.
        assert_eq!(s.purge_login_failures(Timestamp(62_000)).await.unwrap(), 1);
        assert_eq!(s.purge_login_failures(Timestamp(100_000)).await.unwrap(), 0);
    }
);

fn factor(id: &str, account: &AccountId, kind: FactorKind, confirmed: bool) -> Factor {
    Factor {
        id: FactorId(id.into()),
        account_id: account.clone(),
        kind,
        name: format!("{id} name"),
        sealed: Some(format!("v1.key.{id}")),
        created_at: Timestamp(1000),
        confirmed_at: confirmed.then_some(Timestamp(1000)),
        last_used_at: None,
        last_step: -1,
        credential_hash: (kind == FactorKind::Webauthn).then(|| format!("cred-{id}")),
    }
}

both!(
    factors_confirm_replace_and_keep_the_last,
    |s: SqlStore, _url: String| async move {
        let a = account("f@example.com", Role::Admin);
        s.insert_account(&a).await.unwrap();
        s.insert_session(
            &session("ses_f", &a.id, 1000),
            a.password_hash.expose_secret(),
        )
        .await
        .unwrap();
        s.insert_factor(&factor("mfa_t1", &a.id, FactorKind::Totp, false))
            .await
            .unwrap();
        // A pending factor does not count.
        assert!(!s.account_by_id(&a.id).await.unwrap().unwrap().has_mfa);
        // A second session, opened with the password alone.
        s.insert_session(
            &session("ses_g", &a.id, 1000),
            a.password_hash.expose_secret(),
        )
        .await
        .unwrap();
        let keep = SessionId("ses_f".into());
        // Not confirmed if its sealed value changed since it was checked.
        assert_eq!(
            s.confirm_factor(
                &a.id,
                &FactorId("mfa_t1".into()),
                Some("v1.key.other"),
                Timestamp(2000),
                &keep
            )
            .await
            .unwrap(),
            None
        );
        // The first factor: the other session ends in the same transaction.
        assert_eq!(
            s.confirm_factor(
                &a.id,
                &FactorId("mfa_t1".into()),
                Some("v1.key.mfa_t1"),
                Timestamp(2000),
                &keep
            )
            .await
            .unwrap(),
            Some(Confirmed {
                replaced: 0,
                first: true,
                sessions_ended: 1
            })
        );
        assert!(s
            .session_by_token_hash("hash-ses_g")
            .await
            .unwrap()
            .is_none());
        // Confirming twice does nothing.
        assert_eq!(
            s.confirm_factor(
                &a.id,
                &FactorId("mfa_t1".into()),
                Some("v1.key.mfa_t1"),
                Timestamp(2000),
                &keep
            )
            .await
            .unwrap(),
            None
        );
        assert!(s.account_by_id(&a.id).await.unwrap().unwrap().has_mfa);
        assert!(s.account_by_email(&a.email).await.unwrap().unwrap().has_mfa);
        let (sess, acc) = s
            .session_by_token_hash("hash-ses_f")
            .await
            .unwrap()
            .unwrap();
        assert!(acc.has_mfa);
        assert_eq!(sess.step_up_at, Timestamp(1000));
        s.set_step_up(&sess.id, Timestamp(5000)).await.unwrap();
        let (sess, _) = s
            .session_by_token_hash("hash-ses_f")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sess.step_up_at, Timestamp(5000));

        // A second TOTP replaces the first when confirmed.
        s.insert_factor(&factor("mfa_t2", &a.id, FactorKind::Totp, false))
            .await
            .unwrap();
        assert_eq!(
            s.confirm_factor(
                &a.id,
                &FactorId("mfa_t2".into()),
                Some("v1.key.mfa_t2"),
                Timestamp(3000),
                &keep
            )
            .await
            .unwrap(),
            Some(Confirmed {
                replaced: 1,
                first: false,
                sessions_ended: 0
            }),
            "the confirmed TOTP it replaced"
        );
        let ids: Vec<String> = s
            .factors_of(&a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.id.0)
            .collect();
        assert_eq!(ids, vec!["mfa_t2".to_owned()]);

        // The last confirmed factor stays when asked to.
        assert_eq!(
            s.delete_factor(&a.id, &FactorId("mfa_t2".into()), true)
                .await
                .unwrap(),
            FactorRemoval::LastFactor
        );
        s.insert_factor(&factor("mfa_p1", &a.id, FactorKind::Webauthn, true))
            .await
            .unwrap();
        // One credential, one factor, whatever the account.
        let mut dup = factor("mfa_p2", &a.id, FactorKind::Webauthn, true);
        dup.credential_hash = Some("cred-mfa_p1".into());
        assert!(matches!(
            s.insert_factor(&dup).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            s.delete_factor(&a.id, &FactorId("mfa_t2".into()), true)
                .await
                .unwrap(),
            FactorRemoval::Deleted(FactorKind::Totp)
        );
        assert_eq!(
            s.delete_factor(&a.id, &FactorId("mfa_t2".into()), true)
                .await
                .unwrap(),
            FactorRemoval::NotFound
        );
        let other = account("g@example.com", Role::Member);
        s.insert_account(&other).await.unwrap();
        assert_eq!(
            s.delete_factor(&other.id, &FactorId("mfa_p1".into()), false)
                .await
                .unwrap(),
            FactorRemoval::NotFound
        );
        assert_eq!(
            s.delete_factor(&a.id, &FactorId("mfa_p1".into()), false)
                .await
                .unwrap(),
            FactorRemoval::Deleted(FactorKind::Webauthn)
        );
        assert!(!s.account_by_id(&a.id).await.unwrap().unwrap().has_mfa);
    }
);

both!(
    totp_steps_are_used_once_and_sends_are_limited,
    |s: SqlStore, _url: String| async move {
        let a = account("t@example.com", Role::Member);
        s.insert_account(&a).await.unwrap();
        let id = FactorId("mfa_t".into());
        s.insert_factor(&factor("mfa_t", &a.id, FactorKind::Totp, true))
            .await
            .unwrap();
        assert!(s.accept_totp_step(&id, 100, Timestamp(1)).await.unwrap());
        assert!(!s.accept_totp_step(&id, 100, Timestamp(2)).await.unwrap());
        assert!(!s.accept_totp_step(&id, 99, Timestamp(2)).await.unwrap());
        assert!(s.accept_totp_step(&id, 101, Timestamp(3)).await.unwrap());

        let e = FactorId("mfa_e".into());
        s.insert_factor(&factor("mfa_e", &a.id, FactorKind::Email, true))
            .await
            .unwrap();
        let gap = std::time::Duration::from_secs(30);
        let hour = std::time::Duration::from_secs(3600);
        let t0 = 10_000_000;
        assert_eq!(
            s.note_code_send(&e, Timestamp(t0), gap, hour, 3)
                .await
                .unwrap(),
            None
        );
        // Too soon: the answer says when.
        assert_eq!(
            s.note_code_send(&e, Timestamp(t0 + 1000), gap, hour, 3)
                .await
                .unwrap(),
            Some(Timestamp(t0 + 30_000))
        );
        assert_eq!(
            s.note_code_send(&e, Timestamp(t0 + 30_000), gap, hour, 3)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.note_code_send(&e, Timestamp(t0 + 60_000), gap, hour, 3)
                .await
                .unwrap(),
            None
        );
        // Three in this hour: the next waits for the window's end.
        assert_eq!(
            s.note_code_send(&e, Timestamp(t0 + 90_000), gap, hour, 3)
                .await
                .unwrap(),
            Some(Timestamp(t0 + 3_600_000))
        );
        assert_eq!(
            s.note_code_send(&e, Timestamp(t0 + 3_600_000), gap, hour, 3)
                .await
                .unwrap(),
            None
        );
        s.factor_used(&e, Timestamp(t0), Some("v1.key.new"))
            .await
            .unwrap();
        let f = s.factors_of(&a.id).await.unwrap();
        let f = f.iter().find(|f| f.id == e).unwrap();
        assert_eq!(f.sealed.as_deref(), Some("v1.key.new"));
        assert_eq!(f.last_used_at, Some(Timestamp(t0)));
    }
);

both!(
    challenges_pending_logins_and_recovery_codes_are_spent_once,
    |s: SqlStore, _url: String| async move {
        let a = account("c@example.com", Role::Member);
        s.insert_account(&a).await.unwrap();
        let c = Challenge {
            purpose: ChallengePurpose::LoginCode,
            bound: "tok".into(),
            account_id: a.id.clone(),
            factor_id: Some(FactorId("mfa_e".into())),
            state: "mac1".into(),
            tries: 0,
            expires_at: Timestamp(5000),
        };
        s.put_challenge(&c).await.unwrap();
        // Same purpose and bound: replaced.
        s.put_challenge(&Challenge {
            state: "mac2".into(),
            ..c.clone()
        })
        .await
        .unwrap();
        let t = s
            .try_challenge(ChallengePurpose::LoginCode, "tok", Timestamp(1000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((t.tries, t.state.as_str()), (1, "mac2"));
        let t = s
            .try_challenge(ChallengePurpose::LoginCode, "tok", Timestamp(1000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.tries, 2);
        assert!(s
            .try_challenge(ChallengePurpose::StepUpCode, "tok", Timestamp(1000))
            .await
            .unwrap()
            .is_none());
        assert!(s
            .try_challenge(ChallengePurpose::LoginCode, "tok", Timestamp(5000))
            .await
            .unwrap()
            .is_none());
        assert!(!s
            .spend_challenge(ChallengePurpose::LoginCode, "tok", "mac1")
            .await
            .unwrap());
        assert!(s
            .spend_challenge(ChallengePurpose::LoginCode, "tok", "mac2")
            .await
            .unwrap());
        assert!(!s
            .spend_challenge(ChallengePurpose::LoginCode, "tok", "mac2")
            .await
            .unwrap());
        // Taking deletes; an expired one is deleted and not returned.
        s.put_challenge(&Challenge {
            purpose: ChallengePurpose::EnrolPasskey,
            ..c.clone()
        })
        .await
        .unwrap();
        assert!(s
            .take_challenge(ChallengePurpose::EnrolPasskey, "tok", Timestamp(1000))
            .await
            .unwrap()
            .is_some());
        assert!(s
            .take_challenge(ChallengePurpose::EnrolPasskey, "tok", Timestamp(1000))
            .await
            .unwrap()
            .is_none());
        s.put_challenge(&Challenge {
            purpose: ChallengePurpose::EnrolPasskey,
            ..c.clone()
        })
        .await
        .unwrap();
        assert!(s
            .take_challenge(ChallengePurpose::EnrolPasskey, "tok", Timestamp(6000))
            .await
            .unwrap()
            .is_none());

        let p = PendingLogin {
            token_hash: "th".into(),
            account_id: a.id.clone(),
            password_fp: "fp".into(),
            failures: 0,
            expires_at: Timestamp(5000),
        };
        s.insert_pending_login(&p).await.unwrap();
        assert!(s
            .pending_login("th", Timestamp(6000))
            .await
            .unwrap()
            .is_none());
        assert_eq!(s.pending_login_failed("th").await.unwrap(), Some(1));
        assert_eq!(s.pending_login_failed("th").await.unwrap(), Some(2));
        assert_eq!(s.pending_login_failed("nope").await.unwrap(), None);
        let got = s
            .take_pending_login("th", Timestamp(1000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.failures, got.password_fp.as_str()), (2, "fp"));
        assert!(s
            .take_pending_login("th", Timestamp(1000))
            .await
            .unwrap()
            .is_none());
        s.insert_pending_login(&p).await.unwrap();
        s.put_challenge(&c).await.unwrap();
        assert_eq!(s.void_pending_logins(&a.id).await.unwrap(), 1);
        assert!(s
            .pending_login("th", Timestamp(1000))
            .await
            .unwrap()
            .is_none());
        assert!(s
            .try_challenge(ChallengePurpose::LoginCode, "tok", Timestamp(1000))
            .await
            .unwrap()
            .is_none());

        let macs: Vec<String> = (0..3).map(|i| format!("rc{i}")).collect();
        s.replace_recovery_codes(&a.id, &macs).await.unwrap();
        assert_eq!(s.recovery_codes_left(&a.id).await.unwrap(), 3);
        assert!(s
            .use_recovery_code(&a.id, "rc1", Timestamp(1))
            .await
            .unwrap());
        assert!(!s
            .use_recovery_code(&a.id, "rc1", Timestamp(2))
            .await
            .unwrap());
        assert_eq!(s.recovery_codes_left(&a.id).await.unwrap(), 2);
        s.replace_recovery_codes(&a.id, &["new".to_owned()])
            .await
            .unwrap();
        assert!(!s
            .use_recovery_code(&a.id, "rc0", Timestamp(3))
            .await
            .unwrap());
        assert_eq!(s.recovery_codes_left(&a.id).await.unwrap(), 1);

        // A reset removes everything second-factor and every session.
        s.insert_factor(&factor("mfa_x", &a.id, FactorKind::Totp, true))
            .await
            .unwrap();
        s.insert_session(
            &session("ses_c", &a.id, 1000),
            a.password_hash.expose_secret(),
        )
        .await
        .unwrap();
        s.insert_pending_login(&p).await.unwrap();
        s.reset_mfa(&a.id).await.unwrap();
        assert!(s.factors_of(&a.id).await.unwrap().is_empty());
        assert_eq!(s.recovery_codes_left(&a.id).await.unwrap(), 0);
        assert!(s.sessions_of(&a.id).await.unwrap().is_empty());
        assert!(s
            .pending_login("th", Timestamp(1000))
            .await
            .unwrap()
            .is_none());

        // The sweep removes what expired and enrolments left unconfirmed.
        s.insert_factor(&factor("mfa_old", &a.id, FactorKind::Totp, false))
            .await
            .unwrap();
        s.insert_pending_login(&p).await.unwrap();
        s.put_challenge(&c).await.unwrap();
        assert_eq!(
            s.purge_mfa(Timestamp(5000), Timestamp(1000)).await.unwrap(),
            3
        );
        assert!(s.factors_of(&a.id).await.unwrap().is_empty());
    }
);

both!(
    the_first_key_check_wins,
    |s: SqlStore, _url: String| async move {
        assert!(s.key_checks().await.unwrap().is_empty());
        assert!(s
            .add_first_key_check("k1", "v1.k1.a", Timestamp(1))
            .await
            .unwrap());
        assert!(!s
            .add_first_key_check("k2", "v1.k2.b", Timestamp(2))
            .await
            .unwrap());
        assert!(!s
            .add_first_key_check("k1", "v1.k1.c", Timestamp(3))
            .await
            .unwrap());
        assert_eq!(s.key_checks().await.unwrap(), vec!["v1.k1.a".to_owned()]);
    }
);

both!(
    sends_are_counted_in_fixed_windows,
    |s: SqlStore, _url: String| async move {
        let hour = std::time::Duration::from_secs(3600);
        let t0 = 10_000_000;
        for i in 0..3 {
            assert_eq!(
                s.count_send("k", Timestamp(t0 + i), hour, 3).await.unwrap(),
                None
            );
        }
        // Refused, with the end of the window.
        assert_eq!(
            s.count_send("k", Timestamp(t0 + 10), hour, 3)
                .await
                .unwrap(),
            Some(Timestamp(t0 + 3_600_000))
        );
        assert_eq!(
            s.count_send("other", Timestamp(t0 + 10), hour, 3)
                .await
                .unwrap(),
            None
        );
        // A steady trickle never adds up across windows: the next window
        // starts again at one.
        for i in 0..3 {
            assert_eq!(
                s.count_send("k", Timestamp(t0 + 3_600_000 + i), hour, 3)
                    .await
                    .unwrap(),
                None
            );
        }
        assert!(s
            .count_send("k", Timestamp(t0 + 3_600_003), hour, 3)
            .await
            .unwrap()
            .is_some());
    }
);

both!(
    racing_removals_keep_the_last_factor,
    |s: SqlStore, _url: String| async move {
        let a = account("race@example.com", Role::Admin);
        s.insert_account(&a).await.unwrap();
        for round in 0..5 {
            let (x, y) = (format!("mfa_x{round}"), format!("mfa_y{round}"));
            s.insert_factor(&factor(&x, &a.id, FactorKind::Totp, true))
                .await
                .unwrap();
            s.insert_factor(&factor(&y, &a.id, FactorKind::Email, true))
                .await
                .unwrap();
            let (fx, fy) = (FactorId(x), FactorId(y));
            let (rx, ry) = tokio::join!(
                s.delete_factor(&a.id, &fx, true),
                s.delete_factor(&a.id, &fy, true)
            );
            let outcomes = [rx.unwrap(), ry.unwrap()];
            assert_eq!(
                outcomes
                    .iter()
                    .filter(|o| **o == FactorRemoval::LastFactor)
                    .count(),
                1,
                "{outcomes:?}"
            );
            let left = s.factors_of(&a.id).await.unwrap();
            assert_eq!(left.len(), 1);
            s.delete_factor(&a.id, &left[0].id, false).await.unwrap();
        }
    }
);

both!(
    blocks_expire_lift_and_count_offences,
    |s: SqlStore, _url: String| async move {
        let block = |id: &str, network: &str, at: i64, until: i64| IpBlock {
            id: id.into(),
            network: network.into(),
            reason: "test".into(),
            source: "cli".into(),
            created_at: Timestamp(at),
            expires_at: Timestamp(until),
            offence: 1,
        };
        s.insert_block(&block("b1", "203.0.113.7/32", 1_000, 5_000))
            .await
            .unwrap();
        s.insert_block(&block("b2", "2001:db8::/64", 2_000, 9_000))
            .await
            .unwrap();
        let ids = |v: Vec<IpBlock>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.active_blocks(Timestamp(3_000), 100).await.unwrap()),
            ["b2", "b1"]
        );
        s.insert_block(&block("b3", "203.0.113.7/32", 6_000, 7_000))
            .await
            .unwrap();
        assert_eq!(
            ids(s.active_blocks(Timestamp(6_500), 100).await.unwrap()),
            ["b3", "b2"]
        );
        assert_eq!(
            ids(s.active_blocks(Timestamp(6_500), 1).await.unwrap()),
            ["b3"]
        );
        // Expired and lifted blocks still count as the offender's record.
        assert_eq!(
            s.block_count("203.0.113.7/32", Timestamp(0)).await.unwrap(),
            2
        );
        assert_eq!(
            s.block_count("203.0.113.7/32", Timestamp(5_000))
                .await
                .unwrap(),
            1
        );
        assert!(s.lift_block("b2", Timestamp(6_600)).await.unwrap());
        assert!(
            !s.lift_block("b2", Timestamp(6_600)).await.unwrap(),
            "already lifted"
        );
        assert!(
            !s.lift_block("b1", Timestamp(6_600)).await.unwrap(),
            "already expired"
        );
        assert_eq!(
            ids(s.active_blocks(Timestamp(6_700), 100).await.unwrap()),
            ["b3"]
        );
        let b = &s.active_blocks(Timestamp(6_700), 100).await.unwrap()[0];
        assert_eq!(b, &block("b3", "203.0.113.7/32", 6_000, 7_000));
        // Blocks that ended before the offender memory are deleted: b1
        // expired at 5,000 and b2 was lifted at 6,600; b3 runs to 7,000.
        assert_eq!(s.purge_blocks(Timestamp(6_650)).await.unwrap(), 2);
        assert_eq!(
            s.block_count("203.0.113.7/32", Timestamp(0)).await.unwrap(),
            1
        );
        assert_eq!(
            ids(s.active_blocks(Timestamp(6_700), 100).await.unwrap()),
            ["b3"]
        );
        assert_eq!(s.purge_blocks(Timestamp(6_650)).await.unwrap(), 0);
    }
);

both!(
    shared_buckets_follow_gcra_across_callers,
    |s: SqlStore, _url: String| async move {
        let minute = std::time::Duration::from_secs(60);
        let interval = minute / 6; // 6 a minute
        let t0 = 50_000_000;
        // A burst of 3, then refused with the wait for the next token.
        for i in 0..3 {
            assert_eq!(
                s.take_rate_token("k", Timestamp(t0 + i), interval, 3)
                    .await
                    .unwrap(),
                None
            );
        }
        let wait = s
            .take_rate_token("k", Timestamp(t0 + 3), interval, 3)
            .await
            .unwrap()
            .unwrap();
        assert!(
            wait > std::time::Duration::from_secs(9) && wait <= interval,
            "{wait:?}"
        );
        assert_eq!(
            s.take_rate_token("other", Timestamp(t0 + 3), interval, 3)
                .await
                .unwrap(),
            None
        );
        // One token comes back per interval.
        assert_eq!(
            s.take_rate_token("k", Timestamp(t0 + 10_001), interval, 3)
                .await
                .unwrap(),
            None
        );
        assert!(s
            .take_rate_token("k", Timestamp(t0 + 10_002), interval, 3)
            .await
            .unwrap()
            .is_some());
        // Full buckets are forgotten.
        assert_eq!(
            s.purge_rate_buckets(Timestamp(t0 + 3_600_000))
                .await
                .unwrap(),
            2
        );
    }
);

both!(
    posture_reads_admins_and_keys_in_force,
    |s: SqlStore, _url: String| async move {
        let a = account("admin@example.com", Role::Admin);
        let b = account("other@example.com", Role::Admin);
        s.insert_account(&a).await.unwrap();
        s.insert_account(&b).await.unwrap();
        s.insert_account(&account("member@example.com", Role::Member))
            .await
            .unwrap();
        s.insert_factor(&factor("f1", &a.id, FactorKind::Totp, true))
            .await
            .unwrap();
        s.insert_factor(&factor("f2", &b.id, FactorKind::Totp, false))
            .await
            .unwrap();
        let (trail, _) = common::trail(&s, "posture").await;
        for (i, kind) in [EventKind::LoginSuccess, EventKind::LoginFailure]
            .iter()
            .enumerate()
        {
            trail
                .record_durable(
                    SecurityEvent {
                        id: EventId(format!("evt_p{i}")),
                        at: Timestamp(5000 + i as i64),
                        kind: *kind,
                        outcome: if i == 0 {
                            Outcome::Success
                        } else {
                            Outcome::Failure
                        },
                        reason: None,
                        account_id: Some(a.id.clone()),
                        ip: None,
                        user_agent: None,
                        request_id: None,
                    }
                    .to_audit(),
                )
                .await
                .unwrap();
        }
        let admins = s.admin_posture().await.unwrap();
        assert_eq!(
            admins,
            vec![
                rampart_core::AdminPosture {
                    email: "admin@example.com".into(),
                    has_second_factor: true,
                    created_at: Timestamp(1000),
                    last_sign_in: Some(Timestamp(5000)),
                },
                rampart_core::AdminPosture {
                    email: "other@example.com".into(),
                    has_second_factor: false,
                    created_at: Timestamp(1000),
                    last_sign_in: None,
                },
            ]
        );
        assert!(s.api_key_posture(Timestamp(1)).await.unwrap().is_empty());
    }
);

both!(
    scan_reports_keep_the_newest_per_target,
    |s: SqlStore, _url: String| async move {
        let row = |id: &str, target: &str, at: i64| rampart_core::ScanReportRow {
            id: id.into(),
            kind: "url".into(),
            target: target.into(),
            started_at: Timestamp(at),
            worst: Some("warning".into()),
            findings: 2,
            report: format!("{{\"id\":\"{id}\"}}"),
        };
        for i in 0..33 {
            s.insert_scan_report(&row(&format!("r{i:02}"), "https://a.test/", 1000 + i))
                .await
                .unwrap();
        }
        s.insert_scan_report(&row("b1", "https://b.test/", 10))
            .await
            .unwrap();
        let latest = s.latest_scan_reports().await.unwrap();
        let ids: Vec<&str> = latest.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["r32", "b1"]);
        assert_eq!(latest[0].report, "{\"id\":\"r32\"}");
        assert!(s.scan_report("r03").await.unwrap().is_some(), "30 kept");
        assert!(
            s.scan_report("r02").await.unwrap().is_none(),
            "older ones pruned"
        );
        assert!(s.scan_report("nope").await.unwrap().is_none());
        let ids = |rows: Vec<rampart_core::ScanReportRow>| {
            rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(s
                .recent_scan_reports("url", Some("https://a.test/"), 3)
                .await
                .unwrap()),
            ["r32", "r31", "r30"]
        );
        assert_eq!(
            ids(s.recent_scan_reports("url", None, 40).await.unwrap()).len(),
            31
        );
        assert!(s
            .recent_scan_reports("self", None, 3)
            .await
            .unwrap()
            .is_empty());
        // 90 days later, a report of another target retires the old ones.
        s.insert_scan_report(&row("c1", "https://c.test/", 11 + 90 * 86_400_000))
            .await
            .unwrap();
        let ids: Vec<String> = s
            .latest_scan_reports()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            vec!["r32".to_owned(), "c1".to_owned()],
            "b1 was older than 90 days"
        );
    }
);

both!(
    looking_without_migrating_needs_this_builds_schema,
    |s: SqlStore, url: String| async move {
        s.close().await;
        let looked = rampart_store::open_as_is(&url).await.unwrap();
        assert!(looked.admin_posture().await.unwrap().is_empty());
        looked.close().await;
        // A database one migration behind (an older node's) is refused,
        // and left as it was.
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(rampart_store::SCHEMA_VERSION)
            .execute(&pool)
            .await
            .unwrap();
        let e = rampart_store::open_as_is(&url).await.err().unwrap();
        assert!(
            matches!(e, rampart_store::OpenError::OtherSchema { found, .. } if found == rampart_store::SCHEMA_VERSION - 1),
            "{e}"
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, rampart_store::SCHEMA_VERSION - 1, "nothing was migrated");
        pool.close().await;
    }
);

fn alert(id: &str, group: &str, at: i64) -> rampart_core::alerts::Alert {
    rampart_core::alerts::Alert {
        id: id.into(),
        rule_id: "r".into(),
        title: "T".into(),
        level: "high".into(),
        group_key: group.into(),
        status: rampart_core::alerts::AlertStatus::Open,
        count: 1,
        first_at: Timestamp(at),
        last_at: Timestamp(at),
        evidence: vec![format!("n1:{at}")],
        source_ip: Some("192.0.2.1".into()),
        account: None,
        responses: vec![],
        node: "n1".into(),
        changed_by: None,
        changed_at: None,
    }
}

both!(
    alerts_group_until_resolved_change_only_as_read_and_are_purged,
    |s: SqlStore, _url: String| async move {
        use rampart_core::alerts::{AlertQuery, AlertStatus, AlertStore, ResponseRecord};
        let (a, new) = s.raise_alert(&alert("alr_1", "g", 1_000)).await.unwrap();
        assert!(new);
        assert_eq!(a.id, "alr_1");
        // A repeat joins it: count, newest time, evidence.
        let (b, new) = s.raise_alert(&alert("alr_2", "g", 2_000)).await.unwrap();
        assert!(!new);
        assert_eq!(
            (b.id.as_str(), b.count, b.last_at),
            ("alr_1", 2, Timestamp(2_000))
        );
        assert_eq!(b.evidence, vec!["n1:1000", "n1:2000"]);
        // Responses change only from what the writer read.
        let rec = ResponseRecord {
            response: "block_address".into(),
            state: "done".into(),
            detail: None,
            block_id: Some("blk_1".into()),
            ip: None,
            account: None,
            at: Timestamp(2_000),
        };
        assert!(s
            .set_alert_responses("alr_1", &[], std::slice::from_ref(&rec))
            .await
            .unwrap());
        assert!(
            !s.set_alert_responses("alr_1", &[], &[]).await.unwrap(),
            "stale"
        );
        assert_eq!(
            s.alert("alr_1").await.unwrap().unwrap().responses,
            vec![rec.clone()]
        );
        // Resolved: final, and a new firing opens a new alert.
        assert!(s
            .set_alert_status("alr_1", AlertStatus::Resolved, "admin:x", Timestamp(3_000))
            .await
            .unwrap());
        assert!(!s
            .set_alert_status("alr_1", AlertStatus::Open, "admin:x", Timestamp(3_001))
            .await
            .unwrap());
        assert!(!s
            .set_alert_responses("alr_1", std::slice::from_ref(&rec), &[])
            .await
            .unwrap());
        let (c, new) = s.raise_alert(&alert("alr_3", "g", 4_000)).await.unwrap();
        assert!(new);
        assert_eq!(c.id, "alr_3");
        let open = s
            .alerts(&AlertQuery {
                status: Some(AlertStatus::Open),
                limit: 10,
                ..AlertQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            open.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            vec!["alr_3"]
        );
        // A delivery is taken by one sender only, and retried later.
        s.enqueue_deliveries(
            "alr_3",
            &[("webhook".into(), "{}".into())],
            Timestamp(4_000),
        )
        .await
        .unwrap();
        let due = s.due_deliveries(Timestamp(4_000), 3, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(s.claim_delivery(&due[0], Timestamp(100_000)).await.unwrap());
        assert!(
            !s.claim_delivery(&due[0], Timestamp(100_000)).await.unwrap(),
            "taken twice"
        );
        assert!(
            s.due_deliveries(Timestamp(5_000), 3, 10)
                .await
                .unwrap()
                .is_empty(),
            "leased"
        );
        s.finish_delivery(due[0].id, None, Some("down"), Some(Timestamp(6_000)))
            .await
            .unwrap();
        let again = s.due_deliveries(Timestamp(6_000), 3, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        // Purge: the resolved alert goes after its time; the open one
        // stays, with its delivery.
        let n = s
            .purge_alerts(Timestamp(3_500), Timestamp(0), Timestamp(0), 3)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(s.alert("alr_1").await.unwrap().is_none());
        assert!(s.alert("alr_3").await.unwrap().is_some());
        async fn pending(s: &SqlStore) -> usize {
            s.due_deliveries(Timestamp(1 << 40), 3, 10)
                .await
                .unwrap()
                .len()
        }
        assert_eq!(pending(&s).await, 1);
        let n = s
            .purge_alerts(Timestamp(0), Timestamp(10_000), Timestamp(0), 3)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(pending(&s).await, 0, "its deliveries went with it");
    }
);

both!(
    administrators_addresses_are_their_live_sessions,
    |s: SqlStore, _url: String| async move {
        let admin = account("boss@example.com", Role::Admin);
        let member = account("m@example.com", Role::Member);
        s.insert_account(&admin).await.unwrap();
        s.insert_account(&member).await.unwrap();
        let mut live = session("a1", &admin.id, 100);
        live.ip = Some("2001:db8:1:2::7".into());
        let mut ended = session("a2", &admin.id, 100);
        ended.ip = Some("192.0.2.50".into());
        ended.expires_at = Timestamp(150);
        let mut members = session("m1", &member.id, 100);
        members.ip = Some("198.51.100.3".into());
        let mut held = session("a3", &admin.id, 100);
        held.ip = Some("192.0.2.77".into());
        held.step_up_at = rampart_core::auth::STEP_UP_HELD;
        for (sess, who) in [
            (&live, &admin),
            (&ended, &admin),
            (&members, &member),
            (&held, &admin),
        ] {
            assert!(s
                .insert_session(sess, who.password_hash.expose_secret())
                .await
                .unwrap());
        }
        // A token used elsewhere does not extend the protection there.
        assert!(s
            .move_session(
                &live.id,
                (Some("2001:db8:1:2::7"), None),
                (Some("203.0.113.66"), None)
            )
            .await
            .unwrap());
        assert_eq!(
            s.admin_session_addresses(Timestamp(200)).await.unwrap(),
            vec!["2001:db8:1:2::7".to_owned()],
            "live, proven, not held"
        );
    }
);
