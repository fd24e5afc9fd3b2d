//! The scanner, wired to this deployment: the facts `scan self` judges
//! (settings, files, database rows), Rampart's own dependencies (its
//! `Cargo.lock`, compiled in), storing reports, turning new findings into
//! security events and alerts, and the schedule `serve` runs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rampart_core::events::{EventKind, Outcome};
use rampart_core::password_policy::{PasswordPolicy, PolicyPreset};
use rampart_core::{AuthService, Clock, RequestMeta, ScanReportRow, Store, Timestamp};
use rampart_crypto::Entropy;
use rampart_scan::advisory::{self, Database};
use rampart_scan::posture::{self, AdminFact, ApiKeyFact, SelfFacts};
use rampart_scan::{Report, ScanKind, Severity};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::{NotifierMode, Settings};

/// The registry packages compiled into this binary on Linux (normal and
/// build dependencies, not dev ones), from `cargo tree`; `refresh-deps`
/// rebuilds it and a test fails when it is stale.
pub const OWN_DEPENDENCIES: &str = include_str!("../deps.txt");

/// Advisories reviewed and judged not to apply to Rampart, with why. Their
/// findings stay in the report as information.
pub const ACCEPTED: &[advisory::Accepted] = &[
    advisory::Accepted {
        id: "RUSTSEC-2023-0071",
        package: "rsa",
        reason: "rsa comes in through webauthn-rs, which only verifies passkey attestation signatures with public keys; \
                 the Marvin attack recovers a key from the timing of private-key decryption, and Rampart holds no RSA \
                 private key (TLS uses rustls with ring).",
    },
    advisory::Accepted {
        id: "RUSTSEC-2026-0173",
        package: "proc-macro-error2",
        reason: "an unmaintained proc macro (no known vulnerability) that age's i18n-embed-fl runs while Rampart is \
                 compiled; it puts no code in the binary and reads no input when Rampart runs. It goes when age \
                 moves to a newer i18n-embed-fl.",
    },
];

/// The advisory database: a directory given, or the built-in snapshot.
pub fn advisory_db(dir: Option<&Path>) -> Result<Database> {
    match dir {
        Some(d) => Ok(Database::open(d)?),
        None => Ok(Database::bundled()),
    }
}

pub fn to_offset(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from(t.to_system_time())
}

/// What the settings and the disk say, before the database is read.
pub fn config_facts(settings: &Settings) -> SelfFacts {
    let layout = crate::layout(settings);
    let files = crate::sensitive_files(settings);
    // Only a key file that exists: `serve` may take it from standard input
    // or the environment, which this process cannot see.
    let master_key = (crate::master_from_file() && layout.master_key.exists())
        .then(|| layout.master_key.clone());
    let g = &settings.guard;
    SelfFacts {
        production: !settings.listen.ip().is_loopback(),
        danger: settings.danger_on.clone(),
        protections_off: g.protections_off(),
        registration_open: settings.registration == rampart_core::RegistrationMode::Open,
        email_verification: settings
            .accounts_policy()
            .email_verification
            .as_str()
            .to_owned(),
        mfa_required_for_admins: !settings.mfa.required_for.is_empty(),
        password_preset: format!("{:?}", settings.password.preset).to_ascii_lowercase(),
        password_preset_weaker: PasswordPolicy::preset(settings.password.preset)
            .weaker_than(&PasswordPolicy::preset(PolicyPreset::Default)),
        trusted_proxies: g.trusted_proxy_ranges(),
        admin_open_to_all: g.admin_open_to_all(),
        notifier_log: settings.notifier_mode() == NotifierMode::Log,
        log_level: settings.log.level.clone(),
        files,
        data_dir: layout.dir.clone(),
        master_key,
        tls_cert: layout.tls_cert.exists().then(|| layout.tls_cert.clone()),
        acme: settings
            .tls
            .acme
            .as_ref()
            .map(|a| rampart_scan::posture::AcmeFacts {
                directory: a.directory_url().to_owned(),
                names: rampart_core::acme::names_key(&a.domains),
                ..Default::default()
            }),
        unread_because: None,
        admins: None,
        api_keys: None,
        backups_scheduled: crate::backup::scheduled(settings),
        last_verified_backup_ms: None,
        // Completed from the database by `db_facts`; dropped when it
        // cannot be read.
        incident: Some(rampart_scan::posture::IncidentFacts {
            drill_every_days: settings.incident.drill_every_days,
            plan_present: crate::incident::plan_path(settings).exists(),
            ..Default::default()
        }),
    }
}

