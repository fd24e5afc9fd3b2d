//! Holding connections as an attacker would (issue 23): one address, or one
//! client behind a trusted proxy, cannot keep anyone else out, and a
//! sustained attempt ends in an address block; connections that get only
//! refusals, overflow answers or nothing to do are closed; every refusal
//! made before routing is problem+json; the `Host` rules.
//!
//! Clients use distinct loopback addresses (127.0.0.2, 127.0.0.3…): on
//! Linux all of 127.0.0.0/8 is this machine.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::support::*;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const HEALTHZ: &[u8] = b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
const VICTIM: [u8; 4] = [127, 0, 0, 3];

/// What the attacker's connections got.
#[derive(Default)]
struct Tally {
    /// Connections open and answered at least once, now.
    held: AtomicUsize,
    /// The most held at once.
    peak: AtomicUsize,
    /// Connections that never got an answer (refused at accept, 429…).
    refused: AtomicUsize,
    /// Requests answered 200.
    served: AtomicUsize,
}

/// Opens `n` connections from `src`, at most `opening` at a time, each
/// sending one keep-alive request (naming `forwarded_for` when given) and
/// then one every `drip`, until `stop`. Returns the tasks and the tally.
fn siege(
    s: &TestServer,
    src: IpAddr,
    forwarded_for: Option<&str>,
    (n, opening): (usize, usize),
    drip: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (JoinSet<()>, Arc<Tally>) {
    let opening = Arc::new(tokio::sync::Semaphore::new(opening));
    let tally = Arc::new(Tally::default());
    let connector = tls_connector(s, b"http/1.1");
    let xff = forwarded_for
        .map(|ip| format!("X-Forwarded-For: {ip}\r\n"))
        .unwrap_or_default();
    let request: Arc<[u8]> =
        format!("GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n{xff}\r\n")
            .into_bytes()
            .into();
    let port = s.port();
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (connector, request, tally, mut stop, opening) = (
            connector.clone(),
            request.clone(),
            tally.clone(),
            stop.clone(),
            opening.clone(),
        );
        tasks.spawn(async move {
            let mut opening = Some(opening.acquire_owned().await.unwrap());
            let connect = async {
                let tcp = tcp_from(src, port).await?;
                connector
                    .connect(
                        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                        tcp,
                    )
                    .await
            };
            let mut tls = match tokio::time::timeout(Duration::from_secs(20), connect).await {
                Ok(Ok(tls)) => tls,
                _ => {
                    tally.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            let mut holding = false;
            loop {
                if tls.write_all(&request).await.is_err() {
                    break;
                }
                match read_response(&mut tls, Duration::from_secs(20)).await {
                    Some(r) if r.starts_with("HTTP/1.1 200") => {
                        tally.served.fetch_add(1, Ordering::SeqCst);
                        if !holding {
                            holding = true;
                            let now = tally.held.fetch_add(1, Ordering::SeqCst) + 1;
                            tally.peak.fetch_max(now, Ordering::SeqCst);
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
                opening.take();
                tokio::select! {
                    _ = tokio::time::sleep(drip) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            if holding {
                tally.held.fetch_sub(1, Ordering::SeqCst);
            } else {
                tally.refused.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    (tasks, tally)
}

/// Sends `request` on `stream` and reads the one answer.
async fn ask<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> Option<String> {
    stream.write_all(request).await.ok()?;
    read_response(stream, Duration::from_secs(5)).await
}

/// A new connection from another address (127.0.0.4) is served.
async fn a_newcomer_is_served(s: &TestServer) {
    let mut newcomer = tls_stream_from(s, [127, 0, 0, 4]).await;
    let r = ask(&mut newcomer, HEALTHZ).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "the newcomer is served: {r}");
}

/// A client that opens a new connection for every request, from `src`.
fn newcomer(s: &TestServer, src: IpAddr) -> reqwest::Client {
    let cert = std::fs::read(&s.running().layout.tls_cert).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .https_only(true)
        .local_address(src)
        .pool_max_idle_per_host(0)
        .http1_only()
        .build()
        .unwrap()
}

/// Requests `/healthz` from a new connection every 200 ms for `rounds`,
/// each of which must be answered 200 within a second.
async fn keeps_being_served(
    s: &TestServer,
    client: &reqwest::Client,
    xff: Option<&str>,
    rounds: usize,
) {
    for round in 0..rounds {
        let mut req = client.get(s.url("/api/v1/healthz"));
        if let Some(ip) = xff {
            req = req.header("x-forwarded-for", ip);
        }
        let answer = tokio::time::timeout(Duration::from_secs(1), req.send()).await;
        match answer {
            Ok(Ok(r)) => assert_eq!(r.status(), 200, "round {round}"),
            Ok(Err(e)) => panic!("round {round}: the other client was refused: {e}"),
            Err(_) => panic!("round {round}: the other client waited over a second"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 10 s: blocks are re-read every second) until a request
/// from `client` is refused 403 `address_blocked`.
async fn ends_up_blocked(s: &TestServer, client: &reqwest::Client, xff: Option<&str>) {
    let started = std::time::Instant::now();
    loop {
        let mut req = client.get(s.url("/api/v1/healthz"));
        if let Some(ip) = xff {
            req = req.header("x-forwarded-for", ip);
        }
        if let Ok(r) = req.send().await {
            if r.status() == 403 {
                problem(r, 403, "address_blocked").await;
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the attacking address was never blocked"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_2000_connections_cannot_keep_others_out() {
    let s = TestServer::with(Options::default().guard_defaults()).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (mut tasks, tally) = siege(
        &s,
        ATTACKER.into(),
        None,
        (2000, 2000),
        Duration::from_millis(500),
        stop,
    );
    keeps_being_served(&s, &newcomer(&s, VICTIM.into()), None, 40).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let peak = tally.peak.load(Ordering::SeqCst);
    assert!(peak > 0, "the attacker was served at first");
    assert!(
        peak <= 64,
        "one address held {peak} connections (its share is 64)"
    );
    assert!(tally.refused.load(Ordering::SeqCst) >= 2000 - 64);
    ends_up_blocked(&s, &newcomer(&s, ATTACKER.into()), None).await;
    // Blocked, the address keeps one connection to read its 403 on; more
    // are closed at once, before TLS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connector = tls_connector(&s, b"http/1.1");
    let mut one = tls_from(&s, &connector, ATTACKER.into()).await.unwrap();
    let r = ask(&mut one, HEALTHZ).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(
        tls_from(&s, &connector, ATTACKER.into()).await.is_err(),
        "a second connection from a blocked address is refused"
    );
    drop(one);
    // Nearly two thousand refusals, one block: refusals of an address
    // already blocked are not counted again.
    let blocks = s
        .running()
        .auth
        .store()
        .block_count("127.0.0.2/32", rampart_core::Timestamp(0))
        .await
        .unwrap();
    assert_eq!(blocks, 1);
    // The refusals are guard events, folded: one per address and rule, not
    // one per connection.
    s.running().audit.flush().await;
    let events = s
        .running()
        .auth
        .events(&rampart_core::audit::EventQuery {
            actions: vec!["rate_limited".into()],
            source_net: Some("127.0.0.2/32".parse().unwrap()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let refusals = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("connections.per_address"))
        .count();
    assert_eq!(refusals, 1, "{events:?}");
    // The other address is not blocked.
    let r = newcomer(&s, VICTIM.into())
        .get(s.url("/api/v1/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_behind_a_trusted_proxy_cannot_keep_others_out() {
    let s = TestServer::with(
        Options::default()
            .guard_defaults()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#),
    )
    .await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let proxy: IpAddr = [127, 0, 0, 1].into();
    let (mut tasks, tally) = siege(
        &s,
        proxy,
        Some("198.51.100.66"),
        // A proxy opens connections as its clients' requests come, not
        // thousands in one instant: each costs a full TLS handshake before
        // its request can say whom it is for.
        (2000, 100),
        Duration::from_millis(500),
        stop,
    );
    let other = newcomer(&s, proxy);
    keeps_being_served(&s, &other, Some("198.51.100.77"), 40).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let peak = tally.peak.load(Ordering::SeqCst);
    assert!(peak > 0, "the attacker was served at first");
    assert!(
        peak <= 64,
        "one client held {peak} of the proxy's connections (its share is 64)"
    );
    ends_up_blocked(&s, &other, Some("198.51.100.66")).await;
    // The proxy itself, and its other clients, are not blocked.
    keeps_being_served(&s, &other, Some("198.51.100.77"), 1).await;
    keeps_being_served(&s, &other, None, 1).await;
}

/// Behind a trusted proxy an HTTP/1 connection counts for the client its
/// request names, but an HTTP/2 connection carries many clients' requests
/// at once: it is counted for none of them (refusing one would close it for
/// all).
#[tokio::test]
async fn a_proxys_connections_count_per_client_except_http2() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env("RAMPART_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "1"),
    )
    .await;
    let request =
        b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.5\r\n\r\n";
    let mut first = tls_stream(&s).await;
    let r = ask(&mut first, request).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // A request for the same client on the proxy's second HTTP/1
    // connection is refused; the connection is the proxy's and stays open
    // for its other clients, and the proxy itself is not capped.
    let mut second = tls_stream(&s).await;
    for _ in 0..4 {
        let r = ask(&mut second, request).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 429"), "{r}");
        assert!(r.contains("too_many_connections"), "{r}");
        assert!(!r.to_ascii_lowercase().contains("connection: close"), "{r}");
    }
    let r = ask(
        &mut second,
        b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.6\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "another client: {r}");
    // Over HTTP/2 the same client is served.
    for _ in 0..3 {
        let r = s
            .client
            .get(s.url("/api/v1/healthz"))
            .header("x-forwarded-for", "198.51.100.5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
    }
}

/// An idle HTTP/2 connection is idle even while its client sends PINGs:
/// a full server closes it for a newcomer.
#[tokio::test]
async fn idle_http2_connections_that_ping_are_closed_for_a_newcomer() {
    let s = TestServer::with(Options::default().env("RAMPART_LIMITS__MAX_CONNECTIONS", "2")).await;
    let cert = std::fs::read(&s.running().layout.tls_cert).unwrap();
    let pinging = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .http2_prior_knowledge()
            .http2_keep_alive_interval(Duration::from_millis(100))
            .http2_keep_alive_while_idle(true)
            .build()
            .unwrap()
    };
    let (a, b) = (pinging(), pinging());
    for c in [&a, &b] {
        let r = c.get(s.url("/api/v1/healthz")).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a_newcomer_is_served(&s).await;
}

/// A connection that never finishes its TLS handshake is, past two
/// seconds, no better than an idle one: a full server closes it for a
/// newcomer.
#[tokio::test]
async fn stalled_handshakes_are_closed_for_a_newcomer() {
    let s = TestServer::with(Options::default().env("RAMPART_LIMITS__MAX_CONNECTIONS", "2")).await;
    let mut silent = Vec::new();
    for src in [[127, 0, 0, 5], [127, 0, 0, 6]] {
        silent.push(
            tcp_from(std::net::IpAddr::from(src), s.port())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a_newcomer_is_served(&s).await;
    // The connection chosen is closed at once, not at the end of its
    // 10 s handshake timeout.
    let mut closed = 0;
    for tcp in &mut silent {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "a stalled handshake was closed for the newcomer"
    );
}

/// With every slot busy and nothing idle to close, a connection gets one
/// 503 and is closed after it.
#[tokio::test]
async fn connections_over_the_limit_get_503_and_are_closed() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_LIMITS__MAX_CONNECTIONS", "1")
            .env("RAMPART_LIMITS__REQUEST_TIMEOUT_SECS", "20"),
    )
    .await;
    // The only slot, busy: a body that is still arriving.
    let mut busy = tls_stream(&s).await;
    busy.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = tls_stream_from(&s, [127, 0, 0, 4]).await;
    second.write_all(HEALTHZ).await.unwrap();
    // No `Connection: close` from the client: the server closes anyway.
    let answer = read_all(&mut second, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"));
    assert!(lower.contains("connection: close"));
    assert!(answer.contains("too_many_connections"));
    drop(busy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.client.get(s.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "slot freed");
}

/// A full server closes its longest-idle keep-alive connection for a
/// newcomer, instead of turning the newcomer away.
#[tokio::test]
async fn a_full_server_closes_the_longest_idle_connection_for_a_newcomer() {
    let s = TestServer::with(Options::default().env("RAMPART_LIMITS__MAX_CONNECTIONS", "2")).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut tls = tls_stream(&s).await;
        let r = ask(&mut tls, HEALTHZ).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        idle.push(tls);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    a_newcomer_is_served(&s).await;
    // The oldest idle one was closed; the younger one still works.
    let oldest = read_all(&mut idle[0], Duration::from_secs(3)).await;
    assert_eq!(oldest, "", "closed without a word");
    let r = ask(&mut idle[1], HEALTHZ).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

/// Past half of `max_connections` the idle timeout shrinks with the room
/// left (one second when full): the oldest idle connections of a full
/// server go within seconds, not after the configured 35 s, and only
/// until the server is back to half full.
#[tokio::test]
async fn the_idle_timeout_shrinks_as_the_server_fills() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_LIMITS__MAX_CONNECTIONS", "4")
            .env("RAMPART_LIMITS__IDLE_TIMEOUT_SECS", "35"),
    )
    .await;
    let request = HEALTHZ;
    let mut conns = Vec::new();
    for _ in 0..4 {
        let mut tls = tls_stream(&s).await;
        assert!(ask(&mut tls, request)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200"));
        conns.push(tls);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut open = Vec::new();
    for tls in &mut conns {
        let answered = match tls.write_all(request).await {
            Ok(()) => read_response(tls, Duration::from_secs(5)).await.is_some(),
            Err(_) => false,
        };
        open.push(answered);
    }
    assert!(!open[0], "the oldest idle connection was closed: {open:?}");
    assert!(
        open.iter().filter(|o| **o).count() >= 2,
        "closed only down to half full: {open:?}"
    );
}

/// A connection whose requests are all refused is closed after three.
#[tokio::test]
async fn a_connection_that_gets_only_refusals_is_closed() {
    let s = TestServer::start().await;
    let mut tls = tls_stream(&s).await;
    for i in 1..=3 {
        let r = ask(&mut tls, b"GET /.env HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap_or_else(|| panic!("refusal {i} came"));
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        assert_eq!(
            r.to_ascii_lowercase().contains("connection: close"),
            i == 3,
            "refusal {i}: {r}"
        );
    }
    assert_eq!(
        read_all(&mut tls, Duration::from_secs(3)).await,
        "",
        "closed after the third"
    );
    // One success in between starts the count again.
    let mut tls = tls_stream(&s).await;
    for path in ["/.env", "/.env", "/api/v1/healthz", "/.env", "/.env"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let r = ask(&mut tls, request.as_bytes()).await.unwrap();
        assert!(!r.to_ascii_lowercase().contains("connection: close"), "{r}");
    }
}

/// Sends `raw` on a new HTTP/1.1 connection and returns the answer.
async fn raw(s: &TestServer, raw: &[u8]) -> String {
    let mut tls = tls_stream(s).await;
    tls.write_all(raw).await.unwrap();
    read_all(&mut tls, Duration::from_secs(5)).await
}

/// Checks a whole HTTP/1.1 answer is `status` with problem+json `code`.
fn is_problem(answer: &str, status: u16, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status}: {answer}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(v["code"], code, "{body}");
    assert_eq!(v["status"], status, "{body}");
}

#[tokio::test]
async fn the_parsers_refusals_are_problem_json() {
    let s = TestServer::start().await;
    let answer = raw(&s, b"GARBAGE\r\n\r\n").await;
    is_problem(&answer, 400, "malformed_request");
    assert!(!answer.contains("GARBAGE"), "the input is not echoed");
    is_problem(
        &raw(
            &s,
            b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
        )
        .await,
        400,
        "malformed_request",
    );
    // 100 KB of one header, and 500 headers: past hyper's own limits.
    let big = format!(
        "GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "v".repeat(100 * 1024)
    );
    let answer = raw(&s, big.as_bytes()).await;
    is_problem(&answer, 431, "headers_too_large");
    assert!(!answer.contains("vvvvvvvv"), "the input is not echoed");
    let mut many = String::from("GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    is_problem(&raw(&s, many.as_bytes()).await, 431, "headers_too_large");
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    is_problem(&raw(&s, long.as_bytes()).await, 414, "uri_too_long");
    // After a served request on the same connection, too.
    let mut tls = tls_stream(&s).await;
    assert!(ask(&mut tls, HEALTHZ)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    tls.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    is_problem(
        &read_all(&mut tls, Duration::from_secs(5)).await,
        400,
        "malformed_request",
    );
}

#[tokio::test]
async fn a_head_that_misses_its_deadline_gets_408_problem_json() {
    let s =
        TestServer::with(Options::default().env("RAMPART_LIMITS__HEADER_READ_TIMEOUT_SECS", "1"))
            .await;
    let mut tls = tls_stream(&s).await;
    tls.write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_all(&mut tls, Duration::from_secs(5)).await;
    is_problem(&answer, 408, "request_timeout");
    // A new connection that sends nothing is closed without a word.
    let mut silent = tls_stream(&s).await;
    assert_eq!(read_all(&mut silent, Duration::from_secs(5)).await, "");
}

#[tokio::test]
async fn requests_without_exactly_one_host_get_400() {
    let s = TestServer::start().await;
    is_problem(
        &raw(&s, b"GET /api/v1/healthz HTTP/1.1\r\n\r\n").await,
        400,
        "invalid_host",
    );
    is_problem(
        &raw(
            &s,
            b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
        )
        .await,
        400,
        "invalid_host",
    );
    // HTTP/1.0 may leave it out.
    let answer = raw(&s, b"GET /api/v1/healthz HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    // Over HTTP/2 the Host header must agree with :authority.
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&s.running().layout.tls_cert).unwrap())
                .unwrap(),
        )
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(s.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = h2
        .get(s.url("/api/v1/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_host").await;
}
