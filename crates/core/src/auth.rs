//! Accounts and sessions: registration, login, logout, password change,
//! session listing and revocation, first-administrator setup, invites.
//!
//! Invariants kept here:
//! - a password is checked against the policy before it is ever hashed, and
//!   hashed in its NFKC form;
//! - an unknown account costs one Argon2id verification, like a wrong
//!   password, and both give [`Error::InvalidCredentials`];
//! - only hashes of session and one-time tokens are stored;
//! - every outcome listed in [`EventKind`] is recorded as a security event.

use std::sync::Arc;
use std::time::Duration;

use rampart_crypto::{sha256_hex, Entropy, SecretString, TokenHash, Verification};

use crate::events::{EventKind, Outcome};
use crate::hashing::HashPool;
use crate::mfa::LoginOutcome;
use crate::model::{Account, OneTimeKind, Role, Session};
use crate::password_policy::{normalize, PasswordPolicy};
use crate::{AccountId, Clock, Email, Error, LoginAttempt, SessionId, Settle, Store, Timestamp};

/// Who may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Invite,
    Closed,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub registration: RegistrationMode,
    pub policy: PasswordPolicy,
    pub idle_timeout: Duration,
    pub absolute_lifetime: Duration,
    pub brute_force: BruteForcePolicy,
    pub mfa: crate::mfa::MfaPolicy,
    pub accounts: crate::lifecycle::AccountsPolicy,
}

/// How long an emailed unlock code is good for.
const UNLOCK_TTL: Duration = Duration::from_secs(3600);
/// Tries one unlock code allows.
pub const UNLOCK_USES: u32 = 5;

/// Per-address brute-force defence (ADR 0005). Attempts are counted before
/// their password is checked; from the `delay_after`-th on, each blocks
/// checks for a delay that doubles from `base_delay` up to `max_delay`, and
/// the `lock_after`-th locks for `lock_for`. A count starts again after a
/// quiet `window`. A blocked attempt costs the same and is answered exactly
/// as a wrong password, so the attacker cannot tell; a correct password
/// (once the block is over) or an unlock clears the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BruteForcePolicy {
    pub delay_after: u32,
    pub window: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub lock_after: u32,
    pub lock_for: Duration,
}

impl Default for BruteForcePolicy {
    fn default() -> Self {
        Self {
            delay_after: 10,
            window: Duration::from_secs(30 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            lock_after: 20,
            lock_for: Duration::from_secs(3600),
        }
    }
}

impl BruteForcePolicy {
    /// NIST SP 800-63B 5.2.2: at most 100 failed attempts per account.
    pub const MAX_FAILURES_PER_HOUR: u32 = 100;

    /// An upper bound on the failures one login name can have in any hour.
    /// A count starts again only after a quiet `window` (no failure and no
    /// block), so an hour holds at most `3600 / window + 1` counts; each
    /// reaches at most `lock_after` before the lock, and after a lock every
    /// further failure locks again at once, at most one per `lock_for`.
    pub fn worst_case_failures_per_hour(&self) -> u64 {
        const HOUR: u64 = 3600;
        let window = self.window.as_secs().max(1);
        let lock = self.lock_for.as_secs().max(1);
        let counts = HOUR / window + 1;
        // Plus the tries of the unlock codes mailed to the owner, one per
        // lock, and one still live from the hour before (only the owner can
        // use them).
        let locks = HOUR.div_ceil(lock);
        counts * u64::from(self.lock_after) + locks + (locks + 1) * u64::from(UNLOCK_USES)
    }

    /// Refuses settings that could allow more than 100 failures an hour.
    pub fn validate(&self) -> Result<(), String> {
        if self.delay_after == 0 || self.lock_after < self.delay_after {
            return Err("brute_force: need 1 <= delay_after <= lock_after".to_owned());
        }
        if self.base_delay.is_zero()
            || self.max_delay < self.base_delay
            || self.window < self.max_delay
            || self.lock_for.is_zero()
        {
            return Err(
                "brute_force: need 0 < base_delay_secs <= max_delay_secs <= window_secs, and lock_for_secs > 0"
                    .to_owned(),
            );
        }
        let worst = self.worst_case_failures_per_hour();
        if worst > u64::from(Self::MAX_FAILURES_PER_HOUR) {
            return Err(format!(
                "brute_force: these settings could allow {worst} failed logins per account per hour; \
                 at most {} are allowed (NIST SP 800-63B). Lower lock_after, or raise window_secs \
                 or lock_for_secs.",
                Self::MAX_FAILURES_PER_HOUR
            ));
        }
        Ok(())
    }

    /// Counts whose last failure and last block are older than this start
    /// again at 1.
    pub fn quiet_since(&self, now: Timestamp) -> Timestamp {
        now.minus(self.window)
    }

    /// How long password checks stop after the `failures`-th failure.
    pub fn block_after(&self, failures: u32) -> Option<Duration> {
        if failures >= self.lock_after {
            return Some(self.lock_for);
        }
        if failures < self.delay_after {
            return None;
        }
        let doublings = (failures - self.delay_after).min(30);
        Some(
            self.base_delay
                .saturating_mul(1u32 << doublings)
                .min(self.max_delay),
        )
    }
}

/// Where a request came from, for the event trail.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// A browser sent it for a page of another site (`Sec-Fetch-Site:
    /// cross-site`): an image tag or a form elsewhere, not the client's
    /// own doing. Detection does not hold such requests against the
    /// address.
    pub cross_site: bool,
    /// The drill this request belongs to (`Rampart-Drill`, checked by the
    /// guard): its events are marked `labels.drill`.
    pub drill: Option<String>,
}

/// A session just created, with the only copy of its bearer token, and a
/// device token for the client to keep (ADR 0015): signing in with it
/// counts failures apart from everyone else's.
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub session: Session,
    pub device: SecretString,
}

