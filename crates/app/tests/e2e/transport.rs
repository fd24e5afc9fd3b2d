//! Requirement 2: TLS versions, suites, ALPN, headers, the redirect listener.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
];

fn assert_headers(r: &reqwest::Response) {
    for (k, v) in SECURITY_HEADERS {
        assert_eq!(
            r.headers().get(k).map(|h| h.to_str().unwrap()),
            Some(v),
            "{k} on {} {}",
            r.url(),
            r.status()
        );
    }
    assert!(r.headers().get("server").is_none(), "no Server header");
    assert!(r.headers().get("x-powered-by").is_none());
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let s = TestServer::start().await;
    let token = s.user("h@example.com").await;
    let responses = vec![
        s.client.get(s.url("/api/v1/healthz")).send().await.unwrap(),
        s.get_auth("/api/v1/me", &token).await,
        s.client.get(s.url("/api/v1/me")).send().await.unwrap(),
        s.client.get(s.url("/nope")).send().await.unwrap(),
        s.post(
            "/api/v1/auth/login",
            serde_json::json!({"email": "x@example.com", "password": "y"}),
        )
        .await,
        s.client
            .get(s.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    ];
    for r in &responses {
        assert_headers(r);
    }
}

#[tokio::test]
async fn the_root_page_says_where_the_api_is_and_carries_no_script() {
    let s = TestServer::start().await;
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_headers(&r);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(page.contains("/api/v1/openapi.json"), "{page}");
    assert!(
        !page.contains("<script") && !page.contains("style"),
        "{page}"
    );
    assert!(
        !page.contains(env!("CARGO_PKG_VERSION")),
        "version disclosed: {page}"
    );
}

/// A TLS ClientHello that offers only `version` (no supported_versions
/// extension), with CBC and GCM suites.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    client_hello_with(version, &[0xc02b, 0xc02f, 0xc009, 0xc013, 0x002f, 0x009c])
}

