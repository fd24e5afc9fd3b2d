//! Alerts, for administrators (ADR 0012): `GET /api/v1/admin/alerts`
//! (filters, cursor paging), `GET …/alerts/{id}`, and the changes:
//! acknowledge (an administrator), resolve, confirm a response awaiting a
//! second administrator, and undo the responses (each an administrator
//! write, so with a fresh step-up). The responses themselves
//! ([`carry_out`]) are shared with the detection task.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use rampart_core::alerts::{Alert, AlertQuery, AlertStatus, ResponseRecord};
use rampart_core::audit::{Category, Event, Severity};
use rampart_core::{AccountId, AuthService, RequestMeta, Timestamp};
use rampart_detect::{Response, Subject};
use rampart_proto::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Admin, Authed, IncidentWrite, Meta};
use crate::guard::Guard;
use crate::routes::path_id;
use crate::state::AppState;

type PathRej = axum::extract::rejection::PathRejection;

/// Query of `GET /api/v1/admin/alerts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// `open`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    /// A rule id, e.g. `rampart-credential-stuffing`.
    pub rule: Option<String>,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    pub level: Option<String>,
    /// Last seen at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Last seen before this time (RFC 3339).
    pub until: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// One response and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseView {
    /// `block_address`, `lock_account`, `revoke_sessions`, `require_step_up`.
    pub response: String,
    /// `done`, `withheld`, `awaiting_confirmation`, `failed`, `undone`.
    pub state: String,
    pub detail: Option<String>,
    /// The address block it set (lifted by undo).
    pub block_id: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    pub rule: String,
    pub title: String,
    /// The rule's level: informational, low, medium, high, critical.
    pub level: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// Firings of the same attack grouped into this alert.
    pub count: u64,
    pub first_at: String,
    pub last_at: String,
    /// The events that made it fire (`node:seq`, see `/admin/events`).
    pub evidence: Vec<String>,
    pub source_ip: Option<String>,
    pub account: Option<String>,
    pub responses: Vec<ResponseView>,
    /// The node whose detector raised it.
    pub node: String,
    /// Who last changed its status, and when.
    pub changed_by: Option<String>,
    pub changed_at: Option<String>,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> Self {
        Self {
            id: a.id,
            rule: a.rule_id,
            title: a.title,
            level: a.level,
            status: a.status.as_str().to_owned(),
            count: a.count,
            first_at: a.first_at.to_rfc3339(),
            last_at: a.last_at.to_rfc3339(),
            evidence: a.evidence,
            source_ip: a.source_ip,
            account: a.account,
            responses: a
                .responses
                .into_iter()
                .map(|r| ResponseView {
                    response: r.response,
                    state: r.state,
                    detail: r.detail,
                    block_id: r.block_id,
                    at: r.at.to_rfc3339(),
                })
                .collect(),
            node: a.node,
            changed_by: a.changed_by,
            changed_at: a.changed_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub alerts: Vec<AlertView>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<String>,
}

const ALLOWED: &str =
    "Allowed parameters: status, rule, level, since, until (RFC 3339), limit (1-500), cursor.";

fn encode_cursor(a: &Alert) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", a.last_at.0, a.id))
}

fn decode_cursor(c: &str) -> Option<(Timestamp, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (at, id) = s.split_once(':')?;
    let ok = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| Some((Timestamp(at.parse().ok()?), id.to_owned())))?
}

fn query_of(q: &AlertParams) -> Result<AlertQuery, ApiError> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let status =
        match given(&q.status) {
            None => None,
            Some(s) => Some(AlertStatus::parse(&s).ok_or_else(|| {
                ApiError::invalid_query("`status`: open, acknowledged or resolved")
            })?),
        };
    let level = given(&q.level);
    if level
        .as_deref()
        .is_some_and(|l| !rampart_detect::LEVELS.contains(&l))
    {
        return Err(ApiError::invalid_query(
            "`level`: informational, low, medium, high or critical",
        ));
    }
    let rule = given(&q.rule);
    if rule
        .as_deref()
        .is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control))
    {
        return Err(ApiError::invalid_query(
            "`rule`: at most 200 printable characters",
        ));
    }
    let ts = |name: &str, v: &Option<String>| ApiError::query_time(name, given(v).as_deref());
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_query("`limit`: 1 to 500"));
    }
    let cursor = match given(&q.cursor) {
        None => None,
        Some(c) => Some(
            decode_cursor(&c)
                .ok_or_else(|| ApiError::invalid_query("`cursor`: not one this server gave"))?,
        ),
    };
    Ok(AlertQuery {
        status,
        rule_id: rule,
        level,
        since: ts("since", &q.since)?,
        until: ts("until", &q.until)?,
        limit,
        cursor,
    })
}

