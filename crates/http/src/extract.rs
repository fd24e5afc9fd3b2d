//! Extractors that carry security in their types: a handler that takes
//! [`Authed`] cannot run without a live session, one that takes [`Admin`]
//! cannot run for a non-administrator, and [`JsonBody`] is the only way a
//! body gets in (content type, size and shape checked, problem+json on
//! every failure).

use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use http::{header, Method, StatusCode};
use rampart_core::{Account, AuthService, RequestMeta, Role, Session};
use rampart_crypto::{constant_time_eq, SecretString};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::middleware::{too_large, RequestContext};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "__Host-rampart_session";
/// The device token's cookie (ADR 0015).
pub const DEVICE_COOKIE: &str = "__Host-rampart_device";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A JSON request body, strictly checked.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let limit = state.settings.limits.body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON into `T`. Error details name the position and, for missing
/// or unknown fields, the field; they never quote values.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            "Body is not UTF-8",
            "The request body must be valid UTF-8 JSON.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let at = format!("line {}, column {}", e.line(), e.column());
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "Malformed JSON",
                format!("The body is not valid JSON (at {at})."),
            ),
            Category::Data => {
                let msg = e.to_string();
                let detail = if let Some(field) = quoted_after(&msg, "missing field `") {
                    format!("The field `{field}` is required.")
                } else if let Some(field) = quoted_after(&msg, "unknown field `") {
                    format!("The field `{field}` is not accepted here (at {at}).")
                } else {
                    format!("A value has the wrong type or form (at {at}).")
                };
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "Invalid request body",
                    detail,
                )
            }
        }
    })
}

/// The text between `prefix` and the next backtick, when it looks like a
/// field name (short, plain characters).
fn quoted_after(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.split_once(prefix)?.1;
    let name = rest.split('`').next()?;
    (name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    .then(|| name.to_owned())
}

/// The request's origin facts, for the event trail.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ctx = parts
            .extensions
            .get::<RequestContext>()
            .ok_or_else(|| ApiError::internal("request context missing"))?;
        Ok(Meta(ctx.meta()))
    }
}

/// A request with a live session.
pub struct Authed {
    pub session: Session,
    pub account: Account,
    /// The session token the request carried.
    pub token: SecretString,
}

fn bearer(parts: &Parts) -> Option<SecretString> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| SecretString::from(token.trim()))
}

fn session_cookie(parts: &Parts) -> Option<SecretString> {
    cookie(&parts.headers, SESSION_COOKIE)
}

/// The value of the cookie `name`, if the request sent one.
pub(crate) fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<SecretString> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(v) = value.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == name {
                    return Some(SecretString::from(val));
                }
            }
        }
    }
    None
}

fn is_safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// For a cookie-authenticated write: the CSRF header must match the
/// session's CSRF token, or the Origin must be an allowed one.
fn csrf_ok(parts: &Parts, token: &SecretString, state: &AppState) -> bool {
    if let Some(sent) = parts.headers.get(CSRF_HEADER) {
        let expected = AuthService::csrf_token_for(token);
        if constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            return true;
        }
    }
    if let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    {
        return state.settings.allowed_origins.iter().any(|a| a == origin);
    }
    false
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (token, via_cookie) = match bearer(parts) {
            Some(t) => (t, false),
            None => match session_cookie(parts) {
                Some(t) => (t, true),
                None => return Err(ApiError::unauthenticated()),
            },
        };
        if token.is_empty() || token.expose_secret().len() > 512 {
            return Err(ApiError::unauthenticated());
        }
        if via_cookie && !is_safe_method(&parts.method) && !csrf_ok(parts, &token, state) {
            return Err(ApiError::forbidden(
                "csrf_failed",
                "A cookie-authenticated request that changes state must send the X-CSRF-Token header from the login response, or come from an allowed Origin.",
            ));
        }
        let (session, account) = state.auth.authenticate(&token).await?;
        count_once(parts, state, account.id.as_str())?;
        // Detection asked this session's owner to prove themselves again
        // (`require_step_up`): nothing but the step-up itself, or signing
        // out, until they do.
        if session.step_up_at == rampart_core::auth::STEP_UP_HELD
            && !matches!(
                parts.uri.path().trim_start_matches("/api/v1"),
                "/auth/step-up" | "/auth/step-up/challenge" | "/auth/logout"
            )
        {
            return Err(rampart_core::Error::StepUpRequired.into());
        }
        // A session used from somewhere else than its last place: followed
        // there, for detection (nothing is written on the common path).
        if let Some(ctx) = parts.extensions.get::<RequestContext>() {
            if state
                .auth
                .session_moved(&session, ctx.ip.as_deref(), ctx.user_agent.as_deref())
            {
                state.auth.follow_session(&session, &ctx.meta()).await;
            }
        }
        Ok(Authed {
            session,
            account,
            token,
        })
    }
}

/// Marks a request already counted against its account's rate limit, so
/// extractors built on one another count it once.
#[derive(Clone, Copy)]
struct AccountCounted;

