//! Argon2id password hashing (RustCrypto `argon2`), with a dummy hash so an
//! unknown account costs the same as a wrong password.

use std::cell::{Cell, RefCell};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use zeroize::Zeroize;

use crate::{Entropy, SecretString};

/// Ceilings on the parameters a stored hash may ask for at verification.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_LANES: u32 = 64;

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
        let encoded = SaltString::encode_b64(&salt).map_err(|_| HashError::Hashing)?;
        let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            with_thread_memory(&self.argon, password.expose_secret().as_bytes(), &salt, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|_| HashError::Hashing)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon.params()).map_err(|_| HashError::Hashing)?,
            salt: Some(encoded.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Verifies `password` against a PHC string made by any Argon2 variant
    /// and parameters; reports whether it should be re-hashed. The same
    /// steps as `argon2`'s `PasswordVerifier`, with the memory taken from
    /// the thread's buffer; the outputs are compared in constant time
    /// (`password_hash::Output`'s equality).
    pub fn verify(&self, password: &SecretString, phc: &str) -> Result<Verification, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|_| HashError::MalformedHash)?;
        let algorithm =
            Algorithm::try_from(parsed.algorithm).map_err(|_| HashError::MalformedHash)?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| HashError::MalformedHash)?,
            None => Version::default(),
        };
        // Verification uses the parameters recorded in the hash itself.
        let params = Params::try_from(&parsed).map_err(|_| HashError::MalformedHash)?;
        // No stored hash legitimately costs more than this; a larger one
        // would only serve to exhaust memory or time.
        if params.m_cost() > MAX_MEMORY_KIB
            || params.t_cost() > MAX_ITERATIONS
            || params.p_cost() > MAX_LANES
        {
            return Err(HashError::MalformedHash);
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError::MalformedHash);
        };
        let mut salt_buf = [0u8; 64];
        let salt = salt
            .decode_b64(&mut salt_buf)
            .map_err(|_| HashError::MalformedHash)?;
        let argon = Argon2::new(algorithm, version, params);
        let computed = Output::init_with(expected.len(), |out| {
            with_thread_memory(&argon, password.expose_secret().as_bytes(), salt, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|_| HashError::MalformedHash)?;
        if computed == expected {
            Ok(Verification::Match {
                needs_rehash: self.is_weaker(&parsed),
            })
        } else {
            Ok(Verification::Mismatch)
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

thread_local! {
    static KEEP_MEMORY: Cell<bool> = const { Cell::new(false) };
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Marks the calling thread as a hashing thread: it keeps one Argon2
/// memory buffer for all its hashes (see [`with_thread_memory`]).
pub fn keep_argon2_memory_on_this_thread() {
    KEEP_MEMORY.with(|k| k.set(true));
}

/// Runs Argon2 with its memory blocks taken from a buffer the calling thread
/// keeps, instead of a fresh allocation per hash: an allocator that keeps
/// freed 19 MiB blocks in per-thread heaps grows resident memory by one
/// block per heap, and a fresh mmap per hash costs page faults and zeroing
/// on every login. The blocks are zeroized after each use: they are derived
/// from the password.
fn with_thread_memory(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let blocks = argon.params().block_count();
    let mut run = |memory: &mut [Block]| {
        let wipe = Wipe(memory);
        argon.hash_password_into_with_memory(password, salt, out, &mut *wipe.0)
    };
    MEMORY.with(|kept| {
        let mut kept = kept.borrow_mut();
        // The buffer is sized by a thread's first hash (the configured
        // parameters); a larger one, from an old hash with other
        // parameters, or a thread that hashes once in a while (the dummy
        // hash at start), gets memory of its own that is freed after.
        if KEEP_MEMORY.with(Cell::get) && (kept.is_empty() || kept.len() >= blocks) {
            if kept.is_empty() {
                kept.resize(blocks, Block::default());
            }
            run(&mut kept[..blocks])
        } else {
            run(&mut vec![Block::default(); blocks])
        }
    })
}

/// Zeroizes Argon2 memory when dropped, on every path out (errors and
/// unwinding too): the blocks are derived from the password.
struct Wipe<'a>(&'a mut [Block]);

impl Drop for Wipe<'_> {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(Zeroize::zeroize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsEntropy;

    /// Hashes made by the library's own `PasswordHasher` verify here, and
    /// hashes made here verify with the library's `PasswordVerifier`: the
    /// thread-memory path computes exactly what the library does. Includes
    /// another variant, version, parameters and output length.
    #[test]
    fn interoperates_with_the_librarys_own_hashing() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let ours = PasswordHasher::new(Argon2Params::MINIMUM).unwrap();
        let pw = SecretString::from("correct horse battery staple");
        let wrong = SecretString::from("correct horse battery stapler");
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let p = |m, t, lanes, len| Params::new(m, t, lanes, len).unwrap();
        let library_made: Vec<String> = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                p(19 * 1024, 2, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                p(8 * 1024, 3, 2, Some(48)),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                p(32 * 1024, 1, 1, None),
            ),
            (Algorithm::Argon2i, Version::V0x10, p(4 * 1024, 3, 1, None)),
            (
                Algorithm::Argon2d,
                Version::V0x13,
                p(4 * 1024, 1, 1, Some(16)),
            ),
        ]
        .into_iter()
        .map(|(alg, version, params)| {
            Argon2::new(alg, version, params)
                .hash_password(pw.expose_secret().as_bytes(), &salt)
                .unwrap()
                .to_string()
        })
        .collect();
        let check_all = || {
            for phc in &library_made {
                assert!(
                    matches!(ours.verify(&pw, phc), Ok(Verification::Match { .. })),
                    "{phc}"
                );
                assert_eq!(
                    ours.verify(&wrong, phc).unwrap(),
                    Verification::Mismatch,
                    "{phc}"
                );
            }
        };
        // Fresh memory per hash, then the kept buffer: sized by this
        // thread's first hash (19 MiB); smaller hashes run in it, larger
        // ones beside it.
        check_all();
        keep_argon2_memory_on_this_thread();
        for _ in 0..2 {
            // Ours, through the (reused, zeroized) buffer, verify with the
            // library.
            let phc = ours.hash(&pw, &crate::OsEntropy).unwrap();
            let parsed = PasswordHash::new(&phc).unwrap();
            Argon2::default()
                .verify_password(pw.expose_secret().as_bytes(), &parsed)
                .unwrap();
            assert!(Argon2::default().verify_password(b"nope", &parsed).is_err());
        }
        check_all();
    }

    #[test]
    fn malformed_or_outlandish_hashes_are_refused_not_panicked_on() {
        let h = PasswordHasher::new(Argon2Params::MINIMUM).unwrap();
        let pw = SecretString::from("pw");
        for phc in [
            "",
            "argon2id",
            "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg",
            "$argon2id$v=19$m=0,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1,x=3$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=17$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$YQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=16,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4194304,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=1000,p=1$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(
                matches!(h.verify(&pw, phc), Err(HashError::MalformedHash)),
                "{phc}"
            );
        }
    }

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
        use argon2::password_hash::PasswordHasher as _;
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

