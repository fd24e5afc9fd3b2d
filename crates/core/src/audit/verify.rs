//! Offline verification of every chain: sequence, links, tree hashes,
//! checkpoint signatures and roots, and the witness.

use std::collections::HashMap;

use rampart_crypto::audit::{leaf_hash, verify_checkpoint, AuditKeys, Frontier, Hash};

use super::{origin, AuditStore, WitnessEntry};
use crate::{Error, StoreError, Timestamp};

/// Events read at a time.
const PAGE: u32 = 5_000;

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub node: String,
    /// The sequence number where the chain stops being trustworthy.
    pub seq: u64,
    /// The time of the event at `seq`, when it is there.
    pub at: Option<Timestamp>,
    pub what: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chain {}, event {}", self.node, self.seq)?;
        if let Some(at) = self.at {
            write!(f, " ({})", at.to_rfc3339())?;
        }
        write!(f, ": {}", self.what)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeReport {
    pub node: String,
    pub events: u64,
    pub checkpoints: u64,
    /// Witness entries compared.
    pub witnessed: u64,
    /// Size of the newest checkpoint.
    pub covered: u64,
    pub newest_checkpoint_at: Option<Timestamp>,
    /// What retention removed (the newest record), verified.
    pub retired: Option<super::retention::Retired>,
    pub first_break: Option<Break>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub nodes: Vec<NodeReport>,
    /// Witness lines that could not be read.
    pub witness_unreadable: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.nodes.iter().all(|n| n.first_break.is_none()) && self.witness_unreadable == 0
    }

    pub fn breaks(&self) -> impl Iterator<Item = &Break> {
        self.nodes.iter().filter_map(|n| n.first_break.as_ref())
    }
}

fn backend(e: StoreError) -> Error {
    Error::Internal(format!("audit trail: {e}"))
}

/// How far a chain has been verified: enough to go on from there.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    frontier: Frontier,
    link: rampart_crypto::audit::Link,
    /// Events verified (the next sequence number to check).
    next: u64,
}

/// Verification that goes on from where it stopped: what the server runs
/// in the background, so each pass reads only the events since the last.
#[derive(Debug, Default)]
pub struct Incremental {
    states: HashMap<String, NodeState>,
}

impl Incremental {
    /// Checks what was added since the last pass (every chain, every
    /// checkpoint from the last verified size on, and the witness's). A
    /// chain found broken is checked from its start again next time.
    pub async fn pass(
        &mut self,
        store: &dyn AuditStore,
        keys: &AuditKeys,
        witness: Option<(&[WitnessEntry], usize)>,
        expect: &Expect,
    ) -> Result<Report, Error> {
        let vkey = keys.verifier_key();
        let mut report = Report {
            witness_unreadable: witness.map(|(_, bad)| bad).unwrap_or(0),
            ..Report::default()
        };
        let mut done = 0;
        for node in nodes_to_check(store, witness, expect).await? {
            let entries: Vec<&WitnessEntry> = witness
                .map(|(w, _)| w.iter().filter(|e| e.node == node).collect())
                .unwrap_or_default();
            let mut state = self.states.remove(&node).unwrap_or_default();
            let r = verify_node(
                store,
                keys,
                &vkey,
                &node,
                &entries,
                expect,
                &mut state,
                &mut done,
                &|_| {},
            )
            .await?;
            if r.first_break.is_none() {
                self.states.insert(node.clone(), state);
            }
            report.nodes.push(r);
        }
        Ok(report)
    }
}

/// What a verification expects beyond what the database shows.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Chains that must be there (this node's): a chain deleted whole, with
    /// its checkpoints, is a break, not "no events".
    pub chains: Vec<String>,
    /// Now: events older than [`UNCOVERED_GRACE`] that no checkpoint covers
    /// are a break (checkpoints deleted to hide a truncation). `None` skips
    /// the check.
    pub now: Option<Timestamp>,
}

/// How long an event may wait for a checkpoint: twice the heartbeat.
pub const UNCOVERED_GRACE: i64 = 600_000;

