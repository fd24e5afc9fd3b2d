//! The HTTPS accept loop: connection limit, TLS handshake timeout, HTTP/1.1
//! and HTTP/2 with header limits, a head deadline (slowloris) and a
//! keep-alive idle timeout (see `idle`), and graceful shutdown that lets
//! in-flight requests finish (bounded).

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::Router;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::idle::{Activity, Clocks, Counted};
use crate::middleware::{add_security_headers, ClientAddr};
use crate::state::Limits;

/// Connections past `max_connections` still get an answer (503) from this
/// many extra slots; beyond those they are closed at once.
const OVERFLOW_SLOTS: usize = 64;

pub(crate) fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits sit above ours, so that a request just over our
    // limit reaches the middleware and gets a problem+json 431.
    b.http1()
        .timer(TokioTimer::new())
        // The watchdog in `idle` enforces the head deadline and the idle
        // timeout; hyper's timeout also runs between requests, so it is
        // only a backstop above both.
        .header_read_timeout(limits.header_read_timeout + limits.idle_timeout)
        // Flatten head and body into one buffer: one TLS record and one
        // syscall per small response instead of two.
        .writev(false)
        .max_buf_size((limits.header_bytes * 2).max(16 * 1024) + limits.body_bytes.min(64 * 1024))
        .max_headers(limits.header_count * 2);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size((limits.header_bytes * 2) as u32)
        .max_concurrent_streams(128);
    b
}

fn overloaded() -> axum::response::Response {
    let mut res = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "Too many connections",
        "The server is at its connection limit; retry shortly.",
    )
    .with_retry_after(1)
    .into_response();
    add_security_headers(&mut res);
    res
}

/// Serves `router` over TLS on `listener` until `shutdown` turns true.
pub async fn serve_https(
    listener: TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_SLOTS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (permit, over_limit) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match overflow.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => continue, // dropped: closes the socket
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let limits = limits.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(s)) => s,
                _ => return, // bad handshake, plaintext, or too slow
            };
            // The protocol is the one ALPN agreed, not one guessed from the
            // first bytes: a client that negotiates h2 and then speaks
            // HTTP/1.1 would otherwise escape the head deadline.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = connection_builder(&limits);
            let builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let activity = Activity::new();
            let clocks = Clocks {
                head: limits.header_read_timeout,
                idle: limits.idle_timeout,
                heads: !h2,
            };
            let io = TokioIo::new(Counted::new(tls, activity.clone()));
            // Dropping the connection future closes the socket.
            if over_limit {
                let act = activity.clone();
                let svc = tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    act.track(async { Ok::<_, Infallible>(overloaded()) })
                });
                let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
                tokio::select! {
                    _ = watcher.watch(conn.into_owned()) => {}
                    _ = activity.expired(clocks) => {}
                }
            } else {
                let act = activity.clone();
                let svc = router
                    .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ClientAddr(peer));
                        req
                    })
                    .map_future(move |fut| act.track(fut));
                let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
                tokio::select! {
                    _ = watcher.watch(conn.into_owned()) => {}
                    _ = activity.expired(clocks) => {}
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}
