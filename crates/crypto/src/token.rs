//! Bearer secrets (session, setup, CSRF tokens): generation, hashing for
//! storage, and constant-time comparison.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Entropy, SecretString};

/// Generates a URL-safe token carrying `bytes` bytes of entropy.
pub fn random_token(entropy: &dyn Entropy, bytes: usize) -> SecretString {
    let mut buf = vec![0u8; bytes];
    entropy.fill(&mut buf);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf);
    zeroize::Zeroize::zeroize(&mut buf);
    SecretString::new(token)
}

/// The stored form of a high-entropy token: SHA-256, hex. A fast hash is
/// right here because the input has at least 128 bits of entropy; it is not
/// used for passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(pub String);

impl TokenHash {
    pub fn of(token: &SecretString) -> Self {
        Self(sha256_hex(token.expose_secret().as_bytes()))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two byte strings without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsEntropy;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token(&OsEntropy, 32);
        let b = random_token(&OsEntropy, 32);
        assert_eq!(a.expose_secret().len(), 43);
        assert_ne!(a, b);
        assert_ne!(TokenHash::of(&a).0, a.expose_secret());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
