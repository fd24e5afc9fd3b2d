//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::AuthService;
use rampart_guard::conn::ConnPolicy;

/// Resource limits. Each has a safe default and is configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    pub body_bytes: usize,
    pub header_bytes: usize,
    pub header_count: usize,
    /// A request head must be complete this long after its first byte, and
    /// a new connection must start its first request within it.
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    /// Kept above `request_timeout` so a slow handler is not cut off.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold at once.
    pub max_connections_per_address: usize,
    pub tls_handshake_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            header_bytes: 16 * 1024,
            header_count: 64,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_address: ConnPolicy::default_per_address(1024),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The connection table's limits: the idle timeout falls toward a
    /// second as the server fills.
    pub fn conn_policy(&self) -> ConnPolicy {
        ConnPolicy {
            max: self.max_connections,
            per_address: self.max_connections_per_address,
            idle: self.idle_timeout,
            idle_floor: self.idle_timeout.min(Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub limits: Limits,
    /// Origins whose `Origin` header is proof enough against CSRF for
    /// cookie-authenticated writes, e.g. `https://app.example.com`.
    pub allowed_origins: Vec<String>,
    /// Max-Age of the session cookie, the session's absolute lifetime.
    pub session_cookie_max_age: Duration,
    /// `[backup] schedule`, when `serve` takes backups on a schedule.
    pub backup_schedule: Option<String>,
    /// The response plan (`rampart incident plan init` writes it).
    pub incident_plan: std::path::PathBuf,
    /// The settings in force, as text, with every secret redacted
    /// (`GET /api/v1/admin/settings`; the console's Settings page).
    pub effective: String,
}

/// What every handler reaches. axum clones the state for each extractor
/// and middleware of every request, so it is one `Arc` (one count to
/// move) rather than a struct of them (profiled: about 3% of a `GET /me`
/// went to cloning and dropping seven).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub auth: Arc<AuthService>,
    pub data: Arc<rampart_core::data::DataService>,
    /// Lockdowns (ADR 0014).
    pub incidents: Arc<rampart_core::incident::Incidents>,
    pub settings: Arc<HttpSettings>,
    /// Address rules, blocks, rate limits and inspection (`guard`).
    pub guard: Arc<crate::guard::Guard>,
    /// What `/metrics` reports of requests.
    pub metrics: Arc<crate::metrics::HttpMetrics>,
    pub request_ids: crate::middleware::RequestIds,
    /// The certificate in service (reloaded on change, renewed by ACME).
    pub certs: Arc<crate::tls::CertStore>,
}
