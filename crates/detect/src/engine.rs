//! The detector: every event of the trail, as its ECS document, through
//! the rule set (rsigma's detection and correlation engine), in order, by
//! the events' own times, so a replay of an export fires exactly what the
//! server fired.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use rsigma_eval::{
    CorrelationConfig, CorrelationEngine, CorrelationEventMode, JsonEvent, ResultBody,
    TimestampFallback,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::respond::Response;
use crate::rules::{RuleInfo, RuleSet};

/// Most correlation windows held at once, across every rule and group
/// (an address, an account): past it the stalest tenth is dropped, so a
/// flood of distinct addresses cannot grow memory without bound.
pub const MAX_STATE: usize = 100_000;
/// Accounts whose sign-in networks and devices are remembered (for
/// `new_address` and `new_device`).
pub const MAX_KNOWN_ACCOUNTS: usize = 50_000;
/// Networks, and devices, remembered per account.
const PLACES_PER_ACCOUNT: usize = 16;
/// Entries one group's window keeps (the newest): one group can see every
/// event (password spraying counts all failures together), and a window
/// of 30 minutes on a busy server would otherwise grow without bound and
/// make each count slower. Thresholds above it cannot be reached.
pub const MAX_GROUP_ENTRIES: usize = 256;
/// Evidence kept per firing.
pub const MAX_EVIDENCE: usize = 50;

/// Office hours for `rampart.detect.outside_hours`: from `start` to `end`
/// (minutes after midnight, in the zone `utc_offset_minutes`), on weekdays
/// only if `weekdays`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfficeHours {
    pub start: u16,
    pub end: u16,
    pub weekdays: bool,
    pub utc_offset_minutes: i16,
}

impl OfficeHours {
    /// Parses `HH:MM-HH:MM`, optionally followed by ` weekdays`.
    pub fn parse(s: &str, utc_offset_minutes: i16) -> Result<OfficeHours, String> {
        let bad = || {
            format!("office_hours `{s}`: write it as \"08:00-18:00\" or \"08:00-18:00 weekdays\"")
        };
        let mut parts = s.split_whitespace();
        let range = parts.next().ok_or_else(bad)?;
        let weekdays = match parts.next() {
            None => false,
            Some("weekdays") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        let (a, b) = range.split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start >= end {
            return Err(bad());
        }
        if !(-14 * 60..=14 * 60).contains(&utc_offset_minutes) {
            return Err("utc_offset_minutes must be between -840 and 840".into());
        }
        Ok(OfficeHours {
            start,
            end,
            weekdays,
            utc_offset_minutes,
        })
    }

    /// Whether `at_ms` (Unix milliseconds) is outside these hours.
    pub fn outside(&self, at_ms: i64) -> bool {
        let local_min = at_ms.div_euclid(60_000) + i64::from(self.utc_offset_minutes);
        let day = local_min.div_euclid(24 * 60);
        let minute = local_min.rem_euclid(24 * 60) as u16;
        // 1970-01-01 was a Thursday: day 0 → 3 with Monday = 0.
        let weekday = (day + 3).rem_euclid(7);
        (self.weekdays && weekday >= 5) || minute < self.start || minute >= self.end
    }
}

/// How the detector is set up, besides its rules.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub office_hours: Option<OfficeHours>,
    /// Most correlation windows held at once (0: [`MAX_STATE`]).
    pub max_state: usize,
    /// Report building blocks and the rules correlations count too (for
    /// `rampart rules test`); the server reports only what alerts.
    pub everything: bool,
}

/// A rule that fired, and on what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub rule_id: String,
    pub title: String,
    /// Sigma level.
    pub level: String,
    /// What the rule grouped by and the values (`source.ip` = …).
    pub group: Vec<(String, String)>,
    /// The count, distinct count or sum that crossed the threshold (1 for
    /// a single-event rule).
    pub value: f64,
    /// The events that made it fire, by id (`node:seq`), oldest first,
    /// the last being the one that tipped it.
    pub evidence: Vec<String>,
    /// The time of the event that tipped it (Unix ms).
    pub at_ms: i64,
    /// That event's address and account.
    pub source_ip: Option<String>,
    pub user_id: Option<String>,
    pub respond: Vec<Response>,
    pub block_for_secs: Option<u64>,
}

impl Firing {
    /// The address the firing is about: the event's (for an IPv6 group,
    /// one address of its /64, which is what a block covers).
    pub fn ip(&self) -> Option<IpAddr> {
        self.source_ip.as_deref().and_then(|s| s.parse().ok())
    }

