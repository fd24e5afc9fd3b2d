//! The account lifecycle (ADR 0015): verified addresses, forgotten
//! passwords, address changes and their undo, deletion with a grace
//! period, the owner's export, administrators' management of accounts,
//! and device tokens that keep a stranger's guesses from locking the
//! owner out.
//!
//! Invariants kept here:
//! - every link and code mailed is single use, short-lived, stored only as
//!   a SHA-256 (links) or a keyed MAC (codes), and checked in constant
//!   time; codes are tried at most [`CODE_TRIES_PER_HOUR`] times an hour
//!   per address, counted for known and unknown addresses alike;
//! - requests that name an address (`password-reset`, `verify-email/resend`)
//!   are answered before anything about the address is looked up: the
//!   work runs afterwards, so known and unknown addresses get the same
//!   answer after the same time;
//! - a reset never stands in for the second factor: it creates no session,
//!   and an administrator with a factor proves it to finish one;
//! - the last administrator in force can be neither disabled nor deleted,
//!   checked in the transaction that would do it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rampart_crypto::{sha256_hex, SecretString, TokenHash};
use serde::{Deserialize, Serialize};

use crate::audit::{Category, Event, FAILURE, SUCCESS};
use crate::mfa::Proof;
use crate::model::{Account, Role};
use crate::{AccountId, AuthService, Email, Error, RequestMeta, StoreError, Timestamp};

/// What the lifecycle records in the trail (category `iam`).
pub mod actions {
    /// A verification message went out (reason: `registration`, `resend`).
    pub const VERIFICATION_SENT: &str = "account.verification_sent";
    /// The owner proved the address (reason: `link` or `code`); failure:
    /// a wrong, spent or expired link or code.
    pub const EMAIL_VERIFIED: &str = "account.email_verified";
    /// Someone asked for a password reset (reason `unknown_account` when
    /// no account has the address, `limited` when too many were sent).
    pub const RESET_REQUESTED: &str = "account.password_reset_requested";
    /// A password was reset with a mailed code (reason: why the code was
    /// sent: `forgotten` or `administrator`); failure: a wrong code.
    pub const PASSWORD_RESET: &str = "account.password_reset";
    /// An administrator required a password reset.
    pub const RESET_REQUIRED: &str = "account.password_reset_required";
    pub const EMAIL_CHANGE_REQUESTED: &str = "account.email_change_requested";
    pub const EMAIL_CHANGED: &str = "account.email_changed";
    pub const EMAIL_CHANGE_UNDONE: &str = "account.email_change_undone";
    pub const DELETION_SCHEDULED: &str = "account.deletion_scheduled";
    /// The owner signed in during the grace period.
    pub const DELETION_CANCELLED: &str = "account.deletion_cancelled";
    /// The account is gone: the trail keeps its id, not its data.
    pub const DELETED: &str = "account.deleted";
    pub const EXPORTED: &str = "account.exported";
    pub const DISABLED: &str = "account.disabled";
    pub const ENABLED: &str = "account.enabled";
    pub const ALL: [&str; 14] = [
        VERIFICATION_SENT,
        EMAIL_VERIFIED,
        RESET_REQUESTED,
        PASSWORD_RESET,
        RESET_REQUIRED,
        EMAIL_CHANGE_REQUESTED,
        EMAIL_CHANGED,
        EMAIL_CHANGE_UNDONE,
        DELETION_SCHEDULED,
        DELETION_CANCELLED,
        DELETED,
        EXPORTED,
        DISABLED,
        ENABLED,
    ];
}

/// Verification codes tried per address an hour (any code, known address
/// or not).
pub const CODE_TRIES_PER_HOUR: u32 = 10;
/// How long a device token counts apart.
pub const DEVICE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a verification link or code lasts.
pub const VERIFY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the link confirming a new address lasts.
pub const CHANGE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the old address may undo a change (what GitHub allows).
pub const UNDO_TTL: Duration = Duration::from_secs(72 * 3600);
/// How long the code of a reset an administrator required lasts.
pub const REQUIRED_RESET_TTL: Duration = Duration::from_secs(72 * 3600);
/// Messages to one account per hour (verification, reset), and requests
/// per client address per hour that may send one.
pub const SENDS_PER_ACCOUNT: u32 = 3;
pub const SENDS_PER_ADDRESS: u32 = 20;
const SEND_WINDOW: Duration = Duration::from_secs(3600);
/// At most this many accounts a page of an administrator's search.
pub const MAX_PAGE: u32 = 200;

/// `[accounts] email_verification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMode {
    /// An unverified account cannot sign in.
    Required,
    /// It can sign in, but the data routes refuse it.
    BeforeData,
    /// Nothing waits for it; `GET /me` says whether it is verified.
    Optional,
}

impl VerificationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationMode::Required => "required",
            VerificationMode::BeforeData => "before_data",
            VerificationMode::Optional => "optional",
        }
    }
}

/// The lifecycle's settings.
#[derive(Debug, Clone)]
pub struct AccountsPolicy {
    pub email_verification: VerificationMode,
    /// Between `DELETE /me` and the deletion; zero deletes at once.
    pub deletion_grace: Duration,
    /// How long a forgotten-password link lasts.
    pub reset_ttl: Duration,
    /// Where the hosted pages of mailed links are (`https://host:port`).
    pub link_origin: String,
}

impl Default for AccountsPolicy {
    fn default() -> Self {
        Self {
            email_verification: VerificationMode::Optional,
            deletion_grace: Duration::from_secs(7 * 24 * 3600),
            reset_ttl: Duration::from_secs(30 * 60),
            link_origin: "https://localhost:8443".to_owned(),
        }
    }
}

/// What a mailed link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    Verify,
    Change,
    Undo,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Verify => "verify",
            TokenPurpose::Change => "change",
            TokenPurpose::Undo => "undo",
        }
    }
}

/// A mailed link (and for verification, a short code) as stored: hashes
/// only. `email` is the address it concerns: the one to verify, the new
/// one to confirm, or the old one to restore.
#[derive(Debug, Clone)]
pub struct EmailToken {
    pub token_hash: String,
    pub purpose: TokenPurpose,
    pub account: AccountId,
    pub email: String,
    pub code_mac: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What a guarded account write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    Done,
    NotFound,
    /// Refused: it would leave no administrator in force.
    LastAdmin,
}

