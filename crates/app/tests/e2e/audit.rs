//! The audit trail end to end: writes killed mid-flight keep their events,
//! `rampart audit verify` and `key` on a real data directory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::audit::{AuditStore, EventQuery};
use rampart_core::Store;
use serde_json::{json, Value};

use crate::support::*;

/// A server with a collection and an API key that may write to it; the
/// key's secret.
async fn notes_server() -> (TestServer, String) {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            &admin,
            json!({"name": "notes", "fields": {"text": {"type": "text", "max_length": 100}}}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = s
        .post_auth(
            "/api/v1/admin/api-keys",
            &admin,
            json!({"name": "flood", "scopes": [{"collection": "notes", "actions": ["create", "update", "delete", "read"]}]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let key: Value = r.json().await.unwrap();
    (s, key["secret"].as_str().unwrap().to_owned())
}

/// Writes `n` notes with the API key.
async fn write_notes(s: &TestServer, key: &str, n: usize) {
    for i in 0..n {
        let r = s
            .client
            .post(s.url("/api/v1/collections/notes/records"))
            .bearer_auth(key)
            .json(&json!({"text": format!("note {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

async fn trail_store(data: &std::path::Path) -> rampart_store::SqlStore {
    rampart_store::open(&format!(
        "sqlite://{}?mode=rw",
        data.join("rampart.db").display()
    ))
    .await
    .unwrap()
}

/// The record ids of every `data.create` event in the trail.
async fn created_ids(store: &rampart_store::SqlStore) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    let mut q = EventQuery {
        actions: vec!["data.create".into()],
        limit: 500,
        ..Default::default()
    };
    loop {
        let page = store.search_events(&q).await.unwrap();
        let Some(last) = page.last() else { break };
        q.cursor = Some((last.at, last.node.clone(), last.seq));
        for e in &page {
            for id in e.fields_map()["data.record_ids"].as_array().unwrap() {
                ids.insert(id.as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

#[tokio::test]
async fn kill_9_during_a_flood_of_writes_loses_no_acknowledged_event() {
    let (mut s, key) = notes_server().await;
    let data = s.data_dir();
    s.stop().await;
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    const RUNS: u64 = 20;
    for run in 0..RUNS {
        let mut p = Proc::spawn(&data, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..12 {
            let (client, url, key) = (
                p.client.clone(),
                p.url("/api/v1/collections/notes/records"),
                key.clone(),
            );
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let Ok(r) = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"text": format!("run {run} writer {w} note {i}")}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if r.status() != 201 {
                        continue;
                    }
                    // Acknowledged only once the whole answer arrived.
                    let Ok(body) = r.json::<Value>().await else {
                        break;
                    };
                    acknowledged
                        .lock()
                        .unwrap()
                        .push(body["id"].as_str().unwrap().to_owned());
                }
            }));
        }
        // Killed at a different moment each run.
        tokio::time::sleep(Duration::from_millis(300 + run * 37 % 400)).await;
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }
    // One clean run chains whatever the last kill left pending.
    let mut p = Proc::spawn(&data, &[]);
    assert!(p.terminate().await.success());

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() as u64 > RUNS * 10,
        "the flood wrote only {} records",
        acknowledged.len()
    );
    let store = trail_store(&data).await;
    let created = created_ids(&store).await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !created.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes have no event, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        missing.first()
    );
    let unclean = store
        .search_events(&EventQuery {
            actions: vec!["audit.unclean_stop".into()],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        unclean.len() as u64,
        RUNS,
        "each kill is noted at the next start"
    );
    store.close().await;

    let (code, out, err) = rampart_run(
        &["audit", "verify", "--data-dir", data.to_str().unwrap()],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("verified"), "{out}");
    eprintln!(
        "{} acknowledged writes over {RUNS} kills, each with its event",
        acknowledged.len()
    );
}

#[tokio::test]
async fn verify_names_the_first_break_and_exits_3() {
    let (mut s, key) = notes_server().await;
    write_notes(&s, &key, 5).await;
    let data = s.data_dir();
    s.stop().await;
    let dir = data.to_str().unwrap();
    let (code, out, err) = rampart_run(&["audit", "verify", "--data-dir", dir], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": OK"), "{out}");
    assert!(out.contains("witness checkpoints compared"), "{out}");

    // The key command prints the key written beside the data.
    let (code, key_out, err) = rampart_run(&["audit", "key", "--data-dir", dir], None);
    assert_eq!(code, Some(0), "{err}");
    let file = std::fs::read_to_string(data.join("audit.pub")).unwrap();
    assert_eq!(key_out, file);
    assert!(key_out.starts_with("rampart-audit+"), "{key_out}");

    let store = trail_store(&data).await;
    let victim = store
        .search_events(&EventQuery {
            actions: vec!["data.create".into()],
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    sqlx::query("UPDATE audit_events SET source_ip = '192.0.2.1' WHERE node = $1 AND seq = $2")
        .bind(&victim.node)
        .bind(victim.seq as i64)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let (code, out, _) = rampart_run(&["audit", "verify", "--data-dir", dir], None);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains(&format!(
            "chain {}, event {} ({})",
            victim.node,
            victim.seq,
            victim.at.to_rfc3339()
        )),
        "{out}"
    );
    assert!(
        out.contains("BROKEN") && out.contains("NOT verified"),
        "{out}"
    );
}

#[tokio::test]
async fn export_writes_every_event_as_ecs_or_syslog_and_filters_by_time() {
    let (mut s, key) = notes_server().await;
    write_notes(&s, &key, 3).await;
    let data = s.data_dir();
    s.stop().await;
    let dir = data.to_str().unwrap();
    let out = data.with_file_name("all.ecs");
    let (code, _, err) = rampart_run(
        &[
            "audit",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let docs: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n: usize = err.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(docs.len(), n, "{err}");
    let creates: Vec<&Value> = docs
        .iter()
        .filter(|d| d["event"]["action"] == "data.create")
        .collect();
    assert_eq!(creates.len(), 3);
    assert_eq!(creates[0]["rampart"]["object"], "notes");
    assert!(docs.iter().any(|d| d["event"]["action"] == "audit.started"));
    // Never overwrites a file.
    let (code, _, err) = rampart_run(
        &[
            "audit",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("must not exist"), "{err}");
    // Syslog lines, and a time range that holds nothing.
    let (code, lines, _) = rampart_run(
        &["audit", "export", "--format", "syslog", "--data-dir", dir],
        None,
    );
    assert_eq!(code, Some(0));
    assert_eq!(lines.lines().count(), n);
    assert!(lines
        .lines()
        .all(|l| l.starts_with('<') && l.contains(" rampart - ")));
    let (code, none, err) = rampart_run(
        &[
            "audit",
            "export",
            "--until",
            "2000-01-01T00:00:00Z",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(none.is_empty() && err.starts_with("0 events"), "{err}");
    let (code, _, err) = rampart_run(
        &["audit", "export", "--since", "yesterday", "--data-dir", dir],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("RFC 3339"), "{err}");
}

#[tokio::test]
async fn with_data_reads_off_reads_are_not_recorded_but_writes_are() {
    for (reads, expect) in [("true", 1), ("false", 0)] {
        let s = TestServer::with(Options::default().env("RAMPART_AUDIT__DATA_READS", reads)).await;
        let admin = s.admin().await;
        let r = s
            .post_auth(
                "/api/v1/admin/collections",
                &admin,
                json!({"name": "notes", "fields": {"text": {"type": "text"}}}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let r = s
            .post_auth(
                "/api/v1/collections/notes/records",
                &admin,
                json!({"text": "a"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = s
            .get_auth(&format!("/api/v1/collections/notes/records/{id}"), &admin)
            .await;
        assert_eq!(r.status(), 200);
        let r = s
            .get_auth(
                &format!("/api/v1/collections/notes/records/rec_{}", "0".repeat(32)),
                &admin,
            )
            .await;
        assert_eq!(r.status(), 404);
        s.running().audit.flush().await;
        let count = |action: &str| {
            let q = EventQuery {
                actions: vec![action.into()],
                limit: 100,
                ..Default::default()
            };
            let auth = s.running().auth.clone();
            async move { auth.events(&q).await.unwrap() }
        };
        assert_eq!(count("data.create").await.len(), 1, "data_reads = {reads}");
        let readings = count("data.read").await;
        let allowed = readings.iter().filter(|e| e.outcome == "success").count();
        assert_eq!(allowed, expect, "data_reads = {reads}");
        assert_eq!(
            readings
                .iter()
                .filter(|e| e.reason.as_deref() == Some("not_found"))
                .count(),
            1,
            "a refused read is always recorded"
        );
    }
}

async fn scrape(s: &TestServer) -> String {
    let addr = s.running().metrics_addr.expect("metrics on");
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample line (`name{labels} value`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_what_happened() {
    let s = TestServer::with(Options::default().env("RAMPART_AUDIT__VERIFY_EVERY_SECS", "1")).await;
    s.register("m@example.com").await;
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "m@example.com", "password": "Wrong-Password-123!"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    s.login("m@example.com", STRONG).await;
    s.running().audit.flush().await;
    // Wait for a verification pass that saw these events.
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&s).await;
        if sample(&text, "rampart_audit_verify_ok") == Some(1.0)
            && sample(&text, "rampart_audit_verified_events").unwrap_or(0.0) >= 4.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&text, "rampart_audit_verify_ok"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rampart_logins_total{outcome=\"failure\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rampart_logins_total{outcome=\"success\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "rampart_http_requests_total{group=\"auth\",status=\"401\"}"
        ) >= Some(1.0)
    );
    assert!(sample(&text, "rampart_audit_events_written_total") >= Some(4.0));
    assert!(sample(&text, "rampart_audit_checkpoint_age_seconds").is_some());
    assert!(
        text.contains("rampart_http_request_duration_seconds_bucket{group=\"auth\",le=\"+Inf\"}")
    );
    assert!(!text.contains(STRONG) && !text.contains("Wrong-Password"));

    // Debian's promtool, the Prometheus project's own checker.
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(promtool) = promtool else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("promtool is required under CI=true (apt-get install prometheus)");
        }
        eprintln!("\n!!! SKIPPING promtool: not installed !!!\n");
        return;
    };
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_server_finds_a_change_made_while_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    s.register("t@example.com").await;
    let node = s.running().audit.node().to_owned();
    s.stop().await;
    let store = trail_store(&s.data_dir()).await;
    let n = sqlx::query(
        "UPDATE audit_events SET user_id = 'someone_else' WHERE node = $1 AND action = 'registration'",
    )
    .bind(&node)
    .execute(store.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1);
    store.close().await;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&s).await;
        if sample(&text, "rampart_audit_verify_ok").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&text, "rampart_audit_verify_ok"),
        Some(0.0),
        "{text}"
    );
    s.running().audit.flush().await;
    let found = s
        .running()
        .auth
        .events(&EventQuery {
            actions: vec!["audit.verified".into()],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let failed = found
        .iter()
        .find(|e| e.outcome == "failure")
        .expect("a failed verification is an event");
    assert_eq!(failed.severity, 5, "critical");
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .contains("link does not match"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_proof_checks_offline_with_only_the_public_key() {
    let mut s = TestServer::start().await;
    s.register("p@example.com").await;
    s.register("q@example.com").await;
    let node = s.running().audit.node().to_owned();
    let data = s.data_dir();
    s.stop().await;
    let dir = data.to_str().unwrap();
    let (code, proof, err) = rampart_run(&["audit", "proof", "1", "--data-dir", dir], None);
    assert_eq!(code, Some(0), "{err}");
    let p: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(p["node"], node.as_str());
    assert_eq!(p["seq"], 1);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("proof.json");
    std::fs::write(&file, &proof).unwrap();
    let key = data.join("audit.pub");
    let check = |file: &std::path::Path, key: &str| {
        rampart_run(
            &["audit", "check-proof", file.to_str().unwrap(), "--key", key],
            None,
        )
    };
    let (code, out, err) = check(&file, key.to_str().unwrap());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with(&format!("OK: event 1 of chain {node} (")),
        "{out}"
    );

    // Another event's bytes, a changed hash, another key: not proven.
    let mut forged = p.clone();
    let (_, other, _) = rampart_run(&["audit", "proof", "2", "--data-dir", dir], None);
    let other: Value = serde_json::from_str(&other).unwrap();
    forged["event"] = other["event"].clone();
    std::fs::write(&file, forged.to_string()).unwrap();
    let (code, out, _) = check(&file, key.to_str().unwrap());
    assert_eq!(code, Some(3), "{out}");
    let mut forged = p.clone();
    if let Some(h) = forged["hashes"].as_array_mut().and_then(|h| h.first_mut()) {
        *h = Value::String(base64_of(&[7u8; 32]));
    }
    std::fs::write(&file, forged.to_string()).unwrap();
    let (code, out, _) = check(&file, key.to_str().unwrap());
    assert_eq!(code, Some(3), "{out}");
    assert!(out.starts_with("NOT proven"), "{out}");
    std::fs::write(&file, &proof).unwrap();
    let other_key = "rampart-audit+01234567+AWRmaWxsZXJmaWxsZXJmaWxsZXJmaWxsZXJmaWxsZXI=";
    let (code, out, _) = check(&file, other_key);
    assert_eq!(code, Some(3), "{out}");
    // An event not yet covered, or not there.
    let (code, _, err) = rampart_run(&["audit", "proof", "99999", "--data-dir", dir], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("no event 99999"), "{err}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