#[utoipa::path(get, path = "/api/v1/admin/alerts", tag = "alerts",
    security(("bearer" = [])),
    params(AlertParams),
    responses((status = 200, body = AlertPage),
        (status = 400, description = "A parameter that is not one of these, or malformed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn list_alerts(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    query: Result<Query<AlertParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    let q = query
        .map(|Query(q)| q)
        .map_err(|_| ApiError::invalid_query(ALLOWED))?;
    let query = query_of(&q)?;
    let alerts = state.auth.store().alerts(&query).await?;
    let next = (alerts.len() as u32 == query.limit)
        .then(|| alerts.last().map(encode_cursor))
        .flatten();
    Ok(Json(AlertPage {
        alerts: alerts.into_iter().map(AlertView::from).collect(),
        next,
    }))
}

async fn load(state: &AppState, id: Result<Path<String>, PathRej>) -> Result<Alert, ApiError> {
    let id = path_id(id)?;
    state
        .auth
        .store()
        .alert(&id)
        .await?
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(get, path = "/api/v1/admin/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn get_alert(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<AlertView>, ApiError> {
    Ok(Json(load(&state, id).await?.into()))
}

/// Whether the alert, or one of its responses, is about `admin`: an
/// administrator under suspicion does not handle their own alert.
fn about(alert: &Alert, admin: &Authed) -> bool {
    let me = admin.account.id.as_str();
    alert.account.as_deref() == Some(me)
        || alert
            .responses
            .iter()
            .any(|r| r.account.as_deref() == Some(me))
}

fn own_alert() -> ApiError {
    ApiError::forbidden(
        "self_confirmation",
        "This alert is about your own account: another administrator must handle it.",
    )
}

fn resolved() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "alert_resolved",
        "Alert already resolved",
        "A resolved alert does not change; a new firing of its rule opens a new one.",
    )
}

fn changed_meanwhile() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "alert_changed",
        "Alert changed meanwhile",
        "Someone else changed this alert's responses at the same moment: read it again and retry.",
    )
}

/// An alert `admin` may act on: not resolved, not about themselves.
async fn changeable(
    state: &AppState,
    id: Result<Path<String>, PathRej>,
    admin: &Authed,
) -> Result<Alert, ApiError> {
    let alert = load(state, id).await?;
    if alert.status == AlertStatus::Resolved {
        return Err(resolved());
    }
    if about(&alert, admin) {
        return Err(own_alert());
    }
    Ok(alert)
}

/// Records what an administrator did to an alert.
async fn record(
    state: &AppState,
    action: &str,
    admin: &Authed,
    alert: &Alert,
    meta: &RequestMeta,
    detail: Option<&str>,
) {
    let event = Event::new(
        state.guard.now(),
        action,
        Category::Process,
        rampart_core::audit::SUCCESS,
    )
    .severity(Severity::Low)
    .user(Some(admin.account.id.as_str()))
    .object(&alert.id)
    .rule(&alert.rule_id)
    .reason(detail)
    .meta(meta);
    if let Err(e) = state.auth.audit().record_durable(event).await {
        tracing::error!(error = %e, "could not record an alert change");
    }
}

async fn set_status(
    state: &AppState,
    admin: &Authed,
    meta: &RequestMeta,
    id: Result<Path<String>, PathRej>,
    status: AlertStatus,
    action: &str,
) -> Result<Json<AlertView>, ApiError> {
    let alert = load(state, id).await?;
    if about(&alert, admin) {
        return Err(own_alert());
    }
    let by = format!("admin:{}", admin.account.id.as_str());
    if !state
        .auth
        .store()
        .set_alert_status(&alert.id, status, &by, state.guard.now())
        .await?
    {
        return Err(resolved());
    }
    record(state, action, admin, &alert, meta, None).await;
    let alert = state
        .auth
        .store()
        .alert(&alert.id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(alert.into()))
}

