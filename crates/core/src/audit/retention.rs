//! Retention (`[audit] retention_days`, default 400): the oldest events of
//! a chain are removed only as one whole range at a time, in the
//! transaction that stores a signed record of the range (first and last
//! sequence number, count, first and last time, the last link, and the
//! Merkle tree's right edge there). Verification then starts from that
//! record, so it still passes and shows what retention removed; proofs of
//! later events still work.

use std::collections::{BTreeSet, HashMap};

use base64::Engine;
use rampart_crypto::audit::{frontier_indexes, locate, AuditKeys, Frontier, Hash, Link};

use super::{AuditStore, Category, Event, Severity, SUCCESS};
use crate::{Error, StoreError, Timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const HEAD: &str = "rampart-audit-retired";

/// What one retention run removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Retired {
    pub node: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// The link of the last removed event: the next one links to it.
    pub link: Link,
    /// The tree's right edge at `last_seq + 1` events.
    pub frontier: Vec<(u64, Hash)>,
}

impl Retired {
    /// The text that is signed (a C2SP signed note's body).
    pub fn text(&self) -> String {
        let mut t = format!(
            "{HEAD}\n{}\n{} {}\ncount {}\nat {} {}\nlink {}\n",
            self.node,
            self.first_seq,
            self.last_seq,
            self.count,
            self.first_at.millis(),
            self.last_at.millis(),
            B64.encode(self.link)
        );
        for (i, h) in &self.frontier {
            t.push_str(&format!("hash {i} {}\n", B64.encode(h.0)));
        }
        t
    }

    pub fn parse(text: &str) -> Option<Retired> {
        let mut l = text.lines();
        if l.next()? != HEAD {
            return None;
        }
        let node = l.next()?.to_owned();
        let (first, last) = l.next()?.split_once(' ')?;
        let count = l.next()?.strip_prefix("count ")?.parse().ok()?;
        let (fa, la) = l.next()?.strip_prefix("at ")?.split_once(' ')?;
        let link: Link = B64
            .decode(l.next()?.strip_prefix("link ")?)
            .ok()?
            .try_into()
            .ok()?;
        let mut frontier = Vec::new();
        for line in l {
            let (i, h) = line.strip_prefix("hash ")?.split_once(' ')?;
            let h: [u8; 32] = B64.decode(h).ok()?.try_into().ok()?;
            frontier.push((i.parse().ok()?, Hash(h)));
        }
        Some(Retired {
            node,
            first_seq: first.parse().ok()?,
            last_seq: last.parse().ok()?,
            count,
            first_at: Timestamp(fa.parse().ok()?),
            last_at: Timestamp(la.parse().ok()?),
            link,
            frontier,
        })
    }
}

fn backend(e: StoreError) -> Error {
    Error::Internal(format!("audit trail: {e}"))
}

/// The latest retirement of `node`, read (not yet checked) from its note.
pub async fn latest(
    store: &dyn AuditStore,
    node: &str,
) -> Result<Option<(Retired, String)>, Error> {
    let Some(note) = store.latest_retirement(node).await.map_err(backend)? else {
        return Ok(None);
    };
    let text = note
        .split_once("\n\n")
        .map(|(t, _)| format!("{t}\n"))
        .unwrap_or_default();
    match Retired::parse(&text) {
        Some(r) if r.node == node => Ok(Some((r, note))),
        _ => Err(Error::Internal(format!(
            "the retention record of chain {node} cannot be read: run `rampart audit verify`"
        ))),
    }
}

