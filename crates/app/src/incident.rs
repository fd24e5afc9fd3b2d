//! Incident response in the binary (ADR 0014): `[incident]` settings, the
//! response plan (`rampart incident plan init`, served to administrators),
//! the drill reminder `serve` runs, and the forensic bundle
//! (`rampart incident export` / `verify-bundle`, in `incident::bundle`).
//! The lockdown itself is `rampart_core::incident`.

pub mod bundle;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rampart_core::audit::{Audit, AuditStore, Category, Event, Severity, FAILURE};
use rampart_core::incident::actions;
use rampart_core::{Clock, Store, Timestamp};
use serde::Deserialize;
use tokio::sync::watch;

use crate::Settings;

/// `[incident]`: the response plan and drills.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentSettings {
    /// Days after the last drill (or, before the first, after the trail
    /// began) before `serve` records a `drill.overdue` event, which the
    /// shipped rule `rampart-drill-overdue` turns into an alert. 0: never.
    pub drill_every_days: u32,
    /// Loopback HTTPS addresses `rampart drill --target` may aim at
    /// besides this deployment's own `listen` (another node, or a staging
    /// copy on this machine), e.g. `"https://127.0.0.2:8443"`.
    pub drill_targets: Vec<String>,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            drill_every_days: 90,
            drill_targets: Vec::new(),
        }
    }
}

impl IncidentSettings {
    pub fn validate(&self) -> Result<()> {
        if self.drill_every_days > 3650 {
            bail!("[incident] drill_every_days must be 0 (never remind) to 3650");
        }
        for t in &self.drill_targets {
            crate::drill::loopback_target(t)
                .with_context(|| format!("[incident] drill_targets: {t}"))?;
        }
        Ok(())
    }
}

/// Where the response plan lives.
pub fn plan_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("incident-plan.md")
}

/// Writes the plan template; an existing plan is kept unless `force`.
pub fn plan_init(settings: &Settings, force: bool) -> Result<PathBuf> {
    let path = plan_path(settings);
    if path.exists() && !force {
        bail!(
            "{} exists already; edit it, or pass --force to replace it with the template",
            path.display()
        );
    }
    crate::datadir::create_private_dir(&settings.data_dir)?;
    if force {
        let _ = std::fs::remove_file(&path);
    }
    crate::datadir::write_private(&path, PLAN_TEMPLATE.as_bytes())?;
    Ok(path)
}

/// The response plan template: filled in by the team, served to
/// administrators at `GET /api/v1/admin/incident/plan`.
pub const PLAN_TEMPLATE: &str = include_str!("incident/plan-template.md");

/// When drills are overdue: the newest drill's end, or, before the first,
/// the oldest event of the trail.
async fn drilled_since(store: &dyn Store) -> Result<Option<Timestamp>> {
    if let Some((_, at, _)) = store.last_drill().await? {
        return Ok(Some(at));
    }
    let mut oldest: Option<Timestamp> = None;
    for node in AuditStore::audit_nodes(store).await? {
        if let Some(e) = store.audit_range(&node, 0, 1).await?.into_iter().next() {
            oldest = Some(oldest.map_or(e.at, |o| o.min(e.at)));
        }
    }
    Ok(oldest)
}

/// The days since the last drill when that is more than the period.
pub async fn drill_overdue(
    store: &dyn Store,
    every_days: u32,
    now: Timestamp,
) -> Result<Option<i64>> {
    if every_days == 0 {
        return Ok(None);
    }
    let Some(since) = drilled_since(store).await? else {
        return Ok(None);
    };
    let days = (now.millis() - since.millis()) / 86_400_000;
    Ok((days >= i64::from(every_days)).then_some(days))
}

/// When `serve` first looks whether drills are overdue.
pub const FIRST_LOOK: Duration = Duration::from_secs(60);

/// Looks once a day (one node of a cluster per day, through the shared
/// rate bucket) whether the last drill is older than the period, and
/// records `drill.overdue` when it is.
pub async fn remind_drills(
    store: Arc<dyn Store>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    every_days: u32,
    first_look: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if every_days == 0 {
        return;
    }
    let day = Duration::from_secs(86_400);
    // `serve` looks first a minute after start ([`FIRST_LOOK`]), so a
    // restart loop does not flood the trail; then daily.
    let mut wait = first_look;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        wait = day;
        let now = clock.now();
        match store
            .take_rate_token("drill-reminder", now, day - Duration::from_secs(60), 1)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the drill reminder's turn");
                continue;
            }
        }
        match drill_overdue(store.as_ref(), every_days, now).await {
            Ok(Some(days)) => {
                let _ = audit
                    .record_durable(
                        Event::new(now, actions::DRILL_OVERDUE, Category::Process, FAILURE)
                            .severity(Severity::Medium)
                            .reason(Some(&format!(
                                "no drill for {days} days (period {every_days}): run `rampart drill`"
                            )))
                            .field("drill.days_since", days),
                    )
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot check when the last drill was"),
        }
    }
}
