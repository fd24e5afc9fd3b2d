//! The second-factor handlers: the second step of login, step-up,
//! enrolment and removal of factors, recovery codes, and the
//! administrator's reset.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::mfa::{ChallengeSent, Enrolled, Method, Proof};
use rampart_core::model::{Factor, FactorKind};
use rampart_core::{AccountId, Error as CoreError, FactorId};
use rampart_proto::*;

use crate::error::ApiError;
use crate::extract::{Authed, IncidentWrite, JsonBody, Meta, SteppedUp};
use crate::routes::{path_id, session_response};
use crate::state::AppState;

fn method(m: MfaMethod) -> Method {
    match m {
        MfaMethod::Totp => Method::Totp,
        MfaMethod::Webauthn => Method::Webauthn,
        MfaMethod::Email => Method::Email,
        MfaMethod::Sms => Method::Sms,
        MfaMethod::RecoveryCode => Method::RecoveryCode,
    }
}

fn missing(field: &str, method: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        "Invalid request body",
        format!("The field `{field}` is required with the method `{method}`."),
    )
}

/// The proof a request carries for its method.
fn proof(
    m: MfaMethod,
    code: Option<rampart_crypto::SecretString>,
    assertion: Option<serde_json::Value>,
) -> Result<Proof, ApiError> {
    let m = method(m);
    match m {
        Method::Webauthn => assertion
            .map(Proof::Passkey)
            .ok_or_else(|| missing("assertion", m.as_str())),
        _ => code
            .map(|c| Proof::Code(m, c))
            .ok_or_else(|| missing("code", m.as_str())),
    }
}

fn challenge_view(sent: ChallengeSent) -> ChallengeResponse {
    match sent {
        ChallengeSent::Code { to, expires_at } => ChallengeResponse {
            sent_to: Some(to),
            expires_at: Some(expires_at.to_rfc3339()),
            options: None,
        },
        ChallengeSent::Passkey(options) => ChallengeResponse {
            sent_to: None,
            expires_at: None,
            options: Some(options),
        },
    }
}

pub(crate) fn factor_view(f: Factor) -> FactorView {
    FactorView {
        id: f.id.0,
        kind: f.kind.as_str().to_owned(),
        name: f.name,
        created_at: f.created_at.to_rfc3339(),
        last_used_at: f.last_used_at.map(|t| t.to_rfc3339()),
    }
}

fn enrolled(e: Enrolled) -> Json<EnrolledResponse> {
    Json(EnrolledResponse {
        factor: factor_view(e.factor),
        recovery_codes: e
            .recovery_codes
            .map(|codes| codes.iter().map(|c| c.expose_secret().to_owned()).collect()),
    })
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/challenge", tag = "auth",
    request_body = MfaChallengeRequest,
    responses(
        (status = 200, description = "Code sent (email, sms) or passkey options issued (webauthn)", body = ChallengeResponse),
        (status = 401, description = "`mfa_token_invalid`: unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`mfa_method_unavailable` or `nothing_to_send`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`code_rate_limited`: see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`delivery_failed`, or at capacity", body = Problem, content_type = "application/problem+json")))]
pub async fn login_challenge(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<MfaChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let sent = state
        .auth
        .login_challenge(&req.mfa_token, method(req.method))
        .await?;
    Ok(Json(challenge_view(sent)))
}

#[utoipa::path(post, path = "/api/v1/auth/mfa", tag = "auth",
    request_body = MfaLoginRequest,
    responses(
        (status = 200, description = "Session created; also set as the `__Host-rampart_session` cookie", body = LoginResponse),
        (status = 401, description = "`invalid_mfa_code`, or `mfa_token_invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`mfa_method_unavailable`, or a field missing", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`mfa_attempts_exceeded`: pending sign-ins voided; see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn complete_login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(req): JsonBody<MfaLoginRequest>,
) -> Result<Response, ApiError> {
    let proof = proof(req.method, req.code, req.assertion)?;
    let new = state
        .auth
        .complete_login(&req.mfa_token, &proof, &meta)
        .await?;
    session_response(&state, new)
}

#[utoipa::path(post, path = "/api/v1/auth/step-up/challenge", tag = "auth", security(("bearer" = [])),
    request_body = StepUpChallengeRequest,
    responses(
        (status = 200, description = "Code sent or passkey options issued", body = ChallengeResponse),
        (status = 422, description = "`mfa_method_unavailable` or `nothing_to_send`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`code_rate_limited`: see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`delivery_failed`, or at capacity", body = Problem, content_type = "application/problem+json")))]