    /// The account the firing is about: the group's, else the event's.
    pub fn account(&self) -> Option<&str> {
        self.group
            .iter()
            .find(|(k, _)| k == "user.id" || k == "account")
            .map(|(_, v)| v.as_str())
            .or(self.user_id.as_deref())
    }

    /// What identifies one ongoing attack: the rule and its group; for a
    /// single-event rule, the event's address and account.
    pub fn group_key(&self) -> String {
        let mut key = self.rule_id.clone();
        let own;
        let group = if self.group.is_empty() {
            own = [
                (
                    "source.ip".to_owned(),
                    self.source_ip.clone().unwrap_or_default(),
                ),
                (
                    "user.id".to_owned(),
                    self.user_id.clone().unwrap_or_default(),
                ),
            ];
            &own[..]
        } else {
            &self.group[..]
        };
        for (k, v) in group {
            key.push('|');
            key.push_str(k);
            key.push('=');
            key.push_str(v);
        }
        key
    }
}

/// A field of an ECS document by its dotted name. Field names may hold
/// dots themselves (`rampart.fields.login.key` is `rampart` → `fields` →
/// `login.key`): at each level the whole rest is tried as a key, then each
/// way of splitting it.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    if let Some(x) = obj.get(path) {
        return Some(x);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(child) = obj.get(&path[..i]) {
            if let Some(found) = lookup(child, &path[i + 1..]) {
                return Some(found);
            }
        }
    }
    None
}

/// What detection counts an address as: an IPv4 address itself, an IPv6
/// address's /64.
pub fn counted_as(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(v4.to_string()),
            None => {
                let s = v6.segments();
                Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
            }
        },
    }
}

/// The network an address is known by: its /24, or /64 for IPv6.
fn network_of(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(&v4.to_string()),
            None => {
                let s = v6.segments();
                Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
            }
        },
    }
}

/// What a user agent says of the device, as a 64-bit digest (whoever
/// signs in chooses the text, so it is not kept): its text with every run
/// of digits as one, so a browser's update is not a new device while
/// another browser or system is.
fn device_of(user_agent: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut in_digits = false;
    for c in user_agent.chars().take(256) {
        let digit = c.is_ascii_digit();
        if !(digit && in_digits) {
            (if digit { '#' } else { c }).hash(&mut h);
        }
        in_digits = digit;
    }
    format!("{:016x}", h.finish())
}

/// The places (networks, or devices) each account signed in from,
/// bounded.
#[derive(Debug, Default)]
struct Known {
    places: HashMap<String, VecDeque<String>>,
    order: VecDeque<String>,
}

impl Known {
    /// Notes a sign-in; whether its place is new for an account that had
    /// signed in before.
    fn note(&mut self, account: &str, place: String) -> bool {
        if let Some(places) = self.places.get_mut(account) {
            if places.contains(&place) {
                return false;
            }
            if places.len() >= PLACES_PER_ACCOUNT {
                places.pop_front();
            }
            places.push_back(place);
            return true;
        }
        while self.places.len() >= MAX_KNOWN_ACCOUNTS {
            match self.order.pop_front() {
                Some(old) => {
                    self.places.remove(&old);
                }
                None => break,
            }
        }
        self.places
            .insert(account.to_owned(), VecDeque::from([place]));
        self.order.push_back(account.to_owned());
        false
    }
}

/// Addresses kept for `name_failed_here`.
const MAX_FAILING_ADDRESSES: usize = 100_000;
/// Names kept per address, and for how long.
const NAMES_PER_ADDRESS: usize = 32;
const NAME_MEMORY_MS: i64 = 3_600_000;

/// The login names (`login.key`) that failed from each address lately.
#[derive(Debug, Default)]
struct FailedNames {
    by_ip: HashMap<String, VecDeque<(String, i64)>>,
    order: VecDeque<String>,
}

