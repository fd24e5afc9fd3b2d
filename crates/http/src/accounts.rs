//! The account lifecycle's routes (ADR 0015): verification, forgotten
//! passwords, address changes, the owner's deletion and export, and
//! administrators' management of accounts.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::lifecycle::{AccountQuery, AccountSort, AccountStatus};
use rampart_core::mfa::{Method, Proof};
use rampart_core::{Account, AccountId, Role};
use rampart_proto::*;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::{Admin, AdminWrite, JsonBody, Meta, SteppedUp};
use crate::routes::path_id;
use crate::state::AppState;

type PathRej = axum::extract::rejection::PathRejection;

fn accepted(detail: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "accepted".to_owned(),
            detail: detail.to_owned(),
        }),
    )
        .into_response()
}

#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth",
    request_body = EmailRequest,
    responses((status = 202, description = "Answered the same whether or not the address has an account; if it has, a reset link (30 minutes, single use) is mailed to it", body = Accepted),
        (status = 429, description = "Too many such requests from this address (`code_rate_limited`)", body = Problem, content_type = "application/problem+json")))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<EmailRequest>,
) -> Result<Response, ApiError> {
    state
        .auth
        .request_password_reset(&body.email, &meta)
        .await?;
    Ok(accepted(
        "If an account has this address, a link to choose a new password is on its way.",
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth",
    request_body = PasswordResetConfirm,
    responses((status = 204, description = "New password set; every session ended. Sign in again (the second factor is still asked)"),
        (status = 401, description = "The second factor was wrong (`invalid_mfa_code`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Code unknown, used or expired (`invalid_reset_token`); or an administrator's reset without its second factor (`second_factor_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "New password refused by the policy; or a second factor other than TOTP or a recovery code (`mfa_method_unavailable`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong second factors for this account (`mfa_attempts_exceeded`)", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<PasswordResetConfirm>,
) -> Result<StatusCode, ApiError> {
    let proof = body.second_factor.map(|f| {
        let method = match f.method {
            MfaMethod::Totp => Method::Totp,
            MfaMethod::RecoveryCode => Method::RecoveryCode,
            MfaMethod::Email => Method::Email,
            MfaMethod::Sms => Method::Sms,
            MfaMethod::Webauthn => Method::Webauthn,
        };
        Proof::Code(method, f.code)
    });
    state
        .auth
        .confirm_password_reset(&body.token, &body.new_password, proof.as_ref(), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth",
    request_body = VerifyEmailRequest,
    responses((status = 204, description = "The address is verified"),
        (status = 403, description = "Link or code unknown, used or expired (`invalid_verification`)", body = Problem, content_type = "application/problem+json")))]
pub async fn verify_email(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<VerifyEmailRequest>,
) -> Result<StatusCode, ApiError> {
    let code = match (&body.email, &body.code) {
        (Some(e), Some(c)) => Some((e.as_str(), c)),
        _ => None,
    };
    state
        .auth
        .verify_email(body.token.as_ref(), code, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/verify-email/resend", tag = "auth",
    request_body = EmailRequest,
    responses((status = 202, description = "Answered the same for every address; an unverified account's owner gets a new link and code (at most 3 an hour)", body = Accepted),
        (status = 429, description = "Too many such requests from this address (`code_rate_limited`)", body = Problem, content_type = "application/problem+json")))]
pub async fn resend_verification(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<EmailRequest>,
) -> Result<Response, ApiError> {
    state.auth.resend_verification(&body.email, &meta).await?;
    Ok(accepted(
        "If an unverified account has this address, a new link and code are on their way.",
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/email-change/confirm", tag = "auth",
    request_body = EmailLinkRequest,
    responses((status = 204, description = "The account has its new address; the old one was told, with a link to undo it for 72 hours"),
        (status = 403, description = "Link unknown, used or expired (`invalid_email_link`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another account took the address meanwhile (`email_taken`)", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_email_change(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<EmailLinkRequest>,
) -> Result<StatusCode, ApiError> {
    state.auth.confirm_email_change(&body.token, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/email-change/undo", tag = "auth",
    request_body = EmailLinkRequest,
    responses((status = 204, description = "The old address is back, every session ended, and a reset link went to it"),
        (status = 403, description = "Link unknown, used or expired (`invalid_email_link`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another account took the old address meanwhile (`email_taken`)", body = Problem, content_type = "application/problem+json")))]
pub async fn undo_email_change(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<EmailLinkRequest>,
) -> Result<StatusCode, ApiError> {
    state.auth.undo_email_change(&body.token, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/me/email", tag = "me", security(("bearer" = [])),
    request_body = EmailChangeRequest,
    responses((status = 202, description = "A link went to the new address; nothing changes until it is opened", body = Accepted),
        (status = 403, description = "No recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an address (`invalid_email`), or the current one (`email_unchanged`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "More than three changes asked for in an hour (`code_rate_limited`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No email delivery is configured (`no_email_delivery`)", body = Problem, content_type = "application/problem+json")))]
pub async fn request_email_change(
    State(state): State<AppState>,
    Meta(meta): Meta,
    SteppedUp(authed): SteppedUp,
    JsonBody(body): JsonBody<EmailChangeRequest>,
) -> Result<Response, ApiError> {
    state
        .auth
        .request_email_change(&authed.account, &body.new_email, &meta)
        .await?;
    Ok(accepted(
        "Open the link sent to the new address to finish the change.",
    ))
}

#[utoipa::path(delete, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 202, description = "Every session ended; the account goes at `delete_after` unless its owner signs in before", body = DeletionScheduled),
        (status = 403, description = "No recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last administrator (`last_admin`)", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_me(
    State(state): State<AppState>,
    Meta(meta): Meta,
    SteppedUp(authed): SteppedUp,
) -> Result<Response, ApiError> {
    let (at, deleted) = state.data.close_account(&authed.account, &meta).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeletionScheduled {
            delete_after: at.to_rfc3339(),
            deleted,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/me/export", tag = "me", security(("bearer" = [])),
    responses((status = 200, description = "Everything held about the account: profile, factors (no secrets), sessions, roles, security events, and its records with every field decrypted", content_type = "application/json"),
        (status = 403, description = "No recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json")))]
pub async fn export_me(
    State(state): State<AppState>,
    Meta(meta): Meta,
    SteppedUp(authed): SteppedUp,
) -> Result<Response, ApiError> {
    let export = state.data.export_account(&authed.account, &meta).await?;
    let mut res = Json(export).into_response();
    res.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"rampart-account.json\""),
    );
    Ok(res)
}

// ----- administrators ------------------------------------------------------

/// Searching accounts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountParams {
    /// The start of the address (case does not matter).
    pub email: Option<String>,
    /// `admin` or `member`.
    pub role: Option<String>,
    /// `active`, `disabled`, `unverified` or `deleting`.
    pub status: Option<String>,
    /// Whether it has a confirmed second factor.
    pub mfa: Option<bool>,
    /// Last sign-in before this time (RFC 3339).
    pub signed_in_before: Option<String>,
    /// Last sign-in after this time (RFC 3339).
    pub signed_in_after: Option<String>,
    /// `email` (default), `created_at` or `last_sign_in`; `-` first for
    /// newest or last first.
    pub sort: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn account_query(p: AccountParams) -> Result<AccountQuery, ApiError> {
    let (sort, descending) = match p.sort.as_deref() {
        None | Some("email") => (AccountSort::Email, false),
        Some("-email") => (AccountSort::Email, true),
        Some("created_at") => (AccountSort::CreatedAt, false),
        Some("-created_at") => (AccountSort::CreatedAt, true),
        Some("last_sign_in") => (AccountSort::LastSignIn, false),
        Some("-last_sign_in") => (AccountSort::LastSignIn, true),
        Some(_) => {
            return Err(ApiError::invalid_query(
                "`sort` is email, created_at or last_sign_in, with `-` first for descending.",
            ))
        }
    };
    let role = match p.role.as_deref() {
        None => None,
        Some(r) => Some(
            Role::parse(r).ok_or_else(|| ApiError::invalid_query("`role` is admin or member."))?,
        ),
    };
    let limit = p.limit.unwrap_or(50);
    if limit == 0 || limit > rampart_core::lifecycle::MAX_PAGE {
        return Err(ApiError::invalid_query("`limit` is 1 to 200."));
    }
    if p.email
        .as_ref()
        .is_some_and(|e| e.len() > 254 || e.chars().any(char::is_control))
    {
        return Err(ApiError::invalid_query(
            "`email` is at most 254 characters, with no control characters.",
        ));
    }
    let mut q = AccountQuery {
        email_prefix: p.email.map(|e| e.to_lowercase()),
        role,
        status: match p.status.as_deref() {
            None => None,
            Some("active") => Some(AccountStatus::Active),
            Some("disabled") => Some(AccountStatus::Disabled),
            Some("unverified") => Some(AccountStatus::Unverified),
            Some("deleting") => Some(AccountStatus::Deleting),
            Some(_) => {
                return Err(ApiError::invalid_query(
                    "`status` is active, disabled, unverified or deleting.",
                ))
            }
        },
        has_mfa: p.mfa,
        signed_in_before: ApiError::query_time("signed_in_before", p.signed_in_before.as_deref())?,
        signed_in_after: ApiError::query_time("signed_in_after", p.signed_in_after.as_deref())?,
        sort,
        descending,
        after: None,
        limit,
    };
    if let Some(c) = p.cursor.as_deref().filter(|c| !c.is_empty()) {
        q.after = Some(
            q.parse_cursor(c)
                .ok_or_else(|| ApiError::invalid_query("`cursor` is not one this sort gave."))?,
        );
    }
    Ok(q)
}

fn summary(a: Account) -> AccountSummary {
    let l = a.lifecycle;
    AccountSummary {
        id: a.id.0,
        email: a.email.as_str().to_owned(),
        display_name: a.display_name,
        role: a.role.as_str().to_owned(),
        created_at: a.created_at.to_rfc3339(),
        email_verified: l.email_verified_at.is_some(),
        mfa_enabled: a.has_mfa,
        disabled_at: l.disabled_at.map(|t| t.to_rfc3339()),
        delete_after: l.delete_after.map(|t| t.to_rfc3339()),
        last_sign_in_at: l.last_sign_in_at.map(|t| t.to_rfc3339()),
    }
}

#[utoipa::path(get, path = "/api/v1/admin/accounts", tag = "admin", security(("bearer" = [])),
    params(AccountParams),
    responses((status = 200, body = AccountList),
        (status = 400, description = "A parameter is not understood (`invalid_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or no second factor yet", body = Problem, content_type = "application/problem+json")))]
pub async fn list_accounts(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<AccountParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AccountList>, ApiError> {
    let Query(params) = query.map_err(|_| {
        ApiError::invalid_query("Allowed parameters: email, role, status, mfa, signed_in_before, signed_in_after, sort, limit, cursor.")
    })?;
    let q = account_query(params)?;
    let (rows, next) = state.auth.search_accounts(&q).await?;
    Ok(Json(AccountList {
        accounts: rows.into_iter().map(summary).collect(),
        next_cursor: next,
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/accounts/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = AccountDetailView),
        (status = 403, description = "Not an administrator, or no second factor yet", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json")))]
pub async fn get_account(
    State(state): State<AppState>,
    _admin: Admin,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<AccountDetailView>, ApiError> {
    let id = AccountId(path_id(id)?);
    let d = state.data.account_detail(&id).await?;
    Ok(Json(AccountDetailView {
        roles: d.roles,
        factors: d
            .factors
            .into_iter()
            .filter(|f| f.is_confirmed())
            .map(crate::mfa::factor_view)
            .collect(),
        sessions: d
            .sessions
            .into_iter()
            .map(|s| crate::routes::session_view(s, false))
            .collect(),
        sign_ins: d.sign_ins.into_iter().map(crate::events::view).collect(),
        account: summary(d.account),
    }))
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/disable", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Disabled: its sessions end, and no node accepts its sessions or API keys from now on"),
        (status = 423, description = "A deployment lockdown freezes administrative changes (`lockdown_frozen`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last administrator (`last_admin`)", body = Problem, content_type = "application/problem+json")))]
pub async fn disable_account(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = AccountId(path_id(id)?);
    state
        .auth
        .set_disabled(&id, true, admin.account.id.as_str(), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/enable", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Enabled: it may sign in again"),
        (status = 423, description = "A deployment lockdown freezes administrative changes (`lockdown_frozen`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json")))]
pub async fn enable_account(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = AccountId(path_id(id)?);
    state
        .auth
        .set_disabled(&id, false, admin.account.id.as_str(), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/admin/accounts/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Deleted now, with its sessions, factors and the records of collections marked `owner_deletes`; its API keys are revoked"),
        (status = 423, description = "A deployment lockdown freezes administrative changes (`lockdown_frozen`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last administrator (`last_admin`)", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_account(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = AccountId(path_id(id)?);
    state
        .data
        .delete_account(&id, &format!("by {}", admin.account.id.as_str()), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/admin/accounts/{id}/sessions", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Every session of the account ended"),
        (status = 423, description = "A deployment lockdown freezes administrative changes (`lockdown_frozen`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json")))]
pub async fn end_sessions(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = AccountId(path_id(id)?);
    if state.auth.store().account_by_id(&id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    state
        .auth
        .revoke_all_sessions(
            &id,
            &format!("administrator {}", admin.account.id.as_str()),
            &meta,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/password-reset", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 204, description = "The password no longer works, sessions ended, and the owner was mailed a link to choose a new one (72 hours)"),
        (status = 423, description = "A deployment lockdown freezes administrative changes (`lockdown_frozen`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No email delivery is configured (`no_email_delivery`)", body = Problem, content_type = "application/problem+json")))]
pub async fn require_password_reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = AccountId(path_id(id)?);
    state
        .auth
        .require_password_reset(&id, &admin.account, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
