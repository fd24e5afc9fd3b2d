//! What a scan produces: findings with a severity, why they matter and the
//! exact fix, gathered in a [`Report`] with the grades of a URL scan.
//!
//! A finding's `check` is a stable code (`tls.protocol_tls10`,
//! `config.registration_unverified`); with its `target` it identifies the
//! finding across scans, so a scheduled scan can tell new findings from old
//! ones. Nothing secret is ever put in a finding (no password, key, token
//! or file content): evidence names settings, paths, packages, accounts
//! and the header values a server sends to anyone. Text that comes from a
//! scanned server is cleaned of control characters ([`clean`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// A weakness to fix soon.
    Warning,
    /// A weakness an attacker can use; fix it now.
    Error,
    /// Exploitable or already exposing data.
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One weakness found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code of the check, e.g. `tls.cert_expiring`.
    pub check: String,
    pub severity: Severity,
    /// One line: what is wrong.
    pub title: String,
    /// Why it matters.
    pub why: String,
    /// The exact fix.
    pub fix: String,
    /// What it is about: a setting, a file, a URL, `package@version`.
    pub target: String,
}

impl Finding {
    pub fn new(
        check: &str,
        severity: Severity,
        target: impl Into<String>,
        title: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check: clean(check, 100),
            severity,
            title: clean(&title.into(), 300),
            why: clean(&why.into(), 2000),
            fix: clean(&fix.into(), 1000),
            target: clean(&target.into(), 300),
        }
    }

    /// Identifies the finding across scans.
    pub fn fingerprint(&self) -> String {
        format!("{}|{}", self.check, self.target)
    }
}

/// Text from a scanned server (certificate names, header values, cookie
/// and package names) made safe to print: control characters (which could
/// move a terminal's cursor or forge lines in an email) and bidirectional
/// overrides become U+FFFD, and the length is capped.
pub fn clean(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        out.push(if c.is_control() || bidi {
            '\u{FFFD}'
        } else {
            c
        });
    }
    out
}

/// What was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanKind {
    #[serde(rename = "self")]
    SelfScan,
    Url,
    Deps,
}

impl ScanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanKind::SelfScan => "self",
            ScanKind::Url => "url",
            ScanKind::Deps => "deps",
        }
    }
}

/// A check that could not run, and why (shown, never hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The area: a prefix of the codes of the findings it would have
    /// given (`tls`, `exposure`, `ops.admin`).
    pub check: String,
    pub reason: String,
}

impl Skipped {
    /// Whether `check` (a finding's code) belongs to this area.
    pub fn covers(&self, check: &str) -> bool {
        check.starts_with(self.check.as_str())
    }
}

/// A scan's whole result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub kind: ScanKind,
    pub target: String,
    /// RFC 3339.
    pub started_at: String,
    pub duration_ms: u64,
    /// Sorted: most severe first.
    pub findings: Vec<Finding>,
    /// What was checked and found sound, one line each.
    pub passed: Vec<String>,
    pub skipped: Vec<Skipped>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::headers::HttpReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposure: Vec<crate::exposure::Exposed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps: Option<crate::advisory::DepsSummary>,
}

impl Report {
    pub fn new(
        kind: ScanKind,
        target: impl Into<String>,
        started_at: time::OffsetDateTime,
    ) -> Report {
        Report {
            kind,
            target: target.into(),
            started_at: started_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            duration_ms: 0,
            findings: Vec::new(),
            passed: Vec::new(),
            skipped: Vec::new(),
            tls: None,
            http: None,
            exposure: Vec::new(),
            deps: None,
        }
    }

