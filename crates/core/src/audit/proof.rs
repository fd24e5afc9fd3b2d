//! Inclusion proofs: that one event is in a signed checkpoint, checkable
//! offline with nothing but the public key (`rampart audit proof`,
//! `rampart audit check-proof`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use base64::Engine;
use rampart_crypto::audit::{
    check_inclusion, prove_inclusion, verify_checkpoint, Hash, StoredHashes,
};
use serde::{Deserialize, Serialize};

use super::{origin, AuditStore, Chained};
use crate::{Error, StoreError, Timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A proof as `rampart audit proof` writes it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub node: String,
    pub seq: u64,
    /// The event's canonical bytes (what its leaf hash covers), base64.
    pub event: String,
    /// The tree size of the checkpoint.
    pub size: u64,
    /// The inclusion proof's hashes, base64, in RFC 6962 order.
    pub hashes: Vec<String>,
    /// The signed checkpoint (C2SP tlog-checkpoint note).
    pub checkpoint: String,
}

fn backend(e: StoreError) -> Error {
    Error::Internal(format!("audit trail: {e}"))
}

/// Collects the stored-hash indexes a proof asks for, then serves them.
struct Recorder {
    wanted: Mutex<BTreeSet<u64>>,
    have: HashMap<u64, Hash>,
}

impl StoredHashes for Recorder {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, String> {
        let mut out = Vec::with_capacity(indexes.len());
        for i in indexes {
            match self.have.get(i) {
                Some(h) => out.push(*h),
                None => {
                    self.wanted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(indexes.iter().copied());
                    return Err("not read yet".into());
                }
            }
        }
        Ok(out)
    }
}

/// The proof that event `seq` of `node` is in the newest checkpoint that
/// covers it. `None` when there is no such event or no checkpoint yet.
pub async fn prove(store: &dyn AuditStore, node: &str, seq: u64) -> Result<Option<Proof>, Error> {
    let Some(event) = store
        .audit_range(node, seq, 1)
        .await
        .map_err(backend)?
        .into_iter()
        .find(|e| e.seq == seq)
    else {
        return Ok(None);
    };
    let Some(cp) = store.latest_checkpoint(node).await.map_err(backend)? else {
        return Ok(None);
    };
    if cp.size <= seq {
        return Ok(None);
    }
    let mut r = Recorder {
        wanted: Mutex::new(BTreeSet::new()),
        have: HashMap::new(),
    };
    // At most two rounds: the first learns which hashes the proof needs.
    for _ in 0..2 {
        if let Ok(p) = prove_inclusion(cp.size, seq, &r) {
            return Ok(Some(Proof {
                node: node.to_owned(),
                seq,
                event: B64.encode(event.canonical()),
                size: cp.size,
                hashes: p.iter().map(|h| B64.encode(h.0)).collect(),
                checkpoint: cp.note,
            }));
        }
        let wanted: Vec<u64> =
            std::mem::take(&mut *r.wanted.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        r.have
            .extend(super::retention::stored_hashes(store, node, &wanted).await?);
    }
    Err(Error::Internal(format!(
        "the tree hashes of chain {node} are incomplete: run `rampart audit verify`"
    )))
}

/// What a proof proves, once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Proven {
    pub event: Chained,
    pub size: u64,
    pub signed_at: Option<Timestamp>,
}

/// Checks a proof with the public key only: the checkpoint's signature
/// and origin, then the event's path to its root.
pub fn check(proof: &Proof, verifier_key: &str) -> Result<Proven, String> {
    let cp = verify_checkpoint(&proof.checkpoint, verifier_key).map_err(|e| e.to_string())?;
    if cp.origin != origin(&proof.node) || cp.size != proof.size {
        return Err("the checkpoint is of another chain or size than the proof says".into());
    }
    let bytes = B64
        .decode(&proof.event)
        .map_err(|_| "the event is not base64".to_owned())?;
    let event = Chained::from_canonical(&bytes).ok_or("the event bytes are not an event")?;
    if event.node != proof.node || event.seq != proof.seq {
        return Err("the event is another one than the proof names".into());
    }
    let hashes = proof
        .hashes
        .iter()
        .map(|h| {
            let b = B64
                .decode(h)
                .map_err(|_| "a hash is not base64".to_owned())?;
            let a: [u8; 32] = b
                .try_into()
                .map_err(|_| "a hash is not 32 bytes".to_owned())?;
            Ok(Hash(a))
        })
        .collect::<Result<Vec<_>, String>>()?;
    check_inclusion(&hashes, proof.size, &cp.root, proof.seq, &bytes).map_err(|e| e.to_string())?;
    Ok(Proven {
        event,
        size: proof.size,
        signed_at: cp.time_ms.map(Timestamp),
    })
}
