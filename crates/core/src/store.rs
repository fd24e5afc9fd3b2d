//! The storage interface. The domain speaks only to this trait; the
//! `rampart-store` crate implements it for SQLite and PostgreSQL.

use async_trait::async_trait;
use std::time::Duration;

use crate::events::{EventFilter, SecurityEvent};
use crate::model::{Account, OneTimeKind, Session};
use crate::{AccountId, Email, SessionId, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. the email is taken).
    #[error("conflict")]
    Conflict,
    /// The database could not be reached or answered with an error. The
    /// string is for the log only and is never sent to a client.
    #[error("database error: {0}")]
    Backend(String),
    /// The database is busy or unreachable right now; retrying may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be read back into a domain value.
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the connection pool cleanly.
    async fn close(&self);

    async fn insert_account(&self, account: &Account) -> Result<(), StoreError>;
    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError>;
    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    /// Replaces the password hash only if it is still `expected`; false
    /// when it changed meanwhile (a concurrent password change wins).
    async fn replace_password_hash(
        &self,
        id: &AccountId,
        expected: &str,
        phc: &str,
    ) -> Result<bool, StoreError>;
    /// Sets a new password hash and deletes every other session of the
    /// account, in one transaction, provided the hash is still `expected`
    /// and the session `keep` still exists. Returns how many sessions went,
    /// or `None` (nothing changed) when either condition failed.
    async fn change_password(
        &self,
        id: &AccountId,
        expected: &str,
        phc: &str,
        keep: &crate::SessionId,
    ) -> Result<Option<u64>, StoreError>;
    /// Spends a one-time token and inserts the account in one transaction;
    /// false (and nothing stored) when the token was not there to spend.
    async fn insert_account_with_token(
        &self,
        account: &Account,
        kind: OneTimeKind,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn admin_exists(&self) -> Result<bool, StoreError>;

    /// Inserts the session only while the account's password hash is still
    /// `password_hash` (the one just verified), so a login racing a password
    /// change cannot outlive it. False when it was not inserted.
    async fn insert_session(
        &self,
        session: &Session,
        password_hash: &str,
    ) -> Result<bool, StoreError>;
    /// The live-or-not session with this token hash, and its account.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Session, Account)>, StoreError>;
    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> Result<(), StoreError>;
    /// Deletes one session of `account`; false when there was none.
    async fn delete_session(&self, account: &AccountId, id: &SessionId)
        -> Result<bool, StoreError>;
    async fn sessions_of(&self, account: &AccountId) -> Result<Vec<Session>, StoreError>;
    /// Deletes sessions past their absolute expiry or idle since `idle_before`.
    async fn delete_expired_sessions(
        &self,
        now: Timestamp,
        idle_before: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Removes every token of `kind`, then stores this one.
    async fn replace_one_time_tokens(
        &self,
        kind: OneTimeKind,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    async fn insert_one_time_token(
        &self,
        kind: OneTimeKind,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Counts a login attempt for `key` at `at`, before its password is
    /// checked, and blocks further checks when `block_after(count)` says
    /// so, in one transaction: concurrent attempts are counted one after
    /// another and none slips past a block another one just set. A count
    /// starts again at 1 once both its last failure and its last block are
    /// older than `quiet_since`. While a block lasts nothing is counted and
    /// [`LoginAttempt::Blocked`] is returned.
    async fn reserve_login_attempt(
        &self,
        key: &str,
        at: Timestamp,
        quiet_since: Timestamp,
        block_after: &(dyn Fn(u32) -> Option<Duration> + Send + Sync),
    ) -> Result<LoginAttempt, StoreError>;

    /// Forgets the failures and any block of `key`: an administrator's
    /// unlock. Returns true when there were any.
    async fn clear_login_failures(&self, key: &str) -> Result<bool, StoreError>;

    /// Settles the attempt reserved at `at` as the `failures`-th, provided
    /// nothing was counted for `key` since: `Forget` deletes the count (a
    /// correct password), `Uncount` takes the attempt back (its password
    /// was never checked). When other attempts came after it, the count is
    /// left as it is, so a guess made meanwhile is never forgotten.
    async fn settle_login_attempt(
        &self,
        key: &str,
        failures: u32,
        at: Timestamp,
        how: Settle,
    ) -> Result<bool, StoreError>;

    /// Deletes counts that are quiet since `quiet_since` (no failure, no
    /// block): they would start again at 1 anyway.
    async fn purge_login_failures(&self, quiet_since: Timestamp) -> Result<u64, StoreError>;

    async fn insert_event(&self, event: &SecurityEvent) -> Result<(), StoreError>;
    async fn events(&self, filter: &EventFilter) -> Result<Vec<SecurityEvent>, StoreError>;
}

/// How [`Store::settle_login_attempt`] settles a reserved attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Forget,
    Uncount,
}

/// What [`Store::reserve_login_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted; the password may be checked. `failures` includes this one.
    Allowed { failures: u32 },
    /// A block is in force: do not check the password.
    Blocked,
}
