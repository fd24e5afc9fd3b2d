//! Incident response (ADR 0014): a lockdown of the whole deployment or of
//! some accounts, its signed record, and lifting it; the password resets
//! an incident forces; the drills' table.
//!
//! One mechanism serves both scopes: an incident row in force. Every
//! node reads it on every session and API-key lookup (the store adds the
//! condition to those queries), so a lockdown takes effect on every node
//! at once, with no cache to go stale; the sessions and keys it ends are
//! also deleted or revoked in the transaction that starts it, so lifting
//! it revives nothing.
//!
//! - Deployment scope: ends every session, pending sign-in and API key
//!   but the break-glass administrator's; refuses sign-in to everyone but
//!   administrators; freezes administrative writes other than the
//!   incident's own (`Error::LockdownFrozen`); rotates the data keys.
//! - Accounts scope: ends those accounts' sessions and keys and refuses
//!   their sign-in; nobody else notices.
//!
//! Either may force password resets (the password stops working at once,
//! and the owner is mailed a single-use code to choose a new one) and
//! second-factor re-enrolment.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::{Category, Event, Severity, FAILURE, SUCCESS};
use crate::data::DataService;
use crate::{Account, AccountId, AuthService, Error, RequestMeta, Role, StoreError, Timestamp};
use rampart_crypto::audit::AuditKeys;
use rampart_crypto::{SecretString, TokenHash};

/// What incidents and drills record in the trail.
pub mod actions {
    /// A lockdown began (outcome success), or was refused.
    pub const LOCKDOWN: &str = "incident.lockdown";
    /// A lockdown was lifted.
    pub const LIFTED: &str = "incident.lifted";
    /// A forensic bundle was written.
    pub const EXPORTED: &str = "incident.exported";
    /// A forced password reset was finished by the owner.
    pub const PASSWORD_RESET: &str = "incident.password_reset";
    /// A drill began.
    pub const DRILL_STARTED: &str = "drill.started";
    /// A drill ended, with its score.
    pub const DRILL_COMPLETED: &str = "drill.completed";
    /// The last drill is older than the configured period (outcome failure).
    pub const DRILL_OVERDUE: &str = "drill.overdue";
    pub const ALL: [&str; 7] = [
        LOCKDOWN,
        LIFTED,
        EXPORTED,
        PASSWORD_RESET,
        DRILL_STARTED,
        DRILL_COMPLETED,
        DRILL_OVERDUE,
    ];
}

/// How long the code of a forced password reset lasts: an owner away
/// over a long weekend can still use it.
pub const RESET_TTL: std::time::Duration = std::time::Duration::from_secs(72 * 3600);

/// Longest reason kept, in characters.
const MAX_REASON: usize = 500;
/// Most accounts one order names.
const MAX_ACCOUNTS: usize = 10_000;

/// Who an incident reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everyone but administrators' new sign-ins and the break-glass
    /// administrator.
    Deployment,
    /// The named accounts only.
    Accounts,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Deployment => "deployment",
            Scope::Accounts => "accounts",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "deployment" => Some(Scope::Deployment),
            "accounts" => Some(Scope::Accounts),
            _ => None,
        }
    }
}

/// An incident, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub scope: Scope,
    /// The accounts of an accounts-scoped incident.
    pub accounts: Vec<AccountId>,
    pub reason: String,
    pub started_at: Timestamp,
    /// An administrator's account id, or `cli`.
    pub started_by: String,
    pub break_glass: Option<AccountId>,
    /// The signed record (a C2SP signed note of [`Record`] as JSON).
    pub record: String,
    pub lifted_at: Option<Timestamp>,
    pub lifted_by: Option<String>,
    pub lift_record: Option<String>,
}

/// What a lockdown ends, counted in its transaction (or, for a dry run,
/// before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub sessions: u64,
    pub api_keys: u64,
    pub pending_sign_ins: u64,
}

