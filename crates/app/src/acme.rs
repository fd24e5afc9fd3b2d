//! Certificates from an ACME CA (RFC 8555; ADR 0016): obtained, renewed and
//! shared by every node on one database.
//!
//! Each node runs [`run`]: every [`TICK`] it answers the challenges of the
//! deployment's order in progress, puts the stored certificate in service
//! when it is newer than its own, and orders one when none is stored, the
//! stored one is due for renewal or cannot be used, and it wins the claim
//! (`acme_orders`: one node at a time, and a failure backs off every node).
//! The others keep serving and pick the result up from the database. A
//! failed order leaves the certificate in service untouched, is recorded
//! (`tls.certificate_issued`, outcome failure) and retried with backoff;
//! near the end of the stored certificate, or after several failures with
//! none stored, an event raises an alert.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rampart_core::acme::{
    actions, expiring, names_key, renew_at, retry_after, PendingChallenge, SealedAccount,
    StoredCertificate, MISSING_AFTER_FAILURES,
};
use rampart_core::audit::{Audit, Category, Event, Severity, FAILURE, SUCCESS};
use rampart_core::{Clock, Store, StoreError, Timestamp};
use rampart_crypto::{Entropy, Keyring, SecretString};
use rampart_http::tls::{certified_key, challenge_key, CertStore};
use tokio::sync::watch;

use crate::config::{AcmeSettings, ChallengeKind};

/// How often each node looks at the stored certificate.
pub const TICK: Duration = Duration::from_secs(2);
/// How long a claimed order may take: it is then abandoned (a failure),
/// and another node may claim the next.
pub const ORDER_WINDOW: Duration = Duration::from_secs(5 * 60);
/// An order's own limit, well inside the claim.
const ORDER_TIMEOUT: Duration = Duration::from_secs(4 * 60);
const DAY: Duration = Duration::from_secs(86_400);
/// Largest response read from the CA.
const MAX_RESPONSE: usize = 1 << 20;
/// Longest reason kept in a log line (the CA's problem text is the CA's;
/// an event keeps less).
const MAX_REASON: usize = 1000;

const ACCOUNT_CONTEXT: &str = "acme_account";
const TLS_ALPN: &str = "tls-alpn-01";
const HTTP: &str = "http-01";

fn challenge_context(token: &str) -> String {
    format!("acme_challenge:{token}")
}

fn key_context(directory: &str, names: &str) -> String {
    format!("acme_certificate:{directory}:{names}")
}

/// What one node needs to obtain, renew and serve the certificate.
#[derive(Clone)]
pub struct Acme {
    pub settings: AcmeSettings,
    pub challenge: ChallengeKind,
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keyring>,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub certs: Arc<CertStore>,
}

/// What [`run`] remembers between ticks.
#[derive(Default)]
struct State {
    /// The stored certificate in service (names, end and issue time).
    in_service: Option<(String, Timestamp, Timestamp)>,
    /// The stored certificate that could not be put in service (the same
    /// identity): ordered anew, and not tried again every tick.
    unusable: Option<(String, Timestamp, Timestamp)>,
    warned: Option<Timestamp>,
    /// The tokens of the challenges this node offered and has not yet
    /// withdrawn (an order cut short by a shutdown leaves some).
    offered: Vec<String>,
    /// The failures so far of the order this node claimed, while it runs.
    claimed: Option<u32>,
}

fn identity(c: &StoredCertificate) -> (String, Timestamp, Timestamp) {
    (c.names.clone(), c.not_after, c.issued_at)
}

impl Acme {
    fn directory(&self) -> &str {
        self.settings.directory_url()
    }

    fn names(&self) -> String {
        names_key(&self.settings.domains)
    }

