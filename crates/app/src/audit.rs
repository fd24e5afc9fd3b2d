//! Wiring of the audit trail (ADR 0011): this node's chain name, the
//! witness directory, the public key file, the writer; and what `rampart
//! audit` runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rampart_core::audit::{Audit, AuditStore, Witness, WriterMode, KEY_NAME};
use rampart_core::data::keys::KeyManager;
use rampart_core::Clock;
use rampart_crypto::audit::AuditKeys;

use crate::config::Settings;

/// The file in the data directory naming this node's chain.
pub const NODE_FILE: &str = "audit-node";
/// The file in the data directory (and the witness directory) holding the
/// public key that checks every checkpoint.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";

/// The witness directory: configured, or `<data_dir>-witness`.
pub fn witness_dir(settings: &Settings) -> PathBuf {
    settings.audit.witness_dir.clone().unwrap_or_else(|| {
        let mut name = settings
            .data_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "rampart-data".into());
        name.push("-witness");
        settings.data_dir.with_file_name(name)
    })
}

/// This node's chain name: configured, or made once and kept in the data
/// directory.
pub fn node_name(settings: &Settings, entropy: &dyn rampart_crypto::Entropy) -> Result<String> {
    if let Some(n) = &settings.audit.node {
        return Ok(n.clone());
    }
    let file = settings.data_dir.join(NODE_FILE);
    match std::fs::read_to_string(&file) {
        Ok(s) if rampart_core::audit::node_name_ok(s.trim()) => Ok(s.trim().to_owned()),
        Ok(_) => anyhow::bail!(
            "{} does not hold a node name (1-64 of A-Z a-z 0-9 . _ -); fix it or set [audit] node",
            file.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = [0u8; 5];
            entropy.fill(&mut b);
            let name = format!("node-{}", hex::encode(b));
            crate::datadir::create_private_dir(&settings.data_dir)?;
            std::fs::write(&file, format!("{name}\n"))
                .with_context(|| format!("cannot write {}", file.display()))?;
            Ok(name)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// The audit keys, from the audit data key (made on first use, while the
/// trail is empty).
pub async fn keys(
    keys: &KeyManager,
    trail: &dyn AuditStore,
    clock: &dyn Clock,
) -> Result<AuditKeys> {
    let empty = trail
        .audit_nodes()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_empty();
    let secret = keys
        .audit_secret(clock.now(), empty)
        .await
        .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    AuditKeys::derive(&secret, KEY_NAME).map_err(|e| anyhow::anyhow!("audit key: {e}"))
}

/// Writes the public key beside the data (and into the witness directory),
/// so an investigator can check checkpoints without any secret. A file
/// that holds another key is never overwritten: the server refuses to
/// start, a command warns.
pub fn write_public_key(settings: &Settings, keys: &AuditKeys, mode: WriterMode) -> Result<()> {
    let text = format!("{}\n", keys.verifier_key());
    for dir in [settings.data_dir.clone(), witness_dir(settings)] {
        if !dir.exists() {
            continue;
        }
        let path = dir.join(PUBLIC_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) if t == text => {}
            Ok(_) => {
                let why = format!(
                    "{} holds another public key than this database's audit trail: the audit key was replaced, \
                     or this is another installation's directory. Keep that file (it checks the old checkpoints) \
                     and find out why before moving it away.",
                    path.display()
                );
                if mode == WriterMode::Server {
                    anyhow::bail!(why);
                }
                tracing::warn!("{why}");
            }
            Err(_) => std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?,
        }
    }
    Ok(())
}

/// Starts this process's audit writer.
pub async fn start(
    settings: &Settings,
    store: Arc<dyn AuditStore>,
    keys: Arc<AuditKeys>,
    mode: WriterMode,
    clock: Arc<dyn Clock>,
    entropy: &dyn rampart_crypto::Entropy,
) -> Result<(Audit, tokio::task::JoinHandle<()>)> {
    let node = node_name(settings, entropy)?;
    let witness = Witness::new(witness_dir(settings));
    if mode == WriterMode::Server {
        std::fs::create_dir_all(witness.dir()).with_context(|| {
            format!(
                "cannot create the witness directory {}",
                witness.dir().display()
            )
        })?;
        restrict_dir(witness.dir())?;
    }
    write_public_key(settings, &keys, mode)?;
    Audit::start(store, keys, &node, mode, Some(witness), clock)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))
}

