//! Stored domain records.

use rampart_crypto::SecretString;

use crate::{AccountId, Clock, Email, SessionId, Timestamp};

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
    pub ip: Option<String>,
    pub user_agent: Option<String>,
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