    /// The certificate for the configured names, and otherwise (the names
    /// were changed, the first order for them runs) the newest one of the
    /// same CA for other names: better than the self-signed one meanwhile.
    async fn stored(
        &self,
    ) -> Result<(Option<StoredCertificate>, Option<StoredCertificate>), StoreError> {
        let names = self.names();
        let ours = self
            .store
            .acme_certificate(self.directory(), &names)
            .await?;
        let other = match ours {
            Some(_) => None,
            None => {
                self.store
                    .other_acme_certificate(self.directory(), &names)
                    .await?
            }
        };
        Ok((ours, other))
    }

    /// Puts `c` in service. The key is opened here, never written out.
    fn install(&self, c: &StoredCertificate) -> Result<()> {
        let key = self
            .keys
            .open(&key_context(&c.directory, &c.names), &c.key_sealed)
            .map_err(|_| {
                anyhow!("the stored certificate's key does not open with this master key")
            })?;
        let ck = certified_key(c.chain_pem.as_bytes(), key.expose_secret())
            .map_err(|e| anyhow!("the stored certificate cannot be used: {e}"))?;
        self.certs.install(ck);
        Ok(())
    }

    /// Puts the stored certificate in service at start, before the first
    /// request: a restarted node serves what it had.
    pub async fn load(&self) -> Result<()> {
        let (ours, other) = self.stored().await.map_err(|e| anyhow!("{e}"))?;
        if let Some(c) = ours.as_ref().or(other.as_ref()) {
            self.install(c)?;
        }
        Ok(())
    }

    async fn record(&self, e: Event) {
        if let Err(err) = self.audit.record_durable(e).await {
            tracing::error!(error = %err, "cannot record a certificate event");
        }
    }

    /// The CA account: the stored one, or a new one (the first node's wins).
    async fn account(&self, http: &Client) -> Result<Account> {
        let dir = self.directory().to_owned();
        if let Some(a) = self
            .store
            .acme_account(&dir)
            .await
            .map_err(|e| anyhow!("{e}"))?
        {
            return self.restore(http, &a).await;
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                dir.clone(),
                None,
            )
            .await
            .context("cannot create an account with the CA")?;
        // Written into room reserved up front (no reallocation leaves a
        // copy behind) and zeroized on drop. `AccountCredentials` itself is
        // the crate's and does not zeroize; it is dropped here.
        let mut json = zeroize::Zeroizing::new(Vec::with_capacity(16 * 1024));
        serde_json::to_writer(&mut *json, &credentials)
            .context("cannot serialise the ACME account")?;
        drop(credentials);
        let sealed = SealedAccount {
            directory: dir.clone(),
            credentials_sealed: self
                .keys
                .seal(self.entropy.as_ref(), ACCOUNT_CONTEXT, &json),
            created_at: self.clock.now(),
        };
        match self.store.insert_acme_account(&sealed).await {
            Ok(()) => Ok(account),
            Err(StoreError::Conflict) => {
                let theirs = self
                    .store
                    .acme_account(&dir)
                    .await
                    .map_err(|e| anyhow!("{e}"))?
                    .ok_or_else(|| anyhow!("the ACME account vanished"))?;
                self.restore(http, &theirs).await
            }
            Err(e) => Err(anyhow!("cannot store the ACME account: {e}")),
        }
    }

    async fn restore(&self, http: &Client, a: &SealedAccount) -> Result<Account> {
        let json = self
            .keys
            .open(ACCOUNT_CONTEXT, &a.credentials_sealed)
            .map_err(|_| anyhow!("the stored ACME account does not open with this master key"))?;
        let credentials: AccountCredentials = serde_json::from_slice(json.expose_secret())
            .map_err(|_| anyhow!("the stored ACME account is unreadable"))?;
        Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(credentials)
            .await
            .context("cannot reach the CA with the stored account")
    }

