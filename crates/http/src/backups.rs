//! Backups, for administrators: `GET /api/v1/admin/backups`, what the
//! trail says of them (ADR 0013): the newest backup that passed its
//! restore check, the newest failure, and the recent runs.

use axum::extract::State;
use axum::Json;
use rampart_core::audit::{backup_actions, Chained, FAILURE};
use rampart_proto::Problem;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::Admin;
use crate::state::AppState;

/// Recent backup events returned.
const RECENT: u32 = 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupRun {
    /// `backup.created`, `backup.verified`, `backup.restored`,
    /// `backup.uploaded` or `backup.missing`.
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub at: String,
    /// The backup file's name.
    pub file: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
}

impl From<Chained> for BackupRun {
    fn from(e: Chained) -> Self {
        Self {
            action: e.action,
            outcome: e.outcome,
            at: e.at.to_rfc3339(),
            file: e.object,
            reason: e.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupStatus {
    /// Whether `serve` takes backups on a schedule (`[backup] dir` and
    /// recipients or a passphrase are set).
    pub scheduled: bool,
    /// The cron expression, when scheduled.
    pub schedule: Option<String>,
    /// The newest backup that was restored and checked, and passed.
    pub last_verified: Option<BackupRun>,
    /// The newest failure (a backup not written, not passing its check,
    /// or missing).
    pub last_failure: Option<BackupRun>,
    /// The newest backup events, newest first.
    pub recent: Vec<BackupRun>,
}

#[utoipa::path(get, path = "/api/v1/admin/backups", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = BackupStatus),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn backup_status(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> Result<Json<BackupStatus>, ApiError> {
    let store = state.auth.store().as_ref();
    let last_verified = backup_actions::last_verified(store)
        .await?
        .map(BackupRun::from);
    let last_failure = backup_actions::newest(store, &backup_actions::ALL, Some(FAILURE), 1)
        .await?
        .into_iter()
        .next()
        .map(BackupRun::from);
    let recent = backup_actions::newest(store, &backup_actions::ALL, None, RECENT)
        .await?
        .into_iter()
        .map(BackupRun::from)
        .collect();
    let schedule = state.settings.backup_schedule.clone();
    Ok(Json(BackupStatus {
        scheduled: schedule.is_some(),
        schedule,
        last_verified,
        last_failure,
        recent,
    }))
}