/// Stored tree hashes by index: from the events that hold them, or, for
/// events retention removed, from its record.
pub async fn stored_hashes(
    store: &dyn AuditStore,
    node: &str,
    indexes: &[u64],
) -> Result<HashMap<u64, Hash>, Error> {
    let seqs: Vec<u64> = indexes
        .iter()
        .map(|i| locate(*i).0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let trees = store.audit_trees(node, &seqs).await.map_err(backend)?;
    let mut out = HashMap::new();
    for i in indexes {
        let (seq, pos) = locate(*i);
        if let Some(h) = trees
            .iter()
            .find(|(s, _)| *s == seq)
            .and_then(|(_, t)| t.get(pos))
        {
            out.insert(*i, *h);
        }
    }
    if out.len() < indexes.len() {
        if let Some((r, _)) = latest(store, node).await? {
            for (i, h) in r.frontier {
                if indexes.contains(&i) {
                    out.entry(i).or_insert(h);
                }
            }
        }
    }
    Ok(out)
}

/// Removes the events of `node` older than `cutoff` that a checkpoint
/// covers, as one range after the previous one, once they verify; records
/// an `audit.retired` event. `None` when there is nothing to remove.
pub async fn retire(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    audit: &super::Audit,
    node: &str,
    cutoff: Timestamp,
    now: Timestamp,
) -> Result<Option<Retired>, Error> {
    let start = latest(store, node)
        .await?
        .map(|(r, _)| r.last_seq + 1)
        .unwrap_or(0);
    let Some(covered) = store
        .latest_checkpoint(node)
        .await
        .map_err(backend)?
        .map(|c| c.size)
    else {
        return Ok(None);
    };
    // Everything before the first recent event goes, by sequence: an
    // event with an old time late in the chain cannot pull newer ones
    // along.
    let last = match store
        .audit_first_since(node, cutoff)
        .await
        .map_err(backend)?
    {
        Some(0) => return Ok(None),
        Some(first_recent) => first_recent - 1,
        None => match store.audit_head(node).await.map_err(backend)? {
            Some(h) => h.seq,
            None => return Ok(None),
        },
    };
    if last < start || last >= covered {
        return Ok(None);
    }
    // What is about to go must verify first: retention never removes the
    // evidence of a change.
    let report = super::verify(store, keys, None, &super::Expect::default(), &|_| {}).await?;
    if let Some(b) = report.breaks().find(|b| b.node == node) {
        let e = Event::new(
            now,
            super::writer::RETENTION_REFUSED,
            Category::Process,
            super::FAILURE,
        )
        .severity(Severity::Critical)
        .reason(Some(&format!("retention did not remove anything: {b}")));
        let _ = audit.record_durable(e).await;
        return Err(Error::Internal(format!(
            "retention refused: chain {node} does not verify ({b})"
        )));
    }
    let first = store
        .audit_range(node, start, 1)
        .await
        .map_err(backend)?
        .into_iter()
        .next();
    let last_event = store
        .audit_range(node, last, 1)
        .await
        .map_err(backend)?
        .into_iter()
        .next();
    let (Some(first), Some(last_event)) = (first, last_event) else {
        return Ok(None);
    };
    let size = last + 1;
    let indexes = frontier_indexes(size);
    let hashes = stored_hashes(store, node, &indexes).await?;
    let frontier: Vec<(u64, Hash)> = indexes
        .iter()
        .filter_map(|i| hashes.get(i).map(|h| (*i, *h)))
        .collect();
    // The right edge must be whole: a chain continues from it.
    Frontier::from_stored(size, &frontier).map_err(|e| Error::Internal(e.to_string()))?;
    let r = Retired {
        node: node.to_owned(),
        first_seq: start,
        last_seq: last,
        count: size - start,
        first_at: first.at,
        last_at: last_event.at,
        link: last_event.link,
        frontier,
    };
    let note = keys
        .sign_note(&r.text())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let removed = store
        .retire_events(node, start, last, &note)
        .await
        .map_err(backend)?;
    let e = Event::new(now, super::writer::RETIRED, Category::Process, SUCCESS)
        .reason(Some(
            "retention removed the oldest events as one signed range",
        ))
        .field("audit.retired.node", node)
        .field("audit.retired.first_seq", start)
        .field("audit.retired.last_seq", last)
        .field("audit.retired.count", removed)
        .field("audit.retired.first_at", first.at.to_rfc3339())
        .field("audit.retired.last_at", last_event.at.to_rfc3339());
    audit.record_durable(e).await?;
    Ok(Some(r))
}
