//! What backups need of the store, on both back ends: the list of tables,
//! the sentinel, SQLite's snapshot, and the copy of every row from one
//! database into another (SQLite to PostgreSQL and back), after which the
//! audit trail still verifies.

use std::sync::Arc;

use rampart_core::audit::{verify, AuditStore, Category, Event, Expect, WriterMode, SUCCESS};
use rampart_core::model::{Account, Role, Session};
use rampart_core::{AccountId, Email, IpBlock, ManualClock, SessionId, Store, Timestamp};
use rampart_crypto::SecretString;
use rampart_store::{open, SqlStore, TABLES};

mod common;
use common::{keys, postgres_url};

async fn fresh_sqlite(dir: &tempfile::TempDir, name: &str) -> SqlStore {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    open(&url).await.unwrap()
}

/// Accounts, sessions, blocks and a few hundred audit events (with
/// checkpoints), as a server would leave them.
async fn populate(s: &SqlStore) {
    for i in 0..20 {
        let id = AccountId(format!("acc_{i}"));
        s.insert_account(&Account {
            id: id.clone(),
            email: Email::parse(&format!("user{i}@example.com")).unwrap(),
            display_name: (i % 2 == 0).then(|| format!("User {i}")),
            password_hash: SecretString::from("$argon2id$v=19$m=19456,t=2,p=1$x$y"),
            role: if i == 0 { Role::Admin } else { Role::Member },
            created_at: Timestamp(1_000 + i),
            has_mfa: false,
            lifecycle: Default::default(),
        })
        .await
        .unwrap();
        assert!(s
            .insert_session(
                &Session {
                    id: SessionId(format!("ses_{i}")),
                    account_id: id,
                    token_hash: format!("hash-{i}"),
                    created_at: Timestamp(2_000),
                    last_seen_at: Timestamp(2_000),
                    expires_at: Timestamp(90_000),
                    ip: Some("192.0.2.1".into()),
                    user_agent: None,
                    last_ip: None,
                    last_user_agent: None,
                    step_up_at: Timestamp(2_000),
                },
                "$argon2id$v=19$m=19456,t=2,p=1$x$y"
            )
            .await
            .unwrap());
    }
    s.insert_block(&IpBlock {
        id: "blk_1".into(),
        network: "203.0.113.7/32".into(),
        reason: "test".into(),
        source: "cli".into(),
        created_at: Timestamp(3_000),
        expires_at: Timestamp(9_000_000),
        offence: 1,
    })
    .await
    .unwrap();
    let (audit, task) = rampart_core::audit::Audit::start(
        Arc::new(s.clone()),
        Arc::new(keys()),
        "n1",
        WriterMode::Command,
        None,
        Arc::new(ManualClock::new(Timestamp(1_000))),
    )
    .await
    .unwrap();
    for i in 0..300u64 {
        audit
            .record(
                Event::new(
                    Timestamp(10_000 + i as i64),
                    "login_success",
                    Category::Authentication,
                    SUCCESS,
                )
                .field("n", i),
            )
            .await;
        if i % 100 == 99 {
            audit.flush().await;
        }
    }
    audit.stop().await;
    task.await.unwrap();
}

async fn trail_verifies(s: &SqlStore) {
    let report = verify(s, &keys(), None, &Expect::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.nodes.iter().map(|n| n.events).sum::<u64>(), 300);
}

both!(
    the_list_of_tables_is_every_table_the_migrations_make,
    |s: SqlStore, _url: String| async move {
        let mut ours: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
        ours.sort();
        assert_eq!(s.catalog_tables().await.unwrap(), ours);
        // Once the legacy event tables are gone (their events joined the
        // trail), counts and copies go on without them.
        s.import_legacy(&[]).await.unwrap();
        let counts = s.table_counts().await.unwrap();
        assert!(!counts.contains_key("security_events"));
        assert_eq!(counts.len(), TABLES.len() - 2);
        let dir = tempfile::tempdir().unwrap();
        let scratch = fresh_sqlite(&dir, "scratch.db").await;
        assert_eq!(
            s.copy_rows_to(&scratch, &mut |_, _| {}).await.unwrap(),
            counts
        );
    }
);