impl FailedNames {
    fn note(&mut self, ip: &str, key: &str, at_ms: i64) {
        if !self.by_ip.contains_key(ip) {
            while self.by_ip.len() >= MAX_FAILING_ADDRESSES {
                match self.order.pop_front() {
                    Some(old) => {
                        self.by_ip.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(ip.to_owned());
        }
        let names = self.by_ip.entry(ip.to_owned()).or_default();
        names.retain(|(k, t)| k != key && *t > at_ms - NAME_MEMORY_MS);
        if names.len() >= NAMES_PER_ADDRESS {
            names.pop_front();
        }
        names.push_back((key.to_owned(), at_ms));
    }

    fn failed_here(&self, ip: &str, key: &str, at_ms: i64) -> bool {
        self.by_ip.get(ip).is_some_and(|n| {
            n.iter()
                .any(|(k, t)| k == key && *t > at_ms - NAME_MEMORY_MS)
        })
    }
}

/// An event as the engine sees it: the flattened document, and for the
/// evidence buffers only its id (rsigma asks for the whole event as JSON
/// to read the id from it, once per correlation it feeds: a clone of every
/// event, several times, for one string).
struct Doc<'a> {
    doc: &'a Value,
    inner: JsonEvent<'a>,
    id: Option<&'a str>,
}

impl rsigma_eval::Event for Doc<'_> {
    fn get_field(&self, path: &str) -> Option<rsigma_eval::EventValue<'_>> {
        lookup(self.doc, path).map(rsigma_eval::EventValue::from)
    }
    fn top_level_keys(&self) -> Option<Vec<std::borrow::Cow<'_, str>>> {
        self.inner.top_level_keys()
    }
    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        self.inner.visit_top_level_keys(visit)
    }
    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.inner.any_string_value(pred)
    }
    fn all_string_values(&self) -> Vec<std::borrow::Cow<'_, str>> {
        self.inner.all_string_values()
    }
    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.inner.visit_string_values(visit)
    }
    fn to_json(&self) -> Value {
        match self.id {
            Some(id) => {
                let mut m = Map::with_capacity(1);
                m.insert("event.id".to_owned(), Value::from(id));
                Value::Object(m)
            }
            None => Value::Null,
        }
    }
    fn field_keys(&self) -> Vec<std::borrow::Cow<'_, str>> {
        self.inner.field_keys()
    }
}

