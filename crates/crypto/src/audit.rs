//! The audit trail's cryptography (ADR 0011): the keyed link of each event
//! to the one before (HMAC-SHA256), the RFC 6962 Merkle tree over every
//! event (`tlog_tiles`, Cloudflare's port of Go's `sumdb/tlog`), and
//! checkpoints of the tree in the C2SP `tlog-checkpoint` format, signed as
//! C2SP signed notes with Ed25519 (`signed_note`, `ed25519-dalek`).
//!
//! Both keys derive (HKDF-SHA256) from one secret, the audit data key that
//! the master key wraps. The public half of the signing key is all anyone
//! needs to check a checkpoint or an inclusion proof.

use std::collections::HashMap;

use ed25519_dalek::Signer as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, HashReader};
pub use tlog_tiles::{Hash, RecordProof, HASH_SIZE};

use crate::SecretBytes;

const LINK_INFO: &[u8] = b"rampart-audit-link-v1";
const SIGN_INFO: &[u8] = b"rampart-audit-sign-v1";
const PENDING_INFO: &[u8] = b"rampart-audit-pending-v1";
/// The extension line of a checkpoint that carries its time (Unix ms).
const TIME_LINE: &str = "rampart-time ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    #[error("the audit key must be 32 bytes")]
    Key,
    #[error("`{0}` cannot name a log: it needs letters, digits and `/.-_` only")]
    Origin(String),
    #[error("not a checkpoint: {0}")]
    Malformed(&'static str),
    #[error("the signature does not verify with this public key")]
    Signature,
    #[error("the proof does not lead to the checkpoint's root")]
    Proof,
    #[error("the tree's hashes could not be read: {0}")]
    Hashes(String),
}

/// A 32-byte link: `HMAC(link key, previous link || event bytes)`.
pub type Link = [u8; 32];

/// The link before the first event of a chain.
pub const GENESIS: Link = [0u8; 32];