/// The incident tables. Only `rampart-store` implements it.
#[async_trait]
pub trait IncidentStore: Send + Sync + 'static {
    /// What a lockdown of `scope` would end now.
    async fn lockdown_reach(
        &self,
        scope: Scope,
        accounts: &[AccountId],
        break_glass: Option<&AccountId>,
    ) -> Result<Ended, StoreError>;
    /// Stores `incident` and, in the same transaction, deletes the
    /// sessions and pending sign-ins and revokes the API keys it reaches.
    /// `Conflict` when a deployment lockdown is in force already.
    async fn begin_incident(&self, incident: &Incident) -> Result<Ended, StoreError>;
    /// Incidents not lifted, oldest first.
    async fn incidents_in_force(&self) -> Result<Vec<Incident>, StoreError>;
    /// Incidents that were in force at any time in `[since, until)`.
    async fn incidents_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Incident>, StoreError>;
    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// The deployment lockdown in force, if any (one indexed row).
    async fn deployment_lockdown(&self) -> Result<Option<Incident>, StoreError>;
    /// Lifts an incident in force, and ends what it kept out and was made
    /// while it held; false when it is not in force.
    async fn lift_incident(
        &self,
        incident: &Incident,
        at: Timestamp,
        by: &str,
        record: &str,
    ) -> Result<bool, StoreError>;
    /// Whether an incident in force refuses `account` a new session.
    async fn sign_in_suspended(&self, account: &AccountId, role: Role) -> Result<bool, StoreError>;
    /// Every account, for resets of all.
    async fn all_accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// In one transaction: the account's password hash becomes
    /// `unusable_hash`, its sessions and pending sign-ins end, earlier
    /// reset codes go, and the code `token_hash` is stored.
    async fn force_password_reset(
        &self,
        account: &AccountId,
        unusable_hash: &str,
        token_hash: &str,
        reason: &str,
        expires: Timestamp,
    ) -> Result<(), StoreError>;
    /// The owner of an unexpired reset code and why it was sent, without
    /// spending it.
    async fn password_reset_owner(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(AccountId, String)>, StoreError>;
    /// In one transaction: spends the code (only if unexpired and still
    /// the account's), sets the new hash, ends every session and pending
    /// sign-in. False when the code was spent meanwhile.
    async fn finish_password_reset(
        &self,
        token_hash: &str,
        account: &AccountId,
        new_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// A drill begins; its requests carry the token whose hash is stored.
    async fn begin_drill(
        &self,
        id: &str,
        token_hash: &str,
        at: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError>;
    async fn end_drill(&self, id: &str, at: Timestamp, report: &str) -> Result<(), StoreError>;
    /// Drills under way at `now`: (id, token hash).
    async fn drills_in_force(&self, now: Timestamp) -> Result<Vec<(String, String)>, StoreError>;
    /// The newest finished drill: (id, ended at, report JSON).
    async fn last_drill(&self) -> Result<Option<(String, Timestamp, String)>, StoreError>;
    /// Deletes a drill's account (and, by cascade, its sessions, factors
    /// and tokens).
    async fn delete_drill_account(&self, account: &AccountId) -> Result<bool, StoreError>;
}

/// Which accounts a reset reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    #[default]
    None,
    /// Every account in the incident's scope (every account, for the
    /// deployment), but the break-glass administrator.
    All,
    /// These email addresses.
    Only(Vec<String>),
}

/// A lockdown as asked for.
#[derive(Debug, Clone, Default)]
pub struct LockdownOrder {
    /// Empty: the whole deployment. Otherwise these accounts only (emails).
    pub accounts: Vec<String>,
    pub reason: String,
    /// An administrator's email whose sessions and keys survive.
    pub break_glass: Option<String>,
    pub reset_passwords: Selection,
    pub reenrol_mfa: Selection,
    pub dry_run: bool,
}

/// What a lockdown did, or (dry run) would do.
#[derive(Debug, Clone, Serialize)]
pub struct LockdownReport {
    /// Empty for a dry run.
    pub incident_id: String,
    pub scope: Scope,
    pub dry_run: bool,
    pub accounts: Vec<String>,
    pub break_glass: Option<String>,
    pub ended: Ended,
    pub password_resets: Vec<String>,
    pub mfa_resets: Vec<String>,
    /// Collections whose data keys are (or would be) rotated.
    pub keys_rotated: Vec<String>,
    pub sign_in: &'static str,
    pub admin_writes_frozen: bool,
    /// What could not be done once the lockdown was in force (it holds
    /// regardless): a reset or the key rotation that failed.
    pub problems: Vec<String>,
}

/// The signed record of an incident's start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub incident: String,
    pub scope: Scope,
    pub accounts: Vec<String>,
    pub reason: String,
    pub started_at: i64,
    pub started_by: String,
    pub break_glass: Option<String>,
    pub reset_passwords: Selection,
    pub reenrol_mfa: Selection,
}

