//! Intrusion detection in `serve` (ADR 0012): the rule set watches every
//! event this node's writer commits, carries out the responses the
//! safeguards allow, raises alerts (grouped per attack), and delivers
//! them; user rule files are re-read when they change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rampart_core::alerts::{Alert, AlertStatus, Delivery};
use rampart_core::audit::{format, Audit, Category, Chained, Event, Severity};
use rampart_core::{AccountId, AuthService, Clock, RequestMeta, Role, Store, Timestamp};
use rampart_crypto::Entropy;
use rampart_detect::{
    level_rank, Decision, Detector, Firing, OfficeHours, Options, Response, RuleError, RuleSet,
    RuleSettings, Safeguards, Source, Subject, LEVELS,
};
use rampart_http::alerts::record_of;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

/// `[detect]`: intrusion detection and alerts (README "Detection").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSettings {
    /// Off: no rule runs, nothing is blocked or alerted by detection.
    pub enabled: bool,
    /// User rule files (`*.yml`), re-read when they change. Default:
    /// `rules` in the data directory.
    pub rules_dir: Option<PathBuf>,
    /// Per-rule settings: `[detect.rules.<id>]` enabled, threshold,
    /// timespan, respond, block_for_secs.
    pub rules: BTreeMap<String, RuleSettings>,
    /// Ranges never blocked automatically (alert only), e.g. the office.
    pub trusted: Vec<String>,
    /// Most automatic responses carried out in any minute; past it, alert
    /// only.
    pub responses_per_minute: u32,
    /// Office hours for "administrative action outside office hours", as
    /// `"08:00-18:00"` or `"08:00-18:00 weekdays"`; unset: that rule never
    /// fires.
    pub office_hours: Option<String>,
    /// The zone of `office_hours`, minutes east of UTC.
    pub utc_offset_minutes: i16,
    /// Alerts are POSTed here as JSON, signed (`X-Rampart-Signature`):
    /// `https://`, or `http://` to this machine.
    pub webhook_url: Option<String>,
    /// The webhook's HMAC key (at least 32 characters).
    pub webhook_secret_file: Option<PathBuf>,
    /// PEM CA certificates to trust for the webhook.
    pub webhook_ca_file: Option<PathBuf>,
    /// Email the administrators about each new alert (through the
    /// configured notifier).
    pub email: bool,
    /// Alerts of this level or above are delivered (informational, low,
    /// medium, high, critical).
    pub deliver_from: String,
    /// Attempts per delivery before it is given up (backoff doubles from
    /// 2 s up to 10 minutes).
    pub delivery_attempts: u32,
    /// Most new alerts delivered in any hour; past it they are only listed
    /// (`GET /api/v1/admin/alerts`), so an attack from many addresses does
    /// not flood anyone's inbox.
    pub deliveries_per_hour: u32,
}

impl Default for DetectSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_dir: None,
            rules: BTreeMap::new(),
            trusted: Vec::new(),
            responses_per_minute: 10,
            office_hours: None,
            utc_offset_minutes: 0,
            webhook_url: None,
            webhook_secret_file: None,
            webhook_ca_file: None,
            email: true,
            deliver_from: "medium".into(),
            delivery_attempts: 12,
            deliveries_per_hour: 30,
        }
    }
}

/// The trail's severity for a rule's level (informational is info, and so
/// on up).
fn severity_of(level: &str) -> Severity {
    Severity::from_number(level_rank(level) as i64 + 1).unwrap_or(Severity::Medium)
}

