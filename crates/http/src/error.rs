//! The one mapping from errors to HTTP responses: RFC 9457 problem+json
//! with a stable `code`. Internal failures answer with only a request id;
//! their detail goes to the log.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use rampart_core::Error as CoreError;
use rampart_proto::Problem;

/// An API error. Construct with the helpers; never from user input.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Box<Problem>,
    pub retry_after: Option<u64>,
    /// Logged, never sent.
    pub internal: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem::new(status.as_u16(), code, title, detail)),
            retry_after: None,
            internal: None,
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "Something went wrong on our side. Quote the request id when reporting it.",
        );
        e.internal = Some(detail.into());
        e
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Not authenticated",
            "Send a valid session token as a Bearer token or session cookie.",
        )
    }

    /// An optional RFC 3339 time from the query string, or 400
    /// `invalid_query` naming the parameter.
    pub fn query_time(
        name: &str,
        value: Option<&str>,
    ) -> Result<Option<rampart_core::Timestamp>, Self> {
        value
            .map(|s| {
                rampart_core::Timestamp::parse_rfc3339(s)
                    .ok_or_else(|| Self::invalid_query(&format!("`{name}`: an RFC 3339 time")))
            })
            .transpose()
    }

    /// 400 `invalid_query`: a query parameter this route does not take,
    /// or one it cannot read.
    pub fn invalid_query(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "Invalid query",
            detail,
        )
    }

    pub fn forbidden(code: &str, detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "There is nothing at this address.",
        )
    }

    fn with_violations(mut self, problems: Vec<rampart_core::data::schema::FieldProblem>) -> Self {
        self.problem.violations = problems
            .into_iter()
            .map(|p| rampart_proto::Violation {
                code: p.code.to_owned(),
                message: p.message,
                field: (!p.field.is_empty()).then_some(p.field),
            })
            .collect();
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// A storage failure: through the core error, so it is logged and
/// answered the one way (no internals in the answer).
impl From<rampart_core::StoreError> for ApiError {
    fn from(e: rampart_core::StoreError) -> Self {
        CoreError::from(e).into()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        match e {
            CoreError::InvalidEmail => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_email",
                "Invalid email address",
                "The email address is not valid.",
            ),
            CoreError::InvalidDisplayName => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_display_name",
                "Invalid display name",
                "A display name has 1 to 100 characters, no control characters and no leading or trailing spaces.",
            ),
            CoreError::WeakPassword(r) => {
                let mut e = ApiError::new(
                    S::UNPROCESSABLE_ENTITY,
                    "weak_password",
                    "Password does not meet the policy",
                    "The password was refused for the reasons listed in `violations`.",
                );
                e.problem.violations = r.violations;
                e.problem.suggestions = r.suggestions;
                e
            }
            CoreError::EmailTaken => ApiError::new(
                S::CONFLICT,
                "email_taken",
                "Email already registered",
                "An account with this email address already exists.",
            ),
            CoreError::InvalidCredentials => ApiError::new(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                "The email address or password is wrong.",
            ),
            CoreError::Unauthenticated => ApiError::unauthenticated(),
            CoreError::SessionExpired => ApiError::new(
                S::UNAUTHORIZED,
                "session_expired",
                "Session expired",
                "The session has ended; log in again.",
            ),
            CoreError::RegistrationClosed => ApiError::forbidden(
                "registration_closed",
                "Registration is closed on this server.",
            ),
            CoreError::InvalidInvite => ApiError::forbidden(
                "invite_required",
                "Registration needs a valid, unused invite token.",
            ),
            CoreError::InvalidSetupToken => ApiError::forbidden(
                "invalid_setup_token",
                "The setup token is wrong, used or expired. Restart `rampart serve` for a new one.",
            ),
            CoreError::SetupComplete => ApiError::new(
                S::CONFLICT,
                "setup_complete",
                "Setup already completed",
                "An administrator exists; setup is closed.",
            ),
            CoreError::Busy => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Server busy",
                "Too many password checks are in progress; retry shortly.",
            )
            .with_retry_after(1),
            CoreError::NotFound => ApiError::not_found(),
            CoreError::InvalidIncident(why) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_incident",
                "Lockdown not possible as asked",
                format!("{why}."),
            ),
            CoreError::LockdownInForce => ApiError::new(
                S::CONFLICT,
                "lockdown_in_force",
                "A lockdown is in force",
                "The deployment is locked down already: see GET /api/v1/admin/incident, and lift it before starting another.",
            ),
            CoreError::BreakGlassOnly => ApiError::new(
                S::LOCKED,
                "break_glass_only",
                "Only the break-glass administrator",
                "While the deployment is locked down, only its break-glass administrator (or the server's command line) handles the incident: lifting it, lockdowns, blocks, alerts, revoking keys and resetting factors.",
            ),
            CoreError::LockdownFrozen => ApiError::new(
                S::LOCKED,
                "lockdown_frozen",
                "Frozen by the lockdown",
                "Administrative changes are frozen while the deployment is locked down. The incident's own actions (lockdowns, lifting it, blocks, alerts, revoking API keys, resetting factors) are its break-glass administrator's, or the server command line's.",
            ),
            CoreError::InvalidResetToken => ApiError::forbidden(
                "invalid_reset_token",
                "The reset code is unknown, used or expired. Ask your administrator for a new one.",
            ),
            CoreError::InvalidVerification => ApiError::forbidden(
                "invalid_verification",
                "The verification link or code is unknown, used or expired. Ask for a new message with POST /api/v1/auth/verify-email/resend.",
            ),
            CoreError::InvalidEmailLink => ApiError::forbidden(
                "invalid_email_link",
                "The link is unknown, used or expired.",
            ),
            CoreError::ResetNeedsFactor => ApiError::forbidden(
                "second_factor_required",
                "This account is an administrator's with a second factor: send a TOTP code or a recovery code as `second_factor` with the reset. With neither, ask another administrator to reset your factors (or run `rampart admin reset-mfa` on the server), then use the link again.",
            ),
            CoreError::EmailUnchanged => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "email_unchanged",
                "Same address",
                "That is the account's address already.",
            ),
            CoreError::LastAdmin => ApiError::new(
                S::CONFLICT,
                "last_admin",
                "The last administrator",
                "This would leave no administrator able to sign in. Make another administrator first.",
            ),
            CoreError::AccountDisabled => ApiError::forbidden(
                "account_disabled",
                "This account is disabled. Ask your administrator.",
            ),
            CoreError::OwnAccount => ApiError::forbidden(
                "own_account",
                "Not on your own account: change your password at POST /api/v1/me/password.",
            ),
            CoreError::NoEmailDelivery => ApiError::new(
                S::CONFLICT,
                "no_email_delivery",
                "No email delivery",
                "This needs a message to reach an address, and the server has no email delivery configured (`notifier = \"deliver\"` with `[smtp]`). Ask its operator.",
            ),
            CoreError::EmailUnverified => ApiError::forbidden(
                "email_unverified",
                "Confirm your email address first: open the link or enter the code we mailed you. Ask for a new message with POST /api/v1/auth/verify-email/resend.",
            ),
            CoreError::Forbidden => {
                ApiError::forbidden("forbidden", "You may not perform this action.")
            }
            CoreError::MfaTokenInvalid => ApiError::new(
                S::UNAUTHORIZED,
                "mfa_token_invalid",
                "Sign-in expired",
                "This second step of sign-in is unknown, used or expired (they last 5 minutes). Log in again.",
            ),
            CoreError::InvalidMfaCode => ApiError::new(
                S::UNAUTHORIZED,
                "invalid_mfa_code",
                "Second factor not accepted",
                "The code or passkey was wrong, expired or already used.",
            ),
            CoreError::MfaLocked { retry_after } => ApiError::new(
                S::TOO_MANY_REQUESTS,
                "mfa_attempts_exceeded",
                "Too many failed second-factor attempts",
                "Second-factor checks for this account are paused and pending sign-ins were cancelled. Wait, then log in again.",
            )
            .with_retry_after(retry_after),
            CoreError::MethodUnavailable => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "mfa_method_unavailable",
                "Method not available",
                "This method is not allowed on this server, not set up for this account, or not usable here.",
            ),
            CoreError::NothingToSend => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "nothing_to_send",
                "Nothing to send",
                "Only email, sms and webauthn have a challenge; send totp and recovery codes directly.",
            ),
            CoreError::TooManyCodes { retry_after } => ApiError::new(
                S::TOO_MANY_REQUESTS,
                "code_rate_limited",
                "Too many messages asked for",
                "A code or link was sent recently, or too many were asked for; wait the Retry-After seconds before asking again.",
            )
            .with_retry_after(retry_after),
            CoreError::DeliveryFailed => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "delivery_failed",
                "Code not delivered",
                "The code could not be sent right now; try again shortly or use another method.",
            )
            .with_retry_after(30),
            CoreError::StepUpRequired => ApiError::forbidden(
                "step_up_required",
                "This action needs a recent proof that it is you: POST /api/v1/auth/step-up with your second factor (or, with none, your password), then retry.",
            ),
            CoreError::MfaEnrollmentRequired => ApiError::forbidden(
                "mfa_enrollment_required",
                "Your account must have a second factor before it can do this. Set one up: POST /api/v1/me/mfa/totp (authenticator app), /me/mfa/webauthn (passkey), /me/mfa/email or /me/mfa/sms, then confirm it.",
            ),
            CoreError::FactorRequired => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "factor_required",
                "Use your second factor",
                "This account has a second factor; step up with it, not with the password.",
            ),
            CoreError::LastFactor => ApiError::new(
                S::CONFLICT,
                "last_factor",
                "Last second factor",
                "Your account must keep a second factor. Add another one before removing this one.",
            ),
            CoreError::NoPendingEnrolment => ApiError::new(
                S::CONFLICT,
                "no_pending_enrolment",
                "Nothing to confirm",
                "No enrolment of this kind is waiting for confirmation in this session; start it again.",
            ),
            CoreError::InvalidPhone => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_phone",
                "Invalid phone number",
                "Give the number in E.164 form: +, country code, number, no spaces (e.g. +447700900123).",
            ),
            CoreError::InvalidFactorName => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_factor_name",
                "Invalid name",
                "A name has 1 to 64 characters, no control characters and no leading or trailing spaces.",
            ),
            CoreError::MfaNotEnabled => ApiError::new(
                S::CONFLICT,
                "mfa_not_enabled",
                "No second factor",
                "Set up a second factor first; recovery codes come with it.",
            ),
            CoreError::SelfReset => ApiError::forbidden(
                "self_reset",
                "You cannot reset your own second factors. Remove or replace them under /api/v1/me/mfa, or ask another administrator (or run `rampart admin reset-mfa` on the server).",
            ),
            CoreError::PasskeyRegistered => ApiError::new(
                S::CONFLICT,
                "passkey_registered",
                "Passkey already registered",
                "This authenticator's passkey is registered already; use another authenticator, or remove the old registration first.",
            ),
            CoreError::InvalidSchema(problems) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_schema",
                "Invalid collection schema",
                "The schema was refused for the reasons listed in `violations`.",
            )
            .with_violations(problems),
            CoreError::InvalidRecord(problems) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_record",
                "Record does not match the schema",
                "Nothing was stored: the record was refused for the reasons listed in `violations`.",
            )
            .with_violations(problems),
            CoreError::InvalidFilter(m) => ApiError::new(
                S::BAD_REQUEST,
                "invalid_filter",
                "Invalid filter",
                format!("The filter was refused: {m}."),
            ),
            CoreError::InvalidQuery(m) => ApiError::new(
                S::BAD_REQUEST,
                "invalid_query",
                "Invalid query",
                format!("The query was refused: {m}."),
            ),
            CoreError::CollectionExists => ApiError::new(
                S::CONFLICT,
                "collection_exists",
                "Collection exists",
                "A collection with this name exists; change it with PATCH instead.",
            ),
            CoreError::SchemaViolated(n) => ApiError::new(
                S::CONFLICT,
                "schema_violated_by_data",
                "Stored records violate the new schema",
                format!("{n} stored record(s) do not satisfy the new schema (or would share a unique value); nothing was changed. Fix or delete them first, or relax the change."),
            ),
            CoreError::CollectionInUse(m) => ApiError::new(
                S::CONFLICT,
                "collection_in_use",
                "Collection in use",
                format!("The collection was not deleted: {m}."),
            ),
            CoreError::Duplicate(field) => {
                let mut e = ApiError::new(
                    S::CONFLICT,
                    "duplicate_value",
                    "Duplicate value",
                    format!("Another record already has this value in the unique field `{field}`; nothing was stored."),
                );
                e.problem.violations = vec![rampart_proto::Violation {
                    code: "duplicate_value".into(),
                    message: "another record has this value".into(),
                    field: Some(field),
                }];
                e
            }
            CoreError::MissingReference(field) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_reference",
                "Reference to a missing record",
                format!("The field `{field}` names a record that does not exist; nothing was stored."),
            ),
            CoreError::VersionMismatch => ApiError::new(
                S::PRECONDITION_FAILED,
                "version_mismatch",
                "Record changed",
                "The record changed since you read it (its version is not the one in If-Match). Read it again and retry.",
            ),
            CoreError::InvalidApiKey(m) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_api_key_request",
                "Invalid API key request",
                format!("The API key was not created: {m}."),
            ),
            CoreError::ApiKeyInvalid => ApiError::new(
                S::UNAUTHORIZED,
                "api_key_invalid",
                "API key not accepted",
                "The API key is unknown, revoked or expired.",
            ),
            CoreError::ApiKeyIpRefused => ApiError::forbidden(
                "api_key_ip_refused",
                "This API key may not be used from this address.",
            ),
            CoreError::InvalidRole => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_role",
                "Invalid role",
                "Custom roles are at most 16 names of 1-63 characters (a-z first, then a-z, 0-9 or _), other than admin, member and owner.",
            ),
            CoreError::MasterKeyMismatch => ApiError::internal("master key mismatch"),
            CoreError::Unavailable(detail) => {
                let mut e = ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "Database unavailable",
                    "The database is busy or unreachable; retry shortly.",
                )
                .with_retry_after(1);
                e.internal = Some(detail);
                e
            }
            CoreError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        self.problem.request_id = crate::middleware::current_request_id();
        if let Some(detail) = &self.internal {
            tracing::error!(error = %detail, code = %self.problem.code, status = self.problem.status, "request failed");
        }
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(ProblemCode(self.problem.code));
        res
    }
}

/// The `code` of a problem answer, on the response for the guard (which
/// decides whether it counts toward an address block).
#[derive(Debug, Clone)]
pub struct ProblemCode(pub String);
