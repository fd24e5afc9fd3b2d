//! The `rampart` binary's library half: configuration, the data
//! directory, and the wiring that turns settings into a running server.
//! Tests start servers in-process through [`start`].

pub mod acme;
pub mod audit;
pub mod backup;
pub mod config;
pub mod datadir;
pub mod detect;
pub mod drill;
pub mod incident;
pub mod logging;
pub mod scan;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rampart_core::data::keys::KeyManager;
use rampart_core::data::{DataService, DataStore};
use rampart_core::hashing::HashPool;
use rampart_core::mfa::MfaDeps;
use rampart_core::password_policy::PasswordPolicy;
use rampart_core::{AuthConfig, AuthService, Clock, Store, SystemClock};
use rampart_crypto::{Entropy, OsEntropy, PasswordHasher, SecretString};
use rampart_guard::conn::ConnPolicy;
use rampart_http::tls::CertStore;
use rampart_http::{AppState, HttpSettings, Limits};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Overrides, Settings};

/// What a server is built from besides its settings: time and randomness,
/// injected so tests can control them.
#[derive(Clone)]
pub struct Deps {
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

impl Default for Deps {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}

/// The files whose permissions and ownership matter, by role: the data
/// directory, the SQLite file wherever `database_url` puts it, the master
/// key file (when there is one), the TLS key and certificate. The one list
/// `serve`'s start-up check and `scan self` both read.
pub fn sensitive_files(settings: &Settings) -> Vec<rampart_scan::posture::FileFact> {
    use rampart_scan::posture::FileFact;
    let layout = layout(settings);
    let file = |role: &str, path: &std::path::Path, secret: bool| FileFact {
        role: role.to_owned(),
        path: path.to_path_buf(),
        is_dir: false,
        secret,
    };
    let mut files = vec![FileFact {
        is_dir: true,
        ..file("data directory", &layout.dir, false)
    }];
    if let Some(db) = rampart_store::sqlite_path(settings.database_url().expose_secret()) {
        files.push(file("database", &db, true));
    }
    if layout.master_key.exists() {
        files.push(file("master key file", &layout.master_key, true));
    }
    files.push(file("TLS private key", &layout.tls_key, true));
    files.push(file("TLS certificate", &layout.tls_cert, false));
    files
}

/// Every file or directory holding secrets or data that other users can
/// read (of [`sensitive_files`]).
pub fn permission_problems(settings: &Settings) -> Vec<String> {
    let files = sensitive_files(settings);
    let private: Vec<(&str, &std::path::Path)> = files
        .iter()
        .filter(|f| f.secret || f.is_dir)
        .map(|f| (f.role.as_str(), f.path.as_path()))
        .collect();
    datadir::permission_problems(&private)
}

/// Where the data directory's files are, with the configured TLS pair and
/// master key file in place of the generated ones.
pub fn layout(settings: &Settings) -> datadir::Layout {
    let tls = settings.tls_cert.clone().zip(settings.tls_key.clone());
    let mut layout = datadir::Layout::of(&settings.data_dir, tls);
    if let Some(key) = &settings.master_key_file {
        layout.master_key = key.clone();
    }
    layout
}

/// Opens the configured database (applying migrations).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    Ok(open_stores(settings).await?.0)
}

/// The database, as the account store and the data store.
pub async fn open_stores(settings: &Settings) -> Result<(Arc<dyn Store>, Arc<dyn DataStore>)> {
    if settings.is_sqlite() {
        datadir::create_private_dir(&settings.data_dir)?;
    }
    let url = settings.database_url();
    let store = Arc::new(rampart_store::open(url.expose_secret()).await?);
    Ok((store.clone(), store))
}

/// The file development-mode messages go to.
pub const OUTBOX_FILE: &str = "outbox.log";

/// The WebAuthn relying party: configured, or `localhost` and the HTTPS
/// port, or derived from `public_origins`.
fn webauthn(settings: &Settings, https_port: u16) -> Result<webauthn_rs::Webauthn> {
    let w = &settings.webauthn;
    let mut origins = if !w.origins.is_empty() {
        w.origins.clone()
    } else if !settings.public_origins.is_empty() {
        settings.public_origins.clone()
    } else {
        vec![format!("https://localhost:{https_port}")]
    };
    let first: url::Url = origins[0]
        .parse()
        .with_context(|| format!("webauthn origin {:?} is not a URL", origins[0]))?;
    let rp_id = match &w.rp_id {
        Some(id) => id.clone(),
        None => first
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("webauthn origin {first} has no host"))?
            .to_owned(),
    };
    let mut builder = webauthn_rs::WebauthnBuilder::new(&rp_id, &first)
        .map_err(|e| anyhow::anyhow!("webauthn: rp_id {rp_id:?} does not fit origin {first}: {e}"))?
        .rp_name(&settings.mfa.issuer);
    for o in origins.drain(1..) {
        let url: url::Url = o
            .parse()
            .with_context(|| format!("webauthn origin {o:?} is not a URL"))?;
        builder = builder.append_allowed_origin(&url);
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("webauthn configuration: {e}"))
}

