//! Test fixtures: a real Rampart on 127.0.0.1 over real HTTPS, on a fresh
//! SQLite file or a fresh PostgreSQL schema, with a controllable clock.

use std::path::PathBuf;
use std::sync::Arc;

use rampart::{Deps, Overrides, Running, Settings};
use rampart_core::{Clock, ManualClock, SystemClock};
use rampart_crypto::OsEntropy;
use reqwest::{Client, Response};
use serde_json::{json, Value};

pub const STRONG: &str = "Quartz-Lantern-97-Ferry";

pub enum Db {
    Sqlite,
    Postgres(String),
}

/// The PostgreSQL server for tests, or `None` (loudly) when unreachable.
/// Under `CI=true` an unreachable server is a failure, not a skip.
pub async fn postgres_base_url() -> Option<String> {
    let url = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match sqlx::PgPool::connect(&url).await {
        Ok(pool) => {
            pool.close().await;
            Some(url)
        }
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL at {url} is required under CI=true: {e}");
            }
            eprintln!("\n!!! SKIPPING PostgreSQL test: no server at {url} ({e}) !!!\n");
            None
        }
    }
}

/// A fresh schema on the test PostgreSQL server; returns a URL that uses it.
pub async fn fresh_pg_schema() -> Option<String> {
    let base = postgres_base_url().await?;
    let schema = format!("t_{}", hex(&rand::random::<[u8; 8]>()));
    let pool = sqlx::PgPool::connect(&base).await.ok()?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    /// TOTP secrets (base32) enrolled by the helpers, by email: the
    /// tests' authenticator app.
    pub totp: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// The TOTP code an authenticator app shows at `unix_secs` for a base32
/// secret, computed by `totp-rs` directly (not through Rampart).
pub fn totp_at(secret_b32: &str, unix_secs: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .expect("base32 secret");
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        String::new(),
    )
    .generate(unix_secs)
}

pub struct Options {
    pub db: Db,
    pub env: Vec<(String, String)>,
    pub dir: Option<tempfile::TempDir>,
    /// Keep the guard's default rate limits and failure blocks (tests
    /// otherwise turn them off, see `guard_off`).
    pub guard_defaults: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            env: Vec::new(),
            dir: None,
            guard_defaults: false,
        }
    }
}

impl Options {
    pub fn guard_defaults(mut self) -> Self {
        self.guard_defaults = true;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }
}

