use super::*;

fn seen() -> Observed {
    Observed {
        started_ms: 1_000,
        ended_ms: 9_000,
        requests: 15,
        events: 15,
        rules: vec![RuleState {
            id: "rampart-brute-force-account".into(),
            enabled: true,
            off_because: None,
        }],
        ..Default::default()
    }
}

#[test]
fn blocked_beats_alerted_beats_logged_beats_missed() {
    let mut o = seen();
    o.refused = 3;
    o.refused_codes = vec!["rate_limited".into(), "address_blocked".into()];
    o.first_refused_ms = Some(3_500);
    o.alerts = vec![("rampart-brute-force-account".into(), 4_000)];
    let s = score(Scenario::BruteForce, &o);
    assert_eq!(s.outcome, Outcome::Blocked);
    assert_eq!(s.detection_ms, Some(2_500));
    assert_eq!(s.alert_ms, Some(3_000));
    assert!(s.why.contains("3 of 15"), "{}", s.why);
    assert!(s.why.contains("address_blocked, rate_limited"), "{}", s.why);

    o.refused = 0;
    o.first_refused_ms = None;
    let s = score(Scenario::BruteForce, &o);
    assert_eq!(s.outcome, Outcome::Alerted);
    assert_eq!(s.detection_ms, Some(3_000));

    o.alerts.clear();
    let s = score(Scenario::BruteForce, &o);
    assert_eq!(s.outcome, Outcome::Logged);
    assert_eq!(s.detection_ms, None);
    assert!(s.why.contains("did not fire"), "{}", s.why);

    o.events = 0;
    assert_eq!(score(Scenario::BruteForce, &o).outcome, Outcome::Missed);
}

#[test]
fn a_rule_turned_off_is_named_as_the_reason() {
    let mut o = seen();
    o.rules[0].enabled = false;
    o.rules[0].off_because =
        Some("[detect.rules.rampart-brute-force-account] enabled = false".into());
    let s = score(Scenario::BruteForce, &o);
    assert_eq!(s.outcome, Outcome::Logged);
    assert!(
        s.why
            .contains("rampart-brute-force-account is turned off ([detect.rules"),
        "{}",
        s.why
    );
}

#[test]
fn the_report_scores_points_and_renders_without_script() {
    let mut blocked = seen();
    blocked.refused = 1;
    blocked.first_refused_ms = Some(2_000);
    let mut logged = seen();
    logged.rules.clear();
    let r = Report::new(
        "drill_1",
        "https://127.0.0.1:8443",
        "2026-12-07T10:00:00Z",
        "2026-12-07T10:01:00Z",
        vec![
            score(Scenario::BruteForce, &blocked),
            score(Scenario::Injection, &logged),
        ],
    );
    assert_eq!(r.counts, [1, 0, 1, 0]);
    assert_eq!(r.score_percent, 66);
    assert_eq!(r.worst(), Outcome::Logged);
    let t = terminal(&r);
    assert!(
        t.contains("BLOCKED") && t.contains("LOGGED") && t.contains("Score 66%"),
        "{t}"
    );
    let h = html(&r);
    assert!(h.contains("<svg") && !h.contains("<script"));
    let json: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(json, r);
    assert_eq!(Scenario::parse("bulk-read"), Some(Scenario::BulkRead));
    assert_eq!(Scenario::parse("nope"), None);
}

#[test]
fn html_escapes_what_it_shows() {
    let mut o = seen();
    o.rules[0].off_because = Some("<script>alert(1)</script>".into());
    let r = Report::new("d<", "t&", "s", "e", vec![score(Scenario::BruteForce, &o)]);
    let h = html(&r);
    assert!(!h.contains("<script>alert"));
    assert!(h.contains("&lt;script&gt;"));
}