/// The signed record of a lift.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiftRecord {
    pub incident: String,
    pub lifted_at: i64,
    pub lifted_by: String,
}

/// Lockdowns: what the CLI and the admin API call.
pub struct Incidents {
    auth: Arc<AuthService>,
    data: Arc<DataService>,
    keys: Arc<AuditKeys>,
}

fn invalid(why: &str) -> Error {
    Error::InvalidIncident(why.to_owned())
}

impl Incidents {
    pub fn new(auth: Arc<AuthService>, data: Arc<DataService>, keys: Arc<AuditKeys>) -> Self {
        Self { auth, data, keys }
    }

    /// The incidents in force.
    pub async fn in_force(&self) -> Result<Vec<Incident>, Error> {
        Ok(self.auth.store().incidents_in_force().await?)
    }

    /// The deployment lockdown in force, if any.
    pub async fn lockdown(&self) -> Result<Option<Incident>, Error> {
        self.auth.deployment_lockdown().await
    }

    async fn account(&self, email: &str) -> Result<Account, Error> {
        match self.auth.account_by_email(email).await {
            Err(Error::NotFound | Error::InvalidEmail) => Err(invalid(
                "an email address given does not belong to an account",
            )),
            other => other,
        }
    }

    async fn select(
        &self,
        selection: &Selection,
        scope: Scope,
        in_scope: &[Account],
        break_glass: Option<&AccountId>,
    ) -> Result<Vec<Account>, Error> {
        let mut out = match selection {
            Selection::None => Vec::new(),
            Selection::All if scope == Scope::Accounts => in_scope.to_vec(),
            Selection::All => self.auth.store().all_accounts().await?,
            Selection::Only(emails) => {
                let mut v = Vec::new();
                for e in emails {
                    v.push(self.account(e).await?);
                }
                v
            }
        };
        out.retain(|a| Some(&a.id) != break_glass);
        out.sort_by(|a, b| a.email.as_str().cmp(b.email.as_str()));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// Carries out (or, with `dry_run`, describes) a lockdown. `by`: an
    /// administrator's account id, or `cli`. The data keys are rotated
    /// for a deployment lockdown; re-encrypting the records under the new
    /// keys is the caller's (`DataService::reseal`), as for `keys rotate`.
    /// A refused order (not a dry run) is recorded in the trail, with a
    /// stable reason.
    pub async fn begin(
        &self,
        order: &LockdownOrder,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<LockdownReport, Error> {
        let result = self.carry_out(order, by, meta).await;
        if let (Err(e), false) = (&result, order.dry_run) {
            let why = match e {
                Error::InvalidIncident(_) => "invalid_incident",
                Error::LockdownInForce => "lockdown_in_force",
                _ => "error",
            };
            self.auth
                .record_security(
                    self.event(actions::LOCKDOWN, FAILURE, "-", meta)
                        .user(Some(by))
                        .reason(Some(why)),
                )
                .await;
        }
        result
    }

    async fn carry_out(
        &self,
        order: &LockdownOrder,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<LockdownReport, Error> {
        let too_many = |s: &Selection| matches!(s, Selection::Only(v) if v.len() > MAX_ACCOUNTS);
        if order.accounts.len() > MAX_ACCOUNTS
            || too_many(&order.reset_passwords)
            || too_many(&order.reenrol_mfa)
        {
            return Err(invalid("at most 10000 accounts in one order"));
        }
        let reason: String = order.reason.trim().chars().take(MAX_REASON).collect();
        if reason.is_empty() || reason.chars().any(char::is_control) {
            return Err(invalid(
                "give a reason: one line saying why (it goes into the signed record)",
            ));
        }
        let scope = if order.accounts.is_empty() {
            Scope::Deployment
        } else {
            Scope::Accounts
        };
        let mut accounts = Vec::new();
        for e in &order.accounts {
            accounts.push(self.account(e).await?);
        }
        accounts.sort_by(|a, b| a.email.as_str().cmp(b.email.as_str()));
        accounts.dedup_by(|a, b| a.id == b.id);
        let break_glass = match &order.break_glass {
            Some(e) => {
                let a = self.account(e).await?;
                if a.role != Role::Admin {
                    return Err(invalid("the break-glass account must be an administrator"));
                }
                if scope == Scope::Accounts {
                    return Err(invalid(
                        "a break-glass administrator is for a deployment lockdown; an account lockdown leaves everyone else alone",
                    ));
                }
                Some(a)
            }
            None => None,
        };
        let bg = break_glass.as_ref().map(|a| &a.id);
        let store = self.auth.store();
        if scope == Scope::Deployment && !order.dry_run && self.lockdown().await?.is_some() {
            return Err(Error::LockdownInForce);
        }
        let ids: Vec<AccountId> = accounts.iter().map(|a| a.id.clone()).collect();
        let mut password_resets = self
            .select(&order.reset_passwords, scope, &accounts, bg)
            .await?;
        let mfa_resets = self
            .select(&order.reenrol_mfa, scope, &accounts, bg)
            .await?;
        // An administrator whose factors are removed while administrators
        // may still sign in would be one stolen password away from an
        // attacker's own factor: their password is reset too.
        for a in &mfa_resets {
            if a.role == Role::Admin && !password_resets.iter().any(|p| p.id == a.id) {
                password_resets.push(a.clone());
            }
        }
        if scope == Scope::Accounts {
            if let Some(lockdown) = self.lockdown().await? {
                if lockdown
                    .break_glass
                    .as_ref()
                    .is_some_and(|b| accounts.iter().any(|a| &a.id == b))
                {
                    return Err(invalid(
                        "the break-glass administrator cannot be locked out while the deployment is locked down",
                    ));
                }
            }
        }
        // What a dry run reports is counted; a real lockdown reports what
        // its transaction and the rotation did.
        let (ended, keys_rotated) = if order.dry_run {
            let keys = if scope == Scope::Deployment {
                self.data
                    .collections()
                    .await?
                    .into_iter()
                    .map(|c| c.name)
                    .collect()
            } else {
                Vec::new()
            };
            (store.lockdown_reach(scope, &ids, bg).await?, keys)
        } else {
            (Ended::default(), Vec::new())
        };
        let emails = |v: &[Account]| -> Vec<String> {
            v.iter().map(|a| a.email.as_str().to_owned()).collect()
        };
        let mut report = LockdownReport {
            incident_id: String::new(),
            scope,
            dry_run: order.dry_run,
            accounts: emails(&accounts),
            break_glass: break_glass.as_ref().map(|a| a.email.as_str().to_owned()),
            ended,
            password_resets: emails(&password_resets),
            mfa_resets: emails(&mfa_resets),
            keys_rotated,
            sign_in: match scope {
                Scope::Deployment => {
                    "administrators only; only the break-glass one acts on the incident"
                }
                Scope::Accounts => "refused to these accounts",
            },
            admin_writes_frozen: scope == Scope::Deployment,
            problems: Vec::new(),
        };
        if order.dry_run {
            return Ok(report);
        }

        let now = self.auth.clock().now();
        let id = format!(
            "inc_{}",
            crate::crypto_random_id(self.auth.entropy().as_ref())
        );
        let record = Record {
            incident: id.clone(),
            scope,
            accounts: report.accounts.clone(),
            reason: reason.clone(),
            started_at: now.millis(),
            started_by: by.to_owned(),
            break_glass: report.break_glass.clone(),
            reset_passwords: order.reset_passwords.clone(),
            reenrol_mfa: order.reenrol_mfa.clone(),
        };
        let signed = self.sign(&record)?;
        let incident = Incident {
            id: id.clone(),
            scope,
            accounts: ids,
            reason: reason.clone(),
            started_at: now,
            started_by: by.to_owned(),
            break_glass: bg.cloned(),
            record: signed,
            lifted_at: None,
            lifted_by: None,
            lift_record: None,
        };
        let ended = match store.begin_incident(&incident).await {
            Ok(e) => e,
            Err(StoreError::Conflict) => return Err(Error::LockdownInForce),
            Err(e) => return Err(e.into()),
        };
        report.incident_id = id.clone();
        report.ended = ended;
        self.auth
            .record_security(
                self.event(actions::LOCKDOWN, SUCCESS, &id, meta)
                    .reason(Some(&reason))
                    .user(Some(by))
                    .field("incident.scope", scope.as_str())
                    .field("incident.accounts", report.accounts.len() as u64)
                    .field("incident.sessions_ended", ended.sessions)
                    .field("incident.api_keys_revoked", ended.api_keys)
                    .field("incident.pending_sign_ins_ended", ended.pending_sign_ins),
            )
            .await;
        // The lockdown holds from here on: what follows is done as far as
        // it can be, and what failed is reported, not taken for a refusal.
        // Problems name what was not done; the detail goes to the log only.
        let mut failed = |what: String, e: &Error| {
            tracing::warn!(error = %e, incident = %id, "{what} failed");
            report
                .problems
                .push(format!("{what} failed (see the server log)"));
        };
        if !password_resets.is_empty() && !self.auth.can_email() {
            failed(
                "password resets (no email delivery is configured, so no owner could get a code: \
                 configure [smtp], or use notifier = \"log\" and read outbox.log, then order them again)"
                    .into(),
                &Error::DeliveryFailed,
            );
        } else if !password_resets.is_empty() {
            match self.auth.unusable_hash().await {
                Ok(unusable) => {
                    for a in &password_resets {
                        if let Err(e) = self.force_reset(a, &id, &unusable).await {
                            failed(format!("password reset of {}", a.email.as_str()), &e);
                        }
                    }
                }
                Err(e) => failed("password resets".into(), &e),
            }
        }
        let mut factors_reset = Vec::new();
        for a in &mfa_resets {
            match self
                .auth
                .reset_mfa(&a.id, &format!("incident {id}"), meta)
                .await
            {
                Ok(()) => factors_reset.push(a.email.as_str().to_owned()),
                // The caller's own factors: `reset_mfa` refuses, by design.
                Err(Error::SelfReset) => {}
                Err(e) => failed(format!("second-factor reset of {}", a.email.as_str()), &e),
            }
        }
        if scope == Scope::Deployment {
            match self.data.rotate_data_keys().await {
                Ok(rotated) => report.keys_rotated = rotated.into_iter().map(|(c, _)| c).collect(),
                Err(e) => failed("data key rotation (run `rampart keys rotate`)".into(), &e),
            }
        }
        report.mfa_resets = factors_reset;
        Ok(report)
    }

    /// Lifts `id`, or the deployment lockdown when `id` is `None`.
    pub async fn lift(
        &self,
        id: Option<&str>,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<Incident, Error> {
        let incident = match id {
            Some(id) => self.auth.store().incident(id).await?,
            None => self.lockdown().await?,
        }
        .filter(|i| i.lifted_at.is_none())
        .ok_or(Error::NotFound)?;
        let now = self.auth.clock().now();
        let signed = self.sign(&LiftRecord {
            incident: incident.id.clone(),
            lifted_at: now.millis(),
            lifted_by: by.to_owned(),
        })?;
        if !self
            .auth
            .store()
            .lift_incident(&incident, now, by, &signed)
            .await?
        {
            return Err(Error::NotFound);
        }
        self.auth
            .record_security(
                self.event(actions::LIFTED, SUCCESS, &incident.id, meta)
                    .user(Some(by))
                    .field("incident.scope", incident.scope.as_str()),
            )
            .await;
        Ok(Incident {
            lifted_at: Some(now),
            lifted_by: Some(by.to_owned()),
            lift_record: Some(signed),
            ..incident
        })
    }

    fn event(&self, action: &str, outcome: &'static str, id: &str, meta: &RequestMeta) -> Event {
        Event::new(
            self.auth.clock().now(),
            action,
            Category::Configuration,
            outcome,
        )
        .severity(Severity::High)
        .object(id)
        .meta(meta)
    }

    fn sign<T: Serialize>(&self, record: &T) -> Result<String, Error> {
        let text = serde_json::to_string(record)
            .map_err(|e| Error::Internal(format!("incident record: {e}")))?;
        self.keys
            .sign_note(&format!("{text}\n"))
            .map_err(|e| Error::Internal(format!("incident record: {e}")))
    }

    /// The password stops working now; the owner is mailed a code to
    /// choose a new one.
    async fn force_reset(
        &self,
        account: &Account,
        incident: &str,
        unusable: &str,
    ) -> Result<(), Error> {
        let code = rampart_crypto::random_token(self.auth.entropy().as_ref(), 32);
        let expires = self.auth.clock().now().plus(RESET_TTL);
        self.auth
            .store()
            .force_password_reset(
                &account.id,
                unusable,
                &TokenHash::of(&code).0,
                "incident",
                expires,
            )
            .await?;
        self.auth.send_notice(
            account,
            "Choose a new password",
            format!(
                "Because of a security incident ({incident}), your password was turned off and every \
                 session of your account ended. Choose a new password with this code (single use, valid \
                 for {} hours):\n\n{}\n\nSend it with your new password to POST /api/v1/auth/password-reset/confirm \
                 as {{\"token\": \"…\", \"new_password\": \"…\"}}. Your second factor, if you have one, is \
                 still asked for when you sign in.\n",
                RESET_TTL.as_secs() / 3600,
                code.expose_secret()
            ),
        );
        Ok(())
    }
}

/// The domain of drill accounts' addresses: reserved (RFC 2606), so no
/// message to one is ever delivered.
pub const DRILL_DOMAIN: &str = "drill.rampart.invalid";

impl AuthService {
    /// A drill's account (an ordinary member, under [`DRILL_DOMAIN`]).
    pub async fn create_drill_account(
        &self,
        local: &str,
        password: &SecretString,
    ) -> Result<Account, Error> {
        self.create_account(
            &format!("{local}@{DRILL_DOMAIN}"),
            password,
            None,
            Role::Member,
        )
        .await
    }

    /// Removes a drill's account, and only one: its address must be under
    /// [`DRILL_DOMAIN`].
    pub async fn delete_drill_account(
        &self,
        account: &Account,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if !account
            .email
            .as_str()
            .ends_with(&format!("@{DRILL_DOMAIN}"))
        {
            return Err(Error::Forbidden);
        }
        self.unlock(&account.id, "drill clean-up", meta).await?;
        if !self.store().delete_drill_account(&account.id).await? {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    /// Refuses a new session (or a pending sign-in) to an account an
    /// incident in force keeps out.
    pub(crate) async fn refuse_suspended(
        &self,
        account: &Account,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if self
            .store()
            .sign_in_suspended(&account.id, account.role)
            .await?
        {
            self.failed(
                crate::events::EventKind::LoginFailure,
                "incident_lockdown",
                Some(&account.id),
                meta,
            )
            .await;
            // The answer to a wrong password: whoever tries stolen
            // passwords during a lockdown learns nothing of them.
            return Err(Error::InvalidCredentials);
        }
        Ok(())
    }

    /// The deployment lockdown in force, if any.
    pub async fn deployment_lockdown(&self) -> Result<Option<Incident>, Error> {
        Ok(self.store().deployment_lockdown().await?)
    }

    /// Refuses an administrative write while a deployment lockdown is in
    /// force (the incident's own actions ask [`Self::refuse_unless_break_glass`]).
    pub async fn refuse_frozen(&self) -> Result<(), Error> {
        if self.deployment_lockdown().await?.is_some() {
            return Err(Error::LockdownFrozen);
        }
        Ok(())
    }

    /// Refuses the incident's own actions (lifting, lockdowns, blocks,
    /// alerts, revoking keys, resetting factors) to anyone but the
    /// break-glass administrator while a deployment lockdown is in force:
    /// other administrators may sign in and look, but a stolen
    /// administrator's sign-in cannot undo the lockdown. With no
    /// break-glass administrator, only the command line acts.
    pub async fn refuse_unless_break_glass(&self, account: &Account) -> Result<(), Error> {
        match self.deployment_lockdown().await? {
            Some(i) if i.break_glass.as_ref() != Some(&account.id) => Err(Error::BreakGlassOnly),
            _ => Ok(()),
        }
    }
}

/// Checks a signed record with the audit public key; its JSON.
pub fn check_record(note: &str, verifier_key: &str) -> Result<serde_json::Value, String> {
    let text = rampart_crypto::audit::verify_note(note, verifier_key).map_err(|e| e.to_string())?;
    serde_json::from_str(text.trim_end()).map_err(|_| "the record is not JSON".to_owned())
}