impl DetectSettings {
    pub fn rules_dir(&self, data_dir: &Path) -> PathBuf {
        self.rules_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("rules"))
    }

    pub fn options(&self) -> Result<Options> {
        let office_hours = match &self.office_hours {
            Some(h) => Some(
                OfficeHours::parse(h, self.utc_offset_minutes)
                    .map_err(|e| anyhow::anyhow!("[detect] {e}"))?,
            ),
            None => None,
        };
        Ok(Options {
            office_hours,
            ..Options::default()
        })
    }

    pub fn trusted_nets(&self) -> Result<Vec<ipnet::IpNet>> {
        self.trusted
            .iter()
            .map(|t| {
                t.parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("[detect] trusted: `{t}` is not an address or CIDR range")
                    })
            })
            .collect()
    }

    /// Checks everything that can be checked without starting, the rule
    /// files too (`rampart config check`).
    pub fn check(&self, data_dir: &Path) -> Result<()> {
        self.check_settings()?;
        load_rules(self, data_dir).map_err(|errors| rules_error(&errors))?;
        Ok(())
    }

    /// Checks the settings (not the rule files: a broken file at start is
    /// refused, and the server runs on the shipped rules, with an alert).
    pub fn check_settings(&self) -> Result<()> {
        self.options()?;
        self.trusted_nets()?;
        if !LEVELS.contains(&self.deliver_from.as_str()) {
            anyhow::bail!("[detect] deliver_from must be one of {}", LEVELS.join(", "));
        }
        if !(1..=10_000).contains(&self.deliveries_per_hour) {
            anyhow::bail!("[detect] deliveries_per_hour must be 1 to 10000");
        }
        if !(1..=100).contains(&self.delivery_attempts) {
            anyhow::bail!("[detect] delivery_attempts must be 1 to 100");
        }
        if self.webhook_url.is_some() {
            self.webhook()?;
        }
        Ok(())
    }

    pub fn webhook(&self) -> Result<Option<rampart_notify::alert::AlertWebhook>> {
        let Some(url) = &self.webhook_url else {
            return Ok(None);
        };
        let Some(secret_file) = &self.webhook_secret_file else {
            anyhow::bail!("[detect] webhook_url needs webhook_secret_file (a file with the HMAC key, at least 32 characters)");
        };
        let secret = std::fs::read_to_string(secret_file)
            .with_context(|| format!("[detect] webhook_secret_file {}", secret_file.display()))?;
        let ca = match &self.webhook_ca_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("[detect] webhook_ca_file {}", f.display()))?,
            ),
            None => None,
        };
        let hook = rampart_notify::alert::AlertWebhook::new(
            url,
            rampart_crypto::SecretString::new(secret.trim().to_owned()),
            ca.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("[detect] webhook_url: {e}"))?;
        Ok(Some(hook))
    }
}

/// One message for a list of rule errors.
pub fn rules_error(errors: &[RuleError]) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    anyhow::anyhow!("detection rules refused:\n{}", lines.join("\n"))
}

