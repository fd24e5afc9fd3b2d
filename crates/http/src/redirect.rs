//! The plain-HTTP listener. It only ever answers with a redirect to HTTPS,
//! or with the key authorization of an ACME HTTP-01 challenge being
//! validated (public by design, RFC 8555 section 8.3); nothing else is
//! served without TLS.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use rampart_guard::conn::Refusal;

use crate::conns::{drive, Connections};
use crate::guard::Guard;
use crate::idle::{Activity, Clocks, Counted};
use crate::middleware::add_security_headers;
use crate::server::connection_builder;
use crate::state::Limits;
use crate::tls::CertStore;
use crate::wire::Voice;

/// A host name or address safe to put in a Location header.
fn clean_host(host: &str) -> Option<&str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        &host[..end + 2]
    } else {
        host.split(':').next()?
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then_some(host)
}

/// Where ACME's HTTP-01 validations ask (RFC 8555 section 8.3).
const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The answer to an HTTP-01 validation of a token this server offers.
fn challenge_answer(
    req: &http::Request<hyper::body::Incoming>,
    certs: &CertStore,
) -> Option<Response> {
    if req.method() != http::Method::GET {
        return None;
    }
    let token = req.uri().path().strip_prefix(CHALLENGE_PATH)?;
    let key_authorization = certs.http_challenge(token)?;
    let mut res = Response::new(axum::body::Body::from(key_authorization));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    add_security_headers(&mut res);
    Some(res)
}

fn redirect_for(
    req: &http::Request<hyper::body::Incoming>,
    hosts: &[String],
    port: u16,
) -> Response {
    // Only a host this server answers for is kept from the Host header, so
    // the redirect can never point somewhere else.
    let asked = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(clean_host);
    let host = asked
        .and_then(|h| hosts.iter().find(|k| k.eq_ignore_ascii_case(h)))
        .or(hosts.first())
        .map(String::as_str)
        .unwrap_or("localhost");
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    add_security_headers(&mut res);
    res
}

/// Redirects every request to `https://<host>:<https_port>` until shutdown.
/// `hosts` are the names this server answers for; the first is the default.
pub async fn serve_redirect(
    listener: TcpListener,
    hosts: Vec<String>,
    https_port: u16,
    limits: Limits,
    guard: Arc<Guard>,
    certs: Arc<CertStore>,
    shutdown: watch::Receiver<bool>,
) {
    // The same connection table as the HTTPS side: a cap per peer address,
    // idle connections closed first under pressure.
    let conns = Connections::new(limits.conn_policy());
    tokio::spawn(conns.clone().reap(shutdown.clone()));
    let hosts: Arc<[String]> = hosts.into();
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let peer_ip = peer.ip().to_canonical();
        let activity = Activity::new();
        // Behind a load balancer the proxy stands for everyone: not capped.
        let client = (!guard.is_trusted_proxy(peer_ip)).then_some(peer_ip);
        let handle = match conns.admit(client, usize::MAX, &activity) {
            Ok(h) => h,
            Err(Refusal::PerAddress) => {
                guard.refused_connection(peer_ip, "connections.per_address");
                continue; // dropped: closes the socket
            }
            Err(Refusal::Full) => continue,
        };
        let limits = limits.clone();
        let hosts = hosts.clone();
        let certs = certs.clone();
        let shutdown = shutdown.clone();
        activity.ready();
        tokio::spawn(async move {
            let act = activity.clone();
            let svc = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let res = challenge_answer(&req, &certs)
                    .unwrap_or_else(|| redirect_for(&req, &hosts, https_port));
                act.track(async move { Ok::<_, Infallible>(res) })
            });
            let builder = connection_builder(&limits);
            let builder = builder.http1_only();
            let clocks = Clocks {
                head: limits.header_read_timeout,
                idle: limits.idle_timeout,
                heads: true,
            };
            let voice = Voice::new(limits.header_count, limits.header_bytes, Some(peer.ip()));
            let io = TokioIo::new(Counted::http1(tcp, activity.clone(), voice));
            let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
            drive(
                conn,
                handle.closer(),
                &activity,
                clocks,
                limits.shutdown_grace,
                shutdown,
            )
            .await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = conns.emptied() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::clean_host;

    #[test]
    fn hosts_are_cleaned() {
        assert_eq!(clean_host("example.com:8080"), Some("example.com"));
        assert_eq!(clean_host("[::1]:8080"), Some("[::1]"));
        assert_eq!(clean_host("evil.com/x"), None);
        assert_eq!(clean_host("a b"), None);
        assert_eq!(clean_host(""), None);
    }
}
