//! `rampart scan` against purpose-built local fixtures: Rampart itself
//! (the good server), an OpenSSL server configured badly (TLS 1.0/1.1,
//! weak suites, a 1024-bit key about to expire), an HTTPS server with an
//! expired certificate, missing headers, bad cookies, a CORS hole and
//! exposed files, advisory fixtures that match and that do not, file
//! permission mistakes, and the scans `serve` runs on its own schedule.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Runs the real binary off the async thread, so an in-process server
/// keeps answering: (exit code, stdout, stderr).
async fn cli(args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rampart_run(&args, None)
    })
    .await
    .unwrap()
}

async fn scan_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut a: Vec<String> = vec!["scan".into()];
    a.extend(args.iter().map(|s| s.to_string()));
    a.extend(["--format".into(), "json".into()]);
    let (code, out, err) = cli(a).await;
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v)
}

fn checks(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(report: &Value, check: &str, severity: &str) -> bool {
    checks(report)
        .iter()
        .any(|(c, s)| c == check && s == severity)
}

/// Every (check, severity) is among the report's findings.
fn assert_findings(report: &Value, want: &[(&str, &str)]) {
    for (check, severity) in want {
        assert!(
            has(report, check, severity),
            "{check} {severity} not in {:?}",
            checks(report)
        );
    }
}

fn offered(report: &Value) -> Vec<String> {
    report["tls"]["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["offered"].as_bool().unwrap())
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_listening(port: u16) {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {port}");
}

/// `openssl s_server` as configured by someone who copied an old guide:
/// TLS 1.0 to 1.3, every suite its OpenSSL has down to anonymous DH and
/// static RSA, a self-signed 1024-bit RSA certificate valid for one more
/// day. (Debian's OpenSSL 3 is built without 3DES and RC4.)
pub struct BadOpenSsl {
    pub port: u16,
    pub cert: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for BadOpenSsl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BadOpenSsl {
    pub async fn start() -> BadOpenSsl {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:1024",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=weak.test",
            ])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed")
            .success();
        assert!(ok, "openssl req failed");
        let port = free_port();
        let child = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-www",
                "-quiet",
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(["-cipher", "ALL:@SECLEVEL=0", "-min_protocol", "TLSv1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port).await;
        BadOpenSsl {
            port,
            cert,
            child,
            _dir: dir,
        }
    }
}

/// An HTTPS server with everything wrong above TLS: an expired
/// certificate, no security headers, a version banner, a session cookie
/// without flags, CORS that reflects any origin with credentials, a script
/// over plain http, and `.git/config`, `.env` and a directory listing in
/// its web root. Anything else gets the same 200 page (a catch-all, which
/// must not be mistaken for exposed files). Plain HTTP does not redirect.
pub struct BadWeb {
    pub port: u16,
    pub http_port: u16,
    _dir: tempfile::TempDir,
}

const CATCH_ALL: &str = "<html><body>Welcome</body></html>";

async fn bad_answer(
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let origin = req
        .headers()
        .get("origin")
        .and_then(|o| o.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (ctype, body) = match req.uri().path() {
        "/" => (
            "text/html",
            "<html><script src=\"http://cdn.example/app.js\"></script></html>".to_owned(),
        ),
        "/.git/config" => (
            "text/plain",
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n".to_owned(),
        ),
        "/.env" => (
            "text/plain",
            "DB_PASSWORD=canary-not-a-secret\nAPI_KEY=abc\n".to_owned(),
        ),
        "/uploads/" => (
            "text/html",
            "<html><head><title>Index of /uploads</title></head></html>".to_owned(),
        ),
        _ => ("text/html", CATCH_ALL.to_owned()),
    };
    let mut b = hyper::Response::builder()
        .status(200)
        .header("content-type", ctype)
        .header("server", "nginx/1.18.0")
        .header("x-powered-by", "PHP/7.4.3")
        .header("set-cookie", "sessionid=abc123; Path=/");
    if !origin.is_empty() {
        b = b
            .header("access-control-allow-origin", origin)
            .header("access-control-allow-credentials", "true");
    }
    b.body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap()
}

impl BadWeb {
    pub async fn start() -> BadWeb {
        let dir = tempfile::tempdir().unwrap();
        // An ECDSA certificate for 127.0.0.1 that ended a year ago.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2023, 1, 1);
        params.not_after = rcgen::date_time_ymd(2025, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.path().join("expired.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|req| async move {
                        Ok::<_, std::convert::Infallible>(bad_answer(req).await)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = plain.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = plain.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req| async move {
                        Ok::<_, std::convert::Infallible>(bad_answer(req).await)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
                });
            }
        });
        BadWeb {
            port,
            http_port,
            _dir: dir,
        }
    }
}

fn rampart_with_redirect() -> Options {
    Options::default().env("RAMPART_HTTP_LISTEN", "127.0.0.1:0")
}

#[tokio::test]
async fn rampart_itself_grades_a_plus_when_its_certificate_is_trusted() {
    let s = TestServer::with(rampart_with_redirect()).await;
    let url = format!("https://127.0.0.1:{}/", s.port());
    let http_port = s.running().http_addr.unwrap().port().to_string();
    let cert = s.running().layout.tls_cert.display().to_string();
    let (code, r) = scan_json(&["url", &url, "--ca-file", &cert, "--http-port", &http_port]).await;
    assert_eq!(r["tls"]["grade"]["grade"], "A+", "{:#}", r["tls"]["grade"]);
    assert_eq!(r["http"]["grade"], "A+", "{:#}", r["http"]);
    assert_eq!(offered(&r), vec!["TLS 1.3"]);
    assert_eq!(r["tls"]["certificate"]["key_type"], "EC");
    assert!(r["tls"]["certificate"]["trusted"].as_bool().unwrap());
    let serious: Vec<_> = checks(&r)
        .into_iter()
        .filter(|(_, s)| s != "info")
        .collect();
    assert!(serious.is_empty(), "{serious:?}");
    assert!(
        r["exposure"].as_array().is_none_or(|e| e.is_empty()),
        "{:#}",
        r["exposure"]
    );
    let redirect = r["http"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["test"] == "redirection")
        .unwrap();
    assert_eq!(redirect["result"], "redirection-to-https");
    assert_eq!(code, Some(0));

    // Without trusting it, the self-signed certificate is an error and the
    // grade is T, with the grade it would have otherwise.
    let (code, r) = scan_json(&["url", &url, "--http-port", &http_port, "--no-exposure"]).await;
    assert_eq!(r["tls"]["grade"]["grade"], "T");
    assert_eq!(r["tls"]["grade"]["if_trusted"], "A+");
    assert!(has(&r, "tls.cert_untrusted", "error"), "{:?}", checks(&r));
    assert_eq!(
        code,
        Some(3),
        "an error finding fails the default --fail-on error"
    );
}

#[tokio::test]
async fn old_protocols_weak_suites_and_a_weak_key_are_found_and_capped() {
    let bad = BadOpenSsl::start().await;
    let url = format!("https://127.0.0.1:{}/", bad.port);
    let cert = bad.cert.display().to_string();
    let (code, r) = scan_json(&[
        "url",
        &url,
        "--ca-file",
        &cert,
        "--http-port",
        "1",
        "--no-exposure",
    ])
    .await;
    assert_eq!(code, Some(3));
    let protocols = offered(&r);
    for p in ["TLS 1.0", "TLS 1.1", "TLS 1.2"] {
        assert!(protocols.contains(&p.to_owned()), "{protocols:?}");
    }
    assert_findings(
        &r,
        &[
            ("tls.protocol_tls10", "error"),
            ("tls.protocol_tls11", "error"),
            ("tls.suite_insecure", "critical"),
            ("tls.suite_no_forward_secrecy", "warning"),
            ("tls.dh_weak", "warning"),
            ("tls.cert_weak_key", "error"),
            ("tls.cert_expiring", "error"),
        ],
    );
    let suites: Vec<&str> = r["tls"]["suites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["protocol"] == "TLS 1.2")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for want in [
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
    ] {
        assert!(suites.contains(&want), "{want} not in {suites:?}");
    }
    assert!(
        offered(&r).contains(&"TLS 1.3".to_owned()),
        "a 1024-bit key does not hide TLS 1.3"
    );
    // Even named with --ca-file, a chain signed by a 1024-bit RSA key is not
    // one current clients can verify: T, and F once trust is set aside.
    let g = &r["tls"]["grade"];
    assert_eq!(
        (g["grade"].as_str(), g["if_trusted"].as_str()),
        (Some("T"), Some("F")),
        "{g:#}"
    );
    assert!(r["tls"]["certificate"]["trust_error"].is_string());
    let caps = g["caps"].to_string();
    for why in [
        "TLS 1.0 or 1.1",
        "anonymous or NULL",
        "certificate key under 2048 bits",
    ] {
        assert!(caps.contains(why), "{why} not in {caps}");
    }
    assert_eq!(
        r["tls"]["fallback_scsv"], true,
        "OpenSSL refuses downgrades"
    );
    // The plain-HTTP port is closed: nothing to redirect.
    let redirect = r["http"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["test"] == "redirection")
        .unwrap();
    assert_eq!(redirect["result"], "redirection-not-needed-no-http");
}

#[tokio::test]
async fn an_expired_certificate_missing_headers_and_exposed_files_are_found() {
    let bad = BadWeb::start().await;
    let url = format!("https://127.0.0.1:{}/", bad.port);
    let (code, r) = scan_json(&["url", &url, "--http-port", &bad.http_port.to_string()]).await;
    assert_eq!(code, Some(3));
    assert_findings(
        &r,
        &[
            ("tls.cert_expired", "critical"),
            ("tls.cert_untrusted", "error"),
            ("http.hsts_missing", "error"),
            ("http.csp_missing", "warning"),
            ("http.xcto_missing", "warning"),
            ("http.framing_allowed", "warning"),
            ("http.cookie_not_secure", "error"),
            ("http.cookie_not_httponly", "error"),
            ("http.cors_reflects_origin", "critical"),
            ("http.no_https_redirect", "error"),
            ("http.version_banner", "warning"),
            ("exposure.sensitive_file", "critical"),
            ("exposure.directory_listing", "warning"),
        ],
    );
    assert_eq!(r["http"]["grade"], "F");
    assert_eq!(r["http"]["score"], 0);
    let exposed: Vec<&str> = r["exposure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        exposed,
        vec!["/.git/config", "/.env", "/uploads/"],
        "the catch-all page is not an exposure"
    );
    // What the files hold is never copied into the report.
    assert!(!r.to_string().contains("canary-not-a-secret"));
}

#[tokio::test]
async fn reports_come_as_sarif_and_html_and_fail_on_is_honoured() {
    let bad = BadWeb::start().await;
    let url = format!("https://127.0.0.1:{}/", bad.port);
    let dir = tempfile::tempdir().unwrap();
    let sarif = dir.path().join("scan.sarif");
    let html = dir.path().join("scan.html");
    let base = |format: &str, out: &Path, fail_on: &str| -> Vec<String> {
        [
            "scan",
            "url",
            &url,
            "--no-exposure",
            "--http-port",
            "1",
            "--format",
            format,
            "--output",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            out.display().to_string(),
            "--fail-on".into(),
            fail_on.into(),
        ])
        .collect()
    };
    let (code, _, err) = cli(base("sarif", &sarif, "never")).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Report written to"), "{err}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    let run = &doc["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "rampart-scan");
    let results = run["results"].as_array().unwrap();
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "tls.cert_expired" && r["level"] == "error"));
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(results
        .iter()
        .all(|r| rules.contains(&r["ruleId"].as_str().unwrap())));

    let (code, _, err) = cli(base("html", &html, "critical")).await;
    assert_eq!(code, Some(3), "the expired certificate is critical: {err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(
        page.contains("TLS: T") && page.contains("headers: F"),
        "the grades are on the page"
    );
    assert!(page.contains("tls.cert_expired"));
    assert!(
        !page.contains("<script") && !page.contains("src=\"http"),
        "self-contained"
    );

    let (code, out, _) = cli(vec![
        "scan".into(),
        "url".into(),
        url.clone(),
        "--no-exposure".into(),
        "--http-port".into(),
        "1".into(),
    ])
    .await;
    assert_eq!(code, Some(3));
    assert!(out.contains("CRITICAL (") && out.contains("fix:"), "{out}");
    assert!(!out.contains("\x1b["), "no colour when not on a terminal");

    let (code, _, err) = cli(vec![
        "scan".into(),
        "url".into(),
        "http://127.0.0.1/".into(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("only https:// URLs"), "{err}");
}

fn advisory_fixture(dir: &Path, patched: &str) {
    let d = dir.join("crates/leftpad-rs");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("RUSTSEC-2099-0001.md"),
        format!(
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"leftpad-rs\"\ndate = \"2099-01-01\"\n\
             cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H\"\n\n[versions]\npatched = [\"{patched}\"]\n```\n\n# Padding overflow\n"
        ),
    )
    .unwrap();
}

const LOCK: &str = "version = 4\n\n[[package]]\nname = \"leftpad-rs\"\nversion = \"1.0.3\"\n\
                    source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
                    [[package]]\nname = \"app\"\nversion = \"0.1.0\"\n";

#[tokio::test]
async fn scan_deps_matches_a_lockfile_against_an_advisory_directory() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("Cargo.lock");
    std::fs::write(&lock, LOCK).unwrap();
    let hit = dir.path().join("hit");
    advisory_fixture(&hit, ">= 1.0.4");
    let miss = dir.path().join("miss");
    advisory_fixture(&miss, ">= 1.0.0");
    let lock = lock.display().to_string();

    let (code, r) = scan_json(&[
        "deps",
        "--lockfile",
        &lock,
        "--advisory-db",
        hit.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, Some(3));
    assert_eq!(
        checks(&r),
        vec![("deps.RUSTSEC-2099-0001".to_owned(), "error".to_owned())]
    );
    assert_eq!(r["findings"][0]["target"], "leftpad-rs@1.0.3");
    assert!(r["findings"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("cargo update -p leftpad-rs"));
    assert_eq!(
        r["deps"]["packages"], 1,
        "the path package is not looked up"
    );

    let (code, r) = scan_json(&[
        "deps",
        "--lockfile",
        &lock,
        "--advisory-db",
        miss.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, Some(0));
    assert!(checks(&r).is_empty(), "{:?}", checks(&r));

    let (code, _, err) = cli(vec![
        "scan".into(),
        "deps".into(),
        "--lockfile".into(),
        lock.clone(),
        "--advisory-db".into(),
        "/nonexistent".into(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot read the advisory database at /nonexistent"),
        "{err}"
    );

    // The shipped snapshot is the default.
    let (code, r) = scan_json(&["deps", "--lockfile", &lock, "--fail-on", "never"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(r["deps"]["database"], "built-in RustSec snapshot");
    assert!(r["deps"]["advisories"].as_u64().unwrap() > 1000);
}

#[tokio::test]
async fn scan_self_on_a_fresh_deployment_shows_no_errors_then_finds_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = Proc::spawn(&data, &[]);
    let data_arg = data.display().to_string();
    let (code, r) = scan_json(&["self", "--data-dir", &data_arg]).await;
    assert_eq!(code, Some(0), "{:?}", checks(&r));
    let serious: Vec<(String, String)> = checks(&r)
        .into_iter()
        .filter(|(_, s)| s != "info")
        .collect();
    // Only the certificate a local set-up is expected to have, and the age
    // of the shipped advisory snapshot (taken on 2026-08-20), when it is.
    for (check, severity) in &serious {
        assert_eq!(severity, "warning", "{serious:?}");
        assert!(
            check == "tls.cert_self_signed" || check == "deps.advisory_db_stale",
            "{serious:?}"
        );
    }
    assert!(
        has(&r, "tls.cert_self_signed", "warning"),
        "{:?}",
        checks(&r)
    );
    assert!(r["passed"].as_array().unwrap().iter().any(|p| p
        .as_str()
        .unwrap()
        .starts_with("master key file is private")));
    assert!(
        r["deps"]["packages"].as_u64().unwrap() > 100,
        "Rampart's own dependencies are checked"
    );
    // The scan reads the key files' metadata, never their content into
    // the report.
    let key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let tls_key = std::fs::read_to_string(data.join("tls/key.pem")).unwrap();
    let text = r.to_string();
    assert!(!text.contains(key.trim()) && !text.contains(tls_key.lines().nth(1).unwrap()));
    p.terminate().await;

    // Mistakes: a readable master key, an administrator without a second
    // factor, debug logging.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (ok, _, err) = tokio::task::spawn_blocking({
        let data_arg = data_arg.clone();
        move || {
            rampart_cli(
                &[
                    "admin",
                    "create",
                    "--email",
                    "boss@example.com",
                    "--password-stdin",
                    "--data-dir",
                    &data_arg,
                ],
                Some("Cobalt-Harbor-Quiet-42-Meridian\n"),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        rampart_run_env(
            &[
                "scan",
                "self",
                "--data-dir",
                &data_arg,
                "--format",
                "json",
                "--fail-on",
                "error",
            ],
            None,
            &[("RAMPART_LOG__LEVEL", "debug")],
        )
    })
    .await
    .unwrap();
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(code, Some(3));
    assert!(has(&r, "files.permissions", "error"), "{:?}", checks(&r));
    assert!(
        has(&r, "ops.admin_without_mfa", "error"),
        "{:?}",
        checks(&r)
    );
    assert!(has(&r, "config.debug_logging", "info"), "{:?}", checks(&r));
    let fix = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "files.permissions")
        .unwrap()["fix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        fix.starts_with("chmod 600 ") && fix.ends_with("master.key"),
        "{fix}"
    );

    // Settings read as the server reads them: the NIST preset (longer
    // passwords) is not weaker; an IPv4-mapped range of everything is
    // everything; a master key file that is not there (the server takes
    // the key from elsewhere) is not reported as inside the data directory.
    let config = dir.path().join("rampart.toml");
    std::fs::write(
        &config,
        "[password]\npreset = \"nist\"\n[guard]\ntrusted_proxies = [\"::ffff:0:0/96\"]\n",
    )
    .unwrap();
    std::fs::rename(data.join("master.key"), dir.path().join("master.key")).unwrap();
    let config = config.display().to_string();
    let data_arg = data.display().to_string();
    let (_, r) = scan_json(&["self", "--config", &config, "--data-dir", &data_arg]).await;
    let found = checks(&r);
    assert!(
        found.iter().all(|(c, _)| c != "config.password_preset_weak"
            && c != "files.master_key_in_data_dir"),
        "{found:?}"
    );
    assert!(
        has(&r, "config.trusted_proxies_broad", "error"),
        "{found:?}"
    );
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["target"].as_str().unwrap().contains("0.0.0.0/0")),
        "{r}"
    );
}

#[tokio::test]
async fn serve_scans_itself_on_schedule_and_turns_new_findings_into_events_and_alerts() {
    let s =
        TestServer::with(Options::default().env("RAMPART_SCAN__START_DELAY_SECS", "3600")).await;
    let admin = s.admin_without_mfa().await;
    let r = s.get_auth("/api/v1/admin/scans", &admin).await;
    assert_eq!(r.status(), 403, "the admin routes need a second factor");
    let member = s.user("member@example.com").await;
    let r = s.get_auth("/api/v1/admin/scans", &member).await;
    problem(r, 403, "admin_required").await;
    s.enrol_totp("owner@example.com", &admin).await;
    // Nothing has run yet: the first scan is due an hour after start, by
    // the server's clock.
    let v: Value = s
        .get_auth("/api/v1/admin/scans", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["reports"].as_array().unwrap().len(), 0);
    // A mistake for the scan to find: the TLS key readable by everyone.
    use std::os::unix::fs::PermissionsExt;
    let key = s.running().layout.tls_key.clone();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.clock.advance(Duration::from_secs(3601));
    // The session has idled out meanwhile.
    let admin = s.login_mfa("owner@example.com").await;
    let summary = wait_for_report(&s, &admin, None).await;
    assert_eq!(summary["kind"], "self");
    assert_eq!(summary["worst"], "error");
    let id = summary["id"].as_str().unwrap().to_owned();
    let report: Value = s
        .get_auth(&format!("/api/v1/admin/scans/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        has(&report, "tls.cert_self_signed", "warning"),
        "{:?}",
        checks(&report)
    );
    assert!(
        has(&report, "files.permissions", "error"),
        "{:?}",
        checks(&report)
    );
    let events = scan_events(&s, &admin).await;
    assert!(
        events.iter().any(|e| e.contains("tls.cert_self_signed")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("error files.permissions")),
        "{events:?}"
    );
    // The new error is emailed to the administrators.
    let mut outbox = String::new();
    for _ in 0..250 {
        outbox = std::fs::read_to_string(s.data_dir().join("outbox.log")).unwrap_or_default();
        if outbox.contains("Rampart: new security findings") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        outbox.contains("Rampart: new security findings"),
        "{outbox}"
    );
    assert!(
        outbox.contains("chmod 600"),
        "the alert carries the fix: {outbox}"
    );
    let before = events.len();

    // A day later the same findings are not new: no new events.
    s.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let admin = s.login_mfa("owner@example.com").await;
    wait_for_report(&s, &admin, Some(&id)).await;
    assert_eq!(scan_events(&s, &admin).await.len(), before);

    let r = s.get_auth("/api/v1/admin/scans/scan_nope", &admin).await;
    problem(r, 404, "not_found").await;
}

/// Waits for the newest self report, other than `after`.
async fn wait_for_report(s: &TestServer, admin: &str, after: Option<&str>) -> Value {
    for _ in 0..300 {
        let v: Value = s
            .get_auth("/api/v1/admin/scans", admin)
            .await
            .json()
            .await
            .unwrap();
        if let Some(first) = v["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "self")
        {
            if Some(first["id"].as_str().unwrap()) != after {
                return first.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new scan report within 15 s");
}

async fn scan_events(s: &TestServer, admin: &str) -> Vec<String> {
    let v: Value = s
        .get_auth("/api/v1/admin/events?type=scan_finding&limit=500", admin)
        .await
        .json()
        .await
        .unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn the_dependency_list_is_current() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "rampart",
            "-e",
            "normal,build",
        ])
        .args([
            "--target",
            "x86_64-unknown-linux-gnu",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches(" (*)").trim_end_matches(" (proc-macro)"))
        .filter(|l| !l.contains(" ("))
        .map(|l| l.replacen(" v", " ", 1))
        .collect();
    want.sort();
    want.dedup();
    let have: Vec<&str> = rampart::scan::OWN_DEPENDENCIES.lines().collect();
    assert_eq!(
        have, want,
        "crates/app/deps.txt is stale: run crates/app/refresh-deps"
    );
}

fn finding(check: &str, severity: rampart_scan::Severity) -> rampart_scan::Finding {
    rampart_scan::Finding::new(check, severity, "certificate /x/cert.pem", "t", "w", "f")
}

fn report_with(findings: Vec<rampart_scan::Finding>) -> rampart_scan::Report {
    let mut r = rampart_scan::Report::new(
        rampart_scan::ScanKind::SelfScan,
        "rampart on test (127.0.0.1:1)",
        time::OffsetDateTime::now_utc(),
    );
    r.findings = findings;
    r
}

#[tokio::test]
async fn a_finding_that_grows_more_severe_is_new_again() {
    use rampart_scan::Severity::*;
    let s = TestServer::start().await;
    let auth = s.running().auth.clone();
    let now = rampart_core::Clock::now(s.clock.as_ref());
    let e = rampart_crypto::OsEntropy;
    let first = rampart::scan::record(
        &auth,
        &report_with(vec![finding("tls.cert_expiring", Warning)]),
        now,
        &e,
    )
    .await
    .unwrap();
    assert_eq!(first.len(), 1);
    let same = rampart::scan::record(
        &auth,
        &report_with(vec![finding("tls.cert_expiring", Warning)]),
        now,
        &e,
    )
    .await
    .unwrap();
    assert!(same.is_empty(), "unchanged: not new");
    let worse = rampart::scan::record(
        &auth,
        &report_with(vec![finding("tls.cert_expiring", Error)]),
        now,
        &e,
    )
    .await
    .unwrap();
    assert_eq!(worse.len(), 1, "a warning become an error is new");
    let better = rampart::scan::record(
        &auth,
        &report_with(vec![finding("tls.cert_expiring", Warning)]),
        now,
        &e,
    )
    .await
    .unwrap();
    assert!(better.is_empty(), "less severe is not new");
    // A node seen for the first time compares with the newest self report
    // of any node: a restarted container does not raise everything again.
    let mut other = report_with(vec![finding("tls.cert_expiring", Warning)]);
    other.target = "rampart on another-host (127.0.0.1:1)".to_owned();
    assert!(rampart::scan::record(&auth, &other, now, &e)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_url_with_credentials_is_refused_without_echoing_them() {
    let (code, _, err) = cli(["scan", "url", "https://admin:hunter2-canary@127.0.0.1:1/"]
        .iter()
        .map(|s| s.to_string())
        .collect())
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("without a user name or password"), "{err}");
    assert!(!err.contains("hunter2-canary"), "{err}");
}

/// A database that cannot be opened is reported as not read, and the
/// password in its URL appears nowhere: not in the report, not in errors.
#[tokio::test]
async fn a_database_that_cannot_be_opened_is_reported_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let (code, out, err) = cli([
        "scan",
        "self",
        "--data-dir",
        &data,
        "--database-url",
        "postgres://rampart:db-pw-canary@127.0.0.1:1/rampart",
        "--format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect())
    .await;
    assert!(
        !out.contains("db-pw-canary") && !err.contains("db-pw-canary"),
        "{out}{err}"
    );
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    // The scan ran (3: the temporary directory is not private).
    assert_eq!(code, Some(3), "{:?}", checks(&r));
    assert!(
        r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["check"] == "ops.admin"
                && s["reason"].as_str().unwrap().contains("cannot connect")),
        "{r}"
    );
}

/// A finding that a scan could not look for (its exposure check stopped)
/// is not new when the next complete scan finds it again; one that a
/// complete scan did not find is.
#[tokio::test]
async fn a_finding_missed_by_an_incomplete_scan_is_not_new_again() {
    use rampart_scan::Severity::*;
    let s = TestServer::start().await;
    let auth = s.running().auth.clone();
    let start = rampart_core::Clock::now(s.clock.as_ref());
    let e = rampart_crypto::OsEntropy;
    let at = |hours: u64| start.plus(std::time::Duration::from_secs(hours * 3600));
    let exposed = || report_with(vec![finding("exposure.sensitive_file", Error)]);
    let mut stopped = report_with(Vec::new());
    stopped.skipped.push(rampart_scan::report::Skipped {
        check: "exposure".to_owned(),
        reason: "stopped after 5 of 47 paths".to_owned(),
    });
    let record = |r: rampart_scan::Report, t| {
        let auth = auth.clone();
        async move { rampart::scan::record(&auth, &r, t, &e).await.unwrap().len() }
    };
    assert_eq!(record(exposed(), at(0)).await, 1);
    assert_eq!(record(stopped.clone(), at(1)).await, 0);
    assert_eq!(record(exposed(), at(2)).await, 0, "only missed: not new");
    // Fixed (a complete scan without it), then back: new again.
    assert_eq!(record(report_with(Vec::new()), at(3)).await, 0);
    assert_eq!(record(exposed(), at(4)).await, 1, "back after a fix: new");
}
