//! The drill report for people: a terminal table and a self-contained
//! HTML page (no script, no external resource) with a timeline.

use crate::{Outcome, Report};

fn secs(ms: Option<i64>) -> String {
    ms.map_or("-".to_owned(), |m| format!("{:.1} s", m as f64 / 1000.0))
}

/// The report as a table for a terminal.
pub fn terminal(r: &Report) -> String {
    let mut out = format!(
        "Drill {} against {}\n\n{:<20} {:<8} {:>10} {:>10}  why\n",
        r.drill, r.target, "scenario", "result", "detected", "alerted"
    );
    for s in &r.scenarios {
        out.push_str(&format!(
            "{:<20} {:<8} {:>10} {:>10}  {}\n",
            s.scenario.name(),
            s.outcome.as_str().to_uppercase(),
            secs(s.detection_ms),
            secs(s.alert_ms),
            s.why
        ));
    }
    out.push_str(&format!(
        "\nScore {}%: {} blocked, {} alerted, {} logged, {} missed.\n",
        r.score_percent, r.counts[0], r.counts[1], r.counts[2], r.counts[3]
    ));
    out
}

fn escape(s: &str) -> String {
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

fn colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Blocked => "#1b7f3b",
        Outcome::Alerted => "#1f5fa8",
        Outcome::Logged => "#a86b00",
        Outcome::Missed => "#b3261e",
    }
}

/// The report as one HTML page: a table and, per scenario, a timeline bar
/// from its first request to its end with marks where it was detected and
/// alerted.
pub fn html(r: &Report) -> String {
    let start = r
        .scenarios
        .iter()
        .map(|s| s.observed.started_ms)
        .min()
        .unwrap_or(0);
    let end = r
        .scenarios
        .iter()
        .map(|s| s.observed.ended_ms)
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let x = |t: i64| 200.0 + 560.0 * (t - start) as f64 / (end - start) as f64;
    let mut rows = String::new();
    let mut svg = String::new();
    for (i, s) in r.scenarios.iter().enumerate() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><b style=\"color:{}\">{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(s.scenario.name()),
            escape(&s.description),
            colour(s.outcome),
            s.outcome.as_str().to_uppercase(),
            secs(s.detection_ms),
            secs(s.alert_ms),
            escape(&s.why)
        ));
        let y = 20 + i as i64 * 28;
        let o = &s.observed;
        svg.push_str(&format!(
            "<text x=\"4\" y=\"{}\">{}</text><rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"12\" fill=\"{}\" opacity=\"0.35\"/>",
            y + 10,
            escape(s.scenario.name()),
            x(o.started_ms),
            y,
            (x(o.ended_ms.max(o.started_ms)) - x(o.started_ms)).max(2.0),
            colour(s.outcome)
        ));
        if let Some(d) = s.detection_ms {
            svg.push_str(&format!(
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#000\" stroke-width=\"2\"><title>detected</title></line>",
                x(o.started_ms + d),
                y - 2,
                y + 14
            ));
        }
        if let Some(a) = s.alert_ms {
            svg.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{}\" r=\"4\" fill=\"#1f5fa8\"><title>alerted</title></circle>",
                x(o.started_ms + a),
                y + 6
            ));
        }
    }
    let height = 30 + r.scenarios.len() * 28;
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>Rampart drill {drill}</title>\
<style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}\
td,th{{border-bottom:1px solid #ccc;padding:.4em .6em;text-align:left;vertical-align:top}}</style></head><body>\
<h1>Drill {drill}: score {score}%</h1>\
<p>Against {target}, {started} to {ended}: {b} blocked, {a} alerted, {l} logged, {m} missed.</p>\
<table><thead><tr><th>Scenario</th><th>Attack</th><th>Result</th><th>Detected after</th><th>Alerted after</th><th>Why</th></tr></thead><tbody>\n{rows}</tbody></table>\
<h2>Timeline</h2><p>Each bar runs from a scenario's first request to its end; a line marks detection, a dot the alert.</p>\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"780\" height=\"{height}\" role=\"img\" aria-label=\"timeline\" font-size=\"12\">{svg}</svg>\
</body></html>\n",
        drill = escape(&r.drill),
        score = r.score_percent,
        target = escape(&r.target),
        started = escape(&r.started_at),
        ended = escape(&r.ended_at),
        b = r.counts[0],
        a = r.counts[1],
        l = r.counts[2],
        m = r.counts[3],
    )
}
