//! Argon2id password hashing (RustCrypto `argon2`), with a dummy hash so an
//! unknown account costs the same as a wrong password.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{Entropy, SecretString};

/// Argon2id cost parameters. The floor is OWASP's: m = 19 MiB, t = 2, p = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    pub const MINIMUM: Argon2Params = Argon2Params {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// True when these parameters meet the floor.
    pub fn meets_minimum(&self) -> bool {
        self.memory_kib >= Self::MINIMUM.memory_kib
            && self.iterations >= Self::MINIMUM.iterations
            && self.parallelism >= Self::MINIMUM.parallelism
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::MINIMUM
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid Argon2 parameters")]
    Params,
    #[error("stored password hash is malformed")]
    MalformedHash,
    #[error("hashing failed")]
    Hashing,
}

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is wrong.
    Mismatch,
    /// The password is right; `needs_rehash` is set when the stored hash was
    /// made with weaker parameters than the current ones.
    Match { needs_rehash: bool },
}

/// Hashes and verifies passwords with fixed, validated parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Argon2Params,
    argon: Argon2<'static>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish()
    }
}

impl PasswordHasher {
    pub fn new(params: Argon2Params) -> Result<Self, HashError> {
        if !params.meets_minimum() {
            return Err(HashError::Params);
        }
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|_| HashError::Params)?;
        Ok(Self {
            params,
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
        })
    }

    pub fn params(&self) -> Argon2Params {
        self.params
    }

    /// Hashes `password` with a fresh 128-bit salt into a PHC string.
    pub fn hash(
        &self,
        password: &SecretString,
        entropy: &dyn Entropy,
    ) -> Result<String, HashError> {
        let mut salt = [0u8; 16];
        entropy.fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|_| HashError::Hashing)?;
        let hash = self
            .argon
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map_err(|_| HashError::Hashing)?;
        Ok(hash.to_string())
    }

    /// Verifies `password` against a PHC string made by any Argon2 variant
    /// and parameters; reports whether it should be re-hashed.
    pub fn verify(&self, password: &SecretString, phc: &str) -> Result<Verification, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|_| HashError::MalformedHash)?;
        // Verification uses the parameters recorded in the hash itself.
        match Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed) {
            Ok(()) => Ok(Verification::Match {
                needs_rehash: self.is_weaker(&parsed),
            }),
            Err(argon2::password_hash::Error::Password) => Ok(Verification::Mismatch),
            Err(_) => Err(HashError::MalformedHash),
        }
    }

    fn is_weaker(&self, parsed: &PasswordHash<'_>) -> bool {
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        let Ok(p) = Params::try_from(parsed) else {
            return true;
        };
        p.m_cost() < self.params.memory_kib
            || p.t_cost() < self.params.iterations
            || p.p_cost() < self.params.parallelism
    }

    /// A valid hash of a random password, verified against when the account
    /// does not exist so that both paths cost one Argon2id verification.
    pub fn dummy_hash(&self, entropy: &dyn Entropy) -> Result<String, HashError> {
        let pw = crate::random_token(entropy, 32);
        self.hash(&pw, entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsEntropy;

    #[test]
    fn hash_verifies_and_salts_are_unique() {
        let h = PasswordHasher::new(Argon2Params::MINIMUM).unwrap();
        let pw = SecretString::from("correct horse battery staple");
        let a = h.hash(&pw, &OsEntropy).unwrap();
        let b = h.hash(&pw, &OsEntropy).unwrap();
        assert_ne!(a, b, "salts must differ");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            h.verify(&pw, &a).unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify(&SecretString::from("wrong"), &a).unwrap(),
            Verification::Mismatch
        );
    }

    #[test]
    fn weaker_hash_is_flagged_for_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let phc = weak.hash_password(b"pw", &salt).unwrap().to_string();
        let h = PasswordHasher::new(Argon2Params::MINIMUM).unwrap();
        assert_eq!(
            h.verify(&SecretString::from("pw"), &phc).unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    #[test]
    fn parameters_below_the_floor_are_refused() {
        let p = Argon2Params {
            memory_kib: 4096,
            ..Argon2Params::MINIMUM
        };
        assert!(PasswordHasher::new(p).is_err());
    }
}
