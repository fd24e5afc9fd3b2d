//! The forensic bundle (ADR 0014): a directory an investigator can check
//! offline with the audit public key alone.
//!
//! | file | holds |
//! | --- | --- |
//! | `events.ndjson` | the period's trail events, ECS JSON, oldest first |
//! | `proofs.ndjson` | per event, its inclusion proof against the newest signed checkpoint of its chain (`rampart audit check-proof` format); events newer than their chain's last checkpoint have none, and the manifest counts them |
//! | `alerts.json` | alerts active in the period |
//! | `blocks.json` | address blocks in force at export |
//! | `incidents.json` | incidents in force in the period, with their signed records |
//! | `settings.txt` | the settings in force, every secret redacted |
//! | `keys.json` | data key ids, scopes and ages: never a key |
//! | `audit.pub` | the public key, for convenience (check with a copy kept elsewhere) |
//! | `MANIFEST` | a C2SP signed note (audit key) of the JSON manifest: every other file's SHA-256 |
//!
//! Verification refuses a bundle with a file added, missing or changed, a
//! manifest not signed by the key given, or any proof or record that does
//! not check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rampart_core::alerts::AlertQuery;
use rampart_core::audit::{format, proof, Chained, EventQuery};
use rampart_core::Timestamp;
use rampart_scan::Progress;
use serde::{Deserialize, Serialize};

use crate::{Services, Settings};

/// The manifest's `format`.
pub const FORMAT: &str = "rampart-incident-bundle/1";
const MANIFEST: &str = "MANIFEST";
/// Most events one bundle holds; a longer period is exported in parts.
pub const MAX_EVENTS: usize = 1_000_000;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub since: String,
    pub until: String,
    pub created_at: String,
    pub events: u64,
    /// Events with an inclusion proof.
    pub proven: u64,
    /// SHA-256 (hex) of every other file, by name.
    pub files: BTreeMap<String, String>,
}

/// What a bundle export wrote.
#[derive(Debug)]
pub struct Exported {
    pub dir: PathBuf,
    pub events: u64,
    pub proven: u64,
    pub alerts: u64,
}

fn stamp(t: Timestamp) -> String {
    t.to_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Writes the bundle of `[since, until)` into a new directory under `out`.
pub async fn export(
    settings: &Settings,
    svc: &Services,
    since: Timestamp,
    until: Timestamp,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Exported> {
    if until <= since {
        bail!("--until must be later than --since");
    }
    let store = svc.store.clone();
    let now = svc.auth.clock().now();
    let dir = out.join(format!(
        "rampart-incident-{}-{}",
        stamp(since),
        stamp(until)
    ));
    if dir.exists() {
        bail!("{} exists already; choose another --out", dir.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    crate::datadir::create_private_dir(&dir)?;
    // This process's own events are checkpointed, so they can be proven.
    svc.audit.flush().await;

    let mut events: Vec<Chained> = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .search_events(&EventQuery {
                since: Some(since),
                until: Some(until),
                limit: 500,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.at, last.node.clone(), last.seq));
        events.extend(page);
        progress.step("events read", events.len() as u64, 0);
        if events.len() > MAX_EVENTS {
            bail!(
                "more than {MAX_EVENTS} events in the period: export it in shorter parts (--since/--until)"
            );
        }
    }
    events.sort_by(|a, b| (a.at, &a.node, a.seq).cmp(&(b.at, &b.node, b.seq)));
    let total = events.len() as u64;
    let mut lines = String::new();
    let mut proofs = String::new();
    let mut proven = 0u64;
    for (i, e) in events.iter().enumerate() {
        lines.push_str(&format::ecs_line(e));
        lines.push('\n');
        // A trail damaged in the database still gets its bundle (that is
        // when one is needed most): what cannot be proven goes without a
        // proof, and the check says where.
        match proof::prove(store.as_ref(), &e.node, e.seq).await {
            Ok(Some(p)) => {
                proofs.push_str(&serde_json::to_string(&p)?);
                proofs.push('\n');
                proven += 1;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, node = %e.node, seq = e.seq, "event without a proof");
            }
        }
        progress.step("events proven", i as u64 + 1, total);
    }

    let mut alerts = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .alerts(&AlertQuery {
                since: Some(since),
                limit: 500,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.last_at, last.id.clone()));
        alerts.extend(page.into_iter().filter(|a| a.first_at < until));
        if alerts.len() > 100_000 {
            break;
        }
    }
    let blocks: Vec<serde_json::Value> = store
        .active_blocks(now, 10_000)
        .await?
        .into_iter()
        .map(|b| {
            serde_json::json!({
                "id": b.id, "network": b.network, "reason": b.reason, "source": b.source,
                "created_at": b.created_at.to_rfc3339(), "expires_at": b.expires_at.to_rfc3339(),
                "offence": b.offence,
            })
        })
        .collect();
    let incidents: Vec<serde_json::Value> = store
        .incidents_between(since, until)
        .await?
        .into_iter()
        .map(|i| {
            serde_json::json!({
                "id": i.id, "scope": i.scope.as_str(), "reason": i.reason,
                "started_at": i.started_at.to_rfc3339(), "started_by": i.started_by,
                "accounts": i.accounts.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "break_glass": i.break_glass.map(|a| a.0),
                "lifted_at": i.lifted_at.map(|t| t.to_rfc3339()), "lifted_by": i.lifted_by,
                "record": i.record, "lift_record": i.lift_record,
            })
        })
        .collect();
    let keys = rampart_http::data::status(&svc.data)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.problem.detail))?;

    let files: Vec<(&str, Vec<u8>)> = vec![
        ("events.ndjson", lines.into_bytes()),
        ("proofs.ndjson", proofs.into_bytes()),
        ("alerts.json", serde_json::to_vec_pretty(&alerts)?),
        ("blocks.json", serde_json::to_vec_pretty(&blocks)?),
        ("incidents.json", serde_json::to_vec_pretty(&incidents)?),
        ("settings.txt", redacted_settings(settings).into_bytes()),
        ("keys.json", serde_json::to_vec_pretty(&keys)?),
        (
            "audit.pub",
            format!("{}\n", svc.audit_keys.verifier_key()).into_bytes(),
        ),
    ];
    let mut manifest = Manifest {
        format: FORMAT.to_owned(),
        since: since.to_rfc3339(),
        until: until.to_rfc3339(),
        created_at: now.to_rfc3339(),
        events: total,
        proven,
        files: BTreeMap::new(),
    };
    for (name, bytes) in &files {
        crate::datadir::write_private(&dir.join(name), bytes)?;
        manifest
            .files
            .insert((*name).to_owned(), rampart_crypto::sha256_hex(bytes));
    }
    let signed = svc
        .audit_keys
        .sign_note(&format!("{}\n", serde_json::to_string(&manifest)?))
        .map_err(|e| anyhow::anyhow!("cannot sign the manifest: {e}"))?;
    crate::datadir::write_private(&dir.join(MANIFEST), signed.as_bytes())?;
    Ok(Exported {
        dir,
        events: total,
        proven,
        alerts: alerts.len() as u64,
    })
}

