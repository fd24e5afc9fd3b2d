//! Requirement 2 (limits) and graceful shutdown.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Sends the start of a head that never ends and checks the server closes
/// the connection before `limit` (reads wait up to 8 s) without serving it.
async fn slow_head_is_cut_off(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
    what: &str,
) {
    tls.write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = read_all(tls, Duration::from_secs(8)).await;
    assert!(started.elapsed() < limit, "{what} kept open");
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let s = TestServer::start().await;
    let mut req = s.client.get(s.url("/api/v1/healthz"));
    for i in 0..80 {
        req = req.header(format!("x-h{i}"), "v");
    }
    problem(req.send().await.unwrap(), 431, "headers_too_large").await;
    let r = s
        .client
        .get(s.url("/api/v1/healthz"))
        .header("x-big", "v".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let s =
        TestServer::with(Options::default().env("RAMPART_LIMITS__HEADER_READ_TIMEOUT_SECS", "1"))
            .await;
    let mut tls = tls_stream(&s).await;
    slow_head_is_cut_off(&mut tls, Duration::from_secs(8), "slowloris connection").await;
}

/// The head deadline times heads, not the wait between requests: a
/// keep-alive connection quiet for longer than it still serves the next
/// request (closing it would race the client's reuse of it), while a slow
/// second head on the same connection is still cut off.
#[tokio::test]
async fn keep_alive_outlives_the_head_deadline_but_not_a_slow_head() {
    let s =
        TestServer::with(Options::default().env("RAMPART_LIMITS__HEADER_READ_TIMEOUT_SECS", "1"))
            .await;
    let mut tls = tls_stream(&s).await;
    let get = b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..2 {
        tls.write_all(get).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    slow_head_is_cut_off(
        &mut tls,
        Duration::from_secs(8),
        "slow head on a keep-alive connection",
    )
    .await;
}

/// The protocol is the one ALPN agreed: a client that negotiates h2 and
/// then sends an HTTP/1.1 head (which has a deadline; HTTP/2 has none) is
/// not served, and the connection is closed at once.
#[tokio::test]
async fn the_protocol_is_the_one_alpn_agreed() {
    let s = TestServer::start().await;
    let mut tls = tls_stream_alpn(&s, b"h2").await;
    slow_head_is_cut_off(&mut tls, Duration::from_secs(5), "an HTTP/1.1 head over h2").await;
}

#[tokio::test]
async fn slow_bodies_get_408() {
    let s =
        TestServer::with(Options::default().env("RAMPART_LIMITS__REQUEST_TIMEOUT_SECS", "1")).await;
    let mut tls = tls_stream(&s).await;
    tls.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let answer = read_all(&mut tls, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"));
    assert!(answer.contains("\"code\":\"request_timeout\""));
}

/// Slow uploads from one address hold at most eight of the body slots:
/// the ninth is refused at once, another address is still served, and the
/// turns come back when the uploads end.
#[tokio::test]
async fn one_address_cannot_hold_every_body_slot() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_GUARD__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env("RAMPART_LIMITS__REQUEST_TIMEOUT_SECS", "20"),
    )
    .await;
    let post = |ip: &'static str| {
        s.client
            .post(s.url("/api/v1/collections/notes/records"))
            .header("x-forwarded-for", ip)
            .json(&json!({"data": {"title": "hello"}}))
            .send()
    };
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut tls = tls_stream(&s).await;
        tls.write_all(
            b"POST /api/v1/collections/notes/records HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.20\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":",
        )
        .await
        .unwrap();
        slow.push(tls);
    }
    let started = std::time::Instant::now();
    let refused = loop {
        let r = post("198.51.100.20").await.unwrap();
        if r.status() == 429 {
            break r;
        }
        assert_eq!(r.status(), 401, "served while turns were free");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a ninth upload was never refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    problem(refused, 429, "rate_limited").await;
    assert_eq!(post("198.51.100.21").await.unwrap().status(), 401);
    drop(slow);
    while post("198.51.100.20").await.unwrap().status() == 429 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "turns never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut s = TestServer::start().await;
    s.register("sd@example.com").await;
    // A request whose body arrives slowly is in flight when shutdown starts.
    let body = serde_json::to_vec(&json!({"email": "sd@example.com", "password": STRONG})).unwrap();
    let (first, rest) = body.split_at(5);
    let (first, rest) = (
        bytes::Bytes::copy_from_slice(first),
        bytes::Bytes::copy_from_slice(rest),
    );
    let stream = futures_util::stream::unfold(0, move |i| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            match i {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    Some((Ok(rest), 2))
                }
                _ => None,
            }
        }
    });
    let req = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(req);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = s.port();
    s.stop().await;
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "in-flight request completed");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn silent_connections_are_closed_whatever_the_protocol() {
    // The idle timeout is at least request timeout + 5 s.
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_LIMITS__REQUEST_TIMEOUT_SECS", "1")
            .env("RAMPART_LIMITS__IDLE_TIMEOUT_SECS", "1")
            .env("RAMPART_LIMITS__HEADER_READ_TIMEOUT_SECS", "30"),
    )
    .await;
    // TLS done, then nothing at all: not even enough for hyper to pick a protocol.
    let mut tls = tls_stream(&s).await;
    let started = std::time::Instant::now();
    let answer = read_all(&mut tls, Duration::from_secs(20)).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "idle connection kept {waited:?}"
    );
    assert!(
        waited >= Duration::from_secs(5),
        "closed too early: {waited:?}"
    );
    assert!(answer.is_empty(), "{answer}");
    // The HTTP/2 preface and then silence: closed too.
    let mut tls = tls_stream_alpn(&s, b"h2").await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let _ = read_all(&mut tls, Duration::from_secs(20)).await;
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn http2_pings_do_not_keep_an_idle_connection_alive() {
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_LIMITS__REQUEST_TIMEOUT_SECS", "1")
            .env("RAMPART_LIMITS__IDLE_TIMEOUT_SECS", "1"),
    )
    .await;
    let tls = tls_stream_alpn(&s, b"h2").await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    // Preface and an empty SETTINGS frame, then a PING every 500 ms.
    wr.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let pinger = tokio::spawn(async move {
        for _ in 0..60 {
            let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
            if wr.write_all(&ping).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut pongs = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(25), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => pongs += 1,
        }
    }
    pinger.abort();
    assert!(pongs > 0, "the server answered PINGs");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "PINGs kept an idle connection for {waited:?}"
    );
}