/// How an administrator's search is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSort {
    Email,
    CreatedAt,
    LastSignIn,
}

/// An account's state, as searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Neither disabled nor being deleted.
    Active,
    Disabled,
    Unverified,
    /// A deletion is scheduled.
    Deleting,
}

/// An administrator's search of accounts.
#[derive(Debug, Clone)]
pub struct AccountQuery {
    /// Lower-case; the start of the address.
    pub email_prefix: Option<String>,
    pub role: Option<Role>,
    pub status: Option<AccountStatus>,
    pub has_mfa: Option<bool>,
    pub signed_in_before: Option<Timestamp>,
    pub signed_in_after: Option<Timestamp>,
    pub sort: AccountSort,
    pub descending: bool,
    /// The sort key and id of the last account of the previous page.
    pub after: Option<(SortKey, AccountId)>,
    pub limit: u32,
}

/// The sort key of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Text(String),
    Time(i64),
}

impl Default for AccountQuery {
    /// Every account, by address, 50 a page.
    fn default() -> Self {
        Self {
            email_prefix: None,
            role: None,
            status: None,
            has_mfa: None,
            signed_in_before: None,
            signed_in_after: None,
            sort: AccountSort::Email,
            descending: false,
            after: None,
            limit: 50,
        }
    }
}

impl AccountQuery {
    /// The key `a` sorts by.
    pub fn key_of(&self, a: &Account) -> SortKey {
        match self.sort {
            AccountSort::Email => SortKey::Text(a.email.as_str().to_owned()),
            AccountSort::CreatedAt => SortKey::Time(a.created_at.millis()),
            AccountSort::LastSignIn => {
                SortKey::Time(a.lifecycle.last_sign_in_at.map_or(0, |t| t.millis()))
            }
        }
    }

    /// The opaque cursor after `a`.
    pub fn cursor_after(&self, a: &Account) -> String {
        let key = match self.key_of(a) {
            SortKey::Text(t) => t,
            SortKey::Time(n) => n.to_string(),
        };
        hex::encode(format!("{key}\n{}", a.id.as_str()))
    }

    /// Reads a cursor made by [`Self::cursor_after`] for the same sort.
    pub fn parse_cursor(&self, cursor: &str) -> Option<(SortKey, AccountId)> {
        if cursor.len() > 1024 {
            return None;
        }
        let text = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
        let (key, id) = text.rsplit_once('\n')?;
        if id.is_empty() || id.len() > 64 || text.chars().filter(|c| c.is_control()).count() != 1 {
            return None;
        }
        let key = match self.sort {
            AccountSort::Email => SortKey::Text(key.to_owned()),
            _ => SortKey::Time(key.parse().ok()?),
        };
        Some((key, AccountId(id.to_owned())))
    }
}

