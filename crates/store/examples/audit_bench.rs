//! The audit trail's speed, beside references measured in the same run
//! (`bench/run audit` runs it; prints one JSON object).
//!
//! - `writer N`: N events through the one writer into a fresh SQLite file
//!   (WAL, synchronous=FULL), recorded by 8 tasks at once; the reference is
//!   the same rows inserted by a plain rusqlite program, 4,096 per
//!   transaction, into a table with the same indexes. Then `audit verify`
//!   over those N events.
//! - `search N`: N events written straight into a trail (not chained: only
//!   the search is measured), then filtered searches through the store,
//!   each timed as the median of 7.

use std::sync::Arc;
use std::time::Instant;

use rampart_core::audit::{
    verify, Audit, AuditStore, Category, Event, EventQuery, Severity, WriterMode, KEY_NAME,
};
use rampart_core::{RequestMeta, Store, SystemClock, Timestamp};
use rampart_crypto::audit::AuditKeys;
use rampart_crypto::SecretBytes;
use serde_json::json;

fn event(i: u64, at: i64) -> Event {
    Event::new(
        Timestamp(at),
        if i.is_multiple_of(5) {
            "login_failure"
        } else {
            "data.read"
        },
        if i.is_multiple_of(5) {
            Category::Authentication
        } else {
            Category::Database
        },
        if i.is_multiple_of(5) {
            "failure"
        } else {
            "success"
        },
    )
    .user(Some(&format!("acc_{:04}", i % 500)))
    .object("customers")
    .meta(&RequestMeta {
        ip: Some(format!("10.{}.{}.{}", i % 7, (i / 7) % 250, i % 250)),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()),
        request_id: Some(format!("{i:016x}")),
        cross_site: false,
        drill: None,
    })
    .field("data.record_ids", vec![format!("rec_{i:032x}")])
    .field("data.count", 1)
}

