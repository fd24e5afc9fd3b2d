//! The storage interface. The domain speaks only to this trait; the
//! `rampart-store` crate implements it for SQLite and PostgreSQL.

use async_trait::async_trait;
use std::time::Duration;

use crate::model::{
    Account, Challenge, ChallengePurpose, Factor, OneTimeKind, PendingLogin, Session,
};
use crate::{AccountId, Email, FactorId, SessionId, Timestamp};

/// An address or range refused until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub id: String,
    /// A CIDR range in canonical form (`203.0.113.7/32`).
    pub network: String,
    pub reason: String,
    /// Who set it: `admin:<account id>`, `cli`, or `auto:<rule>`.
    pub source: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// 1 for a first block, n for the n-th within the offender memory.
    pub offence: u32,
}

impl IpBlock {
    /// For events and the command line: `203.0.113.7/32 until <time>: <reason>`.
    pub fn summary(&self) -> String {
        format!(
            "{} until {}: {}",
            self.network,
            self.expires_at.to_rfc3339(),
            self.reason
        )
    }
}

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
    /// The master key was rotated meanwhile: nothing was written.
    #[error("the master key was rotated meanwhile")]
    StaleMaster,
    /// A stored row could not be read back into a domain value.
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
}

#[async_trait]
pub trait Store:
    crate::audit::AuditStore
    + crate::acme::AcmeStore
    + crate::alerts::AlertStore
    + crate::incident::IncidentStore
    + crate::lifecycle::LifecycleStore
    + Send
    + Sync
    + 'static
{
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
    /// Moves a session's last place (`last_ip`, `last_user_agent`) to
    /// where it is used from now, provided it is still where the caller
    /// saw it (`from`): of requests racing from the new place, one moves
    /// it. False when it had moved.
    async fn move_session(
        &self,
        id: &SessionId,
        from: (Option<&str>, Option<&str>),
        to: (Option<&str>, Option<&str>),
    ) -> Result<bool, StoreError>;
    /// Deletes one session of `account`; false when there was none.
    async fn delete_session(&self, account: &AccountId, id: &SessionId)
        -> Result<bool, StoreError>;
    async fn sessions_of(&self, account: &AccountId) -> Result<Vec<Session>, StoreError>;
    /// Sets where a session's owner proved themselves (a step-up): its
    /// place and its last place.
    async fn anchor_session(
        &self,
        id: &SessionId,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Where the owners of the most recently used sessions in force at
    /// `now` proved themselves: account, address and user agent, newest
    /// first, at most `limit`.
    async fn session_places(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(AccountId, Option<String>, Option<String>)>, StoreError>;
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
    /// Blocks sign-in under `key` until `until` (an account lock set by a
    /// detection response), keeping any count there is.
    async fn lock_login(
        &self,
        key: &str,
        until: Timestamp,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    // --- Second factors (core::mfa) ---

    /// Every factor of the account, confirmed or pending, oldest first.
    async fn factors_of(&self, account: &AccountId) -> Result<Vec<Factor>, StoreError>;
    async fn insert_factor(&self, factor: &Factor) -> Result<(), StoreError>;
    /// Confirms a pending factor of `account`, provided its sealed value is
    /// still `sealed` (the one that was checked), in one transaction that
    /// also deletes any other factor of a kind an account holds one of,
    /// and, when it is the account's first, every session but `keep`.
    /// `None` when there was no such pending factor.
    async fn confirm_factor(
        &self,
        account: &AccountId,
        id: &FactorId,
        sealed: Option<&str>,
        now: Timestamp,
        keep: &SessionId,
    ) -> Result<Option<Confirmed>, StoreError>;
    /// Deletes a factor of `account`. With `keep_last`, the last confirmed
    /// factor is not deleted. Serialised per account, so two concurrent
    /// removals cannot both pass the check.
    async fn delete_factor(
        &self,
        account: &AccountId,
        id: &FactorId,
        keep_last: bool,
    ) -> Result<FactorRemoval, StoreError>;
    /// Records a TOTP code's time step as used, only if it is later than
    /// every step used before: false means a replay.
    async fn accept_totp_step(
        &self,
        id: &FactorId,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records a factor's use, and replaces its sealed value when given
    /// (a passkey's signature counter).
    async fn factor_used(
        &self,
        id: &FactorId,
        now: Timestamp,
        sealed: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Renames a pending factor and replaces its sealed value when given.
    async fn update_pending_factor(
        &self,
        id: &FactorId,
        name: &str,
        sealed: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Counts a code sent to a factor, unless the last was sent less than
    /// `min_gap` ago or `max` were sent within the current `window`. Returns
    /// `None` when the send may go, or when the next one may.
    async fn note_code_send(
        &self,
        id: &FactorId,
        now: Timestamp,
        min_gap: Duration,
        window: Duration,
        max: u32,
    ) -> Result<Option<Timestamp>, StoreError>;

    /// Counts one send under `key` in a fixed window: `None` when it may go
    /// (fewer than `max` in the current window), or when the window ends.
    async fn count_send(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        max: u32,
    ) -> Result<Option<Timestamp>, StoreError>;
    /// Stores a challenge, replacing the one with the same purpose and bound.
    async fn put_challenge(&self, challenge: &Challenge) -> Result<(), StoreError>;
    /// Deletes and returns the challenge, if it is there and unexpired.
    async fn take_challenge(
        &self,
        purpose: ChallengePurpose,
        bound: &str,
        now: Timestamp,
    ) -> Result<Option<Challenge>, StoreError>;
    /// Counts a try against a code challenge and returns it (tries
    /// included), if it is there and unexpired.
    async fn try_challenge(
        &self,
        purpose: ChallengePurpose,
        bound: &str,
        now: Timestamp,
    ) -> Result<Option<Challenge>, StoreError>;
    /// Deletes the challenge if its state is still `state`: true for the
    /// one caller that spends it.
    async fn spend_challenge(
        &self,
        purpose: ChallengePurpose,
        bound: &str,
        state: &str,
    ) -> Result<bool, StoreError>;

    async fn insert_pending_login(&self, pending: &PendingLogin) -> Result<(), StoreError>;
    async fn pending_login(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<PendingLogin>, StoreError>;
    /// Counts a failed second factor against a pending login; returns the
    /// count, or `None` when it is gone.
    async fn pending_login_failed(&self, token_hash: &str) -> Result<Option<u32>, StoreError>;
    /// Deletes and returns the pending login, if it is there and unexpired:
    /// only one caller gets it.
    async fn take_pending_login(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<PendingLogin>, StoreError>;
    /// Voids every pending login of the account.
    async fn void_pending_logins(&self, account: &AccountId) -> Result<u64, StoreError>;

    /// Replaces all recovery codes of the account with these MACs.
    async fn replace_recovery_codes(
        &self,
        account: &AccountId,
        macs: &[String],
    ) -> Result<(), StoreError>;
    /// Marks an unused code used: true for the one caller that uses it.
    async fn use_recovery_code(
        &self,
        account: &AccountId,
        mac: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn recovery_codes_left(&self, account: &AccountId) -> Result<u32, StoreError>;

    /// Records a fresh proof of identity in the session.
    async fn set_step_up(&self, session: &SessionId, at: Timestamp) -> Result<(), StoreError>;
    /// Deletes every factor, recovery code, challenge, pending login and
    /// session of the account, in one transaction.
    async fn reset_mfa(&self, account: &AccountId) -> Result<(), StoreError>;
    /// Deletes expired challenges and pending logins, and enrolments left
    /// unconfirmed since `stale_before`.
    async fn purge_mfa(&self, now: Timestamp, stale_before: Timestamp) -> Result<u64, StoreError>;

    /// The sealed key-check values (see [`crate::AuthService::verify_master_key`]).
    async fn key_checks(&self) -> Result<Vec<String>, StoreError>;
    /// Every factor's (id, kind, sealed value), for re-sealing.
    async fn sealed_factors(&self) -> Result<Vec<(FactorId, String, String)>, StoreError>;
    /// Replaces a factor's sealed value if it is still `old`.
    async fn reseal_factor(&self, id: &FactorId, old: &str, new: &str) -> Result<bool, StoreError>;
    /// Replaces the key check if it is still `old`.
    async fn reseal_key_check(
        &self,
        key_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError>;
    /// Stores the key check (one row), unless one is there: false when
    /// another node got there first.
    async fn add_first_key_check(
        &self,
        key_id: &str,
        sealed: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Stores an address block.
    async fn insert_block(&self, block: &IpBlock) -> Result<(), StoreError>;
    /// Blocks in force at `now` (not expired, not lifted), at most
    /// `limit`: those set by people first, then automatic ones, newest
    /// first.
    async fn active_blocks(&self, now: Timestamp, limit: u32) -> Result<Vec<IpBlock>, StoreError>;
    /// How many blocks of `network` were set since `since` and not lifted
    /// early (a lifted block was a mistake): the offender's record, which
    /// lengthens the next block.
    async fn block_count(&self, network: &str, since: Timestamp) -> Result<u32, StoreError>;
    /// Lifts a block early; false when there is no such block in force.
    async fn lift_block(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Deletes blocks that ended (expired or lifted) before `before`, the
    /// start of the offender memory: they no longer count. Returns how many.
    async fn purge_blocks(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Takes a token from the shared bucket `key` (GCRA: one token every
    /// `interval`, up to `burst` at once), in one statement, so every node
    /// draws on the same budget. `None` when taken; otherwise how long
    /// until one is free.
    async fn take_rate_token(
        &self,
        key: &str,
        now: Timestamp,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, StoreError>;
    /// Stores an unlock code for `account`, replacing any earlier one.
    async fn insert_unlock_token(
        &self,
        token_hash: &str,
        account: &AccountId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Counts one use of an unlock code and returns its account, if the
    /// code exists, has not expired and has uses left (`max_uses`).
    async fn use_unlock_token(
        &self,
        token_hash: &str,
        now: Timestamp,
        max_uses: u32,
    ) -> Result<Option<AccountId>, StoreError>;
    /// Deletes an account's unlock codes (after a successful sign-in).
    async fn delete_unlock_tokens(&self, account: &AccountId) -> Result<(), StoreError>;
    /// Forgets buckets that are full again (theoretical arrival before `now`).
    async fn purge_rate_buckets(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Administrators, whether each has a confirmed second factor, and
    /// their last sign-in as the event trail records it (for `scan self`).
    async fn admin_posture(&self) -> Result<Vec<AdminPosture>, StoreError>;
    /// The addresses administrators proved themselves from (sign-in,
    /// step-up) in sessions in force at `now` and not held for a step-up
    /// (detection never blocks them on its own; a token used elsewhere
    /// does not extend that to its new place).
    async fn admin_session_addresses(&self, now: Timestamp) -> Result<Vec<String>, StoreError>;
    /// API keys in force (not revoked, not expired at `now`) and their last
    /// use as the data-access trail records it (for `scan self`).
    async fn api_key_posture(&self, now: Timestamp) -> Result<Vec<ApiKeyPosture>, StoreError>;
    /// Stores a scan report, keeping the newest 30 of its kind and target,
    /// and none older than 90 days.
    async fn insert_scan_report(&self, r: &ScanReportRow) -> Result<(), StoreError>;
    /// The newest report of each kind and target.
    async fn latest_scan_reports(&self) -> Result<Vec<ScanReportRow>, StoreError>;
    /// The newest `limit` reports of `kind`, of `target` or of any target,
    /// newest first.
    async fn recent_scan_reports(
        &self,
        kind: &str,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ScanReportRow>, StoreError>;
    async fn scan_report(&self, id: &str) -> Result<Option<ScanReportRow>, StoreError>;
}

/// One administrator, for the posture scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPosture {
    pub email: String,
    pub has_second_factor: bool,
    pub created_at: Timestamp,
    pub last_sign_in: Option<Timestamp>,
}

/// One API key in force, for the posture scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyPosture {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
}

/// A stored scan report: the summary columns and the report as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReportRow {
    pub id: String,
    /// `self`, `url` or `deps`.
    pub kind: String,
    pub target: String,
    pub started_at: Timestamp,
    /// The most severe finding's severity, if any.
    pub worst: Option<String>,
    pub findings: u32,
    pub report: String,
}

/// What [`Store::confirm_factor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// Confirmed factors of the same kind it replaced.
    pub replaced: u64,
    /// True when the account had no confirmed factor before.
    pub first: bool,
    /// Other sessions ended because this is the first factor.
    pub sessions_ended: u64,
}

/// What [`Store::delete_factor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorRemoval {
    Deleted(crate::model::FactorKind),
    NotFound,
    /// Refused: it is the account's last confirmed factor.
    LastFactor,
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
