//! Requirement 3: PostgreSQL, and two nodes on one database.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_api_works_on_postgres() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let s = TestServer::with(Options {
        db: Db::Postgres(url),
        ..Options::default()
    })
    .await;
    let admin = s.admin().await;
    let token = s.user("pg@example.com").await;
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 200);
    let r = s
        .post(
            "/api/v1/auth/register",
            json!({"email": "PG@example.com", "password": STRONG}),
        )
        .await;
    problem(r, 409, "email_taken").await;
    let ev: serde_json::Value = s
        .get_auth("/api/v1/admin/events?type=login_success", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ev["events"].as_array().unwrap().len(), 2);
    // The second step of a login, on PostgreSQL.
    let again = s.login_mfa("owner@example.com").await;
    assert_eq!(
        s.get_auth("/api/v1/admin/events", &again).await.status(),
        200
    );
}

#[tokio::test]
async fn two_nodes_share_sessions_and_revocations() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = Proc::spawn(&d1.path().join("data"), &["--database-url", &url]);
    // Nodes on one database share the master key.
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(d2.path().join("data"))
            .unwrap();
        let key = d2.path().join("data/master.key");
        std::fs::copy(d1.path().join("data/master.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let b = Proc::spawn(&d2.path().join("data"), &["--database-url", &url]);
    let r = a
        .client
        .post(a.url("/api/v1/auth/register"))
        .json(&json!({"email": "two@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let login = |p: &Proc| {
        let c = p.client.clone();
        let u = p.url("/api/v1/auth/login");
        async move {
            let v: serde_json::Value = c
                .post(u)
                .json(&json!({"email": "two@example.com", "password": STRONG}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let me = |p: &Proc, t: &str| {
        let req = p.client.get(p.url("/api/v1/me")).bearer_auth(t.to_owned());
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // A session made on A is accepted by B.
    let t1 = login(&a).await;
    assert_eq!(me(&b, &t1).await, 200);
    // Revoked on B: refused by both at once.
    let r = b
        .client
        .post(b.url("/api/v1/auth/logout"))
        .bearer_auth(&t1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me(&a, &t1).await, 401);
    assert_eq!(me(&b, &t1).await, 401);
    // And the other way round.
    let t2 = login(&b).await;
    assert_eq!(me(&a, &t2).await, 200);
    let r = a
        .client
        .post(a.url("/api/v1/auth/logout"))
        .bearer_auth(&t2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me(&b, &t2).await, 401);
}

/// Second factors are sealed with the master key: nodes sharing a
/// database share it (`master_key_file`), and a node with another key
/// refuses to start instead of failing on the first factor it reads.
#[tokio::test]
async fn nodes_share_second_factors_through_one_master_key() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let a = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        ..Options::default()
    })
    .await;
    let admin = a.admin().await;
    assert_eq!(
        a.get_auth("/api/v1/admin/events", &admin).await.status(),
        200
    );
    let key = a.data_dir().join("master.key");
    let b = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        env: vec![(
            "RAMPART_MASTER_KEY_FILE".to_owned(),
            key.display().to_string(),
        )],
        ..Options::default()
    })
    .await;
    // The factor enrolled on node A works on node B.
    *b.totp.lock().unwrap() = a.totp.lock().unwrap().clone();
    b.clock.advance(std::time::Duration::from_secs(60));
    let token = b.login_mfa("owner@example.com").await;
    assert_eq!(
        b.get_auth("/api/v1/admin/events", &token).await.status(),
        200
    );

    let e = refused_start(&[("RAMPART_DATABASE_URL", &url)]).await;
    assert!(e.contains("same master key"), "{e}");
}
