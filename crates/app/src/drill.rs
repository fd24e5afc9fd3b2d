//! `rampart drill` (ADR 0014): safe, bounded, simulated attacks against
//! this deployment (or an allowed loopback address), scored by what the
//! deployment did about each (`rampart_drill`).
//!
//! Safe: it aims only at this machine, attacks only accounts and a
//! collection it creates (under `drill.rampart.invalid`, so no message is
//! ever delivered), sends a few dozen requests per scenario, and removes
//! what it made afterwards: accounts, the collection, the blocks on its
//! source addresses; its alerts are resolved as the drill's. Bounded:
//! every scenario has a fixed request count and waits at most `--wait`
//! seconds for detection. Marked: every request carries the drill's token
//! (`Rampart-Drill`), which the guard recognises, so the drill's events
//! carry `labels.drill` and statistics leave them out.
//!
//! Each scenario comes from its own loopback addresses (127.B.N.10, a /24
//! per scenario, B random per drill), so scenarios are told apart the way
//! detection groups addresses, and no block lands on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rampart_core::alerts::{AlertQuery, AlertStatus};
use rampart_core::audit::{Category, Event, EventQuery, SUCCESS};
use rampart_core::data::Principal;
use rampart_core::incident::actions;
use rampart_core::{Account, RequestMeta};
use rampart_crypto::{Entropy, SecretString, TokenHash};
use rampart_drill::{score, Observed, Report, RuleState, Scenario, Scored};
use serde_json::{json, Value};

use crate::{Services, Settings};

/// Checks that `target` is an `https://` URL on a loopback address, the
/// only kind a drill may aim at besides this deployment's own address.
pub fn loopback_target(target: &str) -> Result<url::Url> {
    let url = url::Url::parse(target).map_err(|e| anyhow::anyhow!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        bail!("a drill target is an https:// URL");
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        bail!("a drill aims only at this machine (127.0.0.0/8, ::1 or localhost): never at a server of anyone else");
    }
    Ok(url)
}

/// This deployment's own address, as a drill reaches it.
pub fn own_target(settings: &Settings) -> String {
    let ip = match settings.listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, settings.listen.port()))
}

/// The target a drill may use: this deployment's own address, or a
/// loopback address listed in `[incident] drill_targets`. Anything else
/// is refused.
pub fn allowed_target(settings: &Settings, target: Option<&str>) -> Result<url::Url> {
    let own = own_target(settings);
    let Some(t) = target else {
        return loopback_target(&own).context(
            "this deployment listens on an address that is not this machine's loopback; \
             run the drill on the server, with --target https://127.0.0.1:PORT listed in [incident] drill_targets",
        );
    };
    let url = loopback_target(t)?;
    let same = |a: &url::Url, b: &str| {
        url::Url::parse(b).is_ok_and(|b| {
            a.host() == b.host() && a.port_or_known_default() == b.port_or_known_default()
        })
    };
    if same(&url, &own)
        || settings
            .incident
            .drill_targets
            .iter()
            .any(|a| same(&url, a))
    {
        return Ok(url);
    }
    bail!(
        "refusing {t}: a drill aims only at this deployment ({own}) or at a loopback address listed in \
         [incident] drill_targets"
    )
}

/// How a drill is run.
pub struct Options {
    pub target: Option<String>,
    /// Empty: every scenario.
    pub scenarios: Vec<Scenario>,
    /// Longest wait for detection after each scenario.
    pub wait: Duration,
}

/// One loopback source address's client, marked as the drill's.
struct Source {
    ip: Ipv4Addr,
    client: reqwest::Client,
}

/// What one request got.
struct Answer {
    status: u16,
    code: Option<String>,
    body: Value,
    at_ms: i64,
}

struct Run<'a> {
    svc: &'a Services,
    base: url::Url,
    cert: Vec<u8>,
    token: SecretString,
    id: String,
    /// The second octet of every source address.
    b: u8,
    started: Instant,
    t0_ms: i64,
    accounts: Vec<Account>,
    collection: Option<String>,
    wait: Duration,
}

