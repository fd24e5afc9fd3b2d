//! The one event pipeline and its tamper-evident trail (ADR 0011).
//!
//! Every security, data-access, guard and administrative event is an
//! [`Event`] handed to [`Audit`]: one bounded queue, one writer task per
//! process ([`writer`]) that gives each event the next gapless sequence
//! number of its node's chain, links it to the one before with a keyed MAC,
//! adds it to the node's RFC 6962 Merkle tree, commits events in batches,
//! and signs a checkpoint of the tree every ten seconds while events flow (every
//! five minutes when idle), each also appended to the witness file.
//! [`verify`] checks all of it offline.

pub mod format;
pub mod proof;
pub mod retention;
pub mod verify;
pub mod witness;
pub mod writer;

use std::collections::BTreeMap;

use async_trait::async_trait;
use rampart_crypto::audit::{Hash, Link};
use serde_json::Value;

use crate::{RequestMeta, StoreError, Timestamp};

pub use verify::{verify, Break, Expect, Incremental, NodeReport, Report};
pub use witness::{Witness, WitnessEntry};
pub use writer::{Audit, AuditStats, WriterMode};

/// ECS `event.category`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Authentication,
    /// Accounts, roles, invites, API keys.
    Iam,
    /// Reads and writes of protected data.
    Database,
    /// The guard's decisions on requests and connections.
    Web,
    /// Collections, keys, scans, settings.
    Configuration,
    /// The server and the audit trail itself.
    Process,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Authentication,
        Category::Iam,
        Category::Database,
        Category::Web,
        Category::Configuration,
        Category::Process,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Authentication => "authentication",
            Category::Iam => "iam",
            Category::Database => "database",
            Category::Web => "web",
            Category::Configuration => "configuration",
            Category::Process => "process",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// How much a person should care; ECS `event.severity` is its number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info = 1,
    Low = 2,
    Medium = 3,
    High = 4,
    Critical = 5,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn from_number(n: i64) -> Option<Severity> {
        Self::ALL.into_iter().find(|s| i64::from(s.number()) == n)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One event, as a part of Rampart records it. Never a password, token,
/// code, hash or sealed value: `fields` are set by code, from values that
/// are safe to show an administrator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub at: Timestamp,
    /// ECS `event.action`, e.g. `login_failure`, `data.read`.
    pub action: String,
    pub category: Category,
    /// ECS `event.outcome`: `success`, `failure` or `unknown`.
    pub outcome: String,
    pub severity: Severity,
    /// A stable reason code or a short description (`event.reason`).
    pub reason: Option<String>,
    /// `user.id`: an account id, or `key:<id>` for an API key.
    pub user_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `http.request.id`.
    pub request_id: Option<String>,
    /// `rule.name`: the guard or detection rule that decided.
    pub rule: Option<String>,
    /// What was acted on: a collection, an address block, an API key.
    pub object: Option<String>,
    /// Further fields, by ECS-style dotted name.
    pub fields: BTreeMap<String, Value>,
}

/// The field that marks a drill's events (its id): statistics leave
/// them out.
pub const DRILL_FIELD: &str = "labels.drill";

pub const SUCCESS: &str = "success";
pub const FAILURE: &str = "failure";
pub const UNKNOWN: &str = "unknown";

/// Longest kept free text (reason, user agent), in characters.
const MAX_TEXT: usize = 500;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

impl Event {
    pub fn new(at: Timestamp, action: &str, category: Category, outcome: &'static str) -> Self {
        Self {
            at,
            action: action.to_owned(),
            category,
            outcome: outcome.to_owned(),
            severity: if outcome == FAILURE {
                Severity::Low
            } else {
                Severity::Info
            },
            reason: None,
            user_id: None,
            source_ip: None,
            user_agent: None,
            request_id: None,
            rule: None,
            object: None,
            fields: BTreeMap::new(),
        }
    }

