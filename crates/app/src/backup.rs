//! `rampart backup`: encrypted snapshots, checked by restoring them
//! (ADR 0013). The file format is `rampart-backup`'s; this module takes
//! the snapshot, finds the keys, restores into scratch space, checks, and
//! records what it did in the audit trail.
//!
//! Plaintext only ever lies in a private scratch directory inside the
//! data directory (where the live database already is), removed when the
//! command ends; one a killed command left is swept when `serve` starts
//! ([`sweep_scratch`]).

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
use rampart_scan::{Progress, Quiet};
use rampart_store::SqlStore;

use rampart_core::audit::backup_actions::{self, CREATED, RESTORED, UPLOADED, VERIFIED};

use crate::config::Settings;
use crate::datadir::create_private;

pub mod s3;

/// Backup files end so.
pub const EXTENSION: &str = "rampart-backup";
/// The shortest passphrase a backup may be sealed to.
pub const MIN_PASSPHRASE_CHARS: usize = 16;
/// The context of a manifest's MAC under the master key.
const MANIFEST_MAC: &str = "backup-manifest";
/// A server holds this file (shared) while it serves a data directory; a
/// restore takes it exclusively, so it never replaces a database in use.
pub const LOCK_FILE: &str = "rampart.lock";

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
    /// The master key the manifest was authenticated with.
    master: rampart_crypto::SecretBytes,
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
    lock(data_dir, false)?.ok_or_else(|| {
        anyhow!(
            "{} is locked by a restore in progress",
            data_dir.join(LOCK_FILE).display()
        )
    })
}

/// Locks the data directory's lock file (creating it), shared or
/// exclusive: `None` when another process holds a lock that excludes it.
/// A lock on a file someone removed or replaced meanwhile locks nothing,
/// so the file is checked to be the one still named so.
fn lock(data_dir: &Path, exclusive: bool) -> Result<Option<std::fs::File>> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (held, named) = (file.metadata()?, std::fs::metadata(&path)?);
        if (held.dev(), held.ino()) != (named.dev(), named.ino()) {
            bail!(
                "{} was replaced while it was being locked; try again",
                path.display()
            );
        }
    }
    Ok(Some(file))
}

/// Removes scratch directories a killed backup command left in the data
/// directory more than a day ago (a running one is younger). They hold
/// plaintext snapshots, as private as the database beside them.
pub fn sweep_scratch(data_dir: &Path, now: std::time::SystemTime) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .file_name()
            .to_string_lossy()
            .starts_with(".backup-scratch-")
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(86_400));
        if stale && e.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => {
                    tracing::info!(dir = %e.path().display(), "removed a stale backup scratch directory")
                }
                Err(err) => {
                    tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove a stale backup scratch directory")
                }
            }
        }
    }
}

