//! Live shipping of the trail to real receivers: Debian's rsyslog over TLS
//! and a local HTTP receiver, each down for a while and across a restart
//! of Rampart, with every event arriving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::*;

/// A server whose events stream to `url`, in `dir` (kept across restarts).
/// `extra`: more of the stream's settings, as TOML (`, ca_file = "…"`).
async fn streaming(dir: tempfile::TempDir, url: &str, extra: &str) -> TestServer {
    TestServer::with(
        Options {
            dir: Some(dir),
            ..Options::default()
        }
        .env(
            "RAMPART_AUDIT__STREAMS",
            &format!("[{{name = \"siem\", url = \"{url}\", batch = 50{extra}}}]"),
        ),
    )
    .await
}

/// Some events: registrations and failed sign-ins (whose passwords must
/// never be streamed).
async fn make_events(s: &TestServer, tag: &str, n: usize) {
    for i in 0..n {
        s.register(&format!("{tag}{i}@example.com")).await;
        let r = s
            .post(
                "/api/v1/auth/login",
                serde_json::json!({"email": format!("{tag}{i}@example.com"), "password": format!("Canary-Stream-{tag}-{i}!x")}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
}

/// The sequence numbers of the server's chain, 0..head.
async fn chain_seqs(s: &TestServer) -> (String, BTreeSet<u64>) {
    s.running().audit.flush().await;
    let node = s.running().audit.node().to_owned();
    let head = s
        .running()
        .auth
        .store()
        .audit_head(&node)
        .await
        .unwrap()
        .unwrap();
    (node, (0..=head.seq).collect())
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 30 s");
}

struct Rsyslog {
    child: std::process::Child,
    received: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's rsyslogd on 127.0.0.1:`port`, TLS only (gtls), writing every
/// message it receives, raw, to a file.
fn rsyslog(dir: &Path, port: u16, cert: &Path, key: &Path) -> Option<Rsyslog> {
    let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("rsyslogd is required under CI=true (apt-get install rsyslog rsyslog-gnutls)");
        }
        eprintln!("\n!!! SKIPPING the rsyslog test: rsyslogd is not installed !!!\n");
        return None;
    };
    let work = dir.join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let received = work.join("received.log");
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{w}" maxMessageSize="64k"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="{cert}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on" asyncWriting="off")
"#,
            w = work.display(),
            cert = cert.display(),
            key = key.display(),
            out = received.display(),
        ),
    )
    .unwrap();
    let child = std::process::Command::new(bin)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslog.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rsyslogd");
    Some(Rsyslog { child, received })
}

/// The `seq` of every message of chain `node` in rsyslog's file.
fn received_seqs(file: &Path, node: &str) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let marker = format!("node=\"{node}\" seq=\"");
    text.lines()
        .filter_map(|l| l.split(&marker).nth(1))
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn rsyslog_over_tls_gets_every_event_across_its_outage_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = rampart_crypto::generate_self_signed(
        std::time::SystemTime::now(),
        &rampart_crypto::OsEntropy,
    )
    .unwrap();
    let cert = tmp.path().join("syslog-cert.pem");
    let key = tmp.path().join("syslog-key.pem");
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, pair.key_pem.expose_secret()).unwrap();
    let port = free_port();
    let url = format!("tls://localhost:{port}");

    // The receiver is down: events wait in the trail.
    let ca = format!(", ca_file = \"{}\"", cert.display());
    let mut s = streaming(tempfile::tempdir().unwrap(), &url, &ca).await;
    make_events(&s, "down", 5).await;
    let (node, before) = chain_seqs(&s).await;
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());

    let Some(r) = rsyslog(tmp.path(), port, &cert, &key) else {
        return;
    };
    // Rampart comes back, ships what it kept, and what happens next.
    let s = streaming(dir, &url, &ca).await;
    make_events(&s, "up", 5).await;
    let (_, after) = chain_seqs(&s).await;
    assert!(after.len() > before.len());
    wait_until("rsyslog received every event", || {
        received_seqs(&r.received, &node).is_superset(&after)
    })
    .await;
    let text = std::fs::read_to_string(&r.received).unwrap();
    assert!(
        text.contains("\"action\":\"login_failure\""),
        "ECS JSON in the message"
    );
    assert!(
        !text.contains("Canary-Stream-"),
        "a password reached the stream"
    );
}

/// A plain-HTTP receiver on 127.0.0.1 that refuses the first `down`
/// batches with 503, then keeps every NDJSON line it accepts.
struct HttpSink {
    url: String,
    lines: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
    /// The Authorization header of every request.
    auth: Arc<Mutex<Vec<String>>>,
}