/// Every chain the database, the witness and the expectation know of.
async fn nodes_to_check(
    store: &dyn AuditStore,
    witness: Option<(&[WitnessEntry], usize)>,
    expect: &Expect,
) -> Result<Vec<String>, Error> {
    let mut nodes = store.audit_nodes().await.map_err(backend)?;
    let more = witness
        .map(|(w, _)| w.iter().map(|e| e.node.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    for n in more.into_iter().chain(expect.chains.iter().cloned()) {
        if !nodes.contains(&n) {
            nodes.push(n);
        }
    }
    nodes.sort();
    Ok(nodes)
}

/// A root some signed checkpoint claims for a size.
struct Claim {
    root: Hash,
    at: Option<i64>,
    source: &'static str,
}

/// Checks every chain in the store (and, with `witness`, against every
/// checkpoint the witness holds). `progress(events so far)` after each page.
pub async fn verify(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    witness: Option<(&[WitnessEntry], usize)>,
    expect: &Expect,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Report, Error> {
    let vkey = keys.verifier_key();
    let nodes = nodes_to_check(store, witness, expect).await?;
    let mut report = Report {
        witness_unreadable: witness.map(|(_, bad)| bad).unwrap_or(0),
        ..Report::default()
    };
    let mut done = 0u64;
    for node in nodes {
        let entries: Vec<&WitnessEntry> = witness
            .map(|(w, _)| w.iter().filter(|e| e.node == node).collect())
            .unwrap_or_default();
        let mut state = NodeState::default();
        let r = verify_node(
            store, keys, &vkey, &node, &entries, expect, &mut state, &mut done, progress,
        )
        .await?;
        report.nodes.push(r);
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn verify_node(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    vkey: &str,
    node: &str,
    witness: &[&WitnessEntry],
    expect: &Expect,
    state: &mut NodeState,
    done: &mut u64,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<NodeReport, Error> {
    // A chain whose oldest events retention removed starts from the
    // signed record of them.
    let mut retired = None;
    if state.next == 0 {
        if let Some((r, note)) = super::retention::latest(store, node).await? {
            match rampart_crypto::audit::verify_note(&note, vkey) {
                Ok(text) if super::retention::Retired::parse(&text).as_ref() == Some(&r) => {
                    let size = r.last_seq + 1;
                    let frontier = Frontier::from_stored(size, &r.frontier)
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    *state = NodeState {
                        frontier,
                        link: r.link,
                        next: size,
                    };
                    retired = Some(r);
                }
                _ => {
                    return Ok(NodeReport {
                        node: node.to_owned(),
                        first_break: Some(Break {
                            node: node.to_owned(),
                            seq: r.last_seq,
                            at: None,
                            what: "the retention record does not verify with this key: it was forged or altered".into(),
                        }),
                        ..NodeReport::default()
                    })
                }
            }
        }
    }
    // Checkpoints of sizes already verified were compared then.
    let witness: Vec<&WitnessEntry> = witness
        .iter()
        .copied()
        .filter(|w| w.size >= state.next)
        .collect();
    let mut r = NodeReport {
        node: node.to_owned(),
        witnessed: witness.len() as u64,
        retired,
        ..NodeReport::default()
    };
    let log = origin(node);
    let mut claims: HashMap<u64, Vec<Claim>> = HashMap::new();
    let mut brk: Option<Break> = None;
    let note_break = |brk: &mut Option<Break>, b: Break| {
        if brk.as_ref().is_none_or(|old| b.seq < old.seq) {
            *brk = Some(b);
        }
    };

    // Every checkpoint's signature first: a claim is only compared once it
    // is known to be ours.
    // Paged by (size, time): heartbeats repeat a size.
    let mut from = (state.next, i64::MIN);
    loop {
        let page = store
            .audit_checkpoints(node, from, PAGE)
            .await
            .map_err(backend)?;
        let last = page.len() < PAGE as usize;
        for c in page {
            from = (c.size, c.at.millis());
            r.checkpoints += 1;
            r.covered = r.covered.max(c.size);
            r.newest_checkpoint_at = r.newest_checkpoint_at.max(Some(c.at));
            match verify_checkpoint(&c.note, vkey) {
                Ok(v) if v.origin == log && v.size == c.size => {
                    claims.entry(c.size).or_default().push(Claim {
                        root: v.root,
                        at: v.time_ms,
                        source: "database",
                    })
                }
                Ok(_) => note_break(
                    &mut brk,
                    Break {
                        node: node.to_owned(),
                        seq: c.size.saturating_sub(1),
                        at: None,
                        what: format!(
                            "the stored checkpoint of size {} names another log or size",
                            c.size
                        ),
                    },
                ),
                Err(e) => note_break(
                    &mut brk,
                    Break {
                        node: node.to_owned(),
                        seq: c.size.saturating_sub(1),
                        at: None,
                        what: format!("the stored checkpoint of size {} is not valid: {e}", c.size),
                    },
                ),
            }
        }
        if last {
            break;
        }
    }
    for w in &witness {
        match verify_checkpoint(&w.note, vkey) {
            Ok(v) if v.origin == log && v.size == w.size => {
                r.covered = r.covered.max(w.size);
                claims.entry(w.size).or_default().push(Claim {
                    root: v.root,
                    at: v.time_ms,
                    source: "witness",
                })
            }
            Ok(_) | Err(_) => note_break(
                &mut brk,
                Break {
                    node: node.to_owned(),
                    seq: w.size.saturating_sub(1),
                    at: None,
                    what: format!(
                        "the witness's checkpoint of size {} does not verify with this key",
                        w.size
                    ),
                },
            ),
        }
    }

    // Then every event, in order, from where the last pass stopped.
    let mut frontier = std::mem::take(&mut state.frontier);
    let mut link = state.link;
    let mut expected = state.next;
    let mut stale = false;
    if let Some(cs) = claims.get(&expected).filter(|_| expected > 0) {
        // A checkpoint of the size already reached (a heartbeat).
        let root = frontier.root();
        if let Some(c) = cs.iter().find(|c| c.root != root) {
            note_break(
                &mut brk,
                Break {
                    node: node.to_owned(),
                    seq: expected - 1,
                    at: None,
                    what: format!(
                        "the {} checkpoint of size {expected} has another root than the events verified",
                        c.source
                    ),
                },
            );
            stale = true;
        }
    }
    'events: loop {
        if stale {
            break;
        }
        let page = store
            .audit_range(node, expected, PAGE)
            .await
            .map_err(backend)?;
        let last = page.len() < PAGE as usize;
        *done += page.len() as u64;
        for e in page {
            let here = expected;
            let wrong = |what: String| Break {
                node: node.to_owned(),
                seq: here,
                at: Some(e.at),
                what,
            };
            if e.seq != expected {
                note_break(
                    &mut brk,
                    Break {
                        node: node.to_owned(),
                        seq: expected,
                        at: None,
                        what: format!(
                            "event {expected} is missing (the next one stored is {}): events were deleted",
                            e.seq
                        ),
                    },
                );
                break 'events;
            }
            let bytes = e.canonical();
            if !keys.link_matches(&link, &bytes, &e.link) {
                note_break(
                    &mut brk,
                    wrong(
                        "its link does not match: the event was edited, inserted or moved, or the chain rebuilt without the key"
                            .into(),
                    ),
                );
                break 'events;
            }
            let tree = frontier.append(leaf_hash(&bytes));
            if tree != e.tree {
                note_break(
                    &mut brk,
                    wrong("its stored tree hashes were altered".into()),
                );
                break 'events;
            }
            if e.ip_key != super::ip_key_of(e.source_ip.as_deref()) {
                note_break(
                    &mut brk,
                    wrong(
                        "its address index was altered (it would hide the event from searches by network)"
                            .into(),
                    ),
                );
                break 'events;
            }
            link = e.link;
            expected += 1;
            if let Some(cs) = claims.get(&expected) {
                let root = frontier.root();
                if let Some(c) = cs.iter().find(|c| c.root != root) {
                    note_break(
                        &mut brk,
                        wrong(format!(
                            "the {} checkpoint of size {expected}{} has another root: the events up to here are not the ones it signed{}",
                            c.source,
                            c.at.map(|t| format!(" (signed {})", Timestamp(t).to_rfc3339()))
                                .unwrap_or_default(),
                            if c.source == "witness" {
                                " (the chain was rebuilt)"
                            } else {
                                ""
                            }
                        )),
                    );
                    break 'events;
                }
            }
        }
        progress(*done);
        if last {
            break;
        }
    }
    r.events = expected;
    state.frontier = frontier;
    state.link = link;
    state.next = expected;
    if brk.is_none()
        && expected == 0
        && r.retired.is_none()
        && expect.chains.iter().any(|c| c == node)
    {
        note_break(
            &mut brk,
            Break {
                node: node.to_owned(),
                seq: 0,
                at: None,
                what: "this node's chain has no events at all: it was deleted".into(),
            },
        );
    }
    if let (None, Some(now)) = (&brk, expect.now) {
        if expected > r.covered {
            let first = store
                .audit_range(node, r.covered, 1)
                .await
                .map_err(backend)?
                .into_iter()
                .next();
            if let Some(e) = first.filter(|e| now.millis() - e.at.millis() > UNCOVERED_GRACE) {
                note_break(
                    &mut brk,
                    Break {
                        node: node.to_owned(),
                        seq: e.seq,
                        at: Some(e.at),
                        what: format!(
                            "events from here on ({}) are in no checkpoint although older than ten minutes: checkpoints were deleted (hiding a truncation?), or the node stopped before signing one",
                            expected - r.covered
                        ),
                    },
                );
            }
        }
    }
    if brk.is_none() {
        if let Some((size, c)) = claims
            .iter()
            .filter(|(s, _)| **s > expected)
            .min_by_key(|(s, _)| **s)
            .and_then(|(s, cs)| cs.first().map(|c| (*s, c)))
        {
            note_break(
                &mut brk,
                Break {
                    node: node.to_owned(),
                    seq: expected,
                    at: None,
                    what: format!(
                        "the chain ends at {expected} events, but the {} checkpoint{} covers {size}: events were deleted from the end",
                        c.source,
                        c.at.map(|t| format!(" signed {}", Timestamp(t).to_rfc3339()))
                            .unwrap_or_default()
                    ),
                },
            );
        }
    }
    r.first_break = brk;
    Ok(r)
}