    /// Where the request came from.
    pub fn meta(mut self, meta: &RequestMeta) -> Self {
        self.source_ip = meta.ip.clone();
        self.user_agent = meta.user_agent.as_deref().map(bounded);
        self.request_id = meta.request_id.clone();
        if meta.cross_site {
            self.fields
                .insert("http.request.cross_site".to_owned(), Value::Bool(true));
        }
        self.drill(meta.drill.as_deref())
    }

    /// Marks the event as a drill's (`labels.drill`), when `drill` is set.
    pub fn drill(mut self, drill: Option<&str>) -> Self {
        if let Some(d) = drill {
            self.fields
                .insert(DRILL_FIELD.to_owned(), Value::String(d.to_owned()));
        }
        self
    }

    pub fn user(mut self, id: Option<&str>) -> Self {
        self.user_id = id.map(str::to_owned);
        self
    }

    pub fn reason(mut self, r: Option<&str>) -> Self {
        self.reason = r.map(bounded);
        self
    }

    pub fn rule(mut self, r: &str) -> Self {
        self.rule = Some(r.to_owned());
        self
    }

    pub fn object(mut self, o: &str) -> Self {
        self.object = Some(o.to_owned());
        self
    }

    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }

    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }
}

/// An event committed with the write it is about, in the write's own
/// transaction (`audit_pending`), for the writer of `node` to chain: so
/// no acknowledged write lacks its event, even after a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub node: String,
    /// The event as JSON.
    pub body: String,
}

impl PendingEvent {
    /// The event for `node`, as `<hex MAC> <JSON>`: the MAC (a key derived
    /// from the audit key) covers the node and the JSON, so a row written
    /// into the table by anyone else is not chained as genuine.
    pub fn of(node: &str, event: &Event, keys: &rampart_crypto::audit::AuditKeys) -> Self {
        let json = serde_json::to_string(event).unwrap_or_default();
        let mac = hex::encode(keys.pending_mac(node, json.as_bytes()));
        Self {
            node: node.to_owned(),
            body: format!("{mac} {json}"),
        }
    }

    /// The event in a pending body, if its MAC holds.
    pub fn open(node: &str, body: &str, keys: &rampart_crypto::audit::AuditKeys) -> Option<Event> {
        let (mac, json) = body.split_once(' ')?;
        let mac = hex::decode(mac).ok()?;
        if !keys.pending_matches(node, json.as_bytes(), &mac) {
            return None;
        }
        serde_json::from_str(json).ok()
    }
}

/// An event as stored: its place in its node's chain, its link and the
/// Merkle tree hashes it added.
#[derive(Debug, Clone, PartialEq)]
pub struct Chained {
    pub node: String,
    pub seq: u64,
    pub at: Timestamp,
    pub action: String,
    pub category: String,
    pub outcome: String,
    pub severity: u8,
    pub reason: Option<String>,
    pub user_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub rule: Option<String>,
    pub object: Option<String>,
    /// `Event::fields` as a JSON object, exactly as linked.
    pub fields: String,
    pub link: Link,
    /// The stored hashes of the Merkle tree this event added
    /// (`rampart_crypto::audit::locate`).
    pub tree: Vec<Hash>,
    /// The indexed form of `source_ip` (see [`ip_key`]), as stored: not
    /// linked, but checked against `source_ip` by `verify`.
    pub ip_key: Option<String>,
}

const CANONICAL_TAG: &[u8] = b"rampart-audit-v1\0";

