//! The frame around every request: request id, header limits, body size
//! pre-check, request timeout, panic containment, security headers, and one
//! structured log line. Nothing here logs headers, bodies or query strings.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http::{header, HeaderName, HeaderValue, StatusCode};

use crate::error::ApiError;
use crate::state::AppState;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, when called inside one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Request ids without a system call each: a ChaCha12 generator
/// (`rand`'s `StdRng`, a CSPRNG) seeded once from the injected entropy.
/// Ids are unpredictable, so one id tells nothing of the next, nor how
/// many requests came between. An id names a request for support and in
/// the trail; it grants nothing.
#[derive(Debug)]
pub struct RequestIds {
    rng: std::sync::Mutex<rand::rngs::StdRng>,
}

impl RequestIds {
    pub fn new(entropy: &dyn rampart_crypto::Entropy) -> Self {
        use rand::SeedableRng;
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed);
        Self {
            rng: std::sync::Mutex::new(rand::rngs::StdRng::from_seed(seed)),
        }
    }

    /// The next id: 16 lowercase hex digits.
    pub fn next(&self) -> String {
        use rand::RngCore;
        let n = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64();
        format!("{n:016x}")
    }
}

/// The TCP peer of the connection, put on every request by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Facts about the request that handlers and the event trail need.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `Sec-Fetch-Site: cross-site`: a browser sent it for another site's
    /// page (browsers set this header; pages cannot).
    pub cross_site: bool,
    /// The drill the request belongs to (a valid `Rampart-Drill` token).
    pub drill: Option<String>,
}

impl RequestContext {
    /// The request's origin facts, for an event.
    pub fn meta(&self) -> rampart_core::RequestMeta {
        rampart_core::RequestMeta {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: Some(self.request_id.clone()),
            cross_site: self.cross_site,
            drill: self.drill.clone(),
        }
    }
}

pub(crate) const SECURITY_HEADERS: [(&str, &str); 6] = [
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

/// The token that marks a drill's requests (`rampart drill`; ADR 0014).
pub const DRILL_HEADER: &str = "rampart-drill";

/// On every response while the deployment is locked down (ADR 0014).
pub const LOCKDOWN_HEADER: &str = "rampart-lockdown";

/// Adds the headers every response carries. `no-store` goes on every
/// response: the API has nothing worth caching and much worth not caching.
pub fn add_security_headers(res: &mut Response) {
    // A console page (marked by `http::console`) gets the pages' policy;
    // every other answer the API's, whatever a handler set.
    let page = res.extensions().get::<crate::console::Page>().is_some();
    let h = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        let value = if page && name == "content-security-policy" {
            crate::console::PAGE_POLICY
        } else {
            value
        };
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h.remove(header::SERVER);
}

pub async fn frame(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = state.request_ids.next();
    // The client: the TCP peer, or, behind a trusted proxy, what the
    // proxy says (never what an untrusted peer says).
    let ip = req.extensions().get::<ClientAddr>().map(|c| {
        state
            .guard
            .client_address(c.0.ip(), req.headers())
            .to_string()
    });
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    // Drills run on the server itself: a token from anywhere else marks
    // nothing.
    let from_loopback = ip
        .as_deref()
        .and_then(|i| i.parse::<std::net::IpAddr>().ok())
        .is_some_and(|i| i.is_loopback());
    let drill = req
        .headers()
        .get(DRILL_HEADER)
        .filter(|_| from_loopback)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| state.guard.drill_of(t));
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        ip: ip.clone(),
        user_agent,
        cross_site,
        drill,
    });
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let limits = state.settings.limits.clone();

    let res = REQUEST_ID
        .scope(request_id.clone(), async move {
            if let Some(problem) = check_headers(&req, &limits).or_else(|| check_host(&req)) {
                return problem.into_response();
            }
            if let Some(len) = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                if len > limits.body_bytes as u64 {
                    return too_large(limits.body_bytes).into_response();
                }
            }
            let run = AssertUnwindSafe(next.run(req)).catch_unwind();
            match tokio::time::timeout(limits.request_timeout, run).await {
                Ok(Ok(res)) => res,
                Ok(Err(_panic)) => ApiError::internal("handler panicked").into_response(),
                Err(_) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "Request timeout",
                    "The request took too long to arrive or to handle.",
                )
                .into_response(),
            }
        })
        .await;
    let mut res = res;
    add_security_headers(&mut res);
    if state.guard.locked_down() {
        res.headers_mut().insert(
            HeaderName::from_static(LOCKDOWN_HEADER),
            HeaderValue::from_static("active"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    state
        .metrics
        .observe(&path, res.status().as_u16(), started.elapsed());
    tracing::info!(
        request_id = %request_id,
        ip = ip.as_deref().unwrap_or("-"),
        method = %method,
        path = %path,
        status = res.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    res
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "Request body too large",
        format!("The request body may be at most {limit} bytes."),
    )
}

fn check_headers(req: &Request, limits: &crate::state::Limits) -> Option<ApiError> {
    let headers = req.headers();
    let total: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > limits.header_count || total > limits.header_bytes {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "Request headers too large",
            format!(
                "Send at most {} headers and {} bytes of headers.",
                limits.header_count, limits.header_bytes
            ),
        ));
    }
    None
}

/// RFC 9112 section 3.2: an HTTP/1.1 request has exactly one `Host`
/// (HTTP/1.0 may have none); RFC 9113 section 8.3.1: over HTTP/2 a `Host`
/// beside `:authority` must name the same.
fn check_host(req: &Request) -> Option<ApiError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    let problem = if hosts.next().is_some() {
        "Send exactly one Host header."
    } else {
        match (req.version(), first) {
            (http::Version::HTTP_11, None) => "An HTTP/1.1 request must have a Host header.",
            (http::Version::HTTP_2, Some(host)) => match req.uri().authority() {
                Some(a) if !a.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) => {
                    "The Host header must name the same host as :authority."
                }
                _ => return None,
            },
            _ => return None,
        }
    };
    Some(ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_host",
        "Invalid Host header",
        problem,
    ))
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    struct Fixed;
    impl rampart_crypto::Entropy for Fixed {
        fn fill(&self, dest: &mut [u8]) {
            dest.fill(7);
        }
    }

    #[test]
    fn request_ids_are_distinct_hex_and_unpredictable_neighbours() {
        let ids = RequestIds::new(&Fixed);
        let all: Vec<String> = (0..10_000).map(|_| ids.next()).collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "every id distinct");
        assert!(all.iter().all(|i| i.len() == 16
            && i.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
        // Neighbouring requests differ in many digits, not the last one.
        let same = all[0]
            .bytes()
            .zip(all[1].bytes())
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 8, "{} {}", all[0], all[1]);
        // The start comes from the injected entropy: the same source, the same ids.
        assert_eq!(RequestIds::new(&Fixed).next(), all[0]);
    }
}