/// Adds what the database says: administrators and API keys.
pub async fn db_facts(facts: &mut SelfFacts, store: &dyn Store, now: Timestamp) {
    if let Some(acme) = facts.acme.as_mut() {
        if let Ok(stored) = store.acme_certificate(&acme.directory, &acme.names).await {
            acme.read = true;
            if let Some(c) = stored {
                use rustls_pki_types::pem::PemObject;
                acme.chain =
                    rustls_pki_types::CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
                        .map(|c| c.map(|c| c.to_vec()))
                        .collect::<Result<Vec<_>, _>>()
                        .ok();
                acme.renew_at_ms = Some(c.renew_at.millis());
            }
        }
    }
    if let Ok(Some(e)) = rampart_core::audit::backup_actions::last_verified(store).await {
        facts.last_verified_backup_ms = Some(e.at.millis());
    }
    let every = facts.incident.as_ref().map_or(0, |i| i.drill_every_days);
    match (
        store.incidents_in_force().await,
        store.last_drill().await,
        crate::incident::drill_overdue(store, every, now).await,
    ) {
        (Ok(in_force), Ok(last), Ok(overdue)) => {
            if let Some(i) = facts.incident.as_mut() {
                i.lockdown = in_force
                    .iter()
                    .find(|i| i.scope == rampart_core::incident::Scope::Deployment)
                    .map(|i| (i.id.clone(), i.started_at.millis()));
                i.accounts_locked = in_force.iter().map(|i| i.accounts.len() as u64).sum();
                i.last_drill_ms = last.map(|(_, at, _)| at.millis());
                i.drill_overdue_days = overdue;
            }
        }
        _ => facts.incident = None,
    }
    if let Ok(admins) = store.admin_posture().await {
        facts.admins = Some(
            admins
                .into_iter()
                .map(|a| AdminFact {
                    email: a.email,
                    has_second_factor: a.has_second_factor,
                    created_at_ms: a.created_at.millis(),
                    last_sign_in_ms: a.last_sign_in.map(Timestamp::millis),
                })
                .collect(),
        );
    }
    if let Ok(keys) = store.api_key_posture(now).await {
        facts.api_keys = Some(
            keys.into_iter()
                .map(|k| ApiKeyFact {
                    id: k.id,
                    name: k.name,
                    prefix: k.prefix,
                    created_at_ms: k.created_at.millis(),
                    expires_at_ms: k.expires_at.map(Timestamp::millis),
                    last_used_ms: k.last_used.map(Timestamp::millis),
                })
                .collect(),
        );
    }
}

/// The database as it is, for `scan self`: never created, never migrated
/// (a running older node would find its schema changed). `Err` says why
/// the account checks cannot run.
pub async fn open_for_scan(settings: &Settings) -> std::result::Result<Arc<dyn Store>, String> {
    let url = settings.database_url();
    if let Some(path) = rampart_store::sqlite_path(url.expose_secret()) {
        if !path.exists() {
            return Err("no database yet (it is created by the first `rampart serve`)".to_owned());
        }
    }
    match rampart_store::open_as_is(url.expose_secret()).await {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => Err(format!("the database cannot be read as it is: {e}")),
    }
}

/// `scan self`: posture, then Rampart's own dependencies.
pub async fn self_report(
    settings: &Settings,
    store: std::result::Result<&dyn Store, &str>,
    db: &Database,
    now: Timestamp,
) -> Report {
    let started = Instant::now();
    let at = to_offset(now);
    let mut report = Report::new(
        ScanKind::SelfScan,
        format!("rampart on {} ({})", node_name(), settings.listen),
        at,
    );
    let mut facts = config_facts(settings);
    match store {
        Ok(s) => db_facts(&mut facts, s, now).await,
        Err(why) => {
            facts.unread_because = Some(why.to_owned());
            facts.incident = None;
        }
    }
    posture::check(
        &facts,
        at,
        &mut report.findings,
        &mut report.passed,
        &mut report.skipped,
    );
    let packages = advisory::parse_package_list(OWN_DEPENDENCIES);
    let summary = advisory::check(db, &packages, at, &mut report.findings);
    advisory::apply_accepted(&mut report.findings, ACCEPTED);
    if summary.affected == 0 {
        report.passed.push(format!(
            "{} dependencies, none with a known advisory",
            summary.packages
        ));
    }
    note_unreadable(&mut report, &summary);
    report.deps = Some(summary);
    report.finish(started.elapsed());
    report
}

