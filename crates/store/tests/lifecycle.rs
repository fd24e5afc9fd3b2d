//! The account lifecycle's store (ADR 0015), on both back ends: searches
//! with every filter, sort and cursor, the last-administrator guard, and
//! single-use links.

use rampart_core::incident::IncidentStore;
use rampart_core::lifecycle::{
    AccountQuery, AccountSort, AccountStatus, EmailToken, Guarded, LifecycleStore, TokenPurpose,
};
use rampart_core::model::{Account, Lifecycle, Role};
use rampart_core::{AccountId, Email, Store, Timestamp};
use rampart_crypto::SecretString;
use rampart_store::{open, SqlStore};

#[allow(dead_code)]
mod common;
use common::postgres_url;

fn account(email: &str, role: Role, created: i64) -> Account {
    Account {
        id: AccountId(format!("acc_{}", email.split('@').next().unwrap())),
        email: Email::parse(email).unwrap(),
        display_name: None,
        password_hash: SecretString::from("$argon2id$v=19$m=19456,t=2,p=1$x$y"),
        role,
        created_at: Timestamp(created),
        has_mfa: false,
        lifecycle: Lifecycle::new((created % 2 == 0).then_some(Timestamp(created))),
    }
}

fn query() -> AccountQuery {
    AccountQuery {
        limit: 100,
        ..AccountQuery::default()
    }
}

async fn emails(s: &SqlStore, q: &AccountQuery) -> Vec<String> {
    s.search_accounts(q)
        .await
        .unwrap()
        .iter()
        .map(|a| a.email.as_str().to_owned())
        .collect()
}

both!(
    searches_filter_sort_and_page,
    |s: SqlStore, _url: String| async move {
        for (i, (e, role)) in [
            ("ann@shop.example", Role::Member),
            ("a_b@shop.example", Role::Member),
            ("a%c@shop.example", Role::Member),
            ("boss@shop.example", Role::Admin),
            ("cat@other.example", Role::Member),
        ]
        .into_iter()
        .enumerate()
        {
            s.insert_account(&account(e, role, 1_000 + i as i64))
                .await
                .unwrap();
        }
        s.note_sign_in(&AccountId("acc_ann".into()), Timestamp(5_000))
            .await
            .unwrap();
        s.note_sign_in(&AccountId("acc_cat".into()), Timestamp(9_000))
            .await
            .unwrap();
        // LIKE's wildcards in a prefix are plain characters.
        let q = |p: &str| AccountQuery {
            email_prefix: Some(p.to_owned()),
            ..query()
        };
        assert_eq!(emails(&s, &q("a_")).await, ["a_b@shop.example"]);
        assert_eq!(emails(&s, &q("a%")).await, ["a%c@shop.example"]);
        assert_eq!(emails(&s, &q("a")).await.len(), 3);
        assert_eq!(emails(&s, &q("zzz")).await.len(), 0);
        let role = AccountQuery {
            role: Some(Role::Admin),
            ..query()
        };
        assert_eq!(emails(&s, &role).await, ["boss@shop.example"]);
        // Created at 1000, 1002, 1004 are verified (even), the others not.
        let unverified = AccountQuery {
            status: Some(AccountStatus::Unverified),
            ..query()
        };
        assert_eq!(
            emails(&s, &unverified).await,
            ["a_b@shop.example", "boss@shop.example"]
        );
        let no_mfa = AccountQuery {
            has_mfa: Some(true),
            ..query()
        };
        assert!(emails(&s, &no_mfa).await.is_empty());
        let before = AccountQuery {
            signed_in_before: Some(Timestamp(6_000)),
            ..query()
        };
        assert_eq!(emails(&s, &before).await, ["ann@shop.example"]);
        let after = AccountQuery {
            signed_in_after: Some(Timestamp(6_000)),
            ..query()
        };
        assert_eq!(emails(&s, &after).await, ["cat@other.example"]);
        // Every sort, both ways, paged one at a time with cursors, gives
        // every account once in order.
        for sort in [
            AccountSort::Email,
            AccountSort::CreatedAt,
            AccountSort::LastSignIn,
        ] {
            for descending in [false, true] {
                let mut q = AccountQuery {
                    sort,
                    descending,
                    limit: 1,
                    ..query()
                };
                let all = emails(
                    &s,
                    &AccountQuery {
                        limit: 100,
                        ..q.clone()
                    },
                )
                .await;
                let mut paged = Vec::new();
                loop {
                    let page = s.search_accounts(&q).await.unwrap();
                    let Some(last) = page.last() else { break };
                    paged.push(last.email.as_str().to_owned());
                    let cursor = q.cursor_after(last);
                    q.after = q.parse_cursor(&cursor);
                    assert!(q.after.is_some());
                }
                assert_eq!(paged, all, "{sort:?} descending={descending}");
                assert_eq!(all.len(), 5);
            }
        }
    }
);