fn count_once(parts: &mut Parts, state: &AppState, key: &str) -> Result<(), ApiError> {
    if parts.extensions.get::<AccountCounted>().is_some() {
        return Ok(());
    }
    parts.extensions.insert(AccountCounted);
    let group = parts
        .extensions
        .get::<crate::guard::Group>()
        .copied()
        .unwrap_or(crate::guard::Group::Api);
    let ctx = parts.extensions.get::<RequestContext>();
    state.guard.check_account(group, key, ctx)
}

/// A request whose session proved its owner recently (at login or by a
/// step-up): for sensitive actions.
pub struct SteppedUp(pub Authed);

impl FromRequestParts<AppState> for SteppedUp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authed = Authed::from_request_parts(parts, state).await?;
        if !state.auth.step_up_fresh(&authed.session) {
            return Err(rampart_core::Error::StepUpRequired.into());
        }
        Ok(SteppedUp(authed))
    }
}

/// A request by an administrator who has a second factor when the policy
/// requires one (it does by default).
pub struct Admin(pub Authed);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authed = Authed::from_request_parts(parts, state).await?;
        if authed.account.role != Role::Admin {
            return Err(ApiError::forbidden(
                "admin_required",
                "This endpoint is for administrators.",
            ));
        }
        if state.auth.mfa_enrollment_required(&authed.account) {
            return Err(rampart_core::Error::MfaEnrollmentRequired.into());
        }
        Ok(Admin(authed))
    }
}

/// An administrator's write: an [`Admin`] whose session stepped up
/// recently, which a deployment lockdown freezes (423 `lockdown_frozen`).
pub struct AdminWrite(pub Authed);

impl FromRequestParts<AppState> for AdminWrite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authed = stepped_up_admin(parts, state).await?;
        state.auth.refuse_frozen().await?;
        Ok(AdminWrite(authed))
    }
}

/// An administrator's write that is how an incident is handled
/// (lockdowns and lifting them, blocks, alerts, revoking API keys,
/// resetting someone's second factors): an [`Admin`] whose session
/// stepped up recently; during a deployment lockdown, only its
/// break-glass administrator (423 `break_glass_only`).
pub struct IncidentWrite(pub Authed);

impl FromRequestParts<AppState> for IncidentWrite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authed = stepped_up_admin(parts, state).await?;
        state
            .auth
            .refuse_unless_break_glass(&authed.account)
            .await?;
        Ok(IncidentWrite(authed))
    }
}

/// An [`Admin`] whose session proved its owner recently.
async fn stepped_up_admin(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
    let Admin(authed) = Admin::from_request_parts(parts, state).await?;
    if !state.auth.step_up_fresh(&authed.session) {
        return Err(rampart_core::Error::StepUpRequired.into());
    }
    Ok(authed)
}

/// Who calls a data route: an API key (`Authorization: Bearer rk_…`), or
/// a session whose account meets the second-factor requirement.
pub struct Caller(pub rampart_core::data::Principal);

/// The public start of every API key.
pub const API_KEY_PREFIX: &str = "rk_";

/// `rk_` + 8 hex digits + `_` + 43 base64url characters: never a session
/// token (43 characters), so a session that happens to start with `rk_`
/// is still a session.
fn looks_like_api_key(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 55
        && t.starts_with(API_KEY_PREFIX)
        && b[3..11].iter().all(|c| c.is_ascii_hexdigit())
        && b[11] == b'_'
        && b[12..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        use rampart_core::data::Principal;
        if let Some(token) = bearer(parts) {
            if looks_like_api_key(token.expose_secret()) {
                let Meta(meta) = Meta::from_request_parts(parts, state).await?;
                let ip = meta.ip.as_deref().and_then(|ip| ip.parse().ok());
                let key = match state.data.authenticate_api_key(&token, ip, &meta).await {
                    Ok(k) => k,
                    // A wrong key is counted by the guard, from the answer.
                    Err(e) => return Err(e.into()),
                };
                count_once(parts, state, &format!("key:{}", key.id))?;
                return Ok(Caller(Principal::ApiKey(key)));
            }
        }
        let authed = Authed::from_request_parts(parts, state).await?;
        Ok(Caller(data_principal(state, authed.account)?))
    }
}

/// A signed-in account as a caller of the data routes: it must have the
/// second factor its role requires and, where the server says so, a
/// verified address.
pub fn data_principal(
    state: &AppState,
    account: Account,
) -> Result<rampart_core::data::Principal, ApiError> {
    if state.auth.mfa_enrollment_required(&account) {
        return Err(rampart_core::Error::MfaEnrollmentRequired.into());
    }
    if state.auth.unverified_blocks_data(&account) {
        return Err(rampart_core::Error::EmailUnverified.into());
    }
    Ok(rampart_core::data::Principal::Account(account))
}

#[cfg(test)]
mod tests {
    /// The guard skips the session cookie's value as a secret: it must
    /// know the cookie by the name the sessions use.
    #[test]
    fn the_guard_knows_the_session_cookie() {
        assert!(rampart_guard::inspect::SECRET_COOKIES.contains(&super::SESSION_COOKIE));
        assert!(rampart_guard::inspect::SECRET_COOKIES.contains(&super::DEVICE_COOKIE));
    }
}