    /// Sorts findings most severe first, then by check and target, and
    /// drops exact duplicates.
    pub fn finish(&mut self, duration: std::time::Duration) {
        self.duration_ms = duration.as_millis().min(u64::MAX as u128) as u64;
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.check.cmp(&b.check))
                .then_with(|| a.target.cmp(&b.target))
        });
        self.findings
            .dedup_by(|a, b| a.fingerprint() == b.fingerprint());
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The most severe finding's severity, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether any finding is at or above `level` (for `--fail-on`).
    pub fn fails(&self, level: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= level)
    }

    /// The findings already known before this report, by fingerprint, with
    /// their severity: those of the previous report, and for what it could
    /// not check (probes that got no answer, an exposure check that
    /// stopped, a database it could not read), those of the reports before
    /// it. `previous` is newest first. A finding the previous report missed
    /// only because it could not look is then not new again.
    pub fn known_findings(previous: &[Report]) -> BTreeMap<String, Severity> {
        let mut known = BTreeMap::new();
        let mut unchecked: Option<Vec<&Skipped>> = None;
        for r in previous {
            for f in &r.findings {
                let take = unchecked
                    .as_ref()
                    .is_none_or(|areas| areas.iter().any(|a| a.covers(&f.check)));
                if take {
                    known.entry(f.fingerprint()).or_insert(f.severity);
                }
            }
            let still: Vec<&Skipped> = match unchecked {
                None => r.skipped.iter().collect(),
                Some(areas) => areas
                    .into_iter()
                    .filter(|a| r.skipped.iter().any(|s| s.check == a.check))
                    .collect(),
            };
            if still.is_empty() {
                break;
            }
            unchecked = Some(still);
        }
        known
    }

    /// The grades, for a one-line summary: TLS then headers.
    pub fn grades(&self) -> Vec<(&'static str, String)> {
        let mut g = Vec::new();
        if let Some(t) = &self.tls {
            g.push(("TLS", t.grade.grade.clone()));
        }
        if let Some(h) = &self.http {
            g.push(("headers", format!("{} ({})", h.grade, h.score)));
        }
        g
    }
}

/// Told how far a long scan has got; the terminal draws a bar from it.
pub trait Progress: Send + Sync {
    fn step(&self, what: &str, done: u64, total: u64);
}

/// Progress nobody watches.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: &str, _: u64, _: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(findings: &[&str], skipped: &[&str]) -> Report {
        let mut r = Report::new(
            ScanKind::Url,
            "https://a.test/",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        r.findings = findings
            .iter()
            .map(|c| Finding::new(c, Severity::Warning, "t", "t", "w", "f"))
            .collect();
        r.skipped = skipped
            .iter()
            .map(|c| Skipped {
                check: (*c).to_owned(),
                reason: "r".to_owned(),
            })
            .collect();
        r
    }

    fn known(previous: &[Report]) -> Vec<String> {
        Report::known_findings(previous).into_keys().collect()
    }

    #[test]
    fn what_a_report_could_not_check_is_known_from_the_ones_before() {
        // The newest report's exposure check stopped: the exposure finding
        // of the one before is still known; its TLS finding, which the
        // newest report checked and did not find, is not.
        let stopped = report(&["tls.a"], &["exposure"]);
        let before = report(&["exposure.x", "tls.b"], &[]);
        assert_eq!(
            known(&[stopped.clone(), before.clone()]),
            ["exposure.x|t", "tls.a|t"]
        );
        // Stopped twice in a row: the third report back counts too, but
        // only while every report since skipped the area.
        let older = report(&["exposure.y"], &[]);
        let twice = report(&[], &["exposure"]);
        assert_eq!(
            known(&[stopped.clone(), twice, older.clone()]),
            ["exposure.y|t", "tls.a|t"]
        );
        assert_eq!(
            known(&[stopped, before, older]),
            ["exposure.x|t", "tls.a|t"]
        );
        // A complete report stands alone.
        assert_eq!(
            known(&[report(&["tls.a"], &[]), report(&["tls.b"], &[])]),
            ["tls.a|t"]
        );
        assert!(known(&[]).is_empty());
    }

    #[test]
    fn hostile_text_cannot_drive_a_terminal_or_forge_lines() {
        let f = Finding::new(
            "x",
            Severity::Info,
            "evil\x1b[2J\u{9b}31m\r\nfix: run rm -rf /\u{202E}txt.exe",
            "t",
            "w",
            "f",
        );
        assert!(!f.target.chars().any(|c| c.is_control()), "{:?}", f.target);
        assert!(!f.target.contains('\u{202E}'));
        assert!(f.target.starts_with("evil\u{FFFD}[2J"));
        let long = "a".repeat(5000);
        assert_eq!(clean(&long, 10).chars().count(), 11);
    }
}
