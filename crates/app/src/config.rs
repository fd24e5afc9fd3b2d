//! Settings: defaults, then `rampart.toml`, then `RAMPART_*` environment
//! variables, then command-line flags. Parsed once into [`Settings`] and
//! passed down; nothing reads configuration globally.
//!
//! Unknown keys are errors that name the key. Nested keys come from the
//! environment with a double underscore: `RAMPART_LIMITS__BODY_BYTES=2048`.
//! Every secret setting also has a `_file` form (`database_url_file`,
//! `RAMPART_DATABASE_URL_FILE`) that reads the value from a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rampart_core::mfa::{Method, MfaPolicy, Requirement};
use rampart_core::password_policy::PolicyPreset;
use rampart_core::{BruteForcePolicy, RegistrationMode};
use rampart_crypto::{Argon2Params, SecretString};
use rampart_http::tls::TlsMinVersion;
use rampart_notify::SmtpSecurity;
use serde::Deserialize;

/// Secret settings: each may be given directly or as `<name>_file`.
const SECRET_KEYS: &[&str] = &["database_url"];

/// Environment variables that are not settings: the loader's own, and the
/// master key or passphrase, which are read where they are needed and never
/// become part of `Settings` (so they cannot reach a `Debug` print of it).
const LOADER_VARS: &[&str] = &[
    "RAMPART_CONFIG",
    "RAMPART_MASTER_KEY",
    "RAMPART_MASTER_PASSPHRASE",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Schema version of this file; only 1 exists.
    pub version: u32,
    pub data_dir: PathBuf,
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// Plain-HTTP redirect listener, or `off`.
    pub http_listen: String,
    /// Prometheus metrics (`GET /metrics`, plain HTTP), or `off`. Keep it
    /// on a loopback address or a private network: it tells how the server
    /// is used.
    pub metrics_listen: String,
    pub database_url: Option<SecretString>,
    pub database_url_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The master key file. Default: `master.key` in the data dir. Nodes
    /// sharing one PostgreSQL database must all use the same key.
    pub master_key_file: Option<PathBuf>,
    /// Oldest TLS version accepted: "1.3" (default) or "1.2".
    pub tls_min_version: TlsMinVersion,
    /// `[tls]`: certificates obtained by ACME (ADR 0016).
    pub tls: TlsSettings,
    /// Turn permission warnings into errors.
    pub strict: bool,
    /// Origins allowed to make cookie-authenticated writes without the
    /// CSRF header. Default: the HTTPS address itself.
    pub public_origins: Vec<String>,
    pub registration: RegistrationMode,
    /// `[accounts]`: verification, resets, deletion (ADR 0015).
    pub accounts: AccountsSettings,
    pub password: PasswordSettings,
    pub argon2: Argon2Settings,
    pub hashing: HashingSettings,
    pub session: SessionSettings,
    pub brute_force: BruteForceSettings,
    pub mfa: MfaSettings,
    /// `log` (the default on a loopback address): codes and notices go to
    /// `outbox.log` in the data dir, for development; `deliver`: email
    /// through `[smtp]`, SMS through `[sms_webhook]`. Must be set when
    /// `listen` is reachable from other machines.
    pub notifier: Option<NotifierMode>,
    pub smtp: Option<SmtpSettings>,
    pub sms_webhook: Option<SmsWebhookSettings>,
    pub webauthn: WebauthnSettings,
    pub limits: LimitSettings,
    /// Address rules, rate limits, brute-force blocks and inspection.
    pub guard: rampart_http::guard::GuardConfig,
    /// Scans `serve` runs on a schedule (see `rampart scan --help`).
    pub scan: ScanSettings,
    /// The audit trail (`rampart audit --help`).
    pub audit: AuditSettings,
    /// Intrusion detection and alerts (`rampart rules --help`).
    pub detect: crate::detect::DetectSettings,
    /// `[backup]`: encrypted, verified backups (ADR 0013).
    pub backup: BackupSettings,
    /// `[incident]`: the response plan and drills (ADR 0014).
    pub incident: crate::incident::IncidentSettings,
    pub log: LogSettings,
    /// Settings named `danger_*` that are on, from the merged layers.
    #[serde(skip)]
    pub danger_on: Vec<String>,
}

/// `[tls]`: where the certificate comes from when it is not `tls_cert`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Obtain and renew the certificate from an ACME CA (Let's Encrypt).
    pub acme: Option<AcmeSettings>,
}

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`staging = true`): certificates no
/// browser trusts, and limits generous enough for trying a setup.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[tls] acme = { domains = [...], contact = "mailto:...", ... }`. Using
/// it accepts the CA's subscriber agreement.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSettings {
    /// The DNS names of the certificate (no IP addresses, no wildcards),
    /// each resolving to this server.
    pub domains: Vec<String>,
    /// `mailto:` address the CA may write to about the account.
    pub contact: Option<String>,
    /// The CA's directory URL (https). Default: Let's Encrypt production.
    pub directory: Option<String>,
    /// Let's Encrypt's staging CA instead of production.
    pub staging: bool,
    /// `tls-alpn-01` (answered on the HTTPS port; the CA connects to port
    /// 443) or `http-01` (answered by the redirect listener; the CA
    /// connects to port 80). Default: `http-01` when `http_listen` is on
    /// port 80 and `listen` is not on 443, `tls-alpn-01` otherwise.
    pub challenge: Option<ChallengeKind>,
    /// A CA certificate (PEM) to trust for the directory's own HTTPS (a
    /// private CA, or a test CA such as pebble's) besides the public roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChallengeKind {
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    #[serde(rename = "http-01")]
    Http01,
}

impl AcmeSettings {
    /// The directory in use.
    pub fn directory_url(&self) -> &str {
        match (&self.directory, self.staging) {
            (Some(d), _) => d,
            (None, true) => LETS_ENCRYPT_STAGING,
            (None, false) => LETS_ENCRYPT,
        }
    }

    /// The challenge in use (see [`AcmeSettings::challenge`]).
    pub fn challenge_kind(&self, listen: SocketAddr, http: Option<SocketAddr>) -> ChallengeKind {
        self.challenge.unwrap_or(match http {
            Some(h) if h.port() == 80 && listen.port() != 443 => ChallengeKind::Http01,
            _ => ChallengeKind::TlsAlpn01,
        })
    }