/// The settings in force for an investigator: [`crate::config::effective`]
/// (secrets redacted by their type, URLs cut to scheme, host and port).
pub fn redacted_settings(settings: &Settings) -> String {
    crate::config::effective(settings) + "\n"
}

#[cfg(test)]
mod tests {
    use super::redacted_settings;
    use rampart_crypto::SecretString;

    #[test]
    fn the_settings_in_a_bundle_hold_no_secret() {
        let mut settings = crate::Settings {
            database_url: Some(SecretString::new(
                "postgres://rampart:db-canary-pw@db.internal/rampart".into(),
            )),
            ..Default::default()
        };
        settings.detect.webhook_url =
            Some("https://hooks.example.com/services/T0/B1/hook-canary-token".into());
        settings.backup.s3 = Some(crate::config::S3Settings {
            endpoint: "https://s3.example.com".into(),
            bucket: "b".into(),
            region: "r".into(),
            prefix: String::new(),
            access_key_id: SecretString::new("AKIAKEYIDCANARY".into()),
            secret_access_key: Some(SecretString::new("s3-secret-canary".into())),
            secret_access_key_file: None,
            lock_days: 1,
            path_style: true,
        });
        let text = redacted_settings(&settings);
        for canary in [
            "db-canary-pw",
            "hook-canary-token",
            "AKIAKEYIDCANARY",
            "s3-secret-canary",
        ] {
            assert!(!text.contains(canary), "{canary} in:\n{text}");
        }
        assert!(
            text.contains("https://hooks.example.com/(redacted)"),
            "{text}"
        );
    }
}

/// What a good bundle holds.
#[derive(Debug)]
pub struct Checked {
    pub manifest: Manifest,
    /// The newest events of their chains, after its last checkpoint: their
    /// integrity rests on the manifest's signature alone.
    pub unproven: u64,
    pub records: u64,
}

