//! The guard in front of every request (ADR 0008): address rules, stored
//! blocks, rate limits, and request inspection, in that order, each
//! answering before the next costs anything. Nothing here touches the
//! database on the request path: blocks are a snapshot re-read every
//! second by [`Guard::run`], limits are in memory, and events go through
//! an aggregator and are written off the request path.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http_body_util::BodyExt;
use ipnet::IpNet;
use rampart_core::audit::Audit;
use rampart_core::events::{EventKind, Outcome};
use rampart_core::{Clock, IpBlock, RequestMeta, Store, StoreError, Timestamp};
use rampart_crypto::Entropy;
use rampart_guard::aggregate::{Aggregator, Folded, Seen};
use rampart_guard::failures::{Failure, FailureCounter};
use rampart_guard::inspect::Request as Inspected;
use rampart_guard::net::{parse_net, rate_key, BlockSet};
use rampart_guard::rate::{Limiter, Rate};
use rampart_guard::{Inspector, NetList, Verdict};
use serde::Deserialize;

use crate::conns::ConnHandle;
use crate::error::ApiError;
use crate::middleware::{too_large, ClientAddr, RequestContext};
use crate::state::AppState;

/// What inspection does with a match, per route group and part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse with 403 `request_blocked` and record an event.
    Block,
    /// Record an event and let the request through.
    Detect,
    Off,
}

/// The route groups rules and limits are set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `/api/v1/admin/…` and the console's pages (`/console/…`).
    Admin,
    /// `/api/v1/auth/…` and `/api/v1/setup`: logins, second factors.
    Auth,
    /// `/api/v1/collections/…`: records.
    Data,
    /// Everything else.
    Api,
}

impl Group {
    pub fn of(path: &str) -> Group {
        if path.starts_with("/api/v1/admin/") || path == "/console" || path.starts_with("/console/")
        {
            Group::Admin
        } else if path.starts_with("/api/v1/auth/") || path == "/api/v1/setup" {
            Group::Auth
        } else if path.starts_with("/api/v1/collections/") {
            Group::Data
        } else {
            Group::Api
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Admin => "admin",
            Group::Auth => "auth",
            Group::Data => "data",
            Group::Api => "api",
        }
    }
}

/// `[guard]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Proxies whose forwarding header is believed. Empty (the default):
    /// the TCP peer is the client, and forwarding headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// The header those proxies set: `x-forwarded-for` (nginx, most load
    /// balancers) or `forwarded` (RFC 7239). Only that one is read.
    pub forwarded_header: String,
    /// Addresses and ranges allowed anywhere; empty allows everyone.
    pub allow: Vec<String>,
    /// Addresses and ranges refused everywhere. Deny wins over allow.
    pub deny: Vec<String>,
    pub admin: GroupConfig,
    pub auth: GroupConfig,
    pub data: GroupConfig,
    pub api: GroupConfig,
    /// Collections whose record bodies are blocked on a match, not only
    /// recorded (`data.inspect_body` applies to the others).
    pub block_bodies_of: Vec<String>,
    /// Failed logins, second-factor proofs and API keys from one address
    /// (across all accounts) within `ip_failure_window_secs` that block it.
    pub ip_failures: u32,
    pub ip_failure_window_secs: u64,
    /// A first block lasts this long; each further one within
    /// `offender_memory_days` lasts twice the last, up to `block_max_secs`.
    pub block_secs: u64,
    pub block_max_secs: u64,
    pub offender_memory_days: u64,
    /// Draw the `auth` group's per-address limit (sign-in and second
    /// factors) from buckets in the database, shared by every node, so an
    /// attacker cannot multiply the budget by the number of nodes. Costs
    /// one small write per sign-in request; for PostgreSQL deployments.
    pub shared_auth_limits: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".to_owned(),
            allow: Vec::new(),
            deny: Vec::new(),
            admin: GroupConfig::default(),
            auth: GroupConfig::default(),
            data: GroupConfig::default(),
            api: GroupConfig::default(),
            block_bodies_of: Vec::new(),
            ip_failures: 50,
            ip_failure_window_secs: 15 * 60,
            block_secs: 15 * 60,
            block_max_secs: 24 * 3600,
            offender_memory_days: 30,
            shared_auth_limits: false,
        }
    }
}

/// `[guard.admin]`, `[guard.auth]`, `[guard.data]`, `[guard.api]`. A field
/// left out takes the group's default (see [`GroupDefaults`]); a rate of
/// 0 turns that limit off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub ip_per_minute: Option<u32>,
    pub ip_burst: Option<u32>,
    /// Per account (all its sessions together), or per API key.
    pub account_per_minute: Option<u32>,
    pub account_burst: Option<u32>,
    /// Inspection of the path, query, headers and cookies.
    pub inspect: Option<Mode>,
    /// Inspection of the body.
    pub inspect_body: Option<Mode>,
}

/// The defaults of one group: sign-in is tight, reads are generous.
struct GroupDefaults {
    ip: (u32, u32),
    account: (u32, u32),
    inspect_body: Mode,
}

