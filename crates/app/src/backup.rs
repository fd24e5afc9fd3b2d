//! `rampart backup`: encrypted snapshots, checked by restoring them
//! (ADR 0013). The file format is `rampart-backup`'s; this module takes
//! the snapshot, finds the keys, restores into scratch space, checks, and
//! records what it did in the audit trail.
//!
//! Plaintext only ever lies in a private scratch directory inside the
//! data directory (where the live database already is), removed when the
//! command ends, whatever happens.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rampart_backup::{ChainHead, Manifest, Seal, Unseal};
use rampart_core::audit::{AuditStore, Category, Event, Expect, Severity, FAILURE, SUCCESS};
use rampart_core::data::DataStore;
use rampart_core::{Store as _, Timestamp};
use rampart_crypto::{Entropy, SecretString};
use rampart_scan::Progress;
use rampart_store::SqlStore;

use crate::config::Settings;

/// Backup files end so.
pub const EXTENSION: &str = "rampart-backup";
/// The shortest passphrase a backup may be sealed to.
pub const MIN_PASSPHRASE_CHARS: usize = 16;
/// A server holds this file (shared) while it serves a data directory; a
/// restore takes it exclusively, so it never replaces a database in use.
pub const LOCK_FILE: &str = "rampart.lock";

use rampart_core::audit::backup_actions::{CREATED, RESTORED, VERIFIED};

/// A backup written.
#[derive(Debug)]
pub struct Created {
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest: Manifest,
}

/// A backup restored into scratch space and checked.
#[derive(Debug)]
pub struct Checked {
    pub manifest: Manifest,
    /// Audit events verified, over every chain.
    pub events: u64,
}

impl Checked {
    pub fn render(&self, file: &Path) -> String {
        let m = &self.manifest;
        let rows: u64 = m.tables.values().sum();
        format!(
            "OK: {} is a whole backup, restored and checked\n  \
             taken {} (the recovery point), Rampart {}, schema {}, from {}\n  \
             {} tables, {rows} rows, integrity ok, row counts match\n  \
             audit trail: {} events on {} chains verified up to the recorded heads\n  \
             sentinel {} found\n",
            file.display(),
            m.created_at,
            m.rampart_version,
            m.schema_version,
            m.source,
            m.tables.len(),
            self.events,
            m.chain_heads.len(),
            m.sentinel,
        )
    }
}

/// The server's lock on its data directory, held while it serves.
pub fn hold_lock(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.try_lock_shared()
        .map_err(|_| anyhow!("{} is locked by a restore in progress", path.display()))?;
    Ok(file)
}

/// Whom new backups are sealed to: the configured recipients and
/// Rampart's own check recipient, or the configured passphrase.
async fn seal(settings: &Settings, svc: &crate::Services) -> Result<Seal> {
    if let Some(pass) = configured_passphrase(settings)? {
        return Ok(Seal::Passphrase(pass));
    }
    if settings.backup.recipients.is_empty() {
        bail!(
            "no one to seal the backup to: set [backup] recipients (an `age1…` key from `rampart backup keygen`, \
             whose identity you keep off this machine) or [backup] passphrase_file"
        );
    }
    let mut recipients =
        rampart_backup::parse_recipients(&settings.backup.recipients).map_err(|e| anyhow!(e))?;
    recipients.push(check_identity(svc).await?.to_public());
    Ok(Seal::Recipients(recipients))
}

fn configured_passphrase(settings: &Settings) -> Result<Option<SecretString>> {
    settings
        .backup
        .passphrase_file
        .as_deref()
        .map(read_passphrase)
        .transpose()
}

/// A passphrase file's first line.
pub fn read_passphrase(path: &Path) -> Result<SecretString> {
    let text = SecretString::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?,
    );
    let line = SecretString::new(
        text.expose_secret()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    );
    if line.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        bail!(
            "the passphrase in {} is shorter than {MIN_PASSPHRASE_CHARS} characters",
            path.display()
        );
    }
    Ok(line)
}