#[cfg(not(unix))]
fn restrict_dir(_: &Path) -> Result<()> {
    Ok(())
}

/// Reads the witness: one file, or every `*.checkpoints` file of a
/// directory. Entries, and how many lines could not be read.
pub fn read_witness(path: &Path) -> Result<(Vec<rampart_core::audit::WitnessEntry>, usize)> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "checkpoints"))
            .collect();
        f.sort();
        f
    } else {
        vec![path.to_owned()]
    };
    let mut entries = Vec::new();
    let mut bad = 0;
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let (e, b) = rampart_core::audit::witness::read_entries(&text);
        entries.extend(e);
        bad += b.len();
    }
    Ok((entries, bad))
}

/// The witness directory read as it grows: each pass gets the lines
/// appended since the last (an incremental pass needs only checkpoints of
/// sizes it has not verified yet), not the whole files again.
#[derive(Debug, Default)]
pub struct WitnessTail {
    read_to: std::collections::HashMap<PathBuf, u64>,
}

impl WitnessTail {
    /// The entries appended to the `*.checkpoints` files of `dir` since the
    /// last call (every entry, the first time), and how many lines could
    /// not be read. A torn last line is left for the next call.
    pub fn read_new(&mut self, dir: &Path) -> (Vec<rampart_core::audit::WitnessEntry>, usize) {
        use std::io::{Read, Seek, SeekFrom};
        let (mut entries, mut bad) = (Vec::new(), 0);
        let Ok(listing) = std::fs::read_dir(dir) else {
            return (entries, bad);
        };
        for path in listing.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|x| x != "checkpoints") {
                continue;
            }
            let from = self.read_to.get(&path).copied().unwrap_or(0);
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            let mut text = String::new();
            if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_string(&mut text).is_err() {
                continue;
            }
            // Only whole lines.
            let whole = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let (e, b) = rampart_core::audit::witness::read_entries(&text[..whole]);
            entries.extend(e);
            bad += b.len();
            self.read_to.insert(path, from + whole as u64);
        }
        (entries, bad)
    }
}

/// What `rampart audit verify` found, ready to print.
pub struct Verified {
    pub report: rampart_core::audit::Report,
    pub witness: Option<PathBuf>,
}

impl Verified {
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if self.report.nodes.is_empty() {
            out.push_str("no events yet\n");
        }
        for n in &self.report.nodes {
            let _ = write!(
                out,
                "chain {}: {} events, {} checkpoints",
                n.node, n.events, n.checkpoints
            );
            if let Some(at) = n.newest_checkpoint_at {
                let _ = write!(
                    out,
                    " (the newest covers {} events, signed {})",
                    n.covered,
                    at.to_rfc3339()
                );
            }
            if self.witness.is_some() {
                let _ = write!(out, "; {} witness checkpoints compared", n.witnessed);
            }
            if let Some(r) = &n.retired {
                let _ = write!(
                    out,
                    "; retention removed events {} to {} ({} events, {} to {}), by a signed record",
                    r.first_seq,
                    r.last_seq,
                    r.count,
                    r.first_at.to_rfc3339(),
                    r.last_at.to_rfc3339()
                );
            }
            match &n.first_break {
                None => out.push_str(": OK\n"),
                Some(b) => {
                    let _ = writeln!(out, ": BROKEN\n  {b}");
                }
            }
            if n.first_break.is_none() && n.events > n.covered {
                let _ = writeln!(
                    out,
                    "  {} newest events are not yet covered by a checkpoint (one is signed every ten seconds while events flow, and at every stop)",
                    n.events - n.covered
                );
            }
        }
        match &self.witness {
            Some(w) => {
                let _ = writeln!(out, "witness: {}", w.display());
            }
            None => out.push_str(
                "witness: none compared (give --witness FILE or DIR): a chain rebuilt with the master key would pass\n",
            ),
        }
        if self.report.witness_unreadable > 0 {
            let _ = writeln!(
                out,
                "witness: {} lines could not be read (a torn last line after a crash, or tampering)",
                self.report.witness_unreadable
            );
        }
        out.push_str(if self.report.ok() {
            "verified: every link, tree hash and checkpoint signature holds\n"
        } else {
            "NOT verified: the trail was changed (see above)\n"
        });
        out
    }
}