fn refused(a: &Answer) -> bool {
    matches!(
        (a.status, a.code.as_deref()),
        (
            403,
            Some("address_blocked" | "request_blocked" | "address_denied")
        ) | (429, _)
            | (403, Some("step_up_required"))
    )
}

impl Run<'_> {
    fn now_ms(&self) -> i64 {
        self.t0_ms + self.started.elapsed().as_millis() as i64
    }

    fn meta(&self) -> RequestMeta {
        RequestMeta {
            user_agent: Some("rampart-drill".to_owned()),
            drill: Some(self.id.clone()),
            ..Default::default()
        }
    }

    /// The scenario's `n`-th source: its own /24.
    fn source(&self, scenario: usize, n: u8) -> Result<Source> {
        let ip = Ipv4Addr::new(127, self.b, 10 + scenario as u8 * 4 + n, 10);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            rampart_http::middleware::DRILL_HEADER,
            reqwest::header::HeaderValue::from_str(self.token.expose_secret())?,
        );
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.cert)?)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(IpAddr::V4(ip))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("rampart-drill/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()?;
        Ok(Source { ip, client })
    }

    async fn send(
        &self,
        src: &Source,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Result<Answer> {
        let url = self.base.join(path)?;
        let mut req = src.client.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let at_ms = self.now_ms();
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach {} from {}: is `rampart serve` running there? (one started with \
                     --listen elsewhere: give the drill the same --listen)",
                self.base, src.ip
            )
        })?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            code: body.get("code").and_then(|c| c.as_str()).map(str::to_owned),
            body,
            at_ms,
        })
    }

    fn note(&self, o: &mut Observed, a: &Answer) {
        o.requests += 1;
        if refused(a) {
            o.refused += 1;
            if let Some(c) = &a.code {
                o.refused_codes.push(c.clone());
            } else {
                o.refused_codes.push(a.status.to_string());
            }
            o.first_refused_ms.get_or_insert(a.at_ms);
        }
    }

    async fn account(&self, name: &str) -> Result<(Account, SecretString)> {
        let password = SecretString::new(format!(
            "Drill-{}",
            rampart_crypto::random_token(&rampart_crypto::OsEntropy, 24).expose_secret()
        ));
        let local = format!("{name}-{}", &self.id[6..14]);
        let a = self
            .svc
            .auth
            .create_drill_account(&local, &password)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the drill account: {e}"))?;
        Ok((a, password))
    }

    /// Signs a drill account in from `src`: its `Authorization` value.
    async fn sign_in(&self, src: &Source, a: &Account, password: &SecretString) -> Result<String> {
        let body = json!({"email": a.email.as_str(), "password": password.expose_secret()});
        let r = self
            .send(
                src,
                reqwest::Method::POST,
                "/api/v1/auth/login",
                Some(body),
                &[],
            )
            .await?;
        match r.body.get("token").and_then(|t| t.as_str()) {
            Some(token) => Ok(format!("Bearer {token}")),
            None => bail!(
                "the drill account could not sign in ({} {:?})",
                r.status,
                r.code
            ),
        }
    }

    fn ghost(&self, n: usize) -> String {
        format!(
            "ghost-{n}-{}@{}",
            &self.id[6..14],
            rampart_core::incident::DRILL_DOMAIN
        )
    }

    async fn attack(&mut self, i: usize, s: Scenario, o: &mut Observed) -> Result<()> {
        use reqwest::Method as M;
        let login = "/api/v1/auth/login";
        match s {
            Scenario::BruteForce => {
                let (a, _) = self.account("brute").await?;
                let src = self.source(i, 0)?;
                for n in 0..15 {
                    let body = json!({"email": a.email.as_str(), "password": format!("Wrong-guess-{n}-Tulip")});
                    let r = self.send(&src, M::POST, login, Some(body), &[]).await?;
                    self.note(o, &r);
                }
                self.accounts.push(a);
            }
            Scenario::CredentialStuffing => {
                let src = self.source(i, 0)?;
                let mut names = Vec::new();
                for n in 0..4 {
                    let (a, _) = self.account(&format!("stuffed{n}")).await?;
                    names.push(a.email.as_str().to_owned());
                    self.accounts.push(a);
                }
                names.extend((0..8).map(|n| self.ghost(n)));
                for (n, e) in names.iter().enumerate() {
                    let body = json!({"email": e, "password": format!("Leaked-{n}-Password-99")});
                    let r = self.send(&src, M::POST, login, Some(body), &[]).await?;
                    self.note(o, &r);
                }
            }
            Scenario::PasswordSpraying => {
                for k in 0..4u8 {
                    let src = self.source(i, k)?;
                    for n in 0..6 {
                        let e = self.ghost(100 + usize::from(k) * 6 + n);
                        let body = json!({"email": e, "password": "Winter2026!"});
                        let r = self.send(&src, M::POST, login, Some(body), &[]).await?;
                        self.note(o, &r);
                    }
                }
            }
            Scenario::Injection => {
                let src = self.source(i, 0)?;
                let gets = [
                    "/api/v1/healthz?q=1%27%20OR%20%271%27%3D%271%27%20--",
                    "/api/v1/healthz?search=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
                    "/api/v1/healthz?file=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                    "/api/v1/healthz?cmd=%3Bcat%20%2Fetc%2Fpasswd",
                ];
                for g in gets {
                    let r = self.send(&src, M::GET, g, None, &[]).await?;
                    self.note(o, &r);
                }
                let body = json!({"email": "x@example.com' UNION SELECT password_hash FROM accounts--", "password": "x"});
                let r = self.send(&src, M::POST, login, Some(body), &[]).await?;
                self.note(o, &r);
                let r = self
                    .send(
                        &src,
                        M::GET,
                        "/api/v1/healthz",
                        None,
                        &[("user-agent", "() { :; }; /bin/bash -c 'id'")],
                    )
                    .await?;
                self.note(o, &r);
            }
            Scenario::SensitiveFiles => {
                let src = self.source(i, 0)?;
                for p in [
                    "/.env",
                    "/.git/config",
                    "/wp-config.php",
                    "/config/database.yml",
                    "/.aws/credentials",
                    "/backup.sql",
                ] {
                    let r = self.send(&src, M::GET, p, None, &[]).await?;
                    self.note(o, &r);
                }
            }
            Scenario::SessionReuse => {
                let (a, password) = self.account("session").await?;
                let owner = self.source(i, 0)?;
                let thief = self.source(i, 1)?;
                let signed_in = self.sign_in(&owner, &a, &password).await;
                self.accounts.push(a);
                let auth = signed_in?;
                let _ = self
                    .send(
                        &owner,
                        M::GET,
                        "/api/v1/me",
                        None,
                        &[("authorization", &auth)],
                    )
                    .await?;
                let r = self
                    .send(
                        &thief,
                        M::GET,
                        "/api/v1/me",
                        None,
                        &[("authorization", &auth)],
                    )
                    .await?;
                self.note(o, &r);
                // Does the stolen token stop working once detected?
                let until = Instant::now() + self.wait;
                while Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let r = self
                        .send(
                            &thief,
                            M::GET,
                            "/api/v1/me",
                            None,
                            &[("authorization", &auth)],
                        )
                        .await?;
                    if r.status == 401 || r.status == 403 {
                        o.contained = true;
                        o.first_refused_ms.get_or_insert(r.at_ms);
                        break;
                    }
                }
            }
            Scenario::BulkRead => {
                let (a, password) = self.account("reader").await?;
                let name = format!("drill_{}", &self.id[6..14]);
                let schema: rampart_core::data::CollectionSchema = serde_json::from_value(json!({
                    "fields": {"secret": {"type": "text", "sensitive": true}}
                }))?;
                self.svc
                    .data
                    .create_collection(&name, schema, None, &self.meta())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot create the drill collection: {e}"))?;
                self.collection = Some(name.clone());
                let p = Principal::Account(a.clone());
                for n in 0..100 {
                    self.svc
                        .data
                        .create(
                            &p,
                            &name,
                            &json!({"secret": format!("drill value {n}")}),
                            &self.meta(),
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot fill the drill collection: {e}"))?;
                }
                let src = self.source(i, 0)?;
                let signed_in = self.sign_in(&src, &a, &password).await;
                self.accounts.push(a);
                let auth = signed_in?;
                let path = format!("/api/v1/collections/{name}/records?limit=100");
                for _ in 0..11 {
                    let r = self
                        .send(&src, M::GET, &path, None, &[("authorization", &auth)])
                        .await?;
                    self.note(o, &r);
                }
            }
        }
        Ok(())
    }

    /// Waits for the scenario's alerts (or until `wait` passes), then reads
    /// what the trail and the alerts say.
    async fn observe(&self, s: Scenario, i: usize, o: &mut Observed) -> Result<()> {
        let net = |k: u8| format!("127.{}.{}.", self.b, 10 + i as u8 * 4 + k);
        let nets: Vec<String> = (0..4).map(net).collect();
        let ours = |ip: &Option<String>, user: &Option<String>| {
            ip.as_deref()
                .is_some_and(|ip| nets.iter().any(|n| ip.starts_with(n.as_str())))
                || user
                    .as_deref()
                    .is_some_and(|u| self.accounts.iter().any(|a| a.id.as_str() == u))
        };
        let store = &self.svc.store;
        let until = Instant::now() + self.wait;
        let mut seen: Vec<String> = Vec::new();
        loop {
            // Unresolved alerts, whatever their time: a node's clock may
            // differ from this one's. Ours by address or account, or by
            // evidence (a rule that groups by neither).
            let alerts = store
                .alerts(&AlertQuery {
                    status: Some(AlertStatus::Open),
                    limit: 500,
                    ..Default::default()
                })
                .await?;
            for a in alerts {
                if !s.rules().contains(&a.rule_id.as_str())
                    || o.alerts.iter().any(|(r, _)| r == &a.rule_id)
                {
                    continue;
                }
                let mine = ours(&a.source_ip, &a.account)
                    || (a.source_ip.is_none()
                        && a.account.is_none()
                        && self.drill_evidence(&a.evidence).await);
                if mine {
                    o.alerts.push((a.rule_id.clone(), self.now_ms()));
                    seen.push(a.id.clone());
                }
            }
            let done = !o.alerts.is_empty() && (s != Scenario::SessionReuse || o.contained);
            if done || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The responses an alert carries out are recorded on it just after
        // it is raised.
        if !seen.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for id in &seen {
            if let Some(a) = store.alert(id).await? {
                for r in &a.responses {
                    if r.state == "done" && !o.responses.contains(&r.response) {
                        o.responses.push(r.response.clone());
                    }
                    if r.state == "withheld" {
                        let w = format!(
                            "{} ({})",
                            r.response,
                            r.detail.as_deref().unwrap_or("by the safeguards")
                        );
                        if !o.withheld.contains(&w) {
                            o.withheld.push(w);
                        }
                    }
                }
            }
        }
        let events = store
            .search_events(&EventQuery {
                text: Some(self.id.clone()),
                drills: Some(true),
                limit: 5000,
                ..Default::default()
            })
            .await?;
        o.events = events
            .iter()
            .filter(|e| ours(&e.source_ip, &e.user_id))
            .count() as u32;
        o.ended_ms = self.now_ms();
        Ok(())
    }

    /// Removes what the drill made; every step is tried.
    async fn clean_up(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let store = &self.svc.store;
        let now = self.svc.auth.clock().now();
        if let Some(c) = &self.collection {
            if let Err(e) = self
                .svc
                .data
                .delete_collection(
                    c,
                    true,
                    &rampart_core::AccountId("drill".into()),
                    &self.meta(),
                )
                .await
            {
                problems.push(format!("the drill collection {c}: {e}"));
            }
        }
        for a in &self.accounts {
            if let Err(e) = self.svc.auth.delete_drill_account(a, &self.meta()).await {
                problems.push(format!("the drill account {}: {e}", a.email.as_str()));
            }
        }
        match store.active_blocks(now, 10_000).await {
            Ok(blocks) => {
                let ours = format!("127.{}.", self.b);
                for b in blocks.iter().filter(|b| b.network.starts_with(&ours)) {
                    match store.lift_block(&b.id, now).await {
                        Ok(_) => {
                            self.svc
                                .auth
                                .record_event(
                                    rampart_core::events::EventKind::BlockRemoved,
                                    rampart_core::events::Outcome::Success,
                                    Some(&b.id),
                                    None,
                                    &self.meta(),
                                )
                                .await
                        }
                        Err(e) => problems.push(format!("the block of {}: {e}", b.network)),
                    }
                }
            }
            Err(e) => problems.push(format!("the blocks: {e}")),
        }
        // Open alerts only: one a person acknowledged is theirs to close.
        let unresolved = match store
            .alerts(&AlertQuery {
                status: Some(AlertStatus::Open),
                limit: 500,
                ..Default::default()
            })
            .await
        {
            Ok(a) => a,
            Err(e) => {
                problems.push(format!("the alerts: {e}"));
                Vec::new()
            }
        };
        let ours = format!("127.{}.", self.b);
        for a in &unresolved {
            // Only the drill's: by its addresses or accounts, or when
            // every event behind it is the drill's.
            let mine = a.source_ip.as_deref().is_some_and(|i| i.starts_with(&ours))
                || a.account
                    .as_deref()
                    .is_some_and(|u| self.accounts.iter().any(|x| x.id.as_str() == u))
                || (a.source_ip.is_none()
                    && a.account.is_none()
                    && self.drill_evidence(&a.evidence).await);
            if mine {
                let by = format!("drill:{}", self.id);
                match store
                    .set_alert_status(&a.id, AlertStatus::Resolved, &by, now)
                    .await
                {
                    Ok(_) => {
                        self.svc
                            .auth
                            .record_security(
                                Event::new(now, "alert.resolved", Category::Process, SUCCESS)
                                    .severity(rampart_core::audit::Severity::Low)
                                    .meta(&self.meta())
                                    .object(&a.id)
                                    .rule(&a.rule_id)
                                    .user(Some(&by)),
                            )
                            .await
                    }
                    Err(e) => problems.push(format!("the alert {}: {e}", a.id)),
                }
            }
        }
        problems
    }

    /// Whether every event named (`node:seq`) is this drill's.
    async fn drill_evidence(&self, evidence: &[String]) -> bool {
        // A full list may have dropped older evidence, someone else's.
        if evidence.is_empty() || evidence.len() >= rampart_core::alerts::MAX_EVIDENCE {
            return false;
        }
        for e in evidence {
            let Some((node, seq)) = e.rsplit_once(':') else {
                return false;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                return false;
            };
            let Ok(found) = self.svc.store.audit_range(node, seq, 1).await else {
                return false;
            };
            let marked = found.into_iter().find(|c| c.seq == seq).is_some_and(|c| {
                c.fields_map()
                    .get(rampart_core::audit::DRILL_FIELD)
                    .and_then(|v| v.as_str())
                    == Some(self.id.as_str())
            });
            if !marked {
                return false;
            }
        }
        true
    }
}