async fn writer(n: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let store = rampart_store::open(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    let keys = Arc::new(AuditKeys::derive(&SecretBytes::new(vec![3; 32]), KEY_NAME).unwrap());
    let (audit, task) = Audit::start(
        Arc::new(store.clone()),
        keys.clone(),
        "bench",
        WriterMode::Server,
        None,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let now = SystemClock.now_ms();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let audit = audit.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(8) {
                audit.record(event(i, now)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    audit.flush().await;
    let ours = n as f64 / started.elapsed().as_secs_f64();
    audit.stop().await;
    task.await.unwrap();

    let started = Instant::now();
    let report = verify(&store, &keys, None, &Default::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let verified: u64 = report.nodes.iter().map(|r| r.events).sum();
    let verify_per_min = verified as f64 / started.elapsed().as_secs_f64() * 60.0;
    store.close().await;

    // The reference: a plain program writing the same rows.
    let reference = plain_inserts(&dir.path().join("plain.db"), n);
    json!({
        "events": n,
        "writer_per_s": ours,
        "plain_per_s": reference,
        "verify_per_min": verify_per_min,
        "db_bytes_per_event": std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) / n.max(1),
    })
}

trait NowMs {
    fn now_ms(&self) -> i64;
}

impl NowMs for SystemClock {
    fn now_ms(&self) -> i64 {
        rampart_core::Clock::now(self).millis()
    }
}

const PLAIN_TABLE: &str =
    "CREATE TABLE ev (node TEXT, seq INTEGER, at INTEGER, action TEXT, category TEXT, \
     outcome TEXT, severity INTEGER, reason TEXT, user_id TEXT, source_ip TEXT, user_agent TEXT, \
     request_id TEXT, rule TEXT, object TEXT, fields TEXT, link TEXT, tree TEXT, ip_key TEXT, \
     PRIMARY KEY (node, seq));
     CREATE INDEX ev_at ON ev (at, seq); CREATE INDEX ev_action ON ev (action, at);
     CREATE INDEX ev_category ON ev (category, at); CREATE INDEX ev_user ON ev (user_id, at);
     CREATE INDEX ev_ip ON ev (ip_key, at); CREATE INDEX ev_object ON ev (object, at);";

/// One row as the trail stores it (without chaining).
fn put(st: &mut rusqlite::CachedStatement<'_>, seq: u64, e: &Event, link: &str, tree: &str) {
    st.execute(rusqlite::params![
        "bench",
        seq as i64,
        e.at.millis(),
        e.action,
        e.category.as_str(),
        e.outcome,
        e.severity.number(),
        e.reason,
        e.user_id,
        e.source_ip,
        e.user_agent,
        e.request_id,
        e.rule,
        e.object,
        serde_json::to_string(&e.fields).unwrap(),
        link,
        tree,
        rampart_core::audit::ip_key_of(e.source_ip.as_deref()),
    ])
    .unwrap();
}

fn plain_inserts(path: &std::path::Path, n: u64) -> f64 {
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .unwrap();
    c.execute_batch(PLAIN_TABLE).unwrap();
    let link = "ab".repeat(32);
    let tree = "cd".repeat(64);
    let started = Instant::now();
    let mut i = 0u64;
    while i < n {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO ev VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                )
                .unwrap();
            for j in i..(i + 4096).min(n) {
                let e = event(j, 1_700_000_000_000);
                put(&mut st, j, &e, &link, &tree);
            }
        }
        tx.commit().unwrap();
        i += 4096;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Fills a trail with `n` events over 400 days, straight into SQLite (one
/// transaction per 50,000), so that the search can be measured.
fn fill(path: &std::path::Path, n: u64) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
        .unwrap();
    let start = 1_700_000_000_000i64;
    let span = 400 * 86_400_000i64;
    let link = "ab".repeat(32);
    let mut i = 0u64;
    while i < n {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO audit_events (node, seq, at, action, category, outcome, severity, reason, user_id, \
                     source_ip, user_agent, request_id, rule, object, fields, link, tree, ip_key) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                )
                .unwrap();
            for j in i..(i + 50_000).min(n) {
                let at = start + (span / n as i64) * j as i64;
                let mut e = event(j, at);
                if j.is_multiple_of(997) {
                    e = e.severity(Severity::High).rule("sqli");
                }
                put(&mut st, j, &e, &link, "");
            }
        }
        tx.commit().unwrap();
        i += 50_000;
        eprint!("\rfilled {i}/{n}");
    }
    eprintln!();
    c.execute_batch("ANALYZE;").unwrap();
}

async fn search(n: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    rampart_store::open(&url).await.unwrap().close().await;
    let started = Instant::now();
    fill(&db, n);
    let fill_s = started.elapsed().as_secs_f64();
    let store = rampart_store::open(&url).await.unwrap();
    let day = 86_400_000i64;
    let mid = 1_700_000_000_000i64 + 200 * day;
    let queries: Vec<(&str, EventQuery)> = vec![
        ("newest 50, no filter", EventQuery::default()),
        (
            "failed sign-ins in one day",
            EventQuery {
                actions: vec!["login_failure".into()],
                since: Some(Timestamp(mid)),
                until: Some(Timestamp(mid + day)),
                ..Default::default()
            },
        ),
        (
            "one account",
            EventQuery {
                user_id: Some("acc_0042".into()),
                ..Default::default()
            },
        ),
        (
            "one /24 network",
            EventQuery {
                source_net: Some("10.3.17.0/24".parse().unwrap()),
                ..Default::default()
            },
        ),
        (
            "severity high or worse in one week",
            EventQuery {
                min_severity: Some(Severity::High),
                since: Some(Timestamp(mid)),
                until: Some(Timestamp(mid + 7 * day)),
                ..Default::default()
            },
        ),
        (
            "one rule",
            EventQuery {
                rule: Some("sqli".into()),
                ..Default::default()
            },
        ),
        (
            "free text (a request id), one day",
            EventQuery {
                text: Some(format!("{:016x}", n / 2)),
                since: Some(Timestamp(mid)),
                until: Some(Timestamp(mid + day)),
                ..Default::default()
            },
        ),
        (
            "free text (a request id), all time",
            EventQuery {
                text: Some(format!("{:016x}", n / 3)),
                ..Default::default()
            },
        ),
    ];
    let mut results = Vec::new();
    for (name, mut q) in queries {
        q.limit = 50;
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..7 {
            let t = Instant::now();
            found = store.search_events(&q).await.unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        results.push(json!({"query": name, "ms": times[3], "found": found}));
    }
    let t = Instant::now();
    let buckets = store
        .count_events(
            &EventQuery {
                since: Some(Timestamp(mid)),
                until: Some(Timestamp(mid + day)),
                ..Default::default()
            },
            3_600_000,
        )
        .await
        .unwrap();
    let counts_ms = t.elapsed().as_secs_f64() * 1000.0;
    store.close().await;
    json!({
        "events": n,
        "fill_s": fill_s,
        "queries": results,
        "counts_per_hour_one_day_ms": counts_ms,
        "buckets": buckets.len(),
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let out = match args.get(1).map(String::as_str) {
        Some("writer") => writer(n).await,
        Some("search") => search(n).await,
        _ => {
            eprintln!("usage: audit_bench writer|search [EVENTS]");
            std::process::exit(2);
        }
    };
    println!("{out}");
}
