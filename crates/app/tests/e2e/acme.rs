//! Certificates by ACME (ADR 0016) against Debian's pebble, the Let's
//! Encrypt test server, started here on 127.0.0.1 with a test CA of its
//! own and pebble-challtestsrv as its DNS (every name resolves to
//! 127.0.0.1). Pebble validates the challenges by connecting to this
//! server's real listeners, and the certificates it issues are checked by
//! a client that trusts only pebble's root.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const NAMES: [&str; 2] = ["api.rampart.test", "www.rampart.test"];
const DAY: Duration = Duration::from_secs(86_400);

/// A port free for both UDP and TCP (the DNS server binds both).
fn free_dns_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Pebble {
    dir: tempfile::TempDir,
    pebble: Option<Child>,
    dns: Child,
    directory: String,
    management: u16,
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of 127.0.0.1, or `None` (skipped loudly) where it is not
    /// installed, except under `CI=true`.
    async fn start(http_port: u16, tls_port: u16) -> Option<Pebble> {
        if Command::new("pebble").arg("-h").output().is_err() {
            if std::env::var_os("CI").is_some() {
                panic!("pebble is required under CI=true (apt-get install pebble)");
            }
            eprintln!("\n!!! SKIPPING an ACME test: pebble is not installed (apt-get install pebble) !!!\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS: a test CA of ours and a certificate for 127.0.0.1.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Rampart test ACME CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap()
                .signed_by(&key, &ca_cert, &ca_key)
                .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let dns_port = free_dns_port();
        let dns = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv");
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            // Let's Encrypt's lifetime.
            "certificateValidityPeriod": 90 * 86_400,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble");
        let p = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            dir,
            pebble: Some(pebble),
            dns,
            management,
        };
        for _ in 0..100 {
            if let Ok(r) = p.client().get(&p.directory).send().await {
                if r.status() == 200 {
                    return Some(p);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pebble did not start: {}", p.log());
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.ca_file()).unwrap();
        client_for(&ca)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// How many certificates pebble issued.
    fn issued(&self) -> usize {
        self.log().matches("Issued certificate serial").count()
    }

    /// The root pebble's certificates chain to (made anew at each start).
    async fn root(&self) -> Vec<u8> {
        let r = self
            .client()
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

/// A server of `NAMES` ordering from `pebble` with `challenge`, its HTTPS
/// listener on `https` and the redirect listener on `http` (or off).
fn acme_options(pebble: &Pebble, challenge: &str, https: u16, http: Option<u16>) -> Options {
    let names: Vec<String> = NAMES.iter().map(|n| format!("{n:?}")).collect();
    Options::default()
        .env("RAMPART_LISTEN", &format!("127.0.0.1:{https}"))
        .env(
            "RAMPART_HTTP_LISTEN",
            &http.map_or("off".to_owned(), |p| format!("127.0.0.1:{p}")),
        )
        .env(
            "RAMPART_TLS__ACME__DOMAINS",
            &format!("[{}]", names.join(",")),
        )
        .env("RAMPART_TLS__ACME__CONTACT", "mailto:ops@rampart.test")
        .env("RAMPART_TLS__ACME__DIRECTORY", &pebble.directory)
        .env(
            "RAMPART_TLS__ACME__CA_FILE",
            pebble.ca_file().to_str().unwrap(),
        )
        .env("RAMPART_TLS__ACME__CHALLENGE", challenge)
}

/// A server of `NAMES` in `dir`, validated with TLS-ALPN-01 on `https`.
fn alpn_options(pebble: &Pebble, https: u16, dir: tempfile::TempDir) -> Options {
    Options {
        dir: Some(dir),
        ..acme_options(pebble, "tls-alpn-01", https, None)
    }
}

/// Stops `s` and hands over its data directory, for a restart.
async fn stopped(mut s: TestServer) -> tempfile::TempDir {
    let data = s.data_dir();
    s.stop().await;
    let kept = tempfile::TempDir::new_in(data.parent().unwrap().parent().unwrap()).unwrap();
    std::fs::rename(&data, kept.path().join("data")).unwrap();
    kept
}

/// Waits (up to 60 s) until `s` serves a certificate other than `than`.
async fn served_other_than(s: &TestServer, than: &[u8], pebble: &Pebble) -> Vec<u8> {
    for _ in 0..600 {
        let now = s.running().certs.leaf_der();
        if now != than {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no new certificate in service; pebble said:\n{}",
        pebble.log()
    );
}

fn self_signed(s: &TestServer) -> Vec<u8> {
    let pem = std::fs::read(&s.running().layout.tls_cert).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    let der: rustls_pki_types::CertificateDer = der;
    der.to_vec()
}

/// A client that trusts only `root` and finds `name` on 127.0.0.1:`port`.
fn client_of(root: &[u8], name: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).unwrap())
        .resolve(name, SocketAddr::from(([127, 0, 0, 1], port)))
        .https_only(true)
        .build()
        .unwrap()
}

/// Points the test helpers at the server's first name, through a client
/// that trusts only pebble's root.
fn by_name(s: &mut TestServer, root: &[u8]) {
    s.client = client_of(root, NAMES[0], s.port());
    s.base = format!("https://{}:{}", NAMES[0], s.port());
}

/// A request to `name` on `port` by a client that trusts only `root`:
/// the served chain must name it and chain to pebble's root.
async fn get_as(root: &[u8], name: &str, port: u16) -> reqwest::StatusCode {
    client_of(root, name, port)
        .get(format!("https://{name}:{port}/api/v1/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
        .status()
}

/// The ACME account key and the certificate's key, opened from what the
/// server stored: each must appear nowhere in the database in plaintext
/// (the SQLite file and its WAL, or PostgreSQL's rows).
async fn assert_keys_sealed(s: &TestServer, pebble: &Pebble, pg: Option<&str>) {
    let run = s.running();
    let keys = run.auth.system_keys();
    let names = NAMES.join(",");
    let account = run
        .auth
        .store()
        .acme_account(&pebble.directory)
        .await
        .unwrap()
        .expect("the ACME account is stored");
    let json = keys
        .open("acme_account", &account.credentials_sealed)
        .unwrap();
    let v: Value = serde_json::from_slice(json.expose_secret()).unwrap();
    let account_key = v["key_pkcs8"].as_str().unwrap().to_owned();
    let cert = run
        .auth
        .store()
        .acme_certificate(&pebble.directory, &names)
        .await
        .unwrap()
        .expect("the certificate is stored");
    let pem = keys
        .open(
            &format!("acme_certificate:{}:{names}", pebble.directory),
            &cert.key_sealed,
        )
        .unwrap();
    let pem = String::from_utf8(pem.expose_secret().to_vec()).unwrap();
    let cert_key_line = pem.lines().nth(1).unwrap().to_owned();
    assert!(account_key.len() > 40 && cert_key_line.len() > 40);
    let tables = [
        "acme_accounts",
        "acme_certificates",
        "acme_challenges",
        "audit_events",
    ];
    let stored = stored_bytes(s, pg, &tables).await;
    assert!(!stored.is_empty());
    for needle in [&account_key[..48], &cert_key_line[..48], "PRIVATE KEY"] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} stored in plaintext"
        );
    }
}

#[tokio::test]
async fn tls_alpn_01_obtains_a_certificate_renews_it_under_the_clock_and_keeps_it_across_restarts()
{
    let https = free_port();
    let Some(pebble) = Pebble::start(free_port(), https).await else {
        return;
    };
    let mut s = TestServer::with(alpn_options(&pebble, https, tempfile::tempdir().unwrap())).await;
    let first = served_other_than(&s, &self_signed(&s), &pebble).await;
    let root = pebble.root().await;
    for name in NAMES {
        assert_eq!(get_as(&root, name, https).await, 200);
    }
    assert_eq!(pebble.issued(), 1);
    by_name(&mut s, &root);
    let admin = s.admin().await;
    let issued = wait_for_event(&s, &admin, "tls.certificate_issued", "\"success\"").await;
    assert!(
        issued.contains("api.rampart.test,www.rampart.test"),
        "{issued}"
    );
    // The keys are in the database sealed, never in plaintext.
    assert_keys_sealed(&s, &pebble, None).await;
    // Only the generated certificate's key is a file (0600); no other
    // file of the data directory (the database, its WAL) holds a key.
    for f in std::fs::read_dir(s.data_dir()).unwrap().flatten() {
        if f.path() == s.running().layout.tls_key || f.path().is_dir() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(f.path()).unwrap()).into_owned();
        assert!(
            !text.contains("PRIVATE KEY"),
            "a key in {}",
            f.path().display()
        );
    }

    // `scan self` says where the certificate comes from and when it is
    // renewed, and judges the ACME certificate, not the generated file.
    let mut env: Vec<(String, String)> = acme_options(&pebble, "tls-alpn-01", https, None).env;
    env.push(("RAMPART_NOTIFIER".into(), "log".into()));
    let data = s.data_dir().display().to_string();
    let (_, out, err) = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        rampart_run_env(
            &["scan", "self", "--data-dir", &data, "--format", "json"],
            None,
            &env,
        )
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let passed = report["passed"].to_string();
    assert!(
        passed.contains(&format!(
            "certificate obtained by ACME from {}",
            pebble.directory
        )),
        "{passed}"
    );
    assert!(passed.contains("next certificate renewal at"), "{passed}");
    assert!(
        !report["findings"]
            .to_string()
            .contains("tls.cert_self_signed"),
        "{report}"
    );

    // Not due yet: nothing happens.
    s.clock.advance(50 * DAY);
    tokio::time::sleep(rampart::acme::TICK * 3).await;
    assert_eq!(s.running().certs.leaf_der(), first);
    assert_eq!(pebble.issued(), 1);

    // Past two thirds of its 90 days: renewed.
    s.clock.advance(11 * DAY);
    let second = served_other_than(&s, &first, &pebble).await;
    assert_eq!(pebble.issued(), 2);
    for name in NAMES {
        assert_eq!(get_as(&root, name, https).await, 200);
    }

    // A restart serves the stored certificate from the first request on,
    // without ordering again.
    let s = TestServer::with(alpn_options(&pebble, https, stopped(s).await)).await;
    assert_eq!(s.running().certs.leaf_der(), second);
    tokio::time::sleep(rampart::acme::TICK * 2).await;
    assert_eq!(pebble.issued(), 2);

    // A name added: the old certificate is served from the first request
    // on while the first order for the new set runs, then replaced.
    let more = alpn_options(&pebble, https, stopped(s).await).env(
        "RAMPART_TLS__ACME__DOMAINS",
        &format!("[\"{}\", \"{}\", \"new.rampart.test\"]", NAMES[0], NAMES[1]),
    );
    let s = TestServer::with(more).await;
    assert_eq!(s.running().certs.leaf_der(), second);
    served_other_than(&s, &second, &pebble).await;
    assert_eq!(pebble.issued(), 3);
    assert_eq!(get_as(&root, "new.rampart.test", https).await, 200);
}

#[tokio::test]
async fn a_stored_certificate_that_cannot_be_used_is_ordered_anew() {
    let https = free_port();
    let Some(pebble) = Pebble::start(free_port(), https).await else {
        return;
    };
    let s = TestServer::with(alpn_options(&pebble, https, tempfile::tempdir().unwrap())).await;
    let first = served_other_than(&s, &self_signed(&s), &pebble).await;
    let kept = stopped(s).await;
    let data = kept.path().join("data");
    // The sealed key damaged: it cannot be opened.
    let db = format!("sqlite://{}", data.join("rampart.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE acme_certificates SET key_sealed = 'v1.x.AAAA'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let s = TestServer::with(alpn_options(&pebble, https, kept)).await;
    let generated = self_signed(&s);
    assert_eq!(
        s.running().certs.leaf_der(),
        generated,
        "the generated one meanwhile"
    );
    let renewed = served_other_than(&s, &generated, &pebble).await;
    assert_ne!(renewed, first);
    assert_eq!(pebble.issued(), 2);
    assert_eq!(get_as(&pebble.root().await, NAMES[0], https).await, 200);
}

/// ACME settings for a CA that cannot be reached (nothing listens on
/// port 1): every order fails at once. `dir` holds the CA file.
fn unreachable_ca(dir: &std::path::Path, https: u16) -> Options {
    let ca = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    Options::default()
        .env("RAMPART_LISTEN", &format!("127.0.0.1:{https}"))
        .env("RAMPART_TLS__ACME__DOMAINS", "[\"api.rampart.test\"]")
        .env("RAMPART_TLS__ACME__DIRECTORY", "https://127.0.0.1:1/dir")
        .env(
            "RAMPART_TLS__ACME__CA_FILE",
            dir.join("ca.pem").to_str().unwrap(),
        )
}

#[tokio::test]
async fn with_no_certificate_after_three_failed_orders_an_alert_is_raised() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::with(unreachable_ca(dir.path(), free_port())).await;
    let mut admin = s.admin().await;
    let failures = |all: Vec<String>| all.iter().filter(|e| e.contains("\"failure\"")).count();
    for (n, wait) in [(1, 0), (2, 6 * 60 + 1), (3, 12 * 60 + 1)] {
        s.clock.advance(Duration::from_secs(wait));
        admin = s.login_mfa("owner@example.com").await;
        for _ in 0..100 {
            if failures(events_of(&s, &admin, "tls.certificate_issued").await) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            failures(events_of(&s, &admin, "tls.certificate_issued").await),
            n
        );
        if n < 3 {
            // The warning comes on the same tick as the failure, or not.
            tokio::time::sleep(rampart::acme::TICK * 2).await;
            assert!(events_of(&s, &admin, "tls.certificate_missing")
                .await
                .is_empty());
        }
    }
    let missing = wait_for_event(&s, &admin, "tls.certificate_missing", "\"failure\"").await;
    assert!(missing.contains("self-signed"), "{missing}");
    // The generated certificate is still served, and an alert is up.
    assert_eq!(s.running().certs.leaf_der(), self_signed(&s));
    wait_for_alert(&s, &admin, "rampart-certificate-expiring").await;
}

#[tokio::test]
async fn only_a_handshake_offering_acme_tls_1_alone_gets_a_challenge_path() {
    // A CA that cannot be reached: the server keeps its generated
    // certificate, and agrees on acme-tls/1 only with [tls] acme.
    let https = free_port();
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::with(unreachable_ca(dir.path(), https)).await;
    let handshake = |alpn: Vec<Vec<u8>>, name: &'static str| {
        let cert = std::fs::read(&s.running().layout.tls_cert).unwrap();
        async move {
            let mut roots = rustls::RootCertStore::empty();
            for c in <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&cert) {
                roots.add(c.unwrap()).unwrap();
            }
            let mut config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = alpn;
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https))
                .await
                .unwrap();
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .map(|t| t.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
        }
    };
    // A validation with no challenge pending for the name: no certificate.
    assert!(handshake(vec![b"acme-tls/1".to_vec()], "localhost")
        .await
        .is_err());
    assert!(handshake(vec![b"acme-tls/1".to_vec()], "api.rampart.test")
        .await
        .is_err());
    // Offered among others: the ordinary certificate and HTTP/2.
    assert_eq!(
        handshake(vec![b"acme-tls/1".to_vec(), b"h2".to_vec()], "localhost")
            .await
            .unwrap(),
        Some(b"h2".to_vec())
    );
    assert_eq!(
        handshake(vec![b"http/1.1".to_vec()], "localhost")
            .await
            .unwrap(),
        Some(b"http/1.1".to_vec())
    );
}

#[tokio::test]
async fn http_01_obtains_a_certificate_through_the_redirect_listener() {
    let (https, http) = (free_port(), free_port());
    let Some(pebble) = Pebble::start(http, free_port()).await else {
        return;
    };
    let s = TestServer::with(acme_options(&pebble, "http-01", https, Some(http))).await;
    served_other_than(&s, &self_signed(&s), &pebble).await;
    let root = pebble.root().await;
    for name in NAMES {
        assert_eq!(get_as(&root, name, https).await, 200);
    }
    // Once done, the challenge path is a redirect like any other.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!(
            "http://127.0.0.1:{http}/.well-known/acme-challenge/anything"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_certificate_records_it_and_alerts_before_expiry() {
    let https = free_port();
    let Some(mut pebble) = Pebble::start(free_port(), https).await else {
        return;
    };
    let mut s = TestServer::with(acme_options(&pebble, "tls-alpn-01", https, None)).await;
    let first = served_other_than(&s, &self_signed(&s), &pebble).await;
    by_name(&mut s, &pebble.root().await);
    let admin = s.admin().await;
    wait_for_event(&s, &admin, "tls.certificate_issued", "\"success\"").await;

    // The CA is gone when the renewal is due. The failed orders are
    // counted where every node reads them (signing in moves the test
    // clock, so it waits until the end).
    pebble.stop();
    let failed_orders = || async {
        s.running()
            .auth
            .store()
            .acme_order_failures(&pebble.directory, &NAMES.join(","))
            .await
            .unwrap()
    };
    let until_failed = |n: u32| async move {
        for _ in 0..100 {
            if failed_orders().await >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(failed_orders().await, n);
    };
    s.clock.advance(61 * DAY);
    until_failed(1).await;
    assert_eq!(
        s.running().certs.leaf_der(),
        first,
        "the old certificate stays"
    );
    // Retried with backoff: after 5 minutes (and up to a fifth more),
    // then after 10 (up to 12).
    for (wait, n) in [
        (Duration::from_secs(4 * 60 + 59), 1),
        (Duration::from_secs(62), 2),
        (Duration::from_secs(9 * 60 + 59), 2),
        (Duration::from_secs(2 * 60 + 2), 3),
    ] {
        s.clock.advance(wait);
        tokio::time::sleep(rampart::acme::TICK * 3).await;
        until_failed(n).await;
    }
    let admin = s.login_mfa("owner@example.com").await;
    let failed = events_of(&s, &admin, "tls.certificate_issued").await;
    let failed: Vec<&String> = failed
        .iter()
        .filter(|e| e.contains("\"failure\""))
        .collect();
    assert_eq!(failed.len(), 3, "each failed order is recorded");
    assert!(
        failed[0].contains("cannot"),
        "with its reason: {}",
        failed[0]
    );
    assert_eq!(
        s.running().certs.leaf_der(),
        first,
        "the old certificate stays"
    );
    // 14 days before the end: a high-severity event, and an alert.
    s.clock.advance(16 * DAY);
    let admin = s.login_mfa("owner@example.com").await;
    let expiring = wait_for_event(&s, &admin, "tls.certificate_expiring", "\"failure\"").await;
    assert!(expiring.contains("\"high\""), "{expiring}");
    assert_eq!(s.running().certs.leaf_der(), first);
    wait_for_alert(&s, &admin, "rampart-certificate-expiring").await;
}

#[tokio::test]
async fn two_postgres_nodes_serve_one_certificate_ordered_once() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let url_a = url.clone();
    let (https_a, https_b) = (free_port(), free_port());
    // Only node A may order (its clock alone passes the order's next try)
    // and the CA validates at node B's port: B answers the challenges A
    // stored in the database.
    let Some(pebble) = Pebble::start(free_port(), https_b).await else {
        return;
    };
    let store = rampart_store::open(&url).await.unwrap();
    let in_an_hour = rampart_core::Clock::now(&rampart_core::SystemClock).millis() + 3_600_000;
    sqlx::query(
        "INSERT INTO acme_orders (directory, names, failures, next_try_at) VALUES ($1, $2, 0, $3)",
    )
    .bind(&pebble.directory)
    .bind(NAMES.join(","))
    .bind(in_an_hour)
    .execute(store.pool())
    .await
    .unwrap();
    rampart_core::Store::close(&store).await;
    let a = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        ..acme_options(&pebble, "tls-alpn-01", https_a, None)
    })
    .await;
    let d2 = tempfile::tempdir().unwrap();
    second_node_dir(&a.data_dir(), &d2.path().join("data"));
    let b = TestServer::with(Options {
        db: Db::Postgres(url),
        dir: Some(d2),
        ..acme_options(&pebble, "tls-alpn-01", https_b, None)
    })
    .await;
    tokio::time::sleep(rampart::acme::TICK * 2).await;
    assert_eq!(pebble.issued(), 0, "no node may order before the next try");
    a.clock.advance(Duration::from_secs(2 * 3600));
    let on_a = served_other_than(&a, &self_signed(&a), &pebble).await;
    let on_b = served_other_than(&b, &self_signed(&b), &pebble).await;
    assert_eq!(on_a, on_b, "one certificate on both nodes");
    assert_keys_sealed(&a, &pebble, Some(&url_a)).await;
    // Several ticks later, still one order.
    tokio::time::sleep(rampart::acme::TICK * 3).await;
    assert_eq!(pebble.issued(), 1, "{}", pebble.log());
    let root = pebble.root().await;
    assert_eq!(get_as(&root, NAMES[0], https_a).await, 200);
    assert_eq!(get_as(&root, NAMES[1], https_b).await, 200);
}
