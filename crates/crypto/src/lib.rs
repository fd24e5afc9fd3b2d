//! The only place in Rampart that touches cryptographic primitives.
//!
//! Everything here wraps a well-kept crate (RustCrypto `argon2`, `sha2`,
//! `subtle`, `rcgen` on `ring`); nothing here invents cryptography. Secrets
//! live in [`SecretString`]/[`SecretBytes`], which redact `Debug`, are never
//! `Serialize`, zeroize on drop, and are read only through a greppable
//! `expose_secret()`.

pub mod audit;
mod entropy;
mod otp;
mod password;
mod seal;
mod secret;
mod tls;
mod token;

pub use entropy::{Entropy, OsEntropy};
pub use otp::{
    normalize_recovery_code, random_digits, recovery_code, totp_base32, totp_secret, totp_step_of,
    totp_uri, TOTP_DIGITS, TOTP_SECRET_BYTES, TOTP_STEP_SECS,
};
pub use password::{
    keep_argon2_memory_on_this_thread, stretch_passphrase, Argon2Params, HashError, PasswordHasher,
    Verification, PASSPHRASE_PARAMS,
};
pub use seal::{Keyring, SealError};
pub use secret::{SecretBytes, SecretString};
pub use tls::{
    acme_challenge_certificate, certificate_not_after, certificate_request, certificate_validity,
    certificate_validity_der, generate_self_signed, self_signed_due, CertificateRequest,
    SelfSigned, RENEW_BEFORE, SELF_SIGNED_LIFETIME,
};
pub use token::{constant_time_eq, random_token, sha256_hex, TokenHash};

/// Errors from this crate. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("certificate generation failed")]
    Certificate,
}
