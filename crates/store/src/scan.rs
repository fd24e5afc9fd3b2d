//! The scanner's rows: administrators' and API keys' posture, read for
//! `scan self`, and stored scan reports.

use rampart_core::{AdminPosture, ApiKeyPosture, ScanReportRow, StoreError, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{backend, SqlStore};

/// Reports kept per kind and target.
const KEEP: i64 = 30;
/// No report is kept longer (targets no longer scanned, such as a
/// replaced node's, fade out).
const KEEP_MS: i64 = 90 * 86_400_000;

fn report_from(row: &AnyRow) -> Result<ScanReportRow, StoreError> {
    let corrupt = |_| StoreError::Corrupt("scan_reports");
    let findings: i64 = row.try_get("findings").map_err(corrupt)?;
    Ok(ScanReportRow {
        id: row.try_get("id").map_err(corrupt)?,
        kind: row.try_get("kind").map_err(corrupt)?,
        target: row.try_get("target").map_err(corrupt)?,
        started_at: Timestamp(row.try_get("started_at").map_err(corrupt)?),
        worst: row.try_get("worst").map_err(corrupt)?,
        findings: u32::try_from(findings).unwrap_or(u32::MAX),
        report: row.try_get("report").map_err(corrupt)?,
    })
}

impl SqlStore {
    pub(crate) async fn admin_posture_rows(&self) -> Result<Vec<AdminPosture>, StoreError> {
        let corrupt = |_| StoreError::Corrupt("accounts");
        sqlx::query(
            "SELECT a.email, a.created_at, \
             (SELECT COUNT(*) FROM mfa_factors f WHERE f.account_id = a.id AND f.confirmed_at IS NOT NULL) AS factors, \
             (SELECT MAX(e.at) FROM audit_events e WHERE e.user_id = a.id \
                AND e.action IN ('login_success', 'mfa_success') AND e.outcome = 'success') AS last_sign_in \
             FROM accounts a WHERE a.role = 'admin' ORDER BY a.email",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|row| {
            let factors: i64 = row.try_get("factors").map_err(corrupt)?;
            let last: Option<i64> = row.try_get("last_sign_in").map_err(corrupt)?;
            Ok(AdminPosture {
                email: row.try_get("email").map_err(corrupt)?,
                has_second_factor: factors > 0,
                created_at: Timestamp(row.try_get("created_at").map_err(corrupt)?),
                last_sign_in: last.map(Timestamp),
            })
        })
        .collect()
    }

    pub(crate) async fn api_key_posture_rows(
        &self,
        now: Timestamp,
    ) -> Result<Vec<ApiKeyPosture>, StoreError> {
        let corrupt = |_| StoreError::Corrupt("api_keys");
        sqlx::query(
            "SELECT k.id, k.name, k.prefix, k.created_at, k.expires_at, \
             (SELECT MAX(d.at) FROM audit_events d WHERE d.user_id = 'key:' || k.id AND d.category = 'database') AS last_used \
             FROM api_keys k WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1) \
             ORDER BY k.created_at, k.id",
        )
        .bind(now.millis())
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|row| {
            let expires: Option<i64> = row.try_get("expires_at").map_err(corrupt)?;
            let last: Option<i64> = row.try_get("last_used").map_err(corrupt)?;
            Ok(ApiKeyPosture {
                id: row.try_get("id").map_err(corrupt)?,
                name: row.try_get("name").map_err(corrupt)?,
                prefix: row.try_get("prefix").map_err(corrupt)?,
                created_at: Timestamp(row.try_get("created_at").map_err(corrupt)?),
                expires_at: expires.map(Timestamp),
                last_used: last.map(Timestamp),
            })
        })
        .collect()
    }

    pub(crate) async fn insert_scan_report_row(&self, r: &ScanReportRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO scan_reports (id, kind, target, started_at, worst, findings, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.id.as_str())
        .bind(r.kind.as_str())
        .bind(r.target.as_str())
        .bind(r.started_at.millis())
        .bind(r.worst.as_deref())
        .bind(i64::from(r.findings))
        .bind(r.report.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "DELETE FROM scan_reports WHERE kind = $1 AND target = $2 AND id NOT IN \
             (SELECT id FROM scan_reports WHERE kind = $1 AND target = $2 ORDER BY started_at DESC, id DESC LIMIT $3)",
        )
        .bind(r.kind.as_str())
        .bind(r.target.as_str())
        .bind(KEEP)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM scan_reports WHERE started_at < $1")
            .bind(r.started_at.millis().saturating_sub(KEEP_MS))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    pub(crate) async fn latest_scan_report_rows(&self) -> Result<Vec<ScanReportRow>, StoreError> {
        let mut rows: Vec<ScanReportRow> = sqlx::query(
            "SELECT r.id, r.kind, r.target, r.started_at, r.worst, r.findings, r.report FROM scan_reports r \
             WHERE r.started_at = (SELECT MAX(s.started_at) FROM scan_reports s WHERE s.kind = r.kind AND s.target = r.target) \
             ORDER BY r.kind, r.target, r.id DESC",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(report_from)
        .collect::<Result<_, _>>()?;
        rows.dedup_by(|a, b| a.kind == b.kind && a.target == b.target);
        Ok(rows)
    }

    pub(crate) async fn recent_scan_report_rows(
        &self,
        kind: &str,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ScanReportRow>, StoreError> {
        sqlx::query(
            "SELECT id, kind, target, started_at, worst, findings, report FROM scan_reports \
             WHERE kind = $1 AND (CAST($2 AS TEXT) IS NULL OR target = $2) \
             ORDER BY started_at DESC, id DESC LIMIT $3",
        )
        .bind(kind)
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(report_from)
        .collect()
    }

    pub(crate) async fn scan_report_row(
        &self,
        id: &str,
    ) -> Result<Option<ScanReportRow>, StoreError> {
        sqlx::query(
            "SELECT id, kind, target, started_at, worst, findings, report FROM scan_reports WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(report_from)
        .transpose()
    }
}
