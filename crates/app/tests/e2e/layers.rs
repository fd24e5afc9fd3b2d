//! The crate layering of STYLE.md, checked on the real dependency graph so
//! a layer that leaks (the domain growing a SQL dependency, say) fails the
//! build's tests.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// crate → crates it may not depend on, directly or transitively.
const RULES: &[(&str, &[&str])] = &[
    (
        "rampart-proto",
        &["sqlx", "axum", "hyper", "tokio", "rampart-store"],
    ),
    ("rampart-crypto", &["sqlx", "axum", "hyper"]),
    (
        "rampart-core",
        &["sqlx", "axum", "hyper", "rampart-store", "rampart-http"],
    ),
    ("rampart-store", &["axum", "hyper", "rampart-http"]),
    ("rampart-http", &["sqlx", "rampart-store"]),
    (
        "rampart-notify",
        &["sqlx", "axum", "rampart-store", "rampart-http"],
    ),
    (
        "rampart-scan",
        &[
            "sqlx",
            "axum",
            "rampart-core",
            "rampart-store",
            "rampart-http",
        ],
    ),
    (
        "rampart-detect",
        &[
            "tokio",
            "sqlx",
            "axum",
            "hyper",
            "rampart-core",
            "rampart-store",
            "rampart-http",
        ],
    ),
    (
        "rampart-guard",
        &[
            "tokio",
            "sqlx",
            "axum",
            "hyper",
            "rampart-core",
            "rampart-store",
            "rampart-http",
        ],
    ),
    (
        "rampart-drill",
        &[
            "tokio",
            "sqlx",
            "axum",
            "hyper",
            "reqwest",
            "rampart-core",
            "rampart-store",
            "rampart-http",
        ],
    ),
    (
        "rampart-backup",
        &[
            "tokio",
            "sqlx",
            "axum",
            "hyper",
            "rampart-core",
            "rampart-store",
            "rampart-http",
        ],
    ),
];

#[test]
fn layers_do_not_leak() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Normal (non-dev) dependency edges only.
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap().to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        edges.insert(id, deps);
    }
    for (krate, banned) in RULES {
        let start = name_of
            .iter()
            .find(|(_, n)| n == krate)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{krate} not in the workspace"));
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(id) = stack.pop() {
            if seen.insert(id.clone()) {
                stack.extend(edges.get(&id).cloned().unwrap_or_default());
            }
        }
        let names: BTreeSet<&str> = seen.iter().map(|id| name_of[id].as_str()).collect();
        for b in *banned {
            assert!(
                !names.contains(b),
                "{krate} depends on {b}, which its layer forbids"
            );
        }
    }
}

/// Every `.rs` file of the workspace's crates (tests included): its path
/// from the workspace root and its text.
fn sources() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

/// The trail is written in one place and only appended to: no code but
/// the store's `audit.rs` writes its tables, nothing anywhere updates an
/// event, and the only deletions of events are the ones its tests make to
/// prove tampering is caught.
#[test]
fn only_the_audit_store_writes_the_trail_and_nothing_updates_an_event() {
    let tables = [
        "audit_events",
        "audit_checkpoints",
        "audit_pending",
        "audit_retired",
        "security_events",
        "data_events",
    ];
    let tampering_tests = [
        "crates/store/tests/audit.rs",
        "crates/app/tests/e2e/audit.rs",
        "crates/app/tests/e2e/postgres.rs",
        // A forensic bundle exported after events were deleted.
        "crates/app/tests/e2e/incident.rs",
        // The benchmark that fills a trail directly to time the search.
        "crates/store/examples/audit_bench.rs",
        // This file, which names what it looks for.
        "crates/app/tests/e2e/layers.rs",
    ];
    let mut checked = 0;
    for (path, text) in sources() {
        let upper = text.to_uppercase();
        for t in tables {
            let t = t.to_uppercase();
            for verb in [
                format!("INSERT INTO {t}"),
                format!("UPDATE {t}"),
                format!("DELETE FROM {t}"),
            ] {
                let found = upper.matches(&verb).count();
                checked += 1;
                if found == 0 || tampering_tests.contains(&path.as_str()) {
                    continue;
                }
                let allowed = path == "crates/store/src/audit.rs"
                    && (verb.starts_with("INSERT")
                        || verb == "DELETE FROM AUDIT_PENDING"
                        // Retention's one range, with its signed record.
                        || (verb == "DELETE FROM AUDIT_EVENTS" && found == 1));
                assert!(
                    allowed,
                    "{path} has `{verb}`: only the audit writer appends to the trail"
                );
            }
        }
    }
    assert!(checked > 0);
    // And the store's audit module never changes an event it wrote.
    let audit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/src/audit.rs"),
    )
    .unwrap()
    .to_uppercase();
    assert!(!audit.contains("UPDATE AUDIT_EVENTS"));
    // The one deletion is retention's, in the function that stores its
    // signed record in the same transaction.
    let delete = audit.find("DELETE FROM AUDIT_EVENTS").unwrap();
    let retire = audit.find("ASYNC FN RETIRE_EVENTS").unwrap();
    assert!(retire < delete && !audit[retire + 1..delete].contains("ASYNC FN "));
    assert!(audit[retire..delete].contains("INSERT INTO AUDIT_RETIRED"));
    assert!(
        !audit.contains("UPDATE AUDIT_CHECKPOINTS")
            && !audit.contains("DELETE FROM AUDIT_CHECKPOINTS")
    );
}

/// Appending to the trail goes through the writer: the store's append
/// methods are called from nowhere else.
#[test]
fn only_the_writer_appends() {
    for (path, text) in sources() {
        if path.starts_with("crates/store/")
            || path == "crates/core/src/audit/writer.rs"
            || path == "crates/core/src/audit/mod.rs"
            || path == "crates/app/tests/e2e/layers.rs"
        {
            continue;
        }
        for call in [".append_audit(", ".insert_checkpoint(", ".import_legacy("] {
            assert!(
                !text.contains(call),
                "{path} calls `{call}`: events go through `Audit`, the one writer"
            );
        }
    }
}