fn defaults(g: Group) -> GroupDefaults {
    match g {
        Group::Auth => GroupDefaults {
            ip: (60, 20),
            account: (60, 20),
            inspect_body: Mode::Block,
        },
        Group::Admin => GroupDefaults {
            ip: (300, 100),
            account: (300, 100),
            inspect_body: Mode::Block,
        },
        // Stored data is kept safe by bound parameters and output encoding;
        // a note that quotes an attack is not one. Opt in per collection.
        Group::Data => GroupDefaults {
            ip: (1200, 300),
            account: (1200, 300),
            inspect_body: Mode::Detect,
        },
        Group::Api => GroupDefaults {
            ip: (1200, 300),
            account: (1200, 300),
            inspect_body: Mode::Block,
        },
    }
}

impl GuardConfig {
    fn group(&self, g: Group) -> &GroupConfig {
        match g {
            Group::Admin => &self.admin,
            Group::Auth => &self.auth,
            Group::Data => &self.data,
            Group::Api => &self.api,
        }
    }

    /// The settings that switch a protection off (for `rampart scan
    /// self`): inspection set to `off`, a rate of 0, or an allow list of
    /// everything.
    pub fn protections_off(&self) -> Vec<String> {
        let mut off = Vec::new();
        for g in GROUPS {
            let c = self.group(g);
            let name = g.as_str();
            if c.inspect == Some(Mode::Off) {
                off.push(format!("guard.{name}.inspect = \"off\""));
            }
            if c.inspect_body == Some(Mode::Off) {
                off.push(format!("guard.{name}.inspect_body = \"off\""));
            }
            if c.ip_per_minute == Some(0) {
                off.push(format!("guard.{name}.ip_per_minute = 0"));
            }
            if c.account_per_minute == Some(0) {
                off.push(format!("guard.{name}.account_per_minute = 0"));
            }
        }
        off
    }

    /// The trusted-proxy ranges as the guard reads them (`::ffff:0:0/96`
    /// is `0.0.0.0/0`); an unreadable entry as written.
    pub fn trusted_proxy_ranges(&self) -> Vec<String> {
        self.trusted_proxies
            .iter()
            .map(|n| parse_net(n).map_or_else(|_| n.clone(), |n| n.to_string()))
            .collect()
    }

    /// Whether the admin routes are open to every address: no allow list
    /// for them, or one that holds everything.
    pub fn admin_open_to_all(&self) -> bool {
        let everything = |l: &[String]| {
            l.iter()
                .any(|n| parse_net(n).is_ok_and(|n| n.prefix_len() == 0))
        };
        (self.allow.is_empty() || everything(&self.allow))
            && (self.admin.allow.is_empty() || everything(&self.admin.allow))
    }

    /// Checks every list and number; the error says which setting.
    pub fn validate(&self) -> Result<(), String> {
        let list =
            |name: &str, l: &[String]| NetList::parse(l).map_err(|e| format!("guard.{name}: {e}"));
        list("trusted_proxies", &self.trusted_proxies)?;
        self.forwarded()?;
        list("allow", &self.allow)?;
        list("deny", &self.deny)?;
        for g in GROUPS {
            let c = self.group(g);
            list(&format!("{}.allow", g.as_str()), &c.allow)?;
            list(&format!("{}.deny", g.as_str()), &c.deny)?;
            for (what, per, burst) in [
                ("ip", c.ip_per_minute, c.ip_burst),
                ("account", c.account_per_minute, c.account_burst),
            ] {
                if per.unwrap_or(1) > 0 && burst == Some(0) {
                    return Err(format!(
                        "guard.{}.{what}_burst must be at least 1 (set {what}_per_minute = 0 to turn the limit off)",
                        g.as_str()
                    ));
                }
            }
        }
        if self.ip_failures == 0 || self.ip_failure_window_secs == 0 {
            return Err(
                "guard.ip_failures and guard.ip_failure_window_secs must be at least 1".into(),
            );
        }
        if self.block_secs == 0 || self.block_max_secs < self.block_secs {
            return Err("guard: need 0 < block_secs <= block_max_secs".into());
        }
        // Bounds that keep the arithmetic on times exact.
        const YEAR_SECS: u64 = 365 * 24 * 3600;
        for (name, v, max) in [
            ("block_max_secs", self.block_max_secs, YEAR_SECS),
            (
                "ip_failure_window_secs",
                self.ip_failure_window_secs,
                YEAR_SECS,
            ),
            ("offender_memory_days", self.offender_memory_days, 3650),
        ] {
            if v > max {
                return Err(format!("guard.{name} = {v} is more than {max}"));
            }
        }
        Ok(())
    }

    fn forwarded(&self) -> Result<rampart_guard::ForwardedHeader, String> {
        match self.forwarded_header.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(rampart_guard::ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(rampart_guard::ForwardedHeader::Forwarded),
            other => Err(format!(
                "guard.forwarded_header is `x-forwarded-for` or `forwarded`, not `{other}`"
            )),
        }
    }

    /// How long the `offence`-th block of an address lasts.
    pub fn block_length(&self, offence: u32) -> Duration {
        let doublings = offence.saturating_sub(1).min(20);
        let secs = self.block_secs.saturating_mul(1u64 << doublings);
        Duration::from_secs(secs.min(self.block_max_secs))
    }
}

const GROUPS: [Group; 4] = [Group::Admin, Group::Auth, Group::Data, Group::Api];