/// The user's rule files, sorted by name.
fn user_sources(dir: &Path) -> Result<Vec<Source>, Vec<RuleError>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(vec![RuleError {
                file: dir.display().to_string(),
                line: 0,
                reason: format!("cannot read the rules directory: {e}"),
            }])
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read(&p) {
            Ok(b) if b.len() > rampart_detect::rules::MAX_FILE_BYTES => errors.push(RuleError {
                file: p.display().to_string(),
                line: 1,
                reason: "larger than 1 MiB".into(),
            }),
            Ok(b) => match String::from_utf8(b) {
                Ok(text) => out.push(Source {
                    name: p.display().to_string(),
                    text,
                    shipped: false,
                }),
                Err(_) => errors.push(RuleError {
                    file: p.display().to_string(),
                    line: 1,
                    reason: "not UTF-8 text".into(),
                }),
            },
            Err(e) => errors.push(RuleError {
                file: p.display().to_string(),
                line: 0,
                reason: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The shipped rules, the user's files and the settings, checked together.
pub fn load_rules(settings: &DetectSettings, data_dir: &Path) -> Result<RuleSet, Vec<RuleError>> {
    let mut sources = Source::shipped();
    sources.extend(user_sources(&settings.rules_dir(data_dir))?);
    rampart_detect::load(&sources, &settings.rules)
}

/// What the rules directory holds now (names, sizes, times), to notice a
/// change.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// Everything the detection task uses.
#[derive(Clone)]
pub struct Ctx {
    pub settings: DetectSettings,
    pub data_dir: PathBuf,
    pub auth: Arc<AuthService>,
    pub guard: Arc<rampart_http::guard::Guard>,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// Wakes the delivery task when this node queued a delivery.
    pub queued: Arc<tokio::sync::Notify>,
}

fn store(ctx: &Ctx) -> &Arc<dyn Store> {
    ctx.auth.store()
}

/// Actions of the events detection records.
pub const RAISED: &str = "alert.raised";
pub const RULES_LOADED: &str = "detect.rules_loaded";
pub const RULES_REFUSED: &str = "detect.rules_refused";

/// The rule id of the alert raised when rule files are refused.
pub const REFUSED_RULE: &str = "rampart-rules-refused";

/// Rule files were refused: an event, and an alert through the same path
/// as any firing (grouped, delivered), so a person hears of it.
async fn refused(ctx: &Ctx, run: &mut Running, errors: &[RuleError], rules_stay: bool) {
    let msg = rules_error(errors).to_string();
    let msg = if rules_stay {
        format!("{msg}; the rules in force stay")
    } else {
        format!("{msg}; running on the shipped rules")
    };
    tracing::error!("{msg}");
    note(
        ctx,
        RULES_REFUSED,
        rampart_core::audit::FAILURE,
        &msg,
        Severity::High,
    )
    .await;
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    let firing = Firing {
        rule_id: REFUSED_RULE.into(),
        title: format!("Detection rules refused: {first}")
            .chars()
            .take(300)
            .collect(),
        level: "high".into(),
        group: Vec::new(),
        value: errors.len() as f64,
        evidence: Vec::new(),
        at_ms: ctx.clock.now().millis(),
        source_ip: None,
        user_id: None,
        respond: vec![Response::Alert],
        block_for_secs: None,
    };
    respond(ctx, run, &firing).await;
}

async fn note(ctx: &Ctx, action: &str, outcome: &'static str, reason: &str, severity: Severity) {
    let event = Event::new(ctx.clock.now(), action, Category::Configuration, outcome)
        .severity(severity)
        .reason(Some(reason))
        .rule("detect");
    ctx.audit.record(event).await;
}

/// The running rule set, replaced whole when the user's files change.
struct Running {
    detector: Detector,
    safeguards: Safeguards,
    rules: usize,
    /// When alerts were queued for delivery in the last hour (a flood of
    /// alerts, e.g. from many addresses, must not flood a person).
    queued: std::collections::VecDeque<i64>,
}

fn running(ctx: &Ctx, set: &RuleSet) -> Result<Running> {
    Ok(Running {
        detector: Detector::new(set, ctx.settings.options()?),
        safeguards: Safeguards::new(
            ctx.settings.trusted_nets()?,
            ctx.settings.responses_per_minute as usize,
        ),
        rules: set.rules().iter().filter(|r| r.enabled).count(),
        queued: Default::default(),
    })
}

/// The detection task of `serve`: subscribes before it returns, so no
/// event committed after the start is missed.
pub fn start(ctx: Ctx, stop: watch::Receiver<bool>) -> Result<tokio::task::JoinHandle<()>> {
    let rx = ctx.audit.stats().committed.subscribe();
    let (first, refused) = match load_rules(&ctx.settings, &ctx.data_dir) {
        Ok(s) => (s, None),
        Err(errors) => {
            // The server runs on the shipped rules; the refusal is an
            // event, a log line and an alert.
            let shipped = RuleSet::shipped(&ctx.settings.rules)
                .or_else(|_| RuleSet::shipped(&BTreeMap::new()))
                .map_err(|e| rules_error(&e))?;
            (shipped, Some(errors))
        }
    };
    let run = running(&ctx, &first)?;
    Ok(tokio::spawn(watch_events(ctx, run, refused, rx, stop)))
}

async fn watch_events(
    ctx: Ctx,
    mut run: Running,
    refused_at_start: Option<Vec<RuleError>>,
    mut rx: broadcast::Receiver<Arc<[Chained]>>,
    mut stop: watch::Receiver<bool>,
) {
    let dir = ctx.settings.rules_dir(&ctx.data_dir);
    let mut seen = fingerprint(&dir);
    remember_sign_ins(&ctx, &mut run).await;
    match refused_at_start {
        Some(errors) => refused(&ctx, &mut run, &errors, false).await,
        None => tracing::info!(rules = run.rules, "detection rules loaded"),
    }
    let node = ctx.audit.node().to_owned();
    // The first event this task must see: anything committed from its
    // start on (found in the store when the first thing it hears is that
    // it fell behind).
    let started = ctx.clock.now();
    let mut next: Option<u64> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Ok(batch) => {
                    // A gap (events the store has and this task missed):
                    // read them first, in order.
                    if let (Some(n), Some(first)) = (next, batch.first()) {
                        if first.seq > n {
                            next = Some(catch_up(&ctx, &mut run, &node, n, &stop).await);
                        }
                    }
                    for e in batch.iter() {
                        if next.is_some_and(|n| e.seq < n) {
                            continue;
                        }
                        next = Some(e.seq + 1);
                        observe(&ctx, &mut run, e).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(batches = missed, "detection fell behind the trail; reading the missed events from the database");
                    let from = match next {
                        Some(n) => Some(n),
                        None => store(&ctx).audit_first_since(&node, started).await.ok().flatten(),
                    };
                    if let Some(from) = from {
                        next = Some(catch_up(&ctx, &mut run, &node, from, &stop).await);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let now = fingerprint(&dir);
                if now != seen {
                    seen = now;
                    reload(&ctx, &mut run).await;
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Seeds where accounts sign in from with the places of the live
/// sessions, so that a restart does not make the next sign-in from a new
/// address or device look familiar.
async fn remember_sign_ins(ctx: &Ctx, run: &mut Running) {
    match store(ctx)
        .session_places(ctx.clock.now(), rampart_detect::MAX_KNOWN_ACCOUNTS as u32)
        .await
    {
        Ok(places) => {
            for (account, ip, agent) in places.iter().rev() {
                run.detector
                    .remember_sign_in(account.as_str(), ip.as_deref(), agent.as_deref());
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "detection could not read where accounts sign in from; new addresses and devices are judged from now on")
        }
    }
}

/// Reads events `from` on out of the store, through the rules, until it
/// is current (retrying while the database does not answer, until the
/// server stops); the next sequence number to expect.
async fn catch_up(
    ctx: &Ctx,
    run: &mut Running,
    node: &str,
    mut from: u64,
    stop: &watch::Receiver<bool>,
) -> u64 {
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return from;
        }
        match store(ctx).audit_range(node, from, 2_048).await {
            Ok(events) if events.is_empty() => return from,
            Ok(events) => {
                failures = 0;
                for e in &events {
                    from = e.seq + 1;
                    observe(ctx, run, e).await;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, "detection could not read missed events; retrying");
                tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
            }
        }
    }
}

async fn reload(ctx: &Ctx, run: &mut Running) {
    match load_rules(&ctx.settings, &ctx.data_dir) {
        Ok(set) => match running(ctx, &set) {
            Ok(mut new) => {
                new.detector.carry_state_from(&mut run.detector);
                new.queued = std::mem::take(&mut run.queued);
                // The response rate limit counts on across a reload (the
                // settings it holds do not change while the server runs).
                new.safeguards = run.safeguards.clone();
                let n = new.rules;
                *run = new;
                tracing::info!(rules = n, "detection rules reloaded");
                note(
                    ctx,
                    RULES_LOADED,
                    rampart_core::audit::SUCCESS,
                    &format!("{n} rules in force"),
                    Severity::Info,
                )
                .await;
            }
            Err(e) => tracing::error!(error = %e, "detection settings"),
        },
        Err(errors) => refused(ctx, run, &errors, true).await,
    }
}

async fn observe(ctx: &Ctx, run: &mut Running, e: &Chained) {
    // Detection's own events never feed the rules: a rule matching them
    // would fire on its own alerts without end.
    if rampart_core::alerts::ACTIONS.contains(&e.action.as_str()) {
        return;
    }
    let firings = run.detector.observe_owned(format::ecs(e), e.at.millis());
    for f in firings {
        respond(ctx, run, &f).await;
    }
}

fn new_id(entropy: &dyn Entropy) -> String {
    let mut b = [0u8; 12];
    entropy.fill(&mut b);
    format!("alr_{}", hex::encode(b))
}

/// Whether a block of `ip` would cover an address an administrator has a
/// live session from (for IPv6, anywhere in its /64).
async fn admins_at(ctx: &Ctx, ip: std::net::IpAddr) -> bool {
    let blocked = rampart_detect::respond::blocked_net(ip);
    match store(ctx).admin_session_addresses(ctx.clock.now()).await {
        Ok(addresses) => addresses.iter().any(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|a| blocked.contains(&rampart_detect::respond::blocked_net(a)))
        }),
        // Unknown: err on the side of not blocking.
        Err(_) => true,
    }
}

async fn subject_of(ctx: &Ctx, f: &Firing) -> Subject {
    let ip = f.ip();
    let account = f.account().map(str::to_owned);
    let account_is_admin = match &account {
        Some(a) if !a.starts_with("key:") => matches!(
            store(ctx).account_by_id(&AccountId(a.clone())).await,
            Ok(Some(acc)) if acc.role == Role::Admin
        ),
        _ => false,
    };
    let ip_is_admins = match ip {
        Some(ip) if f.respond.contains(&Response::BlockAddress) => admins_at(ctx, ip).await,
        _ => false,
    };
    Subject {
        ip,
        account,
        account_is_admin,
        ip_is_admins,
    }
}

async fn respond(ctx: &Ctx, run: &mut Running, f: &Firing) {
    let now = ctx.clock.now();
    let subject = subject_of(ctx, f).await;
    let decisions = run.safeguards.decide(&f.respond, &subject, now.millis());
    let mut records = Vec::new();
    for d in decisions {
        records.push(match d {
            Decision::Act { response } => {
                rampart_http::alerts::carry_out(
                    &ctx.auth,
                    &ctx.guard,
                    response,
                    &subject,
                    &f.rule_id,
                    f.block_for_secs,
                )
                .await
            }
            Decision::Withheld { response, why } => {
                record_of(response, "withheld", Some(why), &subject, now)
            }
            Decision::Confirm { response } => record_of(
                response,
                "awaiting_confirmation",
                Some(
                    "the account is an administrator's: another administrator must confirm".into(),
                ),
                &subject,
                now,
            ),
        });
    }
    let alert = Alert {
        id: new_id(ctx.entropy.as_ref()),
        rule_id: f.rule_id.clone(),
        title: f.title.clone(),
        level: f.level.clone(),
        group_key: f.group_key(),
        status: AlertStatus::Open,
        count: 1,
        first_at: Timestamp(f.at_ms),
        last_at: Timestamp(f.at_ms),
        evidence: f.evidence.clone(),
        source_ip: subject.ip.map(|i| i.to_string()),
        account: subject.account.clone(),
        responses: records.clone(),
        node: ctx.audit.node().to_owned(),
        changed_by: None,
        changed_at: None,
    };
    let (stored, new) = match store(ctx).raise_alert(&alert).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, rule = %f.rule_id, "an alert could not be stored");
            return;
        }
    };
    if !new && !records.is_empty() {
        // Added to the alert's responses unless someone changed them
        // meanwhile (a confirmation, an undo): then read again and retry.
        let mut current = stored.responses.clone();
        for _ in 0..5 {
            let mut all = current.clone();
            all.extend(records.iter().cloned());
            match store(ctx)
                .set_alert_responses(&stored.id, &current, &all)
                .await
            {
                Ok(true) => break,
                Ok(false) => match store(ctx).alert(&stored.id).await {
                    Ok(Some(a)) if a.status != AlertStatus::Resolved => current = a.responses,
                    _ => break,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "alert responses not saved");
                    break;
                }
            }
        }
    }
    let delivery = if !new {
        "grouped"
    } else if level_rank(&f.level) < level_rank(&ctx.settings.deliver_from) {
        "below deliver_from"
    } else {
        while run
            .queued
            .front()
            .is_some_and(|t| *t <= now.millis() - 3_600_000)
        {
            run.queued.pop_front();
        }
        if run.queued.len() >= ctx.settings.deliveries_per_hour as usize {
            tracing::warn!(alert = %stored.id, "more new alerts in the last hour than [detect] deliveries_per_hour: this one is not delivered, only listed");
            "held: deliveries_per_hour reached"
        } else {
            run.queued.push_back(now.millis());
            let body = delivery_body(&stored);
            let mut items = Vec::new();
            if ctx.settings.webhook_url.is_some() {
                items.push(("webhook".to_owned(), body.clone()));
            }
            if ctx.settings.email {
                items.push(("email".to_owned(), body));
            }
            if !items.is_empty() {
                match store(ctx).enqueue_deliveries(&stored.id, &items, now).await {
                    Ok(()) => ctx.queued.notify_one(),
                    Err(e) => tracing::error!(error = %e, "alert deliveries not queued"),
                }
            }
            "queued"
        }
    };
    let event = Event::new(now, RAISED, Category::Process, rampart_core::audit::SUCCESS)
        .severity(severity_of(&f.level))
        .rule(&f.rule_id)
        .object(&stored.id)
        .reason(Some(&f.title))
        .user(stored.account.as_deref())
        .meta(&RequestMeta {
            ip: stored.source_ip.clone(),
            ..Default::default()
        })
        .field("alert.count", stored.count)
        .field("alert.new", new)
        .field("alert.evidence", f.evidence.clone())
        .field("alert.delivery", delivery);
    ctx.audit.record(event).await;
}