/// Sessions are touched at most this often, so idle tracking does not turn
/// every read into a write.
pub const TOUCH_GRANULARITY: Duration = Duration::from_secs(60);
const SETUP_TOKEN_TTL: Duration = Duration::from_secs(3600);
const INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_DISPLAY_NAME: usize = 100;
/// Raw passwords longer than this are refused before any work is done on
/// them (normalisation can multiply their size, hashing reads them whole).
/// 4 KiB leaves room for the policy's 256 characters even when typed in a
/// decomposed form (NFD Hangul, combining marks).
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// The brute-force counter's key for a login name: a hash of the
/// normalised address (or of the raw text when it is not an address), so
/// spelling variants share one count and the table holds no address in
/// clear.
pub(crate) fn login_key(email: Option<&Email>, raw: &str) -> String {
    match email {
        Some(e) => sha256_hex(format!("rampart-login-v1:{}", e.as_str()).as_bytes()),
        None => {
            sha256_hex(format!("rampart-login-raw-v1:{}", raw.trim().to_lowercase()).as_bytes())
        }
    }
}

fn oversized(password: &SecretString) -> bool {
    password.expose_secret().len() > MAX_PASSWORD_BYTES
}

/// The step-up time of a session detection holds until its owner proves
/// themselves again (`clear_step_ups`). Not 0, which sessions from before
/// step-ups existed carry.
pub const STEP_UP_HELD: Timestamp = Timestamp(-1);

