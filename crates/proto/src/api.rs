//! Request and response bodies of `/api/v1`. Requests reject unknown fields.

use rampart_crypto::SecretString;

use crate::problem::Violation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(format = "email")]
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    pub display_name: Option<String>,
    /// Required when registration is `invite`.
    #[schema(value_type = Option<String>)]
    pub invite_token: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountCreated {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// The code emailed to the owner when the account was locked after
    /// repeated wrong passwords: with it, the lock does not apply to this
    /// sign-in (the password is still checked; 5 tries per code, one hour).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub unlock_code: Option<SecretString>,
    /// The `device_token` an earlier sign-in from this client returned
    /// (browsers send the `__Host-rampart_device` cookie instead): wrong
    /// passwords are then counted for this device alone, so guesses from
    /// anyone else never delay or lock it.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub device_token: Option<SecretString>,
}

/// A new session. The token is also set as the `__Host-rampart_session`
/// cookie; cookie-authenticated requests that change state must send
/// `csrf_token` back in the `X-CSRF-Token` header.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Always false here: the session exists.
    pub mfa_required: bool,
    pub token: String,
    pub csrf_token: String,
    /// RFC 3339; the absolute end of the session.
    pub expires_at: String,
    /// Keep it and send it with the next sign-in from this client (also
    /// set as the `__Host-rampart_device` cookie).
    pub device_token: String,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The session's CSRF token, for cookie-authenticated writes
    /// (`X-CSRF-Token`): a page opened later than the sign-in reads it
    /// here. Derived from the session token; useless without it.
    pub csrf_token: String,
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    /// `admin` or `member`.
    pub role: String,
    pub created_at: String,
    /// True when the account has a confirmed second factor.
    pub mfa_enabled: bool,
    /// True when this account's role requires a second factor and it has
    /// none yet: enrol one under `/api/v1/me/mfa`.
    pub mfa_enrollment_required: bool,
    /// True once the owner opened the link (or entered the code) mailed
    /// to the address.
    pub email_verified: bool,
}

impl std::fmt::Debug for Me {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Me")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The certificate in service.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    pub not_before: String,
    pub not_after: String,
    /// Whole days until it expires (negative once it has).
    pub days_left: i64,
}

/// The settings in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// Every setting, as text; secrets show as `[REDACTED]` and URLs keep
    /// only their scheme and host.
    pub settings: String,
}

/// A password to rate against the policy, before it is chosen.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordCheckRequest {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// The account's address, if known: a password may not contain its
    /// name part.
    pub email: Option<String>,
    /// The account's display name, if known: nor may it contain that.
    pub display_name: Option<String>,
}

/// How a password fares against the policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordCheck {
    /// Whether the policy accepts it.
    pub acceptable: bool,
    /// The strength estimate, 0 (very weak) to 4 (very strong).
    pub score: u8,
    /// Every rule it fails.
    pub violations: Vec<Violation>,
    /// How to do better.
    pub suggestions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// True for the session making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token printed by `rampart serve`.
    #[schema(value_type = String)]
    pub token: SecretString,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    pub display_name: Option<String>,
}

/// One event of the audit trail (ECS-aligned names in `fields`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// `node:seq`: the event's place in its node's chain.
    pub id: String,
    pub node: String,
    pub seq: u64,
    pub at: String,
    /// `event.action`, e.g. `login_failure` or `data.read`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `event.category`.
    pub category: String,
    /// `success`, `failure` or `unknown`.
    pub outcome: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// Reason for failures (`unknown_account`, `wrong_password`, …).
    pub reason: Option<String>,
    /// The account (or `key:<id>`, an API key) the event is about.
    pub account_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The guard or detection rule that decided.
    pub rule: Option<String>,
    /// What was acted on: a collection, a block.
    pub object: Option<String>,
    /// Further fields by dotted name (`event.count`, `data.record_ids`, …).
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
}

