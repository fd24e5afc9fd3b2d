//! Second factors: enrolment, the second step of a login, step-up, recovery
//! codes and resets (ADR 0006).
//!
//! One mechanism serves login and step-up: a proof ([`Proof`]) is checked
//! against the account's confirmed factors within a context (a pending
//! login, or a session), and every check is counted per account before it
//! is made, with the same store primitive that counts password guesses
//! (`Store::reserve_login_attempt`, keyed by account). Past
//! `max_failures` in `failure_window`, pending logins are voided and checks
//! stop until the window has passed.
//!
//! Invariants kept here:
//! - factor secrets (TOTP secret, phone number, passkey) are stored sealed
//!   under a key derived from the master key, never in plaintext;
//! - mfa tokens, codes and recovery codes are stored only as hashes or
//!   keyed MACs, and each is spent once (the store's delete or update
//!   decides which caller spends it);
//! - a TOTP time step, once accepted, is never accepted again;
//! - every enrolment, removal, success and failure is a security event, and
//!   the owner is told by email of factor changes, recovery-code use, resets
//!   and a right password followed by a wrong second factor.

use std::sync::Arc;
use std::time::Duration;

use rampart_crypto::{sha256_hex, Keyring, SecretBytes, SecretString, TokenHash, Verification};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid,
};
use webauthn_rs::Webauthn;

use crate::auth::{AuthService, NewSession, RequestMeta};
use crate::events::EventKind;
use crate::model::{
    Account, Challenge, ChallengePurpose, Factor, FactorKind, PendingLogin, Role, Session,
};
use crate::notify::{mask, Channel, Message, Notifier};
use crate::password_policy::normalize;
use crate::{Error, FactorId, FactorRemoval, LoginAttempt, Settle, Timestamp};

/// A pending login lives this long.
pub const MFA_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// An emailed or texted code lives this long and allows this many tries.
pub const CODE_TTL: Duration = Duration::from_secs(10 * 60);
pub const CODE_TRIES: u32 = 5;
pub const CODE_DIGITS: u32 = 6;
/// Codes to one factor: at most one per `CODE_MIN_GAP`, `CODES_PER_WINDOW`
/// per `CODE_WINDOW`.
pub const CODE_MIN_GAP: Duration = Duration::from_secs(30);
pub const CODE_WINDOW: Duration = Duration::from_secs(3600);
pub const CODES_PER_WINDOW: u32 = 5;
/// A passkey ceremony must finish within this.
pub const PASSKEY_TTL: Duration = Duration::from_secs(5 * 60);
/// Unconfirmed enrolments are deleted after this.
pub const ENROLMENT_TTL: Duration = Duration::from_secs(3600);
pub const RECOVERY_CODES: usize = 10;
const MAX_FACTOR_NAME: usize = 64;

/// The ways to prove a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Totp,
    Webauthn,
    Email,
    Sms,
    RecoveryCode,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Totp,
        Method::Webauthn,
        Method::Email,
        Method::Sms,
        Method::RecoveryCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Webauthn => "webauthn",
            Method::Email => "email",
            Method::Sms => "sms",
            Method::RecoveryCode => "recovery_code",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    fn of(kind: FactorKind) -> Method {
        match kind {
            FactorKind::Totp => Method::Totp,
            FactorKind::Webauthn => Method::Webauthn,
            FactorKind::Email => Method::Email,
            FactorKind::Sms => Method::Sms,
        }
    }

    fn kind(self) -> Option<FactorKind> {
        match self {
            Method::Totp => Some(FactorKind::Totp),
            Method::Webauthn => Some(FactorKind::Webauthn),
            Method::Email => Some(FactorKind::Email),
            Method::Sms => Some(FactorKind::Sms),
            Method::RecoveryCode => None,
        }
    }
}

/// Who must have a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    Admin,
    All,
}

#[derive(Debug, Clone)]
pub struct MfaPolicy {
    pub required_for: Vec<Requirement>,
    /// Methods that may be enrolled and used.
    pub methods: Vec<Method>,
    /// How recent a proof must be for a sensitive action.
    pub step_up_window: Duration,
    /// Failed second-factor checks per account before pending logins are
    /// voided and checks stop for `failure_window`.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// The issuer shown in authenticator apps.
    pub issuer: String,
    /// SMS codes to numbers not yet confirmed (enrolments) the whole
    /// server may send per hour, against SMS pumping. Each account and each
    /// number also gets at most 5 enrolment codes an hour.
    pub sms_enrolments_per_hour: u32,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            required_for: vec![Requirement::Admin],
            methods: Method::ALL.to_vec(),
            step_up_window: Duration::from_secs(600),
            max_failures: 5,
            failure_window: Duration::from_secs(900),
            issuer: "Rampart".to_owned(),
            sms_enrolments_per_hour: 100,
        }
    }
}

impl MfaPolicy {
    pub fn required_for(&self, role: Role) -> bool {
        self.required_for.contains(&Requirement::All)
            || (role == Role::Admin && self.required_for.contains(&Requirement::Admin))
    }