/// Where codes and notices go.
fn notifier(settings: &Settings, deps: &Deps) -> Result<Arc<dyn rampart_core::notify::Notifier>> {
    use rampart_notify::{
        Delivery, FileNotifier, SmtpConfig, SmtpNotifier, WebhookConfig, WebhookNotifier,
    };
    if settings.notifier_mode() == config::NotifierMode::Log {
        return Ok(Arc::new(FileNotifier::new(
            settings.data_dir.join(OUTBOX_FILE),
        )));
    }
    let mut delivery = Delivery::default();
    if let Some(s) = &settings.smtp {
        let port = s.port.unwrap_or(match s.security {
            rampart_notify::SmtpSecurity::Tls => 465,
            rampart_notify::SmtpSecurity::Starttls => 587,
        });
        let smtp = SmtpNotifier::new(&SmtpConfig {
            host: s.host.clone(),
            port,
            security: s.security,
            username: s.username.clone(),
            password: s.password.clone(),
            from: s.from.clone(),
            ca_file: s.ca_file.clone(),
        })?;
        delivery.email = Some(Arc::new(smtp));
    }
    if let Some(h) = &settings.sms_webhook {
        let hook = WebhookNotifier::new(
            &WebhookConfig {
                url: h.url.clone(),
                secret: h.secret.clone().unwrap_or_default(),
                ca_file: h.ca_file.clone(),
            },
            deps.clock.clone(),
        )?;
        delivery.sms = Some(Arc::new(hook));
    }
    Ok(Arc::new(delivery))
}

/// What second factors need: the keyring that seals their secrets (the
/// system data key), the notifier, and the WebAuthn relying party.
pub fn mfa_deps(
    settings: &Settings,
    https_port: u16,
    deps: &Deps,
    keys: Arc<rampart_crypto::Keyring>,
) -> Result<MfaDeps> {
    Ok(MfaDeps {
        keys,
        notifier: notifier(settings, deps)?,
        webauthn: Arc::new(webauthn(settings, https_port)?),
    })
}

/// The environment variable that can carry the master key (base64) in
/// place of the key file.
pub const MASTER_KEY_ENV: &str = "RAMPART_MASTER_KEY";

/// The environment variable that can carry a master passphrase.
pub const MASTER_PASSPHRASE_ENV: &str = "RAMPART_MASTER_PASSPHRASE";
const MIN_PASSPHRASE_CHARS: usize = 16;

static PASSPHRASE: std::sync::OnceLock<SecretString> = std::sync::OnceLock::new();

/// The master passphrase entered at start (`serve --master-passphrase-stdin`).
pub fn set_master_passphrase(p: SecretString) {
    let _ = PASSPHRASE.set(p);
}

fn passphrase() -> Option<SecretString> {
    PASSPHRASE.get().cloned().or_else(|| {
        std::env::var_os(MASTER_PASSPHRASE_ENV)
            .map(|v| SecretString::new(v.to_string_lossy().into_owned()))
    })
}

/// Whether the master key lives in a file (neither `RAMPART_MASTER_KEY`
/// nor a passphrase).
pub fn master_from_file() -> bool {
    std::env::var_os(MASTER_KEY_ENV).is_none() && passphrase().is_none()
}

/// The master key: stretched from a passphrase (Argon2id, with a salt kept
/// in the database), or from `RAMPART_MASTER_KEY`, or from the key file.
pub async fn master_key(
    settings: &Settings,
    store: &Arc<dyn Store>,
    data: &Arc<dyn DataStore>,
    entropy: &dyn Entropy,
) -> Result<rampart_crypto::SecretBytes> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let err = |e: rampart_core::StoreError| anyhow::anyhow!("{e}");
    if let Some(pass) = passphrase() {
        if pass.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
            anyhow::bail!(
                "the master passphrase must have at least {MIN_PASSPHRASE_CHARS} characters"
            );
        }
        let kdf = match data.master_kdf().await.map_err(err)? {
            Some(k) => k,
            None => {
                let used = !data.data_keys().await.map_err(err)?.is_empty()
                    || !store.key_checks().await.map_err(err)?.is_empty();
                if used {
                    anyhow::bail!(
                        "this database's master key is not a passphrase: start with its key file or {MASTER_KEY_ENV}"
                    );
                }
                let mut salt = [0u8; 16];
                entropy.fill(&mut salt);
                let p = rampart_crypto::PASSPHRASE_PARAMS;
                data.set_master_kdf(
                    &b64.encode(salt),
                    [p.memory_kib, p.iterations, p.parallelism],
                )
                .await
                .map_err(err)?;
                data.master_kdf()
                    .await
                    .map_err(err)?
                    .ok_or_else(|| anyhow::anyhow!("the passphrase salt was not stored"))?
            }
        };
        let (salt, [memory_kib, iterations, parallelism]) = kdf;
        let params = rampart_crypto::Argon2Params {
            memory_kib,
            iterations,
            parallelism,
        };
        return tokio::task::spawn_blocking(move || stretch_master(&pass, &salt, params)).await?;
    }
    plain_master_key(settings)
}