pub struct AuthService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    pool: HashPool,
    config: AuthConfig,
    dummy_hash: String,
    pub(crate) mfa: crate::mfa::MfaDeps,
    audit: crate::audit::Audit,
    /// Security notices being sent; awaited by [`AuthService::flush_notices`].
    pub(crate) notices: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        pool: HashPool,
        config: AuthConfig,
        mfa: crate::mfa::MfaDeps,
        audit: crate::audit::Audit,
    ) -> Result<Self, Error> {
        let dummy_hash = pool
            .hasher()
            .dummy_hash(entropy.as_ref())
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Self {
            store,
            clock,
            entropy,
            pool,
            config,
            dummy_hash,
            mfa,
            audit,
            notices: std::sync::Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn pool(&self) -> &HashPool {
        &self.pool
    }

    pub fn entropy(&self) -> &Arc<dyn Entropy> {
        &self.entropy
    }

    pub(crate) async fn settle_attempt(
        &self,
        key: &str,
        failures: u32,
        at: Timestamp,
        how: Settle,
    ) {
        self.settle(key, failures, at, how).await
    }

    /// The CSRF proof that goes with a session token. Derived, not stored:
    /// only a party that was given the login response can know it.
    pub fn csrf_token_for(token: &SecretString) -> String {
        sha256_hex(format!("rampart-csrf-v1:{}", token.expose_secret()).as_bytes())
    }

    /// The event of `kind` about `account`, from the request `meta`.
    fn event_of(
        &self,
        kind: EventKind,
        outcome: Outcome,
        reason: Option<&str>,
        account: Option<&AccountId>,
        meta: &RequestMeta,
    ) -> crate::audit::Event {
        kind.event(self.clock.now(), outcome)
            .reason(reason)
            .user(account.map(AccountId::as_str))
            .meta(meta)
    }

    /// Records `event` durably, before the answer: the writer retries
    /// until the database takes it, so this fails only once the writer has
    /// stopped.
    pub async fn record_security(&self, event: crate::audit::Event) {
        let action = event.action.clone();
        if let Err(e) = self.audit.record_durable(event).await {
            tracing::error!(error = %e, event = %action, "could not record security event");
        }
    }

    async fn record(
        &self,
        kind: EventKind,
        outcome: Outcome,
        reason: Option<&str>,
        account: Option<&AccountId>,
        meta: &RequestMeta,
    ) {
        self.record_security(self.event_of(kind, outcome, reason, account, meta))
            .await
    }

    /// The audit trail every part of the domain records through.
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// Records a security event on behalf of another part of the domain.
    pub async fn record_event(
        &self,
        kind: EventKind,
        outcome: Outcome,
        reason: Option<&str>,
        account: Option<&AccountId>,
        meta: &RequestMeta,
    ) {
        self.record(kind, outcome, reason, account, meta).await
    }

    pub(crate) async fn failed(
        &self,
        kind: EventKind,
        reason: &str,
        account: Option<&AccountId>,
        meta: &RequestMeta,
    ) {
        self.record(kind, Outcome::Failure, Some(reason), account, meta)
            .await
    }

    /// A success with a reason (what was enrolled, removed, used).
    pub(crate) async fn noted(
        &self,
        kind: EventKind,
        reason: Option<&str>,
        account: &AccountId,
        meta: &RequestMeta,
    ) {
        self.record(kind, Outcome::Success, reason, Some(account), meta)
            .await
    }

    async fn succeeded(&self, kind: EventKind, account: Option<&AccountId>, meta: &RequestMeta) {
        self.record(kind, Outcome::Success, None, account, meta)
            .await
    }

    /// A keyed MAC of the login name tried (16 hex digits): lets detection
    /// count guesses per name, for names that have no account too, without
    /// writing the name into the trail.
    fn login_id(&self, email: &str) -> String {
        let parsed = Email::parse(email).ok();
        let mut id = self
            .mfa
            .keys
            .mac("rampart-login-name-v1", &login_key(parsed.as_ref(), email));
        id.truncate(16);
        id
    }

    /// A failed sign-in, with the login name's MAC (`login.key`).
    async fn login_failed(
        &self,
        reason: &str,
        account: Option<&AccountId>,
        email: &str,
        meta: &RequestMeta,
    ) {
        let event = self
            .event_of(
                EventKind::LoginFailure,
                Outcome::Failure,
                Some(reason),
                account,
                meta,
            )
            .field("login.key", self.login_id(email));
        self.record_security(event).await
    }

    /// A sign-in, with the account's role (`user.roles`) and the MAC of
    /// its login name (`login.key`, as its failures carry it).
    pub(crate) async fn login_succeeded(
        &self,
        account: &Account,
        how: Option<&str>,
        meta: &RequestMeta,
    ) {
        let event = self
            .event_of(
                EventKind::LoginSuccess,
                Outcome::Success,
                how,
                Some(&account.id),
                meta,
            )
            .field("user.roles", vec![account.role.as_str()])
            .field("login.key", self.login_id(account.email.as_str()));
        self.record_security(event).await;
        self.signed_in(account, meta).await;
    }

    /// Settles a reserved login attempt (see [`Store::settle_login_attempt`]);
    /// tried twice, then logged: the login's answer does not depend on it.
    async fn settle(&self, key: &str, failures: u32, at: Timestamp, how: Settle) {
        for _ in 0..2 {
            match self
                .store
                .settle_login_attempt(key, failures, at, how)
                .await
            {
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, "login attempt not settled"),
            }
        }
    }

    /// Lifts a brute-force block or lock early. `by` says who: an
    /// administrator's account id, or the command line.
    pub async fn unlock(
        &self,
        account: &AccountId,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let Some(account) = self.store.account_by_id(account).await? else {
            return Err(Error::NotFound);
        };
        self.store
            .clear_login_failures(&login_key(Some(&account.email), ""))
            .await?;
        self.clear_mfa_failures(&account.id).await?;
        self.record(
            EventKind::AccountUnlocked,
            Outcome::Success,
            Some(&format!("by {by}")),
            Some(&account.id),
            meta,
        )
        .await;
        Ok(())
    }

    /// Locks an account's sign-in until `until` (a detection response);
    /// an administrator's unlock lifts it.
    pub async fn lock(
        &self,
        account: &AccountId,
        until: Timestamp,
        why: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let Some(account) = self.store.account_by_id(account).await? else {
            return Err(Error::NotFound);
        };
        self.store
            .lock_login(
                &login_key(Some(&account.email), ""),
                until,
                self.clock.now(),
            )
            .await?;
        self.record(
            EventKind::AccountLocked,
            Outcome::Success,
            Some(why),
            Some(&account.id),
            meta,
        )
        .await;
        Ok(())
    }

    /// Ends every session of an account; how many.
    pub async fn revoke_all_sessions(
        &self,
        account: &AccountId,
        why: &str,
        meta: &RequestMeta,
    ) -> Result<usize, Error> {
        // Sessions, sign-ins waiting for their second factor, pending
        // address changes and device tokens, in one transaction.
        let n = usize::try_from(self.store.end_sessions(account).await?).unwrap_or(usize::MAX);
        self.record(
            EventKind::SessionRevoked,
            Outcome::Success,
            Some(why),
            Some(account),
            meta,
        )
        .await;
        Ok(n)
    }

    /// Makes every session of an account prove its owner again (a step-up)
    /// before its next request: its step-up time is cleared, which the
    /// `Authed` extractor refuses for everything but the step-up and
    /// signing out.
    pub async fn clear_step_ups(
        &self,
        account: &AccountId,
        why: &str,
        meta: &RequestMeta,
    ) -> Result<usize, Error> {
        let sessions = self.store.sessions_of(account).await?;
        for s in &sessions {
            self.store.set_step_up(&s.id, STEP_UP_HELD).await?;
        }
        self.record(
            EventKind::StepUp,
            Outcome::Failure,
            Some(why),
            Some(account),
            meta,
        )
        .await;
        Ok(sessions.len())
    }

    /// Looks an account up by email, for the command line.
    pub async fn account_by_email(&self, email: &str) -> Result<Account, Error> {
        let email = Email::parse(email).map_err(|_| Error::InvalidEmail)?;
        self.store
            .account_by_email(&email)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Deletes brute-force counts that would start again anyway.
    pub async fn purge_quiet_login_failures(&self) -> Result<u64, Error> {
        let quiet_since = self.config.brute_force.quiet_since(self.clock.now());
        Ok(self.store.purge_login_failures(quiet_since).await?)
    }

    fn check_display_name(name: Option<&str>) -> Result<(), Error> {
        if let Some(n) = name {
            if n.is_empty()
                || n.chars().count() > MAX_DISPLAY_NAME
                || n.chars().any(char::is_control)
                || n.trim() != n
            {
                return Err(Error::InvalidDisplayName);
            }
        }
        Ok(())
    }

    /// How a password would fare as the new password of the account with
    /// this address and display name: the strength
    /// estimate (0 to 4) and every rule it fails. Nothing is stored or
    /// recorded; the password is only read.
    pub fn assess_password(
        &self,
        password: &SecretString,
        email: Option<&str>,
        display_name: Option<&str>,
    ) -> (u8, Result<(), crate::password_policy::Rejection>) {
        if oversized(password) {
            return (0, Err(self.too_long()));
        }
        let local = email
            .and_then(|e| e.split_once('@').map(|(l, _)| l))
            .unwrap_or("");
        self.config
            .policy
            .assess(&normalize(password), local, display_name)
    }

    /// A password past `MAX_PASSWORD_BYTES`, refused before any work.
    fn too_long(&self) -> crate::password_policy::Rejection {
        crate::password_policy::Rejection {
            violations: vec![rampart_proto::Violation {
                code: "too_long".to_owned(),
                message: format!("Use at most {} characters.", self.config.policy.max_chars),
                field: None,
            }],
            suggestions: vec!["Use a shorter passphrase.".to_owned()],
        }
    }

    /// Validates and hashes a new password for an account.
    pub(crate) async fn new_password_hash(
        &self,
        password: &SecretString,
        email: &Email,
        display_name: Option<&str>,
    ) -> Result<String, Error> {
        self.assess_password(password, Some(email.as_str()), display_name)
            .1
            .map_err(Error::WeakPassword)?;
        Ok(self.pool.hash(normalize(password)).await?)
    }

    /// Parses and checks everything about a new account and hashes its
    /// password; nothing is stored yet.
    async fn prepare_account(
        &self,
        email: &str,
        password: &SecretString,
        display_name: Option<String>,
        role: Role,
        verified: bool,
    ) -> Result<Account, Error> {
        let email = Email::parse(email).map_err(|_| Error::InvalidEmail)?;
        Self::check_display_name(display_name.as_deref())?;
        let phc = self
            .new_password_hash(password, &email, display_name.as_deref())
            .await?;
        Ok(Account {
            id: AccountId::generate(self.entropy.as_ref()),
            email,
            display_name,
            password_hash: SecretString::new(phc),
            role,
            created_at: self.clock.now(),
            has_mfa: false,
            lifecycle: crate::model::Lifecycle::new(verified.then(|| self.clock.now())),
        })
    }

    /// Spends a one-time token and stores the account, atomically.
    async fn insert_with_token(
        &self,
        account: &Account,
        kind: OneTimeKind,
        token: &SecretString,
    ) -> Result<bool, Error> {
        Ok(self
            .store
            .insert_account_with_token(account, kind, &TokenHash::of(token).0, self.clock.now())
            .await?)
    }

    /// An account the operator makes (an administrator from the command
    /// line, a drill's): its address counts as verified.
    pub(crate) async fn create_account(
        &self,
        email: &str,
        password: &SecretString,
        display_name: Option<String>,
        role: Role,
    ) -> Result<Account, Error> {
        let account = self
            .prepare_account(email, password, display_name, role, true)
            .await?;
        self.store.insert_account(&account).await?;
        Ok(account)
    }

    pub async fn register(
        &self,
        email: &str,
        password: &SecretString,
        display_name: Option<String>,
        invite: Option<&SecretString>,
        meta: &RequestMeta,
    ) -> Result<Account, Error> {
        let result = self
            .try_register(email, password, display_name, invite)
            .await;
        match &result {
            Ok(account) => {
                self.succeeded(EventKind::Registration, Some(&account.id), meta)
                    .await;
                if let Err(e) = self.send_verification(account, "registration", meta).await {
                    tracing::warn!(error = %e, "verification message not sent");
                }
            }
            Err(e) => {
                let reason = match e {
                    Error::RegistrationClosed => "registration_closed",
                    Error::InvalidInvite => "invalid_invite",
                    Error::EmailTaken => "email_taken",
                    Error::WeakPassword(_) => "weak_password",
                    Error::InvalidEmail => "invalid_email",
                    Error::InvalidDisplayName => "invalid_display_name",
                    Error::Busy => "busy",
                    _ => "error",
                };
                self.failed(EventKind::Registration, reason, None, meta)
                    .await
            }
        }
        result
    }

    async fn try_register(
        &self,
        email: &str,
        password: &SecretString,
        display_name: Option<String>,
        invite: Option<&SecretString>,
    ) -> Result<Account, Error> {
        // A deployment lockdown closes registration too: nobody new while
        // an incident is handled.
        if self.config.registration == RegistrationMode::Closed
            || self.deployment_lockdown().await?.is_some()
        {
            return Err(Error::RegistrationClosed);
        }
        if self.config.registration == RegistrationMode::Invite && invite.is_none() {
            return Err(Error::InvalidInvite);
        }
        // Everything is checked before an invite is spent, so a weak
        // password does not burn it.
        let account = self
            .prepare_account(email, password, display_name, Role::Member, false)
            .await?;

        if self.config.registration == RegistrationMode::Invite {
            // Spending the invite and creating the account are one
            // transaction: a taken email does not burn the invite.
            let token = invite.ok_or(Error::InvalidInvite)?;
            let created = self
                .insert_with_token(&account, OneTimeKind::Invite, token)
                .await?;
            return if created {
                Ok(account)
            } else {
                Err(Error::InvalidInvite)
            };
        }
        self.store.insert_account(&account).await?;
        Ok(account)
    }

    /// Checks a password; every failure is [`Error::InvalidCredentials`]
    /// after the same amount of work.
    pub async fn login(
        &self,
        email: &str,
        password: &SecretString,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, Error> {
        self.login_with_unlock(email, password, None, None, meta)
            .await
    }

    /// Signs in; with the unlock code emailed to the owner when the account
    /// was locked, the lock does not apply to this attempt (the password is
    /// still checked, and a code allows [`UNLOCK_USES`] tries). A code that
    /// is wrong, spent or for another account changes nothing: the attempt
    /// is counted and blocked like any other.
    ///
    /// With a device token this account's client was given at an earlier
    /// sign-in, the attempt is counted under the token instead of the
    /// address (ADR 0015): a stranger's guesses, counted under the
    /// address, neither delay nor lock the owner's known device, and
    /// guesses made with a stolen token are limited under the token.
    pub async fn login_with_unlock(
        &self,
        email: &str,
        password: &SecretString,
        unlock: Option<&SecretString>,
        device: Option<&SecretString>,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, Error> {
        if let Some(code) = unlock {
            if let Some(out) = self.login_unlocked(email, password, code, meta).await? {
                return out;
            }
        }
        if oversized(password) {
            // No account is looked up, so this reveals nothing about one.
            self.login_failed("oversized_password", None, email, meta)
                .await;
            return Err(Error::InvalidCredentials);
        }
        let normalized = normalize(password);
        let parsed = Email::parse(email).ok();
        let account = match &parsed {
            Some(e) => self.store.account_by_email(e).await?,
            None => None,
        };
        let device_key = match (device, &account) {
            (Some(token), Some(a)) => self.device_key(token, a),
            _ => None,
        };
        // Counted before the password is checked, for known and unknown
        // addresses alike: the same work on every path, and no burst of
        // concurrent guesses gets more checks than the policy allows.
        let key = device_key
            .clone()
            .unwrap_or_else(|| login_key(parsed.as_ref(), email));
        let policy = self.config.brute_force;
        let now = self.clock.now();
        let attempt = self
            .store
            .reserve_login_attempt(&key, now, policy.quiet_since(now), &move |n| {
                policy.block_after(n)
            })
            .await?;
        let failures = match attempt {
            LoginAttempt::Blocked => {
                // The password is not checked, but the answer costs and
                // reads exactly like a wrong password.
                let _ = self
                    .pool
                    .verify(normalized, self.dummy_hash.clone())
                    .await?;
                self.login_failed("blocked", account.as_ref().map(|a| &a.id), email, meta)
                    .await;
                return Err(Error::InvalidCredentials);
            }
            LoginAttempt::Allowed { failures } => failures,
        };
        // A password the pool could not check (saturated) is not a guess.
        let uncount = || self.settle(&key, failures, now, Settle::Uncount);
        let Some(account) = account else {
            // Same cost as a real verification; the result is ignored.
            if let Err(e) = self.pool.verify(normalized, self.dummy_hash.clone()).await {
                uncount().await;
                return Err(e.into());
            }
            self.login_failed("unknown_account", None, email, meta)
                .await;
            return Err(Error::InvalidCredentials);
        };
        let verdict = match self
            .pool
            .verify(
                normalized.clone(),
                account.password_hash.expose_secret().to_owned(),
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                uncount().await;
                return Err(e.into());
            }
        };
        match verdict {
            Verification::Mismatch => {
                self.login_failed("wrong_password", Some(&account.id), email, meta)
                    .await;
                if failures == policy.lock_after && device_key.is_some() {
                    // A device token used to guess: that device is locked,
                    // nobody else (no unlock code: the owner's other
                    // devices, and the address, are not locked).
                    self.record(
                        EventKind::AccountLocked,
                        Outcome::Success,
                        Some("failed_logins_device"),
                        Some(&account.id),
                        meta,
                    )
                    .await;
                } else if failures == policy.lock_after {
                    self.record(
                        EventKind::AccountLocked,
                        Outcome::Success,
                        Some("failed_logins"),
                        Some(&account.id),
                        meta,
                    )
                    .await;
                    self.send_unlock_code(&account, failures).await;
                }
                Err(Error::InvalidCredentials)
            }
            Verification::Match { needs_rehash } => {
                // An incident that keeps the account out answers exactly
                // like a wrong password, and the attempt stays counted:
                // a lockdown confirms no password.
                self.refuse_suspended(&account, meta).await?;
                // A disabled or (when required) unverified account is told
                // why, and the attempt stays counted: the answer cannot be
                // used to try passwords beyond the limits.
                self.refuse_by_lifecycle(&account, meta).await?;
                // The attempt was counted in advance; a success forgets it
                // and the failures before it, unless guesses were counted
                // meanwhile: those stay.
                self.settle(&key, failures, now, Settle::Forget).await;
                let mut current_hash = account.password_hash.expose_secret().to_owned();
                if needs_rehash {
                    // Upgrade to the current parameters, unless the password
                    // changed meanwhile; a failure here must not fail the login.
                    match self.pool.hash(normalized).await {
                        Ok(phc) => match self
                            .store
                            .replace_password_hash(&account.id, &current_hash, &phc)
                            .await
                        {
                            Ok(true) => current_hash = phc,
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "password re-hash not saved"),
                        },
                        Err(e) => tracing::warn!(error = %e, "password re-hash skipped"),
                    }
                }
                if account.has_mfa {
                    // Right password; the session waits for a second factor.
                    let pending = self.begin_mfa(&account, &current_hash).await?;
                    return Ok(LoginOutcome::MfaRequired(pending));
                }
                let now = self.clock.now();
                let Some(new) = self
                    .start_session_at(&account, &current_hash, now, meta)
                    .await?
                else {
                    // The password changed between verification and now.
                    self.login_failed("password_changed", Some(&account.id), email, meta)
                        .await;
                    return Err(Error::InvalidCredentials);
                };
                self.login_succeeded(&account, None, meta).await;
                Ok(LoginOutcome::Session(new))
            }
        }
    }

    /// Emails the owner of a just-locked account a code that lets them
    /// sign in despite the lock (the attacker, without the mailbox, stays
    /// locked out).
    async fn send_unlock_code(&self, account: &Account, failures: u32) {
        let code = rampart_crypto::random_token(self.entropy.as_ref(), 32);
        let expires = self.clock.now().plus(UNLOCK_TTL);
        if let Err(e) = self
            .store
            .insert_unlock_token(&TokenHash::of(&code).0, &account.id, expires)
            .await
        {
            tracing::warn!(error = %e, "unlock code not stored");
            return;
        }
        self.send_notice(
            account,
            "Your account was locked",
            format!(
                "Sign-ins to your account were stopped after {failures} wrong passwords in a row.\n\n\
                 If that was you, sign in with your password and this unlock code (valid for one hour, \
                 {UNLOCK_USES} tries):\n\n{}\n\n\
                 Nobody without this code can sign in until the lock ends. If the wrong \
                 passwords were not yours, someone is guessing: once you are in, choose a new \
                 password, and tell your administrator.\n",
                code.expose_secret()
            ),
        );
    }

    /// A sign-in with an unlock code. `None`: the code does not belong to
    /// this account (or is spent), and the ordinary path decides.
    async fn login_unlocked(
        &self,
        email: &str,
        password: &SecretString,
        code: &SecretString,
        meta: &RequestMeta,
    ) -> Result<Option<Result<LoginOutcome, Error>>, Error> {
        if oversized(password) || code.expose_secret().len() > 128 {
            return Ok(None);
        }
        // The code first, whatever the email: the same work for an address
        // that has an account and one that has none.
        let now = self.clock.now();
        let Some(owner) = self
            .store
            .use_unlock_token(&TokenHash::of(code).0, now, UNLOCK_USES)
            .await?
        else {
            return Ok(None);
        };
        let Ok(parsed) = Email::parse(email) else {
            return Ok(None);
        };
        let Some(account) = self.store.account_by_email(&parsed).await? else {
            return Ok(None);
        };
        if owner != account.id {
            return Ok(None);
        }
        let normalized = normalize(password);
        let hash = account.password_hash.expose_secret().to_owned();
        match self.pool.verify(normalized, hash.clone()).await? {
            Verification::Mismatch => {
                self.login_failed(
                    "wrong_password_with_unlock_code",
                    Some(&account.id),
                    email,
                    meta,
                )
                .await;
                Ok(Some(Err(Error::InvalidCredentials)))
            }
            Verification::Match { .. } => {
                if let Err(e) = self.refuse_suspended(&account, meta).await {
                    return Ok(Some(Err(e)));
                }
                if let Err(e) = self.refuse_by_lifecycle(&account, meta).await {
                    return Ok(Some(Err(e)));
                }
                let key = login_key(Some(&parsed), email);
                self.store.clear_login_failures(&key).await?;
                self.store.delete_unlock_tokens(&account.id).await?;
                self.record(
                    EventKind::AccountUnlocked,
                    Outcome::Success,
                    Some("unlock_code"),
                    Some(&account.id),
                    meta,
                )
                .await;
                if account.has_mfa {
                    let pending = self.begin_mfa(&account, &hash).await?;
                    return Ok(Some(Ok(LoginOutcome::MfaRequired(pending))));
                }
                let Some(new) = self.start_session_at(&account, &hash, now, meta).await? else {
                    return Ok(Some(Err(Error::InvalidCredentials)));
                };
                self.login_succeeded(&account, None, meta).await;
                Ok(Some(Ok(LoginOutcome::Session(new))))
            }
        }
    }

    /// Creates a session, provided the account's password hash is still
    /// `verified_hash`. Signing in is a fresh proof: `step_up_at` is now.
    pub(crate) async fn start_session_at(
        &self,
        account: &Account,
        verified_hash: &str,
        now: Timestamp,
        meta: &RequestMeta,
    ) -> Result<Option<NewSession>, Error> {
        self.refuse_suspended(account, meta).await?;
        let token = rampart_crypto::random_token(self.entropy.as_ref(), 32);
        let session = Session {
            id: SessionId::generate(self.entropy.as_ref()),
            account_id: account.id.clone(),
            token_hash: TokenHash::of(&token).0,
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(self.config.absolute_lifetime),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.as_ref().map(|u| truncate(u, 256)),
            last_ip: None,
            last_user_agent: None,
            step_up_at: now,
        };
        if !self.store.insert_session(&session, verified_hash).await? {
            return Ok(None);
        }
        let device = self.new_device_token(account);
        Ok(Some(NewSession {
            token,
            session,
            device,
        }))
    }

    /// Resolves a bearer token to its live session and account.
    pub async fn authenticate(&self, token: &SecretString) -> Result<(Session, Account), Error> {
        let hash = TokenHash::of(token);
        let Some((session, account)) = self.store.session_by_token_hash(&hash.0).await? else {
            return Err(Error::Unauthenticated);
        };
        let now = self.clock.now();
        if !session.is_live(self.clock.as_ref(), self.config.idle_timeout) {
            self.store.delete_session(&account.id, &session.id).await?;
            return Err(Error::SessionExpired);
        }
        if now.millis() - session.last_seen_at.millis() >= TOUCH_GRANULARITY.as_millis() as i64 {
            self.store.touch_session(&session.id, now).await?;
        }
        Ok((session, account))
    }

    /// Whether a request from `ip` with `user_agent` is somewhere else
    /// than the session was last used from: another network (IPv4 /24,
    /// IPv6 /64; a switch between IPv4 and IPv6 is the same dual-stack
    /// client) or another device (user agent, version numbers aside, so a
    /// browser's update is not a move). Allocates nothing on the common
    /// path, the same place.
    pub fn session_moved(
        &self,
        session: &Session,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> bool {
        if session.step_up_at == STEP_UP_HELD {
            return false;
        }
        let address = match (session.last_ip.as_deref(), ip) {
            (Some(was), Some(is)) => was != is && other_network(was, is),
            _ => false,
        };
        let device = match (session.last_user_agent.as_deref(), user_agent) {
            (Some(was), Some(is)) => !same_device(was, is),
            (None, Some(_)) => session.last_ip.is_some(),
            _ => false,
        };
        address || device
    }

    /// Follows a session that [`AuthService::session_moved`]: moves its
    /// last place to the request's (of racing requests, one) and records
    /// `session_moved` with the place it left and how long it had been
    /// quiet. Detection decides whether that looks like a stolen token
    /// (a second place within minutes) or a person on the move. A failure
    /// here is logged; the request goes on.
    pub async fn follow_session(&self, session: &Session, meta: &RequestMeta) {
        let now = self.clock.now();
        let agent = meta.user_agent.as_deref().map(|u| truncate(u, 256));
        let address_moved = match (session.last_ip.as_deref(), meta.ip.as_deref()) {
            (Some(was), Some(is)) => other_network(was, is),
            _ => false,
        };
        let to_ip = if address_moved {
            meta.ip.as_deref()
        } else {
            session.last_ip.as_deref()
        };
        let to_agent = agent.as_deref().or(session.last_user_agent.as_deref());
        let agent_moved = to_agent != session.last_user_agent.as_deref()
            && !matches!(
                (session.last_user_agent.as_deref(), to_agent),
                (Some(a), Some(b)) if same_device(a, b)
            );
        let moved = self
            .store
            .move_session(
                &session.id,
                (
                    session.last_ip.as_deref(),
                    session.last_user_agent.as_deref(),
                ),
                (to_ip, to_agent),
            )
            .await;
        match moved {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not follow a session to its new place");
                return;
            }
        }
        let what = match (address_moved, agent_moved) {
            (true, true) => "address_and_agent",
            (true, false) => "address",
            _ => "agent",
        };
        let quiet_secs = (now.millis() - session.last_seen_at.millis()).max(0) / 1000;
        let mut event = EventKind::SessionMoved
            .event(now, Outcome::Success)
            .reason(Some(what))
            .user(Some(session.account_id.as_str()))
            .meta(meta)
            .field("session.id", session.id.as_str())
            .field("session.quiet_secs", quiet_secs);
        if let Some(ip) = &session.last_ip {
            event = event.field("session.previous_ip", ip.as_str());
        }
        if let Some(net) = session.last_ip.as_deref().and_then(network_of) {
            event = event.field("session.previous_net", net.to_string());
        }
        if let Some(agent) = &session.last_user_agent {
            event = event.field("session.previous_user_agent", agent.as_str());
        }
        self.record_security(event).await;
    }

    /// Anchors a session where its owner just proved themselves (a
    /// step-up): its proven place and its last place are there now, with
    /// no event beyond the step-up's own. A failure is logged.
    pub(crate) async fn anchor_session(&self, session: &Session, meta: &RequestMeta) {
        let agent = meta.user_agent.as_deref().map(|u| truncate(u, 256));
        if let Err(e) = self
            .store
            .anchor_session(&session.id, meta.ip.as_deref(), agent.as_deref())
            .await
        {
            tracing::warn!(error = %e, "could not anchor a session where it was proven");
        }
    }

    pub async fn logout(&self, session: &Session, meta: &RequestMeta) -> Result<(), Error> {
        self.store
            .delete_session(&session.account_id, &session.id)
            .await?;
        self.succeeded(EventKind::Logout, Some(&session.account_id), meta)
            .await;
        Ok(())
    }

    /// Changes the password and revokes every other session.
    pub async fn change_password(
        &self,
        session: &Session,
        account: &Account,
        current: &SecretString,
        new: &SecretString,
        meta: &RequestMeta,
    ) -> Result<u64, Error> {
        if oversized(current) {
            return Err(Error::InvalidCredentials);
        }
        let verdict = self
            .pool
            .verify(
                normalize(current),
                account.password_hash.expose_secret().to_owned(),
            )
            .await?;
        if verdict == Verification::Mismatch {
            self.failed(
                EventKind::PasswordChange,
                "wrong_password",
                Some(&account.id),
                meta,
            )
            .await;
            return Err(Error::InvalidCredentials);
        }
        let phc = match self
            .new_password_hash(new, &account.email, account.display_name.as_deref())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.failed(
                    EventKind::PasswordChange,
                    "weak_password",
                    Some(&account.id),
                    meta,
                )
                .await;
                return Err(e);
            }
        };
        let Some(revoked) = self
            .store
            .change_password(
                &account.id,
                account.password_hash.expose_secret(),
                &phc,
                &session.id,
            )
            .await?
        else {
            // The session was revoked or the password changed while this
            // request waited: it changes nothing.
            self.failed(
                EventKind::PasswordChange,
                "stale_session",
                Some(&account.id),
                meta,
            )
            .await;
            return Err(Error::Unauthenticated);
        };
        self.succeeded(EventKind::PasswordChange, Some(&account.id), meta)
            .await;
        if revoked > 0 {
            self.record(
                EventKind::SessionRevoked,
                Outcome::Success,
                Some("password_change"),
                Some(&account.id),
                meta,
            )
            .await;
        }
        Ok(revoked)
    }

    pub async fn sessions(&self, account: &AccountId) -> Result<Vec<Session>, Error> {
        let mut s = self.store.sessions_of(account).await?;
        s.retain(|s| s.is_live(self.clock.as_ref(), self.config.idle_timeout));
        Ok(s)
    }

    /// Revokes one of the caller's own sessions; someone else's looks
    /// exactly like one that does not exist.
    pub async fn revoke_session(
        &self,
        account: &AccountId,
        id: &SessionId,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if !self.store.delete_session(account, id).await? {
            return Err(Error::NotFound);
        }
        self.record(
            EventKind::SessionRevoked,
            Outcome::Success,
            Some("user_request"),
            Some(account),
            meta,
        )
        .await;
        Ok(())
    }

    /// When no administrator exists, issues a fresh setup token (replacing
    /// any earlier one) and returns it; otherwise `None`.
    pub async fn issue_setup_token(&self) -> Result<Option<(SecretString, Timestamp)>, Error> {
        if self.store.admin_exists().await? {
            return Ok(None);
        }
        let token = rampart_crypto::random_token(self.entropy.as_ref(), 32);
        let expires = self.clock.now().plus(SETUP_TOKEN_TTL);
        self.store
            .replace_one_time_tokens(OneTimeKind::Setup, &TokenHash::of(&token).0, expires)
            .await?;
        Ok(Some((token, expires)))
    }

    /// Creates the first administrator with the one-time setup token.
    pub async fn setup(
        &self,
        token: &SecretString,
        email: &str,
        password: &SecretString,
        display_name: Option<String>,
        meta: &RequestMeta,
    ) -> Result<Account, Error> {
        if self.store.admin_exists().await? {
            self.failed(EventKind::SetupUsed, "setup_complete", None, meta)
                .await;
            return Err(Error::SetupComplete);
        }
        // Everything is checked and hashed before the token is spent, and
        // spending it and creating the account are one transaction: no
        // failure (weak password, taken email, busy pool, timeout) burns it.
        // The first administrator: the operator, holding the setup token.
        let account = self
            .prepare_account(email, password, display_name, Role::Admin, true)
            .await?;
        let created = self
            .insert_with_token(&account, OneTimeKind::Setup, token)
            .await?;
        if !created {
            self.failed(EventKind::SetupUsed, "invalid_token", None, meta)
                .await;
            return Err(Error::InvalidSetupToken);
        }
        self.succeeded(EventKind::SetupUsed, Some(&account.id), meta)
            .await;
        self.record(
            EventKind::AdminCreated,
            Outcome::Success,
            Some("setup"),
            Some(&account.id),
            meta,
        )
        .await;
        Ok(account)
    }

    /// Creates an administrator from the command line.
    pub async fn create_admin(
        &self,
        email: &str,
        password: &SecretString,
        display_name: Option<String>,
    ) -> Result<Account, Error> {
        let meta = RequestMeta {
            user_agent: Some("rampart-cli".to_owned()),
            ..RequestMeta::default()
        };
        let account = self
            .create_account(email, password, display_name, Role::Admin)
            .await?;
        self.record(
            EventKind::AdminCreated,
            Outcome::Success,
            Some("cli"),
            Some(&account.id),
            &meta,
        )
        .await;
        Ok(account)
    }

    /// Issues a single-use registration invite (for `invite` mode).
    pub async fn create_invite(
        &self,
        admin: &Account,
        meta: &RequestMeta,
    ) -> Result<(SecretString, Timestamp), Error> {
        let token = rampart_crypto::random_token(self.entropy.as_ref(), 32);
        let expires = self.clock.now().plus(INVITE_TTL);
        self.store
            .insert_one_time_token(OneTimeKind::Invite, &TokenHash::of(&token).0, expires)
            .await?;
        self.succeeded(EventKind::InviteCreated, Some(&admin.id), meta)
            .await;
        Ok((token, expires))
    }

    /// Events of the trail, newest first.
    pub async fn events(
        &self,
        query: &crate::audit::EventQuery,
    ) -> Result<Vec<crate::audit::Chained>, Error> {
        Ok(self.store.search_events(query).await?)
    }

    /// How many events match, per bucket of `bucket_ms`.
    pub async fn event_counts(
        &self,
        query: &crate::audit::EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<(Timestamp, u64)>, Error> {
        Ok(self.store.count_events(query, bucket_ms).await?)
    }

    /// Deletes expired and idle sessions; returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        Ok(self
            .store
            .delete_expired_sessions(now, now.minus(self.config.idle_timeout))
            .await?)
    }
}

