//! Intrusion detection over the audit trail, free of I/O (ADR 0012).
//!
//! Rules are Sigma YAML ([`rules`]): single-event detections and the
//! correlation types (`event_count`, `value_count`, `value_sum`,
//! `temporal`, `temporal_ordered`, with `group-by`, `timespan` and a
//! threshold), evaluated by rsigma's engine over each event's ECS document
//! ([`engine::Detector`]), plus what CrowdSec's buckets add: suppression
//! after firing (`rsigma.suppress`) and a distinct count over a sliding
//! window (`value_count`). A firing names its evidence (the events'
//! `node:seq`) and the responses its rule asks for; [`respond`] decides
//! which of them may be carried out.

pub mod engine;
pub mod respond;
pub mod rules;

pub use engine::{Detector, Firing, OfficeHours, Options, MAX_KNOWN_ACCOUNTS};

/// Sigma's levels, least severe first: a rule's and an alert's `level`.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// Where `level` stands in [`LEVELS`] (0 to 4; an unknown one counts as
/// medium, as a rule without a level does).
pub fn level_rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(2)
}
pub use respond::{Decision, Response, Safeguards, Subject};
pub use rules::{load, RuleError, RuleInfo, RuleSet, RuleSettings, Source};

#[cfg(test)]
mod tests;