/// Advisories the database holds but could not read are shown, not
/// silently skipped.
fn note_unreadable(report: &mut Report, summary: &advisory::DepsSummary) {
    if !summary.unreadable.is_empty() {
        report.skipped.push(rampart_scan::Skipped {
            check: "deps".to_owned(),
            reason: format!(
                "{} advisories could not be read and were not checked: {}",
                summary.unreadable.len(),
                summary.unreadable.join(", ")
            ),
        });
    }
}

/// This machine's name: nodes sharing one database keep their own self
/// reports apart by it.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this node".to_owned())
}

/// `scan deps --lockfile FILE`.
pub fn deps_report(lockfile: &Path, db: &Database, now: Timestamp) -> Result<Report> {
    let started = Instant::now();
    let text = std::fs::read_to_string(lockfile)
        .with_context(|| format!("cannot read the lock file {}", lockfile.display()))?;
    let packages = advisory::parse_lockfile(&text, &lockfile.display().to_string())?;
    let mut report = Report::new(
        ScanKind::Deps,
        lockfile.display().to_string(),
        to_offset(now),
    );
    let summary = advisory::check(db, &packages, to_offset(now), &mut report.findings);
    if summary.affected == 0 {
        report.passed.push(format!(
            "{} dependencies, none with a known advisory",
            summary.packages
        ));
    }
    note_unreadable(&mut report, &summary);
    report.deps = Some(summary);
    report.finish(started.elapsed());
    Ok(report)
}

/// Reports looked back on to tell a new finding from a known one.
const RECALL: u32 = 3;