struct GroupRules {
    allow: NetList,
    deny: NetList,
    ip_rate: Option<Rate>,
    ip: Option<Limiter<IpAddr>>,
    account: Option<Limiter<String>>,
    inspect: Mode,
    inspect_body: Mode,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per: Option<u32>,
    burst: Option<u32>,
    d: (u32, u32),
) -> Option<Limiter<K>> {
    let per = per.unwrap_or(d.0);
    (per > 0).then(|| {
        Limiter::new(Rate {
            per_minute: per,
            burst: burst.unwrap_or(d.1).max(1),
        })
    })
}

/// A body being read for one address; gives the turn back when dropped.
struct BodyTurn<'a> {
    guard: &'a Guard,
    key: Option<IpAddr>,
}

impl Drop for BodyTurn<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut readers = self
            .guard
            .body_readers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = readers.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&key);
            }
        }
    }
}

/// Aggregation key of a guard event: kind, address, rule.
type EventKey = (EventKind, String, String);

pub struct Guard {
    config: GuardConfig,
    trusted: NetList,
    forwarded: rampart_guard::ForwardedHeader,
    /// Bodies being read at once (each up to the body limit).
    bodies: tokio::sync::Semaphore,
    /// Bodies being read at once per address (IPv6 by /64).
    body_readers: Mutex<HashMap<IpAddr, u32>>,
    allow: NetList,
    deny: NetList,
    groups: Vec<GroupRules>,
    inspector: Inspector,
    blocks: ArcSwap<BlockSet>,
    /// Re-read with the blocks: whether the deployment is locked down,
    /// and the drills under way (token hash → drill id), ADR 0014.
    incidents: ArcSwap<IncidentSnapshot>,
    /// Failures per address (IPv6 by /64) toward an automatic block.
    failures: Mutex<FailureCounter>,
    events: Mutex<Aggregator<EventKey>>,
    /// Event writes and automatic blocks under way off the request path,
    /// awaited at shutdown so none is lost.
    under_way: Mutex<tokio::task::JoinSet<()>>,
    audit: Audit,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

/// What the guard knows of incidents, re-read every second.
#[derive(Debug, Default)]
struct IncidentSnapshot {
    locked_down: bool,
    drills: HashMap<String, String>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

/// How many blocks a node holds in memory. Blocks set by people come
/// first; past this, the oldest automatic ones are not enforced (and a
/// warning says so).
const MAX_BLOCKS: u32 = 10_000;
/// Request bodies read at once; more wait (bounded by the request timeout).
const BODIES_AT_ONCE: usize = 64;
/// Request bodies one address reads at once; more are refused (429), so a
/// few slow uploads from one client cannot hold every slot above.
const BODIES_PER_ADDRESS: u32 = 8;
/// Repeats of one event from one address are folded for this long.
const EVENT_WINDOW_MS: u64 = 60_000;
/// Marks a folded source whose requests were cross-site.
const CROSS_SITE: &str = "cross-site:";
/// Folded events of a drill's requests start with this and the drill id.
const DRILL: &str = "drill:";
/// The rule name of `not_found` events.
const NOT_FOUND_RULE: &str = "http.not_found";

impl Guard {
    pub fn new(
        config: GuardConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        audit: Audit,
    ) -> Result<Self, String> {
        config.validate()?;
        let parse = |l: &[String]| NetList::parse(l);
        let groups = GROUPS
            .iter()
            .map(|&g| {
                let c = config.group(g);
                let d = defaults(g);
                let per = c.ip_per_minute.unwrap_or(d.ip.0);
                Ok(GroupRules {
                    allow: parse(&c.allow)?,
                    deny: parse(&c.deny)?,
                    ip_rate: (per > 0).then(|| Rate {
                        per_minute: per,
                        burst: c.ip_burst.unwrap_or(d.ip.1).max(1),
                    }),
                    ip: limiter(c.ip_per_minute, c.ip_burst, d.ip),
                    account: limiter(c.account_per_minute, c.account_burst, d.account),
                    inspect: c.inspect.unwrap_or(Mode::Block),
                    inspect_body: c.inspect_body.unwrap_or(d.inspect_body),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            trusted: parse(&config.trusted_proxies)?,
            forwarded: config.forwarded()?,
            bodies: tokio::sync::Semaphore::new(BODIES_AT_ONCE),
            allow: parse(&config.allow)?,
            deny: parse(&config.deny)?,
            groups,
            inspector: Inspector::new(),
            blocks: ArcSwap::from_pointee(BlockSet::default()),
            incidents: ArcSwap::from_pointee(IncidentSnapshot::default()),
            failures: Mutex::new(FailureCounter::new(
                config.ip_failures,
                config.ip_failure_window_secs as i64 * 1000,
            )),
            body_readers: Mutex::new(HashMap::new()),
            events: Mutex::new(Aggregator::new(EVENT_WINDOW_MS, 10_000)),
            under_way: Mutex::new(tokio::task::JoinSet::new()),
            audit,
            config,
            store,
            clock,
            entropy,
        })
    }

    /// The client address of a request from `peer` with these headers.
    pub fn client_address(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if self.trusted.is_empty() {
            // The default: no header is read at all.
            return peer.to_canonical();
        }
        let name = match self.forwarded {
            rampart_guard::ForwardedHeader::XForwardedFor => "x-forwarded-for",
            rampart_guard::ForwardedHeader::Forwarded => "forwarded",
        };
        let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        rampart_guard::client_address(peer, &self.trusted, self.forwarded, &values)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().millis()
    }

    /// The injected clock's time.
    pub fn now(&self) -> rampart_core::Timestamp {
        self.clock.now()
    }

    /// Keeps the block and incident snapshots fresh (every second, in a loop of its own
    /// so nothing delays it), and, every ten seconds, writes folded event
    /// counts and forgets idle buckets, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let blocks = {
            let guard = self.clone();
            let mut shutdown = shutdown.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.wait_for(|s| *s) => break,
                    }
                    if let Err(e) = guard.refresh_blocks().await {
                        tracing::warn!(error = %e, "cannot re-read address blocks; keeping the last ones");
                    }
                    guard.refresh_incidents().await;
                }
            }
        };
        let upkeep = {
            let guard = self.clone();
            let mut shutdown = shutdown;
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.wait_for(|s| *s) => break,
                    }
                    guard.flush_events().await;
                    guard.forget_idle().await;
                }
                guard.flush_events().await;
            }
        };
        tokio::join!(blocks, upkeep);
    }

    async fn forget_idle(&self) {
        for g in &self.groups {
            if let Some(l) = &g.ip {
                l.forget_idle();
            }
            if let Some(l) = &g.account {
                l.forget_idle();
            }
        }
        if self.config.shared_auth_limits {
            if let Err(e) = self.store.purge_rate_buckets(self.clock.now()).await {
                tracing::warn!(error = %e, "cannot purge shared rate buckets");
            }
        }
        // Blocks that ended before the offender memory no longer count.
        let memory = Duration::from_secs(self.config.offender_memory_days * 24 * 3600);
        if let Err(e) = self
            .store
            .purge_blocks(self.clock.now().minus(memory))
            .await
        {
            tracing::warn!(error = %e, "cannot purge old address blocks");
        }
        let now = self.now_ms();
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_quiet(now);
    }

    /// The per-account limit of the route group of `path`, checked by the
    /// authenticating extractors once they know the account (`key`: an
    /// account id, or `key:<id>` for an API key).
    pub fn check_account(
        self: &Arc<Self>,
        group: Group,
        key: &str,
        ctx: Option<&RequestContext>,
    ) -> Result<(), ApiError> {
        let Some(l) = &self.groups[group.index()].account else {
            return Ok(());
        };
        l.check(&key.to_owned()).map_err(|wait| {
            let meta = ctx.map(RequestContext::meta).unwrap_or_default();
            self.spawn_event(
                EventKind::RateLimited,
                format!("rate.{}.account", group.as_str()),
                meta,
                None,
            );
            rate_limited_error(wait)
        })
    }

    /// A token from the shared bucket; `None` when the database cannot be
    /// asked (then the node's own bucket decides).
    async fn shared_check(&self, key: &str, rate: Rate) -> Option<Result<(), Duration>> {
        let interval = Duration::from_millis(60_000 / u64::from(rate.per_minute.max(1)));
        let take = self
            .store
            .take_rate_token(key, self.clock.now(), interval, rate.burst);
        match tokio::time::timeout(Duration::from_millis(500), take).await {
            Ok(Ok(None)) => Some(Ok(())),
            Ok(Ok(Some(wait))) => Some(Err(wait.max(Duration::from_secs(1)))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "shared rate limit unavailable; using this node's");
                None
            }
            Err(_) => {
                tracing::warn!("shared rate limit too slow; using this node's");
                None
            }
        }
    }

    /// Re-reads whether the deployment is locked down and the drills under
    /// way; a failure keeps the last snapshot.
    pub async fn refresh_incidents(&self) {
        let lockdown = self.store.deployment_lockdown().await;
        let drills = self.store.drills_in_force(self.clock.now()).await;
        match (lockdown, drills) {
            (Ok(lockdown), Ok(drills)) => self.incidents.store(Arc::new(IncidentSnapshot {
                locked_down: lockdown.is_some(),
                drills: drills.into_iter().map(|(id, hash)| (hash, id)).collect(),
            })),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot re-read incidents and drills; keeping the last");
            }
        }
    }

    /// Re-reads the blocks in force.
    pub async fn refresh_blocks(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let blocks = self.store.active_blocks(now, MAX_BLOCKS).await?;
        if blocks.len() >= MAX_BLOCKS as usize {
            tracing::warn!(
                limit = MAX_BLOCKS,
                "more address blocks are in force than a node holds; the oldest automatic ones are not enforced"
            );
        }
        let snapshot = BlockSet::new(blocks.iter().filter_map(|b| {
            parse_net(&b.network)
                .ok()
                .map(|n| (n, b.expires_at.millis()))
        }));
        self.blocks.store(Arc::new(snapshot));
        Ok(())
    }

    /// Whether the deployment is locked down (as of the last second).
    pub fn locked_down(&self) -> bool {
        self.incidents.load().locked_down
    }

    /// The drill whose token a request carries (`Rampart-Drill`), if it
    /// is one under way: its events are marked, so drills never count as
    /// real attacks in statistics.
    pub fn drill_of(&self, token: &str) -> Option<String> {
        let snapshot = self.incidents.load();
        if snapshot.drills.is_empty() || token.len() > 128 {
            return None;
        }
        let hash = rampart_crypto::sha256_hex(token.as_bytes());
        snapshot.drills.get(&hash).cloned()
    }

    fn blocked(&self, ip: IpAddr) -> bool {
        self.blocks.load().blocks(ip, self.now_ms())
    }

    /// Sets a block and enforces it on this node at once (other nodes
    /// within a second). `length` `None`: the offender policy decides.
    pub async fn add_block(
        &self,
        network: &str,
        length: Option<Duration>,
        reason: &str,
        source: &str,
    ) -> Result<IpBlock, BlockError> {
        let block = add_block(
            self.store.as_ref(),
            self.clock.as_ref(),
            self.entropy.as_ref(),
            &self.config,
            network,
            length,
            reason,
            source,
        )
        .await?;
        if let Err(e) = self.refresh_blocks().await {
            tracing::warn!(error = %e, "block stored but not yet re-read");
        }
        Ok(block)
    }

    pub async fn lift_block(&self, id: &str) -> Result<bool, StoreError> {
        let lifted = self.store.lift_block(id, self.clock.now()).await?;
        if lifted {
            let _ = self.refresh_blocks().await;
        }
        Ok(lifted)
    }

    /// A turn to read a body from `ip`, or `None` when that address already
    /// reads `BODIES_PER_ADDRESS` (a trusted proxy's own address, which
    /// stands for everyone behind it, is not counted).
    fn body_turn(&self, ip: Option<IpAddr>) -> Option<BodyTurn<'_>> {
        let key = ip.filter(|ip| !self.trusted.contains(*ip)).map(rate_key);
        if let Some(key) = key {
            let mut readers = self.body_readers.lock().unwrap_or_else(|p| p.into_inner());
            let n = readers.entry(key).or_insert(0);
            if *n >= BODIES_PER_ADDRESS {
                return None;
            }
            *n += 1;
        }
        Some(BodyTurn { guard: self, key })
    }

    /// Whether every request from `ip` will be refused whatever it asks:
    /// blocked, denied everywhere, or outside the allow list.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        self.blocked(ip)
            || self.deny.contains(ip)
            || (!self.allow.is_empty() && !self.allow.contains(ip))
    }

    /// Whether `ip` is a trusted proxy, whose connections carry requests
    /// of the clients it names.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// A connection from `ip` refused under `rule` (too many held at once):
    /// an event, folded like the guard's other refusals, and a failure
    /// toward the address block, so a sustained attempt ends in one.
    pub fn refused_connection(self: &Arc<Self>, ip: IpAddr, rule: &str) {
        let meta = RequestMeta {
            ip: Some(ip.to_string()),
            ..Default::default()
        };
        self.spawn_event(EventKind::RateLimited, rule.to_owned(), meta.clone(), None);
        self.failed(ip, &meta, Failure::Connection);
    }

    /// A failed login, second-factor proof or API key from `ip`. Enough of
    /// them across any accounts (stuffing, spraying) block the address.
    /// Counts an answer toward the address's block when the guard's
    /// policy (`rampart_guard::failures::Failure::of_answer`) says it is a
    /// failure: the handlers only answer, this decides.
    pub fn answered(self: &Arc<Self>, ip: Option<IpAddr>, meta: &RequestMeta, code: &str) {
        if let (Some(ip), Some(f)) = (ip, Failure::of_answer(code)) {
            self.failed(ip, meta, f);
        }
        // Requests for what does not exist are an event, folded per
        // address like the guard's own, so detection can see probing
        // (a trusted proxy's own address stands for everyone: not it).
        if code == "not_found"
            && !ip.is_some_and(|ip| self.trusted.contains(ip))
            && self.fold(EventKind::NotFound, NOT_FOUND_RULE, meta)
        {
            let guard = self.clone();
            let meta = meta.clone();
            self.off_the_request_path(async move {
                guard
                    .write(
                        EventKind::NotFound,
                        NOT_FOUND_RULE,
                        NOT_FOUND_RULE,
                        &meta,
                        None,
                    )
                    .await
            });
        }
    }

    /// Counts a failure from `ip` toward its address block (failed
    /// sign-ins and refused connections share one count).
    fn failed(self: &Arc<Self>, ip: IpAddr, meta: &RequestMeta, what: Failure) {
        // A trusted proxy's own address (a request that named no client)
        // stands for everyone behind it: blocking it would refuse them all.
        if self.trusted.contains(ip) {
            return;
        }
        // Already blocked: nothing to add. (Connections are refused without
        // any rate limit, so counting them on would write a block per
        // `ip_failures` refusals.)
        if self.blocked(ip) {
            return;
        }
        let key = rate_key(ip);
        let reached = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(ip, self.now_ms());
        if !reached {
            return;
        }
        let net = IpNet::from(key);
        let net = match key {
            IpAddr::V6(_) => IpNet::new(key, 64).unwrap_or(net),
            IpAddr::V4(_) => net,
        };
        let guard = self.clone();
        let meta = meta.clone();
        self.off_the_request_path(async move {
            let reason = format!(
                "{} failures from this address within {} minutes, the last {}",
                guard.config.ip_failures,
                guard.config.ip_failure_window_secs / 60,
                what.describe()
            );
            match guard
                .add_block(&net.to_string(), None, &reason, "auto:ip_failures")
                .await
            {
                Ok(b) => {
                    guard
                        .event(
                            EventKind::BlockAdded,
                            "ip_failures",
                            &meta,
                            Some(&b.summary()),
                        )
                        .await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not block an address after repeated failures")
                }
            }
        });
    }

    /// Blocks in force now (for metrics).
    pub fn blocks_in_force(&self) -> usize {
        self.blocks.load().len()
    }

    /// Folds repeats of a guard event from the same address (IPv6 by /64):
    /// `true` when this one should be written now.
    fn fold(&self, kind: EventKind, rule: &str, meta: &RequestMeta) -> bool {
        let source = meta
            .ip
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(|ip| rate_key(ip).to_string())
            .unwrap_or_default();
        // Cross-site and drill requests fold apart, and their counts stay
        // marked.
        let source = if meta.cross_site {
            format!("{CROSS_SITE}{source}")
        } else {
            source
        };
        let source = match &meta.drill {
            Some(d) => format!("{DRILL}{d} {source}"),
            None => source,
        };
        let seen = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen((kind, source, rule.to_owned()), self.now_ms().max(0) as u64);
        seen == Seen::First
    }

    async fn event(&self, kind: EventKind, rule: &str, meta: &RequestMeta, detail: Option<&str>) {
        if self.fold(kind, rule, meta) {
            self.write(kind, rule, &reason(rule, detail), meta, None)
                .await;
        }
    }

    async fn write(
        &self,
        kind: EventKind,
        rule: &str,
        reason: &str,
        meta: &RequestMeta,
        folded: Option<Folded>,
    ) {
        let mut event = kind
            .event(self.clock.now(), Outcome::Failure)
            .rule(rule)
            .reason(Some(reason))
            .meta(meta);
        if let Some(f) = folded {
            event = event
                .field("event.count", f.repeats)
                .field("event.start", Timestamp(f.first_ms as i64).to_rfc3339())
                .field("event.end", Timestamp(f.last_ms as i64).to_rfc3339());
        }
        self.audit.record(event).await;
    }

    /// Writes one event per folded window: "repeated N more times".
    pub async fn flush_events(&self) {
        self.write_folded(self.now_ms().max(0) as u64).await
    }

    /// Waits for the event writes and blocks under way, then writes every
    /// folded count, windows still open included: at shutdown, so no event
    /// or count is lost.
    pub async fn flush_all_events(&self) {
        let mut set =
            std::mem::take(&mut *self.under_way.lock().unwrap_or_else(|p| p.into_inner()));
        while set.join_next().await.is_some() {}
        self.write_folded(u64::MAX).await
    }

    async fn write_folded(&self, now_ms: u64) {
        let (due, overflow) = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(now_ms);
        for ((kind, ip, rule), f) in due {
            let (drill, ip) = match ip.strip_prefix(DRILL).and_then(|r| r.split_once(' ')) {
                Some((d, rest)) => (Some(d.to_owned()), rest.to_owned()),
                None => (None, ip),
            };
            let (ip, cross_site) = match ip.strip_prefix(CROSS_SITE) {
                Some(rest) => (rest.to_owned(), true),
                None => (ip, false),
            };
            let meta = RequestMeta {
                ip: (!ip.is_empty()).then_some(ip),
                cross_site,
                drill,
                ..Default::default()
            };
            self.write(
                kind,
                &rule,
                &format!("{rule}: repeated {} more times", f.repeats),
                &meta,
                Some(f),
            )
            .await;
        }
        if overflow.repeats > 0 {
            let meta = RequestMeta::default();
            self.write(
                EventKind::RequestBlocked,
                "folded.overflow",
                &format!(
                    "events from too many addresses to list: {} more guard events folded",
                    overflow.repeats
                ),
                &meta,
                Some(overflow),
            )
            .await;
        }
    }

    /// Spawns an event write, so the answer to an attack does not wait on
    /// the database.
    fn spawn_event(
        self: &Arc<Self>,
        kind: EventKind,
        rule: String,
        meta: RequestMeta,
        detail: Option<String>,
    ) {
        // Folded here, on the request path: a repeat costs a map lookup,
        // not a task.
        if !self.fold(kind, &rule, &meta) {
            return;
        }
        let guard = self.clone();
        let reason = reason(&rule, detail.as_deref());
        self.off_the_request_path(
            async move { guard.write(kind, &rule, &reason, &meta, None).await },
        );
    }

    /// Runs `work` off the request path, tracked so shutdown waits for it.
    fn off_the_request_path(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.under_way.lock().unwrap_or_else(|p| p.into_inner());
        // What finished is forgotten, so the set holds only what runs.
        while set.try_join_next().is_some() {}
        set.spawn(work);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a block of `network`, its length set by the offender policy
/// unless given. Shared by the admin API and `rampart block add`.
#[allow(clippy::too_many_arguments)]
pub async fn add_block(
    store: &dyn Store,
    clock: &dyn Clock,
    entropy: &dyn Entropy,
    config: &GuardConfig,
    network: &str,
    length: Option<Duration>,
    reason: &str,
    source: &str,
) -> Result<IpBlock, BlockError> {
    let net = parse_net(network).map_err(BlockError::Invalid)?;
    if net.prefix_len() == 0 {
        return Err(BlockError::Invalid(
            "a block of every address would take the whole service offline; name a smaller range"
                .into(),
        ));
    }
    if reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(BlockError::Invalid(
            "the reason must be at most 200 characters on one line".into(),
        ));
    }
    if let Some(l) = length {
        if l.is_zero() || l > Duration::from_secs(365 * 24 * 3600) {
            return Err(BlockError::Invalid(
                "a block lasts between 1 second and 365 days".into(),
            ));
        }
    }
    let now = clock.now();
    let memory = Duration::from_secs(config.offender_memory_days * 24 * 3600);
    let network = net.to_string();
    let offence = store.block_count(&network, now.minus(memory)).await? + 1;
    let length = length.unwrap_or_else(|| config.block_length(offence));
    let mut id = [0u8; 12];
    entropy.fill(&mut id);
    let block = IpBlock {
        id: format!(
            "blk_{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        network,
        reason: if reason.is_empty() {
            "no reason given".into()
        } else {
            reason.to_owned()
        },
        source: source.to_owned(),
        created_at: now,
        expires_at: now.plus(length),
        offence,
    };
    store.insert_block(&block).await?;
    Ok(block)
}

/// An event's reason: the rule, and what it found if anything.
fn reason(rule: &str, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{rule}: {d}"),
        None => rule.to_owned(),
    }
}