/// The audit trail's secret keys; only the derived public key leaves.
pub struct AuditKeys {
    link: SecretBytes,
    pending: SecretBytes,
    signing: ed25519_dalek::SigningKey,
    origin: String,
    id: u32,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn derive(secret: &[u8], info: &[u8]) -> SecretBytes {
    let hk = Hkdf::<Sha256>::new(None, secret);
    let mut out = vec![0u8; 32];
    hk.expand(info, &mut out)
        .unwrap_or_else(|_| unreachable!("32-byte HKDF output"));
    SecretBytes::new(out)
}

/// Whether `origin` can name a log and its key (C2SP: no spaces or `+`).
fn origin_ok(origin: &str) -> bool {
    !origin.is_empty()
        && origin.len() <= 200
        && origin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.-_:".contains(&b))
}

impl AuditKeys {
    /// The keys, from the audit secret; `origin` names the signing key.
    pub fn derive(secret: &SecretBytes, origin: &str) -> Result<Self, AuditError> {
        if secret.expose_secret().len() != 32 {
            return Err(AuditError::Key);
        }
        if !origin_ok(origin) {
            return Err(AuditError::Origin(origin.to_owned()));
        }
        let seed = derive(secret.expose_secret(), SIGN_INFO);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(seed.expose_secret());
        let signing = ed25519_dalek::SigningKey::from_bytes(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        let public = [&[1u8][..], signing.verifying_key().as_bytes()].concat();
        Ok(Self {
            link: derive(secret.expose_secret(), LINK_INFO),
            pending: derive(secret.expose_secret(), PENDING_INFO),
            id: signed_note::key_id(origin, &public),
            signing,
            origin: origin.to_owned(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The link of an event whose canonical bytes are `event`.
    pub fn link(&self, previous: &Link, event: &[u8]) -> Link {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.link.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(previous);
        m.update(event);
        m.finalize().into_bytes().into()
    }

    /// The MAC of an event waiting in the pending table for `node`, so one
    /// written there by anyone without the key is not chained as genuine.
    pub fn pending_mac(&self, node: &str, body: &[u8]) -> Link {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.pending.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(&(node.len() as u64).to_be_bytes());
        m.update(node.as_bytes());
        m.update(body);
        m.finalize().into_bytes().into()
    }

    pub fn pending_matches(&self, node: &str, body: &[u8], stored: &[u8]) -> bool {
        crate::constant_time_eq(&self.pending_mac(node, body), stored)
    }

    /// Checks a stored link in constant time.
    pub fn link_matches(&self, previous: &Link, event: &[u8], stored: &[u8]) -> bool {
        crate::constant_time_eq(&self.link(previous, event), stored)
    }

    /// The C2SP verifier key (`origin+id+base64`): public, enough to check
    /// every checkpoint and proof.
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.origin, &self.signing.verifying_key())
    }

    /// A signed checkpoint of the log `origin` (one per node), a tree of
    /// `size` events with root `root`, made at `time_ms`: the signed
    /// note's text.
    pub fn sign_checkpoint(
        &self,
        origin: &str,
        size: u64,
        root: &Hash,
        time_ms: i64,
    ) -> Result<String, AuditError> {
        if !origin_ok(origin) {
            return Err(AuditError::Origin(origin.to_owned()));
        }
        let body = Checkpoint::new(origin, size, *root, &format!("{TIME_LINE}{time_ms}\n"))
            .map_err(|_| AuditError::Origin(origin.to_owned()))?
            .to_bytes();
        let mut note = Note::new(&body, &[])
            .unwrap_or_else(|_| unreachable!("a checkpoint is a well-formed note text"));
        note.add_sigs(&[self as &dyn Signer])
            .unwrap_or_else(|_| unreachable!("the origin is a valid key name"));
        Ok(String::from_utf8(note.to_bytes()).unwrap_or_else(|_| unreachable!("notes are UTF-8")))
    }
}

impl AuditKeys {
    /// Signs any text as a C2SP signed note (the text must end in a
    /// newline and hold no control characters but newlines).
    pub fn sign_note(&self, text: &str) -> Result<String, AuditError> {
        let mut note = Note::new(text.as_bytes(), &[])
            .map_err(|_| AuditError::Malformed("not a note text"))?;
        note.add_sigs(&[self as &dyn Signer])
            .map_err(|_| AuditError::Malformed("cannot sign"))?;
        String::from_utf8(note.to_bytes()).map_err(|_| AuditError::Malformed("not UTF-8"))
    }
}

/// Checks a signed note against a verifier key; its text.
pub fn verify_note(note: &str, verifier_key: &str) -> Result<String, AuditError> {
    let verifier = StandardVerifier::new(verifier_key.trim())
        .map_err(|_| AuditError::Malformed("the public key is not a C2SP verifier key"))?;
    let note = Note::from_bytes(note.as_bytes())
        .map_err(|_| AuditError::Malformed("not a signed note"))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|_| AuditError::Signature)?;
    String::from_utf8(note.text().to_vec()).map_err(|_| AuditError::Malformed("not UTF-8"))
}

impl Signer for AuditKeys {
    fn name(&self) -> &str {
        &self.origin
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.signing.sign(msg).to_bytes().to_vec())
    }
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub time_ms: Option<i64>,
}

/// Checks a signed checkpoint against a verifier key and reads it.
pub fn verify_checkpoint(note: &str, verifier_key: &str) -> Result<VerifiedCheckpoint, AuditError> {
    let verifier = StandardVerifier::new(verifier_key.trim())
        .map_err(|_| AuditError::Malformed("the public key is not a C2SP verifier key"))?;
    let note = Note::from_bytes(note.as_bytes())
        .map_err(|_| AuditError::Malformed("not a signed note"))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|_| AuditError::Signature)?;
    let cp = Checkpoint::from_bytes(note.text())
        .map_err(|_| AuditError::Malformed("the note is not a tlog checkpoint"))?;
    let time_ms = cp
        .extension()
        .lines()
        .find_map(|l| l.strip_prefix(TIME_LINE))
        .and_then(|t| t.parse().ok());
    Ok(VerifiedCheckpoint {
        origin: cp.origin().to_owned(),
        size: cp.size(),
        root: *cp.hash(),
        time_ms,
    })
}

/// The Merkle leaf hash of an event's canonical bytes (RFC 6962 2.1).
pub fn leaf_hash(event: &[u8]) -> Hash {
    tlog_tiles::record_hash(event)
}

/// Where the stored hash with index `index` lives: the event (record) that
/// created it and its position among that event's stored hashes.
pub fn locate(index: u64) -> (u64, usize) {
    let (level, n) = tlog_tiles::split_stored_hash_index(index);
    (((n + 1) << level) - 1, usize::from(level))
}

/// The stored-hash indexes a tree of `size` needs for its root and its next
/// append: the roots of its maximal complete subtrees.
pub fn frontier_indexes(size: u64) -> Vec<u64> {
    if size == 0 {
        return Vec::new();
    }
    tlog_tiles::sub_tree_index(0, size, Vec::new())
}

struct MapReader<'a>(&'a HashMap<u64, Hash>);