/// What the lifecycle needs from the database.
#[async_trait]
pub trait LifecycleStore {
    /// Stores a link, replacing the account's earlier ones of its purpose.
    async fn put_email_token(&self, token: &EmailToken) -> Result<(), StoreError>;
    /// The unexpired link of `purpose` with this hash, without spending it.
    async fn email_token(
        &self,
        purpose: TokenPurpose,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<EmailToken>, StoreError>;
    /// The account's newest unexpired link of `purpose` that has a code.
    async fn email_code(
        &self,
        purpose: TokenPurpose,
        account: &AccountId,
        now: Timestamp,
    ) -> Result<Option<EmailToken>, StoreError>;
    /// Whether an unexpired undo link of another account than `except`
    /// holds the address (nobody else may take it meanwhile).
    async fn email_reserved(
        &self,
        email: &str,
        except: &AccountId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Spends the verification link and marks `email` verified, if it is
    /// still the account's address; false when either was not so.
    async fn finish_verification(
        &self,
        token_hash: &str,
        account: &AccountId,
        email: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Spends the change link, moves the account from `from` to `to`
    /// (verified), and stores the undo link, in one transaction. False
    /// when the link was spent or the address is no longer `from`;
    /// `Conflict` when `to` is taken.
    async fn finish_email_change(
        &self,
        token_hash: &str,
        from: &str,
        to: &str,
        at: Timestamp,
        undo: &EmailToken,
    ) -> Result<bool, StoreError>;
    /// Spends the undo link and, in one transaction, restores its address,
    /// sets the password hash to `unusable_hash`, voids the account's change
    /// links and the undo links of changes asked for since this one (the
    /// links' `created_at`: older undo links stay, so the earliest wins),
    /// and ends every sign-in. The spent link, or `None` when it was not
    /// there to spend.
    async fn finish_email_undo(
        &self,
        token_hash: &str,
        unusable_hash: &str,
        at: Timestamp,
    ) -> Result<Option<EmailToken>, StoreError>;
    /// Stores a reset code for the account, replacing its earlier ones sent
    /// for the same `reason` (why it was sent).
    async fn insert_password_reset(
        &self,
        account: &AccountId,
        token_hash: &str,
        reason: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Schedules the account's deletion at `at` and ends its sign-ins, or
    /// (`None`) cancels a scheduled one.
    async fn set_deletion(
        &self,
        account: &AccountId,
        at: Option<Timestamp>,
    ) -> Result<Guarded, StoreError>;
    /// Accounts whose grace period ended before `now`.
    async fn deletions_due(&self, now: Timestamp) -> Result<Vec<AccountId>, StoreError>;
    /// Deletes the account with its sessions, factors and codes, the
    /// records it owns in `owner_deletes` collections (its other records
    /// lose their owner), and revokes the API keys it made. With
    /// `due_only`, only if its scheduled deletion is due at `now`
    /// (`NotFound` otherwise).
    async fn delete_account(
        &self,
        account: &AccountId,
        owner_deletes: &[String],
        now: Timestamp,
        due_only: bool,
    ) -> Result<Guarded, StoreError>;
    /// Disables the account (ending its sessions and pending sign-ins), or
    /// (`None`) enables it.
    async fn set_disabled(
        &self,
        account: &AccountId,
        at: Option<Timestamp>,
    ) -> Result<Guarded, StoreError>;
    async fn note_sign_in(&self, account: &AccountId, at: Timestamp) -> Result<(), StoreError>;
    /// Ends every session and pending sign-in of the account, its pending
    /// address changes and its device tokens, in one transaction (reset
    /// codes stay); how many sessions went.
    async fn end_sessions(&self, account: &AccountId) -> Result<u64, StoreError>;
    /// Deletes links and reset codes that expired before `now`.
    async fn purge_expired_links(&self, now: Timestamp) -> Result<u64, StoreError>;
    async fn search_accounts(&self, q: &AccountQuery) -> Result<Vec<Account>, StoreError>;
}

/// Everything Rampart holds about one account, for its owner.
#[derive(Debug, Serialize)]
pub struct AccountExport {
    pub exported_at: String,
    pub account: serde_json::Value,
    pub factors: Vec<serde_json::Value>,
    pub recovery_codes_left: u32,
    pub roles: Vec<String>,
    pub sessions: Vec<serde_json::Value>,
    pub security_events: Vec<serde_json::Value>,
    /// Collection name to the account's records in it.
    pub records: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
}

/// An account as an administrator sees it.
#[derive(Debug)]
pub struct AccountDetail {
    pub account: Account,
    pub factors: Vec<crate::model::Factor>,
    pub sessions: Vec<crate::model::Session>,
    pub roles: Vec<String>,
    /// The newest sign-ins and failed ones, from the trail.
    pub sign_ins: Vec<crate::audit::Chained>,
}

/// The brute-force key of a device token (see [`AuthService::device_key`]).
fn device_count_key(nonce: &str) -> String {
    sha256_hex(format!("rampart-device-v1:{nonce}").as_bytes())
}

const DEVICE_CONTEXT: &str = "rampart-device-v1";

impl AuthService {
    fn lifecycle_event(&self, action: &str, outcome: &'static str) -> Event {
        Event::new(self.clock().now(), action, Category::Iam, outcome)
    }

    fn link(&self, page: &str, token: &SecretString) -> String {
        // In the fragment: a browser never sends it, so no server log,
        // proxy or Referer holds it.
        format!(
            "{}/{page}#token={}",
            self.config().accounts.link_origin.trim_end_matches('/'),
            token.expose_secret()
        )
    }

    // ----- device tokens --------------------------------------------------

    /// A new device token for the account:
    /// `rd1.<account>.<epoch>.<issued ms>.<nonce>.<mac>`, signed with the
    /// keyring, so nothing is stored.
    pub(crate) fn new_device_token(&self, account: &Account) -> SecretString {
        let nonce = rampart_crypto::random_token(self.entropy().as_ref(), 16);
        let body = format!(
            "{}.{}.{}.{}",
            account.id.as_str(),
            account.lifecycle.device_epoch,
            self.clock().now().millis(),
            nonce.expose_secret()
        );
        let mac = self.mfa.keys.mac(DEVICE_CONTEXT, &body);
        SecretString::new(format!("rd1.{body}.{mac}"))
    }

    /// The counting key of a device token, if it is one Rampart signed
    /// for `account`, in its current epoch, less than [`DEVICE_TTL`] ago.
    pub(crate) fn device_key(&self, token: &SecretString, account: &Account) -> Option<String> {
        let t = token.expose_secret();
        if t.len() > 256 {
            return None;
        }
        let rest = t.strip_prefix("rd1.")?;
        let (body, mac) = rest.rsplit_once('.')?;
        if !self.mfa.keys.mac_matches(DEVICE_CONTEXT, body, mac) {
            return None;
        }
        let mut parts = body.split('.');
        let (owner, epoch, issued, nonce) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let issued = Timestamp(issued.parse().ok()?);
        let fresh = self.clock().now() < issued.plus(DEVICE_TTL);
        (parts.next().is_none()
            && owner == account.id.as_str()
            && epoch.parse::<i64>().ok()? == account.lifecycle.device_epoch
            && fresh)
            .then(|| device_count_key(nonce))
    }

    // ----- verification ---------------------------------------------------

    /// Whether the policy keeps this account from signing in.
    pub(crate) fn unverified_blocks_sign_in(&self, account: &Account) -> bool {
        self.config().accounts.email_verification == VerificationMode::Required
            && account.lifecycle.email_verified_at.is_none()
    }

    /// Whether the policy keeps this account from the data routes.
    pub fn unverified_blocks_data(&self, account: &Account) -> bool {
        self.config().accounts.email_verification != VerificationMode::Optional
            && account.lifecycle.email_verified_at.is_none()
    }

    /// Mails a verification link and code to the account's address.
    pub(crate) async fn send_verification(
        &self,
        account: &Account,
        why: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if !self.can_email() {
            return Ok(());
        }
        let token = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        let code = rampart_crypto::random_digits(self.entropy().as_ref(), 8);
        let now = self.clock().now();
        self.store()
            .put_email_token(&EmailToken {
                token_hash: TokenHash::of(&token).0,
                purpose: TokenPurpose::Verify,
                account: account.id.clone(),
                email: account.email.as_str().to_owned(),
                code_mac: Some(self.mfa.keys.mac(
                    &verify_code_context(&account.id, account.email.as_str()),
                    code.expose_secret(),
                )),
                created_at: now,
                expires_at: now.plus(VERIFY_TTL),
            })
            .await?;
        self.send_notice(
            account,
            "Confirm your email address",
            format!(
                "Confirm that this address is yours by opening this link:\n\n{}\n\n\
                 or by entering this code where you signed up: {}\n\n\
                 Both work once, for {} hours. If you did not create an account, ignore this message.\n",
                self.link("verify-email", &token),
                code.expose_secret(),
                VERIFY_TTL.as_secs() / 3600
            ),
        );
        self.record_security(
            self.lifecycle_event(actions::VERIFICATION_SENT, SUCCESS)
                .user(Some(account.id.as_str()))
                .reason(Some(why))
                .meta(meta),
        )
        .await;
        Ok(())
    }

    /// Proves an address with the mailed link's token, or with the
    /// account's address and the mailed code. Every failure is the same
    /// [`Error::InvalidVerification`].
    pub async fn verify_email(
        &self,
        token: Option<&SecretString>,
        code: Option<(&str, &SecretString)>,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let now = self.clock().now();
        let found = match (token, code) {
            (Some(t), None) => self
                .email_link(TokenPurpose::Verify, t, now)
                .await?
                .map(|row| (row, "link")),
            (None, Some((email, code))) if code.expose_secret().len() <= 32 => self
                .verify_code(email, code, now)
                .await?
                .map(|r| (r, "code")),
            _ => None,
        };
        let Some((row, how)) = found else {
            self.record_security(
                self.lifecycle_event(actions::EMAIL_VERIFIED, FAILURE)
                    .reason(Some("invalid_token"))
                    .meta(meta),
            )
            .await;
            return Err(Error::InvalidVerification);
        };
        if !self
            .store()
            .finish_verification(&row.token_hash, &row.account, &row.email, now)
            .await?
        {
            return Err(Error::InvalidVerification);
        }
        self.record_security(
            self.lifecycle_event(actions::EMAIL_VERIFIED, SUCCESS)
                .user(Some(row.account.as_str()))
                .reason(Some(how))
                .meta(meta),
        )
        .await;
        Ok(())
    }

    /// The verification row a code proves. Every try is counted per
    /// address first (one write, for known and unknown addresses alike);
    /// past [`CODE_TRIES_PER_HOUR`] nothing is checked.
    async fn verify_code(
        &self,
        email: &str,
        code: &SecretString,
        now: Timestamp,
    ) -> Result<Option<EmailToken>, Error> {
        let parsed = Email::parse(email).ok();
        let name = parsed
            .as_ref()
            .map_or_else(|| email.trim().to_lowercase(), |e| e.as_str().to_owned());
        let key = sha256_hex(format!("rampart-verify-code-v1:{name}").as_bytes());
        if self
            .store()
            .count_send(&key, now, SEND_WINDOW, CODE_TRIES_PER_HOUR)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let account = match &parsed {
            Some(e) => self.store().account_by_email(e).await?,
            None => None,
        };
        let row = match &account {
            Some(a) => {
                self.store()
                    .email_code(TokenPurpose::Verify, &a.id, now)
                    .await?
            }
            None => None,
        };
        let (context, stored) = match &row {
            Some(r) => (
                verify_code_context(&r.account, &r.email),
                r.code_mac.clone().unwrap_or_default(),
            ),
            None => (
                verify_code_context(&AccountId(String::new()), ""),
                String::new(),
            ),
        };
        let typed = code.expose_secret().trim();
        let right = self.mfa.keys.mac_matches(&context, typed, &stored);
        Ok(row.filter(|_| right))
    }

    /// Asks for a new verification message. Answered at once, the same
    /// for every address: past the client address's limit a refusal,
    /// otherwise the work is done afterwards.
    pub async fn resend_verification(
        self: &Arc<Self>,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        self.count_mail_request(meta).await?;
        let (this, email, meta) = (self.clone(), email.to_owned(), meta.clone());
        self.in_background(async move {
            let Ok(parsed) = Email::parse(&email) else {
                return;
            };
            let Ok(Some(account)) = this.store().account_by_email(&parsed).await else {
                return;
            };
            if account.lifecycle.email_verified_at.is_some()
                || account.lifecycle.disabled_at.is_some()
                || !this.may_send(&account, "verify").await
            {
                return;
            }
            if let Err(e) = this.send_verification(&account, "resend", &meta).await {
                tracing::warn!(error = %e, "verification message not sent");
            }
        });
        Ok(())
    }

    /// Whether another message may go to this account (at most
    /// [`SENDS_PER_ACCOUNT`] an hour of each kind).
    async fn may_send(&self, account: &Account, kind: &str) -> bool {
        let key = sha256_hex(format!("rampart-mail-v1:{kind}:{}", account.id.as_str()).as_bytes());
        matches!(
            self.store()
                .count_send(&key, self.clock().now(), SEND_WINDOW, SENDS_PER_ACCOUNT)
                .await,
            Ok(None)
        )
    }

    /// Counts a request that may mail someone, per client address: past
    /// [`SENDS_PER_ADDRESS`] an hour it is refused, whatever the address
    /// asked about (so the refusal tells nothing about it).
    async fn count_mail_request(&self, meta: &RequestMeta) -> Result<(), Error> {
        let Some(ip) = meta.ip.as_deref() else {
            return Ok(());
        };
        let key = sha256_hex(format!("rampart-mail-ip-v1:{ip}").as_bytes());
        let now = self.clock().now();
        if let Some(next) = self
            .store()
            .count_send(&key, now, SEND_WINDOW, SENDS_PER_ADDRESS)
            .await?
        {
            return Err(Error::TooManyCodes {
                retry_after: crate::mfa::secs_until(now, next).max(1),
            });
        }
        Ok(())
    }

    // ----- forgotten password ----------------------------------------------

    /// Mails a reset link to the address's owner, if it has an account.
    /// Answered at once, the same for every address (past the client
    /// address's limit, a refusal whatever the address).
    pub async fn request_password_reset(
        self: &Arc<Self>,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        self.count_mail_request(meta).await?;
        let (this, email, meta) = (self.clone(), email.to_owned(), meta.clone());
        self.in_background(async move {
            let account = match Email::parse(&email) {
                Ok(e) => this.store().account_by_email(&e).await.ok().flatten(),
                Err(_) => None,
            };
            let event = this
                .lifecycle_event(actions::RESET_REQUESTED, SUCCESS)
                .meta(&meta);
            let Some(account) = account else {
                this.record_security(event.reason(Some("unknown_account")))
                    .await;
                return;
            };
            let event = event.user(Some(account.id.as_str()));
            if account.lifecycle.disabled_at.is_some() {
                this.record_security(event.reason(Some("account_disabled")))
                    .await;
                return;
            }
            if !this.may_send(&account, "reset").await {
                this.record_security(event.reason(Some("limited"))).await;
                return;
            }
            let ttl = this.config().accounts.reset_ttl;
            match this.mail_reset_code(&account, "forgotten", ttl).await {
                Ok(()) => this.record_security(event).await,
                Err(e) => tracing::warn!(error = %e, "reset link not sent"),
            }
        });
        Ok(())
    }

    /// Stores a reset code for the account and mails its link.
    pub(crate) async fn mail_reset_code(
        &self,
        account: &Account,
        reason: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        let code = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        let expires = self.clock().now().plus(ttl);
        self.store()
            .insert_password_reset(&account.id, &TokenHash::of(&code).0, reason, expires)
            .await?;
        self.send_reset_message(account, reason, ttl, &code);
        Ok(())
    }

    fn send_reset_message(
        &self,
        account: &Account,
        reason: &str,
        ttl: Duration,
        code: &SecretString,
    ) {
        let why = match reason {
            "administrator" => {
                "An administrator asked you to choose a new password; your old one no longer works."
            }
            "email_change_undone" => {
                "You undid a change of your account's address. In case whoever changed it knew your \
                 password, it no longer works: choose a new one."
            }
            _ => "Someone (we hope you) asked to reset the password of your account.",
        };
        let ttl_text = if ttl.as_secs() >= 3600 {
            format!("{} hours", ttl.as_secs() / 3600)
        } else {
            format!("{} minutes", (ttl.as_secs() / 60).max(1))
        };
        self.send_notice(
            account,
            "Choose a new password",
            format!(
                "{why}\n\nChoose a new password here (the link works once, for {ttl_text}):\n\n{}\n\n\
                 If you did not ask, ignore this message: your password stays as it is. Your second \
                 factor, if you have one, is still asked for when you sign in.\n",
                self.link("reset-password", code)
            ),
        );
    }

    /// Finishes a password reset with a mailed code (forgotten, required by
    /// an administrator, or forced by an incident): the code is spent, the
    /// new password (which must meet the policy) set, every session and
    /// pending sign-in ended, the address counted as verified, the
    /// address's failed sign-ins forgotten, and the owner told. No session
    /// is created: the second factor is still asked at the next sign-in,
    /// and an administrator with one proves it here (`second_factor`).
    pub async fn confirm_password_reset(
        &self,
        token: &SecretString,
        new_password: &SecretString,
        second_factor: Option<&Proof>,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let hash = TokenHash::of(token).0;
        let now = self.clock().now();
        let refused = |why: &'static str, account: Option<AccountId>| async move {
            self.record_security(
                self.lifecycle_event(actions::PASSWORD_RESET, FAILURE)
                    .user(account.as_ref().map(AccountId::as_str))
                    .reason(Some(why))
                    .meta(meta),
            )
            .await;
            Err(Error::InvalidResetToken)
        };
        if token.expose_secret().len() > 128 {
            return refused("malformed_code", None).await;
        }
        let Some((owner, reason)) = self.store().password_reset_owner(&hash, now).await? else {
            return refused("unknown_code", None).await;
        };
        let Some(account) = self.store().account_by_id(&owner).await? else {
            return refused("unknown_code", None).await;
        };
        if account.lifecycle.disabled_at.is_some() {
            return refused("account_disabled", Some(account.id)).await;
        }
        let phc = self
            .new_password_hash(
                new_password,
                &account.email,
                account.display_name.as_deref(),
            )
            .await?;
        if account.role == Role::Admin && account.has_mfa {
            // A mailbox alone does not give an administrator's account away.
            let Some(proof) = second_factor else {
                return Err(Error::ResetNeedsFactor);
            };
            self.verify_for_reset(&account, proof, &hash, meta).await?;
        }
        if !self
            .store()
            .finish_password_reset(&hash, &account.id, &phc, now)
            .await?
        {
            return refused("spent_code", Some(account.id)).await;
        }
        let key = crate::auth::login_key(Some(&account.email), "");
        if let Err(e) = self.store().clear_login_failures(&key).await {
            tracing::warn!(error = %e, "failed sign-ins not forgotten after a reset");
        }
        let action = if reason == "incident" {
            crate::incident::actions::PASSWORD_RESET
        } else {
            actions::PASSWORD_RESET
        };
        self.record_security(
            self.lifecycle_event(action, SUCCESS)
                .user(Some(account.id.as_str()))
                .reason(Some(&reason))
                .meta(meta),
        )
        .await;
        self.notify_owner(
            &account,
            "Your password was changed",
            "A new password was chosen for your account with a mailed reset code; every session was signed out.".to_owned(),
        );
        Ok(())
    }

    /// An administrator requires the account to choose a new password: it
    /// stops working now, sessions end, and the owner is mailed a code.
    pub async fn require_password_reset(
        &self,
        id: &AccountId,
        by: &Account,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let account = self
            .store()
            .account_by_id(id)
            .await?
            .ok_or(Error::NotFound)?;
        if account.id == by.id {
            return Err(Error::OwnAccount);
        }
        if !self.can_email() {
            return Err(Error::NoEmailDelivery);
        }
        let unusable = self.unusable_hash().await?;
        let code = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        let expires = self.clock().now().plus(REQUIRED_RESET_TTL);
        self.store()
            .force_password_reset(
                &account.id,
                &unusable,
                &TokenHash::of(&code).0,
                "administrator",
                expires,
            )
            .await?;
        self.send_reset_message(&account, "administrator", REQUIRED_RESET_TTL, &code);
        self.record_security(
            self.lifecycle_event(actions::RESET_REQUIRED, SUCCESS)
                .user(Some(account.id.as_str()))
                .reason(Some(&format!("by {}", by.id.as_str())))
                .meta(meta),
        )
        .await;
        Ok(())
    }

    /// The Argon2id hash of a random password nobody knows: a sign-in
    /// with it costs what any other does and always fails.
    pub(crate) async fn unusable_hash(&self) -> Result<String, Error> {
        let random = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        Ok(self
            .pool()
            .hash(SecretString::new(random.expose_secret().to_owned()))
            .await?)
    }

    // ----- email change ---------------------------------------------------

    /// Starts moving the account to `new_email`: a link goes to the new
    /// address; nothing changes until it is opened. An address another
    /// account holds is told so instead (the answer here is the same).
    pub async fn request_email_change(
        &self,
        account: &Account,
        new_email: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let to = Email::parse(new_email).map_err(|_| Error::InvalidEmail)?;
        if to == account.email {
            return Err(Error::EmailUnchanged);
        }
        if !self.can_email() {
            return Err(Error::NoEmailDelivery);
        }
        // Each request mails an address the caller chose: a few an hour.
        if !self.may_send(account, "change").await {
            return Err(Error::TooManyCodes {
                retry_after: SEND_WINDOW.as_secs(),
            });
        }
        let holder = self.store().account_by_email(&to).await?;
        let reserved = self
            .store()
            .email_reserved(to.as_str(), &account.id, self.clock().now())
            .await?;
        let event = self
            .lifecycle_event(actions::EMAIL_CHANGE_REQUESTED, SUCCESS)
            .user(Some(account.id.as_str()))
            .meta(meta);
        if holder.is_some() {
            self.send_email(
                to.as_str().to_owned(),
                "Someone tried to use this address",
                "Someone asked to move another account to this address, which already has an \
                 account here. Nothing was changed. If it was you, sign in with this address \
                 instead.\n"
                    .to_owned(),
            );
            self.record_security(event.reason(Some("address_taken")))
                .await;
            return Ok(());
        }
        if reserved {
            // Another account moved away from it and may still undo that.
            self.record_security(event.reason(Some("address_reserved")))
                .await;
            return Ok(());
        }
        let token = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        let now = self.clock().now();
        self.store()
            .put_email_token(&EmailToken {
                token_hash: TokenHash::of(&token).0,
                purpose: TokenPurpose::Change,
                account: account.id.clone(),
                email: to.as_str().to_owned(),
                code_mac: None,
                created_at: now,
                expires_at: now.plus(CHANGE_TTL),
            })
            .await?;
        self.send_email(
            to.as_str().to_owned(),
            "Confirm your new email address",
            format!(
                "Open this link to make this the address of your account (it works once, for {} hours):\n\n{}\n\n\
                 If you did not ask for this, ignore this message.\n",
                CHANGE_TTL.as_secs() / 3600,
                self.link("confirm-email", &token)
            ),
        );
        self.record_security(event).await;
        Ok(())
    }

    /// Opens a change link: the account moves to the new address, and the
    /// old one is told, with a link that undoes it for 72 hours.
    pub async fn confirm_email_change(
        &self,
        token: &SecretString,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let now = self.clock().now();
        let Some(row) = self.email_link(TokenPurpose::Change, token, now).await? else {
            return self.bad_email_link(actions::EMAIL_CHANGED, meta).await;
        };
        let Some(account) = self.store().account_by_id(&row.account).await? else {
            return self.bad_email_link(actions::EMAIL_CHANGED, meta).await;
        };
        // A disabled account, or one an incident keeps out, changes nothing.
        if account.lifecycle.disabled_at.is_some()
            || self
                .store()
                .sign_in_suspended(&account.id, account.role)
                .await?
        {
            return self.bad_email_link(actions::EMAIL_CHANGED, meta).await;
        }
        let undo = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        let undo_row = EmailToken {
            token_hash: TokenHash::of(&undo).0,
            purpose: TokenPurpose::Undo,
            account: account.id.clone(),
            email: account.email.as_str().to_owned(),
            code_mac: None,
            // When the change was asked for: an undo voids the undo links of
            // changes asked for since, never older ones.
            created_at: row.created_at,
            expires_at: now.plus(UNDO_TTL),
        };
        match self
            .store()
            .finish_email_change(
                &row.token_hash,
                account.email.as_str(),
                &row.email,
                now,
                &undo_row,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.bad_email_link(actions::EMAIL_CHANGED, meta).await,
            Err(StoreError::Conflict) => return Err(Error::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.send_notice(
            &account,
            "Your email address was changed",
            format!(
                "The address of your account was changed to {}. If that was you, there is nothing to do.\n\n\
                 If it was not, undo it with this link within {} hours: it restores this address, signs \
                 every session out and turns the password off (a link to choose a new one follows). Until \
                 then nobody else can take this address.\n\n{}\n",
                row.email,
                UNDO_TTL.as_secs() / 3600,
                self.link("undo-email-change", &undo)
            ),
        );
        self.record_security(
            self.lifecycle_event(actions::EMAIL_CHANGED, SUCCESS)
                .user(Some(account.id.as_str()))
                .meta(meta),
        )
        .await;
        Ok(())
    }

    /// Opens an undo link: the old address is back, every session and
    /// pending sign-in ends, and a reset link goes to the old address (the
    /// one who changed it may know the password too).
    pub async fn undo_email_change(
        &self,
        token: &SecretString,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let now = self.clock().now();
        let Some(row) = self.email_link(TokenPurpose::Undo, token, now).await? else {
            return self
                .bad_email_link(actions::EMAIL_CHANGE_UNDONE, meta)
                .await;
        };
        // Whoever changed the address may know the password: it stops
        // working, and a link to choose a new one goes to the restored
        // address.
        let unusable = self.unusable_hash().await?;
        match self
            .store()
            .finish_email_undo(&row.token_hash, &unusable, now)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                return self
                    .bad_email_link(actions::EMAIL_CHANGE_UNDONE, meta)
                    .await
            }
            Err(StoreError::Conflict) => return Err(Error::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.record_security(
            self.lifecycle_event(actions::EMAIL_CHANGE_UNDONE, SUCCESS)
                .user(Some(row.account.as_str()))
                .meta(meta),
        )
        .await;
        if let Some(account) = self.store().account_by_id(&row.account).await? {
            if let Err(e) = self
                .mail_reset_code(&account, "email_change_undone", REQUIRED_RESET_TTL)
                .await
            {
                tracing::warn!(error = %e, "reset link after an undo not sent");
            }
        }
        Ok(())
    }

    /// The unexpired link of `purpose` a token opens (nothing for one
    /// longer than any Rampart makes).
    async fn email_link(
        &self,
        purpose: TokenPurpose,
        token: &SecretString,
        now: Timestamp,
    ) -> Result<Option<EmailToken>, Error> {
        if token.expose_secret().len() > 128 {
            return Ok(None);
        }
        Ok(self
            .store()
            .email_token(purpose, &TokenHash::of(token).0, now)
            .await?)
    }

    async fn bad_email_link(&self, action: &str, meta: &RequestMeta) -> Result<(), Error> {
        self.record_security(
            self.lifecycle_event(action, FAILURE)
                .reason(Some("invalid_token"))
                .meta(meta),
        )
        .await;
        Err(Error::InvalidEmailLink)
    }

    // ----- deletion -------------------------------------------------------

    /// The owner asks for the account's deletion: every session ends now,
    /// and the account goes when the grace period is over unless they sign
    /// in before (with none, [`crate::data::DataService::close_account`]
    /// deletes it at once). Returns when.
    pub(crate) async fn schedule_deletion(
        &self,
        account: &Account,
        meta: &RequestMeta,
    ) -> Result<Timestamp, Error> {
        let at = self
            .clock()
            .now()
            .plus(self.config().accounts.deletion_grace);
        match self.store().set_deletion(&account.id, Some(at)).await? {
            Guarded::Done => {}
            Guarded::NotFound => return Err(Error::NotFound),
            Guarded::LastAdmin => return Err(Error::LastAdmin),
        }
        self.record_security(
            self.lifecycle_event(actions::DELETION_SCHEDULED, SUCCESS)
                .user(Some(account.id.as_str()))
                .field("account.delete_after", at.to_rfc3339())
                .meta(meta),
        )
        .await;
        if !self.config().accounts.deletion_grace.is_zero() {
            self.send_notice(
                account,
                "Your account will be deleted",
                format!(
                    "You asked for your account to be deleted. It will be deleted on {}, with its data. \
                     To keep it, sign in before then.\n\nIf you did not ask for this, sign in now and \
                     change your password.\n",
                    at.to_rfc3339()
                ),
            );
        }
        Ok(at)
    }

    /// A sign-in during the grace period keeps the account.
    pub(crate) async fn cancel_deletion(&self, account: &Account, meta: &RequestMeta) {
        if account.lifecycle.delete_after.is_none() {
            return;
        }
        if let Err(e) = self.store().set_deletion(&account.id, None).await {
            tracing::warn!(error = %e, "scheduled deletion not cancelled");
            return;
        }
        self.record_security(
            self.lifecycle_event(actions::DELETION_CANCELLED, SUCCESS)
                .user(Some(account.id.as_str()))
                .reason(Some("signed_in"))
                .meta(meta),
        )
        .await;
        self.notify_owner(
            account,
            "Your account will not be deleted",
            "You signed in, so the deletion you asked for was cancelled.".to_owned(),
        );
    }

    /// Deletes an account now (see [`LifecycleStore::delete_account`]);
    /// `owner_deletes` are the collections whose records go with it. The
    /// trail keeps the event with the account's id, not its data.
    pub(crate) async fn delete_account(
        &self,
        id: &AccountId,
        owner_deletes: &[String],
        by: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        self.delete(id, owner_deletes, by, false, meta).await
    }

    async fn delete(
        &self,
        id: &AccountId,
        owner_deletes: &[String],
        by: &str,
        due_only: bool,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        match self
            .store()
            .delete_account(id, owner_deletes, self.clock().now(), due_only)
            .await?
        {
            Guarded::Done => {}
            Guarded::NotFound => return Err(Error::NotFound),
            Guarded::LastAdmin => return Err(Error::LastAdmin),
        }
        self.record_security(
            self.lifecycle_event(actions::DELETED, SUCCESS)
                .user(Some(id.as_str()))
                .reason(Some(by))
                .meta(meta),
        )
        .await;
        Ok(())
    }

    /// Deletes expired links and reset codes; how many.
    pub async fn purge_expired_links(&self) -> Result<u64, Error> {
        Ok(self.store().purge_expired_links(self.clock().now()).await?)
    }

    /// Deletes the accounts whose grace period is over; how many went
    /// (through [`crate::data::DataService::delete_due_accounts`]).
    pub(crate) async fn delete_due_accounts(&self, owner_deletes: &[String]) -> Result<u64, Error> {
        let meta = RequestMeta {
            user_agent: Some("rampart-maintenance".to_owned()),
            ..RequestMeta::default()
        };
        let mut n = 0;
        for id in self.store().deletions_due(self.clock().now()).await? {
            // Only if still due: a sign-in since it was listed cancels it.
            match self
                .delete(&id, owner_deletes, "owner_request", true, &meta)
                .await
            {
                Ok(()) => n += 1,
                // The last administrator stays; the schedule is cancelled.
                Err(Error::LastAdmin) => {
                    self.store().set_deletion(&id, None).await?;
                }
                Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    // ----- export ---------------------------------------------------------

    /// Everything held about the account but its records
    /// ([`crate::data::DataService::export_account`] adds them): profile,
    /// factors without secrets, sessions, roles and its security events.
    pub(crate) async fn export_account(
        &self,
        account: &Account,
        roles: Vec<String>,
    ) -> Result<AccountExport, Error> {
        let (factors, codes_left) = self.factors(account).await?;
        let sessions = self.sessions(&account.id).await?;
        let mut events = Vec::new();
        let mut query = crate::audit::EventQuery {
            user_id: Some(account.id.as_str().to_owned()),
            limit: 1000,
            ..Default::default()
        };
        loop {
            let page = self.store().search_events(&query).await?;
            let more = page.len() == query.limit as usize;
            query.cursor = page.last().map(|c| (c.at, c.node.clone(), c.seq));
            events.extend(page.iter().map(|c| {
                serde_json::json!({
                    "id": format!("{}:{}", c.node, c.seq),
                    "at": c.at.to_rfc3339(),
                    "action": c.action,
                    "outcome": c.outcome,
                    "reason": c.reason,
                    "ip": c.source_ip,
                    "user_agent": c.user_agent,
                    "fields": serde_json::Value::Object(c.fields_map()),
                })
            }));
            if !more || events.len() >= 100_000 {
                break;
            }
        }
        let l = &account.lifecycle;
        let t = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339());
        Ok(AccountExport {
            exported_at: self.clock().now().to_rfc3339(),
            account: serde_json::json!({
                "id": account.id.as_str(),
                "email": account.email.as_str(),
                "display_name": account.display_name,
                "role": account.role.as_str(),
                "created_at": account.created_at.to_rfc3339(),
                "email_verified_at": t(l.email_verified_at),
                "last_sign_in_at": t(l.last_sign_in_at),
                "delete_after": t(l.delete_after),
            }),
            factors: factors
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "id": f.id.as_str(),
                        "kind": f.kind.as_str(),
                        "name": f.name,
                        "created_at": f.created_at.to_rfc3339(),
                        "confirmed_at": t(f.confirmed_at),
                        "last_used_at": t(f.last_used_at),
                    })
                })
                .collect(),
            recovery_codes_left: codes_left,
            roles,
            sessions: sessions
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id.as_str(),
                        "created_at": s.created_at.to_rfc3339(),
                        "last_seen_at": s.last_seen_at.to_rfc3339(),
                        "expires_at": s.expires_at.to_rfc3339(),
                        "ip": s.ip,
                        "user_agent": s.user_agent,
                    })
                })
                .collect(),
            security_events: events,
            records: Default::default(),
        })
    }

    /// Records that an export was made.
    pub(crate) async fn exported(&self, account: &Account, meta: &RequestMeta) {
        self.record_security(
            self.lifecycle_event(actions::EXPORTED, SUCCESS)
                .user(Some(account.id.as_str()))
                .meta(meta),
        )
        .await;
    }

    // ----- administrators ---------------------------------------------------

    /// An administrator's search; the page and the cursor of the next.
    pub async fn search_accounts(
        &self,
        q: &AccountQuery,
    ) -> Result<(Vec<Account>, Option<String>), Error> {
        let mut q = q.clone();
        let limit = q.limit.clamp(1, MAX_PAGE);
        q.limit = limit + 1;
        let mut rows = self.store().search_accounts(&q).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| rows.last().map(|a| q.cursor_after(a)))
            .flatten();
        Ok((rows, next))
    }

    /// The account's last 20 sign-ins and failed sign-ins, newest first.
    pub async fn sign_ins(&self, id: &AccountId) -> Result<Vec<crate::audit::Chained>, Error> {
        Ok(self
            .store()
            .search_events(&crate::audit::EventQuery {
                actions: vec![
                    crate::events::EventKind::LoginSuccess.as_str().to_owned(),
                    crate::events::EventKind::LoginFailure.as_str().to_owned(),
                ],
                user_id: Some(id.as_str().to_owned()),
                limit: 20,
                ..Default::default()
            })
            .await?)
    }

    /// One account with its factors, sessions, roles and recent sign-ins.
    pub(crate) async fn account_detail(
        &self,
        id: &AccountId,
        roles: Vec<String>,
    ) -> Result<AccountDetail, Error> {
        let account = self
            .store()
            .account_by_id(id)
            .await?
            .ok_or(Error::NotFound)?;
        let factors = self.store().factors_of(id).await?;
        let sessions = self.sessions(id).await?;
        let sign_ins = self.sign_ins(id).await?;
        Ok(AccountDetail {
            account,
            factors,
            sessions,
            roles,
            sign_ins,
        })
    }

    /// Disables (`true`) or enables an account. Disabling ends its
    /// sessions and pending sign-ins at once; every node refuses its
    /// sessions and API keys from the next request, as the lookups read
    /// the account's state.
    pub async fn set_disabled(
        &self,
        id: &AccountId,
        disabled: bool,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let at = disabled.then(|| self.clock().now());
        match self.store().set_disabled(id, at).await? {
            Guarded::Done => {}
            Guarded::NotFound => return Err(Error::NotFound),
            Guarded::LastAdmin => return Err(Error::LastAdmin),
        }
        let action = if disabled {
            actions::DISABLED
        } else {
            actions::ENABLED
        };
        self.record_security(
            self.lifecycle_event(action, SUCCESS)
                .user(Some(id.as_str()))
                .reason(Some(&format!("by {by}")))
                .meta(meta),
        )
        .await;
        Ok(())
    }

    /// After a sign-in: the time is kept for searches, and a scheduled
    /// deletion is cancelled.
    pub(crate) async fn signed_in(&self, account: &Account, meta: &RequestMeta) {
        if let Err(e) = self
            .store()
            .note_sign_in(&account.id, self.clock().now())
            .await
        {
            tracing::warn!(error = %e, "last sign-in time not kept");
        }
        self.cancel_deletion(account, meta).await;
    }

    /// Refuses a sign-in, after its password was found right, to a
    /// disabled account or (when the policy says so) an unverified one.
    pub(crate) async fn refuse_by_lifecycle(
        &self,
        account: &Account,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let (why, err) = if account.lifecycle.disabled_at.is_some() {
            ("account_disabled", Error::AccountDisabled)
        } else if self.unverified_blocks_sign_in(account) {
            ("email_unverified", Error::EmailUnverified)
        } else {
            return Ok(());
        };
        self.failed(
            crate::events::EventKind::LoginFailure,
            why,
            Some(&account.id),
            meta,
        )
        .await;
        Err(err)
    }
}

