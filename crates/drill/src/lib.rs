//! Attack drills without I/O (ADR 0014): the scenarios `rampart drill`
//! runs, what each should provoke, how an observed run is scored, and the
//! report.
//!
//! Scoring follows red-team tracking tools: each scenario gets the best
//! of **Blocked** (the attack was stopped: requests refused, the address
//! blocked, the stolen session made useless), **Alerted** (an alert was
//! raised), **Logged** (the trail holds the attack, nobody was told) and
//! **Missed** (not even that). A scenario below Blocked says why: which of
//! its rules are turned off, or did not fire.

use serde::{Deserialize, Serialize};

mod render;

pub use render::{html, terminal};

/// One simulated attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Many wrong passwords for one drill account from one address.
    BruteForce,
    /// One wrong password for each of many names from one address.
    CredentialStuffing,
    /// One common password tried on many names from several addresses.
    PasswordSpraying,
    /// SQL, script, path-traversal, command and shellshock payloads in
    /// query values, a JSON body and a header.
    Injection,
    /// Requests for `.env`, `.git/config` and other files no API serves.
    SensitiveFiles,
    /// A drill account's session token used from a second network.
    SessionReuse,
    /// One account opening the sensitive fields of 1,100 records within
    /// a minute.
    BulkRead,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::BruteForce,
        Scenario::CredentialStuffing,
        Scenario::PasswordSpraying,
        Scenario::Injection,
        Scenario::SensitiveFiles,
        Scenario::SessionReuse,
        Scenario::BulkRead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::BruteForce => "brute-force",
            Scenario::CredentialStuffing => "credential-stuffing",
            Scenario::PasswordSpraying => "password-spraying",
            Scenario::Injection => "injection",
            Scenario::SensitiveFiles => "sensitive-files",
            Scenario::SessionReuse => "session-reuse",
            Scenario::BulkRead => "bulk-read",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::BruteForce => "15 wrong passwords for one drill account from one address",
            Scenario::CredentialStuffing => {
                "one wrong password for each of 12 names from one address"
            }
            Scenario::PasswordSpraying => "one common password on 24 names from 4 addresses",
            Scenario::Injection => "SQL, script, traversal, command and shellshock payloads",
            Scenario::SensitiveFiles => {
                "requests for .env, .git/config, wp-config.php and the like"
            }
            Scenario::SessionReuse => "a drill account's session used from a second network",
            Scenario::BulkRead => "one account opening sensitive fields of 1,100 records",
        }
    }

    /// The shipped detection rules that should fire on it (any one is
    /// enough to alert).
    pub fn rules(self) -> &'static [&'static str] {
        match self {
            Scenario::BruteForce => &["rampart-brute-force-account", "rampart-brute-force-address"],
            Scenario::CredentialStuffing => &["rampart-credential-stuffing"],
            Scenario::PasswordSpraying => &["rampart-password-spraying"],
            Scenario::Injection => &["rampart-guard-refusal", "rampart-probing"],
            Scenario::SensitiveFiles => &["rampart-sensitive-files"],
            Scenario::SessionReuse => &["rampart-session-second-place"],
            Scenario::BulkRead => &["rampart-bulk-sensitive-reads"],
        }
    }
}

/// The four outcomes, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Missed,
    Logged,
    Alerted,
    Blocked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Missed => "missed",
            Outcome::Logged => "logged",
            Outcome::Alerted => "alerted",
            Outcome::Blocked => "blocked",
        }
    }

    /// Points toward the drill's score: 3, 2, 1, 0.
    pub fn points(self) -> u32 {
        self as u32
    }
}

/// What a detection rule's state was during the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    pub id: String,
    pub enabled: bool,
    /// Why it is off (the setting), when it is.
    pub off_because: Option<String>,
}

