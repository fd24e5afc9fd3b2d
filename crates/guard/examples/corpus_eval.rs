//! Runs the inspector in-process over cases exported by
//! `bench/inspection --export FILE` and prints rates per category; with
//! `--misses CATEGORY`, prints the requests it got wrong there. Rates
//! are per category, then per placement (`@query`, `@xml`…). A study
//! aid: the figures that count come from `bench/inspection`, over HTTPS.
//!
//! Usage: corpus_eval FILE [--misses CATEGORY]

use std::collections::BTreeMap;

use base64::Engine;
use rampart_guard::inspect::Request;
use rampart_guard::Inspector;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .expect("usage: corpus_eval FILE [--misses CATEGORY]");
    let misses = args
        .iter()
        .position(|a| a == "--misses")
        .and_then(|i| args.get(i + 1));
    let ins = Inspector::new();
    let mut stats: BTreeMap<(String, bool, String), (u32, u32)> = BTreeMap::new();
    for line in std::fs::read_to_string(file).expect("read").lines() {
        let c: serde_json::Value = serde_json::from_str(line).expect("json");
        let path_q = c["path"].as_str().unwrap_or("/");
        let (path, query) = match path_q.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_q, None),
        };
        let headers: Vec<(String, Vec<u8>)> = c["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap_or("").to_ascii_lowercase(),
                            h[1].as_str().unwrap_or("").as_bytes().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let body = c["body"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        let req = Request {
            path,
            query,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
            content_type: content_type.as_deref(),
            body: body.as_deref(),
        };
        let v = ins.inspect(&req, true, true);
        let attack = c["attack"].as_bool().unwrap_or(false);
        let category = c["category"].as_str().unwrap_or("").to_owned();
        let right = v.is_attack() == attack;
        let e = stats
            .entry((
                c["corpus"].as_str().unwrap_or("").to_owned(),
                attack,
                category.clone(),
            ))
            .or_default();
        e.0 += u32::from(right);
        e.1 += 1;
        // The same request again under its placement (`@query`, `@xml`…).
        let placement = format!("@{}", c["placement"].as_str().unwrap_or("?"));
        let p = stats
            .entry((
                c["corpus"].as_str().unwrap_or("").to_owned(),
                attack,
                placement,
            ))
            .or_default();
        p.0 += u32::from(right);
        p.1 += 1;
        if !right && misses.is_some_and(|m| category.contains(m.as_str())) {
            let shown: Vec<String> = headers
                .iter()
                .filter(|(k, v)| {
                    let framing = matches!(
                        k.as_str(),
                        "accept"
                            | "accept-encoding"
                            | "accept-language"
                            | "host"
                            | "connection"
                            | "content-type"
                    );
                    let test_agent = k == "user-agent" && v.as_slice() == b"OWASP CRS test agent";
                    !framing && !test_agent
                })
                .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v)))
                .collect();
            println!(
                "{} {} {path_q} [{}] {:?} => {v}",
                if attack { "MISSED" } else { "FALSE+" },
                c["method"].as_str().unwrap_or(""),
                shown.join(" | "),
                body.as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
            );
        }
    }
    let mut totals: BTreeMap<(String, bool), (u32, u32)> = BTreeMap::new();
    for ((corpus, attack, cat), (r, n)) in &stats {
        if misses.is_none() {
            println!(
                "{corpus:15} {} {cat:55} {:6.1}% of {n}",
                if *attack { "TP" } else { "TN" },
                100.0 * f64::from(*r) / f64::from(*n)
            );
        }
        if cat.starts_with('@') {
            continue;
        }
        let t = totals.entry((corpus.clone(), *attack)).or_default();
        t.0 += r;
        t.1 += n;
    }
    for ((corpus, attack), (r, n)) in totals {
        println!(
            "{corpus:15} {} total {:6.1}% of {n}",
            if attack { "TP" } else { "TN" },
            100.0 * f64::from(r) / f64::from(n)
        );
    }
}