both!(
    the_last_administrator_in_force_stays,
    |s: SqlStore, _url: String| async move {
        let a = account("a@example.com", Role::Admin, 1);
        let b = account("b@example.com", Role::Admin, 2);
        let m = account("m@example.com", Role::Member, 3);
        for x in [&a, &b, &m] {
            s.insert_account(x).await.unwrap();
        }
        assert_eq!(
            s.set_disabled(&a.id, Some(Timestamp(10))).await.unwrap(),
            Guarded::Done
        );
        // b is the last in force: neither disabled, scheduled nor deleted.
        assert_eq!(
            s.set_disabled(&b.id, Some(Timestamp(10))).await.unwrap(),
            Guarded::LastAdmin
        );
        assert_eq!(
            s.set_deletion(&b.id, Some(Timestamp(10))).await.unwrap(),
            Guarded::LastAdmin
        );
        assert_eq!(
            s.delete_account(&b.id, &[], Timestamp(10), false)
                .await
                .unwrap(),
            Guarded::LastAdmin
        );
        let still = s.account_by_id(&b.id).await.unwrap().unwrap();
        assert_eq!(still.lifecycle.disabled_at, None);
        assert_eq!(still.lifecycle.delete_after, None);
        // Members are not guarded; unknown accounts are not found.
        assert_eq!(
            s.delete_account(&m.id, &[], Timestamp(10), false)
                .await
                .unwrap(),
            Guarded::Done
        );
        assert_eq!(
            s.set_disabled(&m.id, Some(Timestamp(10))).await.unwrap(),
            Guarded::NotFound
        );
        // Enabling a back, b may go.
        assert_eq!(s.set_disabled(&a.id, None).await.unwrap(), Guarded::Done);
        assert_eq!(
            s.set_deletion(&b.id, Some(Timestamp(10))).await.unwrap(),
            Guarded::Done
        );
        assert_eq!(
            s.deletions_due(Timestamp(11)).await.unwrap(),
            vec![b.id.clone()]
        );
        assert_eq!(s.set_deletion(&b.id, None).await.unwrap(), Guarded::Done);
        assert!(s.deletions_due(Timestamp(11)).await.unwrap().is_empty());
        // The sweep deletes only what is still due: a sign-in that
        // cancelled the deletion after it was listed wins.
        assert_eq!(
            s.delete_account(&b.id, &[], Timestamp(11), true)
                .await
                .unwrap(),
            Guarded::NotFound
        );
        assert_eq!(
            s.set_deletion(&b.id, Some(Timestamp(20))).await.unwrap(),
            Guarded::Done
        );
        assert_eq!(
            s.delete_account(&b.id, &[], Timestamp(19), true)
                .await
                .unwrap(),
            Guarded::NotFound
        );
        assert_eq!(
            s.delete_account(&b.id, &[], Timestamp(20), true)
                .await
                .unwrap(),
            Guarded::Done
        );
        assert!(s.account_by_id(&b.id).await.unwrap().is_none());
    }
);

