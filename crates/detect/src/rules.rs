//! Rule sets: the shipped rules compiled into the binary, the user's rule
//! files, and the settings that tune them. A set is checked whole before
//! it is used: a broken file is refused with its line and reason, and the
//! caller keeps the set it had.

use std::collections::{BTreeMap, BTreeSet};

use rsigma_eval::{CorrelationConfig, CorrelationEngine};
use rsigma_parser::{
    parse_sigma_yaml, ConditionOperator, CorrelationCondition, CorrelationRule, SigmaCollection,
    Timespan,
};
use serde::{Deserialize, Serialize};

use crate::respond::Response;

/// The rules Rampart ships, by file name.
pub const SHIPPED: [(&str, &str); 4] = [
    (
        "authentication.yml",
        include_str!("../rules/authentication.yml"),
    ),
    ("probing.yml", include_str!("../rules/probing.yml")),
    ("data.yml", include_str!("../rules/data.yml")),
    (
        "administration.yml",
        include_str!("../rules/administration.yml"),
    ),
];

/// The longest automatic block (the guard's own limit).
pub const MAX_BLOCK_SECS: u64 = 365 * 24 * 3600;
/// Most rules in one set (shipped and the user's).
pub const MAX_RULES: usize = 1_000;
/// Largest rule file read.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// One file of rules.
#[derive(Debug, Clone)]
pub struct Source {
    /// What the file is called in messages: `shipped:probing.yml`, or a
    /// path.
    pub name: String,
    pub text: String,
    pub shipped: bool,
}

impl Source {
    pub fn shipped() -> Vec<Source> {
        SHIPPED
            .iter()
            .map(|(name, text)| Source {
                name: format!("shipped:{name}"),
                text: (*text).to_owned(),
                shipped: true,
            })
            .collect()
    }
}

/// A setting for one rule (`[detect.rules.<id>]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// `false` turns the rule off (and every correlation built on it).
    pub enabled: Option<bool>,
    /// A correlation's threshold (the count, distinct count or sum).
    pub threshold: Option<u64>,
    /// A correlation's window, as Sigma writes it: `160s`, `10m`, `1h`.
    pub timespan: Option<String>,
    /// What Rampart does when the rule fires, instead of the rule's own.
    pub respond: Option<Vec<Response>>,
    /// How long an automatic address block lasts, in seconds (default:
    /// the guard's offender policy).
    pub block_for_secs: Option<u64>,
}

/// Why a rule file, or a whole set, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {reason}")]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// What a person needs to know about one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub name: Option<String>,
    pub title: String,
    pub description: Option<String>,
    /// Sigma level: informational, low, medium, high, critical.
    pub level: String,
    /// `detection`, or the correlation type (`event_count`, …).
    pub kind: String,
    /// The rules a correlation counts.
    pub counts: Vec<String>,
    pub group_by: Vec<String>,
    pub threshold: Option<u64>,
    pub timespan_secs: Option<u64>,
    pub respond: Vec<Response>,
    pub block_for_secs: Option<u64>,
    /// A building block of other rules: it never alerts on its own.
    pub building_block: bool,
    pub enabled: bool,
    /// Why it is off, when it is.
    pub disabled_because: Option<String>,
    pub file: String,
    pub line: usize,
}

impl RuleInfo {
    /// A rule read at `o`, its fields still to be filled.
    fn placeholder(o: &Origin) -> RuleInfo {
        RuleInfo {
            id: String::new(),
            name: None,
            title: String::new(),
            description: None,
            level: String::new(),
            kind: String::new(),
            counts: Vec::new(),
            group_by: Vec::new(),
            threshold: None,
            timespan_secs: None,
            respond: Vec::new(),
            block_for_secs: None,
            building_block: false,
            enabled: true,
            disabled_because: None,
            file: o.file.clone(),
            line: o.line,
        }
    }
}

/// A rule's `rampart.*` attributes and its settings, applied.
fn finish(
    mut info: RuleInfo,
    attrs: &std::collections::HashMap<String, yaml_serde::Value>,
    s: &RuleSettings,
) -> Result<RuleInfo, RuleError> {
    let (respond, block_for, internal) = rampart_attrs(attrs).map_err(|reason| RuleError {
        file: info.file.clone(),
        line: info.line,
        reason,
    })?;
    if s.block_for_secs
        .is_some_and(|b| !(1..=MAX_BLOCK_SECS).contains(&b))
    {
        return Err(RuleError {
            file: "configuration".into(),
            line: 0,
            reason: format!(
                "[detect.rules.{}]: block_for_secs must be 1 to {MAX_BLOCK_SECS}",
                info.id
            ),
        });
    }
    info.respond = s.respond.clone().unwrap_or(respond);
    info.block_for_secs = s.block_for_secs.or(block_for);
    info.building_block = internal;
    info.enabled = s.enabled.unwrap_or(true);
    info.disabled_because =
        (s.enabled == Some(false)).then(|| "turned off in the configuration".to_owned());
    Ok(info)
}

