//! Live shipping of the audit trail to the tools people already run:
//! syslog over TCP or TLS (RFC 5424 lines, RFC 6587 octet counting) and
//! HTTP(S) endpoints taking NDJSON batches of ECS documents (Vector,
//! Logstash, Fluent Bit, Wazuh's and Elastic's agents).
//!
//! Each stream keeps a cursor per chain in the database, advanced only
//! after a batch was delivered (an HTTP 2xx; for syslog, written and
//! flushed), so an outage of the receiver or a restart of Rampart loses
//! nothing: shipping resumes at the cursor, with backoff between tries.
//! Delivery is at least once: a batch whose answer was lost is sent again.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::audit::format::{ecs_line, octet_counted, syslog_line};
use rampart_core::audit::{AuditStore, Chained};
use rampart_crypto::SecretString;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Where a stream goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `tcp://host:port` or `tls://host:port`.
    Syslog { host: String, port: u16, tls: bool },
    /// `https://…`, or `http://` to a loopback address.
    Http { url: url::Url },
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Names the stream's cursor; renaming a stream starts it over.
    pub name: String,
    pub target: Target,
    /// PEM CA certificates to trust (besides the public roots).
    pub ca_pem: Option<Vec<u8>>,
    /// HTTP only: sent as `Authorization: Bearer …`.
    pub token: Option<SecretString>,
    /// Events per batch.
    pub batch: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Invalid(String),
}

/// Parses a stream's URL.
/// Errors name the URL by scheme, host and port only: never what else it
/// holds (a password someone put in it).
pub fn target(raw: &str) -> Result<Target, StreamError> {
    let u = url::Url::parse(raw).map_err(|_| {
        StreamError::Invalid("the URL is not one (e.g. tls://siem.internal:6514)".into())
    })?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(StreamError::Invalid(
            "put no credentials in a stream URL: use token_file".into(),
        ));
    }
    let url = format!(
        "{}://{}{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let host = u
        .host_str()
        .ok_or_else(|| StreamError::Invalid(format!("`{url}` names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "tcp" if !loopback => Err(StreamError::Invalid(format!(
            "`{url}`: events leave the machine only encrypted: use tls:// for syslog"
        ))),
        "tcp" | "tls" => Ok(Target::Syslog {
            port: u.port().ok_or_else(|| {
                StreamError::Invalid(format!("`{url}`: give the port (syslog: 514, TLS: 6514)"))
            })?,
            tls: u.scheme() == "tls",
            host,
        }),
        "https" => Ok(Target::Http { url: u }),
        "http" => {
            if loopback {
                Ok(Target::Http { url: u })
            } else {
                Err(StreamError::Invalid(format!(
                    "`{url}`: events leave the machine only encrypted: use https://, or tls:// for syslog"
                )))
            }
        }
        s => Err(StreamError::Invalid(format!(
            "`{url}`: the scheme must be tls://, tcp://, https:// or http:// (loopback), not {s}://"
        ))),
    }
}

/// What a stream reports about itself (for metrics and the log).
#[derive(Debug, Default)]
pub struct StreamState {
    pub shipped: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    /// Events that will never be shipped: skipped by a cursor moved
    /// forward outside Rampart, or removed (retention) before shipping.
    pub skipped: std::sync::atomic::AtomicU64,
}

const IDLE: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type Conn = Box<dyn tokio::io::AsyncWrite + Send + Sync + Unpin>;

struct Shipper {
    config: StreamConfig,
    http: Option<reqwest::Client>,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Conn>,
}

impl Shipper {
    fn new(config: StreamConfig) -> Result<Self, StreamError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut extra = Vec::new();
        if let Some(pem) = &config.ca_pem {
            use rustls::pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|_| StreamError::Invalid("ca_file is not PEM".into()))?;
                roots
                    .add(c.clone())
                    .map_err(|_| StreamError::Invalid("ca_file holds a bad certificate".into()))?;
                extra.push(c);
            }
        }
        let (http, tls) = match &config.target {
            Target::Http { .. } => {
                let mut b = reqwest::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .redirect(reqwest::redirect::Policy::none());
                for c in &extra {
                    let cert = reqwest::Certificate::from_der(c).map_err(|_| {
                        StreamError::Invalid("ca_file holds a bad certificate".into())
                    })?;
                    b = b.add_root_certificate(cert);
                }
                (
                    Some(
                        b.build()
                            .map_err(|e| StreamError::Invalid(format!("HTTP client: {e}")))?,
                    ),
                    None,
                )
            }
            Target::Syslog { tls: true, .. } => {
                let c = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| StreamError::Invalid(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                (None, Some(tokio_rustls::TlsConnector::from(Arc::new(c))))
            }
            Target::Syslog { .. } => (None, None),
        };
        Ok(Self {
            config,
            http,
            tls,
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let Target::Syslog { host, port, .. } = &self.config.target else {
            return Err("not a syslog stream".into());
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host.as_str(), *port)),
        )
        .await
        .map_err(|_| "connection timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| format!("`{host}` is not a TLS server name"))?;
                let s = tokio::time::timeout(Duration::from_secs(10), tls.connect(name, tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(Box::new(s))
            }
        }
    }

    /// Delivers one batch; `Err` leaves the cursor where it was.
    async fn send(&mut self, events: &[Chained]) -> Result<(), String> {
        match self.config.target.clone() {
            Target::Http { url } => {
                let mut body = String::new();
                for e in events {
                    body.push_str(&ecs_line(e));
                    body.push('\n');
                }
                let mut req = self
                    .http
                    .as_ref()
                    .ok_or("no HTTP client")?
                    .post(url)
                    .header("content-type", "application/x-ndjson")
                    .body(body);
                if let Some(t) = &self.config.token {
                    req = req.bearer_auth(t.expose_secret());
                }
                let r = req.send().await.map_err(|e| e.without_url().to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the receiver answered {}", r.status()))
                }
            }
            Target::Syslog { .. } => {
                let mut frames = String::new();
                for e in events {
                    frames.push_str(&octet_counted(&syslog_line(e)));
                }
                if self.conn.is_none() {
                    self.conn = Some(self.connect().await?);
                }
                let conn = self.conn.as_mut().ok_or("no connection")?;
                let sent = async {
                    conn.write_all(frames.as_bytes()).await?;
                    conn.flush().await
                };
                match tokio::time::timeout(Duration::from_secs(15), sent).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        self.conn = None;
                        Err(e.to_string())
                    }
                    Err(_) => {
                        self.conn = None;
                        Err("the receiver stopped reading".into())
                    }
                }
            }
        }
    }
}

