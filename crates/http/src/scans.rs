//! Scan reports, for administrators: `GET /api/v1/admin/scans` (the newest
//! report of each target) and `GET /api/v1/admin/scans/{id}` (one whole
//! report). The reports come from the scans `serve` runs on a schedule
//! (`[scan]`).

use axum::extract::{Path, State};
use axum::Json;
use rampart_core::ScanReportRow;
use rampart_proto::Problem;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::Admin;
use crate::routes::path_id;
use crate::state::AppState;

type PathRej = axum::extract::rejection::PathRejection;

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanSummary {
    pub id: String,
    /// `self`, `url` or `deps`.
    pub kind: String,
    pub target: String,
    pub started_at: String,
    /// The most severe finding: `critical`, `error`, `warning`, `info`, or
    /// absent when there is none.
    pub worst: Option<String>,
    pub findings: u32,
}

impl From<ScanReportRow> for ScanSummary {
    fn from(r: ScanReportRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            target: r.target,
            started_at: r.started_at.to_rfc3339(),
            worst: r.worst,
            findings: r.findings,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanList {
    pub reports: Vec<ScanSummary>,
}

#[utoipa::path(get, path = "/api/v1/admin/scans", tag = "scans",
    security(("bearer" = [])),
    responses((status = 200, body = ScanList),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn list_scans(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> Result<Json<ScanList>, ApiError> {
    let rows = state.auth.store().latest_scan_reports().await?;
    Ok(Json(ScanList {
        reports: rows.into_iter().map(ScanSummary::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/scans/{id}", tag = "scans",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The whole report: findings (severity, why, fix), what passed, what was not checked, and for a URL the TLS and header grades", body = Object),
        (status = 404, description = "No such report", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn get_scan(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = path_id(id)?;
    let row = state
        .auth
        .store()
        .scan_report(&id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let report = serde_json::from_str(&row.report)
        .map_err(|_| ApiError::from(rampart_core::StoreError::Corrupt("scan_reports")))?;
    Ok(Json(report))
}
