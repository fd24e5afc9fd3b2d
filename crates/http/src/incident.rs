//! Incident response for administrators (ADR 0014): the lockdown and its
//! lift, what is in force, and the response plan. A forced password reset
//! is finished like any other (`accounts::confirm_password_reset`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::incident::{Incident, LockdownOrder, LockdownReport, Selection};
use rampart_proto::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Admin, IncidentWrite, JsonBody, Meta};
use crate::state::AppState;

/// Which accounts a reset reaches: `"all"` (every account in the scope
/// but the break-glass administrator), `"none"`, or a list of emails.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ResetSelection {
    Word(ResetWord),
    Emails(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResetWord {
    All,
    None,
}

fn selection(v: Option<ResetSelection>) -> Selection {
    match v {
        None | Some(ResetSelection::Word(ResetWord::None)) => Selection::None,
        Some(ResetSelection::Word(ResetWord::All)) => Selection::All,
        Some(ResetSelection::Emails(v)) => Selection::Only(v),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockdownRequest {
    /// Why, in one line: it goes into the signed record (longer is cut at
    /// 500 characters).
    #[schema(
        min_length = 1,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub reason: String,
    /// Empty or absent: the whole deployment. Otherwise only these
    /// accounts (emails): their sessions and keys end and their sign-in
    /// is refused; nobody else notices.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// The administrator (email) whose sessions and keys survive a
    /// deployment lockdown. Default: you.
    pub break_glass: Option<String>,
    /// Passwords that stop working now (owners get a code by email).
    pub reset_passwords: Option<ResetSelection>,
    /// Accounts whose second factors are removed, to be set up again (an
    /// administrator's password is reset with them).
    pub reenrol_mfa: Option<ResetSelection>,
    /// Only say what would happen.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftRequest {
    /// The incident to lift; absent: the deployment lockdown.
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentView {
    pub id: String,
    /// `deployment` or `accounts`.
    pub scope: String,
    pub reason: String,
    pub started_at: String,
    pub started_by: String,
    /// Account ids, for an accounts lockdown.
    pub accounts: Vec<String>,
    pub break_glass: Option<String>,
    pub lifted_at: Option<String>,
    pub lifted_by: Option<String>,
    /// The signed record (C2SP signed note; check it with `rampart
    /// incident status --verify` or the audit public key).
    pub record: String,
}

impl From<Incident> for IncidentView {
    fn from(i: Incident) -> Self {
        Self {
            id: i.id,
            scope: i.scope.as_str().to_owned(),
            reason: i.reason,
            started_at: i.started_at.to_rfc3339(),
            started_by: i.started_by,
            accounts: i.accounts.into_iter().map(|a| a.0).collect(),
            break_glass: i.break_glass.map(|a| a.0),
            lifted_at: i.lifted_at.map(|t| t.to_rfc3339()),
            lifted_by: i.lifted_by,
            record: i.record,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentStatus {
    /// Whether the deployment is locked down.
    pub locked_down: bool,
    /// Every incident in force (the deployment lockdown and account
    /// lockdowns).
    pub in_force: Vec<IncidentView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LockdownOutcome {
    /// Empty for a dry run.
    pub incident_id: String,
    pub scope: String,
    pub dry_run: bool,
    pub accounts: Vec<String>,
    pub break_glass: Option<String>,
    pub sessions_ended: u64,
    pub api_keys_revoked: u64,
    pub pending_sign_ins_ended: u64,
    pub password_resets: Vec<String>,
    pub mfa_resets: Vec<String>,
    /// Collections whose data keys are rotated (records are re-encrypted
    /// in the background).
    pub keys_rotated: Vec<String>,
    /// Who may still sign in.
    pub sign_in: String,
    pub admin_writes_frozen: bool,
    /// What could not be done once the lockdown held (it holds
    /// regardless): a reset or the key rotation that failed.
    pub problems: Vec<String>,
}

impl From<LockdownReport> for LockdownOutcome {
    fn from(r: LockdownReport) -> Self {
        Self {
            incident_id: r.incident_id,
            scope: r.scope.as_str().to_owned(),
            dry_run: r.dry_run,
            accounts: r.accounts,
            break_glass: r.break_glass,
            sessions_ended: r.ended.sessions,
            api_keys_revoked: r.ended.api_keys,
            pending_sign_ins_ended: r.ended.pending_sign_ins,
            password_resets: r.password_resets,
            mfa_resets: r.mfa_resets,
            keys_rotated: r.keys_rotated,
            sign_in: r.sign_in.to_owned(),
            admin_writes_frozen: r.admin_writes_frozen,
            problems: r.problems,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/admin/incident", tag = "incident", security(("bearer" = [])),
    responses((status = 200, body = IncidentStatus),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn status(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<IncidentStatus>, ApiError> {
    let in_force = state.incidents.in_force().await?;
    Ok(Json(IncidentStatus {
        locked_down: in_force
            .iter()
            .any(|i| i.scope == rampart_core::incident::Scope::Deployment),
        in_force: in_force.into_iter().map(IncidentView::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/admin/incident/lockdown", tag = "incident", security(("bearer" = [])),
    request_body = LockdownRequest,
    responses((status = 201, description = "Locked down", body = LockdownOutcome),
        (status = 200, description = "Dry run: what would happen", body = LockdownOutcome),
        (status = 403, description = "Not an administrator, or no recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A deployment lockdown is in force already (`lockdown_in_force`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason, an unknown account, a break-glass account that is not an administrator (`invalid_incident`)", body = Problem, content_type = "application/problem+json")))]
pub async fn lockdown(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<LockdownRequest>,
) -> Result<Response, ApiError> {
    let deployment = body.accounts.is_empty();
    let order = LockdownOrder {
        break_glass: match body.break_glass {
            Some(b) => Some(b),
            None if deployment => Some(admin.account.email.as_str().to_owned()),
            None => None,
        },
        accounts: body.accounts,
        reason: body.reason,
        reset_passwords: selection(body.reset_passwords),
        reenrol_mfa: selection(body.reenrol_mfa),
        dry_run: body.dry_run,
    };
    let by = admin.account.id.as_str();
    let report = state.incidents.begin(&order, by, &meta).await?;
    let dry = report.dry_run;
    if !dry && !report.keys_rotated.is_empty() {
        // Re-encrypting every record under the new keys takes a while;
        // the records stay readable meanwhile (old keys are kept until
        // nothing needs them).
        let data = state.data.clone();
        tokio::spawn(async move {
            if let Err(e) = data.reseal(&|_, _| {}).await {
                tracing::warn!(error = %e, "re-encryption after the lockdown's key rotation stopped; run `rampart keys rotate` to resume");
            }
        });
    }
    let status = if dry {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(LockdownOutcome::from(report))).into_response())
}

#[utoipa::path(post, path = "/api/v1/admin/incident/lift", tag = "incident", security(("bearer" = [])),
    request_body = LiftRequest,
    responses((status = 200, description = "Lifted", body = IncidentView),
        (status = 403, description = "Not an administrator, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such incident in force", body = Problem, content_type = "application/problem+json")))]
pub async fn lift(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<LiftRequest>,
) -> Result<Json<IncidentView>, ApiError> {
    let lifted = state
        .incidents
        .lift(body.id.as_deref(), admin.account.id.as_str(), &meta)
        .await?;
    Ok(Json(lifted.into()))
}

#[utoipa::path(get, path = "/api/v1/admin/incident/plan", tag = "incident", security(("bearer" = [])),
    responses((status = 200, description = "The response plan (Markdown)", content_type = "text/markdown"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No plan yet: run `rampart incident plan init` (`no_plan`)", body = Problem, content_type = "application/problem+json")))]
pub async fn plan(State(state): State<AppState>, Admin(_): Admin) -> Result<Response, ApiError> {
    let no_plan = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_plan",
            "No response plan",
            "There is no response plan yet: run `rampart incident plan init` on the server and fill it in.",
        )
    };
    let text = match tokio::fs::read(&state.settings.incident_plan).await {
        Ok(b) if b.len() <= 1 << 20 => String::from_utf8(b)
            .map_err(|_| ApiError::internal("the response plan is not UTF-8"))?,
        Ok(_) => return Err(ApiError::internal("the response plan is larger than 1 MiB")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_plan()),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "cannot read the response plan: {e}"
            )))
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        text,
    )
        .into_response())
}
