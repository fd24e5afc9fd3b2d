//! Security events: who did what, from where, with what outcome. Never a
//! password, token or hash.

use crate::{AccountId, EventId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Registration,
    LoginSuccess,
    LoginFailure,
    Logout,
    PasswordChange,
    SessionRevoked,
    SetupUsed,
    AdminCreated,
    InviteCreated,
    AccountLocked,
    AccountUnlocked,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::Registration,
        EventKind::LoginSuccess,
        EventKind::LoginFailure,
        EventKind::Logout,
        EventKind::PasswordChange,
        EventKind::SessionRevoked,
        EventKind::SetupUsed,
        EventKind::AdminCreated,
        EventKind::InviteCreated,
        EventKind::AccountLocked,
        EventKind::AccountUnlocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Registration => "registration",
            EventKind::LoginSuccess => "login_success",
            EventKind::LoginFailure => "login_failure",
            EventKind::Logout => "logout",
            EventKind::PasswordChange => "password_change",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::SetupUsed => "setup_used",
            EventKind::AdminCreated => "admin_created",
            EventKind::InviteCreated => "invite_created",
            EventKind::AccountLocked => "account_locked",
            EventKind::AccountUnlocked => "account_unlocked",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
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

/// A query over events, newest first. `cursor` is the (time, id) of the last
/// event of the previous page.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<EventKind>,
    pub account_id: Option<AccountId>,
    pub ip: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: u32,
    pub cursor: Option<(Timestamp, EventId)>,
}
