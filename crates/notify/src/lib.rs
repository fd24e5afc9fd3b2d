//! Delivery of messages to account owners: the implementations of
//! [`rampart_core::notify::Notifier`].
//!
//! - [`SmtpNotifier`]: email through an SMTP relay (lettre, TLS only:
//!   implicit TLS or STARTTLS, never plaintext).
//! - [`WebhookNotifier`]: SMS through an HTTPS webhook that an SMS gateway
//!   (or a small adapter in front of one) receives: a JSON body
//!   `{"to", "message"}` signed with HMAC-SHA256 in `X-Rampart-Signature`.
//! - [`FileNotifier`]: development mode; messages are appended to a file
//!   in the data directory instead of being delivered.
//! - [`Delivery`]: routes each channel to its notifier.
//! - [`stream`]: the audit trail shipped live to syslog and HTTP receivers.

pub mod alert;
pub mod stream;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rampart_core::notify::{Channel, Message, Notifier, NotifyError};
use rampart_core::Clock;
use rampart_crypto::SecretString;
use sha2::Sha256;

/// The header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "x-rampart-signature";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> SetupError {
    SetupError::Invalid(s.into())
}

fn read_ca(path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
}

/// How the SMTP connection is secured. There is no plaintext option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    Starttls,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The sender, e.g. `Rampart <security@example.com>`.
    pub from: String,
    /// Extra CA certificate (PEM) to trust, for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
}

/// Email over SMTP with TLS.
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    pub fn new(config: &SmtpConfig) -> Result<Self, SetupError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| invalid("smtp.from is not an email address"))?;
        let mut tls = TlsParameters::builder(config.host.clone());
        if let Some(ca) = &config.ca_file {
            let cert = Certificate::from_pem(&read_ca(ca)?)
                .map_err(|_| invalid("smtp.ca_file is not a PEM certificate"))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| invalid(format!("smtp TLS: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(TIMEOUT))
            .tls(match config.security {
                SmtpSecurity::Tls => Tls::Wrapper(tls),
                SmtpSecurity::Starttls => Tls::Required(tls),
            });
        match (&config.username, &config.password) {
            (Some(user), Some(pass)) => {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    pass.expose_secret().to_owned(),
                ));
            }
            (None, None) => {}
            _ => return Err(invalid("smtp: set both username and password, or neither")),
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Email
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        if message.channel != Channel::Email {
            return Err(NotifyError::Unavailable("sms"));
        }
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|_| NotifyError::Failed("recipient is not an email address".to_owned()))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .body(message.body.expose_secret().to_owned())
            .map_err(|e| NotifyError::Failed(format!("building the email: {e}")))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| NotifyError::Failed(format!("smtp: {e}")))
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Must be `https://`.
    pub url: String,
    /// The HMAC-SHA256 key the receiver checks signatures with.
    pub secret: SecretString,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
}

/// SMS through a signed HTTPS webhook.
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: url::Url,
    secret: SecretString,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct WebhookBody<'a> {
    to: &'a str,
    message: &'a str,
}

/// The signature header's value for a body sent at `unix_secs`:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The receiver
/// recomputes it, compares in constant time and refuses old timestamps.
pub fn sign(secret: &SecretString, unix_secs: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl WebhookNotifier {
    pub fn new(config: &WebhookConfig, clock: Arc<dyn Clock>) -> Result<Self, SetupError> {
        let url =
            url::Url::parse(&config.url).map_err(|_| invalid("sms_webhook.url is not a URL"))?;
        if url.scheme() != "https" {
            return Err(invalid(
                "sms_webhook.url must be https:// (codes must not cross the network in clear)",
            ));
        }
        if config.secret.expose_secret().len() < 32 {
            return Err(invalid(
                "sms_webhook.secret must be at least 32 characters (use `openssl rand -hex 32`)",
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.ca_file {
            let cert = reqwest::Certificate::from_pem(&read_ca(ca)?)
                .map_err(|_| invalid("sms_webhook.ca_file is not a PEM certificate"))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Self {
            client: builder
                .build()
                .map_err(|e| invalid(format!("sms webhook client: {e}")))?,
            url,
            secret: config.secret.clone(),
            clock,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        if message.channel != Channel::Sms {
            return Err(NotifyError::Unavailable("email"));
        }
        let body = serde_json::to_vec(&WebhookBody {
            to: &message.to,
            message: message.body.expose_secret(),
        })
        .map_err(|e| NotifyError::Failed(format!("encoding: {e}")))?;
        let signature = sign(&self.secret, self.clock.now().millis() / 1000, &body);
        let res = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            // Without the URL: it may carry a gateway credential.
            .map_err(|e| NotifyError::Failed(format!("sms webhook: {}", e.without_url())))?;
        if !res.status().is_success() {
            return Err(NotifyError::Failed(format!(
                "sms webhook answered {}",
                res.status().as_u16()
            )));
        }
        Ok(())
    }
}

/// Development mode: every message is appended, as one JSON line, to a
/// file only the owner can read. Nothing is delivered.
#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileNotifier {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Notifier for FileNotifier {
    fn supports(&self, _: Channel) -> bool {
        true
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let line = serde_json::json!({
            "channel": message.channel.as_str(),
            "to": message.to,
            "subject": message.subject,
            "body": message.body.expose_secret(),
        })
        .to_string();
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            writeln!(f, "{line}")
        })
        .await
        .map_err(|e| NotifyError::Failed(e.to_string()))?
        .map_err(|e| NotifyError::Failed(format!("outbox file: {e}")))
    }
}

/// Routes each channel to the notifier configured for it.
#[derive(Default)]
pub struct Delivery {
    pub email: Option<Arc<dyn Notifier>>,
    pub sms: Option<Arc<dyn Notifier>>,
}

impl Delivery {
    fn route(&self, channel: Channel) -> Option<&Arc<dyn Notifier>> {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Sms => self.sms.as_ref(),
        }
    }
}

#[async_trait]
impl Notifier for Delivery {
    fn supports(&self, channel: Channel) -> bool {
        self.route(channel).is_some_and(|n| n.supports(channel))
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        match self.route(message.channel) {
            Some(n) => n.send(message).await,
            None => Err(NotifyError::Unavailable(message.channel.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_time_and_body() {
        let k = SecretString::from("k".repeat(32));
        let a = sign(&k, 1_700_000_000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_ne!(a, sign(&k, 1_700_000_001, b"{}"));
        assert_ne!(a, sign(&k, 1_700_000_000, b"{ }"));
        assert_ne!(
            a,
            sign(&SecretString::from("j".repeat(32)), 1_700_000_000, b"{}")
        );
    }

    #[test]
    fn webhooks_must_be_https_with_a_real_secret() {
        let clock: Arc<dyn Clock> = Arc::new(rampart_core::SystemClock);
        let cfg = |url: &str, secret: &str| WebhookConfig {
            url: url.to_owned(),
            secret: SecretString::from(secret),
            ca_file: None,
        };
        let long = "s".repeat(32);
        assert!(WebhookNotifier::new(&cfg("http://127.0.0.1/x", &long), clock.clone()).is_err());
        assert!(WebhookNotifier::new(&cfg("https://127.0.0.1/x", "short"), clock.clone()).is_err());
        assert!(WebhookNotifier::new(&cfg("https://127.0.0.1/x", &long), clock).is_ok());
    }
}