/// The state of each scenario's rules in the settings (`set`: the rules
/// loaded once for the drill).
fn rule_states(
    settings: &Settings,
    set: Option<&rampart_detect::RuleSet>,
    s: Scenario,
) -> Vec<RuleState> {
    s.rules()
        .iter()
        .map(|id| {
            let rule = set.and_then(|set| set.rules().iter().find(|r| r.id == *id));
            let off = if !settings.detect.enabled {
                Some("[detect] enabled = false".to_owned())
            } else {
                rule.and_then(|r| r.disabled_because.clone())
            };
            RuleState {
                id: (*id).to_owned(),
                enabled: off.is_none() && rule.is_some_and(|r| r.enabled),
                off_because: off,
            }
        })
        .collect()
}

/// Runs a drill: the scenarios in order, each observed and scored, then
/// the clean-up; the report is stored and recorded.
pub async fn run(
    settings: &Settings,
    svc: &Services,
    opts: &Options,
    progress: &dyn Fn(&str),
) -> Result<Ran> {
    let base = allowed_target(settings, opts.target.as_deref())?;
    let cert_path = crate::layout(settings).tls_cert;
    let cert = std::fs::read(&cert_path).with_context(|| {
        format!(
            "cannot read the server's certificate {}",
            cert_path.display()
        )
    })?;
    let entropy = rampart_crypto::OsEntropy;
    let mut hex = [0u8; 12];
    entropy.fill(&mut hex);
    let id = format!("drill_{}", ::hex::encode(hex));
    let token = rampart_crypto::random_token(&entropy, 32);
    let mut b = [0u8; 1];
    entropy.fill(&mut b);
    let clock = svc.auth.clock().clone();
    let t0 = clock.now();
    svc.store
        .begin_drill(
            &id,
            &TokenHash::of(&token).0,
            t0,
            t0.plus(Duration::from_secs(3600)),
        )
        .await?;
    let scenarios = if opts.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        opts.scenarios.clone()
    };
    let mut run = Run {
        svc,
        base: base.clone(),
        cert,
        token,
        id: id.clone(),
        b: 16 + b[0] % 224,
        started: Instant::now(),
        t0_ms: t0.millis(),
        accounts: Vec::new(),
        collection: None,
        wait: opts.wait,
    };
    svc.auth
        .record_security(
            Event::new(t0, actions::DRILL_STARTED, Category::Process, SUCCESS)
                .meta(&run.meta())
                .object(&id)
                .field("drill.target", base.as_str())
                .field(
                    "drill.scenarios",
                    scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
                ),
        )
        .await;
    // Every node re-reads drills every second: the token is known before
    // the first attack.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let rules = crate::detect::load_rules(&settings.detect, &settings.data_dir).ok();
    let mut scored: Vec<Scored> = Vec::new();
    let mut failure = None;
    for (i, s) in scenarios.iter().enumerate() {
        progress(&format!("{} ({})", s.name(), s.describe()));
        let mut o = Observed {
            started_ms: run.now_ms(),
            rules: rule_states(settings, rules.as_ref(), *s),
            ..Default::default()
        };
        if let Err(e) = run.attack(i, *s, &mut o).await {
            failure = Some(e.context(format!("scenario {}", s.name())));
            break;
        }
        if let Err(e) = run.observe(*s, i, &mut o).await {
            failure = Some(e.context(format!("scenario {}", s.name())));
            break;
        }
        scored.push(score(*s, &o));
    }
    progress("cleaning up");
    let problems = run.clean_up().await;
    let ended = clock.now();
    let report = Report::new(
        &id,
        base.as_str(),
        &t0.to_rfc3339(),
        &ended.to_rfc3339(),
        scored,
    );
    let json = serde_json::to_string(&report)?;
    // Ended whatever happened, so its token is honoured no longer; only a
    // drill that ran whole keeps its report (the last drill's score).
    let stored = if failure.is_none() { json.as_str() } else { "" };
    if let Err(e) = svc.store.end_drill(&id, ended, stored).await {
        tracing::warn!(error = %e, "cannot mark the drill ended");
    }
    svc.auth
        .record_security(
            Event::new(
                ended,
                actions::DRILL_COMPLETED,
                Category::Process,
                if failure.is_none() {
                    SUCCESS
                } else {
                    rampart_core::audit::FAILURE
                },
            )
            .meta(&run.meta())
            .object(&id)
            .reason(failure.as_ref().map(|e| format!("{e:#}")).as_deref())
            .field("drill.score_percent", report.score_percent)
            .field("drill.blocked", report.counts[0])
            .field("drill.alerted", report.counts[1])
            .field("drill.logged", report.counts[2])
            .field("drill.missed", report.counts[3]),
        )
        .await;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Ran {
        report,
        left: problems,
    })
}

/// A drill that ran: its report, and what its clean-up could not remove.
pub struct Ran {
    pub report: Report,
    pub left: Vec<String>,
}