/// The alert as a receiver gets it (webhook body, email text source).
pub fn delivery_body(a: &Alert) -> String {
    serde_json::json!({
        "type": "rampart.alert",
        "alert": a,
    })
    .to_string()
}

/// How long after failed attempt `n` (n ≥ 1) the next: 2 s, doubling, at
/// most 10 min.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs((1u64 << attempts.clamp(1, 10)).min(600))
}

/// Days a resolved alert is kept, and any alert.
const RESOLVED_KEPT_DAYS: u32 = 90;
const ALERTS_KEPT_DAYS: u32 = 400;

/// How long an attempt holds its delivery.
const DELIVERY_LEASE: Duration = Duration::from_secs(120);

/// Delivers queued alerts (webhook, email) until stopped: at once when
/// this node queued one, and every two seconds for retries and for what
/// other nodes queued.
pub async fn deliver(
    ctx: Ctx,
    webhook: Option<rampart_notify::alert::AlertWebhook>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_purge: Option<Timestamp> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.queued.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = ctx.clock.now();
        if last_purge.is_none_or(|t| now.millis() - t.millis() >= 3_600_000) {
            last_purge = Some(now);
            let day = Duration::from_secs(24 * 3600);
            match store(&ctx)
                .purge_alerts(
                    now.minus(day * RESOLVED_KEPT_DAYS),
                    now.minus(day * ALERTS_KEPT_DAYS),
                    now.minus(day * 30),
                    ctx.settings.delivery_attempts,
                )
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    alerts = n,
                    "old alerts removed (their events stay in the trail)"
                ),
                Err(e) => tracing::warn!(error = %e, "old alerts not removed"),
            }
        }
        let due = match store(&ctx)
            .due_deliveries(now, ctx.settings.delivery_attempts, 20)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "alert deliveries cannot be read");
                continue;
            }
        };
        for d in due {
            // Leased for longer than an attempt takes (the webhook times
            // out after 10 s, email per administrator likewise), so no
            // other node sends it meanwhile.
            match store(&ctx)
                .claim_delivery(&d, now.plus(DELIVERY_LEASE))
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "alert delivery not claimed");
                    continue;
                }
            }
            let outcome = attempt(&ctx, webhook.as_ref(), &d).await;
            let finished = match &outcome {
                Ok(()) => {
                    store(&ctx)
                        .finish_delivery(d.id, Some(ctx.clock.now()), None, None)
                        .await
                }
                Err(e) => {
                    let last = d.attempts + 1 >= ctx.settings.delivery_attempts;
                    tracing::warn!(channel = %d.channel, attempt = d.attempts + 1, error = %e, "alert delivery failed");
                    let event = Event::new(
                        ctx.clock.now(),
                        "alert.delivery_failed",
                        Category::Process,
                        rampart_core::audit::FAILURE,
                    )
                    .severity(if last {
                        Severity::High
                    } else {
                        Severity::Medium
                    })
                    .object(&d.alert_id)
                    .reason(Some(e))
                    .field("delivery.channel", d.channel.clone())
                    .field("delivery.attempt", d.attempts + 1)
                    .field("delivery.gave_up", last);
                    ctx.audit.record(event).await;
                    let retry_at = ctx.clock.now().plus(backoff(d.attempts + 1));
                    store(&ctx)
                        .finish_delivery(d.id, None, Some(e), Some(retry_at))
                        .await
                }
            };
            if let Err(e) = finished {
                tracing::warn!(error = %e, "alert delivery outcome not saved");
            }
        }
    }
}

