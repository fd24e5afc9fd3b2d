//! The HTTPS accept loop: the connection table (`conns`: a cap per client
//! address, idle connections closed under pressure), TLS handshake
//! timeout, HTTP/1.1 and HTTP/2 with header limits, a head deadline
//! (slowloris) and a keep-alive idle timeout (see `idle`), the connection's
//! own problem+json answers (`wire`), and graceful shutdown that lets
//! in-flight requests finish (bounded).

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::Router;
use http::{HeaderValue, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rampart_guard::conn::Refusal;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::conns::{drive, Connections};
use crate::error::ApiError;
use crate::guard::Guard;
use crate::idle::{Activity, Clocks, Counted};
use crate::middleware::{add_security_headers, ClientAddr};
use crate::state::Limits;
use crate::wire::Voice;

/// Connections past `max_connections`, when none is idle enough to close
/// for them, still get an answer (503) from this many extra slots, and are
/// closed after it; beyond those they are closed at once.
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

/// Marks a response as the connection's last: HTTP/1 says so in a header
/// (HTTP/2 gets GOAWAY from the graceful shutdown that follows).
pub(crate) fn last_on_connection<B>(res: &mut http::Response<B>, h1: bool) {
    if h1 {
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` turns true.
pub async fn serve_https(
    listener: TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    limits: Limits,
    guard: Arc<Guard>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let conns = Connections::new(limits.conn_policy());
    tokio::spawn(conns.clone().reap(shutdown.clone()));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_SLOTS));
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let peer_ip = peer.ip().to_canonical();
        // A trusted proxy's connections count for the clients its requests
        // name (the guard attributes them); anyone else's for the peer.
        let proxied = guard.is_trusted_proxy(peer_ip);
        let client = (!proxied).then_some(peer_ip);
        // An address the guard refuses anyway (blocked, or outside the
        // allow lists) keeps one connection, for its 403 to be read; more
        // are closed at once.
        let share = if client.is_some() && guard.refuses(peer_ip) {
            1
        } else {
            usize::MAX
        };
        let activity = Activity::new();
        let (handle, overflow_permit) = match conns.admit(client, share, &activity) {
            Ok(h) => (Some(Arc::new(h)), None),
            Err(Refusal::PerAddress) => {
                // Refused at once, before any TLS: the cheapest answer.
                // (A blocked address is not counted again: `failed` knows.)
                guard.refused_connection(peer_ip, "connections.per_address");
                continue;
            }
            Err(Refusal::Full) => match overflow.clone().try_acquire_owned() {
                Ok(p) => (None, Some(p)),
                Err(_) => continue, // dropped: closes the socket
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _overflow = overflow_permit;
            // A handshake stalled past the grace may be chosen to close for
            // a newcomer: the close ends it here, not only after the timeout.
            let closer = handle.clone();
            let closed = async {
                match &closer {
                    Some(h) => h.closer().notified().await,
                    None => std::future::pending().await,
                }
            };
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    _ => return, // bad handshake, plaintext, or too slow
                },
                _ = closed => return,
            };
            drop(closer);
            if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the answer.
                let mut tls = tls;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                return;
            }
            activity.ready();
            // The protocol is the one ALPN agreed, not one guessed from the
            // first bytes: a client that negotiates h2 and then speaks
            // HTTP/1.1 would otherwise escape the head deadline.
            let h1 = tls.get_ref().1.alpn_protocol() != Some(b"h2");
            let builder = connection_builder(&limits);
            let builder = if h1 {
                builder.http1_only()
            } else {
                builder.http2_only()
            };
            let clocks = Clocks {
                head: limits.header_read_timeout,
                idle: limits.idle_timeout,
                heads: h1,
            };
            let io = if h1 {
                let voice = Voice::new(limits.header_count, limits.header_bytes, Some(peer_ip));
                Counted::http1(tls, activity.clone(), voice)
            } else {
                Counted::new(tls, activity.clone())
            };
            let io = TokioIo::new(io);
            let grace = limits.shutdown_grace;
            match handle {
                Some(handle) => {
                    let act = activity.clone();
                    // Requests hold the handle weakly: a stream task that
                    // outlives its connection does not keep its place.
                    let weak = Arc::downgrade(&handle);
                    let svc = router
                        .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(ClientAddr(peer));
                            req.extensions_mut().insert(weak.clone());
                            req
                        })
                        .map_future({
                            let h = handle.clone();
                            move |fut| {
                                let h = h.clone();
                                let fut = act.track(fut);
                                async move {
                                    let mut res = fut.await?;
                                    // A client that gets only refusals is
                                    // not held: it is told, and closed. (Not
                                    // a trusted proxy's connection, which
                                    // carries everyone behind it.)
                                    if !proxied && h.answered(res.status()) {
                                        last_on_connection(&mut res, h1);
                                        h.close();
                                    }
                                    Ok::<_, Infallible>(res)
                                }
                            }
                        });
                    let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
                    drive(conn, handle.closer(), &activity, clocks, grace, shutdown).await;
                }
                None => {
                    // Over the limit with nothing idle to close: one answer
                    // (503), then the connection is closed.
                    let close = Arc::new(Notify::new());
                    let act = activity.clone();
                    let closer = close.clone();
                    let svc =
                        tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                            closer.notify_one();
                            act.track(async move {
                                let mut res = overloaded();
                                last_on_connection(&mut res, h1);
                                Ok::<_, Infallible>(res)
                            })
                        });
                    let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
                    drive(conn, &close, &activity, clocks, grace, shutdown).await;
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = conns.emptied() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}