/// The most a backup's manifest may ask of Argon2id to stretch the
/// master passphrase: what Rampart writes. The manifest is read before
/// its MAC can be checked, so anyone holding a public recipient can
/// write one; it may ask for no more work than a genuine one.
const MAX_KDF: rampart_crypto::Argon2Params = rampart_crypto::PASSPHRASE_PARAMS;

/// The master key without reading a database (a backup is checked
/// against it before its snapshot is opened): from `RAMPART_MASTER_KEY`
/// or the key file, or stretched from the passphrase with the salt and
/// cost `kdf` gives (a backup's manifest), within [`MAX_KDF`].
pub fn master_key_without_database(
    settings: &Settings,
    kdf: Option<&rampart_backup::MasterKdf>,
) -> Result<rampart_crypto::SecretBytes> {
    let Some(pass) = passphrase() else {
        return plain_master_key(settings);
    };
    let kdf = kdf.ok_or_else(|| {
        anyhow::anyhow!(
            "a master passphrase is given, but this backup was made with a master key file"
        )
    })?;
    let params = rampart_crypto::Argon2Params {
        memory_kib: kdf.memory_kib,
        iterations: kdf.iterations,
        parallelism: kdf.parallelism,
    };
    if params.memory_kib > MAX_KDF.memory_kib
        || params.iterations > MAX_KDF.iterations
        || params.parallelism > MAX_KDF.parallelism
    {
        anyhow::bail!(
            "the backup asks for a master passphrase stretch beyond what Rampart accepts"
        );
    }
    stretch_master(&pass, &kdf.salt, params)
}

/// The master key stretched from the passphrase with a salt (base64) and
/// cost kept beside the data: in the database, or a backup's manifest.
fn stretch_master(
    pass: &SecretString,
    salt_b64: &str,
    params: rampart_crypto::Argon2Params,
) -> Result<rampart_crypto::SecretBytes> {
    use base64::Engine;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(salt_b64)
        .map_err(|_| anyhow::anyhow!("the passphrase salt is corrupt (not base64)"))?;
    rampart_crypto::stretch_passphrase(pass, &salt, params)
        .map_err(|e| anyhow::anyhow!("master passphrase: {e}"))
}

/// The master key from `RAMPART_MASTER_KEY`, else from the key file.
fn plain_master_key(settings: &Settings) -> Result<rampart_crypto::SecretBytes> {
    if let Some(v) = std::env::var_os(MASTER_KEY_ENV) {
        let text = SecretString::new(v.to_string_lossy().into_owned());
        return datadir::decode_master_key(&text)
            .ok_or_else(|| anyhow::anyhow!("{MASTER_KEY_ENV} is not 32 bytes of base64"));
    }
    datadir::read_master_key(&layout(settings).master_key)
}

/// Reads the master key again: the file may have been replaced by `rampart
/// keys rotate --master`; a key from the environment or a passphrase
/// cannot change while the process runs.
fn master_reloader(
    settings: &Settings,
    current: &rampart_crypto::SecretBytes,
) -> Box<dyn Fn() -> Option<rampart_crypto::SecretBytes> + Send + Sync> {
    if master_from_file() {
        let path = layout(settings).master_key;
        Box::new(move || datadir::read_master_key(&path).ok())
    } else {
        let bytes = current.expose_secret().to_vec();
        Box::new(move || Some(rampart_crypto::SecretBytes::new(bytes.clone())))
    }
}

/// The account and data services over one database, with the key
/// hierarchy unlocked. Refuses (touching nothing) a master key that does
/// not open this database's keys.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub auth: Arc<AuthService>,
    pub data: Arc<DataService>,
    /// The audit trail every service records through.
    pub audit: rampart_core::audit::Audit,
    pub audit_keys: Arc<rampart_crypto::audit::AuditKeys>,
}

impl Services {
    /// Ends the audit writer (its last events committed and checkpointed)
    /// and closes the database.
    pub async fn close(&self) {
        self.audit.stop().await;
        self.store.close().await;
    }
}