async fn attempt(
    ctx: &Ctx,
    webhook: Option<&rampart_notify::alert::AlertWebhook>,
    d: &Delivery,
) -> Result<(), String> {
    match d.channel.as_str() {
        "webhook" => match webhook {
            Some(w) => w
                .post(d.body.as_bytes(), ctx.clock.now().millis() / 1000)
                .await
                .map_err(|e| e.to_string()),
            None => Err("no webhook is configured any more".into()),
        },
        "email" => {
            let v: serde_json::Value = serde_json::from_str(&d.body).map_err(|e| e.to_string())?;
            let a = &v["alert"];
            let subject = format!(
                "Rampart alert ({}): {}",
                a["level"].as_str().unwrap_or(""),
                a["title"].as_str().unwrap_or("")
            );
            let text = format!(
                "{}\n\nRule: {}\nAddress: {}\nAccount: {}\nEvidence (audit events): {}\nResponses: {}\n\nSee GET /api/v1/admin/alerts/{} to acknowledge or resolve it.",
                a["title"].as_str().unwrap_or(""),
                a["rule_id"].as_str().unwrap_or(""),
                a["source_ip"].as_str().unwrap_or("-"),
                a["account"].as_str().unwrap_or("-"),
                a["evidence"],
                a["responses"],
                a["id"].as_str().unwrap_or(""),
            );
            ctx.auth
                .email_admins(&subject, &text)
                .await
                .map_err(|e| e.to_string())
        }
        other => Err(format!("unknown channel {other}")),
    }
}

