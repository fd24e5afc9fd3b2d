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
    second_node_dir(&d1.path().join("data"), &d2.path().join("data"));
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

/// A certificate authority made here, and a server certificate it signed
/// for `localhost` and 127.0.0.1: (CA PEM, server cert PEM, server key PEM).
fn local_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Rampart test database CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    (ca_cert.pem(), server.pem(), key.serialize_pem())
}

/// Runs a PostgreSQL program as the `postgres` user when we are root
/// (initdb refuses root), else as ourselves.
fn pg(bin: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    };
    cmd.args(args).output().unwrap()
}

/// Encryption in transit to PostgreSQL: a throwaway server that accepts
/// only TLS, with a certificate from a CA made by the test. Rampart with
/// `sslmode=verify-full` and that CA works; with another CA it refuses to
/// start.
#[tokio::test]
async fn verify_full_tls_to_postgres_with_a_local_ca() {
    let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
    });
    let Some(bin) = bin else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("initdb is required under CI=true");
        }
        eprintln!("\n!!! SKIPPING verify-full test: no initdb under /usr/lib/postgresql !!!\n");
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pgdata = dir.path().join("pg");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        let ok = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&pgdata)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let d = pgdata.to_str().unwrap();
    let out = pg(
        &bin.join("initdb"),
        &["-D", d, "-A", "trust", "-U", "postgres", "--no-sync"],
    );
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ca, cert, key) = local_ca();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let write = |name: &str, text: &str, mode: u32| {
        let p = pgdata.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&p)
                .status()
                .unwrap();
        }
    };
    write("server.crt", &cert, 0o644);
    write("server.key", &key, 0o600);
    write("pg_hba.conf", "hostssl all all 127.0.0.1/32 trust\n", 0o600);
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    write(
        "postgresql.conf",
        &format!(
            "{conf}\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\nfsync = off\n"
        ),
        0o600,
    );
    let log = pgdata.join("log.txt");
    let out = pg(
        &bin.join("pg_ctl"),
        &["-D", d, "-l", log.to_str().unwrap(), "-w", "start"],
    );
    assert!(
        out.status.success(),
        "pg_ctl start: {} {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let ca_path = dir.path().join("db-ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    let url = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca_path.display()
    );
    let result = async {
        let s = TestServer::with(Options {
            db: Db::Postgres(url.clone()),
            ..Options::default()
        })
        .await;
        let token = s.user("tls@example.com").await;
        assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 200);
        // The server saw a TLS connection.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let (ssl,): (bool,) =
            sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(ssl);
        pool.close().await;
        // Another CA: the certificate is not trusted, and Rampart says so.
        let (other, _, _) = local_ca();
        let other_path = dir.path().join("other-ca.pem");
        std::fs::write(&other_path, other).unwrap();
        let wrong = url.replace(ca_path.to_str().unwrap(), other_path.to_str().unwrap());
        let e = refused_start(&[("RAMPART_DATABASE_URL", &wrong)]).await;
        assert!(e.contains("cannot connect to the database"), "{e}");
        assert!(!e.contains("postgres@"), "the URL is not echoed: {e}");
    };
    // Stop the throwaway server whatever happened.
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    pg(&bin.join("pg_ctl"), &["-D", d, "-m", "immediate", "stop"]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Two nodes on one PostgreSQL database each keep their own chain; `audit
/// verify` checks both together, and a change to either is found.
#[tokio::test]
async fn every_nodes_chain_verifies_together() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let mut a = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        ..Options::default()
    })
    .await;
    let key = a.data_dir().join("master.key");
    let mut b = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        env: vec![(
            "RAMPART_MASTER_KEY_FILE".to_owned(),
            key.display().to_string(),
        )],
        ..Options::default()
    })
    .await;
    for i in 0..3 {
        a.register(&format!("a{i}@example.com")).await;
        b.register(&format!("b{i}@example.com")).await;
    }
    let (na, nb) = (
        a.running().audit.node().to_owned(),
        b.running().audit.node().to_owned(),
    );
    assert_ne!(na, nb, "each node names its own chain");
    a.stop().await;
    b.stop().await;
    let verify = || {
        rampart_run_env(
            &[
                "audit",
                "verify",
                "--data-dir",
                a.data_dir().to_str().unwrap(),
            ],
            None,
            &[("RAMPART_DATABASE_URL", &url)],
        )
    };
    let (code, out, err) = verify();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("chain {na}:")) && out.contains(&format!("chain {nb}:")),
        "{out}"
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_events SET source_ip = '192.0.2.9' WHERE node = $1 AND action = 'registration'")
        .bind(&nb)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (code, out, _) = verify();
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains(&format!("chain {nb}, event")), "{out}");
    assert!(
        out.contains(&format!("chain {na}:")) && out.contains(": OK"),
        "{out}"
    );
}