const WRONG_MASTER: &str = "the master key (or passphrase) is not the one this database's encrypted values were sealed with. \
     Every Rampart node on one database must use the same master key: copy the first node's \
     master.key here (or point master_key_file or RAMPART_MASTER_KEY at it), or restore the right key from your backup.";

/// On a database from before data keys, the master key (from its file or
/// the environment) is checked against the stored key check before the
/// migrations run, so a refused start leaves the database as it was.
async fn check_before_migrating(settings: &Settings) -> Result<()> {
    if passphrase().is_some() {
        return Ok(());
    }
    let from_env = std::env::var_os(MASTER_KEY_ENV).is_some();
    if !from_env && !layout(settings).master_key.exists() {
        return Ok(());
    }
    if settings.is_sqlite() {
        datadir::create_private_dir(&settings.data_dir)?;
    }
    let checks = rampart_store::legacy_key_checks(settings.database_url().expose_secret()).await?;
    if checks.is_empty() {
        return Ok(());
    }
    let master = plain_master_key(settings)?;
    let ring = rampart_crypto::Keyring::new(&master, &[])
        .map_err(|e| anyhow::anyhow!("master key: {e}"))?;
    if checks.iter().all(|c| ring.open("key_check", c).is_ok()) {
        Ok(())
    } else {
        anyhow::bail!(WRONG_MASTER)
    }
}

/// After a master key file was just created: if the database already
/// holds sealed values, the real key is missing. Removes the new file and
/// refuses, so nothing changes.
pub async fn refuse_new_key_for_used_database(settings: &Settings, created: bool) -> Result<()> {
    if !created || !master_from_file() {
        return Ok(());
    }
    let (store, data) = open_stores(settings).await?;
    let used = !data
        .data_keys()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_empty()
        || !store
            .key_checks()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_empty();
    store.close().await;
    if used {
        let path = layout(settings).master_key;
        let _ = std::fs::remove_file(&path);
        anyhow::bail!(
            "the master key file {} is missing, and this database holds values sealed with a master key. \
             Every Rampart node on one database must use the same master key: restore the key file from \
             your backup or copy it from the first node (or set master_key_file or {MASTER_KEY_ENV}); \
             nothing was changed.",
            path.display()
        );
    }
    Ok(())
}

/// For commands run beside the server: creates the master key on a fresh
/// installation, then opens the services.
pub async fn cli_services(settings: &Settings) -> Result<Services> {
    let deps = Deps::default();
    let created = if master_from_file() {
        datadir::create_private_dir(&settings.data_dir)?;
        datadir::ensure_master_key(&layout(settings).master_key, deps.entropy.as_ref())?
    } else {
        false
    };
    refuse_new_key_for_used_database(settings, created).await?;
    services(
        settings,
        settings.listen.port(),
        &deps,
        rampart_core::audit::WriterMode::Command,
    )
    .await
}

