//! Every shipped rule fires on a realistic sequence of events and stays
//! quiet on a near miss; rule files are checked with lines and reasons.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::rules::{load, RuleSettings, Source};
use crate::{Detector, Firing, OfficeHours, Options, Response, RuleSet};

/// An ECS document shaped as `rampart_core::audit::format::ecs` writes it.
#[derive(Clone)]
struct Ev {
    at_s: i64,
    action: &'static str,
    outcome: &'static str,
    ip: Option<String>,
    user: Option<String>,
    rule: Option<&'static str>,
    object: Option<String>,
    fields: Value,
    count: Option<u64>,
    agent: Option<String>,
}

fn ev(at_s: i64, action: &'static str) -> Ev {
    Ev {
        at_s,
        action,
        outcome: "success",
        ip: None,
        user: None,
        rule: None,
        object: None,
        fields: json!({}),
        count: None,
        agent: None,
    }
}

impl Ev {
    fn fail(mut self) -> Self {
        self.outcome = "failure";
        self
    }
    fn ip(mut self, ip: &str) -> Self {
        self.ip = Some(ip.into());
        self
    }
    fn user(mut self, u: &str) -> Self {
        self.user = Some(u.into());
        self
    }
    fn login(mut self, name: &str) -> Self {
        self.fields["login.key"] = json!(format!("k-{name}"));
        self
    }
    fn field(mut self, k: &str, v: Value) -> Self {
        self.fields[k] = v;
        self
    }
    fn rule(mut self, r: &'static str) -> Self {
        self.rule = Some(r);
        self
    }
    fn object(mut self, o: &str) -> Self {
        self.object = Some(o.into());
        self
    }
    fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
    fn agent(mut self, a: &str) -> Self {
        self.agent = Some(a.into());
        self
    }
    fn doc(&self, seq: u64) -> Value {
        let at = time::OffsetDateTime::from_unix_timestamp(self.at_s)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut event = json!({
            "kind": "event", "dataset": "rampart.audit", "action": self.action,
            "outcome": self.outcome, "severity": 2, "sequence": seq, "id": format!("n1:{seq}"),
            "category": ["authentication"],
        });
        if let Some(c) = self.count {
            event["count"] = json!(c);
        }
        let mut doc = json!({
            "@timestamp": at, "event": event, "host": {"name": "n1"},
            "service": {"name": "rampart"},
            "rampart": {"node": "n1", "seq": seq, "fields": self.fields},
        });
        if let Some(ip) = &self.ip {
            doc["source"] = json!({"ip": ip});
        }
        if let Some(u) = &self.user {
            doc["user"] = json!({"id": u});
        }
        if let Some(r) = self.rule {
            doc["rule"] = json!({"name": r});
        }
        if let Some(o) = &self.object {
            doc["rampart"]["object"] = json!(o);
        }
        if let Some(a) = &self.agent {
            doc["user_agent"] = json!({"original": a});
        }
        doc
    }
}