/// Verifies every chain of the database (and the witness, by default the
/// configured witness directory when it exists), recording the result as
/// an event of the command's chain.
pub async fn verify_command(
    settings: &Settings,
    witness: Option<PathBuf>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Verified> {
    let svc = crate::cli_services(settings).await?;
    let result = async {
        let keys = keys(
            svc.data.keys(),
            svc.store.as_ref(),
            svc.auth.clock().as_ref(),
        )
        .await?;
        let witness = witness.or_else(|| Some(witness_dir(settings)).filter(|d| d.is_dir()));
        let read = witness.as_deref().map(read_witness).transpose()?;
        let mut total = 0;
        for node in svc
            .store
            .audit_nodes()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            if let Some(h) = svc
                .store
                .audit_head(&node)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                total += h.seq + 1;
            }
        }
        // This node's chain must be there, when this data directory has
        // served (it names the chain).
        let chains = if settings.data_dir.join(NODE_FILE).exists() || settings.audit.node.is_some()
        {
            vec![node_name(settings, &rampart_crypto::OsEntropy)?]
        } else {
            Vec::new()
        };
        let expect = rampart_core::audit::Expect {
            chains,
            now: Some(svc.auth.clock().now()),
        };
        let report = rampart_core::audit::verify(
            svc.store.as_ref(),
            &keys,
            read.as_ref().map(|(e, bad)| (e.as_slice(), *bad)),
            &expect,
            &|done| progress(done, total),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        record_verification(&svc.audit, svc.auth.clock().now(), &report).await;
        Ok(Verified { report, witness })
    }
    .await;
    svc.close().await;
    result
}

/// The result of a verification, as an event: a failure is of the
/// highest severity.
pub async fn record_verification(
    audit: &Audit,
    now: rampart_core::Timestamp,
    report: &rampart_core::audit::Report,
) {
    use rampart_core::audit::{Category, Event, Severity, FAILURE, SUCCESS};
    let events: u64 = report.nodes.iter().map(|n| n.events).sum();
    let mut e = Event::new(
        now,
        rampart_core::audit::writer::VERIFIED,
        Category::Process,
        if report.ok() { SUCCESS } else { FAILURE },
    )
    .field("audit.events", events)
    .field("audit.chains", report.nodes.len() as u64);
    if let Some(b) = report.breaks().next() {
        e = e
            .severity(Severity::Critical)
            .reason(Some(&b.to_string()))
            .field("audit.break.node", b.node.clone())
            .field("audit.break.seq", b.seq);
    }
    let _ = audit.record_durable(e).await;
}

/// The formats of `rampart audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// ECS JSON, one document per line.
    Ecs,
    /// RFC 5424 syslog lines carrying the ECS JSON.
    Syslog,
}

/// Writes every event of every chain with `since <= at < until` to `out`,
/// chain by chain in sequence order; returns how many.
pub async fn export(
    settings: &Settings,
    since: Option<rampart_core::Timestamp>,
    until: Option<rampart_core::Timestamp>,
    format: ExportFormat,
    out: &mut (dyn std::io::Write + Send),
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<u64> {
    let store = crate::open_store(settings).await?;
    let result = async {
        let nodes = store
            .audit_nodes()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut total = 0;
        for n in &nodes {
            if let Some(h) = store
                .audit_head(n)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                total += h.seq + 1;
            }
        }
        let (mut read, mut written) = (0u64, 0u64);
        for n in &nodes {
            let mut next = 0;
            loop {
                let page = store
                    .audit_range(n, next, 5_000)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let Some(last) = page.last() else { break };
                next = last.seq + 1;
                read += page.len() as u64;
                for e in page
                    .iter()
                    .filter(|e| since.is_none_or(|s| e.at >= s) && until.is_none_or(|u| e.at < u))
                {
                    let line = match format {
                        ExportFormat::Ecs => rampart_core::audit::format::ecs_line(e),
                        ExportFormat::Syslog => rampart_core::audit::format::syslog_line(e),
                    };
                    writeln!(out, "{line}")?;
                    written += 1;
                }
                progress(read, total);
            }
        }
        out.flush()?;
        Ok(written)
    }
    .await;
    store.close().await;
    result
}