both!(
    concurrent_disables_leave_one_administrator,
    |s: SqlStore, _url: String| async move {
        let ids: Vec<AccountId> = (0..4).map(|i| AccountId(format!("acc_admin{i}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut a = account(&format!("admin{i}@example.com"), Role::Admin, i as i64);
            a.id = id.clone();
            s.insert_account(&a).await.unwrap();
        }
        // Rounds of four racing disables: each time one stays.
        for round in 0..10 {
            for id in &ids {
                assert_eq!(s.set_disabled(id, None).await.unwrap(), Guarded::Done);
            }
            let mut tasks = Vec::new();
            for id in ids.clone() {
                let s = s.clone();
                // No retry: a write that waits for SQLite's one writer
                // must wait, not fail as busy.
                tasks.push(tokio::spawn(async move {
                    s.set_disabled(&id, Some(Timestamp(5))).await.unwrap()
                }));
            }
            let mut done = 0;
            for t in tasks {
                if t.await.unwrap() == Guarded::Done {
                    done += 1;
                }
            }
            assert_eq!(
                done, 3,
                "round {round}: exactly one administrator stays in force"
            );
        }
    }
);

both!(
    links_are_spent_once,
    |s: SqlStore, _url: String| async move {
        let a = account("l@example.com", Role::Member, 1);
        s.insert_account(&a).await.unwrap();
        let token = |hash: &str, purpose, email: &str| EmailToken {
            token_hash: hash.to_owned(),
            purpose,
            account: a.id.clone(),
            email: email.to_owned(),
            code_mac: Some("mac".into()),
            created_at: Timestamp(1),
            expires_at: Timestamp(100),
        };
        s.put_email_token(&token("v1", TokenPurpose::Verify, "l@example.com"))
            .await
            .unwrap();
        // A new one replaces the old one of its purpose.
        s.put_email_token(&token("v2", TokenPurpose::Verify, "l@example.com"))
            .await
            .unwrap();
        assert!(s
            .email_token(TokenPurpose::Verify, "v1", Timestamp(2))
            .await
            .unwrap()
            .is_none());
        // Another purpose does not find it; expiry ends it.
        assert!(s
            .email_token(TokenPurpose::Change, "v2", Timestamp(2))
            .await
            .unwrap()
            .is_none());
        assert!(s
            .email_token(TokenPurpose::Verify, "v2", Timestamp(100))
            .await
            .unwrap()
            .is_none());
        // The code's row is the newest one of the account.
        assert_eq!(
            s.email_code(TokenPurpose::Verify, &a.id, Timestamp(2))
                .await
                .unwrap()
                .map(|t| t.token_hash),
            Some("v2".to_owned())
        );
        assert!(s
            .finish_verification("v2", &a.id, "l@example.com", Timestamp(3))
            .await
            .unwrap());
        assert!(!s
            .finish_verification("v2", &a.id, "l@example.com", Timestamp(3))
            .await
            .unwrap());
        let got = s.account_by_id(&a.id).await.unwrap().unwrap();
        assert_eq!(got.lifecycle.email_verified_at, Some(Timestamp(3)));
        // A change and its undo; a taken address is a conflict.
        let other = account("taken@example.com", Role::Member, 2);
        s.insert_account(&other).await.unwrap();
        s.put_email_token(&token("c1", TokenPurpose::Change, "taken@example.com"))
            .await
            .unwrap();
        assert!(matches!(
            s.finish_email_change(
                "c1",
                "l@example.com",
                "taken@example.com",
                Timestamp(4),
                &token("u1", TokenPurpose::Undo, "l@example.com")
            )
            .await,
            Err(rampart_core::StoreError::Conflict)
        ));
        s.put_email_token(&token("c2", TokenPurpose::Change, "new@example.com"))
            .await
            .unwrap();
        assert!(s
            .finish_email_change(
                "c2",
                "l@example.com",
                "new@example.com",
                Timestamp(4),
                &token("u2", TokenPurpose::Undo, "l@example.com")
            )
            .await
            .unwrap());
        assert!(!s
            .finish_email_change(
                "c2",
                "l@example.com",
                "new@example.com",
                Timestamp(4),
                &token("u3", TokenPurpose::Undo, "l@example.com")
            )
            .await
            .unwrap());
        let got = s.account_by_id(&a.id).await.unwrap().unwrap();
        assert_eq!(got.email.as_str(), "new@example.com");
        // The old address is held while the undo may come: from every
        // other account, not from its own.
        assert!(s
            .email_reserved("l@example.com", &other.id, Timestamp(5))
            .await
            .unwrap());
        assert!(!s
            .email_reserved("l@example.com", &a.id, Timestamp(5))
            .await
            .unwrap());
        assert!(!s
            .email_reserved("new@example.com", &other.id, Timestamp(5))
            .await
            .unwrap());
        // Registering it is refused as a taken address, atomically.
        let mut squatter = account("l@example.com", Role::Member, 5);
        squatter.id = AccountId("acc_squatter".into());
        assert!(matches!(
            s.insert_account(&squatter).await,
            Err(rampart_core::StoreError::Conflict)
        ));
        assert!(s.account_by_id(&squatter.id).await.unwrap().is_none());
        let epoch = s
            .account_by_id(&a.id)
            .await
            .unwrap()
            .unwrap()
            .lifecycle
            .device_epoch;
        assert_eq!(
            s.finish_email_undo("u2", "unusable-hash", Timestamp(5))
                .await
                .unwrap()
                .map(|t| t.email),
            Some("l@example.com".to_owned())
        );
        assert!(s
            .finish_email_undo("u2", "unusable-hash", Timestamp(5))
            .await
            .unwrap()
            .is_none());
        let got = s.account_by_id(&a.id).await.unwrap().unwrap();
        assert_eq!(got.email.as_str(), "l@example.com");
        assert_eq!(got.password_hash.expose_secret(), "unusable-hash");
        assert_eq!(got.lifecycle.device_epoch, epoch + 1, "device tokens void");
        assert!(!s
            .email_reserved("l@example.com", &other.id, Timestamp(5))
            .await
            .unwrap());
        // Expired links and reset codes are swept; live ones stay.
        s.put_email_token(&token("v3", TokenPurpose::Verify, "l@example.com"))
            .await
            .unwrap();
        s.insert_password_reset(&a.id, "r1", "forgotten", Timestamp(200))
            .await
            .unwrap();
        assert_eq!(s.purge_expired_links(Timestamp(150)).await.unwrap(), 1);
        assert!(s
            .email_token(TokenPurpose::Verify, "v3", Timestamp(2))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            s.password_reset_owner("r1", Timestamp(150)).await.unwrap(),
            Some((a.id.clone(), "forgotten".to_owned()))
        );
        assert_eq!(s.purge_expired_links(Timestamp(201)).await.unwrap(), 1);
    }
);

#[tokio::test]
async fn the_search_binds_every_value() {
    // A prefix full of SQL is a prefix: nothing matches, nothing breaks.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let s = open(&url).await.unwrap();
    s.insert_account(&account("x@example.com", Role::Member, 2))
        .await
        .unwrap();
    for p in ["' OR 1=1 --", "x' UNION SELECT 1 --", "\\", "%"] {
        let q = AccountQuery {
            email_prefix: Some(p.to_owned()),
            ..query()
        };
        assert!(emails(&s, &q).await.is_empty(), "{p}");
    }
}
