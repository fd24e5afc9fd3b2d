//! Reports for people and tools: the terminal (grouped by severity,
//! coloured on a TTY), JSON (the [`Report`] itself), SARIF 2.1.0 for
//! code-scanning tools, and a self-contained HTML page.

use std::fmt::Write;

use crate::report::{Report, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Terminal,
    Json,
    Sarif,
    Html,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "terminal" | "text" => Some(Format::Terminal),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            "html" => Some(Format::Html),
            _ => None,
        }
    }
}

pub fn render(r: &Report, format: Format, colour: bool) -> String {
    match format {
        Format::Terminal => terminal(r, colour),
        Format::Json => serde_json::to_string_pretty(r).unwrap_or_default(),
        Format::Sarif => sarif(r),
        Format::Html => html(r),
    }
}

fn paint(s: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "1;35",
        Severity::Error => "1;31",
        Severity::Warning => "1;33",
        Severity::Info => "36",
    }
}

/// Findings grouped by severity, most severe first, then the summary.
pub fn terminal(r: &Report, colour: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        paint(
            &format!("Rampart scan {}: {}", r.kind.as_str(), r.target),
            "1",
            colour
        )
    );
    for (name, grade) in r.grades() {
        let _ = writeln!(o, "  {name} grade: {}", paint(&grade, "1", colour));
    }
    if let Some(t) = &r.tls {
        let offered: Vec<&str> = t
            .protocols
            .iter()
            .filter(|p| p.offered)
            .map(|p| p.name.as_str())
            .collect();
        let _ = writeln!(
            o,
            "  protocols: {}",
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        );
        if t.grade.grade == "T" {
            let _ = writeln!(
                o,
                "  (grade {} if the certificate were trusted)",
                t.grade.if_trusted
            );
        }
        for c in &t.grade.caps {
            let _ = writeln!(o, "  cap: {c}");
        }
    }
    if let Some(d) = &r.deps {
        let _ = writeln!(
            o,
            "  dependencies: {} packages checked against {} advisories ({}, newest {})",
            d.packages,
            d.advisories,
            d.database,
            d.database_date.as_deref().unwrap_or("unknown")
        );
    }
    for sev in Severity::ALL {
        let group: Vec<_> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{}",
            paint(
                &format!("{} ({})", sev.as_str().to_uppercase(), group.len()),
                severity_colour(sev),
                colour
            )
        );
        for f in group {
            let _ = writeln!(o, "  {} [{}]", paint(&f.title, "1", colour), f.check);
            let _ = writeln!(o, "    where: {}", f.target);
            let _ = writeln!(o, "    why:   {}", f.why);
            let _ = writeln!(o, "    fix:   {}", f.fix);
        }
    }
    if !r.passed.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{}",
            paint(&format!("PASSED ({})", r.passed.len()), "32", colour)
        );
        for p in &r.passed {
            let _ = writeln!(o, "  ✓ {p}");
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "NOT CHECKED ({})", r.skipped.len());
        for s in &r.skipped {
            let _ = writeln!(o, "  - {}: {}", s.check, s.reason);
        }
    }
    let _ = writeln!(o);
    let counts: Vec<String> = Severity::ALL
        .iter()
        .map(|s| format!("{} {}", r.count(*s), s.as_str()))
        .collect();
    let _ = writeln!(o, "Summary: {} ({} ms)", counts.join(", "), r.duration_ms);
    o
}