/// `rampart rules list`.
pub fn list_command(settings: &crate::Settings, json: bool) -> Result<()> {
    let set = load_rules(&settings.detect, &settings.data_dir).map_err(|e| rules_error(&e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(set.rules())?);
        return Ok(());
    }
    let dir = settings.detect.rules_dir(&settings.data_dir);
    println!(
        "{} rules ({} on); your rules: {}",
        set.rules().len(),
        set.rules().iter().filter(|r| r.enabled).count(),
        dir.display()
    );
    println!();
    for r in set.rules() {
        let window = match (r.threshold, r.timespan_secs) {
            (Some(t), Some(s)) if r.kind != "temporal" && r.kind != "temporal_ordered" => {
                format!("{t} in {s}s")
            }
            (_, Some(s)) => format!("within {s}s"),
            _ => "each event".into(),
        };
        let by = if r.group_by.is_empty() {
            String::new()
        } else {
            format!(" by {}", r.group_by.join(","))
        };
        let state = match (&r.disabled_because, r.building_block) {
            (Some(why), _) => format!("off: {why}"),
            (None, true) => "building block".into(),
            (None, false) => "on".into(),
        };
        let respond: Vec<&str> = r.respond.iter().map(|x| x.as_str()).collect();
        println!("{:<36} {:<9} {}", r.id, r.level, r.title);
        println!(
            "{:<36} {} {}{}; responds: {}; {}",
            "",
            r.kind,
            window,
            by,
            if respond.is_empty() {
                "alert".to_owned()
            } else {
                respond.join(", ")
            },
            state
        );
    }
    Ok(())
}