pub async fn services(
    settings: &Settings,
    https_port: u16,
    deps: &Deps,
    mode: rampart_core::audit::WriterMode,
) -> Result<Services> {
    check_before_migrating(settings).await?;
    let (store, data_store) = open_stores(settings).await?;
    let built = async {
        let mut master = master_key(settings, &store, &data_store, deps.entropy.as_ref()).await?;
        let manager = |m: &rampart_crypto::SecretBytes| -> Result<Arc<KeyManager>> {
            Ok(Arc::new(
                KeyManager::new(
                    m,
                    master_reloader(settings, m),
                    data_store.clone(),
                    deps.entropy.clone(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            ))
        };
        let mut keys = manager(&master)?;
        // `keys rotate --master` interrupted after re-wrapping the data keys
        // but before the new key file took the old one's place: finish it.
        let next = layout(settings).master_key.with_extension("key.next");
        if master_from_file() && next.exists() {
            if keys.verify_all().await.is_err() {
                let candidate = datadir::read_master_key(&next)?;
                let k = manager(&candidate)?;
                if k.verify_all().await.is_ok() {
                    std::fs::rename(&next, layout(settings).master_key)?;
                    tracing::warn!("finished an interrupted master key rotation");
                    master = candidate;
                    keys = k;
                }
            } else {
                let _ = std::fs::remove_file(&next);
            }
        }
        let data_keys = data_store
            .data_keys()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let checks = store
            .key_checks()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // A database from before data keys holds values sealed with the
        // master key itself: check the key against them before anything
        // is written.
        let legacy = data_keys.is_empty() && !checks.is_empty();
        if legacy {
            let ring = rampart_crypto::Keyring::new(&master, &[])
                .map_err(|e| anyhow::anyhow!("master key: {e}"))?;
            if !checks.iter().all(|c| ring.open("key_check", c).is_ok()) {
                anyhow::bail!(WRONG_MASTER);
            }
        }
        keys.verify_all().await.map_err(|e| match e {
            rampart_core::Error::MasterKeyMismatch => anyhow::anyhow!(WRONG_MASTER),
            e => anyhow::anyhow!("{e}"),
        })?;
        // The master fingerprint: set on first use, and a quick refusal of
        // another master even when no data key exists yet.
        match data_store
            .master_fingerprint()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            Some(id) if id != keys.master_id() => anyhow::bail!(WRONG_MASTER),
            Some(_) => {}
            None => data_store
                .init_master_fingerprint(&keys.master_id())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        }
        let system = keys
            .system_ring(&master, legacy, deps.clock.now())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mfa = mfa_deps(settings, https_port, deps, Arc::new(system))?;
        let audit_keys = Arc::new(audit::keys(&keys, store.as_ref(), deps.clock.as_ref()).await?);
        let (audit, _writer) = audit::start(
            settings,
            store.clone(),
            audit_keys.clone(),
            mode,
            deps.clock.clone(),
            deps.entropy.as_ref(),
        )
        .await?;
        let auth = auth_service(settings, store.clone(), deps, mfa, audit.clone())?;
        if let Err(e) = auth.verify_master_key().await {
            return Err(match e {
                rampart_core::Error::MasterKeyMismatch => anyhow::anyhow!(WRONG_MASTER),
                e => anyhow::anyhow!("{e}"),
            });
        }
        // Secrets still sealed with an older system key (the master key of
        // a database from before data keys) move to the current one.
        let moved = auth
            .reseal_factors()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if moved > 0 {
            tracing::info!(
                values = moved,
                "second-factor secrets re-sealed with the current system key"
            );
        }
        let mut data = DataService::new(data_store.clone(), auth.clone(), keys);
        if !settings.audit.data_reads {
            data = data.without_read_events();
        }
        let data = Arc::new(data);
        Ok(Services {
            store: store.clone(),
            auth,
            data,
            audit,
            audit_keys,
        })
    }
    .await;
    if built.is_err() {
        store.close().await;
    }
    built
}

/// Builds the account service over a store.
pub fn auth_service(
    settings: &Settings,
    store: Arc<dyn Store>,
    deps: &Deps,
    mfa: MfaDeps,
    audit: rampart_core::audit::Audit,
) -> Result<Arc<AuthService>> {
    let hasher = PasswordHasher::new(settings.argon2_params())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let workers = match settings.hashing.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let pool = HashPool::start(
        hasher,
        deps.entropy.clone(),
        workers,
        settings.hashing.queue,
    );
    let config = AuthConfig {
        registration: settings.registration,
        policy: PasswordPolicy::preset(settings.password.preset),
        idle_timeout: Duration::from_secs(settings.session.idle_timeout_secs),
        absolute_lifetime: Duration::from_secs(settings.session.absolute_lifetime_secs),
        brute_force: settings.brute_force.policy(),
        mfa: settings.mfa.policy(),
        accounts: settings.accounts_policy(),
    };
    Ok(Arc::new(
        AuthService::new(
            store,
            deps.clock.clone(),
            deps.entropy.clone(),
            pool,
            config,
            mfa,
            audit,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

fn limits(settings: &Settings) -> Limits {
    let l = &settings.limits;
    Limits {
        body_bytes: l.body_bytes,
        header_bytes: l.header_bytes,
        header_count: l.header_count,
        header_read_timeout: Duration::from_secs(l.header_read_timeout_secs),
        request_timeout: Duration::from_secs(l.request_timeout_secs),
        idle_timeout: Duration::from_secs(l.idle_timeout_secs.max(l.request_timeout_secs + 5)),
        max_connections: l.max_connections,
        max_connections_per_address: l
            .max_connections_per_address
            .unwrap_or_else(|| ConnPolicy::default_per_address(l.max_connections)),
        tls_handshake_timeout: Duration::from_secs(l.header_read_timeout_secs),
        shutdown_grace: Duration::from_secs(l.shutdown_grace_secs),
    }
}

/// Connections the kernel queues for `accept`: room for a burst (one
/// address opening thousands at once) without dropping a newcomer's SYN
/// while the accept loop refuses the burst. The kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart may bind while old
    // connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A server that is up and serving.
pub struct Running {
    pub https_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub layout: datadir::Layout,
    pub created: datadir::Created,
    pub warnings: Vec<String>,
    /// The one-time setup token, when no administrator exists yet.
    pub setup_token: Option<SecretString>,
    /// Development mode: where messages are written instead of delivered.
    pub outbox: Option<std::path::PathBuf>,
    pub auth: Arc<AuthService>,
    pub data: Arc<DataService>,
    pub certs: Arc<CertStore>,
    pub guard: Arc<rampart_http::guard::Guard>,
    pub audit: rampart_core::audit::Audit,
    /// Where `/metrics` is served, unless `metrics_listen = "off"`.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// SQLite: the data directory's lock, shared, so that `rampart backup
    /// restore` never replaces the database under a running server.
    _lock: Option<std::fs::File>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded by the
    /// grace period), writes the guard's folded counts, stops the audit
    /// trail (a final event and checkpoint), then closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.auth.flush_notices().await;
        self.guard.flush_all_events().await;
        self.audit.stop().await;
        self.auth.store().close().await;
    }

    /// Re-reads the TLS certificate and key (what SIGHUP does).
    pub fn reload_tls(&self) {
        match self.certs.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(rampart_http::tls::TlsError::Managed) => {
                tracing::info!(
                    "the certificate is obtained by ACME ([tls] acme): nothing to reload"
                )
            }
            Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the old certificate"),
        }
    }
}

/// Prepares the data directory, opens the database, binds the listeners
/// and starts serving.
pub async fn start(settings: &Settings, deps: Deps) -> Result<Running> {
    let (layout, created) = datadir::prepare(
        layout(settings),
        deps.clock.now().to_system_time(),
        deps.entropy.as_ref(),
        master_from_file(),
    )?;
    let warnings = datadir::enforce(permission_problems(settings), settings.strict)?;
    let lock = if settings.is_sqlite() {
        Some(backup::hold_lock(&settings.data_dir)?)
    } else {
        None
    };
    backup::sweep_scratch(&settings.data_dir, deps.clock.now().to_system_time());
    let certs = CertStore::open(&layout.tls_cert, &layout.tls_key)
        .context("cannot load the TLS certificate")?;
    let tls = rampart_http::tls::server_config(
        certs.clone(),
        settings.tls_min_version,
        settings.tls.acme.is_some(),
    )?;

    let https =
        listen(settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
    let https_addr = https.local_addr()?;

    refuse_new_key_for_used_database(settings, created.master_key).await?;
    let Services {
        auth,
        data,
        audit,
        audit_keys,
        ..
    } = services(
        settings,
        https_addr.port(),
        &deps,
        rampart_core::audit::WriterMode::Server,
    )
    .await?;
    let policy = &auth.config().mfa;
    if !policy.required_for.is_empty()
        && auth
            .usable_methods()
            .iter()
            .all(|m| *m == rampart_core::mfa::Method::RecoveryCode)
    {
        audit.stop().await;
        auth.store().close().await;
        anyhow::bail!(
            "[mfa] required_for = {:?} but none of the allowed methods can be used: email needs notifier = \"log\" \
             or [smtp], SMS needs [sms_webhook]. Allow totp or webauthn, or configure delivery.",
            policy.required_for
        );
    }
    let setup_token = auth
        .issue_setup_token()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map(|(t, _)| t);
    let outbox = (settings.notifier_mode() == config::NotifierMode::Log).then(|| {
        let outbox = settings.data_dir.join(OUTBOX_FILE);
        tracing::warn!(
            outbox = %outbox.display(),
            "notifier = \"log\": sign-in codes and security notices are written to a file and not delivered"
        );
        outbox
    });
    let http = match settings.http_listen_addr()? {
        Some(a) => Some(listen(a).with_context(|| format!("cannot listen on {a}"))?),
        None => None,
    };
    let http_addr = http.as_ref().map(|l| l.local_addr()).transpose()?;

    let guard = Arc::new(
        rampart_http::guard::Guard::new(
            settings.guard.clone(),
            auth.store().clone(),
            deps.clock.clone(),
            deps.entropy.clone(),
            audit.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?,
    );
    // Blocks are enforced from the first request on.
    guard
        .refresh_blocks()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read address blocks: {e}"))?;
    guard.refresh_incidents().await;
    let (shutdown, rx) = watch::channel(false);
    let http_metrics = Arc::new(rampart_http::metrics::HttpMetrics::default());
    let verification = Arc::new(std::sync::Mutex::new(audit::Verification::default()));
    let metrics = match settings.metrics_listen_addr()? {
        Some(a) => Some(listen(a).with_context(|| {
            format!("cannot listen on {a} (metrics_listen; `off` turns it off)")
        })?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
    let limits = limits(settings);
    let mut origins = settings.public_origins.clone();
    if origins.is_empty() {
        let port = https_addr.port();
        origins.push(format!("https://localhost:{port}"));
        origins.push(format!("https://127.0.0.1:{port}"));
        origins.push(format!("https://[::1]:{port}"));
    }
    let state = AppState::new(rampart_http::state::Shared {
        auth: auth.clone(),
        data: data.clone(),
        incidents: Arc::new(rampart_core::incident::Incidents::new(
            auth.clone(),
            data.clone(),
            audit_keys.clone(),
        )),
        settings: Arc::new(HttpSettings {
            limits: limits.clone(),
            allowed_origins: origins,
            session_cookie_max_age: Duration::from_secs(settings.session.absolute_lifetime_secs),
            backup_schedule: backup::scheduled(settings).then(|| settings.backup.schedule.clone()),
            incident_plan: incident::plan_path(settings),
            effective: config::effective(settings),
        }),
        request_ids: rampart_http::middleware::RequestIds::new(deps.entropy.as_ref()),
        guard: guard.clone(),
        metrics: http_metrics.clone(),
        certs: certs.clone(),
    });
    let router = rampart_http::router(state);
    // A certificate obtained by ACME earlier is in service from the first
    // request on; until there is one, the generated certificate is.
    let acme = match &settings.tls.acme {
        Some(a) => {
            let acme = acme::Acme {
                settings: a.clone(),
                challenge: a.challenge_kind(settings.listen, settings.http_listen_addr()?),
                store: auth.store().clone(),
                keys: auth.system_keys().clone(),
                audit: audit.clone(),
                clock: deps.clock.clone(),
                entropy: deps.entropy.clone(),
                certs: certs.clone(),
            };
            if let Err(e) = acme.load().await {
                tracing::error!(error = %format!("{e:#}"), "the stored ACME certificate cannot be served; the generated one is, until a new one is obtained");
            }
            Some(acme)
        }
        None => None,
    };
    let mut tasks = vec![tokio::spawn(rampart_http::server::serve_https(
        https,
        router,
        tls,
        limits.clone(),
        guard.clone(),
        rx.clone(),
    ))];
    if let Some(listener) = http {
        let mut hosts = vec![match https_addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_owned(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        }];
        hosts.push("localhost".to_owned());
        for origin in &settings.public_origins {
            let host = origin.trim_start_matches("https://");
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            hosts.push(host.to_owned());
        }
        tasks.push(tokio::spawn(rampart_http::redirect::serve_redirect(
            listener,
            hosts,
            https_addr.port(),
            limits,
            guard.clone(),
            certs.clone(),
            rx.clone(),
        )));
    }
    if let Some(acme) = acme {
        tasks.push(tokio::spawn(acme::run(acme, rx.clone())));
    }
    tasks.push(tokio::spawn(watch_certificate(
        certs.clone(),
        layout.clone(),
        deps.clone(),
        rx.clone(),
    )));
    tasks.push(tokio::spawn(guard.clone().run(rx.clone())));
    tasks.push(tokio::spawn(scan::run_schedule(
        scan::Schedule {
            settings: settings.clone(),
            auth: auth.clone(),
            clock: deps.clock.clone(),
            entropy: deps.entropy.clone(),
        },
        rx.clone(),
    )));
    for st in &settings.audit.streams {
        // Checked when the settings were loaded; read again here for the
        // files it names.
        let config = st.config()?;
        let chains = vec![audit.node().to_owned(), format!("{}-cli", audit.node())];
        tasks.push(tokio::spawn(rampart_notify::stream::run(
            auth.store().clone(),
            config,
            chains,
            Arc::new(rampart_notify::stream::StreamState::default()),
            rx.clone(),
        )));
    }
    if let Some(url) = &settings.audit.witness_url {
        let ca = match &settings.audit.witness_ca_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("[audit] witness_ca_file {}", f.display()))?,
            ),
            None => None,
        };
        let url = url::Url::parse(url).context("[audit] witness_url")?;
        tasks.push(tokio::spawn(rampart_notify::stream::post_checkpoints(
            url,
            ca,
            audit.stats().checkpoints.subscribe(),
            rx.clone(),
        )));
    }
    if backup::scheduled(settings) {
        tasks.push(tokio::spawn(backup::run_schedule(
            backup::Scheduled {
                settings: settings.clone(),
                svc: Services {
                    store: auth.store().clone(),
                    auth: auth.clone(),
                    data: data.clone(),
                    audit: audit.clone(),
                    audit_keys: audit_keys.clone(),
                },
                entropy: deps.entropy.clone(),
            },
            rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(incident::remind_drills(
        auth.store().clone(),
        audit.clone(),
        deps.clock.clone(),
        settings.incident.drill_every_days,
        incident::FIRST_LOOK,
        rx.clone(),
    )));
    tasks.push(tokio::spawn(audit::retain_in_background(
        auth.store().clone(),
        audit_keys.clone(),
        audit.clone(),
        deps.clock.clone(),
        settings.audit.retention_days,
        rx.clone(),
    )));
    tasks.push(tokio::spawn(audit::verify_in_background(
        settings.clone(),
        auth.store().clone(),
        audit_keys,
        audit.clone(),
        deps.clock.clone(),
        Duration::from_secs(settings.audit.verify_every_secs.max(1)),
        verification.clone(),
        rx.clone(),
    )));
    if let Some(listener) = metrics {
        let (audit, guard, clock, verification) = (
            audit.clone(),
            guard.clone(),
            deps.clock.clone(),
            verification.clone(),
        );
        let figures = move || {
            use std::sync::atomic::Ordering;
            let stats = audit.stats();
            let at = stats.checkpoint_at_ms.load(Ordering::Relaxed);
            let v = verification.lock().unwrap_or_else(|e| e.into_inner());
            rampart_http::metrics::TrailFigures {
                events_written: stats.written.load(Ordering::Relaxed),
                queued: audit.queued() as u64,
                by_action: stats
                    .by_action
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
                checkpoint_age_secs: (at > 0)
                    .then(|| (clock.now().millis() - at).max(0) as f64 / 1000.0),
                checkpoint_size: stats.checkpoint_size.load(Ordering::Relaxed),
                verified_ok: v.ok,
                verified_at_secs: v.at.map(|t| t.millis() as f64 / 1000.0),
                verified_events: v.events,
                blocks_in_force: guard.blocks_in_force() as u64,
            }
        };
        let m = Arc::new(rampart_http::metrics::Metrics {
            http: http_metrics,
            trail: Box::new(figures),
            scrapes: Default::default(),
        });
        tasks.push(tokio::spawn(rampart_http::metrics::serve(
            listener,
            m,
            rx.clone(),
        )));
    }
    if settings.detect.enabled {
        let ctx = detect::Ctx {
            settings: settings.detect.clone(),
            data_dir: settings.data_dir.clone(),
            auth: auth.clone(),
            guard: guard.clone(),
            audit: audit.clone(),
            clock: deps.clock.clone(),
            entropy: deps.entropy.clone(),
            queued: Default::default(),
        };
        let webhook = settings.detect.webhook()?;
        tasks.push(detect::start(ctx.clone(), rx.clone())?);
        tasks.push(tokio::spawn(detect::deliver(ctx, webhook, rx.clone())));
    }
    tasks.push(tokio::spawn(sweep(auth.clone(), data.clone(), rx)));
    // A rotation or schema change interrupted by a stop resumes here.
    let resume = data.clone();
    tokio::spawn(async move {
        match resume.reseal(&|_, _| {}).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                records = n,
                "re-encrypted records left over from an interrupted rotation or schema change"
            ),
            Err(e) => tracing::error!(error = %e, "re-encryption of stale records failed"),
        }
    });
    Ok(Running {
        https_addr,
        http_addr,
        layout,
        created,
        warnings,
        setup_token,
        outbox,
        auth,
        data,
        certs,
        guard,
        audit,
        metrics_addr,
        shutdown,
        tasks,
        _lock: lock,
    })
}

/// Polls the certificate files and reloads when they change, renewing
/// Rampart's own self-signed certificate first when it is due.
async fn watch_certificate(
    certs: Arc<CertStore>,
    layout: datadir::Layout,
    deps: Deps,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_renewal_error = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Reads and parses a few hundred bytes; a renewal is written here
        // and picked up by the reload below on the same pass.
        let now = deps.clock.now().to_system_time();
        match datadir::renew_generated_cert(&layout, now, deps.entropy.as_ref()) {
            Ok(renewed) => {
                last_renewal_error = None;
                if renewed {
                    tracing::warn!(
                        cert = %layout.tls_cert.display(),
                        "self-signed TLS certificate renewed (new key); clients that trust or pin the old one need the new file"
                    );
                }
            }
            Err(e) => {
                let e = format!("{e:#}");
                if last_renewal_error.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "cannot renew the self-signed TLS certificate");
                    last_renewal_error = Some(e);
                }
            }
        }
        match certs.reload_if_changed() {
            Ok(true) => tracing::info!("TLS certificate files changed; reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "TLS files changed but cannot be loaded; keeping the old certificate")
            }
        }
    }
}

/// Every five minutes: deletes expired sessions, brute-force counts that
/// are quiet, expired second-factor state and mailed links, and the
/// accounts whose deletion's grace period is over.
async fn sweep(auth: Arc<AuthService>, data: Arc<DataService>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match auth.purge_expired_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
        if let Err(e) = auth.purge_mfa().await {
            tracing::warn!(error = %e, "second-factor sweep failed");
        }
        if let Err(e) = auth.purge_quiet_login_failures().await {
            tracing::warn!(error = %e, "login failure sweep failed");
        }
        if let Err(e) = auth.purge_expired_links().await {
            tracing::warn!(error = %e, "expired link sweep failed");
        }
        match data.delete_due_accounts().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                count = n,
                "accounts deleted at the end of their grace period"
            ),
            Err(e) => tracing::warn!(error = %e, "account deletion sweep failed"),
        }
    }
}