fn put(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

impl Chained {
    /// The bytes the link and the Merkle leaf cover: every field but the
    /// link and the tree, each length-prefixed (absent differs from empty).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.fields.len());
        out.extend_from_slice(CANONICAL_TAG);
        put(&mut out, Some(self.node.as_bytes()));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at.millis().to_be_bytes());
        put(&mut out, Some(self.action.as_bytes()));
        put(&mut out, Some(self.category.as_bytes()));
        put(&mut out, Some(self.outcome.as_bytes()));
        out.push(self.severity);
        for v in [
            &self.reason,
            &self.user_id,
            &self.source_ip,
            &self.user_agent,
            &self.request_id,
            &self.rule,
            &self.object,
        ] {
            put(&mut out, v.as_deref().map(str::as_bytes));
        }
        put(&mut out, Some(self.fields.as_bytes()));
        out
    }

    /// An event read back from its canonical bytes (what a proof proves);
    /// its link and tree are not in them.
    pub fn from_canonical(b: &[u8]) -> Option<Chained> {
        let mut r = b.strip_prefix(CANONICAL_TAG)?;
        fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if r.len() < n {
                return None;
            }
            let (a, rest) = r.split_at(n);
            *r = rest;
            Some(a)
        }
        fn field(r: &mut &[u8]) -> Option<Option<String>> {
            let len = u32::from_be_bytes(take(r, 4)?.try_into().ok()?);
            if len == u32::MAX {
                return Some(None);
            }
            let v = take(r, len as usize)?;
            Some(Some(String::from_utf8(v.to_vec()).ok()?))
        }
        let node = field(&mut r)??;
        let seq = u64::from_be_bytes(take(&mut r, 8)?.try_into().ok()?);
        let at = i64::from_be_bytes(take(&mut r, 8)?.try_into().ok()?);
        let action = field(&mut r)??;
        let category = field(&mut r)??;
        let outcome = field(&mut r)??;
        let severity = *take(&mut r, 1)?.first()?;
        let mut opt = Vec::new();
        for _ in 0..7 {
            opt.push(field(&mut r)?);
        }
        let fields = field(&mut r)??;
        if !r.is_empty() {
            return None;
        }
        let mut opt = opt.into_iter();
        Some(Chained {
            node,
            seq,
            at: Timestamp(at),
            action,
            category,
            outcome,
            severity,
            reason: opt.next()?,
            user_id: opt.next()?,
            source_ip: opt.next()?,
            user_agent: opt.next()?,
            request_id: opt.next()?,
            rule: opt.next()?,
            object: opt.next()?,
            fields,
            link: [0; 32],
            tree: Vec::new(),
            ip_key: None,
        })
    }

    /// The event's fields as JSON (an empty object if unreadable).
    pub fn fields_map(&self) -> serde_json::Map<String, Value> {
        serde_json::from_str(&self.fields).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_read_back() {
        let c = Chained {
            node: "n".into(),
            seq: 3,
            at: Timestamp(-5),
            action: "login_failure".into(),
            category: "authentication".into(),
            outcome: "failure".into(),
            severity: 2,
            reason: Some(String::new()),
            user_id: None,
            source_ip: Some("::1".into()),
            user_agent: None,
            request_id: Some("r".into()),
            rule: None,
            object: Some("o".into()),
            fields: "{}".into(),
            link: [0; 32],
            tree: vec![],
            ip_key: None,
        };
        let b = c.canonical();
        assert_eq!(Chained::from_canonical(&b), Some(c));
        assert_eq!(Chained::from_canonical(&b[..b.len() - 1]), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Chained::from_canonical(&longer), None);
    }
}

/// A signed checkpoint as stored in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    pub node: String,
    pub size: u64,
    pub at: Timestamp,
    /// The signed note (C2SP tlog-checkpoint).
    pub note: String,
}