/// A checked set of rules, ready for a [`crate::Detector`].
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) collection: SigmaCollection,
    pub(crate) infos: Vec<RuleInfo>,
}

impl RuleSet {
    /// Every rule, enabled or not, in file order.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.infos
    }

    pub fn get(&self, id: &str) -> Option<&RuleInfo> {
        self.infos
            .iter()
            .find(|r| r.id == id || r.name.as_deref() == Some(id))
    }

    /// The set reduced to the rule `id` and what it counts, transitively:
    /// to test one rule alone (a building block then reports its own
    /// matches, no correlation taking them).
    pub fn only(&self, id: &str) -> Option<RuleSet> {
        let key = |i: &RuleInfo, r: &str| i.id == r || i.name.as_deref() == Some(r);
        let first = self.infos.iter().find(|i| key(i, id))?;
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut todo = vec![first.id.clone()];
        while let Some(next) = todo.pop() {
            if !keep.insert(next.clone()) {
                continue;
            }
            if let Some(info) = self.infos.iter().find(|i| i.id == next) {
                for r in &info.counts {
                    if let Some(dep) = self.infos.iter().find(|i| key(i, r)) {
                        todo.push(dep.id.clone());
                    }
                }
            }
        }
        let has = |id: &Option<String>| id.as_ref().is_some_and(|i| keep.contains(i));
        let mut collection = self.collection.clone();
        collection.rules.retain(|r| has(&r.id));
        collection.correlations.retain(|c| has(&c.id));
        Some(RuleSet {
            collection,
            infos: self
                .infos
                .iter()
                .filter(|i| keep.contains(&i.id))
                .cloned()
                .collect(),
        })
    }

    /// The shipped rules with `settings` applied.
    pub fn shipped(settings: &BTreeMap<String, RuleSettings>) -> Result<RuleSet, Vec<RuleError>> {
        load(&Source::shipped(), settings)
    }
}

/// One YAML document of a file and the line it starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut cur = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            docs.push((start, std::mem::take(&mut cur)));
            start = i + 2;
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs.push((start, cur));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// The line a YAML error names ("at line N"), made absolute.
fn error_line(start: usize, message: &str) -> usize {
    message
        .split("line ")
        .nth(1)
        .and_then(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<usize>()
                .ok()
        })
        .map_or(start, |n| start + n.saturating_sub(1))
}

/// Where an item of the set came from.
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    line: usize,
    /// Where it stands among all the documents read.
    order: usize,
}