    /// One order, start to finish: the certificate checked and stored
    /// (not yet in service).
    async fn order(&self, offered: &mut Vec<String>) -> Result<StoredCertificate> {
        let http = Client::new(self.settings.ca_file.as_deref())?;
        let account = self.account(&http).await?;
        let names = self.names();
        let identifiers: Vec<Identifier> = names
            .split(',')
            .map(|n| Identifier::Dns(n.to_owned()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .context("the CA refused the order")?;
        let validated = self.validate(&mut order, offered).await;
        self.withdraw(offered).await;
        match validated? {
            OrderStatus::Ready => {}
            s => bail!("the order is {s:?}: the CA could not validate the challenges"),
        }
        let request = rampart_crypto::certificate_request(
            &names.split(',').map(str::to_owned).collect::<Vec<_>>(),
        )?;
        order
            .finalize_csr(&request.csr_der)
            .await
            .context("the CA refused the certificate request")?;
        let chain = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(90)))
            .await
            .context("the CA did not issue the certificate")?;
        // Checked before it is stored: a chain that does not go with its
        // key never reaches the database.
        certified_key(chain.as_bytes(), request.key_pem.expose_secret().as_bytes())?;
        let (not_before, not_after) = rampart_crypto::certificate_validity(&chain)?;
        let (not_before, not_after) = (
            Timestamp::from_system_time(not_before),
            Timestamp::from_system_time(not_after),
        );
        let stored = StoredCertificate {
            directory: self.directory().to_owned(),
            key_sealed: self.keys.seal(
                self.entropy.as_ref(),
                &key_context(self.directory(), &names),
                request.key_pem.expose_secret().as_bytes(),
            ),
            names,
            chain_pem: chain,
            not_before,
            not_after,
            renew_at: renew_at(not_before, not_after, jitter(self.entropy.as_ref())),
            issued_at: self.clock.now(),
        };
        // Not stored when a certificate ending later is (another node's):
        // that one is served from the next tick on.
        self.store
            .put_acme_certificate(&stored)
            .await
            .map_err(|e| anyhow!("cannot store the certificate: {e}"))?;
        Ok(stored)
    }

    /// Withdraws the challenges this node offered, here and in the
    /// database: once the CA has looked, the order failed or was cut short.
    async fn withdraw(&self, offered: &mut Vec<String>) {
        self.certs.end_challenges();
        for t in offered.drain(..) {
            if let Err(e) = self.store.delete_acme_challenge(&t).await {
                tracing::warn!(error = %e, "cannot withdraw an ACME challenge; it expires within five minutes");
            }
        }
    }