/// Reads an age identity file (`AGE-SECRET-KEY-1…` lines).
pub fn read_identities(path: &Path) -> Result<Vec<rampart_backup::age::x25519::Identity>> {
    let text = SecretString::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the identity file {}", path.display()))?,
    );
    rampart_backup::parse_identities(text.expose_secret())
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Rampart's own backup identity, from this deployment's database.
async fn check_identity(svc: &crate::Services) -> Result<rampart_backup::age::x25519::Identity> {
    let secret = svc
        .data
        .keys()
        .backup_check_secret(svc.auth.clock().now())
        .await
        .map_err(|e| anyhow!("the backup check key: {e}"))?;
    rampart_backup::identity_from_secret(secret.expose_secret()).map_err(|e| anyhow!(e))
}

/// What opens a backup: an identity file, a passphrase file, the
/// configured passphrase, or Rampart's own check identity (from the
/// database of the configured data directory, when it has one).
pub async fn unseal(
    settings: &Settings,
    identity: Option<&Path>,
    passphrase: Option<&Path>,
) -> Result<Unseal> {
    if let Some(path) = identity {
        return Ok(Unseal::Identities(read_identities(path)?));
    }
    if let Some(path) = passphrase {
        return Ok(Unseal::Passphrase(read_passphrase(path)?));
    }
    if let Some(pass) = configured_passphrase(settings)? {
        return Ok(Unseal::Passphrase(pass));
    }
    if !database_exists(settings) {
        bail!(
            "give --identity FILE (the age identity of one of the backup's recipients) or --passphrase-file FILE: \
             this data directory has no database holding Rampart's own backup key"
        );
    }
    let svc = crate::cli_services(settings).await?;
    let id = check_identity(&svc).await;
    svc.close().await;
    Ok(Unseal::Identities(vec![id?]))
}

fn database_exists(settings: &Settings) -> bool {
    match rampart_store::sqlite_path(settings.database_url().expose_secret()) {
        Some(p) => p.exists(),
        None => true,
    }
}