fn client_hello_with(version: [u8; 2], suites: &[u16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites.iter().copied() {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
                                     // extensions: supported_groups (x25519, P-256), ec_point_formats, signature_algorithms
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

async fn first_bytes(port: u16, send: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(send).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    buf.truncate(n);
    buf
}

fn answered_with_server_hello(answer: &[u8]) -> bool {
    answer.first() == Some(&0x16) && answer.get(5) == Some(&0x02)
}

/// The cipher suite in a ServerHello record (after version, random and
/// session id).
fn chosen_suite(answer: &[u8]) -> u16 {
    let sid_len = answer[43] as usize;
    u16::from_be_bytes([answer[44 + sid_len], answer[45 + sid_len]])
}

fn refused(answer: &[u8]) -> bool {
    // Either an alert record (0x15) or a closed connection; never a
    // handshake record carrying a ServerHello.
    answer.is_empty() || answer[0] == 0x15
}

async fn tls12_server() -> TestServer {
    TestServer::with(Options::default().env("RAMPART_TLS_MIN_VERSION", "1.2")).await
}

#[tokio::test]
async fn tls_1_0_and_1_1_are_refused() {
    let s = tls12_server().await;
    for version in [[3, 1], [3, 2]] {
        let answer = first_bytes(s.port(), &client_hello(version)).await;
        assert!(refused(&answer), "TLS {version:?} got {answer:02x?}");
    }
    // The same hello at TLS 1.2 is answered with a ServerHello: the probe
    // itself is sound.
    let answer = first_bytes(s.port(), &client_hello([3, 3])).await;
    assert!(
        answered_with_server_hello(&answer),
        "TLS 1.2 hello: {answer:02x?}"
    );
    // The suite the server picked (after version, random, session id) is
    // the AEAD one the client offered, though the client listed it first
    // among others.
    let suite = chosen_suite(&answer);
    assert_eq!(
        suite, 0xc02b,
        "ECDHE-ECDSA-AES128-GCM expected, got {suite:04x}"
    );
}

#[tokio::test]
async fn by_default_only_tls_1_3_is_served() {
    let s = TestServer::start().await;
    for version in [[3, 1], [3, 2], [3, 3]] {
        let answer = first_bytes(s.port(), &client_hello(version)).await;
        assert!(refused(&answer), "TLS {version:?} got {answer:02x?}");
    }
}

#[tokio::test]
async fn the_server_chooses_the_tls_1_2_suite() {
    let s = tls12_server().await;
    // The client prefers AES-128 then ChaCha20; the server's order puts
    // AES-256-GCM first.
    let answer = first_bytes(
        s.port(),
        &client_hello_with([3, 3], &[0xc02b, 0xcca9, 0xc02c]),
    )
    .await;
    assert!(answered_with_server_hello(&answer), "{answer:02x?}");
    let suite = chosen_suite(&answer);
    assert_eq!(
        suite, 0xc02c,
        "ECDHE-ECDSA-AES256-GCM expected, got {suite:04x}"
    );
}

#[tokio::test]
async fn tls_1_2_without_an_aead_suite_is_refused() {
    let s = tls12_server().await;
    // ECDHE-ECDSA/RSA with AES-CBC-SHA, RSA key exchange with CBC and GCM.
    let answer = first_bytes(
        s.port(),
        &client_hello_with([3, 3], &[0xc009, 0xc00a, 0xc013, 0x002f, 0x0035, 0x009c]),
    )
    .await;
    assert!(refused(&answer), "non-AEAD suite accepted: {answer:02x?}");
}

#[tokio::test]
async fn plaintext_http_on_the_https_port_is_refused() {
    let s = TestServer::start().await;
    let answer = first_bytes(s.port(), b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "served plaintext: {answer:?}"
    );
}

async fn handshake(
    port: u16,
    cert: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: Vec<Vec<u8>>,
) -> Result<
    (
        rustls::ProtocolVersion,
        Option<Vec<u8>>,
        rustls::SupportedCipherSuite,
    ),
    std::io::Error,
> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types_certs(cert) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    Ok((
        conn.protocol_version().unwrap(),
        conn.alpn_protocol().map(|p| p.to_vec()),
        conn.negotiated_cipher_suite().unwrap(),
    ))
}

fn rustls_pki_types_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn tls_1_3_with_alpn_and_tls_1_2_only_when_configured() {
    let s = TestServer::start().await;
    let cert = std::fs::read(&s.running().layout.tls_cert).unwrap();
    let (v, alpn, suite) = handshake(
        s.port(),
        &cert,
        &[&rustls::version::TLS13],
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    )
    .await
    .unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let name = format!("{:?}", suite.suite());
    assert!(name.contains("GCM") || name.contains("CHACHA20"), "{name}");
    let tls12 = [&rustls::version::TLS12];
    assert!(
        handshake(s.port(), &cert, &tls12, vec![b"http/1.1".to_vec()])
            .await
            .is_err(),
        "TLS 1.2 accepted by default"
    );

    let s = tls12_server().await;
    let cert = std::fs::read(&s.running().layout.tls_cert).unwrap();
    let (v, alpn, suite) = handshake(s.port(), &cert, &tls12, vec![b"http/1.1".to_vec()])
        .await
        .unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let name = format!("{:?}", suite.suite());
    assert!(
        name.starts_with("TLS_ECDHE_") && (name.contains("GCM") || name.contains("CHACHA20")),
        "{name}"
    );
}

#[tokio::test]
async fn the_http_listener_only_redirects_to_https() {
    let s = TestServer::with(Options::default().env("RAMPART_HTTP_LISTEN", "127.0.0.1:0")).await;
    let http = s.running().http_addr.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/api/v1/me", "/api/v1/healthz?x=1", "/"] {
        let r = client
            .get(format!("http://127.0.0.1:{}{path}", http.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 308);
        assert_eq!(
            r.headers()["location"],
            format!("https://127.0.0.1:{}{path}", s.port()).as_str()
        );
        assert_eq!(r.content_length(), Some(0), "nothing served over HTTP");
    }
    // A Host header cannot send the redirect somewhere odd.
    let r = client
        .get(format!("http://127.0.0.1:{}/x", http.port()))
        .header("host", "evil.example/../")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("https://127.0.0.1:{}/x", s.port()).as_str()
    );
}

#[tokio::test]
async fn certificate_is_reloaded_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, k1) = (dir.path().join("c1.pem"), dir.path().join("k1.pem"));
    let first = rampart_crypto::generate_self_signed(
        std::time::SystemTime::now(),
        &rampart_crypto::OsEntropy,
    )
    .unwrap();
    std::fs::write(&c1, &first.cert_pem).unwrap();
    std::fs::write(&k1, first.key_pem.expose_secret()).unwrap();
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_TLS_CERT", c1.to_str().unwrap())
            .env("RAMPART_TLS_KEY", k1.to_str().unwrap()),
    )
    .await;
    let before = s.running().certs.leaf_der();
    let r = client_for(first.cert_pem.as_bytes())
        .get(s.url("/api/v1/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A broken pair is refused and the old certificate stays in service.
    std::fs::write(&k1, "not a key").unwrap();
    assert!(s.running().certs.reload().is_err());
    assert_eq!(s.running().certs.leaf_der(), before);

    let second = rampart_crypto::generate_self_signed(
        std::time::SystemTime::now(),
        &rampart_crypto::OsEntropy,
    )
    .unwrap();
    std::fs::write(&k1, second.key_pem.expose_secret()).unwrap();
    std::fs::write(&c1, &second.cert_pem).unwrap();
    // The watcher polls every 2 s.
    let mut swapped = false;
    for _ in 0..50 {
        if s.running().certs.leaf_der() != before {
            swapped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(swapped, "certificate was not reloaded");
    let r = client_for(second.cert_pem.as_bytes())
        .get(s.url("/api/v1/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "new certificate served without restart");
}

fn write_pair(dir: &std::path::Path, ss: &rampart_crypto::SelfSigned) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), &ss.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), ss.key_pem.expose_secret()).unwrap();
}

#[tokio::test]
async fn an_expiring_generated_certificate_is_renewed_at_start_and_an_operators_is_not() {
    let day = std::time::Duration::from_secs(24 * 3600);
    let now = std::time::SystemTime::now();
    let old =
        rampart_crypto::generate_self_signed(now - 70 * day, &rampart_crypto::OsEntropy).unwrap();

    // Rampart's own certificate, 19 days from its end: replaced at start.
    let dir = tempfile::tempdir().unwrap();
    write_pair(&dir.path().join("data/tls"), &old);
    let s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let renewed = std::fs::read_to_string(&s.running().layout.tls_cert).unwrap();
    assert_ne!(renewed, old.cert_pem);
    let end = rampart_crypto::certificate_not_after(&renewed).unwrap();
    assert!(end > now + 80 * day, "renewed certificate ends too soon");
    assert_eq!(
        s.running().certs.leaf_der(),
        rustls_pki_types_certs(renewed.as_bytes())[0].as_ref()
    );
    let r = s.client.get(s.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The same certificate given as the operator's own: left alone.
    let theirs = tempfile::tempdir().unwrap();
    write_pair(theirs.path(), &old);
    let (cert, key) = (
        theirs.path().join("cert.pem"),
        theirs.path().join("key.pem"),
    );
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_TLS_CERT", cert.to_str().unwrap())
            .env("RAMPART_TLS_KEY", key.to_str().unwrap()),
    )
    .await;
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), old.cert_pem);
    assert_eq!(
        s.running().certs.leaf_der(),
        rustls_pki_types_certs(old.cert_pem.as_bytes())[0].as_ref()
    );
}

#[tokio::test]
async fn a_running_server_renews_its_own_certificate_when_due() {
    let s = TestServer::start().await;
    let old = s.running().certs.leaf_der();
    // 60 of 89 days gone: inside the last 30.
    s.clock
        .advance(std::time::Duration::from_secs(60 * 24 * 3600));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while s.running().certs.leaf_der() == old {
        assert!(
            std::time::Instant::now() < deadline,
            "not renewed within 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let pem = std::fs::read_to_string(&s.running().layout.tls_cert).unwrap();
    assert_eq!(
        s.running().certs.leaf_der(),
        rustls_pki_types_certs(pem.as_bytes())[0].as_ref()
    );
    let end = rampart_crypto::certificate_not_after(&pem).unwrap();
    let clock_now = rampart_core::Clock::now(s.clock.as_ref()).to_system_time();
    assert!(end > clock_now + std::time::Duration::from_secs(80 * 24 * 3600));
}