    /// Offers every challenge, lets the other nodes pick them up, tells
    /// the CA and waits for its verdict. `tokens` collects what was
    /// offered, even when this fails half-way.
    async fn validate(
        &self,
        order: &mut instant_acme::Order,
        tokens: &mut Vec<String>,
    ) -> Result<OrderStatus> {
        let wanted = match self.challenge {
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            ChallengeKind::Http01 => ChallengeType::Http01,
        };
        self.offer(order, wanted.clone(), tokens).await?;
        // Every node reads the challenges on its next tick: wait two, so a
        // node busy for one still has them before the CA may knock on it.
        // One that is slower fails this validation; the retry follows.
        tokio::time::sleep(TICK * 2 + Duration::from_secs(1)).await;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.context("cannot read an authorization")?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut challenge = authz
                .challenge(wanted.clone())
                .ok_or_else(|| anyhow!("the CA no longer offers the challenge"))?;
            let name = challenge.identifier().to_string();
            challenge
                .set_ready()
                .await
                .with_context(|| format!("the CA refused the challenge for {name}"))?;
        }
        order
            .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(90)))
            .await
            .context("the challenges were not validated")
    }

    /// Prepares the answer to each pending authorization's challenge,
    /// here and in the database (for the other nodes).
    async fn offer(
        &self,
        order: &mut instant_acme::Order,
        wanted: ChallengeType,
        tokens: &mut Vec<String>,
    ) -> Result<()> {
        let expires_at = self.clock.now().plus(ORDER_WINDOW);
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.context("cannot read an authorization")?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                s => bail!("an authorization is {s:?}"),
            }
            let challenge = authz
                .challenge(wanted.clone())
                .ok_or_else(|| anyhow!("the CA does not offer the {wanted:?} challenge"))?;
            let name = challenge.identifier().to_string().to_ascii_lowercase();
            let key_authorization = challenge.key_authorization();
            let (kind, response) = match self.challenge {
                ChallengeKind::TlsAlpn01 => {
                    let c = rampart_crypto::acme_challenge_certificate(
                        &name,
                        key_authorization.digest().as_ref(),
                    )?;
                    // One PEM text holds both: the certificate, then its key.
                    let both =
                        SecretString::new(format!("{}{}", c.cert_pem, c.key_pem.expose_secret()));
                    let pem = both.expose_secret().as_bytes();
                    self.certs
                        .offer_alpn_challenge(&name, challenge_key(pem, pem)?);
                    (TLS_ALPN, both)
                }
                ChallengeKind::Http01 => {
                    self.certs
                        .offer_http_challenge(&challenge.token, key_authorization.as_str());
                    (
                        HTTP,
                        SecretString::new(key_authorization.as_str().to_owned()),
                    )
                }
            };
            tokens.push(challenge.token.clone());
            let pending = PendingChallenge {
                token: challenge.token.clone(),
                kind: kind.to_owned(),
                response_sealed: self.keys.seal(
                    self.entropy.as_ref(),
                    &challenge_context(&challenge.token),
                    response.expose_secret().as_bytes(),
                ),
                name,
                expires_at,
            };
            self.store
                .put_acme_challenge(&pending)
                .await
                .map_err(|e| anyhow!("cannot share the challenge: {e}"))?;
        }
        Ok(())
    }

    /// Answers the challenges of an order any node is making.
    async fn share_challenges(&self, now: Timestamp) {
        let Ok(pending) = self.store.acme_challenges(now).await else {
            return;
        };
        let mut alpn = HashMap::new();
        let mut tokens = HashMap::new();
        for p in pending {
            let Ok(response) = self
                .keys
                .open(&challenge_context(&p.token), &p.response_sealed)
            else {
                continue;
            };
            match p.kind.as_str() {
                TLS_ALPN => {
                    // The certificate and its key, in one PEM text.
                    let pem = response.expose_secret();
                    if let Ok(ck) = challenge_key(pem, pem) {
                        alpn.insert(p.name, ck);
                    }
                }
                HTTP => {
                    if let Ok(text) = std::str::from_utf8(response.expose_secret()) {
                        tokens.insert(p.token, text.to_owned());
                    }
                }
                _ => {}
            }
        }
        self.certs.replace_challenges(alpn, tokens);
    }

    /// One look: the stored certificate into service, an order when one is
    /// due and this node wins the claim, the warnings.
    async fn tick(&self, state: &mut State) {
        let now = self.clock.now();
        self.share_challenges(now).await;
        let (ours, other) = match self.stored().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored certificate");
                return;
            }
        };
        if let Some(c) = ours.as_ref().or(other.as_ref()) {
            let id = identity(c);
            if state.in_service.as_ref() != Some(&id) && state.unusable.as_ref() != Some(&id) {
                match self.install(c) {
                    Ok(()) => {
                        tracing::info!(names = %c.names, not_after = %c.not_after.to_rfc3339(), "ACME certificate in service");
                        state.in_service = Some(id);
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot serve the stored certificate; ordering a new one");
                        state.unusable = Some(id);
                    }
                }
            }
        }
        let usable = ours
            .as_ref()
            .filter(|c| state.unusable.as_ref() != Some(&identity(c)));
        if usable.is_none_or(|c| now >= c.renew_at) {
            self.order_if_claimed(now, state).await;
        }
        // What clients see: our certificate, or the one for other names
        // while ours is missing, or (neither) the generated one.
        let serving = usable.or(other
            .as_ref()
            .filter(|c| state.in_service.as_ref() == Some(&identity(c))));
        self.warn(now, serving, state).await;
    }

    async fn order_if_claimed(&self, now: Timestamp, state: &mut State) {
        let (dir, names) = (self.directory(), self.names());
        let failures = match self
            .store
            .claim_acme_order(dir, &names, now, ORDER_WINDOW)
            .await
        {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the ACME order");
                return;
            }
        };
        state.claimed = Some(failures);
        // Another node may have stored a certificate since this tick read
        // the database: then there is nothing to order.
        match self.store.acme_certificate(dir, &names).await {
            Ok(Some(c)) if state.unusable.as_ref() != Some(&identity(&c)) && now < c.renew_at => {
                self.release(state).await;
                return;
            }
            // One that cannot be used goes first: a fresh certificate must
            // not lose to it for ending earlier.
            Ok(Some(c)) if state.unusable.as_ref() == Some(&identity(&c)) => {
                let _ = self
                    .store
                    .delete_acme_certificate(dir, &names, c.issued_at)
                    .await;
            }
            _ => {}
        }
        let outcome =
            match tokio::time::timeout(ORDER_TIMEOUT, self.order(&mut state.offered)).await {
                Ok(r) => r,
                Err(_) => Err(anyhow!(
                    "the order did not finish within {} seconds",
                    ORDER_TIMEOUT.as_secs()
                )),
            };
        self.withdraw(&mut state.offered).await;
        state.claimed = None;
        match outcome {
            Ok(c) => {
                let _ = self
                    .store
                    .end_acme_order(dir, &names, 0, self.clock.now())
                    .await;
                let _ = self
                    .store
                    .delete_other_acme_certificates(dir, &names, self.clock.now())
                    .await;
                tracing::info!(names = %c.names, not_after = %c.not_after.to_rfc3339(), renew_at = %c.renew_at.to_rfc3339(), "ACME certificate obtained");
                self.record(
                    Event::new(now, actions::ISSUED, Category::Configuration, SUCCESS)
                        .object(&c.names)
                        .field("tls.server.not_after", c.not_after.to_rfc3339())
                        .field("tls.server.renew_at", c.renew_at.to_rfc3339())
                        .field("url.original", c.directory.as_str()),
                )
                .await;
                // In service on the next tick, like on every other node,
                // unless a newer one was stored meanwhile.
                state.unusable = None;
                state.warned = None;
            }
            Err(e) => {
                let failures = failures.saturating_add(1);
                let wait = retry_after(failures, jitter(self.entropy.as_ref()));
                let retry = self.clock.now().plus(wait);
                if let Err(e) = self
                    .store
                    .end_acme_order(dir, &names, failures, retry)
                    .await
                {
                    tracing::warn!(error = %e, "cannot record the failed ACME order");
                }
                let reason = format!("{e:#}");
                let reason: String = reason.chars().take(MAX_REASON).collect();
                tracing::error!(error = %reason, failures, retry_in_secs = wait.as_secs(), "cannot obtain the certificate; the one in service stays");
                self.record(
                    Event::new(now, actions::ISSUED, Category::Configuration, FAILURE)
                        .severity(Severity::Medium)
                        .object(&names)
                        .reason(Some(&reason))
                        .field("event.sequence", i64::from(failures))
                        .field("url.original", dir),
                )
                .await;
            }
        }
    }

    /// Gives the claim back without an order (or at a shutdown during
    /// one): the failures stay as they were, the next may start now.
    async fn release(&self, state: &mut State) {
        if let Some(failures) = state.claimed.take() {
            let _ = self
                .store
                .end_acme_order(self.directory(), &self.names(), failures, self.clock.now())
                .await;
        }
    }

    /// The certificate clients see near its end was due for renewal long
    /// ago, and none after several orders means they see the self-signed
    /// one: either is recorded once a day by one node, and alerts.
    async fn warn(&self, now: Timestamp, serving: Option<&StoredCertificate>, state: &mut State) {
        let again = state
            .warned
            .is_none_or(|t| now.millis() - t.millis() >= DAY.as_millis() as i64);
        if !again {
            return;
        }
        let (action, reason, end) = match serving {
            Some(c) if expiring(c.not_before, c.not_after, now) => {
                let reason = if c.not_after <= now {
                    format!(
                        "the certificate for {} ended at {} and could not be renewed",
                        c.names,
                        c.not_after.to_rfc3339()
                    )
                } else {
                    format!(
                        "the certificate for {} ends at {} and could not be renewed yet",
                        c.names,
                        c.not_after.to_rfc3339()
                    )
                };
                (actions::EXPIRING, reason, Some(c.not_after))
            }
            Some(_) => return,
            None => {
                let failures = self
                    .store
                    .acme_order_failures(self.directory(), &self.names())
                    .await
                    .unwrap_or(0);
                if failures < MISSING_AFTER_FAILURES {
                    return;
                }
                (
                    actions::MISSING,
                    format!("no certificate for {} could be obtained after {failures} orders in a row; the self-signed certificate is served", self.names()),
                    None,
                )
            }
        };
        state.warned = Some(now);
        let key = format!("{action}:{}:{}", self.directory(), self.names());
        let first = matches!(
            self.store.take_rate_token(&key, now, DAY, 1).await,
            Ok(None)
        );
        if first {
            let mut e = Event::new(now, action, Category::Configuration, FAILURE)
                .severity(Severity::High)
                .object(&self.names())
                .reason(Some(&reason));
            if let Some(end) = end {
                e = e.field("tls.server.not_after", end.to_rfc3339());
            }
            self.record(e).await;
        }
    }
}