/// A search over events, newest first. Every filter is optional; all
/// given must hold.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Any of these actions (at most [`MAX_ACTIONS`]).
    pub actions: Vec<String>,
    pub category: Option<Category>,
    /// Only data-access events (`data.*`), or none of them.
    pub data_access: Option<bool>,
    pub outcome: Option<String>,
    pub user_id: Option<String>,
    /// Source addresses in this network.
    pub source_net: Option<ipnet::IpNet>,
    /// At least this severe.
    pub min_severity: Option<Severity>,
    pub rule: Option<String>,
    /// The object acted on (a data event's collection).
    pub object: Option<String>,
    /// Text found in any non-secret field (action, reason, rule, object,
    /// user, user agent, request id, fields), case as given.
    pub text: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: u32,
    /// The (time, node, seq) of the last event of the previous page.
    pub cursor: Option<(Timestamp, String, u64)>,
    /// Drills' events (`labels.drill`): only them, none of them, or
    /// (`None`) both.
    pub drills: Option<bool>,
}

pub const MAX_ACTIONS: usize = 8;

/// The fixed-width hex of an address as IPv6 (IPv4 mapped), so a network
/// is a range of strings: what the store indexes for address searches.
pub fn ip_key(ip: std::net::IpAddr) -> String {
    let v6 = match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    };
    hex::encode(v6.octets())
}

/// What `ip_key` must hold for an event with `source_ip`.
pub fn ip_key_of(source_ip: Option<&str>) -> Option<String> {
    source_ip
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(ip_key)
}

/// The first and last [`ip_key`] of a network.
pub fn net_keys(net: &ipnet::IpNet) -> (String, String) {
    (ip_key(net.network()), ip_key(net.broadcast()))
}