/// What a verification code's MAC covers: the account and the address it
/// was sent to.
fn verify_code_context(account: &AccountId, email: &str) -> String {
    format!("rampart-verify-code-v1:{}:{email}", account.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let q = AccountQuery {
            sort: AccountSort::CreatedAt,
            ..AccountQuery::default()
        };
        let a = Account {
            id: AccountId("acc_1".into()),
            email: Email::parse("a~b@example.com").unwrap(),
            display_name: None,
            password_hash: SecretString::from("x"),
            role: Role::Member,
            created_at: Timestamp(42),
            has_mfa: false,
            lifecycle: crate::model::Lifecycle::default(),
        };
        let c = q.cursor_after(&a);
        assert_eq!(
            q.parse_cursor(&c),
            Some((SortKey::Time(42), AccountId("acc_1".into())))
        );
        let by_email = AccountQuery {
            sort: AccountSort::Email,
            ..q.clone()
        };
        let c = by_email.cursor_after(&a);
        assert_eq!(
            by_email.parse_cursor(&c),
            Some((
                SortKey::Text("a~b@example.com".into()),
                AccountId("acc_1".into())
            ))
        );
        for junk in ["", "zz", "0", &"00".repeat(600), &hex::encode(b"nokey")] {
            assert_eq!(q.parse_cursor(junk), None, "{junk}");
        }
        // A text key read as a time is refused.
        assert_eq!(q.parse_cursor(&c), None);
    }
}