    pub fn allows(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_failures == 0 || self.failure_window.is_zero() {
            return Err("mfa: max_failures and failure_window_secs must be above 0".to_owned());
        }
        if self.step_up_window.is_zero() {
            return Err("mfa: step_up_secs must be above 0".to_owned());
        }
        if self.sms_enrolments_per_hour == 0 {
            return Err(
                "mfa: sms_enrolments_per_hour must be above 0 (remove sms from methods to turn SMS off)"
                    .to_owned(),
            );
        }
        if self.issuer.is_empty()
            || self.issuer.chars().count() > 40
            || self.issuer.contains(':')
            || self.issuer.chars().any(char::is_control)
        {
            return Err(
                "mfa: issuer must be 1 to 40 characters, without ':' (authenticator apps show it)"
                    .to_owned(),
            );
        }
        if !self.methods.iter().any(|m| *m != Method::RecoveryCode) && !self.required_for.is_empty()
        {
            return Err(
                "mfa: required_for is set but no method other than recovery_code is allowed; allow at least one of totp, webauthn, email, sms"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// What second factors need besides the store: the keys that seal factor
/// secrets, the way to send codes and notices, and the WebAuthn relying
/// party.
#[derive(Clone)]
pub struct MfaDeps {
    pub keys: Arc<Keyring>,
    pub notifier: Arc<dyn Notifier>,
    pub webauthn: Arc<Webauthn>,
}

impl std::fmt::Debug for MfaDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaDeps")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// A second-factor proof as sent by a client.
#[derive(Debug)]
pub enum Proof {
    Code(Method, SecretString),
    /// A WebAuthn assertion (`PublicKeyCredential` JSON).
    Passkey(serde_json::Value),
    /// Only for the step-up of an account with no factor.
    Password(SecretString),
}

/// What `POST /auth/login` led to.
#[derive(Debug)]
pub enum LoginOutcome {
    Session(NewSession),
    MfaRequired(PendingMfa),
}

#[derive(Debug)]
pub struct PendingMfa {
    pub token: SecretString,
    pub methods: Vec<Method>,
    pub expires_at: Timestamp,
}

/// What a challenge request produced.
#[derive(Debug)]
pub enum ChallengeSent {
    /// A code went to this (masked) address or number.
    Code { to: String, expires_at: Timestamp },
    /// Passkey options (`PublicKeyCredentialRequestOptions` or creation
    /// options) for `navigator.credentials`.
    Passkey(serde_json::Value),
}

#[derive(Debug)]
pub struct TotpEnrolment {
    pub factor_id: FactorId,
    pub secret: SecretString,
    pub uri: SecretString,
    pub qr_svg: SecretString,
}

/// The result of confirming a factor: recovery codes when it was the first.
#[derive(Debug)]
pub struct Enrolled {
    pub factor: Factor,
    pub recovery_codes: Option<Vec<SecretString>>,
}

/// Where a proof is checked.
#[derive(Debug, Clone, Copy)]
enum Context<'a> {
    /// The second step of a login; `bound` is the pending token's hash.
    Login(&'a str),
    /// A step-up in a session; `bound` is the session id.
    StepUp(&'a str),
    /// An administrator's password reset; `bound` is the code's hash. Only
    /// proofs that need no challenge (TOTP, recovery codes) are taken, and
    /// they are counted with the account's sign-in proofs.
    Reset(&'a str),
}

impl Context<'_> {
    fn bound(&self) -> &str {
        match self {
            Context::Login(b) | Context::StepUp(b) | Context::Reset(b) => b,
        }
    }

    fn code_purpose(&self) -> ChallengePurpose {
        match self {
            Context::Login(_) | Context::Reset(_) => ChallengePurpose::LoginCode,
            Context::StepUp(_) => ChallengePurpose::StepUpCode,
        }
    }

    fn passkey_purpose(&self) -> ChallengePurpose {
        match self {
            Context::Login(_) | Context::Reset(_) => ChallengePurpose::LoginPasskey,
            Context::StepUp(_) => ChallengePurpose::StepUpPasskey,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Context::Login(_) => "login",
            Context::StepUp(_) => "step_up",
            Context::Reset(_) => "password_reset",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PasskeyEnrolState {
    name: String,
    registration: PasskeyRegistration,
}

/// The failure counter of a context: per account for logins, per session
/// for step-ups (so a thief holding one session cannot, by failing
/// step-ups, pause or cancel the owner's sign-ins).
fn mfa_key(account: &crate::AccountId, ctx: Context<'_>) -> String {
    match ctx {
        Context::Login(_) | Context::Reset(_) => {
            sha256_hex(format!("rampart-mfa-v1:{}", account.as_str()).as_bytes())
        }
        Context::StepUp(session) => sha256_hex(format!("rampart-step-up-v1:{session}").as_bytes()),
    }
}

fn seal_context(id: &FactorId, kind: FactorKind) -> String {
    format!("mfa_factors:{}:{}", id.as_str(), kind.as_str())
}

/// What a code's MAC covers: where and for what it was sent. A code sent
/// to one number does not confirm another put on the same factor later.
fn code_context(
    purpose: ChallengePurpose,
    bound: &str,
    factor: &FactorId,
    destination: &str,
) -> String {
    format!(
        "code:{}:{}:{}:{}",
        purpose.as_str(),
        bound,
        factor.as_str(),
        sha256_hex(destination.as_bytes())
    )
}

fn recovery_context(account: &crate::AccountId) -> String {
    format!("recovery:{}", account.as_str())
}

fn user_uuid(account: &crate::AccountId) -> Uuid {
    let digest = sha256_hex(format!("rampart-webauthn-user-v1:{}", account.as_str()).as_bytes());
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    Uuid::from_bytes(b)
}

/// An E.164 number: `+`, then 8 to 15 digits, the first not 0.
pub fn valid_phone(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn check_factor_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.chars().count() > MAX_FACTOR_NAME
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(Error::InvalidFactorName);
    }
    Ok(())
}

/// Whole seconds from `now` until `then`, rounded up.
pub(crate) fn secs_until(now: Timestamp, then: Timestamp) -> u64 {
    u64::try_from((then.millis() - now.millis()).max(0))
        .unwrap_or(0)
        .div_ceil(1000)
}

impl AuthService {
    fn mfa(&self) -> &MfaDeps {
        &self.mfa
    }

    /// The keyring of the system key: what seals the server's own secrets
    /// (second factors, ACME keys). Open and seal each value under a
    /// context of its own.
    pub fn system_keys(&self) -> &Arc<Keyring> {
        &self.mfa.keys
    }

    /// Forgets the account's failed second factors at login (an
    /// administrator's unlock or reset).
    pub(crate) async fn clear_mfa_failures(&self, account: &crate::AccountId) -> Result<(), Error> {
        self.store()
            .clear_login_failures(&mfa_key(account, Context::Login("")))
            .await?;
        Ok(())
    }

    /// Whether the account must enrol a factor before using what its role
    /// allows (the admin API for administrators; everything for all).
    pub fn mfa_enrollment_required(&self, account: &Account) -> bool {
        !account.has_mfa && self.config().mfa.required_for(account.role)
    }

    /// Whether the session has proved itself recently enough for a
    /// sensitive action.
    pub fn step_up_fresh(&self, session: &Session) -> bool {
        let window = self.config().mfa.step_up_window;
        self.clock().now() < session.step_up_at.plus(window)
    }

    /// Whether a method can be used here: allowed by the policy and, for
    /// codes by email or SMS, deliverable by the notifier.
    fn usable(&self, method: Method) -> bool {
        self.config().mfa.allows(method)
            && method
                .kind()
                .and_then(Self::channel_of)
                .is_none_or(|c| self.mfa().notifier.supports(c))
    }

    /// The methods this server can offer now.
    pub fn usable_methods(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| self.usable(*m))
            .collect()
    }

    fn allow(&self, method: Method) -> Result<(), Error> {
        if self.usable(method) {
            Ok(())
        } else {
            Err(Error::MethodUnavailable)
        }
    }

    fn channel_of(kind: FactorKind) -> Option<Channel> {
        match kind {
            FactorKind::Email => Some(Channel::Email),
            FactorKind::Sms => Some(Channel::Sms),
            _ => None,
        }
    }

    /// Sends a security notice to the owner's email, without waiting and
    /// without failing the request: a relay that is down is logged.
    pub(crate) fn notify_owner(&self, account: &Account, subject: &str, body: String) {
        self.send_notice(
            account,
            subject,
            format!("{body}\n\nIf this was not you, change your password now and tell your administrator.\n"),
        );
    }

    /// Sends `body` as it is (it carries its own advice), like
    /// [`Self::notify_owner`].
    pub(crate) fn send_notice(&self, account: &Account, subject: &str, body: String) {
        self.send_email(account.email.as_str().to_owned(), subject, body);
    }

    /// Emails every administrator (alerts from the scanner), without
    /// waiting, like [`Self::notify_owner`].
    pub async fn alert_admins(&self, subject: &str, body: &str) {
        match self.store().admin_posture().await {
            Ok(admins) => {
                for a in admins {
                    self.send_email(a.email, subject, body.to_owned());
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list administrators for an alert"),
        }
    }

    /// Whether messages can reach an email address (SMTP, or the
    /// development outbox).
    pub(crate) fn can_email(&self) -> bool {
        self.mfa().notifier.supports(Channel::Email)
    }

    /// Emails every administrator and waits for each send: the alert
    /// deliveries, which retry what failed. No administrator, or no email
    /// delivery, is an error.
    pub async fn email_admins(&self, subject: &str, body: &str) -> Result<(), Error> {
        let notifier = self.mfa().notifier.clone();
        if !notifier.supports(Channel::Email) {
            return Err(Error::Internal("no email delivery is configured".into()));
        }
        let admins = self.store().admin_posture().await?;
        if admins.is_empty() {
            return Err(Error::Internal("there is no administrator to email".into()));
        }
        for a in admins {
            let message = Message {
                channel: Channel::Email,
                to: a.email,
                subject: subject.to_owned(),
                body: SecretString::new(body.to_owned()),
            };
            notifier
                .send(&message)
                .await
                .map_err(|e| Error::Internal(format!("email: {e}")))?;
        }
        Ok(())
    }

    pub(crate) fn send_email(&self, to: String, subject: &str, body: String) {
        let notifier = self.mfa().notifier.clone();
        if !notifier.supports(Channel::Email) {
            return;
        }
        let message = Message {
            channel: Channel::Email,
            to,
            subject: subject.to_owned(),
            body: SecretString::new(body),
        };
        self.in_background(async move {
            if let Err(e) = notifier.send(&message).await {
                tracing::warn!(error = %e, "security notice not delivered");
            }
        });
    }

    /// Runs `work` after the answer, on the set [`Self::flush_notices`]
    /// awaits: notices, and the lifecycle's address-blind requests.
    pub(crate) fn in_background(
        &self,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let Ok(mut set) = self.notices.lock() else {
            return;
        };
        // Reap the ones already done, so the set stays small.
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }

    /// Waits for the security notices still being sent (at shutdown, and
    /// before a command-line tool exits).
    pub async fn flush_notices(&self) {
        let mut set = match self.notices.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return,
        };
        while set.join_next().await.is_some() {}
    }

    async fn confirmed_factors(&self, account: &Account) -> Result<Vec<Factor>, Error> {
        let mut f = self.store().factors_of(&account.id).await?;
        f.retain(Factor::is_confirmed);
        Ok(f)
    }

    /// The methods this account can use for a second factor now.
    pub async fn methods_of(&self, account: &Account) -> Result<Vec<Method>, Error> {
        let mut methods = Vec::new();
        for f in self.confirmed_factors(account).await? {
            let m = Method::of(f.kind);
            if self.usable(m) && !methods.contains(&m) {
                methods.push(m);
            }
        }
        if self.usable(Method::RecoveryCode)
            && self.store().recovery_codes_left(&account.id).await? > 0
        {
            methods.push(Method::RecoveryCode);
        }
        Ok(methods)
    }

    /// The password was right: instead of a session, a pending login that
    /// a second factor completes.
    pub(crate) async fn begin_mfa(
        &self,
        account: &Account,
        verified_hash: &str,
    ) -> Result<PendingMfa, Error> {
        let token = rampart_crypto::random_token(self.entropy().as_ref(), 32);
        let expires_at = self.clock().now().plus(MFA_TOKEN_TTL);
        self.store()
            .insert_pending_login(&PendingLogin {
                token_hash: TokenHash::of(&token).0,
                account_id: account.id.clone(),
                password_fp: sha256_hex(verified_hash.as_bytes()),
                failures: 0,
                expires_at,
            })
            .await?;
        Ok(PendingMfa {
            token,
            methods: self.methods_of(account).await?,
            expires_at,
        })
    }

    async fn pending(&self, token: &SecretString) -> Result<(PendingLogin, Account), Error> {
        if token.expose_secret().len() > 512 {
            return Err(Error::MfaTokenInvalid);
        }
        let hash = TokenHash::of(token).0;
        let pending = self
            .store()
            .pending_login(&hash, self.clock().now())
            .await?
            .ok_or(Error::MfaTokenInvalid)?;
        let account = self
            .store()
            .account_by_id(&pending.account_id)
            .await?
            .ok_or(Error::MfaTokenInvalid)?;
        Ok((pending, account))
    }

    /// Sends a code, or starts a passkey ceremony, for a pending login.
    pub async fn login_challenge(
        &self,
        mfa_token: &SecretString,
        method: Method,
    ) -> Result<ChallengeSent, Error> {
        let (pending, account) = self.pending(mfa_token).await?;
        self.challenge(&account, method, Context::Login(&pending.token_hash))
            .await
    }

    /// Sends a code, or starts a passkey ceremony, for a step-up.
    pub async fn step_up_challenge(
        &self,
        session: &Session,
        account: &Account,
        method: Method,
    ) -> Result<ChallengeSent, Error> {
        self.challenge(account, method, Context::StepUp(session.id.as_str()))
            .await
    }

    async fn challenge(
        &self,
        account: &Account,
        method: Method,
        ctx: Context<'_>,
    ) -> Result<ChallengeSent, Error> {
        self.allow(method)?;
        let kind = method.kind().ok_or(Error::NothingToSend)?;
        let factors = self.confirmed_factors(account).await?;
        match kind {
            FactorKind::Email | FactorKind::Sms => {
                let factor = factors
                    .iter()
                    .find(|f| f.kind == kind)
                    .ok_or(Error::MethodUnavailable)?;
                self.send_code(account, factor, ctx.code_purpose(), ctx.bound(), false)
                    .await
            }
            FactorKind::Webauthn => {
                let passkeys = self.passkeys(&factors)?;
                if passkeys.is_empty() {
                    return Err(Error::MethodUnavailable);
                }
                let passkeys: Vec<Passkey> = passkeys.into_iter().map(|(_, p)| p).collect();
                let (options, state) = self
                    .mfa()
                    .webauthn
                    .start_passkey_authentication(&passkeys)
                    .map_err(|e| Error::Internal(format!("webauthn: {e}")))?;
                let state = serde_json::to_string(&state)
                    .map_err(|e| Error::Internal(format!("webauthn state: {e}")))?;
                self.store()
                    .put_challenge(&Challenge {
                        purpose: ctx.passkey_purpose(),
                        bound: ctx.bound().to_owned(),
                        account_id: account.id.clone(),
                        factor_id: None,
                        state,
                        tries: 0,
                        expires_at: self.clock().now().plus(PASSKEY_TTL),
                    })
                    .await?;
                Ok(ChallengeSent::Passkey(
                    serde_json::to_value(options)
                        .map_err(|e| Error::Internal(format!("webauthn options: {e}")))?,
                ))
            }
            FactorKind::Totp => Err(Error::NothingToSend),
        }
    }

    /// Opens every passkey among `factors`.
    fn passkeys(&self, factors: &[Factor]) -> Result<Vec<(FactorId, Passkey)>, Error> {
        let mut out = Vec::new();
        for f in factors.iter().filter(|f| f.kind == FactorKind::Webauthn) {
            let json = self.open_factor(f)?;
            let pk: Passkey = serde_json::from_slice(json.expose_secret())
                .map_err(|_| Error::Internal("stored passkey unreadable".to_owned()))?;
            out.push((f.id.clone(), pk));
        }
        Ok(out)
    }

    fn open_factor(&self, f: &Factor) -> Result<SecretBytes, Error> {
        let sealed = f
            .sealed
            .as_deref()
            .ok_or_else(|| Error::Internal("factor has no sealed value".to_owned()))?;
        self.mfa()
            .keys
            .open(&seal_context(&f.id, f.kind), sealed)
            .map_err(|_| Error::Internal("factor secret cannot be opened".to_owned()))
    }

    fn seal_factor(&self, id: &FactorId, kind: FactorKind, plaintext: &[u8]) -> String {
        self.mfa()
            .keys
            .seal(self.entropy().as_ref(), &seal_context(id, kind), plaintext)
    }

    async fn send_code(
        &self,
        account: &Account,
        factor: &Factor,
        purpose: ChallengePurpose,
        bound: &str,
        enrolling: bool,
    ) -> Result<ChallengeSent, Error> {
        let channel = Self::channel_of(factor.kind).ok_or(Error::NothingToSend)?;
        if !self.mfa().notifier.supports(channel) {
            return Err(Error::MethodUnavailable);
        }
        let to = self.destination(account, factor)?;
        let now = self.clock().now();
        if let Some(next) = self
            .store()
            .note_code_send(&factor.id, now, CODE_MIN_GAP, CODE_WINDOW, CODES_PER_WINDOW)
            .await?
        {
            return Err(Error::TooManyCodes {
                retry_after: secs_until(now, next),
            });
        }
        if enrolling {
            self.reserve_enrolment_send(account, channel, &to, now)
                .await?;
        }
        let code = rampart_crypto::random_digits(self.entropy().as_ref(), CODE_DIGITS);
        let expires_at = now.plus(CODE_TTL);
        self.store()
            .put_challenge(&Challenge {
                purpose,
                bound: bound.to_owned(),
                account_id: account.id.clone(),
                factor_id: Some(factor.id.clone()),
                state: self.mfa().keys.mac(
                    &code_context(purpose, bound, &factor.id, &to),
                    code.expose_secret(),
                ),
                tries: 0,
                expires_at,
            })
            .await?;
        let what = if enrolling {
            "confirmation"
        } else {
            "verification"
        };
        let body = SecretString::new(format!(
            "Your {issuer} {what} code is {code}. It expires in 10 minutes. Never share it.",
            issuer = self.config().mfa.issuer,
            code = code.expose_secret()
        ));
        let message = Message {
            channel,
            to: to.clone(),
            subject: format!("Your {} code", self.config().mfa.issuer),
            body,
        };
        self.mfa().notifier.send(&message).await.map_err(|e| {
            tracing::warn!(error = %e, channel = channel.as_str(), "code not delivered");
            Error::DeliveryFailed
        })?;
        Ok(ChallengeSent::Code {
            to: mask(&to),
            expires_at,
        })
    }

    /// Checks a code sent for `purpose`/`bound` to one of `candidates`;
    /// the factor it went to when right. Each code allows [`CODE_TRIES`]
    /// tries (a wrong method counts as a try) and is spent once.
    async fn check_code(
        &self,
        account: &Account,
        purpose: ChallengePurpose,
        bound: &str,
        code: &SecretString,
        candidates: &[&Factor],
    ) -> Result<Option<FactorId>, Error> {
        let now = self.clock().now();
        let Some(c) = self.store().try_challenge(purpose, bound, now).await? else {
            return Ok(None);
        };
        let Some(factor) = candidates
            .iter()
            .find(|f| Some(&f.id) == c.factor_id.as_ref())
        else {
            return Ok(None);
        };
        if c.tries > CODE_TRIES {
            return Ok(None);
        }
        let destination = match self.destination(account, factor) {
            Ok(d) => d,
            Err(e) => {
                // A factor that cannot be opened accepts no code.
                tracing::error!(error = %e, "factor unreadable; code refused");
                return Ok(None);
            }
        };
        let context = code_context(purpose, bound, &factor.id, &destination);
        let typed = code.expose_secret().trim();
        if !self.mfa().keys.mac_matches(&context, typed, &c.state) {
            return Ok(None);
        }
        Ok(self
            .store()
            .spend_challenge(purpose, bound, &c.state)
            .await?
            .then(|| factor.id.clone()))
    }

    /// Where a factor's codes go: the account's email, or the sealed phone.
    fn destination(&self, account: &Account, factor: &Factor) -> Result<String, Error> {
        match factor.kind {
            FactorKind::Sms => {
                String::from_utf8(self.open_factor(factor)?.expose_secret().to_vec())
                    .map_err(|_| Error::Internal("stored phone unreadable".to_owned()))
            }
            _ => Ok(account.email.as_str().to_owned()),
        }
    }

    /// Counts a code to an address nobody has proved yet (an enrolment)
    /// against the limits that stop SMS pumping and code spraying: per
    /// account, per address (whichever accounts ask), and, for SMS, for the
    /// whole server, in fixed one-hour windows. Codes to confirmed factors
    /// (sign-in, step-up) are not counted here, so nobody can use up the
    /// budget another user's sign-in needs.
    async fn reserve_enrolment_send(
        &self,
        account: &Account,
        channel: Channel,
        to: &str,
        now: Timestamp,
    ) -> Result<(), Error> {
        let keys = &self.mfa().keys;
        let mut limits = vec![
            (
                keys.mac("send:account", account.id.as_str()),
                CODES_PER_WINDOW,
            ),
            // Keyed, so the table does not say which addresses were used.
            (keys.mac("send:to", to), CODES_PER_WINDOW),
        ];
        if channel == Channel::Sms {
            limits.push((
                "rampart-sms-enrolments".to_owned(),
                self.config().mfa.sms_enrolments_per_hour,
            ));
        }
        for (key, max) in limits {
            if let Some(next) = self.store().count_send(&key, now, CODE_WINDOW, max).await? {
                return Err(Error::TooManyCodes {
                    retry_after: secs_until(now, next).max(1),
                });
            }
        }
        Ok(())
    }

    /// Checks a proof against the account's confirmed factors. `Ok(None)`
    /// is a wrong proof; errors are faults or refusals (method not allowed
    /// or not enrolled).
    async fn check_proof(
        &self,
        account: &Account,
        proof: &Proof,
        ctx: Context<'_>,
    ) -> Result<Option<Method>, Error> {
        let now = self.clock().now();
        match proof {
            Proof::Password(_) => Err(Error::MethodUnavailable),
            Proof::Code(Method::RecoveryCode, code) => {
                self.allow(Method::RecoveryCode)?;
                let Some(code) = rampart_crypto::normalize_recovery_code(code.expose_secret())
                else {
                    return Ok(None);
                };
                // Stored under whichever key made it (keys rotate).
                for mac in self
                    .mfa()
                    .keys
                    .macs(&recovery_context(&account.id), code.expose_secret())
                {
                    if self
                        .store()
                        .use_recovery_code(&account.id, &mac, now)
                        .await?
                    {
                        return Ok(Some(Method::RecoveryCode));
                    }
                }
                Ok(None)
            }
            Proof::Code(Method::Totp, code) => {
                self.allow(Method::Totp)?;
                let factors = self.confirmed_factors(account).await?;
                let factor = factors
                    .iter()
                    .find(|f| f.kind == FactorKind::Totp)
                    .ok_or(Error::MethodUnavailable)?;
                if self.totp_accepts(factor, code).await? {
                    Ok(Some(Method::Totp))
                } else {
                    Ok(None)
                }
            }
            Proof::Code(method @ (Method::Email | Method::Sms), code) => {
                self.allow(*method)?;
                let factors = self.confirmed_factors(account).await?;
                let factor = factors
                    .iter()
                    .find(|f| Method::of(f.kind) == *method)
                    .ok_or(Error::MethodUnavailable)?;
                if self
                    .check_code(account, ctx.code_purpose(), ctx.bound(), code, &[factor])
                    .await?
                    .is_none()
                {
                    return Ok(None);
                }
                self.store().factor_used(&factor.id, now, None).await?;
                Ok(Some(*method))
            }
            Proof::Code(Method::Webauthn, _) => Err(Error::MethodUnavailable),
            Proof::Passkey(assertion) => {
                self.allow(Method::Webauthn)?;
                let Ok(credential) =
                    serde_json::from_value::<PublicKeyCredential>(assertion.clone())
                else {
                    return Ok(None);
                };
                let Some(c) = self
                    .store()
                    .take_challenge(ctx.passkey_purpose(), ctx.bound(), now)
                    .await?
                else {
                    return Ok(None);
                };
                let state: PasskeyAuthentication = serde_json::from_str(&c.state)
                    .map_err(|e| Error::Internal(format!("webauthn state: {e}")))?;
                let Ok(result) = self
                    .mfa()
                    .webauthn
                    .finish_passkey_authentication(&credential, &state)
                else {
                    return Ok(None);
                };
                let factors = self.confirmed_factors(account).await?;
                for (id, mut pk) in self.passkeys(&factors)? {
                    if pk.cred_id() == result.cred_id() {
                        let resealed = pk.update_credential(&result).and_then(|_| {
                            serde_json::to_vec(&pk)
                                .ok()
                                .map(|json| self.seal_factor(&id, FactorKind::Webauthn, &json))
                        });
                        self.store()
                            .factor_used(&id, now, resealed.as_deref())
                            .await?;
                        return Ok(Some(Method::Webauthn));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Whether `code` is the factor's TOTP code for now (± one step) and
    /// its step was not used before; the step is then used up.
    async fn totp_accepts(&self, factor: &Factor, code: &SecretString) -> Result<bool, Error> {
        let secret = self.open_factor(factor)?;
        let now = self.clock().now();
        let unix = u64::try_from(now.millis() / 1000).unwrap_or(0);
        let Some(step) = rampart_crypto::totp_step_of(&secret, unix, code.expose_secret().trim())
        else {
            return Ok(false);
        };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        Ok(self.store().accept_totp_step(&factor.id, step, now).await?)
    }

    /// Counts a check before it is made: per account for logins, per
    /// session for step-ups.
    async fn reserve_mfa_check(
        &self,
        account: &Account,
        ctx: Context<'_>,
    ) -> Result<(String, u32, Timestamp), Error> {
        let policy = &self.config().mfa;
        let (max, window) = (policy.max_failures, policy.failure_window);
        let key = mfa_key(&account.id, ctx);
        let now = self.clock().now();
        let block = move |n: u32| (n >= max).then_some(window);
        let mut attempt = self
            .store()
            .reserve_login_attempt(&key, now, now.minus(window), &block)
            .await?;
        if matches!(attempt, LoginAttempt::Allowed { failures } if failures > max) {
            // Counted past the limit only once the block it set is over: the
            // pause was served, so counting starts again.
            self.store().clear_login_failures(&key).await?;
            attempt = self
                .store()
                .reserve_login_attempt(&key, now, now.minus(window), &block)
                .await?;
        }
        match attempt {
            LoginAttempt::Allowed { failures } if failures <= max => Ok((key, failures, now)),
            _ => {
                if matches!(ctx, Context::Login(_)) {
                    self.store().void_pending_logins(&account.id).await?;
                }
                Err(Error::MfaLocked {
                    retry_after: window.as_secs(),
                })
            }
        }
    }

    /// After a wrong proof: at the limit, checks pause, and for a login the
    /// account's pending sign-ins are cancelled; recorded either way.
    async fn note_failure(
        &self,
        account: &Account,
        ctx: Context<'_>,
        count: u32,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if count < self.config().mfa.max_failures {
            return Ok(());
        }
        let reason = match ctx {
            Context::Login(_) => {
                self.store().void_pending_logins(&account.id).await?;
                "failed_second_factor"
            }
            Context::StepUp(_) => "failed_step_up",
            Context::Reset(_) => "failed_reset_factor",
        };
        self.noted(EventKind::MfaLocked, Some(reason), &account.id, meta)
            .await;
        Ok(())
    }

    /// Checks a proof, counted against the account's limit, with events.
    async fn verify(
        &self,
        account: &Account,
        proof: &Proof,
        ctx: Context<'_>,
        meta: &RequestMeta,
    ) -> Result<Method, Error> {
        let (key, count, at) = self.reserve_mfa_check(account, ctx).await?;
        let checked = self.check_proof(account, proof, ctx).await;
        let label = |m: &str| format!("{}:{m}", ctx.label());
        let method = match checked {
            Ok(Some(m)) => m,
            Ok(None) => {
                let m = match proof {
                    Proof::Code(m, _) => m.as_str(),
                    Proof::Passkey(_) => "webauthn",
                    Proof::Password(_) => "password",
                };
                self.failed(EventKind::MfaFailure, &label(m), Some(&account.id), meta)
                    .await;
                self.note_failure(account, ctx, count, meta).await?;
                return Err(Error::InvalidMfaCode);
            }
            Err(e) => {
                // Not a guess: a refusal (method not enrolled) or a fault.
                self.settle_attempt(&key, count, at, Settle::Uncount).await;
                return Err(e);
            }
        };
        self.settle_attempt(&key, count, at, Settle::Forget).await;
        self.noted(
            EventKind::MfaSuccess,
            Some(&label(method.as_str())),
            &account.id,
            meta,
        )
        .await;
        if method == Method::RecoveryCode {
            let left = self.store().recovery_codes_left(&account.id).await?;
            self.noted(
                EventKind::RecoveryCodeUsed,
                Some(&format!("{left}_left")),
                &account.id,
                meta,
            )
            .await;
            self.notify_owner(
                account,
                "A recovery code was used",
                format!(
                    "A recovery code was just used to sign in to your account{}. {left} unused codes are left; generate new ones when few remain.",
                    meta.ip.as_deref().map(|ip| format!(" from {ip}")).unwrap_or_default()
                ),
            );
        }
        Ok(method)
    }

    /// Checks an administrator's second factor at a password reset: a TOTP
    /// code or a recovery code, counted with the account's sign-in proofs.
    pub(crate) async fn verify_for_reset(
        &self,
        account: &Account,
        proof: &Proof,
        code_hash: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if !matches!(proof, Proof::Code(Method::Totp | Method::RecoveryCode, _)) {
            return Err(Error::MethodUnavailable);
        }
        self.verify(account, proof, Context::Reset(code_hash), meta)
            .await
            .map(|_| ())
    }

    /// The second step of a login: a right proof turns the pending login
    /// into a session. A wrong one is counted; the owner hears of the
    /// first wrong one for each pending login.
    pub async fn complete_login(
        &self,
        mfa_token: &SecretString,
        proof: &Proof,
        meta: &RequestMeta,
    ) -> Result<NewSession, Error> {
        if matches!(proof, Proof::Password(_)) {
            return Err(Error::MethodUnavailable);
        }
        let (pending, account) = self.pending(mfa_token).await?;
        match self
            .verify(&account, proof, Context::Login(&pending.token_hash), meta)
            .await
        {
            Ok(_) => {}
            Err(Error::InvalidMfaCode) => {
                if self
                    .store()
                    .pending_login_failed(&pending.token_hash)
                    .await?
                    == Some(1)
                {
                    self.notify_owner(
                        &account,
                        "Sign-in attempt with your password",
                        format!(
                            "Someone entered your correct password{} but failed the second step of sign-in. Your account is safe, but your password is known to someone else: change it.",
                            meta.ip.as_deref().map(|ip| format!(" from {ip}")).unwrap_or_default()
                        ),
                    );
                }
                return Err(Error::InvalidMfaCode);
            }
            Err(e) => return Err(e),
        }
        let now = self.clock().now();
        let pending = self
            .store()
            .take_pending_login(&pending.token_hash, now)
            .await?
            .ok_or(Error::MfaTokenInvalid)?;
        // The password must not have changed since it was checked.
        let current = account.password_hash.expose_secret();
        if sha256_hex(current.as_bytes()) != pending.password_fp {
            return Err(Error::MfaTokenInvalid);
        }
        let Some(new) = self.start_session_at(&account, current, now, meta).await? else {
            return Err(Error::MfaTokenInvalid);
        };
        self.login_succeeded(&account, Some("mfa"), meta).await;
        Ok(new)
    }

    /// Proves the session's owner again: a factor for an account that has
    /// one, the password for one that has none.
    pub async fn step_up(
        &self,
        session: &Session,
        account: &Account,
        proof: &Proof,
        meta: &RequestMeta,
    ) -> Result<Timestamp, Error> {
        let now = self.clock().now();
        match proof {
            Proof::Password(password) => {
                if account.has_mfa {
                    return Err(Error::FactorRequired);
                }
                let ctx = Context::StepUp(session.id.as_str());
                let (key, count, at) = self.reserve_mfa_check(account, ctx).await?;
                let ok = if password.expose_secret().len() > crate::auth::MAX_PASSWORD_BYTES {
                    false
                } else {
                    match self
                        .pool()
                        .verify(
                            normalize(password),
                            account.password_hash.expose_secret().to_owned(),
                        )
                        .await
                    {
                        Ok(v) => matches!(v, Verification::Match { .. }),
                        Err(e) => {
                            // Not checked (the pool is saturated): not a guess.
                            self.settle_attempt(&key, count, at, Settle::Uncount).await;
                            return Err(e.into());
                        }
                    }
                };
                if !ok {
                    self.failed(EventKind::StepUp, "password", Some(&account.id), meta)
                        .await;
                    self.note_failure(account, ctx, count, meta).await?;
                    return Err(Error::InvalidCredentials);
                }
                self.settle_attempt(&key, count, at, Settle::Forget).await;
            }
            _ => {
                if let Err(e) = self
                    .verify(account, proof, Context::StepUp(session.id.as_str()), meta)
                    .await
                {
                    if matches!(e, Error::InvalidMfaCode) {
                        self.failed(EventKind::StepUp, "second_factor", Some(&account.id), meta)
                            .await;
                    }
                    return Err(e);
                }
            }
        }
        self.store().set_step_up(&session.id, now).await?;
        self.anchor_session(session, meta).await;
        self.noted(EventKind::StepUp, None, &account.id, meta).await;
        Ok(now.plus(self.config().mfa.step_up_window))
    }

    /// The account's factors (confirmed ones) and unused recovery codes.
    pub async fn factors(&self, account: &Account) -> Result<(Vec<Factor>, u32), Error> {
        Ok((
            self.confirmed_factors(account).await?,
            self.store().recovery_codes_left(&account.id).await?,
        ))
    }

    /// Starts TOTP enrolment: a new secret, shown once.
    pub async fn enrol_totp(&self, account: &Account) -> Result<TotpEnrolment, Error> {
        self.allow(Method::Totp)?;
        let id = FactorId::generate(self.entropy().as_ref());
        let secret = rampart_crypto::totp_secret(self.entropy().as_ref());
        let issuer = &self.config().mfa.issuer;
        let uri = rampart_crypto::totp_uri(&secret, issuer, account.email.as_str())
            .ok_or_else(|| Error::Internal("otpauth uri".to_owned()))?;
        let qr = qrcode::QrCode::new(uri.expose_secret().as_bytes())
            .map_err(|e| Error::Internal(format!("qr code: {e}")))?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build();
        let factor = Factor {
            id: id.clone(),
            account_id: account.id.clone(),
            kind: FactorKind::Totp,
            name: "Authenticator app".to_owned(),
            sealed: Some(self.seal_factor(&id, FactorKind::Totp, secret.expose_secret())),
            created_at: self.clock().now(),
            confirmed_at: None,
            last_used_at: None,
            last_step: -1,
            credential_hash: None,
        };
        // Only the newest enrolment can be confirmed; older ones go.
        for old in self.store().factors_of(&account.id).await? {
            if old.kind == FactorKind::Totp && !old.is_confirmed() {
                self.store()
                    .delete_factor(&account.id, &old.id, false)
                    .await?;
            }
        }
        self.store().insert_factor(&factor).await?;
        Ok(TotpEnrolment {
            factor_id: id,
            secret: rampart_crypto::totp_base32(&secret),
            uri,
            qr_svg: SecretString::new(qr),
        })
    }

    /// Confirms the latest TOTP enrolment with a code from the app.
    pub async fn confirm_totp(
        &self,
        session: &Session,
        account: &Account,
        code: &SecretString,
        meta: &RequestMeta,
    ) -> Result<Enrolled, Error> {
        let factors = self.store().factors_of(&account.id).await?;
        let factor = factors
            .iter()
            .rev()
            .find(|f| f.kind == FactorKind::Totp && !f.is_confirmed())
            .ok_or(Error::NoPendingEnrolment)?;
        if !self.totp_accepts(factor, code).await? {
            self.failed(EventKind::MfaFailure, "enrol:totp", Some(&account.id), meta)
                .await;
            return Err(Error::InvalidMfaCode);
        }
        self.finish_enrolment(session, account, factor.clone(), meta)
            .await
    }

    /// Starts email or SMS enrolment: a code goes to the address (the
    /// account's email) or to `phone`.
    pub async fn enrol_code_factor(
        &self,
        session: &Session,
        account: &Account,
        kind: FactorKind,
        phone: Option<&str>,
    ) -> Result<ChallengeSent, Error> {
        self.allow(Method::of(kind))?;
        Self::channel_of(kind).ok_or(Error::MethodUnavailable)?;
        let (name, sealed_value) = match kind {
            FactorKind::Sms => {
                let phone = phone.ok_or(Error::InvalidPhone)?;
                if !valid_phone(phone) {
                    return Err(Error::InvalidPhone);
                }
                (format!("SMS to {}", mask(phone)), Some(phone.to_owned()))
            }
            _ => (format!("Email to {}", mask(account.email.as_str())), None),
        };
        // One pending enrolment per kind, reused: its send limits carry over
        // to the next attempt, so enrolment cannot be used to spray codes.
        let existing = self
            .store()
            .factors_of(&account.id)
            .await?
            .into_iter()
            .rev()
            .find(|f| f.kind == kind && !f.is_confirmed());
        let factor = match existing {
            Some(mut f) => {
                // A new number replaces the pending one; a code sent to the
                // old number does not confirm it (the code's MAC covers the
                // number it went to).
                let sealed = sealed_value
                    .as_ref()
                    .map(|v| self.seal_factor(&f.id, kind, v.as_bytes()));
                self.store()
                    .update_pending_factor(&f.id, &name, sealed.as_deref())
                    .await?;
                f.sealed = sealed.or(f.sealed);
                f.name = name;
                f
            }
            None => {
                let id = FactorId::generate(self.entropy().as_ref());
                let f = Factor {
                    sealed: sealed_value
                        .as_ref()
                        .map(|v| self.seal_factor(&id, kind, v.as_bytes())),
                    id,
                    account_id: account.id.clone(),
                    kind,
                    name,
                    created_at: self.clock().now(),
                    confirmed_at: None,
                    last_used_at: None,
                    last_step: -1,
                    credential_hash: None,
                };
                self.store().insert_factor(&f).await?;
                f
            }
        };
        self.send_code(
            account,
            &factor,
            ChallengePurpose::EnrolCode,
            session.id.as_str(),
            true,
        )
        .await
    }

    /// Confirms an email or SMS enrolment with the code that was sent.
    pub async fn confirm_code_factor(
        &self,
        session: &Session,
        account: &Account,
        kind: FactorKind,
        code: &SecretString,
        meta: &RequestMeta,
    ) -> Result<Enrolled, Error> {
        let factors = self.store().factors_of(&account.id).await?;
        let wrong = || async {
            self.failed(
                EventKind::MfaFailure,
                &format!("enrol:{}", kind.as_str()),
                Some(&account.id),
                meta,
            )
            .await;
            Error::InvalidMfaCode
        };
        let pending: Vec<&Factor> = factors
            .iter()
            .filter(|f| f.kind == kind && !f.is_confirmed())
            .collect();
        let Some(id) = self
            .check_code(
                account,
                ChallengePurpose::EnrolCode,
                session.id.as_str(),
                code,
                &pending,
            )
            .await?
        else {
            return Err(wrong().await);
        };
        let Some(factor) = factors.into_iter().find(|f| f.id == id) else {
            return Err(wrong().await);
        };
        self.finish_enrolment(session, account, factor, meta).await
    }

    /// Starts registering a passkey named `name`.
    pub async fn enrol_passkey(
        &self,
        session: &Session,
        account: &Account,
        name: &str,
    ) -> Result<serde_json::Value, Error> {
        self.allow(Method::Webauthn)?;
        check_factor_name(name)?;
        let factors = self.confirmed_factors(account).await?;
        let exclude: Vec<_> = self
            .passkeys(&factors)?
            .into_iter()
            .map(|(_, p)| p.cred_id().clone())
            .collect();
        let display = account
            .display_name
            .clone()
            .unwrap_or_else(|| account.email.as_str().to_owned());
        let (options, registration) = self
            .mfa()
            .webauthn
            .start_passkey_registration(
                user_uuid(&account.id),
                account.email.as_str(),
                &display,
                Some(exclude),
            )
            .map_err(|e| Error::Internal(format!("webauthn: {e}")))?;
        let state = serde_json::to_string(&PasskeyEnrolState {
            name: name.to_owned(),
            registration,
        })
        .map_err(|e| Error::Internal(format!("webauthn state: {e}")))?;
        self.store()
            .put_challenge(&Challenge {
                purpose: ChallengePurpose::EnrolPasskey,
                bound: session.id.as_str().to_owned(),
                account_id: account.id.clone(),
                factor_id: None,
                state,
                tries: 0,
                expires_at: self.clock().now().plus(PASSKEY_TTL),
            })
            .await?;
        serde_json::to_value(options).map_err(|e| Error::Internal(format!("webauthn: {e}")))
    }

    /// Finishes registering a passkey with the authenticator's response.
    pub async fn confirm_passkey(
        &self,
        session: &Session,
        account: &Account,
        credential: &serde_json::Value,
        meta: &RequestMeta,
    ) -> Result<Enrolled, Error> {
        let now = self.clock().now();
        let challenge = self
            .store()
            .take_challenge(ChallengePurpose::EnrolPasskey, session.id.as_str(), now)
            .await?
            .ok_or(Error::NoPendingEnrolment)?;
        let state: PasskeyEnrolState = serde_json::from_str(&challenge.state)
            .map_err(|e| Error::Internal(format!("webauthn state: {e}")))?;
        let passkey = serde_json::from_value::<RegisterPublicKeyCredential>(credential.clone())
            .ok()
            .and_then(|c| {
                self.mfa()
                    .webauthn
                    .finish_passkey_registration(&c, &state.registration)
                    .ok()
            });
        let Some(passkey) = passkey else {
            self.failed(
                EventKind::MfaFailure,
                "enrol:webauthn",
                Some(&account.id),
                meta,
            )
            .await;
            return Err(Error::InvalidMfaCode);
        };
        let id = FactorId::generate(self.entropy().as_ref());
        let json =
            serde_json::to_vec(&passkey).map_err(|e| Error::Internal(format!("passkey: {e}")))?;
        let factor = Factor {
            sealed: Some(self.seal_factor(&id, FactorKind::Webauthn, &json)),
            id,
            account_id: account.id.clone(),
            kind: FactorKind::Webauthn,
            name: state.name,
            created_at: now,
            confirmed_at: None,
            last_used_at: None,
            last_step: -1,
            credential_hash: Some(sha256_hex(passkey.cred_id().as_ref())),
        };
        match self.store().insert_factor(&factor).await {
            Ok(()) => {}
            // This authenticator's credential is registered already (to
            // this account or another).
            Err(crate::StoreError::Conflict) => return Err(Error::PasskeyRegistered),
            Err(e) => return Err(e.into()),
        }
        self.finish_enrolment(session, account, factor, meta).await
    }

    /// Confirms a factor. A factor replacing another of its kind is
    /// recorded (and told) as that one's removal too. The account's first
    /// factor brings recovery codes and ends every other session: sessions
    /// opened with the password alone, perhaps by whoever made the owner
    /// turn on a second factor, do not outlive it.
    async fn finish_enrolment(
        &self,
        session: &Session,
        account: &Account,
        mut factor: Factor,
        meta: &RequestMeta,
    ) -> Result<Enrolled, Error> {
        let now = self.clock().now();
        let Some(done) = self
            .store()
            .confirm_factor(
                &account.id,
                &factor.id,
                factor.sealed.as_deref(),
                now,
                &session.id,
            )
            .await?
        else {
            return Err(Error::NoPendingEnrolment);
        };
        factor.confirmed_at = Some(now);
        let kind = factor.kind.as_str();
        self.noted(EventKind::MfaEnrolled, Some(kind), &account.id, meta)
            .await;
        if done.replaced > 0 {
            self.noted(
                EventKind::MfaRemoved,
                Some(&format!("{kind}:replaced")),
                &account.id,
                meta,
            )
            .await;
        }
        self.notify_owner(
            account,
            "A second factor was added to your account",
            format!(
                "A second factor ({kind}: {}) was added to your account{}.",
                factor.name,
                if done.replaced > 0 {
                    ", replacing the one of that kind you had"
                } else {
                    ""
                }
            ),
        );
        if done.sessions_ended > 0 {
            self.noted(
                EventKind::SessionRevoked,
                Some("mfa_enabled"),
                &account.id,
                meta,
            )
            .await;
        }
        let recovery_codes = if done.first {
            Some(self.new_recovery_codes(account, meta).await?)
        } else {
            None
        };
        Ok(Enrolled {
            factor,
            recovery_codes,
        })
    }

    async fn new_recovery_codes(
        &self,
        account: &Account,
        meta: &RequestMeta,
    ) -> Result<Vec<SecretString>, Error> {
        let codes: Vec<SecretString> = (0..RECOVERY_CODES)
            .map(|_| rampart_crypto::recovery_code(self.entropy().as_ref()))
            .collect();
        let ctx = recovery_context(&account.id);
        let macs: Vec<String> = codes
            .iter()
            .map(|c| self.mfa().keys.mac(&ctx, c.expose_secret()))
            .collect();
        self.store()
            .replace_recovery_codes(&account.id, &macs)
            .await?;
        self.noted(EventKind::RecoveryCodesGenerated, None, &account.id, meta)
            .await;
        Ok(codes)
    }

    /// Replaces every recovery code with ten new ones, shown once.
    pub async fn regenerate_recovery_codes(
        &self,
        account: &Account,
        meta: &RequestMeta,
    ) -> Result<Vec<SecretString>, Error> {
        if !account.has_mfa {
            return Err(Error::MfaNotEnabled);
        }
        self.allow(Method::RecoveryCode)?;
        let codes = self.new_recovery_codes(account, meta).await?;
        self.notify_owner(
            account,
            "New recovery codes",
            "New recovery codes were generated for your account; the old ones no longer work."
                .to_owned(),
        );
        Ok(codes)
    }

    /// Removes one of the account's factors. The last one is kept when the
    /// account's role requires a second factor.
    pub async fn remove_factor(
        &self,
        account: &Account,
        id: &FactorId,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let keep_last = self.config().mfa.required_for(account.role);
        match self
            .store()
            .delete_factor(&account.id, id, keep_last)
            .await?
        {
            FactorRemoval::NotFound => Err(Error::NotFound),
            FactorRemoval::LastFactor => Err(Error::LastFactor),
            FactorRemoval::Deleted(kind) => {
                self.noted(
                    EventKind::MfaRemoved,
                    Some(kind.as_str()),
                    &account.id,
                    meta,
                )
                .await;
                self.notify_owner(
                    account,
                    "A second factor was removed from your account",
                    format!(
                        "A second factor ({}) was removed from your account.",
                        kind.as_str()
                    ),
                );
                Ok(())
            }
        }
    }

    /// Removes every factor and recovery code of an account that lost them
    /// all, and ends its sessions; recorded and told to the owner. `by` is
    /// the administrator's account id or `cli`.
    pub async fn reset_mfa(
        &self,
        target: &crate::AccountId,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let account = self
            .store()
            .account_by_id(target)
            .await?
            .ok_or(Error::NotFound)?;
        if account.id.as_str() == by {
            // Removing one's own last factor this way would let a stolen
            // administrator session trade the factor for the password alone.
            return Err(Error::SelfReset);
        }
        self.store().reset_mfa(&account.id).await?;
        self.clear_mfa_failures(&account.id).await?;
        self.noted(
            EventKind::MfaReset,
            Some(&format!("by {by}")),
            &account.id,
            meta,
        )
        .await;
        self.notify_owner(
            &account,
            "Your second factors were reset",
            "An administrator removed every second factor and recovery code from your account and signed out all its sessions. Sign in with your password and set up a second factor again."
                .to_owned(),
        );
        Ok(())
    }

    /// Checks that the master key is the one this database's sealed values
    /// were made with, recording it on a fresh database. Several nodes on
    /// one database must share one key; a node with another one must not
    /// start (it could read no factor, and would seal what others cannot).
    pub async fn verify_master_key(&self) -> Result<(), Error> {
        const CONTEXT: &str = "key_check";
        let keys = &self.mfa().keys;
        let mut checks = self.store().key_checks().await?;
        if checks.is_empty() {
            // One row: if another node wrote it first, its value is read
            // back below and must open with this key too.
            let sealed = keys.seal(self.entropy().as_ref(), CONTEXT, b"rampart");
            self.store()
                .add_first_key_check(keys.current_key_id(), &sealed, self.clock().now())
                .await?;
            checks = self.store().key_checks().await?;
        }
        if !checks.is_empty() && checks.iter().all(|c| keys.open(CONTEXT, c).is_ok()) {
            Ok(())
        } else {
            Err(Error::MasterKeyMismatch)
        }
    }

    /// Re-seals every factor's secret and the key check with the current
    /// system key (after an upgrade, they were sealed with the old master
    /// key, now an older key of the ring). Each row is replaced only if
    /// unchanged meanwhile. Returns how many were re-sealed.
    pub async fn reseal_factors(&self) -> Result<u64, Error> {
        const CONTEXT: &str = "key_check";
        let keys = &self.mfa().keys;
        let mut n = 0;
        for (id, kind, sealed) in self.store().sealed_factors().await? {
            let Some(kind) = FactorKind::parse(&kind) else {
                continue;
            };
            let ctx = seal_context(&id, kind);
            if sealed.split('.').nth(1) == Some(keys.current_key_id()) {
                continue;
            }
            let plain = keys
                .open(&ctx, &sealed)
                .map_err(|_| Error::Internal(format!("factor {id} does not open")))?;
            let new = keys.seal(self.entropy().as_ref(), &ctx, plain.expose_secret());
            n += u64::from(self.store().reseal_factor(&id, &sealed, &new).await?);
        }
        for old in self.store().key_checks().await? {
            if old.split('.').nth(1) == Some(keys.current_key_id()) {
                continue;
            }
            if let Ok(plain) = keys.open(CONTEXT, &old) {
                let new = keys.seal(self.entropy().as_ref(), CONTEXT, plain.expose_secret());
                n += u64::from(
                    self.store()
                        .reseal_key_check(keys.current_key_id(), &old, &new)
                        .await?,
                );
            }
        }
        Ok(n)
    }

    /// Deletes expired challenges and pending logins, and stale enrolments.
    pub async fn purge_mfa(&self) -> Result<u64, Error> {
        let now = self.clock().now();
        Ok(self
            .store()
            .purge_mfa(now, now.minus(ENROLMENT_TTL))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_e164() {
        assert!(valid_phone("+447700900123"));
        assert!(valid_phone("+14155550100"));
        assert!(!valid_phone("447700900123"));
        assert!(!valid_phone("+0447700900"));
        assert!(!valid_phone("+44 7700 900123"));
        assert!(!valid_phone("+1234567"));
        assert!(!valid_phone("+1234567890123456"));
    }

    #[test]
    fn policy_requires_by_role() {
        let p = MfaPolicy::default();
        assert!(p.required_for(Role::Admin));
        assert!(!p.required_for(Role::Member));
        let all = MfaPolicy {
            required_for: vec![Requirement::All],
            ..MfaPolicy::default()
        };
        assert!(all.required_for(Role::Member));
        let none = MfaPolicy {
            required_for: vec![],
            methods: vec![Method::RecoveryCode],
            ..MfaPolicy::default()
        };
        assert!(!none.required_for(Role::Admin));
        assert!(none.validate().is_ok());
        let unusable = MfaPolicy {
            methods: vec![Method::RecoveryCode],
            ..MfaPolicy::default()
        };
        assert!(unusable.validate().is_err());
    }

    #[test]
    fn user_handles_are_stable_and_distinct() {
        let a = crate::AccountId("acc_1".to_owned());
        let b = crate::AccountId("acc_2".to_owned());
        assert_eq!(user_uuid(&a), user_uuid(&a));
        assert_ne!(user_uuid(&a), user_uuid(&b));
    }
}