    fn validate(&self, settings: &Settings) -> Result<()> {
        if self.domains.is_empty() {
            bail!("[tls] acme needs the names to certify: domains = [\"api.example.com\"]");
        }
        for d in &self.domains {
            check_domain(d)?;
        }
        if let Some(c) = &self.contact {
            let addr = c.strip_prefix("mailto:").unwrap_or("");
            if rampart_core::Email::parse(addr).is_err() {
                bail!("[tls] acme contact must look like \"mailto:ops@example.com\", not {c:?}");
            }
        }
        if self.staging && self.directory.is_some() {
            bail!("[tls] acme: give `directory` or `staging = true`, not both");
        }
        let dir = self.directory_url();
        match url::Url::parse(dir) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
            _ => bail!("[tls] acme directory must be an https:// URL, not {dir:?}"),
        }
        if settings.tls_cert.is_some() {
            bail!("[tls] acme obtains the certificate: remove tls_cert and tls_key, or remove [tls] acme");
        }
        let http = settings.http_listen_addr()?;
        if self.challenge_kind(settings.listen, http) == ChallengeKind::Http01 && http.is_none() {
            bail!("[tls] acme challenge = \"http-01\" needs the redirect listener: set http_listen (port 80)");
        }
        if let Some(f) = &self.ca_file {
            let pem = std::fs::read(f)
                .with_context(|| format!("[tls] acme ca_file {} cannot be read", f.display()))?;
            if !String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") {
                bail!(
                    "[tls] acme ca_file {} holds no PEM certificate",
                    f.display()
                );
            }
        }
        Ok(())
    }
}

/// A name Let's Encrypt certifies: a DNS name of at least two labels, not
/// an IP address, not a wildcard (that needs DNS-01, which Rampart cannot
/// answer).
fn check_domain(d: &str) -> Result<()> {
    if d.parse::<std::net::IpAddr>().is_ok()
        || d.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        bail!("[tls] acme domains: {d:?} is an IP address; certificates are for DNS names (point a name at this server)");
    }
    if d.starts_with("*.") {
        bail!("[tls] acme domains: {d:?} is a wildcard, which needs a DNS-01 challenge; list each name instead");
    }
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if d.len() > 253
        || labels.len() < 2
        || !labels.iter().all(label_ok)
        || labels
            .last()
            .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
    {
        bail!("[tls] acme domains: {d:?} is not a DNS name like api.example.com (letters, digits and hyphens; internationalised names in their xn-- form)");
    }
    Ok(())
}

/// `[scan]`: the scans `serve` runs itself. Reports are stored and served
/// by `GET /api/v1/admin/scans`; new findings become `scan_finding`
/// security events, and new errors are emailed to the administrators.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSettings {
    /// Hours between self scans (posture and dependencies); 0 turns them off.
    pub self_every_hours: u64,
    /// Other servers to scan (`https://…`), e.g. your website.
    pub urls: Vec<String>,
    /// Hours between scans of `urls`; 0 turns them off.
    pub urls_every_hours: u64,
    /// A RustSec advisory-db checkout to use instead of the built-in snapshot.
    pub advisory_db: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust when scanning `urls`.
    pub ca_file: Option<PathBuf>,
    /// Port of the plain-HTTP redirect check for `urls`.
    pub http_port: u16,
    /// Seconds after start before the first scheduled scans.
    pub start_delay_secs: u64,
}

/// `[audit]`: the tamper-evident event trail (ADR 0011).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Record every allowed read and list of protected data (default on).
    /// Off, only writes, refusals and denials are: for a deployment whose
    /// reads are too many to keep, at the cost of not knowing who read what.
    pub data_reads: bool,
    /// Seconds between the server's checks of what was added to the trail
    /// (the whole trail is checked at start and daily).
    pub verify_every_secs: u64,
    /// Days events are kept (default 400; 0 keeps them forever). Older
    /// ones are removed as whole ranges, each replaced by a signed record
    /// of what was removed, so `rampart audit verify` still passes.
    pub retention_days: u64,
    /// This node's chain name (1-64 of `A-Z a-z 0-9 . _ -`). Default: a
    /// random name made on first start and kept in the data directory
    /// (`audit-node`), so nodes sharing one PostgreSQL database differ.
    pub node: Option<String>,
    /// Where every checkpoint is also appended, one file per node. Keep it
    /// out of reach of whoever can write the database: another disk,
    /// another user, a mounted share. Default: a sibling of the data
    /// directory, `<data_dir>-witness`.
    pub witness_dir: Option<PathBuf>,
    /// Live shipping of events to a SIEM (see README "Shipping events").
    pub streams: Vec<StreamSettings>,
    /// A second witness off this machine: every checkpoint is also POSTed
    /// there as JSON (`https://`, or `http://` to a loopback address).
    pub witness_url: Option<String>,
    /// PEM CA certificates to trust for `witness_url`.
    pub witness_ca_file: Option<PathBuf>,
}

/// `[[audit.streams]]`: one receiver of the live event stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Names the stream's place in the trail (kept in the database):
    /// renaming a stream ships everything again.
    pub name: String,
    /// `tls://host:6514` (syslog over TLS), `https://…/path` (NDJSON
    /// batches of ECS documents), or, to this machine only, `tcp://` and
    /// `http://`.
    pub url: String,
    /// PEM CA certificates to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// HTTP: a file holding a bearer token for `Authorization`.
    pub token_file: Option<PathBuf>,
    /// Events per batch (default 500).
    #[serde(default = "default_stream_batch")]
    pub batch: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            data_reads: true,
            verify_every_secs: 60,
            retention_days: 400,
            witness_url: None,
            witness_ca_file: None,
            node: None,
            witness_dir: None,
            streams: Vec::new(),
        }
    }
}