#[utoipa::path(post, path = "/api/v1/admin/alerts/{id}/acknowledge", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "Acknowledged: someone is on it", body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already resolved", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<AlertView>, ApiError> {
    set_status(
        &state,
        &admin,
        &meta,
        id,
        AlertStatus::Acknowledged,
        "alert.acknowledged",
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/admin/alerts/{id}/resolve", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "Resolved", body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already resolved", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn resolve(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<AlertView>, ApiError> {
    set_status(
        &state,
        &admin,
        &meta,
        id,
        AlertStatus::Resolved,
        "alert.resolved",
    )
    .await
}

/// Whom a recorded response is about (older records: the alert's).
fn subject_of(a: &Alert, r: &ResponseRecord) -> Subject {
    Subject {
        ip: r
            .ip
            .as_deref()
            .or(a.source_ip.as_deref())
            .and_then(|s| s.parse().ok()),
        account: r.account.clone().or_else(|| a.account.clone()),
        account_is_admin: false,
        ip_is_admins: false,
    }
}

#[utoipa::path(post, path = "/api/v1/admin/alerts/{id}/confirm", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The responses that awaited a second administrator are carried out", body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing awaits confirmation", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no recent step-up, or the alert is about you", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<AlertView>, ApiError> {
    let mut alert = changeable(&state, id, &admin).await?;
    let mut any = false;
    let snapshot = alert.clone();
    for r in alert.responses.iter_mut() {
        if r.state != "awaiting_confirmation" {
            continue;
        }
        let Some(response) = Response::parse(&r.response) else {
            continue;
        };
        let subject = subject_of(&snapshot, r);
        any = true;
        let mut done = carry_out(
            &state.auth,
            &state.guard,
            response,
            &subject,
            &alert.rule_id,
            None,
        )
        .await;
        if done.state == "done" {
            done.detail = Some(format!(
                "{} (confirmed by admin:{})",
                done.detail.unwrap_or_default(),
                admin.account.id.as_str()
            ));
        }
        *r = done;
    }
    if !any {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_confirm",
            "Nothing awaits confirmation",
            "This alert has no response waiting for a second administrator.",
        ));
    }
    if !state
        .auth
        .store()
        .set_alert_responses(&alert.id, &snapshot.responses, &alert.responses)
        .await?
    {
        return Err(changed_meanwhile());
    }
    record(&state, "alert.confirmed", &admin, &alert, &meta, None).await;
    Ok(Json(alert.into()))
}

#[utoipa::path(post, path = "/api/v1/admin/alerts/{id}/undo", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "Its address blocks are lifted and its account locks removed; ended sessions stay ended", body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to undo", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn undo(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<AlertView>, ApiError> {
    let mut alert = changeable(&state, id, &admin).await?;
    let snapshot = alert.clone();
    let by = format!("admin:{}", admin.account.id.as_str());
    let mut undone = Vec::new();
    for r in alert.responses.iter_mut().filter(|r| r.state == "done") {
        let ok = match r.response.as_str() {
            "block_address" => match &r.block_id {
                Some(b) => {
                    // Already expired or lifted by hand counts as undone.
                    state.guard.lift_block(b).await?;
                    true
                }
                None => false,
            },
            "lock_account" => match r.account.as_ref().or(alert.account.as_ref()) {
                Some(a) => {
                    state.auth.unlock(&AccountId(a.clone()), &by, &meta).await?;
                    true
                }
                None => false,
            },
            // Ended sessions and cleared step-ups are over: the owner
            // signs in or proves themselves again.
            _ => false,
        };
        if ok {
            r.state = "undone".into();
            r.detail = Some(format!("undone by {by}"));
            undone.push(r.response.clone());
        }
    }
    if undone.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_undo",
            "Nothing to undo",
            "This alert set no address block or account lock that is still recorded as done.",
        ));
    }
    if !state
        .auth
        .store()
        .set_alert_responses(&alert.id, &snapshot.responses, &alert.responses)
        .await?
    {
        return Err(changed_meanwhile());
    }
    record(
        &state,
        "alert.undone",
        &admin,
        &alert,
        &meta,
        Some(&undone.join(",")),
    )
    .await;
    Ok(Json(alert.into()))
}