/// The Argon2id cost of turning a master passphrase into the master key:
/// 64 MiB, 3 passes, one lane. Paid once per start.
pub const PASSPHRASE_PARAMS: Argon2Params = Argon2Params {
    memory_kib: 64 * 1024,
    iterations: 3,
    parallelism: 1,
};

/// A 32-byte key stretched from a passphrase with Argon2id and a stored
/// random salt (at least 16 bytes).
pub fn stretch_passphrase(
    passphrase: &SecretString,
    salt: &[u8],
    params: Argon2Params,
) -> Result<crate::SecretBytes, HashError> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|_| HashError::Params)?;
    let mut out = vec![0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut out)
        .map_err(|_| HashError::Params)?;
    Ok(crate::SecretBytes::new(out))
}

#[cfg(test)]
mod stretch_tests {
    use super::*;

    #[test]
    fn a_passphrase_stretches_to_the_same_key_with_the_same_salt_only() {
        let low = Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let pass = SecretString::from("correct horse battery staple");
        let a = stretch_passphrase(&pass, b"0123456789abcdef", low).unwrap();
        let b = stretch_passphrase(&pass, b"0123456789abcdef", low).unwrap();
        let c = stretch_passphrase(&pass, b"fedcba9876543210", low).unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), c.expose_secret());
        assert_eq!(a.expose_secret().len(), 32);
    }
}