/// `[backup]`: where backups go and whom they are sealed to (ADR 0013).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// Where `rampart backup create` writes without `--to`: a directory
    /// outside the data directory (ideally another disk).
    pub dir: Option<PathBuf>,
    /// age X25519 recipients (`age1…`, from `rampart backup keygen`):
    /// whoever holds one of their identities can open a backup. Keep the
    /// identities off this machine.
    pub recipients: Vec<String>,
    /// Instead of recipients: a passphrase (at least 16 characters) that
    /// seals and opens backups, best given as `passphrase_file` (read once,
    /// at start, like every other secret).
    pub passphrase: Option<SecretString>,
    pub passphrase_file: Option<PathBuf>,
    /// When `serve` takes a backup (cron, five fields, UTC; default daily
    /// at 03:00), once `dir` and recipients or a passphrase are set.
    pub schedule: String,
    /// Scheduled backups kept: the newest of each of the last
    /// `keep_daily` days, `keep_weekly` weeks and `keep_monthly` months.
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// `[backup.s3]`: every scheduled backup (and `backup create`) is
    /// also uploaded to an S3-compatible object store.
    pub s3: Option<S3Settings>,
}

/// `[backup.s3]`: an S3-compatible bucket for backups (ADR 0013).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `https://s3.<region>.amazonaws.com`, or any S3-compatible endpoint
    /// (`http://` only to this machine).
    pub endpoint: String,
    pub bucket: String,
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Put before each object's name, e.g. `rampart/`.
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: SecretString,
    pub secret_access_key: Option<SecretString>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Days each backup is locked (S3 Object Lock, compliance mode: not
    /// even these credentials can delete or overwrite it before then).
    /// The bucket must have Object Lock enabled; 0 uploads without a lock.
    #[serde(default = "default_lock_days")]
    pub lock_days: u32,
    /// Address the bucket as `endpoint/bucket` (default) rather than
    /// `bucket.endpoint`.
    #[serde(default = "default_true")]
    pub path_style: bool,
}

fn default_s3_region() -> String {
    "us-east-1".to_owned()
}

fn default_lock_days() -> u32 {
    30
}

fn default_true() -> bool {
    true
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            dir: None,
            recipients: Vec::new(),
            passphrase: None,
            passphrase_file: None,
            schedule: "0 3 * * *".to_owned(),
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
            s3: None,
        }
    }
}

impl BackupSettings {
    pub fn retention(&self) -> crate::backup::Retention {
        crate::backup::Retention {
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

fn default_stream_batch() -> u32 {
    500
}

impl StreamSettings {
    /// The stream as `rampart-notify` runs it (reads the files it names).
    pub fn config(&self) -> Result<rampart_notify::stream::StreamConfig> {
        let target = rampart_notify::stream::target(&self.url)
            .map_err(|e| anyhow!("[[audit.streams]] {:?}: {e}", self.name))?;
        let ca_pem = match &self.ca_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("[[audit.streams]] ca_file {}", f.display()))?,
            ),
            None => None,
        };
        let token = match &self.token_file {
            Some(f) => {
                let t = std::fs::read_to_string(f)
                    .with_context(|| format!("[[audit.streams]] token_file {}", f.display()))?;
                Some(SecretString::new(t.trim().to_owned()))
            }
            None => None,
        };
        let c = rampart_notify::stream::StreamConfig {
            name: self.name.clone(),
            target,
            ca_pem,
            token,
            batch: self.batch,
        };
        rampart_notify::stream::check(&c)
            .map_err(|e| anyhow!("[[audit.streams]] {:?}: {e}", self.name))?;
        Ok(c)
    }
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            self_every_hours: 24,
            urls: Vec::new(),
            urls_every_hours: 168,
            advisory_db: None,
            ca_file: None,
            http_port: 80,
            start_delay_secs: 10,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            version: 1,
            data_dir: PathBuf::from("rampart-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            http_listen: "127.0.0.1:8080".to_owned(),
            metrics_listen: "127.0.0.1:9464".to_owned(),
            database_url: None,
            database_url_file: None,
            tls_cert: None,
            tls_key: None,
            master_key_file: None,
            tls_min_version: TlsMinVersion::default(),
            tls: TlsSettings::default(),
            strict: false,
            public_origins: Vec::new(),
            registration: RegistrationMode::Open,
            accounts: AccountsSettings::default(),
            password: PasswordSettings::default(),
            argon2: Argon2Settings::default(),
            hashing: HashingSettings::default(),
            session: SessionSettings::default(),
            brute_force: BruteForceSettings::default(),
            mfa: MfaSettings::default(),
            notifier: None,
            smtp: None,
            sms_webhook: None,
            webauthn: WebauthnSettings::default(),
            limits: LimitSettings::default(),
            guard: rampart_http::guard::GuardConfig::default(),
            scan: ScanSettings::default(),
            audit: AuditSettings::default(),
            detect: crate::detect::DetectSettings::default(),
            backup: BackupSettings::default(),
            incident: crate::incident::IncidentSettings::default(),
            log: LogSettings::default(),
            danger_on: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// `default` or `nist`.
    pub preset: PolicyPreset,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            preset: PolicyPreset::Default,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        let m = Argon2Params::MINIMUM;
        Self {
            memory_kib: m.memory_kib,
            iterations: m.iterations,
            parallelism: m.parallelism,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashingSettings {
    /// Hashing threads; 0 means one per core.
    pub workers: usize,
    /// Jobs that may wait; past this, logins answer 503 at once.
    pub queue: usize,
}

impl Default for HashingSettings {
    fn default() -> Self {
        Self {
            workers: 0,
            queue: 64,
        }
    }
}

/// Per-account brute-force defence; see `rampart_core::BruteForcePolicy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceSettings {
    /// Wrong passwords before each further one is delayed.
    pub delay_after: u32,
    /// A quiet period this long starts the count again.
    pub window_secs: u64,
    pub base_delay_secs: u64,
    pub max_delay_secs: u64,
    /// Wrong passwords that lock the account.
    pub lock_after: u32,
    pub lock_for_secs: u64,
}

impl Default for BruteForceSettings {
    fn default() -> Self {
        let p = BruteForcePolicy::default();
        Self {
            delay_after: p.delay_after,
            window_secs: p.window.as_secs(),
            base_delay_secs: p.base_delay.as_secs(),
            max_delay_secs: p.max_delay.as_secs(),
            lock_after: p.lock_after,
            lock_for_secs: p.lock_for.as_secs(),
        }
    }
}

impl BruteForceSettings {
    pub fn policy(&self) -> BruteForcePolicy {
        BruteForcePolicy {
            delay_after: self.delay_after,
            window: Duration::from_secs(self.window_secs),
            base_delay: Duration::from_secs(self.base_delay_secs),
            max_delay: Duration::from_secs(self.max_delay_secs),
            lock_after: self.lock_after,
            lock_for: Duration::from_secs(self.lock_for_secs),
        }
    }
}

/// Second factors; see `rampart_core::mfa::MfaPolicy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaSettings {
    /// `["admin"]` (default), `["all"]`, or `[]`.
    pub required_for: Vec<Requirement>,
    /// Allowed methods: totp, webauthn, email, sms, recovery_code.
    pub methods: Vec<Method>,
    /// How long a step-up (or a login) allows sensitive actions.
    pub step_up_secs: u64,
    /// Failed second-factor checks per account per window.
    pub max_failures: u32,
    pub failure_window_secs: u64,
    /// The name authenticator apps show.
    pub issuer: String,
    /// SMS codes to numbers not yet confirmed (enrolments) the server may
    /// send per hour, across all accounts.
    pub sms_enrolments_per_hour: u32,
}

impl Default for MfaSettings {
    fn default() -> Self {
        let p = MfaPolicy::default();
        Self {
            required_for: p.required_for,
            methods: p.methods,
            step_up_secs: p.step_up_window.as_secs(),
            max_failures: p.max_failures,
            failure_window_secs: p.failure_window.as_secs(),
            issuer: p.issuer,
            sms_enrolments_per_hour: p.sms_enrolments_per_hour,
        }
    }
}

impl MfaSettings {
    pub fn policy(&self) -> MfaPolicy {
        MfaPolicy {
            required_for: self.required_for.clone(),
            methods: self.methods.clone(),
            step_up_window: Duration::from_secs(self.step_up_secs),
            max_failures: self.max_failures,
            failure_window: Duration::from_secs(self.failure_window_secs),
            issuer: self.issuer.clone(),
            sms_enrolments_per_hour: self.sms_enrolments_per_hour,
        }
    }
}

/// `[accounts]`: the account lifecycle (ADR 0015).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSettings {
    /// `required` (an unverified account cannot sign in), `before_data`
    /// (it can, but the data routes refuse it) or `optional`. Default:
    /// `required` when messages are delivered (`notifier = "deliver"`),
    /// `optional` with the development outbox.
    pub email_verification: Option<rampart_core::lifecycle::VerificationMode>,
    /// Days between `DELETE /api/v1/me` and the deletion, during which
    /// signing in cancels it; 0 deletes at once.
    pub deletion_grace_days: u64,
    /// Minutes a forgotten-password link lasts (5 to 1440).
    pub reset_link_minutes: u64,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        Self {
            email_verification: None,
            deletion_grace_days: 7,
            reset_link_minutes: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierMode {
    Log,
    Deliver,
}

/// The SMTP relay for email codes and notices. TLS is always on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Default: 465 with `security = "tls"`, 587 with `"starttls"`.
    pub port: Option<u16>,
    #[serde(default = "default_smtp_security")]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `Rampart <security@example.com>`.
    pub from: String,
    /// A CA certificate (PEM) to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
}

fn default_smtp_security() -> SmtpSecurity {
    SmtpSecurity::Tls
}

/// The HTTPS webhook SMS codes are posted to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsWebhookSettings {
    pub url: String,
    /// The HMAC-SHA256 signing key (at least 32 characters).
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// The WebAuthn relying party. Default: `localhost` and the HTTPS address,
/// or the host of the first `public_origins` entry and those origins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnSettings {
    pub rp_id: Option<String>,
    pub origins: Vec<String>,
}