/// A response's record: what, in which state, why, about whom, when.
pub fn record_of(
    response: Response,
    state: &str,
    detail: Option<String>,
    subject: &Subject,
    at: Timestamp,
) -> ResponseRecord {
    ResponseRecord {
        response: response.as_str().to_owned(),
        state: state.to_owned(),
        detail,
        block_id: None,
        ip: subject.ip.map(|i| i.to_string()),
        account: subject.account.clone(),
        at,
    }
}

/// Carries out one response for `subject` (detection's automatic ones,
/// and those a second administrator confirms); what became of it. Each
/// is an event of its own (`block_added`, `account_locked`,
/// `session_revoked`, `step_up`).
pub async fn carry_out(
    auth: &AuthService,
    guard: &Guard,
    response: Response,
    subject: &Subject,
    rule: &str,
    block_for_secs: Option<u64>,
) -> ResponseRecord {
    let now = guard.now();
    let why = format!("detection rule {rule}");
    let meta = RequestMeta {
        ip: subject.ip.map(|i| i.to_string()),
        ..Default::default()
    };
    let mut rec = record_of(response, "done", None, subject, now);
    let account = subject.account.clone().map(AccountId);
    let no_account = || Err::<String, String>("the alert names no account".into());
    let result: Result<String, String> = match response {
        Response::BlockAddress => match subject.ip {
            // Refused already: a new block would only lengthen the
            // offender record (and a blocked client's retries are not a
            // new attack).
            Some(ip) if guard.refuses(ip) => {
                rec.state = "withheld".into();
                rec.detail = Some("the address is already blocked or denied".into());
                return rec;
            }
            Some(ip) => {
                let net = match ip {
                    std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                        ipnet::IpNet::new(ip, 64).unwrap_or_else(|_| ip.into())
                    }
                    _ => ipnet::IpNet::from(ip),
                };
                match guard
                    .add_block(
                        &net.to_string(),
                        block_for_secs.map(Duration::from_secs),
                        &why,
                        &format!("auto:{rule}"),
                    )
                    .await
                {
                    Ok(b) => {
                        rec.block_id = Some(b.id.clone());
                        let event = rampart_core::events::EventKind::BlockAdded
                            .event(now, rampart_core::events::Outcome::Success)
                            .rule(&format!("detect.{rule}"))
                            .reason(Some(&b.summary()))
                            .object(&b.id)
                            .meta(&meta);
                        auth.audit().record(event).await;
                        Ok(b.summary())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Err("the alert names no address".into()),
        },
        Response::LockAccount => match &account {
            Some(a) => {
                let until = now.plus(Duration::from_secs(block_for_secs.unwrap_or(24 * 3600)));
                auth.lock(a, until, &why, &meta)
                    .await
                    .map(|()| format!("sign-in locked until {}", until.to_rfc3339()))
                    .map_err(|e| e.to_string())
            }
            None => no_account(),
        },
        Response::RevokeSessions => match &account {
            Some(a) => auth
                .revoke_all_sessions(a, &why, &meta)
                .await
                .map(|n| format!("{n} sessions ended"))
                .map_err(|e| e.to_string()),
            None => no_account(),
        },
        Response::RequireStepUp => match &account {
            Some(a) => auth
                .clear_step_ups(a, &why, &meta)
                .await
                .map(|n| format!("{n} sessions must prove their owner again"))
                .map_err(|e| e.to_string()),
            None => no_account(),
        },
        Response::Alert => Ok(String::new()),
    };
    match result {
        Ok(d) => rec.detail = (!d.is_empty()).then_some(d),
        Err(e) => {
            tracing::error!(error = %e, response = response.as_str(), "a detection response failed");
            rec.state = "failed".into();
            rec.detail = Some(e);
        }
    }
    rec
}