/// The last background verification, for metrics.
#[derive(Debug, Default)]
pub struct Verification {
    pub ok: Option<bool>,
    pub at: Option<rampart_core::Timestamp>,
    pub events: u64,
}

/// How often the server verifies what was added to the trail.
pub const VERIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// And how often it verifies the whole trail again.
pub const FULL_EVERY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The server's own verification: the whole trail at start, then every
/// minute what was added (and the whole trail again every day), against
/// the database's checkpoints and the witness directory. A full pass, and
/// every change of the result, is an event; a break is of the highest
/// severity.
#[allow(clippy::too_many_arguments)]
pub async fn verify_in_background(
    settings: Settings,
    store: Arc<dyn rampart_core::Store>,
    keys: Arc<AuditKeys>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    every: std::time::Duration,
    state: Arc<std::sync::Mutex<Verification>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut inc = rampart_core::audit::Incremental::default();
    let mut tail = WitnessTail::default();
    let mut last_full = std::time::Instant::now();
    let mut full = true;
    let mut was_ok: Option<bool> = None;
    loop {
        let witness = Some(tail.read_new(&witness_dir(&settings)));
        // A stop does not wait for a long pass.
        let expect = rampart_core::audit::Expect {
            chains: vec![audit.node().to_owned()],
            now: Some(clock.now()),
        };
        let result = tokio::select! {
            r = inc.pass(
                store.as_ref(),
                &keys,
                witness.as_ref().map(|(e, bad)| (e.as_slice(), *bad)),
                &expect,
            ) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match result {
            Ok(report) => {
                let ok = report.ok();
                let now = clock.now();
                {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    s.ok = Some(ok);
                    s.at = Some(now);
                    s.events = report.nodes.iter().map(|n| n.events).sum();
                }
                if !ok {
                    // The broken chain is checked from its start next time:
                    // against the whole witness again.
                    tail = WitnessTail::default();
                    for b in report.breaks() {
                        tracing::error!(break_ = %b, "the audit trail was changed: run `rampart audit verify`");
                    }
                }
                if full || was_ok != Some(ok) {
                    record_verification(&audit, now, &report).await;
                }
                was_ok = Some(ok);
            }
            Err(e) => tracing::warn!(error = %e, "audit verification could not run"),
        }
        full = false;
        if last_full.elapsed() >= FULL_EVERY {
            inc = rampart_core::audit::Incremental::default();
            tail = WitnessTail::default();
            last_full = std::time::Instant::now();
            full = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// How often retention looks for events past `retention_days`.
pub const RETAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Retention, in the background: every six hours (the first a minute after
/// start), this node's chains lose their events older than
/// `retention_days`, as signed ranges.
pub async fn retain_in_background(
    store: Arc<dyn rampart_core::Store>,
    keys: Arc<AuditKeys>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    days: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if days == 0 {
        return;
    }
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        wait = RETAIN_EVERY;
        let now = clock.now();
        let cutoff = now.minus(std::time::Duration::from_secs(days * 86_400));
        for node in [audit.node().to_owned(), format!("{}-cli", audit.node())] {
            match rampart_core::audit::retention::retire(
                store.as_ref(),
                &keys,
                &audit,
                &node,
                cutoff,
                now,
            )
            .await
            {
                Ok(Some(r)) => tracing::info!(
                    chain = %node,
                    removed = r.count,
                    last_seq = r.last_seq,
                    "retention removed the oldest events as one signed range"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(chain = %node, error = %e, "retention did not run"),
            }
        }
    }
}