pub fn client_for(cert_pem: &[u8]) -> Client {
    Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).unwrap())
        .https_only(true)
        .build()
        .unwrap()
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> TestServer {
        let dir = opts.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let mut env = vec![
            ("RAMPART_HTTP_LISTEN".to_owned(), "off".to_owned()),
            ("RAMPART_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "RAMPART_METRICS_LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
        ];
        if !opts.guard_defaults {
            env.extend(guard_off());
        }
        if let Db::Postgres(url) = &opts.db {
            env.push(("RAMPART_DATABASE_URL".to_owned(), url.clone()));
        }
        env.extend(opts.env);
        let settings = Settings::load(
            None,
            env,
            &Overrides {
                data_dir: Some(dir.path().join("data")),
                ..Overrides::default()
            },
        )
        .expect("settings");
        // The test clock starts at the real time, so the certificate made from
        // it is valid for real TLS clients; tests move it forward.
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let deps = Deps {
            clock: clock.clone(),
            entropy: Arc::new(OsEntropy),
        };
        let running = rampart::start(&settings, deps).await.expect("start");
        let cert = std::fs::read(&running.layout.tls_cert).unwrap();
        TestServer {
            base: format!("https://localhost:{}", running.https_addr.port()),
            client: client_for(&cert),
            running: Some(running),
            dir,
            clock,
            totp: Default::default(),
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn port(&self) -> u16 {
        self.running().https_addr.port()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str) -> Value {
        let r = self
            .post(
                "/api/v1/auth/register",
                json!({"email": email, "password": STRONG}),
            )
            .await;
        assert_eq!(r.status(), 201, "register {email}");
        r.json().await.unwrap()
    }

    /// Logs in and returns the bearer token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status(), 200, "login {email}");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn user(&self, email: &str) -> String {
        self.register(email).await;
        self.login(email, STRONG).await
    }

    /// Creates the first administrator through the setup token, logs in
    /// and enrols a TOTP factor (required for administrators), so the
    /// session can use the admin API at once.
    pub async fn admin(&self) -> String {
        let token = self.admin_without_mfa().await;
        self.enrol_totp("owner@example.com", &token).await;
        token
    }

    /// The first administrator, logged in, with no second factor yet.
    pub async fn admin_without_mfa(&self) -> String {
        let token = self.running().setup_token.as_ref().expect("setup token");
        let r = self
            .post(
                "/api/v1/setup",
                json!({"token": token.expose_secret(), "email": "owner@example.com", "password": STRONG}),
            )
            .await;
        assert_eq!(r.status(), 201);
        self.login("owner@example.com", STRONG).await
    }

    /// Seconds since the epoch on the server's clock.
    pub fn unix_now(&self) -> u64 {
        (self.clock.now().millis() / 1000) as u64
    }

    /// A TOTP code for a fresh time step: moves the clock on 30 s first, so
    /// no two calls give a code for the same (already used) step.
    pub fn next_totp(&self, email: &str) -> String {
        self.clock.advance(std::time::Duration::from_secs(30));
        let secret = self.totp.lock().unwrap()[email].clone();
        totp_at(&secret, self.unix_now())
    }

    /// Enrols and confirms TOTP for the session's account; returns the
    /// confirmation body (with the recovery codes of a first factor).
    pub async fn enrol_totp(&self, email: &str, token: &str) -> Value {
        let r = self
            .post_auth("/api/v1/me/mfa/totp", token, json!({}))
            .await;
        assert_eq!(r.status(), 201, "enrol totp");
        let v: Value = r.json().await.unwrap();
        let secret = v["secret"].as_str().unwrap().to_owned();
        self.totp.lock().unwrap().insert(email.to_owned(), secret);
        let code = self.next_totp(email);
        let r = self
            .post_auth("/api/v1/me/mfa/totp/confirm", token, json!({"code": code}))
            .await;
        assert_eq!(r.status(), 200, "confirm totp");
        r.json().await.unwrap()
    }

    /// Steps the session up with the account's TOTP.
    pub async fn step_up(&self, email: &str, token: &str) {
        let code = self.next_totp(email);
        let r = self
            .post_auth(
                "/api/v1/auth/step-up",
                token,
                json!({"method": "totp", "code": code}),
            )
            .await;
        assert_eq!(r.status(), 200, "step-up");
    }

    /// Logs in an account with TOTP: password, then a code.
    pub async fn login_mfa(&self, email: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": STRONG}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["mfa_required"], true, "{v}");
        let code = self.next_totp(email);
        let r = self
            .post(
                "/api/v1/auth/mfa",
                json!({"mfa_token": v["mfa_token"], "method": "totp", "code": code}),
            )
            .await;
        assert_eq!(r.status(), 200, "second factor");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Starts a server in a fresh data directory with these settings (on a
/// free port, no redirect listener) and returns why it refused to start.
pub async fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        ("RAMPART_LISTEN", "127.0.0.1:0"),
        ("RAMPART_HTTP_LISTEN", "off"),
        ("RAMPART_METRICS_LISTEN", "127.0.0.1:0"),
    ];
    let settings = Settings::load(
        None,
        base.iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.to_string())),
        &Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        },
    )
    .expect("settings");
    match rampart::start(&settings, Deps::default()).await {
        Ok(_) => panic!("started, but should have been refused"),
        Err(e) => format!("{e:#}"),
    }
}

/// Reads a problem+json body, checking its shape.
pub async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status for {code}");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "content type for {code}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    assert!(v["type"].as_str().unwrap().ends_with(code));
    assert!(v["title"].is_string() && v["detail"].is_string());
    v
}

/// A `rampart serve` child process, with its output captured.
pub struct Proc {
    pub child: std::process::Child,
    pub port: u16,
    pub stdout: Arc<std::sync::Mutex<Vec<u8>>>,
    pub stderr: Arc<std::sync::Mutex<Vec<u8>>>,
    pub client: Client,
}

pub fn pump(mut from: impl std::io::Read + Send + 'static, into: Arc<std::sync::Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

/// Runs the `rampart` binary with `args` (and `stdin`, if given), without
/// the caller's `RAMPART_*` settings: (success, stdout, stderr).
pub fn rampart_cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let (code, out, err) = rampart_run(args, stdin);
    (code == Some(0), out, err)
}