/// What the drill saw of one scenario (times in ms since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub started_ms: i64,
    pub ended_ms: i64,
    /// Attack requests sent.
    pub requests: u32,
    /// Of those, refused by the guard or a response (403 with an address
    /// or request block, 429), with the codes seen.
    pub refused: u32,
    pub refused_codes: Vec<String>,
    pub first_refused_ms: Option<i64>,
    /// The stolen or attacking session was made useless after detection
    /// (session reuse: the next request needs a step-up).
    pub contained: bool,
    /// Drill events the trail holds for the scenario.
    pub events: u32,
    /// Alerts raised for it: (rule id, when raised).
    pub alerts: Vec<(String, i64)>,
    /// Automatic responses the alerts carried out (`block_address`, …).
    pub responses: Vec<String>,
    /// Responses the safeguards withheld, with why (a drill from loopback
    /// addresses is never blocked: a local proxy must not be).
    #[serde(default)]
    pub withheld: Vec<String>,
    /// The state of the scenario's rules.
    pub rules: Vec<RuleState>,
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scored {
    pub scenario: Scenario,
    pub description: String,
    pub outcome: Outcome,
    /// First attack request to the first sign of detection (a refusal, a
    /// response or an alert).
    pub detection_ms: Option<i64>,
    /// First attack request to the alert.
    pub alert_ms: Option<i64>,
    pub why: String,
    pub observed: Observed,
}

/// Scores one scenario.
pub fn score(scenario: Scenario, o: &Observed) -> Scored {
    let blocked = o.refused > 0 || o.contained || !o.responses.is_empty();
    let alerted = !o.alerts.is_empty();
    let outcome = if blocked {
        Outcome::Blocked
    } else if alerted {
        Outcome::Alerted
    } else if o.events > 0 {
        Outcome::Logged
    } else {
        Outcome::Missed
    };
    let first_alert = o.alerts.iter().map(|(_, t)| *t).min();
    let detection = [o.first_refused_ms, first_alert]
        .into_iter()
        .flatten()
        .min()
        .map(|t| (t - o.started_ms).max(0));
    let alert_ms = first_alert.map(|t| (t - o.started_ms).max(0));
    let mut why = Vec::new();
    if o.refused > 0 {
        let mut codes = o.refused_codes.clone();
        codes.sort();
        codes.dedup();
        why.push(format!(
            "{} of {} attack requests refused ({})",
            o.refused,
            o.requests,
            codes.join(", ")
        ));
    }
    if o.contained {
        why.push("the stolen session was made to prove its owner again".to_owned());
    }
    if !o.responses.is_empty() {
        why.push(format!("responses: {}", o.responses.join(", ")));
    }
    for w in &o.withheld {
        why.push(format!("withheld: {w}"));
    }
    if alerted {
        let mut rules: Vec<&str> = o.alerts.iter().map(|(r, _)| r.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        why.push(format!("alerted by {}", rules.join(", ")));
    } else {
        for r in &o.rules {
            why.push(match (&r.off_because, r.enabled) {
                (Some(b), _) => format!("no alert: {} is turned off ({b})", r.id),
                (None, false) => format!("no alert: {} is turned off", r.id),
                (None, true) if blocked => {
                    format!("nobody was told: {} did not fire", r.id)
                }
                (None, true) => format!("no alert: {} did not fire", r.id),
            });
        }
    }
    if outcome == Outcome::Logged {
        why.push(format!("{} event(s) in the trail, nobody told", o.events));
    }
    if outcome == Outcome::Missed {
        why.push("nothing in the trail: the attack went unseen".to_owned());
    }
    Scored {
        scenario,
        description: scenario.describe().to_owned(),
        outcome,
        detection_ms: detection,
        alert_ms,
        why: why.join("; "),
        observed: o.clone(),
    }
}

/// A whole drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub drill: String,
    pub target: String,
    pub started_at: String,
    pub ended_at: String,
    pub scenarios: Vec<Scored>,
    /// Points won of points possible (3 per scenario), in percent.
    pub score_percent: u32,
    /// Blocked, alerted, logged, missed.
    pub counts: [u32; 4],
}

impl Report {
    pub fn new(
        drill: &str,
        target: &str,
        started_at: &str,
        ended_at: &str,
        scenarios: Vec<Scored>,
    ) -> Self {
        let possible = 3 * scenarios.len() as u32;
        let won: u32 = scenarios.iter().map(|s| s.outcome.points()).sum();
        let mut counts = [0; 4];
        for s in &scenarios {
            counts[3 - s.outcome as usize] += 1;
        }
        Self {
            drill: drill.to_owned(),
            target: target.to_owned(),
            started_at: started_at.to_owned(),
            ended_at: ended_at.to_owned(),
            score_percent: (won * 100).checked_div(possible).unwrap_or(0),
            counts,
            scenarios,
        }
    }

    /// The worst outcome of any scenario.
    pub fn worst(&self) -> Outcome {
        self.scenarios
            .iter()
            .map(|s| s.outcome)
            .min()
            .unwrap_or(Outcome::Blocked)
    }
}

#[cfg(test)]
mod tests;