/// Where to write: `to`, or `[backup] dir`; created private, and never
/// inside the data directory (which holds the master key).
fn destination(settings: &Settings, to: Option<&Path>) -> Result<PathBuf> {
    let dir = to
        .map(Path::to_path_buf)
        .or_else(|| settings.backup.dir.clone())
        .ok_or_else(|| anyhow!("give --to DIR, or set [backup] dir"))?;
    crate::datadir::create_private_dir(&dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    if let Ok(data) = settings.data_dir.canonicalize() {
        if dir.starts_with(&data) {
            bail!(
                "refusing to write a backup into the data directory ({}): it holds the master key, and a backup \
                 must survive the loss of that directory. Choose a directory on another disk or machine.",
                data.display()
            );
        }
    }
    Ok(dir)
}

/// A private scratch directory for plaintext, inside the data directory.
fn scratch(settings: &Settings) -> Result<tempfile::TempDir> {
    crate::datadir::create_private_dir(&settings.data_dir)?;
    tempfile::Builder::new()
        .prefix(".backup-scratch-")
        .tempdir_in(&settings.data_dir)
        .with_context(|| {
            format!(
                "cannot make a scratch directory in {}",
                settings.data_dir.display()
            )
        })
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// Takes a backup of the live database into `to` (or `[backup] dir`).
pub async fn create(
    settings: &Settings,
    svc: &crate::Services,
    to: Option<&Path>,
    entropy: &dyn Entropy,
    progress: &dyn Progress,
) -> Result<Created> {
    let dir = destination(settings, to)?;
    let seal = seal(settings, svc).await?;
    let now = svc.auth.clock().now();
    let live = rampart_store::open(settings.database_url().expose_secret()).await?;
    let result = snapshot_and_seal(&live, settings, &dir, &seal, now, entropy, progress).await;
    live.close().await;
    let outcome = match &result {
        Ok(c) => Event::new(now, CREATED, Category::Process, SUCCESS)
            .object(&file_name(&c.path))
            .field("backup.bytes", c.bytes)
            .field("backup.rows", c.manifest.tables.values().sum::<u64>()),
        Err(e) => Event::new(now, CREATED, Category::Process, FAILURE)
            .severity(Severity::High)
            .reason(Some(&format!("{e:#}"))),
    };
    let _ = svc.audit.record_durable(outcome).await;
    result
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn snapshot_and_seal(
    live: &SqlStore,
    settings: &Settings,
    dir: &Path,
    seal: &Seal,
    now: Timestamp,
    entropy: &dyn Entropy,
    progress: &dyn Progress,
) -> Result<Created> {
    let scratch = scratch(settings)?;
    let snap_path = scratch.path().join("snapshot.db");
    let mut sentinel = [0u8; 16];
    entropy.fill(&mut sentinel);
    let sentinel = format!("bks_{}", hex::encode(sentinel));
    live.write_backup_sentinel(&sentinel, now)
        .await
        .map_err(err)?;
    let source = if settings.is_sqlite() {
        progress.step("taking the snapshot", 0, 1);
        live.snapshot_sqlite(&snap_path).await.map_err(err)?;
        progress.step("taking the snapshot", 1, 1);
        "sqlite"
    } else {
        let target = rampart_store::open(&sqlite_url(&snap_path)).await?;
        let copied = live
            .copy_rows_to(&target, &mut |done, total| {
                progress.step("rows copied", done, total)
            })
            .await;
        target.close().await;
        copied.map_err(err)?;
        "postgres"
    };
    let (tables, chain_heads, fingerprint) = describe(&snap_path).await?;
    let (sha, bytes) = rampart_backup::sha256_of(std::fs::File::open(&snap_path)?)?;
    let manifest = Manifest {
        format: 1,
        rampart_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now.to_rfc3339(),
        created_at_ms: now.millis(),
        schema_version: rampart_store::SCHEMA_VERSION,
        source: source.to_owned(),
        tables,
        chain_heads,
        master_fingerprint: fingerprint,
        sentinel,
        snapshot_bytes: bytes,
        snapshot_sha256: sha,
    };
    let name = format!(
        "rampart-{}.{EXTENSION}",
        now.to_rfc3339()
            .replace([':', '-'], "")
            .trim_end_matches('Z')
            .replace('.', "-")
    );
    let path = dir.join(&name);
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    let partial = dir.join(format!(".{name}.partial"));
    let file = create_private_file(&partial)?;
    let written = (|| -> Result<u64> {
        let out = std::io::BufWriter::new(file);
        let snapshot = std::fs::File::open(&snap_path)?;
        let out = rampart_backup::write(out, seal, &manifest, snapshot, &mut |done| {
            progress.step("bytes sealed", done, bytes)
        })?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    })();
    let size = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Created {
        path,
        bytes: size,
        manifest,
    })
}

fn create_private_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Row counts, chain heads and master fingerprint of a snapshot file.
async fn describe(snap: &Path) -> Result<(BTreeMap<String, u64>, Vec<ChainHead>, Option<String>)> {
    let s = rampart_store::open_as_is(&sqlite_url(snap)).await?;
    let result = async {
        let tables = s.table_counts().await.map_err(err)?;
        let heads = chain_heads(&s).await?;
        let fp = DataStore::master_fingerprint(&s).await.map_err(err)?;
        Ok((tables, heads, fp))
    }
    .await;
    s.close().await;
    result
}

async fn chain_heads(s: &SqlStore) -> Result<Vec<ChainHead>> {
    let mut heads = Vec::new();
    for node in s.audit_nodes().await.map_err(err)? {
        if let Some(h) = s.audit_head(&node).await.map_err(err)? {
            heads.push(ChainHead {
                node,
                seq: h.seq,
                link: hex::encode(h.link),
            });
        }
    }
    Ok(heads)
}

/// Decrypts `file` into scratch space and checks it whole: the format,
/// the snapshot's hash, the database's integrity, every table's rows, the
/// audit trail up to the recorded heads, the sentinel, and that the
/// configured master key is this deployment's. Returns the scratch
/// directory (the snapshot is `snapshot.db` in it) with the result.
pub async fn check(
    settings: &Settings,
    file: &Path,
    unseal: &Unseal,
    progress: &dyn Progress,
) -> Result<(tempfile::TempDir, Checked)> {
    let scratch = scratch(settings)?;
    let snap_path = scratch.path().join("snapshot.db");
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let mut out = std::io::BufWriter::new(create_private_file(&snap_path)?);
    let manifest = rampart_backup::read(
        std::io::BufReader::new(input),
        unseal,
        &mut out,
        &mut |done| progress.step("bytes decrypted", done, total.max(done)),
    )
    .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    out.flush()?;
    drop(out);
    if manifest.schema_version > rampart_store::SCHEMA_VERSION {
        bail!(
            "{} was made by a newer Rampart (schema {}, this one knows {}): upgrade first",
            file.display(),
            manifest.schema_version,
            rampart_store::SCHEMA_VERSION
        );
    }
    let events = check_database(settings, &sqlite_url(&snap_path), &manifest, progress).await?;
    Ok((scratch, Checked { manifest, events }))
}

/// The checks of a restored database against its manifest (integrity,
/// rows, sentinel, master key, audit trail). Returns the events verified.
async fn check_database(
    settings: &Settings,
    url: &str,
    manifest: &Manifest,
    progress: &dyn Progress,
) -> Result<u64> {
    let s = rampart_store::open(url).await?;
    let result = check_open_database(settings, &s, manifest, progress).await;
    s.close().await;
    result
}

async fn check_open_database(
    settings: &Settings,
    s: &SqlStore,
    manifest: &Manifest,
    progress: &dyn Progress,
) -> Result<u64> {
    let problems = s.integrity_check().await.map_err(err)?;
    if problems != ["ok"] {
        bail!(
            "the database's integrity check failed: {}",
            problems.join("; ")
        );
    }
    let counts = s.table_counts().await.map_err(err)?;
    for (table, want) in &manifest.tables {
        let got = counts.get(table).copied();
        if got != Some(*want) {
            bail!(
                "table {table} has {} rows, the manifest says {want}",
                got.map(|n| n.to_string()).unwrap_or_else(|| "no".into())
            );
        }
    }
    if !s
        .has_backup_sentinel(&manifest.sentinel)
        .await
        .map_err(err)?
    {
        bail!("the sentinel row written before the snapshot is missing: this is an older database than the manifest says");
    }
    // The master key: this deployment's, and it opens every data key.
    let store: Arc<dyn rampart_core::Store> = Arc::new(s.clone());
    let data: Arc<dyn DataStore> = Arc::new(s.clone());
    let master = crate::master_key(settings, &store, &data, &rampart_crypto::OsEntropy)
        .await
        .context("the master key (a backup never holds it: give this deployment's master.key, RAMPART_MASTER_KEY or passphrase)")?;
    let keys = rampart_core::data::keys::KeyManager::new(
        &master,
        Box::new(|| None),
        data.clone(),
        Arc::new(rampart_crypto::OsEntropy),
    )
    .map_err(err)?;
    if let Some(fp) = &manifest.master_fingerprint {
        if *fp != keys.master_id() {
            bail!(
                "this backup is from another deployment: it was sealed under master key {fp}, and the master key \
                 given here is {}. Give that deployment's master key.",
                keys.master_id()
            );
        }
    }
    keys.verify_all().await.map_err(err)?;
    // The audit trail, each chain up to the head the manifest recorded.
    let heads = chain_heads(s).await?;
    for want in &manifest.chain_heads {
        match heads.iter().find(|h| h.node == want.node) {
            Some(h) if h == want => {}
            Some(h) => bail!(
                "audit chain {} ends at event {}, the manifest says {}",
                want.node,
                h.seq,
                want.seq
            ),
            None => bail!("audit chain {} is missing", want.node),
        }
    }
    if manifest.chain_heads.is_empty() {
        return Ok(0);
    }
    let secret = keys
        .audit_secret(Timestamp(manifest.created_at_ms), false)
        .await
        .map_err(err)?;
    let audit_keys =
        rampart_crypto::audit::AuditKeys::derive(&secret, rampart_core::audit::KEY_NAME)
            .map_err(err)?;
    let total: u64 = manifest.chain_heads.iter().map(|h| h.seq + 1).sum();
    let report = rampart_core::audit::verify(
        s,
        &audit_keys,
        None,
        &Expect {
            chains: manifest
                .chain_heads
                .iter()
                .map(|h| h.node.clone())
                .collect(),
            now: Some(Timestamp(manifest.created_at_ms)),
        },
        &|done| progress.step("audit events verified", done, total),
    )
    .await
    .map_err(err)?;
    if let Some(b) = report.breaks().next() {
        bail!("the audit trail inside does not verify: {b}");
    }
    Ok(report.nodes.iter().map(|n| n.events).sum())
}

/// `rampart backup verify`: checks `file` and records the result.
pub async fn verify(
    settings: &Settings,
    file: &Path,
    unseal: &Unseal,
    progress: &dyn Progress,
) -> Result<Checked> {
    let result = check(settings, file, unseal, progress)
        .await
        .map(|(_, checked)| checked);
    record(settings, VERIFIED, file, &result).await;
    result
}

/// Records a check or restore in the configured deployment's trail, when
/// it has a database (a restore into a new directory has none before).
async fn record<T>(settings: &Settings, action: &str, file: &Path, result: &Result<T>) {
    if !database_exists(settings) {
        return;
    }
    let Ok(svc) = crate::cli_services(settings).await else {
        return;
    };
    let now = svc.auth.clock().now();
    let e = match result {
        Ok(_) => Event::new(now, action, Category::Process, SUCCESS).object(&file_name(file)),
        Err(e) => Event::new(now, action, Category::Process, FAILURE)
            .object(&file_name(file))
            .severity(Severity::High)
            .reason(Some(&format!("{e:#}"))),
    };
    let _ = svc.audit.record_durable(e).await;
    svc.close().await;
}

/// Where a restore goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// The configured SQLite data directory.
    Sqlite(PathBuf),
    /// An empty PostgreSQL database.
    Postgres(SecretString),
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub checked: Checked,
    /// The database that was replaced, kept beside the new one.
    pub kept: Option<PathBuf>,
}

/// `rampart backup restore`: checks the backup, then puts it in place
/// (a SQLite data directory, or an empty PostgreSQL database), migrates
/// it, and checks it again where it now lies.
pub async fn restore(
    settings: &Settings,
    file: &Path,
    unseal: &Unseal,
    force: bool,
    now: Timestamp,
    progress: &dyn Progress,
) -> Result<Restored> {
    let url = settings.database_url();
    let target = if settings.is_sqlite() {
        Target::Sqlite(
            rampart_store::sqlite_path(url.expose_secret())
                .ok_or_else(|| anyhow!("the database URL names no SQLite file"))?,
        )
    } else {
        Target::Postgres(url.clone())
    };
    // Refuse early, before the work of decrypting.
    let lock = match &target {
        Target::Sqlite(db) => Some(take_lock(settings, db, force)?),
        Target::Postgres(_) => None,
    };
    let (scratch, checked) = check(settings, file, unseal, progress).await?;
    let snap = scratch.path().join("snapshot.db");
    let kept = match &target {
        Target::Sqlite(db) => {
            let kept = if db.exists() {
                let old = db.with_extension(format!("db.before-restore-{}", now.millis()));
                for suffix in ["", "-wal", "-shm"] {
                    let from = PathBuf::from(format!("{}{suffix}", db.display()));
                    if from.exists() {
                        std::fs::rename(&from, format!("{}{suffix}", old.display()))?;
                    }
                }
                Some(old)
            } else {
                None
            };
            std::fs::rename(&snap, db).or_else(|_| std::fs::copy(&snap, db).map(|_| ()))?;
            check_database(settings, url.expose_secret(), &checked.manifest, progress).await?;
            kept
        }
        Target::Postgres(url) => {
            let from = rampart_store::open(&sqlite_url(&snap)).await?;
            let to = rampart_store::open(url.expose_secret()).await?;
            let copied = from
                .copy_rows_to(&to, &mut |done, total| {
                    progress.step("rows restored", done, total)
                })
                .await;
            from.close().await;
            let checked_again = match copied {
                Ok(_) => check_open_database(settings, &to, &checked.manifest, progress).await,
                Err(e) => Err(err(e)),
            };
            to.close().await;
            checked_again?;
            None
        }
    };
    drop(lock);
    let result = Ok(Restored { checked, kept });
    record(settings, RESTORED, file, &result).await;
    result
}

/// The data directory's lock, exclusively: no server serves it.
fn take_lock(settings: &Settings, db: &Path, force: bool) -> Result<std::fs::File> {
    crate::datadir::create_private_dir(&settings.data_dir)?;
    let path = settings.data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!(
            "a Rampart server is serving {}: stop it first (a restore never replaces a database in use)",
            settings.data_dir.display()
        );
    }
    if db.exists() && !force {
        bail!(
            "{} holds a database already: restoring would replace it. Give --force to replace it (it is kept \
             beside the restored one as rampart.db.before-restore-<time>), or restore into a new --data-dir.",
            settings.data_dir.display()
        );
    }
    Ok(file)
}

/// `rampart backup keygen`: a new age identity, and its recipient.
pub fn keygen() -> (SecretString, String) {
    let id = rampart_backup::age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let secret =
        rampart_backup::age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_owned();
    (SecretString::new(secret), recipient)
}