/// Whether `is` is on another network than `was`, of the same family (a
/// dual-stack client switching between IPv4 and IPv6 has not moved).
fn other_network(was: &str, is: &str) -> bool {
    match (network_of(was), network_of(is)) {
        (Some(a), Some(b)) => a.addr().is_ipv4() == b.addr().is_ipv4() && a != b,
        _ => false,
    }
}

/// Whether two user agents name the same device: equal with every run of
/// digits taken as one (a browser's update changes only numbers).
fn same_device(a: &str, b: &str) -> bool {
    fn folded(s: &str) -> impl Iterator<Item = char> + '_ {
        let mut last_digit = false;
        s.chars().filter_map(move |c| {
            let digit = c.is_ascii_digit();
            let keep = !(digit && last_digit);
            last_digit = digit;
            keep.then_some(if digit { '#' } else { c })
        })
    }
    folded(a).eq(folded(b))
}

/// The network an address belongs to, for telling a session's places
/// apart: its IPv4 /24 or IPv6 /64 (an IPv4-mapped address as IPv4).
fn network_of(ip: &str) -> Option<ipnet::IpNet> {
    let ip = match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    ipnet::IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod brute_force_tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_then_lock() {
        let p = BruteForcePolicy::default();
        let s = Duration::from_secs;
        assert_eq!(p.block_after(9), None);
        assert_eq!(p.block_after(10), Some(s(1)));
        assert_eq!(p.block_after(11), Some(s(2)));
        assert_eq!(p.block_after(19), Some(s(512)));
        assert_eq!(p.block_after(20), Some(s(3600)));
        let capped = BruteForcePolicy {
            lock_after: 100,
            max_delay: s(60),
            window: s(60),
            ..p
        };
        assert_eq!(capped.block_after(40), Some(s(60)));
        assert_eq!(capped.block_after(99), Some(s(60)));
    }

    #[test]
    fn no_setting_allows_more_than_100_failures_an_hour() {
        let p = BruteForcePolicy::default();
        assert!(p.validate().is_ok());
        // Three counts an hour (30-minute window), 20 each, one re-lock,
        // and the owner's five tries with each of two unlock codes.
        assert_eq!(p.worst_case_failures_per_hour(), 71);
        let s = Duration::from_secs;
        for (lock_after, window, lock_for, ok) in [
            (29, 1800, 3600, true),  // 3 * 29 + 1 + 10 = 98
            (30, 1800, 3600, false), // 101
            (44, 3600, 3600, true),  // 2 * 44 + 1 + 10 = 99
            (20, 60, 3600, false),   // a one-minute window: 61 counts an hour
            (20, 1800, 10, false),   // a re-lock every 10 s
        ] {
            let p = BruteForcePolicy {
                lock_after,
                window: s(window),
                max_delay: s(window.min(900)),
                lock_for: s(lock_for),
                ..BruteForcePolicy::default()
            };
            assert_eq!(
                p.validate().is_ok(),
                ok,
                "{lock_after} / {window} s / {lock_for} s"
            );
        }
        let zero_window = BruteForcePolicy {
            window: s(0),
            max_delay: s(0),
            base_delay: s(0),
            ..p
        };
        assert!(zero_window.validate().is_err());
    }
}

#[cfg(test)]
mod place_tests {
    use super::{other_network, same_device};

    #[test]
    fn a_browser_update_is_the_same_device() {
        let ff130 = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
        let ff131 = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
        assert!(same_device(ff130, ff131));
        assert!(!same_device(ff130, "curl/8.5.0"));
        assert!(!same_device(
            ff130,
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0"
        ));
        // A run of digits is one, wherever it is.
        assert!(same_device("a1b22c", "a333b4c"));
        assert!(!same_device("a1b", "ab"));
    }

    #[test]
    fn networks_are_slash_24_and_slash_64_of_one_family() {
        assert!(!other_network("198.51.100.7", "198.51.100.200"));
        assert!(other_network("198.51.100.7", "198.51.101.7"));
        assert!(!other_network("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"));
        assert!(other_network("2001:db8:1:2::1", "2001:db8:1:3::1"));
        // IPv4-mapped is IPv4; a switch of family is one dual-stack client.
        assert!(!other_network("::ffff:198.51.100.7", "198.51.100.8"));
        assert!(!other_network("198.51.100.7", "2001:db8::1"));
        // Not an address: no move can be told.
        assert!(!other_network("unknown", "198.51.100.7"));
    }
}