/// Checks a bundle with the audit public key (`origin+id+base64`).
pub fn verify(dir: &Path, public_key: &str, progress: &dyn Progress) -> Result<Checked> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("cannot read {name}"));
    let note = String::from_utf8(read(MANIFEST)?).context("MANIFEST is not text")?;
    let text = rampart_crypto::audit::verify_note(&note, public_key).map_err(|e| {
        anyhow::anyhow!("MANIFEST is not signed by this audit key ({e}): the bundle was changed or made by another deployment")
    })?;
    let manifest: Manifest =
        serde_json::from_str(text.trim_end()).context("MANIFEST does not hold a manifest")?;
    if manifest.format != FORMAT {
        bail!("the bundle's format is {}, not {FORMAT}", manifest.format);
    }
    let mut present = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST {
            present.push(name);
        }
    }
    for name in &present {
        if !manifest.files.contains_key(name) {
            bail!("{name} is not in the manifest: something was added to the bundle");
        }
    }
    for (name, want) in &manifest.files {
        let bytes = read(name).with_context(|| format!("{name} is missing from the bundle"))?;
        if &rampart_crypto::sha256_hex(&bytes) != want {
            bail!("{name} was changed: its SHA-256 is not the manifest's");
        }
    }
    // The events, by chain and sequence number.
    let events = String::from_utf8(read("events.ndjson")?).context("events.ndjson is not text")?;
    let mut by_chain: BTreeMap<String, BTreeMap<u64, &str>> = BTreeMap::new();
    for (n, line) in events.lines().filter(|l| !l.is_empty()).enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("event {} is not JSON", n + 1))?;
        let (Some(node), Some(seq)) = (v["rampart"]["node"].as_str(), v["rampart"]["seq"].as_u64())
        else {
            bail!("event {} names no chain and sequence number", n + 1);
        };
        if by_chain
            .entry(node.to_owned())
            .or_default()
            .insert(seq, line)
            .is_some()
        {
            bail!("event {seq} of chain {node} is in the bundle twice");
        }
    }
    let total: usize = by_chain.values().map(BTreeMap::len).sum();
    if total as u64 != manifest.events {
        bail!(
            "events.ndjson holds {total} events, the manifest says {}",
            manifest.events
        );
    }
    // No event of a chain is missing between its first and last.
    for (node, seqs) in &by_chain {
        if let (Some(first), Some(last)) = (seqs.keys().next(), seqs.keys().next_back()) {
            if (last - first + 1) as usize != seqs.len() {
                bail!(
                    "chain {node} has a gap between events {first} and {last}: events were removed before the export"
                );
            }
        }
    }
    let proofs = String::from_utf8(read("proofs.ndjson")?).context("proofs.ndjson is not text")?;
    let lines: Vec<&str> = proofs.lines().filter(|l| !l.is_empty()).collect();
    if lines.len() as u64 != manifest.proven {
        bail!(
            "proofs.ndjson holds {} proofs, the manifest says {}",
            lines.len(),
            manifest.proven
        );
    }
    let mut proven: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let p: proof::Proof = serde_json::from_str(line)
            .with_context(|| format!("proof {} is not a proof", i + 1))?;
        let checked = proof::check(&p, public_key).map_err(|e| {
            anyhow::anyhow!(
                "proof {} (event {} of chain {}) does not check: {e}",
                i + 1,
                p.seq,
                p.node
            )
        })?;
        // The event as listed is the event the proof proves (all but its
        // chain link, which the proof does not cover).
        let without_link = |line: &str| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if let Some(r) = v.get_mut("rampart").and_then(|r| r.as_object_mut()) {
                r.remove("link");
            }
            v
        };
        let listed = by_chain.get(&p.node).and_then(|c| c.get(&p.seq));
        if listed.map(|l| without_link(l)) != Some(without_link(&format::ecs_line(&checked.event)))
        {
            bail!(
                "event {} of chain {} in events.ndjson is not the event its proof proves",
                p.seq,
                p.node
            );
        }
        proven.entry(p.node.clone()).or_default().insert(p.seq);
        progress.step("proofs checked", i as u64 + 1, lines.len() as u64);
    }
    // Only the newest events of a chain may lack a proof (they came after
    // its last checkpoint): a proof stripped from an older one is found.
    let mut unproven = 0u64;
    for (node, seqs) in &by_chain {
        let empty = std::collections::BTreeSet::new();
        let have = proven.get(node).unwrap_or(&empty);
        let newest_proven = have.last().copied();
        for seq in seqs.keys() {
            if !have.contains(seq) {
                unproven += 1;
                if newest_proven.is_some_and(|n| *seq < n) {
                    bail!("event {seq} of chain {node} has no proof, though a later one has");
                }
            }
        }
    }
    let incidents: Vec<serde_json::Value> =
        serde_json::from_slice(&read("incidents.json")?).context("incidents.json is not JSON")?;
    let mut records = 0;
    for i in &incidents {
        let id = i["id"].as_str().unwrap_or_default();
        // Each signed record must be this incident's, as listed.
        let record = rampart_core::incident::check_record(
            i["record"].as_str().unwrap_or_default(),
            public_key,
        )
        .map_err(|e| anyhow::anyhow!("the record of incident {id} does not check: {e}"))?;
        let started =
            rampart_core::Timestamp::parse_rfc3339(i["started_at"].as_str().unwrap_or(""));
        if record["incident"] != i["id"]
            || record["scope"] != i["scope"]
            || record["reason"] != i["reason"]
            || record["started_by"] != i["started_by"]
            || record["started_at"].as_i64() != started.map(rampart_core::Timestamp::millis)
        {
            bail!("incident {id} as listed is not what its signed record says");
        }
        records += 1;
        if let Some(note) = i.get("lift_record").and_then(|v| v.as_str()) {
            let lift = rampart_core::incident::check_record(note, public_key).map_err(|e| {
                anyhow::anyhow!("the lift record of incident {id} does not check: {e}")
            })?;
            if lift["incident"] != i["id"] || lift["lifted_by"] != i["lifted_by"] {
                bail!("incident {id}'s lift as listed is not what its signed record says");
            }
            records += 1;
        }
    }
    Ok(Checked {
        manifest,
        unproven,
        records,
    })
}