fn attr_str(
    attrs: &std::collections::HashMap<String, yaml_serde::Value>,
    key: &str,
) -> Option<String> {
    attrs.get(key).and_then(|v| match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// The `rampart.*` attributes of a rule: its responses, block length and
/// whether it is a building block.
fn rampart_attrs(
    attrs: &std::collections::HashMap<String, yaml_serde::Value>,
) -> Result<(Vec<Response>, Option<u64>, bool), String> {
    let respond = match attrs.get("rampart.respond") {
        None => Vec::new(),
        Some(yaml_serde::Value::Sequence(items)) => items
            .iter()
            .map(|v| {
                v.as_str().and_then(Response::parse).ok_or_else(|| {
                    format!(
                        "rampart.respond: {v:?} is not a response (one of {})",
                        Response::NAMES.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("rampart.respond must be a list".into()),
    };
    let block_for = match attr_str(attrs, "rampart.block_for") {
        None => None,
        Some(s) => Some(
            Timespan::parse(&s)
                .map_err(|_| format!("rampart.block_for: `{s}` is not a time span such as 1h"))?
                .seconds,
        ),
    };
    if block_for.is_some_and(|s| !(1..=MAX_BLOCK_SECS).contains(&s)) {
        return Err("rampart.block_for must be between 1s and 365d".into());
    }
    let internal = attr_str(attrs, "rampart.internal").as_deref() == Some("true");
    for key in attrs.keys() {
        if key.starts_with("rampart.")
            && !["rampart.respond", "rampart.block_for", "rampart.internal"].contains(&key.as_str())
        {
            return Err(format!(
                "unknown attribute `{key}` (rampart.respond, rampart.block_for, rampart.internal)"
            ));
        }
    }
    Ok((respond, block_for, internal))
}

fn level_of(l: Option<&rsigma_parser::Level>) -> String {
    l.map_or("medium", |l| l.as_str()).to_owned()
}

fn threshold_of(c: &CorrelationCondition) -> Option<u64> {
    match c {
        CorrelationCondition::Threshold { predicates, .. } => predicates.first().map(|(_, v)| *v),
        CorrelationCondition::Extended(_) => None,
    }
}

fn set_threshold(c: &mut CorrelationCondition, value: u64) -> Result<(), String> {
    match c {
        CorrelationCondition::Threshold { predicates, .. } => match predicates.as_mut_slice() {
            [(ConditionOperator::Gte | ConditionOperator::Gt, v)] => {
                *v = value;
                Ok(())
            }
            _ => Err(
                "threshold applies only to a correlation whose condition is one gte or gt".into(),
            ),
        },
        CorrelationCondition::Extended(_) => {
            Err("threshold applies only to counting correlations".into())
        }
    }
}

/// Checks and assembles a rule set from `sources` (the shipped ones first)
/// with `settings` applied. Every problem found is returned, each with its
/// file and line.
pub fn load(
    sources: &[Source],
    settings: &BTreeMap<String, RuleSettings>,
) -> Result<RuleSet, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut collection = SigmaCollection::new();
    let mut rule_origin: Vec<Origin> = Vec::new();
    let mut corr_origin: Vec<Origin> = Vec::new();
    for src in sources {
        if src.text.len() > MAX_FILE_BYTES {
            errors.push(RuleError {
                file: src.name.clone(),
                line: 1,
                reason: format!("larger than {} bytes", MAX_FILE_BYTES),
            });
            continue;
        }
        for (start, doc) in documents(&src.text) {
            let err = |reason: String| RuleError {
                file: src.name.clone(),
                line: start,
                reason,
            };
            let parsed = match parse_sigma_yaml(&doc) {
                Ok(c) => c,
                Err(e) => {
                    let msg = e.to_string();
                    errors.push(RuleError {
                        line: error_line(start, &msg),
                        ..err(msg)
                    });
                    continue;
                }
            };
            if let Some(msg) = parsed.errors.first() {
                errors.push(RuleError {
                    line: error_line(start, msg),
                    ..err(msg.clone())
                });
                continue;
            }
            if !parsed.filters.is_empty() {
                errors.push(err(
                    "filter documents are not supported; turn a rule off with [detect.rules.<id>] enabled = false".into(),
                ));
                continue;
            }
            for r in parsed.rules {
                rule_origin.push(Origin {
                    file: src.name.clone(),
                    line: start,
                    order: rule_origin.len() + corr_origin.len(),
                });
                collection.rules.push(r);
            }
            for c in parsed.correlations {
                corr_origin.push(Origin {
                    file: src.name.clone(),
                    line: start,
                    order: rule_origin.len() + corr_origin.len(),
                });
                collection.correlations.push(c);
            }
        }
    }
    if collection.rules.len() + collection.correlations.len() > MAX_RULES {
        errors.push(RuleError {
            file: sources.last().map(|s| s.name.clone()).unwrap_or_default(),
            line: 1,
            reason: format!("more than {MAX_RULES} rules"),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Ids: present, unique, and the names correlations use unique too.
    let mut seen = BTreeMap::<String, Origin>::new();
    let mut ids: Vec<(Option<String>, Option<String>, Origin)> = collection
        .rules
        .iter()
        .map(|r| (r.id.clone(), r.name.clone()))
        .zip(rule_origin.iter().cloned())
        .chain(
            collection
                .correlations
                .iter()
                .map(|c| (c.id.clone(), c.name.clone()))
                .zip(corr_origin.iter().cloned()),
        )
        .map(|((id, name), o)| (id, name, o))
        .collect();
    // In the order they were read, so the later of two is the one named.
    ids.sort_by_key(|(_, _, o)| o.order);
    for (id, name, o) in &ids {
        let Some(id) = id else {
            errors.push(RuleError {
                file: o.file.clone(),
                line: o.line,
                reason: "every rule needs an `id`, so settings and alerts can name it".into(),
            });
            continue;
        };
        for key in std::iter::once(id).chain(name.iter()) {
            if let Some(first) = seen.get(key) {
                errors.push(RuleError {
                    file: o.file.clone(),
                    line: o.line,
                    reason: format!(
                        "`{key}` is already used by the rule at {}, line {}{}",
                        first.file,
                        first.line,
                        if first.file.starts_with("shipped:") {
                            "; to change a shipped rule, use [detect.rules.<id>] in the configuration"
                        } else {
                            ""
                        }
                    ),
                });
            } else {
                seen.insert(key.clone(), o.clone());
            }
        }
    }
    for id in settings.keys() {
        if !seen.contains_key(id) {
            errors.push(RuleError {
                file: "configuration".into(),
                line: 0,
                reason: format!("[detect.rules.{id}]: no rule has that id"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // The rampart.* attributes, then the settings.
    let mut infos = Vec::new();
    for (r, o) in collection.rules.iter().zip(&rule_origin) {
        let id = r.id.clone().unwrap_or_default();
        let s = settings.get(&id).cloned().unwrap_or_default();
        if s.threshold.is_some() || s.timespan.is_some() {
            errors.push(RuleError {
                file: "configuration".into(),
                line: 0,
                reason: format!(
                    "[detect.rules.{id}]: threshold and timespan apply to correlations"
                ),
            });
        }
        let base = RuleInfo {
            id,
            name: r.name.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            level: level_of(r.level.as_ref()),
            kind: "detection".into(),
            counts: Vec::new(),
            group_by: Vec::new(),
            threshold: None,
            timespan_secs: None,
            ..RuleInfo::placeholder(o)
        };
        match finish(base, &r.custom_attributes, &s) {
            Ok(i) => infos.push(i),
            Err(e) => errors.push(e),
        }
    }
    for (c, o) in collection.correlations.iter_mut().zip(&corr_origin) {
        let id = c.id.clone().unwrap_or_default();
        let s = settings.get(&id).cloned().unwrap_or_default();
        if let Some(t) = s.threshold {
            if let Err(reason) = set_threshold(&mut c.condition, t) {
                errors.push(RuleError {
                    file: "configuration".into(),
                    line: 0,
                    reason: format!("[detect.rules.{id}]: {reason}"),
                });
            }
        }
        if let Some(t) = &s.timespan {
            match Timespan::parse(t) {
                Ok(ts) if ts.seconds > 0 && ts.seconds <= 7 * 24 * 3600 => c.timespan = ts,
                _ => errors.push(RuleError {
                    file: "configuration".into(),
                    line: 0,
                    reason: format!(
                        "[detect.rules.{id}]: timespan `{t}` is not between 1s and 7d (as 160s, 10m, 1h)"
                    ),
                }),
            }
        }
        let base = RuleInfo {
            id,
            name: c.name.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            level: level_of(c.level.as_ref()),
            kind: c.correlation_type.as_str().to_owned(),
            counts: c.rules.clone(),
            group_by: c.group_by.clone(),
            threshold: threshold_of(&c.condition),
            timespan_secs: Some(c.timespan.seconds),
            ..RuleInfo::placeholder(o)
        };
        match finish(base, &c.custom_attributes, &s) {
            Ok(i) => infos.push(i),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // A correlation built on a rule that is off is off too.
    loop {
        let off: BTreeSet<String> = infos
            .iter()
            .filter(|i| !i.enabled)
            .flat_map(|i| std::iter::once(i.id.clone()).chain(i.name.clone()))
            .collect();
        let mut changed = false;
        for i in infos.iter_mut().filter(|i| i.enabled) {
            if let Some(dep) = i.counts.iter().find(|d| off.contains(*d)) {
                i.enabled = false;
                i.disabled_because = Some(format!("it counts `{dep}`, which is off"));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // A correlation counts rules of the set, by id or name.
    let known: BTreeSet<&str> = infos
        .iter()
        .flat_map(|i| std::iter::once(i.id.as_str()).chain(i.name.as_deref()))
        .collect();
    for i in &infos {
        for r in &i.counts {
            if !known.contains(r.as_str()) {
                errors.push(RuleError {
                    file: i.file.clone(),
                    line: i.line,
                    reason: format!("`{}` counts `{r}`, which no rule is called", i.id),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // What the engine refuses (unknown references, cycles, bad
    // modifiers), item by item so each is named with its line.
    let enabled: BTreeSet<&str> = infos
        .iter()
        .filter(|i| i.enabled)
        .map(|i| i.id.as_str())
        .collect();
    let mut engine = CorrelationEngine::new(CorrelationConfig::default());
    for (r, o) in collection.rules.iter().zip(&rule_origin) {
        if !enabled.contains(r.id.as_deref().unwrap_or_default()) {
            continue;
        }
        if let Err(e) = engine.add_rule(r) {
            errors.push(RuleError {
                file: o.file.clone(),
                line: o.line,
                reason: e.to_string(),
            });
        }
    }
    for (c, o) in collection.correlations.iter().zip(&corr_origin) {
        if !enabled.contains(c.id.as_deref().unwrap_or_default()) {
            continue;
        }
        if let Err(e) = engine.add_correlation(c) {
            errors.push(RuleError {
                file: o.file.clone(),
                line: o.line,
                reason: e.to_string(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let keep = |id: &Option<String>| enabled.contains(id.as_deref().unwrap_or_default());
    collection.rules.retain(|r| keep(&r.id));
    collection
        .correlations
        .retain(|c: &CorrelationRule| keep(&c.id));
    Ok(RuleSet { collection, infos })
}