fn shipped() -> RuleSet {
    RuleSet::shipped(&BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn detector() -> Detector {
    Detector::new(&shipped(), Options::default())
}

/// Every firing over `events`, in order.
fn run(d: &mut Detector, events: &[Ev]) -> Vec<Firing> {
    events
        .iter()
        .enumerate()
        .flat_map(|(i, e)| d.observe_ecs(&e.doc(i as u64 + 1)))
        .collect()
}

fn fired(firings: &[Firing]) -> Vec<&str> {
    firings.iter().map(|f| f.rule_id.as_str()).collect()
}

const T0: i64 = 1_780_000_000;

#[test]
fn shipped_rules_load_and_every_one_is_listed() {
    let set = shipped();
    let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
    for id in [
        "rampart-brute-force-address",
        "rampart-brute-force-account",
        "rampart-credential-stuffing",
        "rampart-password-spraying",
        "rampart-success-after-failures",
        "rampart-session-second-place",
        "rampart-failures-then-success",
        "rampart-mfa-fatigue",
        "rampart-probing",
        "rampart-sensitive-files",
        "rampart-scanner",
        "rampart-not-found-burst",
        "rampart-bulk-sensitive-reads",
        "rampart-privilege-then-bulk-reads",
        "rampart-admin-new-address",
        "rampart-admin-off-hours",
        "rampart-audit-verify-failed",
        "rampart-backup-failed",
        "rampart-drill-overdue",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let bf = set.get("rampart-brute-force-address").unwrap();
    assert_eq!((bf.threshold, bf.timespan_secs), (Some(12), Some(160)));
    assert_eq!(bf.respond, vec![Response::BlockAddress, Response::Alert]);
}

#[test]
fn brute_force_from_one_address_fires_at_the_twelfth_failure() {
    let mut d = detector();
    let events: Vec<Ev> = (0..12)
        .map(|i| {
            ev(T0 + i * 10, "login_failure")
                .fail()
                .ip("203.0.113.5")
                .login("alice")
        })
        .collect();
    let f = run(&mut d, &events);
    let bf: Vec<&Firing> = f
        .iter()
        .filter(|f| f.rule_id == "rampart-brute-force-address")
        .collect();
    assert_eq!(bf.len(), 1, "{f:?}");
    assert_eq!(bf[0].evidence.len(), 12);
    assert_eq!(bf[0].evidence.last().unwrap(), "n1:12");
    assert_eq!(bf[0].ip(), Some("203.0.113.5".parse().unwrap()));
    assert_eq!(
        bf[0].group,
        vec![("rampart.detect.source_net".into(), "203.0.113.5".into())]
    );
    // The same account was the target too.
    assert!(fired(&f).contains(&"rampart-brute-force-account"));
}

#[test]
fn eleven_failures_or_a_slow_trickle_do_not_fire() {
    let mut d = detector();
    let eleven: Vec<Ev> = (0..11)
        .map(|i| {
            ev(T0 + i, "login_failure")
                .fail()
                .ip("203.0.113.5")
                .login("alice")
        })
        .collect();
    assert!(run(&mut d, &eleven).is_empty());
    // Twelve spread over more than 160 s.
    let mut d = detector();
    let slow: Vec<Ev> = (0..12)
        .map(|i| {
            ev(T0 + i * 16, "login_failure")
                .fail()
                .ip("203.0.113.6")
                .login("bob")
        })
        .collect();
    assert!(run(&mut d, &slow).is_empty());
}

#[test]
fn brute_force_on_one_account_from_many_addresses() {
    let mut d = detector();
    let events: Vec<Ev> = (0..12)
        .map(|i| {
            ev(T0 + i, "login_failure")
                .fail()
                .ip(&format!("198.51.100.{i}"))
                .login("carol")
        })
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-brute-force-account"]);
    assert_eq!(
        f[0].group,
        vec![("rampart.fields.login.key".into(), "k-carol".into())]
    );
}

#[test]
fn credential_stuffing_many_accounts_one_address() {
    let mut d = detector();
    let events: Vec<Ev> = (0..10)
        .map(|i| {
            ev(T0 + i * 20, "login_failure")
                .fail()
                .ip("192.0.2.77")
                .login(&format!("user{i}"))
        })
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-credential-stuffing"]);
    assert_eq!(f[0].value, 10.0);
    // Near miss: nine accounts, or ten spread over two addresses.
    let mut d = detector();
    assert!(run(&mut d, &events[..9]).is_empty());
    let mut d = detector();
    let split: Vec<Ev> = (0..10)
        .map(|i| {
            ev(T0 + i, "login_failure")
                .fail()
                .ip(if i % 2 == 0 { "192.0.2.1" } else { "192.0.2.2" })
                .login(&format!("user{i}"))
        })
        .collect();
    assert!(run(&mut d, &split).is_empty());
}

#[test]
fn password_spraying_one_guess_each_from_many_addresses() {
    let mut d = detector();
    let events: Vec<Ev> = (0..20)
        .map(|i| {
            ev(T0 + i * 60, "login_failure")
                .fail()
                .ip(&format!("100.64.{i}.9"))
                .login(&format!("staff{i}"))
        })
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-password-spraying"]);
    // Near miss: 19 accounts, or 40 guesses at only 4 accounts.
    let mut d = detector();
    assert!(run(&mut d, &events[..19]).is_empty());
    let mut d = detector();
    let few: Vec<Ev> = (0..40)
        .map(|i| {
            ev(T0 + i * 30, "login_failure")
                .fail()
                .ip(&format!("100.64.{i}.9"))
                .login(&format!("staff{}", i % 4))
        })
        .collect();
    let f = run(&mut d, &few);
    assert!(!fired(&f).contains(&"rampart-password-spraying"), "{f:?}");
}

#[test]
fn a_success_right_after_guesses_at_several_accounts() {
    let mut d = detector();
    let mut events: Vec<Ev> = ["ann", "ben", "dave"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            ev(T0 + i as i64 * 5, "login_failure")
                .fail()
                .ip("203.0.113.40")
                .login(n)
        })
        .collect();
    events.push(
        ev(T0 + 60, "login_success")
            .ip("203.0.113.40")
            .user("acc_dave")
            .login("dave"),
    );
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-success-after-failures"]);
    assert_eq!(f[0].account(), Some("acc_dave"));
    assert_eq!(
        f[0].respond,
        vec![Response::RevokeSessions, Response::Alert]
    );
    // Near misses: two names, or the success after 240 s, or from another
    // address.
    for (names, gap, ip) in [
        (&["ann", "dave"][..], 60, "203.0.113.40"),
        (&["ann", "ben", "dave"][..], 400, "203.0.113.40"),
        (&["ann", "ben", "dave"][..], 60, "203.0.113.41"),
    ] {
        let mut d = detector();
        let mut events: Vec<Ev> = names
            .iter()
            .map(|n| ev(T0, "login_failure").fail().ip("203.0.113.40").login(n))
            .collect();
        events.push(
            ev(T0 + gap, "login_success")
                .ip(ip)
                .user("acc_dave")
                .login("dave"),
        );
        assert!(run(&mut d, &events).is_empty(), "{names:?} {gap} {ip}");
    }
    // Near miss: someone else signs in from the shared address where a
    // stranger failed three other names; their sessions are not touched.
    let mut d = detector();
    let mut shared: Vec<Ev> = ["ann", "ben", "cid"]
        .iter()
        .map(|n| ev(T0, "login_failure").fail().ip("203.0.113.40").login(n))
        .collect();
    shared.push(
        ev(T0 + 30, "login_success")
            .ip("203.0.113.40")
            .user("acc_erin")
            .login("erin"),
    );
    assert!(run(&mut d, &shared).is_empty());
}

#[test]
fn a_success_after_many_failures_at_one_account_alerts() {
    let mut d = detector();
    let mut events: Vec<Ev> = (0..5)
        .map(|i| {
            ev(T0 + i * 5, "login_failure")
                .fail()
                .ip("203.0.113.40")
                .login("dave")
        })
        .collect();
    events.push(
        ev(T0 + 60, "login_success")
            .ip("203.0.113.40")
            .user("acc_dave"),
    );
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-failures-then-success"]);
    assert_eq!(f[0].respond, vec![Response::Alert]);
    // Near miss: four failures.
    let mut d = detector();
    let mut four = events[..4].to_vec();
    four.push(events[5].clone());
    assert!(run(&mut d, &four).is_empty());
}

#[test]
fn second_factor_fatigue() {
    let mut d = detector();
    let events: Vec<Ev> = (0..5)
        .map(|i| {
            ev(T0 + i * 30, "mfa_failure")
                .fail()
                .ip("203.0.113.8")
                .user("acc_erin")
        })
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-mfa-fatigue"]);
    assert_eq!(f[0].account(), Some("acc_erin"));
    let mut d = detector();
    assert!(run(&mut d, &events[..4]).is_empty());
}

#[test]
fn probing_counts_folded_guard_events() {
    let mut d = detector();
    // The guard writes the first refusal, then one folded event for the
    // repeats.
    let events = vec![
        ev(T0, "request_blocked")
            .fail()
            .ip("198.51.100.3")
            .rule("sqli.union_select"),
        ev(T0 + 5, "inspection_match")
            .fail()
            .ip("198.51.100.3")
            .rule("xss.script_tag"),
        ev(T0 + 60, "request_blocked")
            .fail()
            .ip("198.51.100.3")
            .rule("sqli.union_select")
            .count(18),
    ];
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-probing"]);
    assert_eq!(f[0].value, 20.0);
    // Near miss: 19 in all.
    let mut d = detector();
    let mut near = events.clone();
    near[2] = near[2].clone().count(17);
    assert!(run(&mut d, &near).is_empty());
}

#[test]
fn sensitive_files_and_scanners() {
    let mut d = detector();
    let events: Vec<Ev> = (0..3)
        .map(|i| {
            ev(T0 + i, "request_blocked")
                .fail()
                .ip("198.51.100.4")
                .rule("probe.sensitive_file")
        })
        .collect();
    assert_eq!(
        fired(&run(&mut d, &events)),
        vec!["rampart-sensitive-files"]
    );
    let mut d = detector();
    assert!(run(&mut d, &events[..2]).is_empty());

    let mut d = detector();
    let scan = vec![
        ev(T0, "request_blocked")
            .fail()
            .ip("198.51.100.5")
            .rule("scanner.user_agent"),
        ev(T0 + 10, "request_blocked")
            .fail()
            .ip("198.51.100.5")
            .rule("scanner.user_agent"),
    ];
    assert_eq!(fired(&run(&mut d, &scan)), vec!["rampart-scanner"]);
    let mut d = detector();
    let spread = vec![scan[0].clone(), {
        let mut e = scan[1].clone();
        e.at_s = T0 + 120;
        e
    }];
    assert!(run(&mut d, &spread).is_empty());
}

fn read(at: i64, user: &str, n: u64, sensitive: bool) -> Ev {
    ev(at, "data.list")
        .user(user)
        .ip("203.0.113.60")
        .object("customers")
        .field("data.count", json!(n))
        .field("data.sensitive", json!(sensitive))
}

#[test]
fn bulk_reads_of_sensitive_fields() {
    let mut d = detector();
    let events: Vec<Ev> = (0..10)
        .map(|i| read(T0 + i * 30, "acc_frank", 100, true))
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-bulk-sensitive-reads"]);
    assert_eq!(f[0].account(), Some("acc_frank"));
    // Near miss: the same volume without sensitive fields, or 999.
    let mut d = detector();
    let plain: Vec<Ev> = (0..10)
        .map(|i| read(T0 + i * 30, "acc_frank", 100, false))
        .collect();
    assert!(run(&mut d, &plain).is_empty());
    let mut d = detector();
    let mut under: Vec<Ev> = (0..9)
        .map(|i| read(T0 + i * 30, "acc_frank", 100, true))
        .collect();
    under.push(read(T0 + 300, "acc_frank", 99, true));
    assert!(run(&mut d, &under).is_empty());
}

#[test]
fn privilege_change_then_bulk_reads() {
    let mut d = detector();
    let mut events = vec![ev(T0, "roles_changed")
        .user("acc_admin")
        .object("acc_gina")
        .ip("203.0.113.1")];
    events.extend((0..2).map(|i| read(T0 + 600 + i, "acc_gina", 100, true)));
    let f = run(&mut d, &events);
    assert_eq!(
        fired(&f),
        vec!["rampart-privilege-then-bulk-reads"],
        "{f:?}"
    );
    assert_eq!(f[0].account(), Some("acc_gina"));
    // Near miss: someone else reads in bulk, or the reads came first.
    let mut d = detector();
    let mut other = vec![events[0].clone()];
    other.extend((0..2).map(|i| read(T0 + 600 + i, "acc_hank", 100, true)));
    assert!(run(&mut d, &other).is_empty());
    let mut d = detector();
    let mut before: Vec<Ev> = (0..2)
        .map(|i| read(T0 + i, "acc_gina", 100, true))
        .collect();
    before.push(
        ev(T0 + 10, "roles_changed")
            .user("acc_admin")
            .object("acc_gina"),
    );
    assert!(run(&mut d, &before).is_empty());
}

fn admin_login(at: i64, ip: &str) -> Ev {
    let mut e = ev(at, "login_success").user("acc_admin").ip(ip);
    e.fields = json!({});
    e
}

fn with_roles(e: Ev, role: &str) -> Value {
    let mut doc = e.doc(1);
    doc["user"]["roles"] = json!([role]);
    doc
}

#[test]
fn an_administrator_from_a_new_address() {
    let mut d = detector();
    let first = with_roles(admin_login(T0, "203.0.113.10"), "admin");
    let same_net = with_roles(admin_login(T0 + 100, "203.0.113.99"), "admin");
    let new_net = with_roles(admin_login(T0 + 200, "198.51.100.10"), "admin");
    assert!(
        d.observe_ecs(&first).is_empty(),
        "the first sign-in ever is not news"
    );
    assert!(d.observe_ecs(&same_net).is_empty());
    let f = d.observe_ecs(&new_net);
    assert_eq!(fired(&f), vec!["rampart-admin-new-address"]);
    // Near miss: a user (not an administrator) from a new network.
    let mut d = detector();
    d.observe_ecs(&with_roles(admin_login(T0, "203.0.113.10"), "member"));
    assert!(d
        .observe_ecs(&with_roles(
            admin_login(T0 + 200, "198.51.100.10"),
            "member"
        ))
        .is_empty());
}

const FIREFOX_130: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
const FIREFOX_131: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

#[test]
fn an_administrator_on_a_new_device() {
    let mut d = detector();
    let login = |at, agent| with_roles(admin_login(at, "203.0.113.10").agent(agent), "admin");
    assert!(d.observe_ecs(&login(T0, FIREFOX_130)).is_empty());
    // Near miss: the same browser, updated.
    assert!(
        d.observe_ecs(&login(T0 + 100, FIREFOX_131)).is_empty(),
        "a browser's update is not a new device"
    );
    // Another browser and system, from the usual network.
    let f = d.observe_ecs(&login(T0 + 200, SAFARI_IPHONE));
    assert_eq!(fired(&f), vec!["rampart-admin-new-address"]);
    // Seen once, it is known.
    assert!(d.observe_ecs(&login(T0 + 300, SAFARI_IPHONE)).is_empty());
}

#[test]
fn what_the_server_remembers_is_not_new() {
    // Seeded from live sessions at start: the first sign-in after a
    // restart from a known place is not news; one from elsewhere is.
    let mut d = detector();
    d.remember_sign_in("acc_admin", Some("203.0.113.7"), Some(FIREFOX_130));
    let known = with_roles(admin_login(T0, "203.0.113.10").agent(FIREFOX_131), "admin");
    assert!(d.observe_ecs(&known).is_empty());
    let elsewhere = with_roles(
        admin_login(T0 + 60, "198.51.100.1").agent(FIREFOX_131),
        "admin",
    );
    assert_eq!(
        fired(&d.observe_ecs(&elsewhere)),
        vec!["rampart-admin-new-address"]
    );
}

fn moved(at: i64, quiet_secs: u64, ip: &str) -> Ev {
    ev(at, "session_moved")
        .user("acc_1")
        .ip(ip)
        .field("session.id", json!("ses_1"))
        .field("session.quiet_secs", json!(quiet_secs))
        .field("session.previous_net", json!("203.0.113.0/24"))
}

#[test]
fn a_session_used_from_a_second_place_within_minutes() {
    let mut d = detector();
    let f = d.observe_ecs(&moved(T0, 45, "198.51.100.20").doc(1));
    assert_eq!(fired(&f), vec!["rampart-session-second-place"]);
    assert_eq!(f[0].respond, vec![Response::RequireStepUp, Response::Alert]);
    assert_eq!(f[0].account(), Some("acc_1"));
    // Near miss: the session had been quiet for an hour (its owner went
    // home and carried on).
    let mut d = detector();
    assert!(d
        .observe_ecs(&moved(T0, 3_600, "198.51.100.20").doc(1))
        .is_empty());
}

#[test]
fn administrative_actions_outside_office_hours() {
    let hours = OfficeHours::parse("08:00-18:00 weekdays", 0).unwrap();
    let mut d = Detector::new(
        &shipped(),
        Options {
            office_hours: Some(hours),
            ..Options::default()
        },
    );
    // 2026-06-03 is a Wednesday.
    let wed_noon = 1_780_488_000; // 12:00 UTC
    let wed_3am = wed_noon - 9 * 3600;
    let sat_noon = wed_noon + 3 * 86_400;
    let admin = |at| {
        ev(at, "roles_changed")
            .user("acc_admin")
            .object("acc_x")
            .ip("203.0.113.1")
    };
    assert!(run(&mut d, &[admin(wed_noon)]).is_empty());
    assert_eq!(
        fired(&run(&mut d, &[admin(wed_3am)])),
        vec!["rampart-admin-off-hours"]
    );
    assert_eq!(
        fired(&run(&mut d, &[admin(sat_noon)])),
        vec!["rampart-admin-off-hours"]
    );
    // Near miss: Rampart's own automatic block at night has no user.
    let auto = ev(wed_3am, "block_added").ip("198.51.100.1");
    assert!(run(&mut d, &[auto]).is_empty());
    // Without office hours configured, never.
    let mut d = detector();
    assert!(run(&mut d, &[admin(wed_3am)]).is_empty());
}

#[test]
fn an_audit_verification_failure() {
    let mut d = detector();
    let f = run(&mut d, &[ev(T0, "audit.verified").fail()]);
    assert_eq!(fired(&f), vec!["rampart-audit-verify-failed"]);
    assert_eq!(f[0].level, "critical");
    assert!(run(&mut d, &[ev(T0, "audit.verified")]).is_empty());
}

#[test]
fn a_certificate_about_to_expire() {
    for action in ["tls.certificate_expiring", "tls.certificate_missing"] {
        let mut d = detector();
        let f = run(&mut d, &[ev(T0, action).fail()]);
        assert_eq!(fired(&f), vec!["rampart-certificate-expiring"], "{action}");
        assert_eq!(f[0].level, "high");
    }
    let mut d = detector();
    // Near miss: one failed order is an event to read, not an alert (the
    // next try may work; the certificate in service has weeks left).
    assert!(run(&mut d, &[ev(T0, "tls.certificate_issued").fail()]).is_empty());
}

#[test]
fn a_backup_that_failed_or_did_not_happen() {
    for action in [
        "backup.created",
        "backup.verified",
        "backup.missing",
        "backup.uploaded",
    ] {
        let mut d = detector();
        let f = run(&mut d, &[ev(T0, action).fail()]);
        assert_eq!(fired(&f), vec!["rampart-backup-failed"], "{action}");
        assert_eq!(f[0].level, "high");
    }
    // Near miss: good backups, and a restore that failed (a person ran
    // it and saw why).
    let mut d = detector();
    assert!(run(
        &mut d,
        &[ev(T0, "backup.created"), ev(T0, "backup.verified")]
    )
    .is_empty());
    assert!(run(&mut d, &[ev(T0, "backup.restored").fail()]).is_empty());
}

#[test]
fn suppression_groups_an_ongoing_attack_into_one_firing() {
    let mut d = detector();
    let events: Vec<Ev> = (0..60)
        .map(|i| {
            ev(T0 + i * 2, "login_failure")
                .fail()
                .ip("203.0.113.5")
                .login(&format!("u{}", i % 3))
        })
        .collect();
    let f = run(&mut d, &events);
    let n = f
        .iter()
        .filter(|f| f.rule_id == "rampart-brute-force-address")
        .count();
    assert_eq!(n, 1, "suppressed for ten minutes after firing: {f:?}");
}

#[test]
fn settings_tune_and_turn_off_rules() {
    let mut settings = BTreeMap::new();
    settings.insert(
        "rampart-brute-force-address".to_owned(),
        RuleSettings {
            threshold: Some(3),
            timespan: Some("30s".into()),
            respond: Some(vec![Response::Alert]),
            ..RuleSettings::default()
        },
    );
    settings.insert(
        "rampart-login-failure".to_owned(),
        RuleSettings {
            enabled: Some(false),
            ..RuleSettings::default()
        },
    );
    let set = RuleSet::shipped(&settings).unwrap();
    // Turning off a building block turns off what counts it.
    let stuffing = set.get("rampart-credential-stuffing").unwrap();
    assert!(!stuffing.enabled);
    assert!(stuffing
        .disabled_because
        .as_deref()
        .unwrap()
        .contains("login_failure"));
    settings.remove("rampart-login-failure");
    let set = RuleSet::shipped(&settings).unwrap();
    let bf = set.get("rampart-brute-force-address").unwrap();
    assert_eq!((bf.threshold, bf.timespan_secs), (Some(3), Some(30)));
    let mut d = Detector::new(&set, Options::default());
    let events: Vec<Ev> = (0..3)
        .map(|i| {
            ev(T0 + i, "login_failure")
                .fail()
                .ip("203.0.113.5")
                .login("x")
        })
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-brute-force-address"]);
    assert_eq!(f[0].respond, vec![Response::Alert]);

    let mut bad = BTreeMap::new();
    bad.insert("no-such-rule".to_owned(), RuleSettings::default());
    let e = RuleSet::shipped(&bad).unwrap_err();
    assert!(e[0].reason.contains("no rule has that id"), "{e:?}");
}

fn user_file(text: &str) -> Vec<Source> {
    let mut s = Source::shipped();
    s.push(Source {
        name: "rules/mine.yml".into(),
        text: text.into(),
        shipped: false,
    });
    s
}

#[test]
fn a_user_rule_is_loaded_and_fires() {
    let text = "title: API key refused from outside\nid: my-key-refused\nlogsource: {product: rampart}\ndetection:\n  sel:\n    event.action: api_key_refused\n  condition: sel\nlevel: medium\n";
    let set = load(&user_file(text), &BTreeMap::new()).unwrap();
    let info = set.get("my-key-refused").unwrap();
    assert_eq!(info.file, "rules/mine.yml");
    let mut d = Detector::new(&set, Options::default());
    let f = run(&mut d, &[ev(T0, "api_key_refused").fail().ip("192.0.2.9")]);
    assert_eq!(fired(&f), vec!["my-key-refused"]);
    assert_eq!(
        f[0].respond,
        vec![Response::Alert],
        "a rule that asks nothing alerts"
    );
}

#[test]
fn broken_rule_files_are_refused_with_line_and_reason() {
    let good = "title: Fine\nid: fine\nlogsource: {product: rampart}\ndetection:\n  s:\n    event.action: x\n  condition: s\n";
    // A YAML error in the second document.
    let text = format!(
        "{good}---\ntitle: Broken\nid: broken\ndetection:\n  s: [unclosed\n  condition: s\n"
    );
    let e = load(&user_file(&text), &BTreeMap::new()).unwrap_err();
    assert_eq!(e[0].file, "rules/mine.yml");
    assert!(e[0].line >= 9, "{e:?}");
    // A condition naming nothing.
    let text = format!("{good}---\ntitle: Bad condition\nid: badcond\nlogsource: {{product: rampart}}\ndetection:\n  s:\n    event.action: x\n  condition: s and missing\n");
    let e = load(&user_file(&text), &BTreeMap::new()).unwrap_err();
    assert_eq!(
        (e[0].file.as_str(), e[0].line),
        ("rules/mine.yml", 9),
        "{e:?}"
    );
    // A correlation counting a rule that does not exist.
    let text = "title: Counts nothing\nid: nothing\ncorrelation:\n  type: event_count\n  rules: [ghost]\n  group-by: [source.ip]\n  timespan: 1m\n  condition: {gte: 2}\n";
    let e = load(&user_file(text), &BTreeMap::new()).unwrap_err();
    assert_eq!(
        (e[0].file.as_str(), e[0].line),
        ("rules/mine.yml", 1),
        "{e:?}"
    );
    // An id a shipped rule has.
    let text = good.replace("id: fine", "id: rampart-probing");
    let e = load(&user_file(&text), &BTreeMap::new()).unwrap_err();
    assert!(e[0].reason.contains("[detect.rules"), "{e:?}");
    // No id; an unknown response.
    let e = load(
        &user_file(&good.replace("id: fine\n", "")),
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(e[0].reason.contains("needs an `id`"), "{e:?}");
    let text = format!("{good}custom_attributes:\n  rampart.respond: [nuke]\n");
    let e = load(&user_file(&text), &BTreeMap::new()).unwrap_err();
    assert!(e[0].reason.contains("not a response"), "{e:?}");
}

#[test]
fn state_is_bounded_under_a_flood_of_addresses() {
    let cap = 2_000;
    let mut d = Detector::new(
        &shipped(),
        Options {
            max_state: cap,
            ..Options::default()
        },
    );
    for i in 0..(cap as u64 * 3) {
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        d.observe_ecs(
            &ev(T0 + (i / 1000) as i64, "login_failure")
                .fail()
                .ip(&ip)
                .login("x")
                .doc(i),
        );
    }
    // rsigma evicts the stalest tenth when the cap is reached, before an
    // event adds its windows: one event may add one per correlation.
    let correlations = shipped()
        .rules()
        .iter()
        .filter(|r| r.kind != "detection")
        .count();
    assert!(d.state_count() <= cap + correlations, "{}", d.state_count());
    assert!(d.state_count() > cap / 2, "{}", d.state_count());
}

#[test]
fn office_hours_parse() {
    assert!(OfficeHours::parse("18:00-08:00", 0).is_err());
    assert!(OfficeHours::parse("8-18", 0).is_err());
    let h = OfficeHours::parse("09:00-17:30", 60).unwrap();
    // 16:45 UTC is 17:45 at +01:00: outside.
    let day = 1_780_444_800_000; // 2026-06-03 00:00 UTC
    assert!(h.outside(day + (16 * 60 + 45) * 60_000));
    assert!(!h.outside(day + (15 * 60 + 45) * 60_000));
}

#[test]
fn the_readme_example_rule_loads_and_fires() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("title: API key refused five times")
        .expect("the example");
    let end = start + readme[start..].find("```").unwrap();
    let set =
        load(&user_file(&readme[start..end]), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
    let mut d = Detector::new(&set, Options::default());
    let events: Vec<Ev> = (0..5)
        .map(|i| ev(T0 + i, "api_key_refused").fail().ip("192.0.2.50"))
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["my-api-key-guessing-burst"]);
    assert_eq!(f[0].respond, vec![Response::BlockAddress, Response::Alert]);
    assert_eq!(f[0].block_for_secs, Some(3600));
    let mut d = Detector::new(&set, Options::default());
    assert!(run(&mut d, &events[..4]).is_empty());
}

#[test]
fn bursts_of_not_found() {
    // The guard writes the first 404 of an address, then the repeats
    // folded per minute.
    let burst = vec![
        ev(T0, "not_found")
            .fail()
            .ip("198.51.100.8")
            .rule("http.not_found"),
        ev(T0 + 60, "not_found")
            .fail()
            .ip("198.51.100.8")
            .rule("http.not_found")
            .count(49),
    ];
    let mut d = detector();
    let f = run(&mut d, &burst);
    assert_eq!(fired(&f), vec!["rampart-not-found-burst"]);
    assert_eq!(f[0].value, 50.0);
    // Near misses: 49 in all, or 50 spread over more than two minutes.
    let mut d = detector();
    let mut near = burst.clone();
    near[1] = near[1].clone().count(48);
    assert!(run(&mut d, &near).is_empty());
    let mut d = detector();
    let mut slow = burst.clone();
    slow[1].at_s = T0 + 180;
    assert!(run(&mut d, &slow).is_empty());
}

#[test]
fn one_rule_alone_reports_its_own_matches() {
    let set = shipped();
    let alone = set.only("rampart-login-failure").unwrap();
    assert_eq!(alone.rules().len(), 1);
    let mut d = Detector::new(
        &alone,
        Options {
            everything: true,
            ..Options::default()
        },
    );
    let f = run(
        &mut d,
        &[ev(T0, "login_failure").fail().ip("192.0.2.1").login("a")],
    );
    assert_eq!(fired(&f), vec!["rampart-login-failure"]);
    // A correlation keeps what it counts, transitively.
    let chain = set.only("rampart-success-after-failures").unwrap();
    let ids: Vec<&str> = chain.rules().iter().map(|r| r.id.as_str()).collect();
    for id in [
        "rampart-success-after-failures",
        "rampart-failure-burst",
        "rampart-login-failure",
        "rampart-login-success-guessed",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    assert_eq!(ids.len(), 4);
    assert!(set.only("nope").is_none());
}

#[test]
fn cross_site_requests_and_refusals_of_a_blocked_address_are_not_held_against_it() {
    // Another site's page makes a reader's browser ask for sensitive
    // files, injections and missing pages: the reader is not probing.
    let cross = |e: Ev| e.field("http.request.cross_site", json!(true));
    let mut d = detector();
    let mut events = Vec::new();
    for i in 0..30 {
        events.push(cross(
            ev(T0 + i, "request_blocked")
                .fail()
                .ip("198.51.100.30")
                .rule("probe.sensitive_file"),
        ));
        events.push(cross(
            ev(T0 + i, "request_blocked")
                .fail()
                .ip("198.51.100.30")
                .rule("sqli.union_select"),
        ));
        events.push(cross(
            ev(T0 + i, "not_found")
                .fail()
                .ip("198.51.100.30")
                .rule("http.not_found")
                .count(5),
        ));
    }
    assert!(
        run(&mut d, &events).is_empty(),
        "cross-site requests fired a rule"
    );
    // An address already blocked keeps being refused: not new probing.
    let mut d = detector();
    let refused: Vec<Ev> = (0..40)
        .map(|i| {
            ev(T0 + i, "request_blocked")
                .fail()
                .ip("198.51.100.31")
                .rule("block")
        })
        .chain((0..40).map(|i| {
            ev(T0 + i, "request_blocked")
                .fail()
                .ip("198.51.100.31")
                .rule("firewall.auth")
        }))
        .collect();
    assert!(run(&mut d, &refused).is_empty());
    // The guard names several rules at once: a sensitive file among them
    // still counts.
    let mut d = detector();
    let several: Vec<Ev> = (0..3)
        .map(|i| {
            ev(T0 + i, "request_blocked")
                .fail()
                .ip("198.51.100.32")
                .rule("traversal.dot_dot,probe.sensitive_file")
        })
        .collect();
    assert_eq!(
        fired(&run(&mut d, &several)),
        vec!["rampart-sensitive-files"]
    );
}

#[test]
fn ipv6_addresses_are_counted_by_their_64() {
    // Credential stuffing that rotates the address inside one /64.
    let mut d = detector();
    let events: Vec<Ev> = (0..10)
        .map(|i| {
            ev(T0 + i, "login_failure")
                .fail()
                .ip(&format!("2001:db8:7:8::{:x}", i + 1))
                .login(&format!("user{i}"))
        })
        .collect();
    let f = run(&mut d, &events);
    assert_eq!(fired(&f), vec!["rampart-credential-stuffing"]);
    assert_eq!(f[0].group[0].1, "2001:db8:7:8::/64");
    assert_eq!(f[0].ip(), Some("2001:db8:7:8::a".parse().unwrap()));
    // Near miss: ten /64s.
    let mut d = detector();
    let spread: Vec<Ev> = (0..10)
        .map(|i| {
            ev(T0 + i, "login_failure")
                .fail()
                .ip(&format!("2001:db8:7:{:x}::1", i + 1))
                .login(&format!("user{i}"))
        })
        .collect();
    assert!(run(&mut d, &spread).is_empty());
}

#[test]
fn overdue_drills_are_an_alert() {
    let mut d = detector();
    let f = run(&mut d, &[ev(T0, "drill.overdue").fail()]);
    assert_eq!(fired(&f), vec!["rampart-drill-overdue"]);
    assert_eq!(f[0].level, "low");
    // Near miss: drills that ran.
    let mut d = detector();
    assert!(run(
        &mut d,
        &[ev(T0, "drill.completed"), ev(T0 + 1_000, "drill.started")]
    )
    .is_empty());
}