/// `rampart rules test`: every firing of `rule` over the events of
/// `events`; nothing is changed anywhere.
pub fn test_command(
    settings: &crate::Settings,
    rule: &str,
    events: &Path,
    extra: Option<&Path>,
) -> Result<()> {
    use std::io::BufRead;
    let mut sources = Source::shipped();
    sources.extend(
        user_sources(&settings.detect.rules_dir(&settings.data_dir))
            .map_err(|e| rules_error(&e))?,
    );
    if let Some(p) = extra {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        sources.push(Source {
            name: p.display().to_string(),
            text,
            shipped: false,
        });
    }
    let set =
        rampart_detect::load(&sources, &settings.detect.rules).map_err(|e| rules_error(&e))?;
    let Some(info) = set.get(rule) else {
        anyhow::bail!("no rule `{rule}`; `rampart rules list` shows them");
    };
    let id = info.id.clone();
    if !info.enabled {
        anyhow::bail!(
            "`{id}` is off ({}); turn it on to test it",
            info.disabled_because.clone().unwrap_or_default()
        );
    }
    // The rule alone with what it counts, building blocks reported too.
    let set = set.only(&id).unwrap_or(set);
    let mut options = settings.detect.options()?;
    options.everything = true;
    let mut detector = Detector::new(&set, options);
    let file =
        std::fs::File::open(events).with_context(|| format!("cannot read {}", events.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (mut read, mut n, mut fired, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", events.display()))?;
        read += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&line) else {
            skipped += 1;
            continue;
        };
        n += 1;
        for f in detector.observe_ecs(&doc) {
            if f.rule_id != id {
                continue;
            }
            fired += 1;
            let group: Vec<String> = f.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{}  {}  {}  value {}  evidence {}",
                Timestamp(f.at_ms).to_rfc3339(),
                f.rule_id,
                if group.is_empty() {
                    "-".into()
                } else {
                    group.join(" ")
                },
                f.value,
                f.evidence.join(",")
            );
        }
        if tty && n % 50_000 == 0 {
            eprint!(
                "\r{n} events read ({}%)",
                (read * 100).checked_div(total).unwrap_or(100).min(100)
            );
        }
    }
    if tty {
        eprint!("\r");
    }
    println!(
        "{id}: fired {fired} time{} over {n} events{}",
        if fired == 1 { "" } else { "s" },
        if skipped > 0 {
            format!(" ({skipped} lines were not JSON and were skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}