/// Stores `report`; findings its target's previous report did not have
/// become `scan_finding` events, and new errors (or worse) an email to the
/// administrators. Returns the new findings.
pub async fn record(
    auth: &AuthService,
    report: &Report,
    now: Timestamp,
    entropy: &dyn Entropy,
) -> Result<Vec<rampart_scan::Finding>> {
    let store = auth.store();
    // The previous reports of this target; for a self scan on a node seen
    // for the first time (a new machine name), those of any node, so a
    // restarted container does not raise everything again.
    let kind = report.kind.as_str();
    let mut recent = store
        .recent_scan_reports(kind, Some(&report.target), RECALL)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if recent.is_empty() && report.kind == ScanKind::SelfScan {
        recent = store
            .recent_scan_reports(kind, None, RECALL)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let previous: Vec<Report> = recent
        .iter()
        .filter_map(|row| serde_json::from_str(&row.report).ok())
        .collect();
    let before = Report::known_findings(&previous);
    // New: absent before, or more severe now (a certificate's warning at
    // 30 days becoming an error at 7).
    let new: Vec<rampart_scan::Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .filter(|f| {
            before
                .get(&f.fingerprint())
                .is_none_or(|was| f.severity > *was)
        })
        .cloned()
        .collect();
    let mut id = [0u8; 12];
    entropy.fill(&mut id);
    let row = ScanReportRow {
        id: format!("scan_{}", hex::encode(id)),
        kind: report.kind.as_str().to_owned(),
        target: report.target.clone(),
        started_at: now,
        worst: report.worst().map(|s| s.as_str().to_owned()),
        findings: report.findings.len() as u32,
        report: serde_json::to_string(report)?,
    };
    // Events first: once the report is visible, its events are too.
    let meta = RequestMeta {
        user_agent: Some("rampart-scan".to_owned()),
        ..Default::default()
    };
    for f in &new {
        let reason = format!(
            "{} {} ({}): {}",
            f.severity.as_str(),
            f.check,
            f.target,
            f.title
        );
        auth.record_event(
            EventKind::ScanFinding,
            Outcome::Failure,
            Some(&reason),
            None,
            &meta,
        )
        .await;
    }
    store
        .insert_scan_report(&row)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let urgent: Vec<&rampart_scan::Finding> = new
        .iter()
        .filter(|f| f.severity >= Severity::Error)
        .collect();
    if !urgent.is_empty() {
        let mut body = format!(
            "Rampart's {} scan of {} found {} new problem(s):\n",
            report.kind.as_str(),
            report.target,
            urgent.len()
        );
        for f in &urgent {
            body.push_str(&format!(
                "\n- [{}] {}\n  where: {}\n  fix: {}\n",
                f.severity.as_str(),
                f.title,
                f.target,
                f.fix
            ));
        }
        body.push_str(&format!(
            "\nThe whole report: GET /api/v1/admin/scans/{}\n",
            row.id
        ));
        auth.alert_admins("Rampart: new security findings", &body)
            .await;
    }
    Ok(new)
}

/// What the schedule needs.
pub struct Schedule {
    pub settings: Settings,
    pub auth: Arc<AuthService>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

/// A URL scan that takes longer than this is abandoned.
pub const URL_SCAN_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// Runs the self scan every `self_every_hours` and the URL scans every
/// `urls_every_hours`, first after `start_delay_secs`, until shutdown.
/// Due times follow the injected clock, looked at every second. Each scan
/// runs as its own task: a panic in one is logged and the schedule goes
/// on, and a shutdown abandons a scan in progress. The URL scans run on
/// one node per period for the whole cluster (a shared token).
pub async fn run_schedule(s: Schedule, mut shutdown: watch::Receiver<bool>) {
    let s = Arc::new(s);
    let cfg = s.settings.scan.clone();
    let hour = 3_600_000i64;
    let mut next_self = s.clock.now().millis() + cfg.start_delay_secs as i64 * 1000;
    let mut next_urls = next_self;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = s.clock.now();
        if cfg.self_every_hours > 0 && now.millis() >= next_self {
            next_self = now.millis() + cfg.self_every_hours as i64 * hour;
            let job = tokio::spawn(self_scan_job(s.clone(), now));
            if !finish(job, "self scan", &mut shutdown).await {
                return;
            }
        }
        if cfg.urls_every_hours > 0 && !cfg.urls.is_empty() && now.millis() >= next_urls {
            let every = Duration::from_secs(cfg.urls_every_hours * 3600);
            next_urls = now.millis() + cfg.urls_every_hours as i64 * hour;
            match s
                .auth
                .store()
                .take_rate_token("scan:urls", now, every, 1)
                .await
            {
                Ok(Some(_)) => {
                    tracing::info!("URL scans of this period already ran on another node");
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the URL-scan token; scanning anyway")
                }
            }
            for u in cfg.urls.clone() {
                let job = tokio::spawn(url_scan_job(s.clone(), u, now));
                if !finish(job, "URL scan", &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Waits for a scan task; false when shutdown came first (the task is
/// abandoned).
async fn finish(
    job: tokio::task::JoinHandle<()>,
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let abort = job.abort_handle();
    tokio::select! {
        _ = shutdown.changed() => {
            abort.abort();
            false
        }
        r = job => {
            if let Err(e) = r {
                tracing::error!(error = %e, scan = what, "a scheduled scan failed; the schedule goes on");
            }
            true
        }
    }
}

async fn self_scan_job(s: Arc<Schedule>, now: Timestamp) {
    let db = match advisory_db(s.settings.scan.advisory_db.as_deref()) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "scheduled self scan: advisory database; using the built-in one");
            Database::bundled()
        }
    };
    let report = self_report(&s.settings, Ok(s.auth.store().as_ref()), &db, now).await;
    match record(&s.auth, &report, now, s.entropy.as_ref()).await {
        Ok(new) => tracing::info!(
            findings = report.findings.len(),
            new = new.len(),
            "self scan done"
        ),
        Err(e) => tracing::error!(error = %e, "cannot store the self scan"),
    }
}

async fn url_scan_job(s: Arc<Schedule>, url: String, now: Timestamp) {
    let shown = rampart_scan::url::parse_target(&url)
        .map(|t| t.display())
        .unwrap_or_default();
    let opts = match url_options(&s.settings) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "scheduled URL scans");
            return;
        }
    };
    let scan = rampart_scan::url::scan(&url, &opts, to_offset(now), &rampart_scan::Quiet);
    match tokio::time::timeout(URL_SCAN_DEADLINE, scan).await {
        Ok(Ok(report)) => match record(&s.auth, &report, now, s.entropy.as_ref()).await {
            Ok(new) => {
                tracing::info!(url = %shown, findings = report.findings.len(), new = new.len(), "URL scan done")
            }
            Err(e) => tracing::error!(error = %e, "cannot store a URL scan"),
        },
        Ok(Err(e)) => tracing::warn!(url = %shown, error = %e, "URL scan failed"),
        Err(_) => tracing::warn!(url = %shown, "URL scan abandoned after 15 minutes"),
    }
}

/// The URL-scan options `[scan]` gives.
pub fn url_options(settings: &Settings) -> Result<rampart_scan::url::UrlOptions> {
    let mut o = rampart_scan::url::UrlOptions {
        http_port: settings.scan.http_port,
        ..Default::default()
    };
    if let Some(ca) = &settings.scan.ca_file {
        o.ca = rampart_scan::url::ca_file(ca)?;
    }
    Ok(o)
}