both!(
    a_sentinel_is_found_and_only_the_newest_hundred_stay,
    |s: SqlStore, _url: String| async move {
        assert!(!s.has_backup_sentinel("bks_0").await.unwrap());
        for i in 0..105 {
            s.write_backup_sentinel(&format!("bks_{i}"), Timestamp(1_000 + i))
                .await
                .unwrap();
        }
        assert!(s.has_backup_sentinel("bks_104").await.unwrap());
        assert!(s.has_backup_sentinel("bks_5").await.unwrap());
        assert!(!s.has_backup_sentinel("bks_4").await.unwrap());
        assert_eq!(s.table_counts().await.unwrap()["backup_sentinels"], 100);
    }
);

both!(
    every_row_is_copied_into_sqlite_and_back_and_the_trail_still_verifies,
    |s: SqlStore, _url: String| async move {
        populate(&s).await;
        let before = s.table_counts().await.unwrap();
        assert_eq!(before["accounts"], 20);
        assert!(before["audit_events"] >= 300);
        let dir = tempfile::tempdir().unwrap();
        let scratch = fresh_sqlite(&dir, "scratch.db").await;
        let mut seen = Vec::new();
        let counts = s
            .copy_rows_to(&scratch, &mut |done, total| seen.push((done, total)))
            .await
            .unwrap();
        assert_eq!(counts, before);
        assert_eq!(scratch.table_counts().await.unwrap(), before);
        let total: u64 = before.values().sum();
        assert_eq!(
            seen.last(),
            Some(&(total, total)),
            "progress ends at the total"
        );
        trail_verifies(&scratch).await;
        let admin = scratch
            .account_by_email(&Email::parse("user0@example.com").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert_eq!(admin.display_name.as_deref(), Some("User 0"));

        // A second copy into the same target is refused, and changes nothing.
        let e = s
            .copy_rows_to(&scratch, &mut |_, _| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not empty"), "{e}");
        assert_eq!(scratch.table_counts().await.unwrap(), before);

        // And back again, into a fresh database of the other kind when
        // PostgreSQL is reachable (of the same kind otherwise).
        let back = match postgres_url().await {
            Some(url) => open(&url).await.unwrap(),
            None => fresh_sqlite(&dir, "back.db").await,
        };
        scratch.copy_rows_to(&back, &mut |_, _| {}).await.unwrap();
        assert_eq!(back.table_counts().await.unwrap(), before);
        trail_verifies(&back).await;
        // Serial ids continue after the copied ones: the trail takes more.
        populate_more_events(&back).await;
    }
);

/// Another writer appends to the copied trail (its pending rows take new
/// serial ids), which then verifies with every event.
async fn populate_more_events(s: &SqlStore) {
    let (audit, task) = common::trail(s, "n2").await;
    for i in 0..10u64 {
        audit
            .record_durable(
                Event::new(
                    Timestamp(50_000),
                    "login_success",
                    Category::Authentication,
                    SUCCESS,
                )
                .field("n", i),
            )
            .await
            .unwrap();
    }
    audit.stop().await;
    task.await.unwrap();
    let report = verify(s, &keys(), None, &Expect::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
}

#[tokio::test]
async fn a_sqlite_snapshot_is_a_whole_database_taken_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = fresh_sqlite(&dir, "live.db").await;
    populate(&s).await;
    let before = s.table_counts().await.unwrap();
    let dest = dir.path().join("snap.db");
    s.snapshot_sqlite(&dest).await.unwrap();
    // Writes after the snapshot are not in it.
    s.write_backup_sentinel("bks_after", Timestamp(99_000))
        .await
        .unwrap();
    let snap = open(&format!("sqlite://{}", dest.display())).await.unwrap();
    assert_eq!(snap.table_counts().await.unwrap(), before);
    assert_eq!(snap.integrity_check().await.unwrap(), vec!["ok".to_owned()]);
    assert!(!snap.has_backup_sentinel("bks_after").await.unwrap());
    trail_verifies(&snap).await;
    // The destination must not exist: nothing is overwritten.
    assert!(s.snapshot_sqlite(&dest).await.is_err());
}

#[tokio::test]
async fn postgres_cannot_take_a_sqlite_snapshot() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let s = open(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = s
        .snapshot_sqlite(&dir.path().join("x.db"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
    assert!(!dir.path().join("x.db").exists());
}
