//! Detection speed and memory, for `bench/run detect`.
//!
//! `detect_bench throughput N`: N events of a realistic mix (sign-ins and
//! failures from many addresses, guard refusals, data reads, role changes)
//! through the shipped rules on one thread; beside it, the same events
//! only flattened and parsed (what every event costs before any rule), as
//! the same-run reference. Prints JSON.
//!
//! `detect_bench flood N`: N failed sign-ins from N distinct addresses (a
//! flood of one million by default); prints the correlation windows held
//! and the process's resident memory before and after.

use std::collections::BTreeMap;
use std::time::Instant;

use rampart_detect::{Detector, Options, RuleSet};
use serde_json::{json, Value};

const T0: i64 = 1_780_000_000;

fn doc(i: u64) -> (Value, i64) {
    let at = T0 * 1000 + i as i64 * 2;
    // 20,000 client addresses, each coming back now and then (a busy
    // small-business server; the flood below covers one-off addresses).
    let a = (i.wrapping_mul(7_919)) % 20_000;
    let ip = format!("10.{}.{}.{}", (a >> 16) & 255, (a >> 8) & 255, a & 255);
    let (action, outcome, extra) = match i % 10 {
        0..=3 => (
            "login_failure",
            "failure",
            json!({"login.key": format!("{:016x}", i % 5_000)}),
        ),
        4 => ("login_success", "success", json!({})),
        5 | 6 => (
            "data.read",
            "success",
            json!({"data.count": 1, "data.sensitive": i.is_multiple_of(3)}),
        ),
        7 => ("request_blocked", "failure", json!({})),
        8 => ("inspection_match", "failure", json!({})),
        _ => ("mfa_failure", "failure", json!({})),
    };
    let d = json!({
        "@timestamp": "2026-06-01T00:00:00Z",
        "event": {"action": action, "outcome": outcome, "id": format!("n1:{i}"),
                  "category": ["authentication"], "severity": 2, "sequence": i},
        "source": {"ip": ip},
        "user": {"id": format!("acc_{}", i % 20_000), "roles": ["member"]},
        "rule": {"name": "sqli.union_select"},
        "host": {"name": "n1"},
        "rampart": {"node": "n1", "seq": i, "object": "customers", "fields": extra},
    });
    (d, at)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("throughput");
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let set = RuleSet::shipped(&BTreeMap::new()).expect("shipped rules");
    match what {
        "profile" => {
            // Only the rules, for a profiler.
            let events: Vec<(Value, i64)> = (0..n).map(doc).collect();
            let mut det = Detector::new(&set, Options::default());
            let start = Instant::now();
            for (d, at) in events {
                det.observe_owned(d, at);
            }
            println!("{:.0} events/s", n as f64 / start.elapsed().as_secs_f64());
        }
        "throughput" => {
            let events: Vec<(Value, i64)> = (0..n).map(doc).collect();
            // Reference: what every event costs before any rule.
            let start = Instant::now();
            let mut keys = 0usize;
            for (d, _) in &events {
                let text = d.to_string();
                let v: Value = serde_json::from_str(&text).unwrap();
                keys += v.as_object().map_or(0, |m| m.len());
            }
            let reference = n as f64 / start.elapsed().as_secs_f64();
            let mut det = Detector::new(&set, Options::default());
            let start = Instant::now();
            let mut fired = 0usize;
            for (d, at) in events {
                fired += det.observe_owned(d, at).len();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({
                    "events": n,
                    "events_per_sec": n as f64 / secs,
                    "serde_roundtrip_per_sec": reference,
                    "firings": fired,
                    "state": det.state_count(),
                    "keys": keys,
                })
            );
        }
        "flood" => {
            let mut det = Detector::new(&set, Options::default());
            let before = rss_kib();
            let start = Instant::now();
            for i in 0..n {
                let ip = format!(
                    "{}.{}.{}.{}",
                    11 + (i >> 24),
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255
                );
                let d = json!({
                    "@timestamp": "2026-06-01T00:00:00Z",
                    "event": {"action": "login_failure", "outcome": "failure", "id": format!("n1:{i}")},
                    "source": {"ip": ip},
                    "rampart": {"fields": {"login.key": format!("{i:016x}")}},
                });
                det.observe(&d, T0 * 1000 + i as i64);
            }
            let after = rss_kib();
            println!(
                "{}",
                json!({
                    "addresses": n,
                    "state": det.state_count(),
                    "rss_kib_before": before,
                    "rss_kib_after": after,
                    "secs": start.elapsed().as_secs_f64(),
                })
            );
        }
        other => {
            eprintln!("usage: detect_bench throughput|flood|profile [N] (not {other})");
            std::process::exit(2);
        }
    }
}