/// Events per time bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventCounts {
    /// `minute`, `hour` or `day`.
    pub bucket: String,
    pub since: String,
    pub until: String,
    /// Buckets with events, oldest first.
    pub counts: Vec<EventCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventCount {
    pub start: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InviteCreated {
    /// Single use; give it to the person who will register.
    pub invite_token: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` from `/readyz` when the database is not reachable.
    pub status: String,
}

/// The password was right; the login needs a second factor. Complete it
/// with `POST /api/v1/auth/mfa` (after `POST /api/v1/auth/mfa/challenge`
/// for email, SMS or a passkey).
#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always true.
    pub mfa_required: bool,
    /// Single use, valid 5 minutes.
    pub mfa_token: String,
    /// The methods this account can use: `totp`, `webauthn`, `email`,
    /// `sms`, `recovery_code`.
    pub methods: Vec<String>,
    pub expires_at: String,
}

impl std::fmt::Debug for MfaRequired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaRequired")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// The answer to a correct password: a session, or a second step.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResult {
    Session(LoginResponse),
    MfaRequired(MfaRequired),
}

/// Second-factor methods.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaMethod {
    Totp,
    Webauthn,
    Email,
    Sms,
    RecoveryCode,
}

/// Sends a code (email, SMS) or starts a passkey ceremony for a login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaChallengeRequest {
    #[schema(value_type = String)]
    pub mfa_token: SecretString,
    pub method: MfaMethod,
}

/// Sends a code or starts a passkey ceremony for a step-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpChallengeRequest {
    pub method: MfaMethod,
}

/// A challenge was issued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// email, sms: where the code went, masked.
    pub sent_to: Option<String>,
    /// email, sms: when the code stops working.
    pub expires_at: Option<String>,
    /// webauthn: `PublicKeyCredentialRequestOptions` (or, for enrolment,
    /// creation options) to pass to `navigator.credentials`.
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Value>,
}

/// Completes a login with a second factor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLoginRequest {
    #[schema(value_type = String)]
    pub mfa_token: SecretString,
    pub method: MfaMethod,
    /// totp, email, sms, recovery_code.
    #[schema(value_type = Option<String>)]
    pub code: Option<SecretString>,
    /// webauthn: the `PublicKeyCredential` from `navigator.credentials.get`.
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<serde_json::Value>,
}

/// Proves the session's owner again. An account with a second factor
/// uses it (`code` or `assertion`); one without uses its `password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// Omit with `password`.
    pub method: Option<MfaMethod>,
    #[schema(value_type = Option<String>)]
    pub code: Option<SecretString>,
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<serde_json::Value>,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepUpResponse {
    /// Sensitive actions are allowed until then.
    pub step_up_until: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactorView {
    pub id: String,
    /// `totp`, `webauthn`, `email` or `sms`.
    pub kind: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    pub factors: Vec<FactorView>,
    pub recovery_codes_left: u32,
    /// True when this account's role requires a second factor.
    pub required: bool,
    /// Methods this server allows and can deliver (email and SMS need a
    /// configured notifier).
    pub methods_allowed: Vec<String>,
}

/// A TOTP secret to put in an authenticator app, shown once. Confirm it
/// with `POST /api/v1/me/mfa/totp/confirm`.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolmentResponse {
    pub factor_id: String,
    /// Base32, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/...`, what the QR code holds.
    pub otpauth_uri: String,
    /// The QR code as an SVG document.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrolmentResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolmentResponse")
            .field("factor_id", &self.factor_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(value_type = String)]
    pub code: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsEnrolRequest {
    /// E.164, e.g. `+447700900123`.
    pub phone: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyEnrolRequest {
    /// A name to tell this passkey apart, e.g. `Work laptop`.
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyConfirmRequest {
    /// The `PublicKeyCredential` from `navigator.credentials.create`.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// A factor is active. `recovery_codes` comes with the account's first
/// factor only, and is shown this once.
#[derive(Serialize, ToSchema)]
pub struct EnrolledResponse {
    pub factor: FactorView,
    pub recovery_codes: Option<Vec<String>>,
}

impl std::fmt::Debug for EnrolledResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolledResponse")
            .field("factor", &self.factor)
            .finish_non_exhaustive()
    }
}

/// New recovery codes, shown once; the old ones no longer work.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCodes(<redacted>)")
    }
}

/// Asks for a mail to an address (a reset link, a new verification).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub email: String,
}

/// Accepted: what happens next does not depend on the address.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub status: String,
    pub detail: String,
}

/// Proves an address: the mailed link's `token`, or the `email` and the
/// mailed `code`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub code: Option<SecretString>,
}

/// A second factor given with a password reset: a TOTP code or a
/// recovery code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetFactor {
    /// `totp` or `recovery_code`.
    pub method: MfaMethod,
    #[schema(value_type = String, format = Password)]
    pub code: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The code from the emailed link.
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
    /// Required for an administrator with a second factor.
    #[serde(default)]
    pub second_factor: Option<ResetFactor>,
}

/// Moves the account to another address (confirmed from it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeRequest {
    pub new_email: String,
}

/// A mailed link's token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailLinkRequest {
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionScheduled {
    /// RFC 3339: when the account goes, unless its owner signs in before.
    pub delete_after: String,
    /// True when it is gone already (no grace period is configured).
    pub deleted: bool,
}

/// One account as an administrator sees it in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSummary {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub role: String,
    pub created_at: String,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub disabled_at: Option<String>,
    pub delete_after: Option<String>,
    pub last_sign_in_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDetailView {
    pub account: AccountSummary,
    /// Custom roles, beside `role`.
    pub roles: Vec<String>,
    pub factors: Vec<FactorView>,
    pub sessions: Vec<SessionView>,
    /// The newest sign-ins and failed ones.
    pub sign_ins: Vec<EventView>,
}
