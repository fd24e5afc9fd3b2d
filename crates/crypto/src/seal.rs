//! Encryption at rest and keyed MACs, with keys derived from the master key.
//!
//! [`Keyring`] holds data keys derived with HKDF-SHA256 from a master key,
//! one per purpose. Sealed values are XChaCha20-Poly1305 (random 192-bit
//! nonce from the injected [`Entropy`]) and carry the id of the key that
//! sealed them: `v1.<key id>.<base64url(nonce || ciphertext)>`. The id is
//! derived from the key, so it names the key without revealing it, and a
//! keyring built from an older master key as well can still open old values
//! (rotation keeps old keys for reading only).
//!
//! Every sealed value is bound to a context string (for example the row and
//! column it lives in) as associated data: a ciphertext copied to another
//! row does not open.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{constant_time_eq, Entropy, SecretBytes};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const SEAL_INFO: &[u8] = b"rampart-seal-v1";
const MAC_INFO: &[u8] = b"rampart-code-mac-v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not a value this keyring wrote, sealed by a key it does not hold,
    /// tampered with, or moved to another context.
    #[error("sealed value cannot be opened")]
    Open,
    #[error("the master key must be 32 bytes")]
    MasterKey,
}

struct DataKey {
    id: String,
    seal: XChaCha20Poly1305,
    mac: SecretBytes,
}

/// Data keys derived from one or more master keys; the first seals.
pub struct Keyring {
    keys: Vec<DataKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn derive(master: &[u8], info: &[u8]) -> SecretBytes {
    let hk = Hkdf::<Sha256>::new(None, master);
    let mut out = vec![0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    hk.expand(info, &mut out)
        .unwrap_or_else(|_| unreachable!("32-byte HKDF output"));
    SecretBytes::new(out)
}

impl Keyring {
    /// A keyring whose current key derives from `master`; `older` masters
    /// can still open what they sealed.
    pub fn new(master: &SecretBytes, older: &[SecretBytes]) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        for m in std::iter::once(master).chain(older) {
            if m.expose_secret().len() != 32 {
                return Err(SealError::MasterKey);
            }
            let seal_key = derive(m.expose_secret(), SEAL_INFO);
            let id = hex::encode(
                &Sha256::digest([b"rampart-key-id-v1:", seal_key.expose_secret()].concat())[..6],
            );
            keys.push(DataKey {
                id,
                seal: XChaCha20Poly1305::new_from_slice(seal_key.expose_secret())
                    .map_err(|_| SealError::MasterKey)?,
                mac: derive(m.expose_secret(), MAC_INFO),
            });
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals new values.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Encrypts `plaintext` bound to `context`.
    pub fn seal(&self, entropy: &dyn Entropy, context: &str, plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; 24];
        entropy.fill(&mut nonce);
        let ct = key
            .seal
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // Encryption fails only for messages beyond 256 GiB.
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encryption"));
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("v1.{}.{}", key.id, B64.encode(blob))
    }

    /// Decrypts a value sealed (by any key of this ring) for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<SecretBytes, SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::Open);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(SealError::Open)?;
        let blob = B64.decode(body).map_err(|_| SealError::Open)?;
        if blob.len() < 24 + 16 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = blob.split_at(24);
        key.seal
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| SealError::Open)
    }

    /// A keyed MAC (HMAC-SHA256, hex) of a short secret such as a 6-digit
    /// code, for storage: unlike a plain hash, it cannot be reversed by
    /// trying every code without the master key. Made with the current key.
    pub fn mac(&self, context: &str, secret: &str) -> String {
        Self::mac_with(&self.keys[0], context, secret)
    }

    fn mac_with(key: &DataKey, context: &str, secret: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.mac.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(context.as_bytes());
        m.update(&[0]);
        m.update(secret.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// The MAC of `secret` under every key of the ring, current first: to
    /// look up a value stored under whichever key made it.
    pub fn macs(&self, context: &str, secret: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| Self::mac_with(k, context, secret))
            .collect()
    }

    /// Checks `secret` against a stored MAC, made with any key of the
    /// ring, in constant time.
    pub fn mac_matches(&self, context: &str, secret: &str, stored: &str) -> bool {
        self.keys.iter().fold(false, |found, key| {
            found
                | constant_time_eq(
                    Self::mac_with(key, context, secret).as_bytes(),
                    stored.as_bytes(),
                )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsEntropy;

    fn ring(byte: u8) -> Keyring {
        Keyring::new(&SecretBytes::new(vec![byte; 32]), &[]).unwrap()
    }

    #[test]
    fn seals_and_opens_in_its_context_only() {
        let k = ring(7);
        let sealed = k.seal(&OsEntropy, "factor:1", b"JBSWY3DPEHPK3PXP-canary");
        assert!(sealed.starts_with(&format!("v1.{}.", k.current_key_id())));
        assert!(!sealed.contains("canary"));
        assert_eq!(
            k.open("factor:1", &sealed).unwrap().expose_secret(),
            b"JBSWY3DPEHPK3PXP-canary"
        );
        assert_eq!(k.open("factor:2", &sealed).unwrap_err(), SealError::Open);
        // Same plaintext, fresh nonce: different ciphertext.
        assert_ne!(
            sealed,
            k.seal(&OsEntropy, "factor:1", b"JBSWY3DPEHPK3PXP-canary")
        );
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let k = ring(7);
        let sealed = k.seal(&OsEntropy, "c", b"secret");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(k.open("c", &tampered).unwrap_err(), SealError::Open);
        let other = ring(8);
        let theirs = other.seal(&OsEntropy, "c", b"secret");
        assert_eq!(k.open("c", &theirs).unwrap_err(), SealError::Open);
        assert_eq!(k.open("c", "v1.zz.zz").unwrap_err(), SealError::Open);
        assert_eq!(k.open("c", "").unwrap_err(), SealError::Open);
    }

    #[test]
    fn an_older_master_key_still_opens_what_it_sealed() {
        let old = ring(1);
        let sealed = old.seal(&OsEntropy, "c", b"kept");
        let rotated = Keyring::new(
            &SecretBytes::new(vec![2; 32]),
            &[SecretBytes::new(vec![1; 32])],
        )
        .unwrap();
        assert_ne!(rotated.current_key_id(), old.current_key_id());
        assert_eq!(rotated.open("c", &sealed).unwrap().expose_secret(), b"kept");
    }

    #[test]
    fn macs_depend_on_key_context_and_secret() {
        let k = ring(7);
        let m = k.mac("code:a", "123456");
        assert!(k.mac_matches("code:a", "123456", &m));
        assert!(!k.mac_matches("code:b", "123456", &m));
        assert!(!k.mac_matches("code:a", "123457", &m));
        assert!(!ring(8).mac_matches("code:a", "123456", &m));
        // After a rotation, MACs made with the older key still match.
        let rotated = Keyring::new(
            &SecretBytes::new(vec![9; 32]),
            &[SecretBytes::new(vec![7; 32])],
        )
        .unwrap();
        assert!(rotated.mac_matches("code:a", "123456", &m));
        assert_eq!(rotated.macs("code:a", "123456")[1], m);
        assert_ne!(rotated.mac("code:a", "123456"), m);
        assert!(Keyring::new(&SecretBytes::new(vec![0; 16]), &[]).is_err());
    }
}