pub async fn step_up_challenge(
    State(state): State<AppState>,
    authed: Authed,
    JsonBody(req): JsonBody<StepUpChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let sent = state
        .auth
        .step_up_challenge(&authed.session, &authed.account, method(req.method))
        .await?;
    Ok(Json(challenge_view(sent)))
}

#[utoipa::path(post, path = "/api/v1/auth/step-up", tag = "auth", security(("bearer" = [])),
    request_body = StepUpRequest,
    responses(
        (status = 200, description = "Sensitive actions are allowed for the step-up window", body = StepUpResponse),
        (status = 401, description = "`invalid_mfa_code` or `invalid_credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`factor_required` (this account steps up with its factor), `mfa_method_unavailable`, or a field missing", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`mfa_attempts_exceeded`: see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn step_up(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
    JsonBody(req): JsonBody<StepUpRequest>,
) -> Result<Json<StepUpResponse>, ApiError> {
    let proof = match (req.method, req.password) {
        (None, Some(password)) if req.code.is_none() && req.assertion.is_none() => {
            Proof::Password(password)
        }
        (Some(m), None) => proof(m, req.code, req.assertion)?,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "Invalid request body",
                "Send either `password` alone, or `method` with its `code` or `assertion`.",
            ))
        }
    };
    let until = state
        .auth
        .step_up(&authed.session, &authed.account, &proof, &meta)
        .await?;
    Ok(Json(StepUpResponse {
        step_up_until: until.to_rfc3339(),
    }))
}