impl HashReader for MapReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The right edge of the Merkle tree: enough to append and to compute the
/// root, in at most 64 hashes.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    hashes: HashMap<u64, Hash>,
}

impl Frontier {
    /// A frontier from the hashes at [`frontier_indexes`]`(size)`.
    pub fn from_stored(size: u64, stored: &[(u64, Hash)]) -> Result<Self, AuditError> {
        let hashes: HashMap<u64, Hash> = stored.iter().copied().collect();
        if frontier_indexes(size)
            .iter()
            .any(|i| !hashes.contains_key(i))
        {
            return Err(AuditError::Hashes(
                "the tree's right edge is incomplete".into(),
            ));
        }
        Ok(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored hashes it holds (at [`frontier_indexes`] of its size).
    pub fn stored(&self) -> Vec<(u64, Hash)> {
        frontier_indexes(self.size)
            .into_iter()
            .filter_map(|i| self.hashes.get(&i).map(|h| (i, *h)))
            .collect()
    }

    /// Appends an event by its leaf hash; returns the hashes it stores
    /// (at `stored_hash_index(0, n)` onwards: see [`locate`]).
    pub fn append(&mut self, leaf: Hash) -> Vec<Hash> {
        let n = self.size;
        let stored = tlog_tiles::stored_hashes_for_record_hash(n, leaf, &MapReader(&self.hashes))
            .unwrap_or_else(|_| unreachable!("the frontier holds every hash an append reads"));
        let base = tlog_tiles::stored_hash_index(0, n);
        for (i, h) in stored.iter().enumerate() {
            self.hashes.insert(base + i as u64, *h);
        }
        self.size += 1;
        if self.hashes.len() > 128 {
            let keep = frontier_indexes(self.size);
            self.hashes.retain(|i, _| keep.contains(i));
        }
        stored
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        tlog_tiles::tree_hash(self.size, &MapReader(&self.hashes))
            .unwrap_or_else(|_| unreachable!("the frontier holds the subtree roots"))
    }
}

/// A reader of stored hashes by index, for proofs over a stored tree.
pub trait StoredHashes {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, String>;
}

struct Adapter<'a, R: StoredHashes + ?Sized>(&'a R);

impl<R: StoredHashes + ?Sized> HashReader for Adapter<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match self.0.read(indexes) {
            Ok(h) if h.len() == indexes.len() => Ok(h),
            _ => Err(tlog_tiles::Error::IndexesNotInTree),
        }
    }
}

/// The inclusion proof of event `n` in the tree of `size` events.
pub fn prove_inclusion<R: StoredHashes + ?Sized>(
    size: u64,
    n: u64,
    hashes: &R,
) -> Result<RecordProof, AuditError> {
    tlog_tiles::prove_record(size, n, &Adapter(hashes))
        .map_err(|e| AuditError::Hashes(e.to_string()))
}

/// The root of the tree of `size` events, from stored hashes.
pub fn stored_root<R: StoredHashes + ?Sized>(size: u64, hashes: &R) -> Result<Hash, AuditError> {
    tlog_tiles::tree_hash(size, &Adapter(hashes)).map_err(|e| AuditError::Hashes(e.to_string()))
}