/// Whom new backups are sealed to: the configured recipients and
/// Rampart's own check recipient, or the configured passphrase.
async fn seal(settings: &Settings, svc: &crate::Services) -> Result<Seal> {
    if let Some(pass) = &settings.backup.passphrase {
        return Ok(Seal::Passphrase(pass.clone()));
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

/// A passphrase file's first line (`--passphrase-file`; the configured
/// one is read with the settings).
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

/// What opens a backup: an identity file, a passphrase file, or what
/// opens this deployment's own backups ([`own_unseal`]).
pub async fn unseal(
    settings: &Settings,
    identity: Option<&Path>,
    passphrase: Option<&Path>,
    svc: Option<&crate::Services>,
) -> Result<Unseal> {
    if let Some(path) = identity {
        return Ok(Unseal::Identities(read_identities(path)?));
    }
    if let Some(path) = passphrase {
        return Ok(Unseal::Passphrase(read_passphrase(path)?));
    }
    own_unseal(settings, svc).await
}

/// What opens the backups this deployment makes without the operator's
/// identity: the configured passphrase, or Rampart's own check identity
/// (from the deployment's database, `svc`, when there is one).
async fn own_unseal(settings: &Settings, svc: Option<&crate::Services>) -> Result<Unseal> {
    if let Some(pass) = &settings.backup.passphrase {
        return Ok(Unseal::Passphrase(pass.clone()));
    }
    let Some(svc) = svc else {
        bail!(
            "give --identity FILE (the age identity of one of the backup's recipients) or --passphrase-file FILE: \
             this data directory has no database holding Rampart's own backup key"
        );
    };
    Ok(Unseal::Identities(vec![check_identity(svc).await?]))
}

/// Whether the configured database exists (a SQLite file may not yet):
/// what decides whether a command opens the deployment's services.
pub fn database_exists(settings: &Settings) -> bool {
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
    let created = crate::datadir::create_private_dir(&dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    if let Ok(data) = settings.data_dir.canonicalize() {
        if dir.starts_with(&data) {
            if created {
                let _ = std::fs::remove_dir(&dir);
            }
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

/// Runs `f` (seconds of hashing, compression and encryption) without
/// holding up the runtime's other tasks: on a multi-threaded runtime (the
/// server's) the worker hands its queue over first.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
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
    // The trail's events so far are signed into a checkpoint, so the
    // backup's chain head is covered by one.
    svc.audit.flush().await;
    let live = rampart_store::open(settings.database_url().expose_secret()).await?;
    let keys = svc.data.keys().clone();
    let mac_of = move |line: &str| keys.master_mac(MANIFEST_MAC, line);
    let result = snapshot_and_seal(
        &live,
        settings,
        &dir,
        Sealing {
            seal: &seal,
            mac_of: &mac_of,
        },
        now,
        entropy,
        progress,
    )
    .await;
    live.close().await;
    let name = result
        .as_ref()
        .map(|c| file_name(&c.path))
        .unwrap_or_default();
    let mut e = outcome(now, CREATED, &name, &result);
    if let Ok(c) = &result {
        e = e
            .field("backup.bytes", c.bytes)
            .field("backup.rows", c.manifest.tables.values().sum::<u64>());
    }
    let _ = svc.audit.record_durable(e).await;
    result
}

/// The event of a backup step on `object` (a file or object name): its
/// success, or its failure, of high severity, with the reason (never a
/// key: no error here holds one).
fn outcome<T>(now: Timestamp, action: &str, object: &str, result: &Result<T>) -> Event {
    let e = match result {
        Ok(_) => Event::new(now, action, Category::Process, SUCCESS),
        Err(why) => Event::new(now, action, Category::Process, FAILURE)
            .severity(Severity::High)
            .reason(Some(&format!("{why:#}"))),
    };
    if object.is_empty() {
        e
    } else {
        e.object(object)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whom a backup is sealed to, and what authenticates its manifest.
struct Sealing<'a> {
    seal: &'a Seal,
    mac_of: &'a (dyn Fn(&str) -> String + Sync),
}

async fn snapshot_and_seal(
    live: &SqlStore,
    settings: &Settings,
    dir: &Path,
    sealing: Sealing<'_>,
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
    let inside = describe(&snap_path).await?;
    let (sha, bytes) = blocking(|| rampart_backup::sha256_of(std::fs::File::open(&snap_path)?))?;
    let manifest = Manifest {
        format: 1,
        rampart_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now.to_rfc3339(),
        created_at_ms: now.millis(),
        schema_version: rampart_store::SCHEMA_VERSION,
        source: source.to_owned(),
        tables: inside.tables,
        chain_heads: inside.chain_heads,
        master_fingerprint: inside.master_fingerprint,
        master_kdf: inside.master_kdf,
        sentinel,
        snapshot_bytes: bytes,
        snapshot_sha256: sha,
    };
    let name = name_of_time(now).ok_or_else(|| anyhow!("the clock is out of range"))?;
    let path = dir.join(&name);
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    let partial = dir.join(format!(".{name}.partial"));
    let file = create_private(&partial)?;
    let written = blocking(|| -> Result<u64> {
        let out = std::io::BufWriter::new(file);
        let snapshot = std::fs::File::open(&snap_path)?;
        let out = rampart_backup::write(
            out,
            sealing.seal,
            &manifest,
            sealing.mac_of,
            snapshot,
            &mut |done| progress.step("bytes sealed", done, bytes),
        )?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    });
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

/// Uploads the backup at `path` to `[backup.s3]`, when it is set, and
/// records the upload (or its failure) in the trail.
pub async fn upload(
    settings: &Settings,
    audit: &rampart_core::audit::Audit,
    path: &Path,
    now: Timestamp,
) -> Result<Option<s3::Uploaded>> {
    let Some(cfg) = &settings.backup.s3 else {
        return Ok(None);
    };
    let result = async {
        let target = s3::Target::from_settings(cfg)?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow!("cannot make an HTTP client: {e}"))?;
        target.upload(&client, path, now).await
    }
    .await;
    let object = match &result {
        Ok(u) => u.key.clone(),
        Err(_) => file_name(path),
    };
    let mut e = outcome(now, UPLOADED, &object, &result);
    if let Ok(u) = &result {
        if let Some(until) = u.locked_until {
            e = e.field("backup.locked_until", until.to_rfc3339());
        }
        if let Some(v) = &u.version_id {
            e = e.field("backup.version_id", v.as_str());
        }
    }
    let _ = audit.record_durable(e).await;
    result.map(Some)
}

/// What a manifest says of the snapshot, read from the snapshot itself,
/// so every figure is of the same moment.
struct Described {
    tables: BTreeMap<String, u64>,
    chain_heads: Vec<ChainHead>,
    master_fingerprint: Option<String>,
    master_kdf: Option<rampart_backup::MasterKdf>,
}

async fn describe(snap: &Path) -> Result<Described> {
    let s = rampart_store::open_as_is(&sqlite_url(snap)).await?;
    let result = async {
        Ok(Described {
            tables: s.table_counts().await.map_err(err)?,
            chain_heads: chain_heads(&s).await?,
            master_fingerprint: DataStore::master_fingerprint(&s).await.map_err(err)?,
            master_kdf: DataStore::master_kdf(&s).await.map_err(err)?.map(
                |(salt, [memory_kib, iterations, parallelism])| rampart_backup::MasterKdf {
                    salt,
                    memory_kib,
                    iterations,
                    parallelism,
                },
            ),
        })
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
    let mut out = std::io::BufWriter::new(create_private(&snap_path)?);
    let mut master = None;
    let manifest = blocking(|| {
        rampart_backup::read(
            std::io::BufReader::new(input),
            unseal,
            &mut |m: &Manifest, line: &str, mac: &str| {
                master = Some(authenticate(settings, m, line, mac)?);
                Ok(())
            },
            &mut out,
            &mut |done| progress.step("bytes decrypted", done, total.max(done)),
        )
    })
    .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    out.flush()?;
    drop(out);
    let master = master.ok_or_else(|| anyhow!("the manifest was not authenticated"))?;
    if manifest.schema_version > rampart_store::SCHEMA_VERSION {
        bail!(
            "{} was made by a newer Rampart (schema {}, this one knows {}): upgrade first",
            file.display(),
            manifest.schema_version,
            rampart_store::SCHEMA_VERSION
        );
    }
    let events = check_database(
        &sqlite_url(&snap_path),
        &manifest,
        Depth::Whole,
        &master,
        progress,
    )
    .await?;
    Ok((
        scratch,
        Checked {
            manifest,
            events,
            master,
        },
    ))
}

/// Checks that the manifest was made by this deployment, before a byte of
/// the snapshot is written: the master key given (a file, the environment,
/// or the passphrase stretched as the manifest says) has the manifest's
/// fingerprint, and its MAC of the manifest is the one the file carries.
/// Age proves nothing of who made a file, and recipients are public.
fn authenticate(
    settings: &Settings,
    manifest: &Manifest,
    line: &str,
    mac: &str,
) -> std::result::Result<rampart_crypto::SecretBytes, String> {
    let master = crate::master_key_without_database(settings, manifest.master_kdf.as_ref())
        .map_err(|e| {
            format!(
                "the master key (a backup never holds it: give this deployment's master.key, \
                 RAMPART_MASTER_KEY or passphrase): {e:#}"
            )
        })?;
    let ring = rampart_crypto::Keyring::new(&master, &[]).map_err(|e| e.to_string())?;
    match &manifest.master_fingerprint {
        Some(fp) if fp == ring.current_key_id() => {}
        Some(fp) => {
            return Err(format!(
                "this backup is from another deployment: it was sealed under master key {fp}, and the master key \
                 given here is {}. Give that deployment's master key.",
                ring.current_key_id()
            ))
        }
        None => return Err("the manifest names no master key: not a backup Rampart made".into()),
    }
    if !ring.mac_matches(MANIFEST_MAC, line, mac) {
        return Err(
            "the manifest's MAC does not match this deployment's master key: the backup was forged or changed"
                .into(),
        );
    }
    Ok(master)
}

/// The checks of a restored database against its manifest (integrity,
/// rows, sentinel, master key, audit trail). Returns the events verified.
async fn check_database(
    url: &str,
    manifest: &Manifest,
    depth: Depth,
    master: &rampart_crypto::SecretBytes,
    progress: &dyn Progress,
) -> Result<u64> {
    let s = rampart_store::open(url).await?;
    let result = check_open_database(&s, manifest, depth, master, progress).await;
    s.close().await;
    result
}

/// How much a check repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Everything: a database just decrypted, or copied into PostgreSQL.
    Whole,
    /// The very file that passed a whole check, renamed into place: that
    /// it is the backup's (rows, sentinel, master key), not its structure
    /// and trail again.
    Placed,
}

async fn check_open_database(
    s: &SqlStore,
    manifest: &Manifest,
    depth: Depth,
    master: &rampart_crypto::SecretBytes,
    progress: &dyn Progress,
) -> Result<u64> {
    if depth == Depth::Whole {
        let problems = s.integrity_check().await.map_err(err)?;
        if problems != ["ok"] {
            bail!(
                "the database's integrity check failed: {}",
                problems.join("; ")
            );
        }
    }
    // Every table the database has: the manifest's count, or (a table a
    // migration added since) none at all.
    let counts = s.table_counts().await.map_err(err)?;
    for (table, got) in &counts {
        let want = manifest.tables.get(table).copied().unwrap_or(0);
        if *got != want {
            bail!("table {table} has {got} rows, the manifest says {want}");
        }
    }
    if let Some(t) = manifest.tables.keys().find(|t| !counts.contains_key(*t)) {
        bail!("table {t} is missing");
    }
    if !s
        .has_backup_sentinel(&manifest.sentinel)
        .await
        .map_err(err)?
    {
        bail!("the sentinel row written before the snapshot is missing: this is an older database than the manifest says");
    }
    // The master key: the one the manifest was authenticated with, the
    // database's own, and it opens every data key.
    let data: Arc<dyn DataStore> = Arc::new(s.clone());
    let keys = rampart_core::data::keys::KeyManager::new(
        master,
        Box::new(|| None),
        data.clone(),
        Arc::new(rampart_crypto::OsEntropy),
    )
    .map_err(err)?;
    if data.master_fingerprint().await.map_err(err)?.as_deref() != Some(keys.master_id().as_str()) {
        bail!("the database inside names another master key than its manifest");
    }
    if data.data_keys().await.map_err(err)?.is_empty() {
        bail!("the database inside holds no data key: not a database Rampart made");
    }
    keys.verify_all().await.map_err(err)?;
    // The audit trail: exactly the chains the manifest recorded, each up
    // to its recorded head.
    let mut heads = chain_heads(s).await?;
    let mut want = manifest.chain_heads.clone();
    heads.sort_by(|a, b| a.node.cmp(&b.node));
    want.sort_by(|a, b| a.node.cmp(&b.node));
    if heads != want {
        let seen: Vec<String> = heads
            .iter()
            .map(|h| format!("{} at {}", h.node, h.seq))
            .collect();
        let said: Vec<String> = want
            .iter()
            .map(|h| format!("{} at {}", h.node, h.seq))
            .collect();
        bail!(
            "the audit chains inside end at [{}], the manifest says [{}]",
            seen.join(", "),
            said.join(", ")
        );
    }
    if manifest.chain_heads.is_empty() || depth == Depth::Placed {
        return Ok(0);
    }
    let secret = keys
        .audit_secret(Timestamp(manifest.created_at_ms), false)
        .await
        .map_err(err)?;
    let audit_keys =
        rampart_crypto::audit::AuditKeys::derive(&secret, rampart_core::audit::KEY_NAME)
            .map_err(err)?;
    let total: u64 = manifest
        .chain_heads
        .iter()
        .fold(0u64, |n, h| n.saturating_add(h.seq.saturating_add(1)));
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

/// `rampart backup verify`: checks `file` and records the result in the
/// deployment's trail (`svc`, when it has a database).
pub async fn verify(
    settings: &Settings,
    svc: Option<&crate::Services>,
    file: &Path,
    unseal: &Unseal,
    progress: &dyn Progress,
) -> Result<Checked> {
    let result = check(settings, file, unseal, progress)
        .await
        .map(|(_, checked)| checked);
    if let Some(svc) = svc {
        let mut e = outcome(svc.auth.clock().now(), VERIFIED, &file_name(file), &result);
        if let Ok(c) = &result {
            e = e
                .field("backup.rows", c.manifest.tables.values().sum::<u64>())
                .field("backup.events", c.events);
        }
        let _ = svc.audit.record_durable(e).await;
    }
    result
}

/// A backup taken as `backup create` and the schedule both take it.
pub struct Taken {
    pub created: Created,
    /// Its check: restored into scratch space and checked whole.
    pub checked: Result<Checked>,
    /// Its upload to `[backup.s3]`, tried only once it passed its check
    /// (an object-locked bucket keeps whatever it is given).
    pub uploaded: Option<Result<Option<s3::Uploaded>>>,
}

/// Writes a backup, restores it into scratch space and checks it (an
/// event either way), and uploads it only if it passed.
pub async fn take(
    settings: &Settings,
    svc: &crate::Services,
    to: Option<&Path>,
    entropy: &dyn Entropy,
    progress: &dyn Progress,
) -> Result<Taken> {
    let created = create(settings, svc, to, entropy, progress).await?;
    let checked = match own_unseal(settings, Some(svc)).await {
        Ok(u) => verify(settings, Some(svc), &created.path, &u, progress).await,
        Err(e) => Err(e),
    };
    let uploaded = match &checked {
        Ok(_) => Some(upload(settings, &svc.audit, &created.path, svc.auth.clock().now()).await),
        Err(_) => None,
    };
    Ok(Taken {
        created,
        checked,
        uploaded,
    })
}

/// Records a restore in the trail of the database now in place (a failed
/// restore into a new directory leaves none).
async fn record<T>(settings: &Settings, action: &str, file: &Path, result: &Result<T>) {
    if !database_exists(settings) {
        return;
    }
    let Ok(svc) = crate::cli_services(settings).await else {
        return;
    };
    let now = svc.auth.clock().now();
    let _ = svc
        .audit
        .record_durable(outcome(now, action, &file_name(file), result))
        .await;
    svc.close().await;
}

/// Where a restore goes.
enum RestoreTarget {
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
        RestoreTarget::Sqlite(
            rampart_store::sqlite_path(url.expose_secret())
                .ok_or_else(|| anyhow!("the database URL names no SQLite file"))?,
        )
    } else {
        RestoreTarget::Postgres(url.clone())
    };
    // Refuse early, before the work of decrypting.
    let lock = match &target {
        RestoreTarget::Sqlite(db) => Some(take_lock(settings, db, force)?),
        RestoreTarget::Postgres(_) => None,
    };
    let result = async {
        let (scratch, checked) = check(settings, file, unseal, progress).await?;
        let snap = scratch.path().join("snapshot.db");
        let kept = match &target {
            RestoreTarget::Sqlite(db) => place_sqlite(&snap, db, &checked, now, progress).await?,
            RestoreTarget::Postgres(url) => {
                let from = rampart_store::open(&sqlite_url(&snap)).await?;
                let to = rampart_store::open(url.expose_secret()).await?;
                let copied = from
                    .copy_rows_to(&to, &mut |done, total| {
                        progress.step("rows restored", done, total)
                    })
                    .await;
                from.close().await;
                let checked_again = match copied {
                    Ok(_) => check_open_database(
                        &to,
                        &checked.manifest,
                        Depth::Whole,
                        &checked.master,
                        progress,
                    )
                    .await
                    .context(
                        "the rows are in PostgreSQL but did not pass the check there: empty the database \
                         before trying again",
                    ),
                    Err(e) => Err(err(e)),
                };
                to.close().await;
                checked_again?;
                None
            }
        };
        Ok(Restored { checked, kept })
    }
    .await;
    drop(lock);
    record(settings, RESTORED, file, &result).await;
    result
}

/// Puts the checked snapshot `snap` in place of the SQLite file `db`: the
/// database there (with its WAL) is moved aside as
/// `rampart.db.before-restore-<ms>`, the snapshot renamed in, and checked
/// where it lies. Any failure puts everything back as it was.
async fn place_sqlite(
    snap: &Path,
    db: &Path,
    checked: &Checked,
    now: Timestamp,
    progress: &dyn Progress,
) -> Result<Option<PathBuf>> {
    let with = |p: &Path, suffix: &str| PathBuf::from(format!("{}{suffix}", p.display()));
    let old = db.with_extension(format!("db.before-restore-{}", now.millis()));
    const SUFFIXES: [&str; 3] = ["", "-wal", "-shm"];
    if SUFFIXES.iter().any(|x| with(&old, x).exists()) {
        bail!("{} exists already", old.display());
    }
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let undo = |moved: &[(PathBuf, PathBuf)]| {
        for (from, to) in moved.iter().rev() {
            let _ = std::fs::rename(to, from);
        }
    };
    for x in SUFFIXES {
        let (from, to) = (with(db, x), with(&old, x));
        if from.exists() {
            if let Err(e) = std::fs::rename(&from, &to) {
                undo(&moved);
                return Err(anyhow!("cannot move {} aside: {e}", from.display()));
            }
            moved.push((from, to));
        }
    }
    // A rename within the data directory (the scratch space is in it).
    if let Err(e) = std::fs::rename(snap, db) {
        undo(&moved);
        return Err(anyhow!("cannot put the restored database in place: {e}"));
    }
    if let Some(dir) = db.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let url = sqlite_url(db);
    if let Err(e) = check_database(
        &url,
        &checked.manifest,
        Depth::Placed,
        &checked.master,
        progress,
    )
    .await
    {
        for x in SUFFIXES {
            let _ = std::fs::remove_file(with(db, x));
        }
        undo(&moved);
        return Err(e.context(
            "the restored database did not pass its check in place; the old one is back",
        ));
    }
    Ok((!moved.is_empty()).then_some(old))
}

/// The data directory's lock, exclusively: no server serves it.
fn take_lock(settings: &Settings, db: &Path, force: bool) -> Result<std::fs::File> {
    crate::datadir::create_private_dir(&settings.data_dir)?;
    let Some(file) = lock(&settings.data_dir, true)? else {
        bail!(
            "a Rampart server is serving {}: stop it first (a restore never replaces a database in use)",
            settings.data_dir.display()
        );
    };
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

/// A backup schedule: a cron expression (five fields, UTC).
#[derive(Debug, Clone)]
pub struct Schedule(croner::Cron);

impl Schedule {
    pub fn parse(expr: &str) -> std::result::Result<Schedule, String> {
        expr.parse::<croner::Cron>().map(Schedule).map_err(|e| {
            format!(
                "{expr:?} is not a cron expression (e.g. \"0 3 * * *\", daily at 03:00 UTC): {e}"
            )
        })
    }

    /// The first run strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.millis())?;
        let next = self.0.find_next_occurrence(&at, false).ok()?;
        Some(Timestamp(next.timestamp_millis()))
    }

    /// The last run at or before `t`.
    #[cfg(test)]
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.millis())?;
        let prev = self.0.find_previous_occurrence(&at, true).ok()?;
        Some(Timestamp(prev.timestamp_millis()))
    }
}

/// How many backups to keep: the newest of each of the last `daily`
/// days, `weekly` ISO weeks and `monthly` months that have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// Of backups taken at `times`, those `policy` keeps (the newest is
/// always kept).
pub fn to_keep(times: &[Timestamp], policy: Retention) -> std::collections::BTreeSet<Timestamp> {
    use chrono::Datelike;
    let mut sorted: Vec<Timestamp> = times.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    let mut keep = std::collections::BTreeSet::new();
    if let Some(newest) = sorted.first() {
        keep.insert(*newest);
    }
    let day = |t: &Timestamp| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.millis()).map(|d| d.date_naive())
    };
    let mut bucket = |n: u32, key: &dyn Fn(chrono::NaiveDate) -> (i32, u32, u32)| {
        let mut seen = Vec::new();
        for t in &sorted {
            if seen.len() as u32 >= n {
                break;
            }
            let Some(d) = day(t) else { continue };
            let k = key(d);
            if !seen.contains(&k) {
                seen.push(k);
                keep.insert(*t);
            }
        }
    };
    bucket(policy.daily, &|d| (d.year(), d.month(), d.day()));
    bucket(policy.weekly, &|d| {
        let w = d.iso_week();
        (w.year(), w.week(), 0)
    });
    bucket(policy.monthly, &|d| (d.year(), d.month(), 0));
    keep
}

/// The time a backup's file name says it was taken, for the files this
/// module writes (`rampart-20261207T030000-000.rampart-backup`).
pub fn time_of_name(name: &str) -> Option<Timestamp> {
    let stem = name
        .strip_prefix("rampart-")?
        .strip_suffix(&format!(".{EXTENSION}"))?;
    let at = chrono::NaiveDateTime::parse_from_str(stem, "%Y%m%dT%H%M%S-%3f").ok()?;
    Some(Timestamp(at.and_utc().timestamp_millis()))
}

fn name_of_time(now: Timestamp) -> Option<String> {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now.millis())?;
    Some(format!(
        "rampart-{}.{EXTENSION}",
        at.format("%Y%m%dT%H%M%S-%3f")
    ))
}

/// Removes the backups of `dir` that `policy` does not keep (only files
/// named as this module names them); returns the names removed. A name
/// dated after `now` (a skewed clock, or a planted file) is neither
/// counted nor removed, so it cannot push real backups out; `keep` (the
/// backup just verified) is never removed.
pub fn apply_retention(
    dir: &Path,
    policy: Retention,
    now: Timestamp,
    keep: &Path,
) -> Result<Vec<String>> {
    let keep = keep.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(t) = time_of_name(&name).filter(|t| t.millis() <= now.millis() + 60_000) {
            if keep.as_deref() != Some(name.as_str()) {
                found.push((t, name));
            }
        }
    }
    let mut times: Vec<Timestamp> = found.iter().map(|(t, _)| *t).collect();
    times.extend(keep.as_deref().and_then(time_of_name));
    let kept = to_keep(&times, policy);
    let mut removed = Vec::new();
    for (t, name) in found {
        if !kept.contains(&t) {
            std::fs::remove_file(dir.join(&name))
                .with_context(|| format!("cannot remove {name}"))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// What the server's backup schedule needs.
pub struct Scheduled {
    pub settings: Settings,
    pub svc: crate::Services,
    pub entropy: Arc<dyn Entropy>,
}

/// How long after its time a scheduled backup may still be verified
/// before it counts as missing.
pub const MISSING_AFTER: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// Whether the server runs scheduled backups: a destination and someone
/// to seal to are configured.
pub fn scheduled(settings: &Settings) -> bool {
    settings.backup.dir.is_some()
        && (!settings.backup.recipients.is_empty() || settings.backup.passphrase.is_some())
}

/// The server's backup schedule: at each time of `[backup] schedule`, one
/// node takes a backup, checks it by restoring it, and applies the
/// retention; any node records a scheduled backup not verified within
/// [`MISSING_AFTER`] (which raises an alert).
pub async fn run_schedule(s: Scheduled, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Ok(schedule) = Schedule::parse(&s.settings.backup.schedule) else {
        return;
    };
    let clock = s.svc.auth.clock().clone();
    let started = clock.now();
    // The next run to take, and the next run whose check is to be found
    // (three hours after its time): each looked at once.
    let mut next = schedule.next_after(started);
    let mut watched = next;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let now = clock.now();
        if let Some(slot) = next.filter(|slot| now >= *slot) {
            next = schedule.next_after(now);
            if claim(&s, &format!("backup:{}", slot.millis()), now).await {
                scheduled_backup(&s).await;
            }
        }
        let due =
            |slot: &Timestamp| now.millis() >= slot.millis() + MISSING_AFTER.as_millis() as i64;
        if let Some(slot) = watched.filter(due) {
            watched = schedule.next_after(slot);
            let verified = backup_actions::last_verified(s.svc.store.as_ref())
                .await
                .ok()
                .flatten()
                .is_some_and(|e| e.at >= slot);
            if !verified && claim(&s, &format!("backup-missing:{}", slot.millis()), now).await {
                let e = Event::new(now, backup_actions::MISSING, Category::Process, FAILURE)
                    .severity(Severity::High)
                    .reason(Some(&format!(
                        "no backup was verified for the run scheduled at {}",
                        slot.to_rfc3339()
                    )));
                let _ = s.svc.audit.record_durable(e).await;
            }
        }
    }
}

/// One node per key: the shared token bucket of the database.
async fn claim(s: &Scheduled, key: &str, now: Timestamp) -> bool {
    matches!(
        s.svc
            .store
            .take_rate_token(key, now, std::time::Duration::from_secs(7 * 86_400), 1)
            .await,
        Ok(None)
    )
}

async fn scheduled_backup(s: &Scheduled) {
    let taken = match take(&s.settings, &s.svc, None, s.entropy.as_ref(), &Quiet).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the scheduled backup failed");
            return;
        }
    };
    let path = &taken.created.path;
    if let Err(e) = &taken.checked {
        tracing::error!(file = %path.display(), error = %format!("{e:#}"), "the scheduled backup did not pass its check");
        return;
    }
    tracing::info!(file = %path.display(), "scheduled backup written and verified");
    if let Some(Err(e)) = &taken.uploaded {
        tracing::error!(error = %format!("{e:#}"), "the backup could not be uploaded");
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    match apply_retention(
        dir,
        s.settings.backup.retention(),
        s.svc.auth.clock().now(),
        path,
    ) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(
                removed = removed.len(),
                "old backups removed by the retention"
            )
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot apply the backup retention")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-01-01T03:00:00Z, a Thursday.
    const T0: i64 = 1_767_236_400_000;

    #[test]
    fn a_schedule_finds_its_next_and_last_runs() {
        let s = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(s.next_after(Timestamp(T0)), Some(Timestamp(T0 + DAY)));
        assert_eq!(s.next_after(Timestamp(T0 - 1)), Some(Timestamp(T0)));
        assert_eq!(s.last_at_or_before(Timestamp(T0)), Some(Timestamp(T0)));
        assert_eq!(
            s.last_at_or_before(Timestamp(T0 - 1)),
            Some(Timestamp(T0 - DAY))
        );
        let e = Schedule::parse("every day").unwrap_err();
        assert!(e.contains("not a cron expression"), "{e}");
    }

    #[test]
    fn names_carry_their_time() {
        let t = Timestamp(T0 + 123);
        let name = name_of_time(t).unwrap();
        assert_eq!(name, "rampart-20260101T030000-123.rampart-backup");
        assert_eq!(time_of_name(&name), Some(t));
        assert_eq!(
            time_of_name(".rampart-20260101T030000-123.rampart-backup.partial"),
            None
        );
        assert_eq!(time_of_name("notes.txt"), None);
    }

    /// A daily backup for 120 days, under 7 daily, 4 weekly, 6 monthly:
    /// the newest 7 days, the newest of the 4 newest weeks, the newest of
    /// the 6 newest months.
    #[test]
    fn retention_keeps_exactly_the_days_weeks_and_months_asked_for() {
        let times: Vec<Timestamp> = (0..120).map(|d| Timestamp(T0 + d * DAY)).collect();
        let policy = Retention {
            daily: 7,
            weekly: 4,
            monthly: 6,
        };
        let keep = to_keep(&times, policy);
        let day = |d: i64| Timestamp(T0 + d * DAY);
        let mut want: std::collections::BTreeSet<Timestamp> = (113..120).map(day).collect();
        // Day 119 is 2026-04-30, a Thursday: the newest of its ISO week
        // (it is already kept), then the Sundays that end the three weeks
        // before (days 115, 108, 101).
        for d in [119, 115, 108, 101] {
            want.insert(day(d));
        }
        // The newest of each month: April 30 (119), March 31 (89),
        // February 28 (58), January 31 (30); four months have backups.
        for d in [119, 89, 58, 30] {
            want.insert(day(d));
        }
        assert_eq!(keep, want);
        // Nothing kept beyond the policy, and the newest always.
        let none = Retention {
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        assert_eq!(
            to_keep(&times, none).into_iter().collect::<Vec<_>>(),
            vec![day(119)]
        );
        assert!(to_keep(&[], policy).is_empty());
    }

    #[test]
    fn stale_scratch_directories_are_swept_and_young_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join(".backup-scratch-abc");
        std::fs::create_dir(&scratch).unwrap();
        std::fs::write(scratch.join("snapshot.db"), b"plaintext").unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let made = std::fs::metadata(&scratch).unwrap().modified().unwrap();
        sweep_scratch(dir.path(), made + std::time::Duration::from_secs(3600));
        assert!(scratch.exists(), "a command may still be using it");
        sweep_scratch(
            dir.path(),
            made + std::time::Duration::from_secs(2 * 86_400),
        );
        assert!(!scratch.exists());
        assert!(
            dir.path().join("rules").exists(),
            "only scratch directories go"
        );
    }

    #[test]
    fn retention_removes_only_backups_and_only_those_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..10 {
            let name = name_of_time(Timestamp(T0 + d * DAY)).unwrap();
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join("identity.txt"), b"keep me").unwrap();
        std::fs::write(
            dir.path()
                .join(".rampart-20260101T030000-000.rampart-backup.partial"),
            b"x",
        )
        .unwrap();
        // A file dated in the future is neither counted nor removed.
        std::fs::write(
            dir.path()
                .join("rampart-20990101T030000-000.rampart-backup"),
            b"x",
        )
        .unwrap();
        let now = Timestamp(T0 + 9 * DAY + 3_600_000);
        let just = dir
            .path()
            .join(name_of_time(Timestamp(T0 + 9 * DAY)).unwrap());
        let removed = apply_retention(
            dir.path(),
            Retention {
                daily: 3,
                weekly: 0,
                monthly: 0,
            },
            now,
            &just,
        )
        .unwrap();
        assert_eq!(removed.len(), 7);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                ".rampart-20260101T030000-000.rampart-backup.partial",
                "identity.txt",
                "rampart-20260108T030000-000.rampart-backup",
                "rampart-20260109T030000-000.rampart-backup",
                "rampart-20260110T030000-000.rampart-backup",
                "rampart-20990101T030000-000.rampart-backup",
            ]
        );
    }
}