/// Checks a stream's settings without starting it.
pub fn check(config: &StreamConfig) -> Result<(), StreamError> {
    Shipper::new(config.clone()).map(|_| ())
}

/// Ships the chains `chains` until `stop` turns true.
pub async fn run(
    store: Arc<dyn AuditStore>,
    config: StreamConfig,
    chains: Vec<String>,
    state: Arc<StreamState>,
    mut stop: watch::Receiver<bool>,
) {
    let name = config.name.clone();
    let batch = config.batch.clamp(1, 5_000);
    let mut shipper = match Shipper::new(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(stream = %name, error = %e, "audit stream not started");
            return;
        }
    };
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    // Where this process last left each chain: a stored cursor beyond it
    // was moved by someone else.
    let mut shipped_to: std::collections::HashMap<String, u64> = Default::default();
    loop {
        let mut shipped_any = false;
        let mut failed = false;
        for chain in &chains {
            let next = match store.stream_cursor(&name, chain).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "stream cursor unreadable");
                    failed = true;
                    break;
                }
            };
            let events = match store.audit_range(chain, next, batch).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "events unreadable");
                    failed = true;
                    break;
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                continue;
            };
            // Nothing may go unshipped unnoticed: a gap before this batch
            // (or inside it) is said loudly, and counted.
            let expected_from = shipped_to.get(chain).copied().unwrap_or(next).min(next);
            let mut gap = events[0].seq.saturating_sub(expected_from);
            gap += events
                .windows(2)
                .map(|w| w[1].seq.saturating_sub(w[0].seq + 1))
                .sum::<u64>();
            if gap > 0 {
                state
                    .skipped
                    .fetch_add(gap, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(stream = %name, chain = %chain, events = gap, from = expected_from, "audit events will never reach this stream: its cursor was moved or they were removed first");
            }
            match shipper.send(&events).await {
                Ok(()) => {
                    if let Err(e) = store.set_stream_cursor(&name, chain, last + 1).await {
                        tracing::warn!(stream = %name, error = %e, "stream cursor not saved; the batch will be sent again");
                        failed = true;
                        break;
                    }
                    shipped_to.insert(chain.clone(), last + 1);
                    state
                        .shipped
                        .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    shipped_any = true;
                    if failing {
                        tracing::info!(stream = %name, "audit stream delivering again");
                        failing = false;
                    }
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    state
                        .failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(stream = %name, error = %e, "audit stream cannot deliver; retrying with backoff, nothing is lost");
                        failing = true;
                    }
                    failed = true;
                    break;
                }
            }
        }
        let wait = if failed {
            let w = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            w
        } else if shipped_any {
            Duration::ZERO
        } else {
            IDLE
        };
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Posts every new checkpoint (a JSON witness line) to `url`, a witness
/// outside this machine: each supersedes the ones before, so one lost to
/// an outage is covered by the next.
pub async fn post_checkpoints(
    url: url::Url,
    ca_pem: Option<Vec<u8>>,
    mut checkpoints: watch::Receiver<Option<rampart_core::audit::CheckpointRow>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &ca_pem {
        match reqwest::Certificate::from_pem(pem) {
            Ok(c) => b = b.add_root_certificate(c),
            Err(_) => tracing::error!("witness_ca_file is not a PEM certificate"),
        }
    }
    let Ok(client) = b.build() else {
        tracing::error!("the remote witness client could not be built");
        return;
    };
    let mut failing = false;
    loop {
        tokio::select! {
            changed = checkpoints.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(c) = checkpoints.borrow_and_update().clone() else {
            continue;
        };
        let line = serde_json::json!({"node": c.node, "size": c.size, "at": c.at.millis(), "note": c.note});
        let sent = client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(line.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                if failing {
                    tracing::info!("the remote witness takes checkpoints again");
                    failing = false;
                }
            }
            Ok(r) => {
                if !failing {
                    tracing::warn!(status = %r.status(), "the remote witness refused a checkpoint; the next one covers it");
                    failing = true;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e.without_url(), "the remote witness is unreachable; the next checkpoint covers this one");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_are_checked() {
        assert!(matches!(
            target("tls://siem.example.com:6514").unwrap(),
            Target::Syslog {
                tls: true,
                port: 6514,
                ..
            }
        ));
        assert!(matches!(
            target("http://127.0.0.1:9000/").unwrap(),
            Target::Http { .. }
        ));
        assert!(
            target("http://siem.example.com/").is_err(),
            "clear text off the machine"
        );
        assert!(target("tcp://127.0.0.1").is_err(), "no port");
        assert!(
            target("tcp://siem.example.com:514").is_err(),
            "clear text off the machine"
        );
        assert!(target("tcp://127.0.0.1:514").is_ok());
        assert!(target("https://user:pw@siem.example.com/").is_err());
        assert!(target("ftp://x:1/").is_err());
    }
}
