//! The `/api/v1` handlers. Each is thin: parse (extractors), call the
//! domain, shape the response.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::auth::NewSession;
use rampart_core::mfa::LoginOutcome;
use rampart_core::{AccountId, SessionId};
use rampart_proto::*;

use crate::error::ApiError;
use crate::extract::{
    Admin, AdminWrite, Authed, JsonBody, Meta, SteppedUp, DEVICE_COOKIE, SESSION_COOKIE,
};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

#[utoipa::path(get, path = "/api/v1/readyz", tag = "health",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.auth.store().ping().await {
        Ok(()) => Json(Health {
            status: "ok".to_owned(),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable".to_owned(),
                }),
            )
                .into_response()
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = AccountCreated),
        (status = 403, description = "Registration closed or invite missing", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid email, weak password (every failed rule listed)", body = Problem, content_type = "application/problem+json")))]
pub async fn register(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Response, ApiError> {
    let account = state
        .auth
        .register(
            &req.email,
            &req.password,
            req.display_name,
            req.invite_token.as_ref(),
            &meta,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountCreated {
            id: account.id.0,
            email: account.email.as_str().to_owned(),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Session created (also set as the `__Host-rampart_session` cookie); or, for an account with a second factor, `mfa_required` and an `mfa_token` for `POST /api/v1/auth/mfa`", body = LoginResult),
        (status = 401, description = "Wrong email or password (one answer for both)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The password was right, but the account is disabled (`account_disabled`) or its address is not verified yet while the server requires it (`email_unverified`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing saturated; see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: axum::http::HeaderMap,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    // The client's device token: from the body (apps), or the cookie
    // (browsers).
    let device = req
        .device_token
        .or_else(|| crate::extract::cookie(&headers, DEVICE_COOKIE));
    let outcome = state
        .auth
        .login_with_unlock(
            &req.email,
            &req.password,
            req.unlock_code.as_ref(),
            device.as_ref(),
            &meta,
        )
        .await;
    match outcome? {
        LoginOutcome::Session(new) => session_response(&state, new),
        LoginOutcome::MfaRequired(pending) => Ok(Json(LoginResult::MfaRequired(MfaRequired {
            mfa_required: true,
            mfa_token: pending.token.expose_secret().to_owned(),
            methods: pending
                .methods
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect(),
            expires_at: pending.expires_at.to_rfc3339(),
        }))
        .into_response()),
    }
}

/// A new session: the token in the body and in the session cookie.
pub(crate) fn session_response(state: &AppState, new: NewSession) -> Result<Response, ApiError> {
    let max_age = state.settings.session_cookie_max_age.as_secs();
    let cookie = format!(
        "{SESSION_COOKIE}={}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}",
        new.token.expose_secret()
    );
    let body = LoginResult::Session(LoginResponse {
        mfa_required: false,
        csrf_token: rampart_core::AuthService::csrf_token_for(&new.token),
        token: new.token.expose_secret().to_owned(),
        expires_at: new.session.expires_at.to_rfc3339(),
        device_token: new.device.expose_secret().to_owned(),
    });
    let mut res = Json(body).into_response();
    let cookie = HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal("cookie"))?;
    res.headers_mut().append(header::SET_COOKIE, cookie);
    // The device cookie outlives sessions: a year.
    let device = format!(
        "{DEVICE_COOKIE}={}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=31536000",
        new.device.expose_secret()
    );
    let device = HeaderValue::from_str(&device).map_err(|_| ApiError::internal("cookie"))?;
    res.headers_mut().append(header::SET_COOKIE, device);
    Ok(res)
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-rampart_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
    )
}

#[utoipa::path(get, path = "/api/v1/admin/settings", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SettingsView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
/// The settings in force, secrets redacted.
pub async fn admin_settings(State(state): State<AppState>, _admin: Admin) -> Json<SettingsView> {
    Json(SettingsView {
        settings: state.settings.effective.clone(),
    })
}

#[utoipa::path(get, path = "/api/v1/admin/certificate", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = CertificateView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
/// The validity of the certificate in service (self-signed, given, or
/// from ACME), for the console's expiry tile.
pub async fn admin_certificate(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<CertificateView>, ApiError> {
    let (from, until) = rampart_crypto::certificate_validity_der(&state.certs.leaf_der())
        .map_err(|_| ApiError::internal("the certificate in service does not parse"))?;
    let from = rampart_core::Timestamp::from_system_time(from);
    let until = rampart_core::Timestamp::from_system_time(until);
    let now = state.auth.clock().now();
    Ok(Json(CertificateView {
        not_before: from.to_rfc3339(),
        not_after: until.to_rfc3339(),
        days_left: (until.millis() - now.millis()).div_euclid(86_400_000),
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/password-check", tag = "auth",
    request_body = PasswordCheckRequest,
    responses(
        (status = 200, description = "The verdict: strength 0 to 4 and every rule the password fails. Nothing is stored or recorded.", body = PasswordCheck),
        (status = 422, description = "Malformed request", body = Problem, content_type = "application/problem+json")))]
/// Rates a password against the server's policy, for a strength meter
/// shown while it is typed (the hosted pages and the account page use it).
pub async fn password_check(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PasswordCheckRequest>,
) -> Result<Json<PasswordCheck>, ApiError> {
    // The estimate is the costly part of a sign-up: off the async workers.
    let auth = state.auth.clone();
    let (score, verdict) = tokio::task::spawn_blocking(move || {
        let email = req.email.as_deref().filter(|e| e.len() <= 254);
        let name = req.display_name.as_deref().filter(|n| n.len() <= 200);
        auth.assess_password(&req.password, email, name)
    })
    .await
    .map_err(|_| ApiError::internal("password check"))?;
    let (violations, suggestions) = match verdict {
        Ok(()) => (Vec::new(), Vec::new()),
        Err(r) => (r.violations, r.suggestions),
    };
    Ok(Json(PasswordCheck {
        acceptable: violations.is_empty(),
        score,
        violations,
        suggestions,
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Session revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn logout(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
) -> Result<Response, ApiError> {
    state.auth.logout(&authed.session, &meta).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Me),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn me(State(state): State<AppState>, authed: Authed) -> Json<Me> {
    let a = authed.account;
    Json(Me {
        csrf_token: rampart_core::AuthService::csrf_token_for(&authed.token),
        mfa_enrollment_required: state.auth.mfa_enrollment_required(&a),
        mfa_enabled: a.has_mfa,
        email_verified: a.lifecycle.email_verified_at.is_some(),
        id: a.id.0,
        email: a.email.as_str().to_owned(),
        display_name: a.display_name,
        role: a.role.as_str().to_owned(),
        created_at: a.created_at.to_rfc3339(),
    })
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed; every other session revoked"),
        (status = 401, description = "Current password wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`step_up_required`: no proof of identity in the last 10 minutes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "New password refused", body = Problem, content_type = "application/problem+json")))]
pub async fn change_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    SteppedUp(authed): SteppedUp,
    JsonBody(req): JsonBody<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .auth
        .change_password(
            &authed.session,
            &authed.account,
            &req.current_password,
            &req.new_password,
            &meta,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = SessionList),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn my_sessions(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.auth.sessions(&authed.account.id).await?;
    Ok(Json(SessionList {
        sessions: sessions
            .into_iter()
            .map(|s| {
                let current = s.id == authed.session.id;
                session_view(s, current)
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/me/sign-ins", tag = "me", security(("bearer" = [])),
    responses((status = 200, description = "Your last 20 sign-ins and failed sign-ins, newest first", body = EventPage),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn my_sign_ins(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Json<EventPage>, ApiError> {
    let events = state.auth.sign_ins(&authed.account.id).await?;
    Ok(Json(EventPage {
        events: events.into_iter().map(crate::events::view).collect(),
        next_cursor: None,
    }))
}

/// A session as its owner or an administrator sees it.
pub(crate) fn session_view(s: rampart_core::Session, current: bool) -> SessionView {
    SessionView {
        current,
        id: s.id.0,
        created_at: s.created_at.to_rfc3339(),
        last_seen_at: s.last_seen_at.to_rfc3339(),
        expires_at: s.expires_at.to_rfc3339(),
        ip: s.ip,
        user_agent: s.user_agent,
    }
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such session of yours", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Meta(meta): Meta,
    authed: Authed,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .auth
        .revoke_session(&authed.account.id, &SessionId(id), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/setup", tag = "setup",
    request_body = SetupRequest,
    responses((status = 201, body = AccountCreated),
        (status = 403, description = "Token wrong, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An administrator already exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn setup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(req): JsonBody<SetupRequest>,
) -> Result<Response, ApiError> {
    let account = state
        .auth
        .setup(
            &req.token,
            &req.email,
            &req.password,
            req.display_name,
            &meta,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountCreated {
            id: account.id.0,
            email: account.email.as_str().to_owned(),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/admin/invites", tag = "admin", security(("bearer" = [])),
    responses((status = 201, body = InviteCreated),
        (status = 403, description = "Not an administrator, no second factor yet (`mfa_enrollment_required`), or no recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json")))]
pub async fn create_invite(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
) -> Result<Response, ApiError> {
    let (token, expires) = state.auth.create_invite(&admin.account, &meta).await?;
    Ok((
        StatusCode::CREATED,
        Json(InviteCreated {
            invite_token: token.expose_secret().to_owned(),
            expires_at: expires.to_rfc3339(),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/unlock", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Failed-login count and any block or lock cleared"),
        (status = 403, description = "Not an administrator, no second factor yet (`mfa_enrollment_required`), or no recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json")))]
pub async fn unlock_account(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AdminWrite(admin): AdminWrite,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .auth
        .unlock(&AccountId(id), admin.account.id.as_str(), &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An id from the path. One that cannot be decoded, longer than any id
/// Rampart makes or holding a control character (NUL, which PostgreSQL
/// refuses in text), is to the caller one that does not exist.
pub(crate) fn path_id(
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    match id {
        Ok(Path(id)) if id.len() <= 64 && !id.chars().any(char::is_control) => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET /`: a plain page that says what answers here and where the API
/// is. No script, no style, no version: nothing to fingerprint or inject.
pub async fn index() -> Response {
    const PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Rampart</title>\n</head>\n<body>\n<h1>Rampart</h1>\n\
<p>This server runs Rampart. Its HTTP API is under <code>/api/v1</code>; \
the OpenAPI document is <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>\n\
</body>\n</html>\n";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "This address does not accept that method.",
    )
}

/// Sends the OpenAPI document.
pub async fn openapi() -> Response {
    let mut res = crate::openapi::document().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
