//! Stored domain records.

use rampart_crypto::SecretString;

use crate::{AccountId, Clock, Email, FactorId, SessionId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub email: Email,
    pub display_name: Option<String>,
    /// PHC string (Argon2id). Not a secret in the cryptographic sense, but
    /// it must never be logged or returned, so it is boxed like one.
    pub password_hash: SecretString,
    pub role: Role,
    pub created_at: Timestamp,
    /// True when the account has at least one confirmed second factor.
    /// Read with the account, never stored on it.
    pub has_mfa: bool,
    pub lifecycle: Lifecycle,
}

/// Where an account is in its life (ADR 0015).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// When the owner proved the address; `None` while unverified.
    pub email_verified_at: Option<Timestamp>,
    /// When an administrator disabled it: no sign-in, no session, no key.
    pub disabled_at: Option<Timestamp>,
    /// A deletion the owner asked for happens at this time, unless they
    /// sign in before.
    pub delete_after: Option<Timestamp>,
    pub last_sign_in_at: Option<Timestamp>,
    /// In every device token the account is given; raised when its
    /// sign-ins are ended, so older tokens no longer count apart.
    pub device_epoch: i64,
}

impl Lifecycle {
    /// A new account, verified or not.
    pub fn new(verified_at: Option<Timestamp>) -> Self {
        Self {
            email_verified_at: verified_at,
            ..Self::default()
        }
    }
}

/// A login session. The bearer token itself is never stored, only its hash.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub account_id: AccountId,
    pub token_hash: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Absolute end of life.
    pub expires_at: Timestamp,
    /// Where the owner last proved themselves (sign-in, step-up).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Where the session was last used from (detection's "second place").
    pub last_ip: Option<String>,
    pub last_user_agent: Option<String>,
    /// The last time the owner proved themselves in this session (at login,
    /// or by a step-up); sensitive actions need it to be recent.
    pub step_up_at: Timestamp,
}

impl Session {
    /// The moment the session dies of inactivity.
    pub fn idle_deadline(&self, idle: std::time::Duration) -> Timestamp {
        self.last_seen_at.plus(idle)
    }

    pub fn is_live(&self, clock: &dyn Clock, idle: std::time::Duration) -> bool {
        let now = clock.now();
        now < self.expires_at && now < self.idle_deadline(idle)
    }
}

/// Kinds of single-use tokens kept hashed in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimeKind {
    Setup,
    Invite,
}

impl OneTimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OneTimeKind::Setup => "setup",
            OneTimeKind::Invite => "invite",
        }
    }
}

/// The kinds of second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    Totp,
    Webauthn,
    Email,
    Sms,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Webauthn => "webauthn",
            FactorKind::Email => "email",
            FactorKind::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<FactorKind> {
        [
            FactorKind::Totp,
            FactorKind::Webauthn,
            FactorKind::Email,
            FactorKind::Sms,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Kinds an account holds at most one of; confirming a new one
    /// replaces the old. Passkeys are many and named.
    pub fn is_single(self) -> bool {
        self != FactorKind::Webauthn
    }
}

/// A second factor. `sealed` holds its secret material encrypted (the
/// TOTP secret, the phone number, the passkey), never plaintext.
#[derive(Debug, Clone)]
pub struct Factor {
    pub id: FactorId,
    pub account_id: AccountId,
    pub kind: FactorKind,
    pub name: String,
    pub sealed: Option<String>,
    pub created_at: Timestamp,
    /// `None` while enrolment awaits confirmation.
    pub confirmed_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    /// TOTP: the last accepted time step, -1 when none.
    pub last_step: i64,
    /// Passkeys: a hash of the credential id, unique across accounts.
    pub credential_hash: Option<String>,
}

impl Factor {
    pub fn is_confirmed(&self) -> bool {
        self.confirmed_at.is_some()
    }
}

/// What an outstanding challenge is for; with `bound` it names the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// A code sent during a pending login (`bound` = its token hash).
    LoginCode,
    /// A passkey ceremony during a pending login.
    LoginPasskey,
    /// A code sent for a step-up (`bound` = the session id).
    StepUpCode,
    StepUpPasskey,
    /// A code sent to confirm a new email or SMS factor (`bound` = session id).
    EnrolCode,
    /// A passkey registration (`bound` = session id).
    EnrolPasskey,
}

impl ChallengePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengePurpose::LoginCode => "login_code",
            ChallengePurpose::LoginPasskey => "login_passkey",
            ChallengePurpose::StepUpCode => "step_up_code",
            ChallengePurpose::StepUpPasskey => "step_up_passkey",
            ChallengePurpose::EnrolCode => "enrol_code",
            ChallengePurpose::EnrolPasskey => "enrol_passkey",
        }
    }
}

/// An outstanding challenge: a passkey ceremony's server state, or the
/// keyed MAC of a code that was sent.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub purpose: ChallengePurpose,
    pub bound: String,
    pub account_id: AccountId,
    pub factor_id: Option<FactorId>,
    pub state: String,
    pub tries: u32,
    pub expires_at: Timestamp,
}

/// A login whose password was right, waiting for its second factor.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub token_hash: String,
    pub account_id: AccountId,
    pub password_fp: String,
    pub failures: u32,
    pub expires_at: Timestamp,
}