fn refuse(status: StatusCode, code: &str, title: &str, detail: &str) -> Response {
    ApiError::new(status, code, title, detail).into_response()
}

/// The middleware. Runs inside `frame`, so refusals carry the request id
/// and the security headers, and are logged.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let guard = state.guard.clone();
    let ctx = req.extensions().get::<RequestContext>().cloned();
    let ip: Option<IpAddr> = ctx
        .as_ref()
        .and_then(|c| c.ip.as_deref())
        .and_then(|s| s.parse().ok());
    let meta = ctx.as_ref().map(RequestContext::meta).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let group = Group::of(&path);
    let rules = &guard.groups[group.index()];

    // 1. Address rules, then stored blocks: no database, no parsing.
    if let Some(ip) = ip {
        let denied = guard.deny.contains(ip)
            || rules.deny.contains(ip)
            || (!guard.allow.is_empty() && !guard.allow.contains(ip))
            || (!rules.allow.is_empty() && !rules.allow.contains(ip));
        if denied {
            guard.spawn_event(
                EventKind::RequestBlocked,
                format!("firewall.{}", group.as_str()),
                meta,
                None,
            );
            return refuse(
                StatusCode::FORBIDDEN,
                "address_denied",
                "Address not allowed",
                "Requests from this address are not allowed here.",
            );
        }
        if guard.blocked(ip) {
            guard.spawn_event(EventKind::RequestBlocked, "block".into(), meta, None);
            return refuse(
                StatusCode::FORBIDDEN,
                "address_blocked",
                "Address blocked",
                "Requests from this address are blocked for a while after suspicious activity.",
            );
        }
        // 1a. Behind a trusted proxy, an HTTP/1 connection (one request at
        // a time) counts for the client its request names; a request for a
        // client that already holds its share is refused. The connection
        // is the proxy's and stays open for its other clients. An HTTP/2
        // connection carries many clients' requests at once and is not
        // attributed.
        // Cheapest first: with no trusted proxy (the default) this is one
        // empty-list check per request.
        let proxied = req.version() < http::Version::HTTP_2
            && !guard.trusted.contains(ip)
            && req
                .extensions()
                .get::<ClientAddr>()
                .is_some_and(|peer| guard.trusted.contains(peer.0.ip()));
        if proxied {
            let conn = req
                .extensions()
                .get::<Weak<ConnHandle>>()
                .and_then(Weak::upgrade);
            if conn.is_some_and(|c| !c.attribute(ip)) {
                guard.refused_connection(ip, "connections.per_address");
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_connections",
                    "Too many connections",
                    "This address holds as many connections as it may: reuse one, or wait for one to close.",
                )
                .with_retry_after(1)
                .into_response();
            }
        }
        // 2. Rate limits per address (IPv6 by /64). The per-account limit
        // is applied once the account is known (`check_account`).
        if let Some(l) = &rules.ip {
            // This node's bucket first (a refusal costs nothing), then, for
            // sign-ins in shared mode, the bucket every node draws on.
            let mut verdict = l.check(&rate_key(ip));
            if let (Ok(()), Group::Auth, Some(rate)) = (&verdict, group, rules.ip_rate) {
                if guard.config.shared_auth_limits {
                    if let Some(shared) = guard
                        .shared_check(&format!("auth:{}", rate_key(ip)), rate)
                        .await
                    {
                        verdict = shared;
                    }
                }
            }
            if let Err(wait) = verdict {
                guard.spawn_event(
                    EventKind::RateLimited,
                    format!("rate.{}.ip", group.as_str()),
                    meta,
                    None,
                );
                return rate_limited(wait);
            }
        }
    }
    // 3. Inspection of the head, then the body (read in full first, within
    // the body limit, so no handler answers before the request has arrived).
    let head_mode = rules.inspect;
    let mut body_mode = rules.inspect_body;
    if group == Group::Data && body_mode != Mode::Block {
        let segment = path
            .trim_start_matches("/api/v1/collections/")
            .split('/')
            .next()
            .unwrap_or("");
        // As the router will read it: percent-decoded.
        let collection = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if guard
            .config
            .block_bodies_of
            .iter()
            .any(|c| *c == collection)
        {
            body_mode = Mode::Block;
        }
    }
    let (mut parts, body) = req.into_parts();
    // For the extractors: nested routers see the path without its prefix.
    parts.extensions.insert(group);
    // Over HTTP/2 a body has neither Content-Length nor Transfer-Encoding:
    // ask the body itself.
    let has_body = !http_body::Body::is_end_stream(&body);
    let bytes = if has_body {
        let Some(_turn) = guard.body_turn(ip) else {
            guard.spawn_event(
                EventKind::RateLimited,
                format!("rate.{}.bodies", group.as_str()),
                meta,
                None,
            );
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
                "Too many uploads at once from this address: wait for one to finish.",
            )
            .with_retry_after(1)
            .into_response();
        };
        let Ok(_permit) = guard.bodies.acquire().await else {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "Shutting down",
                "The server is shutting down; retry shortly.",
            );
        };
        match read_body(body, state.settings.limits.body_bytes).await {
            Ok(b) => Some(b),
            Err(res) => return *res,
        }
    } else {
        None
    };
    let verdict = {
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        // On record routes the filter and sort are our own query language,
        // compiled with bound parameters: they follow the body's mode.
        let (head_query, body_query) = match parts.uri.query() {
            Some(q) if group == Group::Data => split_query(q),
            q => (q.map(Cow::Borrowed), None),
        };
        let (head_query, body_query) = (head_query.as_deref(), body_query.as_deref());
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let mut head = if head_mode != Mode::Off {
            guard.inspector.inspect(
                &Inspected {
                    path: &path,
                    query: head_query,
                    headers,
                    content_type,
                    body: None,
                },
                true,
                false,
            )
        } else {
            Verdict::default()
        };
        let body_v = if body_mode != Mode::Off && (bytes.is_some() || body_query.is_some()) {
            let mut v = guard.inspector.inspect(
                &Inspected {
                    path: "",
                    query: body_query,
                    headers: Vec::new(),
                    content_type,
                    body: bytes.as_deref(),
                },
                true,
                true,
            );
            // The empty path contributes nothing.
            v.findings.retain(|f| f.part != rampart_guard::Part::Path);
            v
        } else {
            Verdict::default()
        };
        let part_block = (head.is_attack() && head_mode == Mode::Block)
            || (body_v.is_attack() && body_mode == Mode::Block);
        head.score += body_v.score;
        head.findings.extend(body_v.findings);
        // The request's score is the sum (an attack split between the
        // query and the body is one attack); where both parts block, so
        // does the sum.
        let block = part_block
            || (head.is_attack() && head_mode == Mode::Block && body_mode == Mode::Block);
        (head, block)
    };
    let (verdict, block) = verdict;
    if verdict.is_attack() || block {
        let rules_hit = verdict.rules().join(",");
        let detail = format!(
            "score {}{}",
            verdict.score,
            if block { ", blocked" } else { ", detected" }
        );
        guard.spawn_event(
            EventKind::InspectionMatch,
            rules_hit,
            meta.clone(),
            Some(detail),
        );
        if block {
            let id = ctx.map(|c| c.request_id).unwrap_or_default();
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "request_blocked",
                "Request blocked",
                format!(
                    "This request looks like an attack and was refused. If it is legitimate, send the incident id {id} to the site's administrator."
                ),
            )
            .into_response();
        }
    }
    let body = match bytes {
        Some(b) => Body::from(b),
        None => Body::empty(),
    };
    let res = next.run(Request::from_parts(parts, body)).await;
    if let Some(code) = res.extensions().get::<crate::error::ProblemCode>() {
        guard.answered(ip, &meta, &code.0);
    }
    res
}

/// Reads a whole body, up to `limit` bytes.
async fn read_body(mut body: Body, limit: usize) -> Result<bytes::Bytes, Box<Response>> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(Box::new(too_large(limit).into_response()));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body unreadable");
                return Err(Box::new(refuse(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    "Request body could not be read",
                    "The request body ended early or was malformed.",
                )));
            }
        }
    }
    Ok(buf.freeze())
}

/// The record routes' own query language (`filter`, `sort`) apart from the
/// other parameters: `(others, language)`.
fn split_query(q: &str) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    let (mut others, mut language) = (Vec::new(), Vec::new());
    for pair in q.split('&') {
        let key = pair.split('=').next().unwrap_or("");
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        if key == "filter" || key == "sort" {
            language.push(pair);
        } else {
            others.push(pair);
        }
    }
    let join = |v: Vec<&str>| (!v.is_empty()).then(|| Cow::Owned(v.join("&")));
    (join(others), join(language))
}

fn rate_limited(wait: Duration) -> Response {
    rate_limited_error(wait).into_response()
}

fn rate_limited_error(wait: Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil() as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        format!("Slow down: try again in {secs} seconds."),
    )
    .with_retry_after(secs.max(1))
}