/// The settings in force as text, for administrators (`GET
/// /api/v1/admin/settings`) and investigators (the forensic bundle's
/// `settings.txt`): their `Debug`, where every secret is a `SecretString`
/// printed `[REDACTED]`, with every URL cut by [`redact_urls`].
pub fn effective(settings: &Settings) -> String {
    redact_urls(&format!("{settings:#?}"))
}

/// `text` with every `scheme://…` cut to `scheme://host:port`, followed by
/// `/(redacted)` when a path, query or user part followed (a webhook's path
/// or a URL's user part can be a secret of its own). A URL in a quoted
/// string runs to its closing quote, escaped quotes and commas included;
/// one that does not parse is withheld whole.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = if rest[..start].ends_with('"') {
            closing_quote(&rest[at..])
        } else {
            rest[at..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | ')' | ']' | '}' | '\''))
        }
        .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redacted_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Where an escaped (`Debug`) string's closing quote is in `s`.
fn closing_quote(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn redacted_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(u) if u.host_str().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let more = !matches!(u.path(), "" | "/")
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
                || u.password().is_some();
            format!(
                "{}://{}{port}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                if more { "/(redacted)" } else { "" }
            )
        }
        _ => "(a URL, redacted)".to_owned(),
    }
}

/// Reads a secret given inline or as a file, never both.
fn secret_or_file(
    inline: &mut Option<SecretString>,
    file: &mut Option<PathBuf>,
    name: &str,
) -> Result<()> {
    match (inline.is_some(), file.take()) {
        (true, Some(_)) => bail!("give `{name}` or `{name}_file`, not both"),
        (false, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {name}_file {}", path.display()))?;
            *inline = Some(SecretString::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    pub idle_timeout_secs: u64,
    pub absolute_lifetime_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30 * 60,
            absolute_lifetime_secs: 12 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    pub body_bytes: usize,
    pub header_bytes: usize,
    pub header_count: usize,
    pub header_read_timeout_secs: u64,
    pub request_timeout_secs: u64,
    /// Connections silent this long are closed (at least request timeout + 5 s).
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold at once;
    /// by default a sixteenth of `max_connections`, at least 8.
    pub max_connections_per_address: Option<usize>,
    pub shutdown_grace_secs: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            header_bytes: 16 * 1024,
            header_count: 64,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 1024,
            max_connections_per_address: None,
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info` or `info,rampart_http=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

/// Flags given on the command line; each overrides everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub database_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub strict: bool,
}

/// Reads a TOML-ish scalar from an environment value: numbers, booleans
/// and arrays as such, anything else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// Setting a secret (or its `_file` form) in a higher layer replaces the
/// other form given by a lower layer.
fn drop_other_form(table: &mut toml::Table, name: &str) {
    for key in SECRET_KEYS {
        let file_key = format!("{key}_file");
        if name == *key {
            table.remove(&file_key);
        } else if name == file_key {
            table.remove(*key);
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<()> {
    let (last, parents) = path.split_last().ok_or_else(|| anyhow!("empty key"))?;
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| anyhow!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

impl Settings {
    /// Loads settings from the layers. `env` is passed in so tests can
    /// control it.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Settings> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?
            }
            None => toml::Table::new(),
        };
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RAMPART_") && !LOADER_VARS.contains(&k.as_str()))
            .collect();
        env.sort_by(|a, b| a.0.cmp(&b.0)); // stable: a later duplicate wins
        for (key, value) in env {
            let path: Vec<String> = key["RAMPART_".len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            if path.iter().any(String::is_empty) {
                bail!("environment variable {key} is not a setting name");
            }
            if let [name] = path.as_slice() {
                drop_other_form(&mut table, name);
            }
            set_path(&mut table, &path, env_value(&value))
                .with_context(|| format!("environment variable {key}"))?;
        }
        let flag = |t: &mut toml::Table, k: &str, v: toml::Value| {
            t.insert(k.to_owned(), v);
        };
        if let Some(v) = &flags.data_dir {
            flag(
                &mut table,
                "data_dir",
                toml::Value::String(v.display().to_string()),
            );
        }
        if let Some(v) = &flags.listen {
            flag(&mut table, "listen", toml::Value::String(v.clone()));
        }
        if let Some(v) = &flags.http_listen {
            flag(&mut table, "http_listen", toml::Value::String(v.clone()));
        }
        if let Some(v) = &flags.database_url {
            table.remove("database_url_file");
            flag(&mut table, "database_url", toml::Value::String(v.clone()));
        }
        if let Some(v) = &flags.tls_cert {
            flag(
                &mut table,
                "tls_cert",
                toml::Value::String(v.display().to_string()),
            );
        }
        if let Some(v) = &flags.tls_key {
            flag(
                &mut table,
                "tls_key",
                toml::Value::String(v.display().to_string()),
            );
        }
        if flags.strict {
            flag(&mut table, "strict", toml::Value::Boolean(true));
        }
        for key in SECRET_KEYS {
            let file_key = format!("{key}_file");
            if table.contains_key(*key) && table.contains_key(&file_key) {
                bail!("give `{key}` or `{file_key}`, not both");
            }
        }
        let danger_on = rampart_scan::posture::danger_keys(&table);
        let mut settings: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("invalid settings: {}", e.message()))?;
        if let Some(path) = settings.database_url_file.take() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read database_url_file {}", path.display()))?;
            settings.database_url = Some(SecretString::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        if let Some(smtp) = &mut settings.smtp {
            secret_or_file(&mut smtp.password, &mut smtp.password_file, "smtp.password")?;
        }
        secret_or_file(
            &mut settings.backup.passphrase,
            &mut settings.backup.passphrase_file,
            "backup.passphrase",
        )?;
        if let Some(s3) = &mut settings.backup.s3 {
            secret_or_file(
                &mut s3.secret_access_key,
                &mut s3.secret_access_key_file,
                "backup.s3.secret_access_key",
            )?;
        }
        if let Some(hook) = &mut settings.sms_webhook {
            secret_or_file(
                &mut hook.secret,
                &mut hook.secret_file,
                "sms_webhook.secret",
            )?;
        }
        settings.danger_on = danger_on;
        settings.validate()?;
        if let (true, Some(acme)) = (settings.public_origins.is_empty(), &settings.tls.acme) {
            // The names being certified are the addresses people use, on
            // port 443: the CA validates there (TLS-ALPN-01) or redirects
            // lead there, whatever port 443 is forwarded to on this machine.
            settings.public_origins = acme
                .domains
                .iter()
                .map(|d| format!("https://{}", d.to_ascii_lowercase()))
                .collect();
        }
        Ok(settings)
    }

    /// The notifier in force: `log` unless set.
    pub fn notifier_mode(&self) -> NotifierMode {
        self.notifier.unwrap_or(NotifierMode::Log)
    }

    /// The lifecycle's policy; links point at the first public origin (or
    /// the HTTPS address on localhost).
    pub fn accounts_policy(&self) -> rampart_core::lifecycle::AccountsPolicy {
        use rampart_core::lifecycle::VerificationMode;
        let a = &self.accounts;
        rampart_core::lifecycle::AccountsPolicy {
            email_verification: a.email_verification.unwrap_or(
                if self.notifier_mode() == NotifierMode::Deliver {
                    VerificationMode::Required
                } else {
                    VerificationMode::Optional
                },
            ),
            deletion_grace: Duration::from_secs(a.deletion_grace_days.saturating_mul(86_400)),
            reset_ttl: Duration::from_secs(a.reset_link_minutes.saturating_mul(60)),
            link_origin: self
                .public_origins
                .first()
                .cloned()
                .unwrap_or_else(|| format!("https://localhost:{}", self.listen.port())),
        }
    }

    fn validate(&self) -> Result<()> {
        self.guard.validate().map_err(|e| anyhow!(e))?;
        self.incident.validate()?;
        if !self.backup.recipients.is_empty() && self.backup.passphrase.is_some() {
            bail!("[backup] give `recipients` or `passphrase_file`, not both (age seals to one or the other)");
        }
        if let Some(p) = &self.backup.passphrase {
            let n = p.expose_secret().chars().count();
            if n < crate::backup::MIN_PASSPHRASE_CHARS {
                bail!(
                    "[backup] the passphrase has {n} characters; use at least {}",
                    crate::backup::MIN_PASSPHRASE_CHARS
                );
            }
        }
        rampart_backup::parse_recipients(&self.backup.recipients)
            .map_err(|e| anyhow!("[backup] recipients: {e}"))?;
        if let Some(s3) = &self.backup.s3 {
            crate::backup::s3::Target::new(s3, &rampart_crypto::SecretString::new(String::new()))
                .map_err(|e| anyhow!("[backup.s3] {e}"))?;
            if s3.secret_access_key.is_none() {
                bail!("[backup.s3] give secret_access_key_file (or secret_access_key)");
            }
            if self.backup.dir.is_none() {
                bail!("[backup.s3] needs [backup] dir too: every backup is written and checked there first");
            }
        }
        crate::backup::Schedule::parse(&self.backup.schedule)
            .map_err(|e| anyhow!("[backup] schedule: {e}"))?;
        if self.backup.keep_daily + self.backup.keep_weekly + self.backup.keep_monthly == 0 {
            bail!("[backup] keep_daily, keep_weekly and keep_monthly are all 0: every backup but the newest would be removed");
        }
        if let Some(n) = &self.audit.node {
            if !rampart_core::audit::node_name_ok(n) {
                bail!("[audit] node = {n:?}: use 1 to 64 letters, digits, `.`, `_` or `-`");
            }
        }
        if self.audit.retention_days > 36_500 {
            bail!(
                "[audit] retention_days = {} is more than 100 years; 0 keeps events forever",
                self.audit.retention_days
            );
        }
        if !(1..=86_400).contains(&self.audit.verify_every_secs) {
            bail!(
                "[audit] verify_every_secs = {} must be 1 to 86400",
                self.audit.verify_every_secs
            );
        }
        if let Some(u) = &self.audit.witness_url {
            match rampart_notify::stream::target(u) {
                Ok(rampart_notify::stream::Target::Http { .. }) => {}
                Ok(_) => bail!("[audit] witness_url must be https:// (or http:// to this machine)"),
                Err(e) => bail!("[audit] witness_url: {e}"),
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for st in &self.audit.streams {
            if !rampart_core::audit::node_name_ok(&st.name) {
                bail!(
                    "[[audit.streams]] name = {:?}: use 1 to 64 letters, digits, `.`, `_` or `-`",
                    st.name
                );
            }
            if !names.insert(st.name.as_str()) {
                bail!("[[audit.streams]] name = {:?} is used twice", st.name);
            }
            if !(1..=5000).contains(&st.batch) {
                bail!("[[audit.streams]] {:?}: batch must be 1 to 5000", st.name);
            }
            st.config()?;
        }
        self.detect.check_settings()?;
        for (name, v, max) in [
            ("self_every_hours", self.scan.self_every_hours, 8760),
            ("urls_every_hours", self.scan.urls_every_hours, 8760),
            ("start_delay_secs", self.scan.start_delay_secs, 86_400),
        ] {
            if v > max {
                bail!("[scan] {name} = {v} is more than {max}");
            }
        }
        for u in &self.scan.urls {
            rampart_scan::url::parse_target(u).map_err(|e| anyhow!("[scan] urls: {e}"))?;
        }
        // Found now rather than as a failed scan in the log a day later.
        if let Some(dir) = &self.scan.advisory_db {
            if !dir.is_dir() {
                bail!(
                    "[scan] advisory_db = {} is not a directory (a checkout of https://github.com/rustsec/advisory-db)",
                    dir.display()
                );
            }
        }
        if let Some(file) = &self.scan.ca_file {
            if rampart_scan::posture::read_chain(file).is_none() {
                bail!(
                    "[scan] ca_file = {} is not a readable PEM file with a certificate",
                    file.display()
                );
            }
        }
        self.brute_force
            .policy()
            .validate()
            .map_err(|e| anyhow!(e))?;
        self.mfa.policy().validate().map_err(|e| anyhow!(e))?;
        if self.notifier.is_none() && !self.listen.ip().is_loopback() {
            bail!(
                "listen = {} is reachable from other machines, but `notifier` is not set. Set \
                 notifier = \"deliver\" with an [smtp] section (and [sms_webhook] for SMS) so sign-in codes and \
                 security notices reach your users, or notifier = \"log\" to write them to {} instead \
                 (development only)",
                self.listen,
                self.data_dir.join("outbox.log").display()
            );
        }
        if !(5..=1440).contains(&self.accounts.reset_link_minutes) {
            bail!(
                "[accounts] reset_link_minutes = {} is outside 5 to 1440 (a day): a reset link is best short-lived",
                self.accounts.reset_link_minutes
            );
        }
        if self.accounts.deletion_grace_days > 365 {
            bail!(
                "[accounts] deletion_grace_days = {} is more than 365",
                self.accounts.deletion_grace_days
            );
        }
        if self.notifier_mode() == NotifierMode::Deliver && self.smtp.is_none() {
            bail!(
                "notifier = \"deliver\" needs an [smtp] section (host, from) to send email codes and security notices; \
                 or use notifier = \"log\" while developing"
            );
        }
        if let Some(hook) = &self.sms_webhook {
            if hook.secret.is_none() {
                bail!("[sms_webhook] needs `secret` or `secret_file` (the HMAC signing key)");
            }
        }
        if self.version != 1 {
            bail!("`version` must be 1 (this build knows settings version 1)");
        }
        let p = self.argon2_params();
        if !p.meets_minimum() {
            let m = Argon2Params::MINIMUM;
            bail!(
                "argon2 parameters are below the floor (memory_kib >= {}, iterations >= {}, parallelism >= {})",
                m.memory_kib,
                m.iterations,
                m.parallelism
            );
        }
        if self.argon2.memory_kib > 4 * 1024 * 1024
            || self.argon2.iterations > 64
            || self.argon2.parallelism > 64
        {
            bail!("argon2 parameters are implausibly large");
        }
        if self.session.idle_timeout_secs == 0 || self.session.absolute_lifetime_secs == 0 {
            bail!("session timeouts must be positive");
        }
        if self.session.idle_timeout_secs > self.session.absolute_lifetime_secs {
            bail!("session.idle_timeout_secs must not exceed session.absolute_lifetime_secs");
        }
        let l = &self.limits;
        if l.body_bytes == 0
            || l.header_bytes < 1024
            || l.header_count < 8
            || l.header_read_timeout_secs == 0
            || l.request_timeout_secs == 0
            || l.max_connections == 0
        {
            bail!("limits must be positive (header_bytes >= 1024, header_count >= 8)");
        }
        if let Some(n) = l.max_connections_per_address {
            if n == 0 || n > l.max_connections {
                bail!(
                    "limits.max_connections_per_address must be between 1 and max_connections ({})",
                    l.max_connections
                );
            }
        }
        if self.hashing.queue == 0 {
            bail!("hashing.queue must be at least 1");
        }
        self.http_listen_addr()?;
        self.metrics_listen_addr()?;
        if let Some(url) = &self.database_url {
            if rampart_store::Dialect::of_url(url.expose_secret()).is_none() {
                bail!("database_url must start with sqlite: or postgres://");
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("give both tls_cert and tls_key, or neither");
        }
        if let Some(acme) = &self.tls.acme {
            acme.validate(self)?;
        }
        for o in &self.public_origins {
            if !o.starts_with("https://") || o.ends_with('/') {
                bail!(
                    "public_origins entries look like https://app.example.com (no trailing slash)"
                );
            }
        }
        Ok(())
    }

    pub fn argon2_params(&self) -> Argon2Params {
        Argon2Params {
            memory_kib: self.argon2.memory_kib,
            iterations: self.argon2.iterations,
            parallelism: self.argon2.parallelism,
        }
    }

    /// The redirect listener's address, or `None` when `off`.
    pub fn http_listen_addr(&self) -> Result<Option<SocketAddr>> {
        if self.http_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.http_listen
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("http_listen must be an address like 127.0.0.1:8080, or `off`"))
    }

    pub fn metrics_listen_addr(&self) -> Result<Option<SocketAddr>> {
        if self.metrics_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.metrics_listen
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("metrics_listen must be an address like 127.0.0.1:9464, or `off`"))
    }

    pub fn database_url(&self) -> SecretString {
        match &self.database_url {
            Some(u) => u.clone(),
            None => SecretString::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("rampart.db").display()
            )),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url().expose_secret().starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scan_urls_with_credentials_runaway_numbers_and_bad_paths_are_refused() {
        let load = |k: &str, v: &str| {
            Settings::load(None, env(&[(k, v)]), &Overrides::default())
                .err()
                .map(|e| format!("{e:#}"))
        };
        let e = load(
            "RAMPART_SCAN__URLS",
            r#"["https://ops:pw-canary@example.test/"]"#,
        )
        .unwrap();
        assert!(e.contains("without a user name or password"), "{e}");
        assert!(!e.contains("pw-canary"), "{e}");
        let e = load("RAMPART_SCAN__URLS", r#"["http://example.test/"]"#).unwrap();
        assert!(e.contains("only https://"), "{e}");
        let e = load("RAMPART_SCAN__SELF_EVERY_HOURS", "9999999999999").unwrap();
        assert!(e.contains("self_every_hours"), "{e}");
        assert!(load(
            "RAMPART_SCAN__URLS",
            r#"["https://example.test/status?x=1"]"#
        )
        .is_none());
        for (key, name) in [
            (
                "RAMPART_GUARD__OFFENDER_MEMORY_DAYS",
                "offender_memory_days",
            ),
            ("RAMPART_GUARD__BLOCK_MAX_SECS", "block_max_secs"),
            (
                "RAMPART_GUARD__IP_FAILURE_WINDOW_SECS",
                "ip_failure_window_secs",
            ),
        ] {
            let e = load(key, "99999999999999999").unwrap();
            assert!(e.contains(name), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere").display().to_string();
        let e = load("RAMPART_SCAN__ADVISORY_DB", &missing).unwrap();
        assert!(
            e.contains("advisory_db") && e.contains("not a directory"),
            "{e}"
        );
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let e = load("RAMPART_SCAN__CA_FILE", &not_pem.display().to_string()).unwrap();
        assert!(e.contains("ca_file"), "{e}");
        assert!(load(
            "RAMPART_SCAN__ADVISORY_DB",
            &dir.path().display().to_string()
        )
        .is_none());
    }

    #[test]
    fn acme_settings_that_cannot_work_are_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        let load = |acme: &str, top: &str| {
            std::fs::write(
                &file,
                format!("notifier = \"log\"\n{top}\n[tls]\nacme = {{ {acme} }}\n"),
            )
            .unwrap();
            Settings::load(Some(&file), env(&[]), &Overrides::default())
        };
        let refused = |acme: &str, top: &str, why: &str| {
            let e = format!("{:#}", load(acme, top).unwrap_err());
            assert!(e.contains(why), "{acme}: {e}");
        };
        let ok = r#"domains = ["api.example.com"]"#;
        refused("domains = []", "", "needs the names to certify");
        refused(r#"domains = ["203.0.113.7"]"#, "", "is an IP address");
        refused(r#"domains = ["[2001:db8::1]"]"#, "", "is an IP address");
        refused(r#"domains = ["*.example.com"]"#, "", "wildcard");
        refused(r#"domains = ["localhost"]"#, "", "is not a DNS name");
        refused(
            r#"domains = ["bad_name.example.com"]"#,
            "",
            "is not a DNS name",
        );
        refused(r#"domains = ["-x.example.com"]"#, "", "is not a DNS name");
        refused(
            &format!(r#"{ok}, contact = "ops@example.com""#),
            "",
            "must look like \"mailto:",
        );
        refused(
            &format!(r#"{ok}, contact = "https://example.com""#),
            "",
            "must look like \"mailto:",
        );
        refused(
            &format!(r#"{ok}, directory = "http://ca.example.com/dir""#),
            "",
            "must be an https:// URL",
        );
        refused(
            &format!(r#"{ok}, directory = "not a url""#),
            "",
            "must be an https:// URL",
        );
        refused(
            &format!(r#"{ok}, staging = true, directory = "https://ca.example.com/dir""#),
            "",
            "not both",
        );
        refused(
            &format!(r#"{ok}, challenge = "http-01""#),
            r#"http_listen = "off""#,
            "needs the redirect listener",
        );
        refused(&format!(r#"{ok}, challenge = "dns-01""#), "", "dns-01");
        refused(
            ok,
            r#"tls_cert = "/etc/c.pem"
tls_key = "/etc/k.pem""#,
            "remove tls_cert and tls_key",
        );
        refused(
            &format!(r#"{ok}, ca_file = "/nonexistent/ca.pem""#),
            "",
            "cannot be read",
        );
        refused(r#"domain = ["api.example.com"]"#, "", "unknown field");

        // What works: Let's Encrypt by default, staging one setting away,
        // the names become the public origins.
        let s = load(
            r#"domains = ["API.example.com", "www.example.com"], contact = "mailto:ops@example.com""#,
            r#"listen = "0.0.0.0:443"
http_listen = "0.0.0.0:80""#,
        )
        .unwrap();
        let acme = s.tls.acme.as_ref().unwrap();
        assert_eq!(acme.directory_url(), LETS_ENCRYPT);
        assert_eq!(
            acme.challenge_kind(s.listen, s.http_listen_addr().unwrap()),
            ChallengeKind::TlsAlpn01
        );
        assert_eq!(
            s.public_origins,
            vec!["https://api.example.com", "https://www.example.com"]
        );
        let s = load(
            &format!("{ok}, staging = true"),
            r#"listen = "0.0.0.0:8443""#,
        )
        .unwrap();
        assert_eq!(s.tls.acme.unwrap().directory_url(), LETS_ENCRYPT_STAGING);
        assert_eq!(s.public_origins, vec!["https://api.example.com"]);
        // Behind a port forward of 443 the CA still reaches TLS-ALPN-01;
        // with 80 on this machine and 443 elsewhere, HTTP-01 is chosen.
        let s = load(
            ok,
            r#"listen = "0.0.0.0:8443"
http_listen = "0.0.0.0:80""#,
        )
        .unwrap();
        let acme = s.tls.acme.as_ref().unwrap();
        assert_eq!(
            acme.challenge_kind(s.listen, s.http_listen_addr().unwrap()),
            ChallengeKind::Http01
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nhttp_listen = \"off\"\n[limits]\nbody_bytes = 100\nheader_count = 20\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            env(&[
                ("RAMPART_LIMITS__BODY_BYTES", "200"),
                ("RAMPART_LISTEN", "127.0.0.1:9001"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:9002".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9002, "flag wins");
        assert_eq!(s.limits.body_bytes, 200, "env beats file");
        assert_eq!(s.limits.header_count, 20, "file beats default");
        assert_eq!(s.http_listen_addr().unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(&file, "[limits]\nbody_byts = 1\n").unwrap();
        let err = Settings::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("body_byts"), "{err:#}");
        let err = Settings::load(None, env(&[("RAMPART_LISTN", "x")]), &Overrides::default())
            .unwrap_err();
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db");
        std::fs::write(&secret, "postgres://u:canary@127.0.0.1/db\n").unwrap();
        let s = Settings::load(
            None,
            env(&[("RAMPART_DATABASE_URL_FILE", secret.to_str().unwrap())]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            s.database_url.as_ref().unwrap().expose_secret(),
            "postgres://u:canary@127.0.0.1/db"
        );
        assert!(!format!("{s:?}").contains("canary"), "Debug must redact");
    }

    /// The console's Settings page: no secret, and of a URL only its
    /// scheme and host (a webhook's path or a userinfo part may be the
    /// credential).
    #[test]
    fn the_effective_settings_hold_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(
            &file,
            "database_url = \"postgres://u:canary-db@127.0.0.1/db\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@example.com\"\nusername = \"u\"\npassword = \"canary-smtp\"\n\
             [sms_webhook]\nurl = \"https://hooks.example.com/services/canary-path?k=canary-query\"\nsecret = \"canary-hook\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        let text = effective(&s);
        assert!(!text.contains("canary"), "{text}");
        assert!(
            text.contains("https://hooks.example.com/(redacted)"),
            "{text}"
        );
        assert!(text.contains("smtp"), "the settings are there: {text}");
        // Userinfo, commas, slashes in a password, escaped quotes, what is
        // no URL, and URLs outside quotes.
        for (text, shown) in [
            (
                r#""https://u:pa,ss@host.example/x?k=1""#,
                r#""https://host.example/(redacted)""#,
            ),
            (
                r#""https://u:p/ss@host.example/""#,
                r#""(a URL, redacted)""#,
            ),
            (
                r#""https://h.example/a\"b,canary""#,
                r#""https://h.example/(redacted)""#,
            ),
            (
                r#""https://host.example:8443""#,
                r#""https://host.example:8443""#,
            ),
            (
                r#"url: "https://user:pw@hooks.example.com:8443/services/T0/B1/XyZsecret?k=v","#,
                r#"url: "https://hooks.example.com:8443/(redacted)","#,
            ),
            (
                "[\"syslog+tls://10.0.0.1:6514\", \"https://x.test/a\"]",
                "[\"syslog+tls://10.0.0.1:6514\", \"https://x.test/(redacted)\"]",
            ),
            ("a https://h.example b", "a https://h.example b"),
            ("not a url ://canary", "not a url (a URL, redacted)"),
            ("no url here", "no url here"),
        ] {
            assert_eq!(redact_urls(text), shown, "{text}");
        }
    }

    #[test]
    fn a_higher_layer_replaces_either_form_of_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(&file, "database_url = \"sqlite://from-file.db\"\n").unwrap();
        let secret = dir.path().join("db");
        std::fs::write(&secret, "sqlite://from-env-file.db\n").unwrap();
        let s = Settings::load(
            Some(&file),
            env(&[("RAMPART_DATABASE_URL_FILE", secret.to_str().unwrap())]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            s.database_url.unwrap().expose_secret(),
            "sqlite://from-env-file.db"
        );
    }

    #[test]
    fn weak_argon2_is_refused() {
        let err = Settings::load(
            None,
            env(&[("RAMPART_ARGON2__MEMORY_KIB", "1024")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("floor"));
    }
}