/// The audit trail's tables. Only `rampart-store`'s `audit` module
/// implements it, and nothing else writes these tables.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// The last event of `node`'s chain.
    async fn audit_head(&self, node: &str) -> Result<Option<Chained>, StoreError>;
    /// The `tree` column of the events `seqs` of `node`.
    async fn audit_trees(
        &self,
        node: &str,
        seqs: &[u64],
    ) -> Result<Vec<(u64, Vec<Hash>)>, StoreError>;
    /// Appends events in one transaction, deleting the pending events
    /// `consumed` (ids from [`AuditStore::pending_events`]) in it;
    /// `Conflict` when one of their sequence numbers is taken or a pending
    /// event is gone (another writer appended first).
    async fn append_audit(
        &self,
        node: &str,
        events: &[Chained],
        consumed: &[i64],
    ) -> Result<(), StoreError>;
    /// Events committed with their writes, not yet chained, oldest first:
    /// (id, body as [`PendingEvent`] wrote it).
    async fn pending_events(
        &self,
        node: &str,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError>;
    async fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError>;
    /// Checkpoints of `node` after `(size, at)` in (size, time) order.
    async fn audit_checkpoints(
        &self,
        node: &str,
        after: (u64, i64),
        limit: u32,
    ) -> Result<Vec<CheckpointRow>, StoreError>;
    async fn latest_checkpoint(&self, node: &str) -> Result<Option<CheckpointRow>, StoreError>;
    /// Events of `node` with `seq >= from`, in order.
    async fn audit_range(
        &self,
        node: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Chained>, StoreError>;
    /// Every node that has a chain or a checkpoint.
    async fn audit_nodes(&self) -> Result<Vec<String>, StoreError>;
    async fn search_events(&self, q: &EventQuery) -> Result<Vec<Chained>, StoreError>;
    /// How many events match `q` (its limit and cursor aside), per bucket
    /// of `bucket_ms` (bucket start, count), oldest first.
    async fn count_events(
        &self,
        q: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<(Timestamp, u64)>, StoreError>;
    /// The sequence number of the first event of `node` at or after `at`.
    async fn audit_first_since(&self, node: &str, at: Timestamp)
        -> Result<Option<u64>, StoreError>;
    /// Deletes the events `first..=last` of `node` and stores the signed
    /// record of them, in one transaction; how many were deleted. The only
    /// deletion of events there is.
    async fn retire_events(
        &self,
        node: &str,
        first: u64,
        last: u64,
        note: &str,
    ) -> Result<u64, StoreError>;
    /// The newest retention record of `node` (a signed note).
    async fn latest_retirement(&self, node: &str) -> Result<Option<String>, StoreError>;
    /// Where stream `name` is in `chain`: the next sequence number to ship.
    async fn stream_cursor(&self, name: &str, chain: &str) -> Result<u64, StoreError>;
    async fn set_stream_cursor(&self, name: &str, chain: &str, next: u64)
        -> Result<(), StoreError>;
    /// Every event written by a release before the audit trail, oldest
    /// first, to be chained once.
    async fn legacy_events(&self) -> Result<Vec<Event>, StoreError>;
    /// Appends `events` (the legacy events, chained) and empties the
    /// legacy tables, in one transaction.
    async fn import_legacy(&self, events: &[Chained]) -> Result<(), StoreError>;
}

/// Every action the trail records: the security events, the data
/// accesses and the trail's own.
pub fn known_actions() -> Vec<String> {
    let mut all: Vec<String> = crate::events::EventKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    all.extend(
        crate::data::Action::ALL
            .iter()
            .map(|a| format!("{}{}", crate::data::DATA_ACTION_PREFIX, a.as_str())),
    );
    all.extend(writer::OWN_ACTIONS.iter().map(|a| (*a).to_owned()));
    all.extend(crate::alerts::ACTIONS.iter().map(|a| (*a).to_owned()));
    all.extend(backup_actions::ALL.iter().map(|a| (*a).to_owned()));
    all.extend(
        crate::incident::actions::ALL
            .iter()
            .map(|a| (*a).to_owned()),
    );
    all.extend(crate::acme::actions::ALL.iter().map(|a| (*a).to_owned()));
    all.extend(
        crate::lifecycle::actions::ALL
            .iter()
            .map(|a| (*a).to_owned()),
    );
    all
}

/// What backups record (ADR 0013): each with outcome `success` or
/// `failure` (then of high severity, with the reason).
pub mod backup_actions {
    /// A backup written.
    pub const CREATED: &str = "backup.created";
    /// A backup restored into scratch space and checked.
    pub const VERIFIED: &str = "backup.verified";
    /// A backup put in place of a database.
    pub const RESTORED: &str = "backup.restored";
    /// A scheduled backup that was not verified in time (outcome failure).
    pub const MISSING: &str = "backup.missing";
    /// A backup uploaded to the S3 bucket.
    pub const UPLOADED: &str = "backup.uploaded";
    pub const ALL: [&str; 5] = [CREATED, VERIFIED, RESTORED, MISSING, UPLOADED];

    use super::{AuditStore, Chained, EventQuery, SUCCESS};
    use crate::StoreError;

    /// The newest backup events of `actions` (with `outcome`, when given),
    /// newest first: the trail is where backups are known, no table of
    /// their own.
    pub async fn newest(
        store: &dyn AuditStore,
        actions: &[&str],
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Chained>, StoreError> {
        store
            .search_events(&EventQuery {
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                outcome: outcome.map(str::to_owned),
                limit,
                ..Default::default()
            })
            .await
    }

    /// The check of the newest backup that passed it.
    pub async fn last_verified(store: &dyn AuditStore) -> Result<Option<Chained>, StoreError> {
        Ok(newest(store, &[VERIFIED], Some(SUCCESS), 1)
            .await?
            .into_iter()
            .next())
    }
}

/// Whether `action` is one the trail records (the writer asks for every
/// event it counts: the set is made once).
pub fn known_action(action: &str) -> bool {
    static KNOWN: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| known_actions().into_iter().collect())
        .contains(action)
}

/// The name of a node's log in its checkpoints.
pub fn origin(node: &str) -> String {
    format!("rampart/audit/{node}")
}

/// The name of the signing key (one key signs every node's checkpoints).
pub const KEY_NAME: &str = "rampart-audit";

/// Whether `node` can name a chain: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn node_name_ok(node: &str) -> bool {
    (1..=64).contains(&node.len())
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