/// Like [`rampart_cli`], with the exit status: (code, stdout, stderr).
pub fn rampart_run(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    rampart_run_env(args, stdin, &[])
}

/// Like [`rampart_run`], with `env` set after the caller's `RAMPART_*`
/// settings are removed.
pub fn rampart_run_env(
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("RAMPART_") {
            cmd.env_remove(k);
        }
    }
    // A server a command starts must not take the default metrics port
    // that another test's server holds.
    cmd.env("RAMPART_METRICS_LISTEN", "127.0.0.1:0");
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    {
        let mut si = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            si.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every test talks from 127.0.0.1, many of them faster than a person
/// would: the guard's rate limits and automatic address blocks are off
/// unless a test turns them on (`guard.rs` does). Inspection stays on.
pub fn guard_off() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for group in ["ADMIN", "AUTH", "DATA", "API"] {
        for what in ["IP", "ACCOUNT"] {
            env.push((
                format!("RAMPART_GUARD__{group}__{what}_PER_MINUTE"),
                "0".to_owned(),
            ));
        }
    }
    env.push((
        "RAMPART_GUARD__IP_FAILURES".to_owned(),
        "1000000".to_owned(),
    ));
    env
}

impl Proc {
    pub fn spawn(data_dir: &std::path::Path, extra: &[&str]) -> Proc {
        Proc::spawn_env(data_dir, extra, &[])
    }