/// Checks that the event with canonical bytes `event` is number `n` of the
/// tree of `size` events whose root is `root`.
pub fn check_inclusion(
    proof: &RecordProof,
    size: u64,
    root: &Hash,
    n: u64,
    event: &[u8],
) -> Result<(), AuditError> {
    tlog_tiles::check_record(proof, size, *root, n, leaf_hash(event)).map_err(|_| AuditError::Proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AuditKeys {
        AuditKeys::derive(&SecretBytes::new(vec![7; 32]), "rampart-audit").unwrap()
    }

    struct All(HashMap<u64, Hash>);
    impl StoredHashes for All {
        fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, String> {
            indexes
                .iter()
                .map(|i| self.0.get(i).copied().ok_or_else(|| format!("no {i}")))
                .collect()
        }
    }

    #[test]
    fn the_frontier_gives_the_same_roots_and_proofs_as_the_whole_tree() {
        let mut f = Frontier::default();
        let mut all = HashMap::new();
        let mut by_record = Vec::new();
        for n in 0..300u64 {
            let data = format!("event {n}");
            let stored = f.append(leaf_hash(data.as_bytes()));
            let base = tlog_tiles::stored_hash_index(0, n);
            for (i, h) in stored.iter().enumerate() {
                all.insert(base + i as u64, *h);
                // Every stored hash is found again from its index alone.
                assert_eq!(locate(base + i as u64), (n, i));
            }
            by_record.push(stored);
            let size = n + 1;
            assert_eq!(f.root(), stored_root(size, &All(all.clone())).unwrap());
            assert!(f.hashes.len() <= 129);
        }
        let root = f.root();
        for n in [0u64, 1, 7, 128, 299] {
            let proof = prove_inclusion(300, n, &All(all.clone())).unwrap();
            check_inclusion(&proof, 300, &root, n, format!("event {n}").as_bytes()).unwrap();
            assert_eq!(
                check_inclusion(&proof, 300, &root, n, b"another event"),
                Err(AuditError::Proof)
            );
        }
        // A frontier rebuilt from stored hashes goes on the same way.
        let stored: Vec<(u64, Hash)> = frontier_indexes(300)
            .into_iter()
            .map(|i| (i, all[&i]))
            .collect();
        let mut again = Frontier::from_stored(300, &stored).unwrap();
        assert_eq!(again.root(), root);
        again.append(leaf_hash(b"next"));
        f.append(leaf_hash(b"next"));
        assert_eq!(again.root(), f.root());
        assert!(Frontier::from_stored(300, &stored[1..]).is_err());
    }

    #[test]
    fn checkpoints_verify_with_the_public_key_only() {
        let k = keys();
        let root = leaf_hash(b"x");
        let note = k
            .sign_checkpoint("rampart/audit/test", 5, &root, 1_700_000_000_000)
            .unwrap();
        assert!(note.starts_with("rampart/audit/test\n5\n"), "{note}");
        let cp = verify_checkpoint(&note, &k.verifier_key()).unwrap();
        assert_eq!(cp.size, 5);
        assert_eq!(cp.root, root);
        assert_eq!(cp.time_ms, Some(1_700_000_000_000));

        let forged = note.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(
            verify_checkpoint(&forged, &k.verifier_key()),
            Err(AuditError::Signature)
        );
        let other = AuditKeys::derive(&SecretBytes::new(vec![8; 32]), "rampart-audit").unwrap();
        assert_eq!(
            verify_checkpoint(&note, &other.verifier_key()),
            Err(AuditError::Signature)
        );
        assert!(verify_checkpoint("junk", &k.verifier_key()).is_err());
    }

    const GENESIS_ROOT: Hash = Hash([0; 32]);

    #[test]
    fn links_are_keyed_and_chained() {
        let k = keys();
        let a = k.link(&GENESIS, b"one");
        assert_ne!(a, k.link(&GENESIS, b"two"));
        assert_ne!(a, k.link(&[1; 32], b"one"));
        assert!(k.link_matches(&GENESIS, b"one", &a));
        let other = AuditKeys::derive(&SecretBytes::new(vec![8; 32]), "rampart-audit").unwrap();
        assert!(!other.link_matches(&GENESIS, b"one", &a));
        assert!(AuditKeys::derive(&SecretBytes::new(vec![8; 32]), "has space").is_err());
        assert!(k.sign_checkpoint("has space", 1, &GENESIS_ROOT, 0).is_err());
        assert!(!format!("{k:?}").contains("signing"));
    }
}