/// SARIF 2.1.0: one rule per check, one result per finding.
pub fn sarif(r: &Report) -> String {
    let level = |s: Severity| match s {
        Severity::Critical | Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    };
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in &r.findings {
        if seen.insert(f.check.clone()) {
            rules.push(serde_json::json!({
                "id": f.check,
                "shortDescription": { "text": f.title },
                "fullDescription": { "text": f.why },
                "help": { "text": f.fix },
                "defaultConfiguration": { "level": level(f.severity) },
            }));
        }
    }
    let results: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "ruleId": f.check,
                "level": level(f.severity),
                "message": { "text": format!("{} — {} Fix: {}", f.title, f.why, f.fix) },
                "locations": [match location_uri(r, &f.target) {
                    Some(uri) => serde_json::json!({
                        "physicalLocation": { "artifactLocation": { "uri": uri } },
                        "logicalLocations": [{ "fullyQualifiedName": f.target }],
                    }),
                    None => serde_json::json!({
                        "logicalLocations": [{ "fullyQualifiedName": f.target }],
                    }),
                }],
                "partialFingerprints": { "rampartFinding/v1": f.fingerprint() },
                "properties": { "severity": f.severity.as_str() },
            })
        })
        .collect();
    let doc = serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "rampart-scan",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/rampart/rampart",
                "rules": rules,
            }},
            "automationDetails": { "id": format!("rampart/{}/{}", r.kind.as_str(), r.started_at) },
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Where a finding is, as a SARIF artifact URI: the lock file for a
/// dependency, the URL or file a target names, or none (a setting).
fn location_uri(r: &Report, target: &str) -> Option<String> {
    if r.kind == crate::report::ScanKind::Deps {
        return Some(r.target.clone());
    }
    // Targets read "https://host/ cookie sid", "master key /var/…/master.key"
    // or "registration": the URL or path among the words, if any.
    target.split_whitespace().find_map(|w| {
        if w.starts_with("https://") || w.starts_with("http://") {
            Some(w.to_owned())
        } else if w.starts_with('/') {
            Some(format!("file://{w}"))
        } else {
            // A relative path is a relative URI reference.
            w.contains('/').then(|| w.to_owned())
        }
    })
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// One page, no external resources (its own CSP forbids them).
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>Rampart scan: {}</title><style>\
body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
.grade{{display:inline-block;font-size:2rem;font-weight:700;padding:.2rem .8rem;border-radius:.4rem;background:#eee;margin-right:1rem}}\
.f{{border-left:.4rem solid #999;padding:.3rem .8rem;margin:.6rem 0;background:#fafafa}}\
.critical{{border-color:#7b1fa2}}.error{{border-color:#c62828}}.warning{{border-color:#f9a825}}.info{{border-color:#0277bd}}\
code{{background:#eee;padding:0 .2rem}}table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}\
</style></head><body><h1>Rampart scan ({}): {}</h1><p>Started {} · {} ms</p>",
        esc(&r.target),
        r.kind.as_str(),
        esc(&r.target),
        esc(&r.started_at),
        r.duration_ms
    );
    for (name, grade) in r.grades() {
        let _ = write!(
            o,
            "<span class=\"grade\" title=\"{name}\">{name}: {}</span>",
            esc(&grade)
        );
    }
    let counts: Vec<String> = Severity::ALL
        .iter()
        .map(|s| format!("{} {}", r.count(*s), s.as_str()))
        .collect();
    let _ = write!(o, "<p><strong>{}</strong></p>", counts.join(" · "));
    for sev in Severity::ALL {
        let group: Vec<_> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = write!(o, "<h2>{} ({})</h2>", sev.as_str(), group.len());
        for f in group {
            let _ = write!(
                o,
                "<div class=\"f {}\"><strong>{}</strong> <code>{}</code><br><small>{}</small><p>{}</p><p><strong>Fix:</strong> {}</p></div>",
                sev.as_str(),
                esc(&f.title),
                esc(&f.check),
                esc(&f.target),
                esc(&f.why),
                esc(&f.fix)
            );
        }
    }
    if let Some(t) = &r.tls {
        let _ = write!(o, "<h2>TLS</h2><table><tr><th>protocol</th><th>suite</th><th>bits</th><th>key exchange</th></tr>");
        for s in &t.suites {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.protocol),
                esc(&s.name),
                s.bits,
                esc(&s.key_exchange)
            );
        }
        let _ = write!(o, "</table>");
    }
    if let Some(h) = &r.http {
        let _ = write!(
            o,
            "<h2>Headers: {} ({})</h2><table><tr><th>test</th><th>result</th><th>score</th></tr>",
            esc(&h.grade),
            h.score
        );
        for t in &h.tests {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{:+}</td></tr>",
                esc(&t.test),
                esc(&t.result),
                t.modifier
            );
        }
        let _ = write!(o, "</table>");
    }
    if !r.passed.is_empty() {
        let _ = write!(o, "<h2>Passed</h2><ul>");
        for p in &r.passed {
            let _ = write!(o, "<li>{}</li>", esc(p));
        }
        let _ = write!(o, "</ul>");
    }
    if !r.skipped.is_empty() {
        let _ = write!(o, "<h2>Not checked</h2><ul>");
        for s in &r.skipped {
            let _ = write!(
                o,
                "<li><code>{}</code>: {}</li>",
                esc(&s.check),
                esc(&s.reason)
            );
        }
        let _ = write!(o, "</ul>");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Finding, ScanKind};

    #[test]
    fn hostile_text_is_escaped_in_html_and_valid_in_sarif() {
        let mut r = Report::new(
            ScanKind::Url,
            "https://x.test/",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        r.findings.push(Finding::new(
            "http.version_banner",
            Severity::Warning,
            "https://x.test/ server",
            "Banner <script>alert(1)</script> \"quoted\" & more",
            "w",
            "f",
        ));
        let page = html(&r);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot; &amp; more")
        );
        let doc: serde_json::Value = serde_json::from_str(&sarif(&r)).unwrap();
        let res = &doc["runs"][0]["results"][0];
        assert_eq!(res["level"], "warning");
        assert_eq!(
            res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "https://x.test/"
        );
    }
}