/// The rule set running over events.
pub struct Detector {
    engine: CorrelationEngine,
    rules: HashMap<String, RuleInfo>,
    /// Rules counted by correlations: they alert only through them.
    referenced: std::collections::HashSet<String>,
    options: Options,
    networks: Known,
    devices: Known,
    failed: FailedNames,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Detector {
    pub fn new(set: &RuleSet, options: Options) -> Detector {
        let config = CorrelationConfig {
            timestamp_fallback: TimestampFallback::Skip,
            max_state_entries: if options.max_state == 0 {
                MAX_STATE
            } else {
                options.max_state
            },
            emit_detections: options.everything,
            correlation_event_mode: CorrelationEventMode::Refs,
            max_correlation_events: MAX_EVIDENCE,
            max_group_entries: Some(MAX_GROUP_ENTRIES),
            ..CorrelationConfig::default()
        };
        let mut engine = CorrelationEngine::new(config);
        // `rules::load` added each of these to an engine like this one and
        // refused the set on any error.
        if let Err(e) = engine.add_collection(&set.collection) {
            unreachable_in_a_checked_set(&e);
        }
        let mut rules = HashMap::new();
        let mut referenced = std::collections::HashSet::new();
        for info in set.infos.iter().filter(|i| i.enabled) {
            for r in &info.counts {
                referenced.insert(r.clone());
            }
            rules.insert(info.id.clone(), info.clone());
        }
        let by_name: Vec<(String, String)> = rules
            .values()
            .filter_map(|i| i.name.clone().map(|n| (n, i.id.clone())))
            .collect();
        for (name, id) in by_name {
            if referenced.contains(&name) {
                referenced.insert(id);
            }
        }
        Detector {
            engine,
            rules,
            referenced,
            options,
            networks: Known::default(),
            devices: Known::default(),
            failed: FailedNames::default(),
        }
    }

    /// Takes over the correlation windows and suppressions of `old` (a
    /// reload keeps counting an attack in progress), for the rules both
    /// sets have, and the addresses it knows.
    pub fn carry_state_from(&mut self, old: &mut Detector) {
        let _ = self.engine.import_state(old.engine.export_state());
        self.networks = std::mem::take(&mut old.networks);
        self.devices = std::mem::take(&mut old.devices);
        self.failed = std::mem::take(&mut old.failed);
    }

    /// Correlation windows held now.
    pub fn state_count(&self) -> usize {
        self.engine.state_count()
    }

    /// Seeds what `new_address` and `new_device` compare with, without
    /// firing anything: an account's earlier sign-in from `ip` with
    /// `user_agent` (the server seeds them from its live sessions, so a
    /// restart does not forget where everyone signs in from).
    pub fn remember_sign_in(&mut self, account: &str, ip: Option<&str>, user_agent: Option<&str>) {
        if let Some(net) = ip.and_then(network_of) {
            self.networks.note(account, net);
        }
        if let Some(agent) = user_agent {
            self.devices.note(account, device_of(agent));
        }
    }

    /// Runs one ECS document (as `rampart audit export` writes it) through
    /// the rules, at its `@timestamp`.
    pub fn observe_ecs(&mut self, doc: &Value) -> Vec<Firing> {
        let at_ms = doc
            .get("@timestamp")
            .and_then(Value::as_str)
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        match at_ms {
            Some(at) => self.observe(doc, at),
            None => Vec::new(),
        }
    }

    /// Runs one ECS document through the rules at `at_ms`.
    pub fn observe(&mut self, doc: &Value, at_ms: i64) -> Vec<Firing> {
        self.observe_owned(doc.clone(), at_ms)
    }

    /// [`Detector::observe`], taking the document (the server makes one
    /// per event and has no further use for it).
    pub fn observe_owned(&mut self, mut doc: Value, at_ms: i64) -> Vec<Firing> {
        let text =
            |doc: &Value, path: &str| lookup(doc, path).and_then(Value::as_str).map(str::to_owned);
        let action = text(&doc, "event.action");
        let source_ip = text(&doc, "source.ip");
        let user_id = text(&doc, "user.id");
        let this_id = text(&doc, "event.id");
        let name = text(&doc, "rampart.fields.login.key");
        let mut detect = Map::new();
        if let Some(h) = &self.options.office_hours {
            detect.insert("outside_hours".into(), h.outside(at_ms).into());
        }
        // What an address is counted as: itself, or for IPv6 its /64 (one
        // host holds a whole /64; rotating inside it must not reset the
        // counts). The guard blocks the same network.
        if let Some(net) = source_ip.as_deref().and_then(counted_as) {
            detect.insert("source_net".into(), net.into());
        }
        match (action.as_deref(), &source_ip, &name) {
            (Some("login_failure"), Some(ip), Some(name)) => self.failed.note(ip, name, at_ms),
            (Some("login_success"), Some(ip), Some(name)) => {
                let here = self.failed.failed_here(ip, name, at_ms);
                detect.insert("name_failed_here".into(), here.into());
            }
            _ => {}
        }
        if let (Some("login_success"), Some(account)) = (action.as_deref(), &user_id) {
            if let Some(net) = source_ip.as_deref().and_then(network_of) {
                let new = self.networks.note(account, net);
                detect.insert("new_address".into(), new.into());
            }
            if let Some(agent) = lookup(&doc, "user_agent.original").and_then(Value::as_str) {
                let new = self.devices.note(account, device_of(agent));
                detect.insert("new_device".into(), new.into());
            }
        }
        if let Some(root) = doc.as_object_mut() {
            // A folded guard event says how many it stands for; any other
            // counts one.
            if let Some(Value::Object(event)) = root.get_mut("event") {
                event.entry("count").or_insert(Value::from(1));
            }
            if let Value::Object(r) = root
                .entry("rampart")
                .or_insert_with(|| Value::Object(Map::new()))
            {
                r.insert("detect".into(), Value::Object(detect));
            }
        }
        let doc = Doc {
            doc: &doc,
            inner: JsonEvent::borrow(&doc),
            id: this_id.as_deref(),
        };
        let results = self.engine.process_event_at(&doc, at_ms.div_euclid(1000));
        let mut out = Vec::new();
        for r in results {
            let Some(id) = r.header.rule_id.clone() else {
                continue;
            };
            let Some(info) = self.rules.get(&id) else {
                continue;
            };
            if info.building_block
                || self.referenced.contains(&id)
                || info
                    .name
                    .as_ref()
                    .is_some_and(|n| self.referenced.contains(n))
            {
                continue;
            }
            let (group, value, mut evidence) = match &r.body {
                ResultBody::Correlation(c) => (
                    c.group_key.clone(),
                    c.aggregated_value,
                    c.event_refs
                        .iter()
                        .flatten()
                        .filter_map(|e| e.id.clone())
                        .collect::<Vec<_>>(),
                ),
                ResultBody::Detection(_) => (Vec::new(), 1.0, Vec::new()),
            };
            if let Some(this) = &this_id {
                if evidence.last() != Some(this) {
                    evidence.push(this.clone());
                }
            }
            if evidence.len() > MAX_EVIDENCE {
                evidence.drain(..evidence.len() - MAX_EVIDENCE);
            }
            let respond = if info.respond.is_empty() {
                vec![Response::Alert]
            } else {
                info.respond.clone()
            };
            out.push(Firing {
                rule_id: id,
                title: info.title.clone(),
                level: info.level.clone(),
                group,
                value,
                evidence,
                at_ms,
                source_ip: source_ip.clone(),
                user_id: user_id.clone(),
                respond,
                block_for_secs: info.block_for_secs,
            });
        }
        out
    }
}

fn unreachable_in_a_checked_set(e: &rsigma_eval::EvalError) {
    // A RuleSet is only made by `rules::load`, which adds every rule to an
    // engine configured like this one first; should the two ever differ,
    // the set still runs with what was added.
    debug_assert!(false, "a checked rule set was refused: {e}");
}