fn jitter(entropy: &dyn Entropy) -> f64 {
    let mut b = [0u8; 4];
    entropy.fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Obtains, renews and shares the certificate until shutdown.
pub async fn run(acme: Acme, mut stop: watch::Receiver<bool>) {
    let mut state = State::default();
    let mut tick = tokio::time::interval(TICK);
    // After a long order, one tick, not a burst of the missed ones.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let stopped = tokio::select! {
            _ = acme.tick(&mut state) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            // An order cut short: its challenges withdrawn, its claim
            // given back for another node.
            acme.withdraw(&mut state.offered).await;
            acme.release(&mut state).await;
            return;
        }
    }
}

/// The CA's HTTP client: reqwest with the public roots (and `ca_file`),
/// no redirects, bounded time and response size.
#[derive(Clone)]
struct Client(reqwest::Client);

impl Client {
    fn new(ca_file: Option<&std::path::Path>) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")));
        if let Some(f) = ca_file {
            let pem =
                std::fs::read(f).with_context(|| format!("[tls] acme ca_file {}", f.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("[tls] acme ca_file {}", f.display()))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(Self(b.build().context("cannot set up the ACME client")?))
    }
}

impl instant_acme::HttpClient for Client {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
    {
        let client = self.0.clone();
        Box::pin(async move {
            let other = |e: Box<dyn std::error::Error + Send + Sync>| instant_acme::Error::Other(e);
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            let mut rsp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| other(Box::new(e)))?;
            let mut out = http::Response::builder().status(rsp.status());
            for (k, v) in rsp.headers() {
                out = out.header(k, v);
            }
            let mut buf = Vec::new();
            while let Some(chunk) = rsp.chunk().await.map_err(|e| other(Box::new(e)))? {
                if buf.len() + chunk.len() > MAX_RESPONSE {
                    return Err(instant_acme::Error::Str("the CA's response is too large"));
                }
                buf.extend_from_slice(&chunk);
            }
            let (parts, ()) = out.body(()).map_err(|e| other(Box::new(e)))?.into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(Bytes::from(buf)),
            })
        })
    }
}