    /// [`spawn`](Self::spawn), with `env` set after the tests' defaults.
    pub fn spawn_env(data_dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("RAMPART_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(guard_off());
        cmd.env("RAMPART_METRICS_LISTEN", "127.0.0.1:0");
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn rampart");
        let stdout = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), stdout.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let port = loop {
            let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
            if let Some(rest) = text.split("HTTPS:        https://127.0.0.1:").nth(1) {
                break rest.split('/').next().unwrap().parse::<u16>().unwrap();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rampart exited ({status}): {text}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rampart did not start: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // The banner goes on after the address (warnings, the setup
        // token): wait until it has all come through the pipe, that is,
        // until stderr stops growing for a moment (at most 3 s).
        let settle = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut seen = stderr.lock().unwrap().len();
        while std::time::Instant::now() < settle {
            std::thread::sleep(std::time::Duration::from_millis(150));
            let now = stderr.lock().unwrap().len();
            if now == seen {
                break;
            }
            seen = now;
        }
        let cert = std::fs::read(data_dir.join("tls/cert.pem")).unwrap();
        Proc {
            child,
            port,
            stdout,
            stderr,
            client: client_for(&cert),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port, path)
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// SIGTERM, then wait for a clean exit. Async, so that the test's own
    /// HTTP client keeps running (and answers the server's HTTP/2 GOAWAY)
    /// while the server drains.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS client trusting the server's certificate, offering `alpn`.
pub fn tls_connector(s: &TestServer, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(&s.running().layout.tls_cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TCP connection to the server from `src` (any address in 127.0.0.0/8
/// is this machine: tests use them as distinct clients).
pub async fn tcp_from(src: std::net::IpAddr, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(src, 0))?;
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// A TLS connection to the server from `src`.
pub async fn tls_from(
    s: &TestServer,
    connector: &tokio_rustls::TlsConnector,
    src: std::net::IpAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tcp_from(src, s.port()).await?;
    connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
}

pub async fn tls_stream(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_stream_alpn(s, b"http/1.1").await
}

pub async fn tls_stream_alpn(
    s: &TestServer,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_from(s, &tls_connector(s, alpn), [127, 0, 0, 1].into())
        .await
        .unwrap()
}

/// An HTTP/1.1 TLS connection from `src`.
pub async fn tls_stream_from(
    s: &TestServer,
    src: [u8; 4],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_from(s, &tls_connector(s, b"http/1.1"), src.into())
        .await
        .unwrap()
}

/// Everything the server sends until it closes, or until `within`.
pub async fn read_all(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    within: std::time::Duration,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/1.1 response (head and `Content-Length` body), or `None` when
/// the connection ends first or nothing comes within `within`.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return Some(String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned());
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// A second node's data directory beside `first`'s: created 0700 with a
/// copy of the first's master key (nodes on one database share it).
pub fn second_node_dir(first: &std::path::Path, second: &std::path::Path) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(second)
        .unwrap();
    let key = second.join("master.key");
    std::fs::copy(first.join("master.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The body of the newest message in the development outbox `outbox`
/// to `to` that holds `needle`, once there is one.
pub async fn mail_to(outbox: &std::path::Path, to: &str, needle: &str) -> String {
    for _ in 0..250 {
        let text = std::fs::read_to_string(outbox).unwrap_or_default();
        let found = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["to"] == to && m["body"].as_str().unwrap_or("").contains(needle))
            .map(|m| m["body"].as_str().unwrap().to_owned());
        if let Some(body) = found {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no message to {to} holding {needle:?}");
}

/// How many messages in the outbox went to `to` holding `needle`.
pub fn mails_to(outbox: &std::path::Path, to: &str, needle: &str) -> usize {
    std::fs::read_to_string(outbox)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["to"] == to && m["body"].as_str().unwrap_or("").contains(needle))
        .count()
}

/// The token of the newest `/{page}#token=…` link mailed to `to`.
pub async fn mailed_token(outbox: &std::path::Path, to: &str, page: &str) -> String {
    let marker = format!("/{page}#token=");
    let body = mail_to(outbox, to, &marker).await;
    let start = body.rfind(&marker).unwrap() + marker.len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

impl TestServer {
    /// The development outbox of this server.
    pub fn outbox(&self) -> PathBuf {
        self.data_dir().join("outbox.log")
    }
}

/// The 8-digit verification code in the newest verification message to
/// `to`.
pub async fn mailed_code(outbox: &std::path::Path, to: &str) -> String {
    const MARK: &str = "entering this code where you signed up: ";
    let body = mail_to(outbox, to, MARK).await;
    body.rsplit(MARK).next().unwrap().chars().take(8).collect()
}

/// Waits until `count` messages to `to` holding `needle` are in the outbox.
pub async fn await_mails(outbox: &std::path::Path, to: &str, needle: &str, count: usize) {
    for _ in 0..250 {
        if mails_to(outbox, to, needle) >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("fewer than {count} messages to {to} holding {needle:?}");
}

/// Events of `kind` on `s`, as JSON text each.
pub async fn events_of(s: &TestServer, admin: &str, kind: &str) -> Vec<String> {
    let r = s
        .get_auth(
            &format!("/api/v1/admin/events?type={kind}&limit=100"),
            admin,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

/// Waits (up to 60 s) until `s` has an event of `kind` whose text holds
/// `with`.
pub async fn wait_for_event(s: &TestServer, admin: &str, kind: &str, with: &str) -> String {
    for _ in 0..600 {
        if let Some(e) = events_of(s, admin, kind)
            .await
            .into_iter()
            .find(|e| e.contains(with))
        {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no {kind} event with {with:?}");
}

/// A port nothing listens on now (for settings that need one up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The alerts `query` (`?rule=…`, …) selects.
pub async fn alerts(s: &TestServer, admin: &str, query: &str) -> Vec<Value> {
    let r = s
        .get_auth(&format!("/api/v1/admin/alerts{query}"), admin)
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["alerts"].as_array().unwrap().clone()
}

/// The first alert of `rule`, once there is one.
pub async fn wait_for_alert(s: &TestServer, admin: &str, rule: &str) -> Value {
    for _ in 0..200 {
        let found = alerts(s, admin, &format!("?rule={rule}")).await;
        if let Some(a) = found.into_iter().next() {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no alert of {rule} within 10 s");
}

/// Every byte of the SQLite file and its WAL, or (`pg`) every row of
/// `tables` as PostgreSQL stores them: where a canary must not be found.
pub async fn stored_bytes(s: &TestServer, pg: Option<&str>, tables: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    match pg {
        None => {
            for f in ["rampart.db", "rampart.db-wal"] {
                if let Ok(b) = std::fs::read(s.data_dir().join(f)) {
                    out.extend(b);
                }
            }
        }
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            for table in tables {
                // Table names from the test's own list, never from input.
                let rows: Vec<(String,)> =
                    sqlx::query_as(&format!("SELECT CAST(t.* AS TEXT) FROM {table} t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                out.extend(rows.into_iter().flat_map(|(r,)| r.into_bytes()));
            }
            pool.close().await;
        }
    }
    out
}
