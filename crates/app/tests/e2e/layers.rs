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