async fn http_sink(down: usize) -> HttpSink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let auth: Arc<Mutex<Vec<String>>> = Arc::default();
    let (keep, count, seen) = (lines.clone(), refused.clone(), auth.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (keep, count, seen) = (keep.clone(), count.clone(), seen.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (keep, count, seen) = (keep.clone(), count.clone(), seen.clone());
                        async move {
                            use http_body_util::BodyExt;
                            seen.lock().unwrap().push(
                                req.headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned(),
                            );
                            let ndjson = req.headers()["content-type"] == "application/x-ndjson";
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = if count.fetch_add(1, Ordering::SeqCst) < down {
                                503
                            } else {
                                let mut k = keep.lock().unwrap();
                                if ndjson {
                                    for l in String::from_utf8_lossy(&body).lines() {
                                        k.push(serde_json::from_str(l).unwrap());
                                    }
                                } else {
                                    k.push(serde_json::from_slice(&body).unwrap());
                                }
                                200
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
            });
        }
    });
    HttpSink {
        url: format!("http://127.0.0.1:{port}/ingest"),
        lines,
        refused,
        auth,
    }
}

#[tokio::test]
async fn an_http_receiver_gets_every_event_as_ecs_after_refusing_for_a_while() {
    let sink = http_sink(2).await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("siem.token");
    std::fs::write(&token, "Canary-Stream-Token-77\n").unwrap();
    let with_token = format!(", token_file = \"{}\"", token.display());
    let mut s = streaming(tempfile::tempdir().unwrap(), &sink.url, &with_token).await;
    make_events(&s, "h", 4).await;
    wait_until("the receiver refused twice", || {
        sink.refused.load(Ordering::SeqCst) >= 2
    })
    .await;
    // A restart in the middle: the cursor is in the database.
    s.stop().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = streaming(dir, &sink.url, &with_token).await;
    make_events(&s, "k", 2).await;
    let (node, all) = chain_seqs(&s).await;
    let got = || -> BTreeSet<u64> {
        sink.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d["rampart"]["node"] == node.as_str())
            .map(|d| d["rampart"]["seq"].as_u64().unwrap())
            .collect()
    };
    wait_until("the receiver got every event", || got().is_superset(&all)).await;
    let lines = sink.lines.lock().unwrap().clone();
    let failure = lines
        .iter()
        .find(|d| d["event"]["action"] == "login_failure")
        .unwrap();
    assert_eq!(failure["event"]["outcome"], "failure");
    assert_eq!(failure["event"]["category"][0], "authentication");
    assert_eq!(failure["source"]["ip"], "127.0.0.1");
    assert!(failure["@timestamp"].as_str().unwrap().ends_with('Z'));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(
        !text.contains("Canary-Stream-"),
        "a password or the token reached the stream"
    );
    // The token goes in the header, and only there.
    let auth = sink.auth.lock().unwrap().clone();
    assert!(!auth.is_empty());
    assert!(
        auth.iter().all(|a| a == "Bearer Canary-Stream-Token-77"),
        "{auth:?}"
    );
}

#[test]
fn streams_that_would_leave_the_machine_in_clear_are_refused() {
    for (url, says) in [
        ("http://siem.example.com/in", "only encrypted"),
        ("tcp://siem.example.com:514", "only encrypted"),
        ("https://user:pw@siem.example.com/", "no credentials"),
        ("https://user:pw@siem.example.com:99999/", "not one"),
        ("https://siem.example.com/in?key=pw@x", "ok"),
        ("smtp://x:25", "scheme"),
    ] {
        let stream = format!("[{{name = \"siem\", url = \"{url}\"}}]");
        let loaded = rampart::config::Settings::load(
            None,
            [("RAMPART_AUDIT__STREAMS".to_owned(), stream)],
            &rampart::config::Overrides::default(),
        );
        if says == "ok" {
            assert!(loaded.is_ok(), "{url}");
            continue;
        }
        let why = format!("{:#}", loaded.unwrap_err());
        assert!(why.contains(says), "{url}: {why}");
        assert!(
            !why.contains("pw@"),
            "the credentials are not echoed: {why}"
        );
    }
}

#[tokio::test]
async fn a_remote_witness_gets_every_checkpoint_and_they_verify() {
    let sink = http_sink(0).await;
    let s = TestServer::with(Options::default().env("RAMPART_AUDIT__WITNESS_URL", &sink.url)).await;
    s.register("w@example.com").await;
    s.running().audit.flush().await;
    let node = s.running().audit.node().to_owned();
    wait_until("the remote witness got a checkpoint", || {
        sink.lines
            .lock()
            .unwrap()
            .iter()
            .any(|c| c["node"] == node.as_str() && c["size"].as_u64() >= Some(2))
    })
    .await;
    // What it holds is a witness file's line: verify compares with it.
    let lines: Vec<String> = sink
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let file = s.data_dir().with_file_name("remote.checkpoints");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut s = s;
    s.stop().await;
    let (code, out, err) = rampart_run(
        &[
            "audit",
            "verify",
            "--witness",
            file.to_str().unwrap(),
            "--data-dir",
            s.data_dir().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("witness checkpoints compared"), "{out}");
}
