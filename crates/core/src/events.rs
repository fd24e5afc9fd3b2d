//! Security events: who did what, from where, with what outcome. Never a
//! password, token or hash.

use crate::audit::{Category, Event, Severity};
use crate::{AccountId, EventId, RequestMeta, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Registration,
    LoginSuccess,
    LoginFailure,
    Logout,
    PasswordChange,
    SessionRevoked,
    /// A session used from another network or user agent than its last.
    SessionMoved,
    SetupUsed,
    AdminCreated,
    InviteCreated,
    AccountLocked,
    AccountUnlocked,
    MfaEnrolled,
    MfaRemoved,
    MfaSuccess,
    MfaFailure,
    MfaLocked,
    MfaReset,
    RecoveryCodeUsed,
    RecoveryCodesGenerated,
    StepUp,
    AccessDenied,
    CollectionChanged,
    ApiKeyCreated,
    ApiKeyRevoked,
    ApiKeyRefused,
    RolesChanged,
    KeysRotated,
    RequestBlocked,
    RateLimited,
    InspectionMatch,
    /// Requests for something that does not exist (folded per address).
    NotFound,
    BlockAdded,
    BlockRemoved,
    /// A scan found something it had not found in the previous report of
    /// the same target.
    ScanFinding,
}

impl EventKind {
    pub const ALL: [EventKind; 35] = [
        EventKind::Registration,
        EventKind::LoginSuccess,
        EventKind::LoginFailure,
        EventKind::Logout,
        EventKind::PasswordChange,
        EventKind::SessionRevoked,
        EventKind::SessionMoved,
        EventKind::SetupUsed,
        EventKind::AdminCreated,
        EventKind::InviteCreated,
        EventKind::AccountLocked,
        EventKind::AccountUnlocked,
        EventKind::MfaEnrolled,
        EventKind::MfaRemoved,
        EventKind::MfaSuccess,
        EventKind::MfaFailure,
        EventKind::MfaLocked,
        EventKind::MfaReset,
        EventKind::RecoveryCodeUsed,
        EventKind::RecoveryCodesGenerated,
        EventKind::StepUp,
        EventKind::AccessDenied,
        EventKind::CollectionChanged,
        EventKind::ApiKeyCreated,
        EventKind::ApiKeyRevoked,
        EventKind::ApiKeyRefused,
        EventKind::RolesChanged,
        EventKind::KeysRotated,
        EventKind::RequestBlocked,
        EventKind::RateLimited,
        EventKind::InspectionMatch,
        EventKind::NotFound,
        EventKind::BlockAdded,
        EventKind::BlockRemoved,
        EventKind::ScanFinding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Registration => "registration",
            EventKind::LoginSuccess => "login_success",
            EventKind::LoginFailure => "login_failure",
            EventKind::Logout => "logout",
            EventKind::PasswordChange => "password_change",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::SessionMoved => "session_moved",
            EventKind::SetupUsed => "setup_used",
            EventKind::AdminCreated => "admin_created",
            EventKind::InviteCreated => "invite_created",
            EventKind::AccountLocked => "account_locked",
            EventKind::AccountUnlocked => "account_unlocked",
            EventKind::MfaEnrolled => "mfa_enrolled",
            EventKind::MfaRemoved => "mfa_removed",
            EventKind::MfaSuccess => "mfa_success",
            EventKind::MfaFailure => "mfa_failure",
            EventKind::MfaLocked => "mfa_locked",
            EventKind::MfaReset => "mfa_reset",
            EventKind::RecoveryCodeUsed => "recovery_code_used",
            EventKind::RecoveryCodesGenerated => "recovery_codes_generated",
            EventKind::StepUp => "step_up",
            EventKind::AccessDenied => "access_denied",
            EventKind::CollectionChanged => "collection_changed",
            EventKind::ApiKeyCreated => "api_key_created",
            EventKind::ApiKeyRevoked => "api_key_revoked",
            EventKind::ApiKeyRefused => "api_key_refused",
            EventKind::RolesChanged => "roles_changed",
            EventKind::KeysRotated => "keys_rotated",
            EventKind::RequestBlocked => "request_blocked",
            EventKind::RateLimited => "rate_limited",
            EventKind::InspectionMatch => "inspection_match",
            EventKind::NotFound => "not_found",
            EventKind::BlockAdded => "block_added",
            EventKind::BlockRemoved => "block_removed",
            EventKind::ScanFinding => "scan_finding",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The ECS category of the event.
    pub fn category(self) -> Category {
        use EventKind::*;
        match self {
            Registration
            | LoginSuccess
            | LoginFailure
            | Logout
            | PasswordChange
            | SessionRevoked
            | SessionMoved
            | SetupUsed
            | MfaEnrolled
            | MfaRemoved
            | MfaSuccess
            | MfaFailure
            | MfaLocked
            | MfaReset
            | RecoveryCodeUsed
            | RecoveryCodesGenerated
            | StepUp
            | ApiKeyRefused => Category::Authentication,
            AdminCreated | InviteCreated | AccountLocked | AccountUnlocked | ApiKeyCreated
            | ApiKeyRevoked | RolesChanged => Category::Iam,
            AccessDenied => Category::Database,
            CollectionChanged | KeysRotated | ScanFinding => Category::Configuration,
            RequestBlocked | RateLimited | InspectionMatch | NotFound | BlockAdded
            | BlockRemoved => Category::Web,
        }
    }

    /// How much the event matters by default; failures of some kinds more.
    pub fn severity(self, outcome: Outcome) -> Severity {
        use EventKind::*;
        match (self, outcome) {
            (AccountLocked | MfaLocked | BlockAdded | KeysRotated | AdminCreated, _) => {
                Severity::Medium
            }
            (RolesChanged | MfaReset | MfaRemoved | ApiKeyCreated | SessionMoved, _) => {
                Severity::Low
            }
            (RequestBlocked | AccessDenied | ApiKeyRefused, _) => Severity::Medium,
            (_, Outcome::Failure) => Severity::Low,
            (_, Outcome::Success) => Severity::Info,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecurityEvent {
    pub id: EventId,
    pub at: Timestamp,
    pub kind: EventKind,
    pub outcome: Outcome,
    /// A stable reason code for failures, e.g. `wrong_password`.
    pub reason: Option<String>,
    pub account_id: Option<AccountId>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl EventKind {
    /// An event of this kind: its action, category and default severity.
    pub fn event(self, at: Timestamp, outcome: Outcome) -> Event {
        Event::new(at, self.as_str(), self.category(), outcome.as_str())
            .severity(self.severity(outcome))
    }
}

impl SecurityEvent {
    /// The event in the audit trail's shape.
    pub fn to_audit(&self) -> Event {
        self.kind
            .event(self.at, self.outcome)
            .reason(self.reason.as_deref())
            .user(self.account_id.as_ref().map(AccountId::as_str))
            .meta(&RequestMeta {
                ip: self.ip.clone(),
                user_agent: self.user_agent.clone(),
                request_id: self.request_id.clone(),
                ..Default::default()
            })
    }
}