#[utoipa::path(get, path = "/api/v1/me/mfa", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = MfaStatus)))]
pub async fn status(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Json<MfaStatus>, ApiError> {
    let (factors, left) = state.auth.factors(&authed.account).await?;
    let policy = &state.auth.config().mfa;
    Ok(Json(MfaStatus {
        factors: factors.into_iter().map(factor_view).collect(),
        recovery_codes_left: left,
        required: policy.required_for(authed.account.role),
        methods_allowed: state
            .auth
            .usable_methods()
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
    }))
}

const STEP_UP_403: &str = "`step_up_required`: no proof of identity in the last 10 minutes";

#[utoipa::path(post, path = "/api/v1/me/mfa/totp", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 201, description = "A new secret; confirm it with a code from the app", body = TotpEnrolmentResponse),
        (status = 403, description = STEP_UP_403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`mfa_method_unavailable`: TOTP is off on this server", body = Problem, content_type = "application/problem+json")))]
pub async fn enrol_totp(
    State(state): State<AppState>,
    SteppedUp(authed): SteppedUp,
) -> Result<Response, ApiError> {
    let e = state.auth.enrol_totp(&authed.account).await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolmentResponse {
            factor_id: e.factor_id.0,
            secret: e.secret.expose_secret().to_owned(),
            otpauth_uri: e.uri.expose_secret().to_owned(),
            qr_svg: e.qr_svg.expose_secret().to_owned(),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Active; recovery codes when it is the first factor", body = EnrolledResponse),
        (status = 401, description = "`invalid_mfa_code`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_pending_enrolment`", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
    JsonBody(req): JsonBody<CodeRequest>,
) -> Result<Json<EnrolledResponse>, ApiError> {
    let e = state
        .auth
        .confirm_totp(&authed.session, &authed.account, &req.code, &meta)
        .await?;
    Ok(enrolled(e))
}

#[utoipa::path(post, path = "/api/v1/me/mfa/email", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 202, description = "A code went to the account's email; confirm it", body = ChallengeResponse),
        (status = 403, description = STEP_UP_403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`mfa_method_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`code_rate_limited`: see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn enrol_email(
    State(state): State<AppState>,
    SteppedUp(authed): SteppedUp,
) -> Result<Response, ApiError> {
    let sent = state
        .auth
        .enrol_code_factor(&authed.session, &authed.account, FactorKind::Email, None)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(challenge_view(sent))).into_response())
}

#[utoipa::path(post, path = "/api/v1/me/mfa/sms", tag = "mfa", security(("bearer" = [])),
    request_body = SmsEnrolRequest,
    responses(
        (status = 202, description = "A code went to the phone; confirm it", body = ChallengeResponse),
        (status = 403, description = STEP_UP_403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_phone` or `mfa_method_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`code_rate_limited`: see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn enrol_sms(
    State(state): State<AppState>,
    SteppedUp(authed): SteppedUp,
    JsonBody(req): JsonBody<SmsEnrolRequest>,
) -> Result<Response, ApiError> {
    let sent = state
        .auth
        .enrol_code_factor(
            &authed.session,
            &authed.account,
            FactorKind::Sms,
            Some(&req.phone),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(challenge_view(sent))).into_response())
}

async fn confirm_code(
    state: AppState,
    meta: rampart_core::RequestMeta,
    authed: Authed,
    kind: FactorKind,
    code: rampart_crypto::SecretString,
) -> Result<Json<EnrolledResponse>, ApiError> {
    let e = state
        .auth
        .confirm_code_factor(&authed.session, &authed.account, kind, &code, &meta)
        .await?;
    Ok(enrolled(e))
}

#[utoipa::path(post, path = "/api/v1/me/mfa/email/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Active; recovery codes when it is the first factor", body = EnrolledResponse),
        (status = 401, description = "`invalid_mfa_code`", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_email(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
    JsonBody(req): JsonBody<CodeRequest>,
) -> Result<Json<EnrolledResponse>, ApiError> {
    confirm_code(state, meta, authed, FactorKind::Email, req.code).await
}

#[utoipa::path(post, path = "/api/v1/me/mfa/sms/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Active; recovery codes when it is the first factor", body = EnrolledResponse),
        (status = 401, description = "`invalid_mfa_code`", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_sms(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
    JsonBody(req): JsonBody<CodeRequest>,
) -> Result<Json<EnrolledResponse>, ApiError> {
    confirm_code(state, meta, authed, FactorKind::Sms, req.code).await
}

#[utoipa::path(post, path = "/api/v1/me/mfa/webauthn", tag = "mfa", security(("bearer" = [])),
    request_body = PasskeyEnrolRequest,
    responses(
        (status = 200, description = "Creation options for `navigator.credentials.create`", body = ChallengeResponse),
        (status = 403, description = STEP_UP_403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_factor_name` or `mfa_method_unavailable`", body = Problem, content_type = "application/problem+json")))]
pub async fn enrol_passkey(
    State(state): State<AppState>,
    SteppedUp(authed): SteppedUp,
    JsonBody(req): JsonBody<PasskeyEnrolRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let options = state
        .auth
        .enrol_passkey(&authed.session, &authed.account, &req.name)
        .await?;
    Ok(Json(challenge_view(ChallengeSent::Passkey(options))))
}

#[utoipa::path(post, path = "/api/v1/me/mfa/webauthn/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = PasskeyConfirmRequest,
    responses(
        (status = 200, description = "Registered; recovery codes when it is the first factor", body = EnrolledResponse),
        (status = 401, description = "`invalid_mfa_code`: the registration did not verify", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_pending_enrolment`, or `passkey_registered`", body = Problem, content_type = "application/problem+json")))]
pub async fn confirm_passkey(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
    JsonBody(req): JsonBody<PasskeyConfirmRequest>,
) -> Result<Json<EnrolledResponse>, ApiError> {
    let e = state
        .auth
        .confirm_passkey(&authed.session, &authed.account, &req.credential, &meta)
        .await?;
    Ok(enrolled(e))
}

#[utoipa::path(delete, path = "/api/v1/me/mfa/{id}", tag = "mfa", security(("bearer" = [])),
    params(("id" = String, Path, description = "Factor id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = STEP_UP_403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such factor of yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_factor`: your role requires a second factor", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(state): State<AppState>,
    Meta(meta): Meta,
    SteppedUp(authed): SteppedUp,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .auth
        .remove_factor(&authed.account, &FactorId(id), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/me/mfa/recovery-codes", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 200, description = "Ten new codes, shown once; the old ones stop working", body = RecoveryCodes),
        (status = 403, description = STEP_UP_403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`mfa_not_enabled`", body = Problem, content_type = "application/problem+json")))]
pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Meta(meta): Meta,
    SteppedUp(authed): SteppedUp,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let codes = state
        .auth
        .regenerate_recovery_codes(&authed.account, &meta)
        .await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/mfa/reset", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 204, description = "Every factor and recovery code removed, every session ended; the owner is told by email"),
        (status = 403, description = "Not an administrator, no second factor yet, no recent step-up, or your own account (`self_reset`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json")))]
pub async fn admin_reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IncidentWrite(admin): IncidentWrite,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .auth
        .reset_mfa(&AccountId(id), admin.account.id.as_str(), &meta)
        .await
        .map_err(|e| match e {
            CoreError::NotFound => ApiError::not_found(),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
