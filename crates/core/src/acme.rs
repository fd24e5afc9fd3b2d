//! Certificates obtained by ACME (RFC 8555; ADR 0016): what is stored, and
//! when to renew and retry. The ordering itself (network, challenges) is
//! the application's; this module only decides.
//!
//! One row per certificate authority and set of names, in the database,
//! so that every node on one PostgreSQL database serves the certificate
//! one of them ordered. The private keys (the certificate's and the ACME
//! account's) are stored sealed with the system key, never in plaintext.

use std::time::Duration;

use async_trait::async_trait;

use crate::{StoreError, Timestamp};

/// The ACME account of one certificate authority: its credentials
/// (account URL and private key, as JSON), sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedAccount {
    pub directory: String,
    pub credentials_sealed: String,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for SealedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAccount")
            .field("directory", &self.directory)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A certificate obtained from `directory` for `names`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub directory: String,
    /// The names, sorted, lower case, comma-separated: the row's identity.
    pub names: String,
    /// The chain as the CA sent it (PEM, leaf first): public.
    pub chain_pem: String,
    /// The certificate's private key (PEM), sealed.
    pub key_sealed: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// When a renewal is first tried (see [`renew_at`]).
    pub renew_at: Timestamp,
    pub issued_at: Timestamp,
}

impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("directory", &self.directory)
            .field("names", &self.names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

/// A challenge of an order in progress, answered by every node.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingChallenge {
    pub token: String,
    /// `tls-alpn-01` or `http-01`.
    pub kind: String,
    /// The name being validated.
    pub name: String,
    /// The answer (key authorization, or certificate and key), sealed.
    pub response_sealed: String,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChallenge")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What ACME needs from the database.
#[async_trait]
pub trait AcmeStore {
    async fn acme_account(&self, directory: &str) -> Result<Option<SealedAccount>, StoreError>;
    /// Stores a new account; [`StoreError::Conflict`] when another node
    /// stored one for this directory first (use theirs).
    async fn insert_acme_account(&self, account: &SealedAccount) -> Result<(), StoreError>;
    async fn acme_certificate(
        &self,
        directory: &str,
        names: &str,
    ) -> Result<Option<StoredCertificate>, StoreError>;
    /// Stores a certificate in place of the one for the same directory and
    /// names, unless the stored one is newer (a slower node's order never
    /// replaces a fresher certificate). Returns whether it was stored.
    async fn put_acme_certificate(&self, cert: &StoredCertificate) -> Result<bool, StoreError>;
    /// Claims the next order of `directory` and `names` for `hold` when
    /// no other node holds it and its backoff has passed: one conditional
    /// update. Returns the failures in a row so far, or `None`.
    async fn claim_acme_order(
        &self,
        directory: &str,
        names: &str,
        now: Timestamp,
        hold: Duration,
    ) -> Result<Option<u32>, StoreError>;
    /// Ends the claimed order: `failures` in a row (0 after a success) and
    /// when the next may start.
    async fn end_acme_order(
        &self,
        directory: &str,
        names: &str,
        failures: u32,
        next_try_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// The failures in a row of the orders of `directory` and `names`.
    async fn acme_order_failures(&self, directory: &str, names: &str) -> Result<u32, StoreError>;
    /// The newest-ending certificate of `directory` for other names than
    /// `names`: served while the first order for changed names runs.
    async fn other_acme_certificate(
        &self,
        directory: &str,
        names: &str,
    ) -> Result<Option<StoredCertificate>, StoreError>;
    /// Deletes the certificates of `directory` for other names than
    /// `names` that ended before `before` (a node not yet restarted with
    /// the new names may still serve one that has not).
    async fn delete_other_acme_certificates(
        &self,
        directory: &str,
        names: &str,
        before: Timestamp,
    ) -> Result<(), StoreError>;
    /// Deletes the certificate of `directory` and `names` issued at
    /// `issued_at`, if it is still that one (one that cannot be used).
    async fn delete_acme_certificate(
        &self,
        directory: &str,
        names: &str,
        issued_at: Timestamp,
    ) -> Result<(), StoreError>;
    async fn put_acme_challenge(&self, challenge: &PendingChallenge) -> Result<(), StoreError>;
    /// The challenges not yet expired at `now` (expired ones are deleted).
    async fn acme_challenges(&self, now: Timestamp) -> Result<Vec<PendingChallenge>, StoreError>;
    async fn delete_acme_challenge(&self, token: &str) -> Result<(), StoreError>;
}

/// The names' identity: sorted, lower case, without duplicates.
pub fn names_key(domains: &[String]) -> String {
    let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    names.join(",")
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// at two thirds of its lifetime, moved earlier by up to a twentieth of
/// the lifetime (`jitter` in `[0, 1)`), so that many servers renewing
/// certificates issued at the same moment do not ask at the same moment.
/// (Let's Encrypt's 90-day certificates: between day 55.5 and day 60.)
pub fn renew_at(not_before: Timestamp, not_after: Timestamp, jitter: f64) -> Timestamp {
    let life = (not_after.millis() - not_before.millis()).max(0);
    let jitter = jitter.clamp(0.0, 1.0);
    let early = (life as f64 / 20.0 * jitter) as i64;
    Timestamp(not_before.millis() + life * 2 / 3 - early)
}

/// The first retry after a failed order.
pub const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
/// Retries are never further apart than this.
pub const LONGEST_RETRY: Duration = Duration::from_secs(6 * 3600);
/// An alert is raised while the certificate in service ends within this,
/// or within a sixth of its lifetime when that is shorter (half of what
/// is left when its renewal was due).
pub const EXPIRY_ALERT: Duration = Duration::from_secs(14 * 86_400);
/// With no certificate stored, an alert is raised after this many failed
/// orders in a row (about 35 minutes of trying).
pub const MISSING_AFTER_FAILURES: u32 = 3;

/// Whether a certificate valid from `not_before` to `not_after` is close
/// enough to its end at `now` to alert (see [`EXPIRY_ALERT`]).
pub fn expiring(not_before: Timestamp, not_after: Timestamp, now: Timestamp) -> bool {
    let life = (not_after.millis() - not_before.millis()).max(0);
    let window = (EXPIRY_ALERT.as_millis() as i64).min(life / 6);
    not_after.millis() - now.millis() < window
}

/// How long to wait after the `failures`-th failure in a row (1-based):
/// five minutes, doubling, at most six hours; `jitter` in `[0, 1)` adds
/// up to a fifth more so that nodes and servers spread out.
pub fn retry_after(failures: u32, jitter: f64) -> Duration {
    let base = FIRST_RETRY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(LONGEST_RETRY);
    base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 5.0)
}

/// What the events of certificates are called.
pub mod actions {
    /// A certificate obtained (outcome success) or an order that failed
    /// (outcome failure, with the reason; the certificate in service stays).
    pub const ISSUED: &str = "tls.certificate_issued";
    /// The certificate in service ends within 14 days (outcome failure,
    /// high severity): renewals have been failing.
    pub const EXPIRING: &str = "tls.certificate_expiring";
    /// No certificate could be obtained yet after several orders (outcome
    /// failure, high severity): the generated self-signed one is served.
    pub const MISSING: &str = "tls.certificate_missing";
    pub const ALL: [&str; 3] = [ISSUED, EXPIRING, MISSING];
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime_moved_earlier_by_the_jitter() {
        let born = Timestamp(1_800_000_000_000);
        let end = Timestamp(born.millis() + 90 * DAY);
        assert_eq!(renew_at(born, end, 0.0).millis(), born.millis() + 60 * DAY);
        let earliest = renew_at(born, end, 0.999_999).millis();
        assert!(earliest > born.millis() + 55 * DAY + DAY / 2 - 1000);
        assert!(earliest < born.millis() + 60 * DAY);
        // Out-of-range jitter is clamped, never past the two thirds.
        assert_eq!(renew_at(born, end, -3.0).millis(), born.millis() + 60 * DAY);
        assert!(renew_at(born, end, 7.0).millis() >= born.millis() + 55 * DAY);
        // A certificate whose end precedes its start: renewed at once.
        assert_eq!(renew_at(end, born, 0.0), end);
    }

    #[test]
    fn the_expiry_alert_comes_14_days_before_or_at_a_sixth_of_a_short_lifetime() {
        let born = Timestamp(1_800_000_000_000);
        let end = Timestamp(born.millis() + 90 * DAY);
        assert!(!expiring(born, end, Timestamp(end.millis() - 14 * DAY)));
        assert!(expiring(born, end, Timestamp(end.millis() - 14 * DAY + 1)));
        assert!(expiring(born, end, Timestamp(end.millis() + DAY)));
        // A six-day certificate is not "expiring" the moment it is issued.
        let short = Timestamp(born.millis() + 6 * DAY);
        assert!(!expiring(born, short, born));
        assert!(!expiring(born, short, Timestamp(short.millis() - DAY)));
        assert!(expiring(born, short, Timestamp(short.millis() - DAY + 1)));
    }

    #[test]
    fn retries_double_from_five_minutes_to_at_most_six_hours() {
        assert_eq!(retry_after(1, 0.0), FIRST_RETRY);
        assert_eq!(retry_after(2, 0.0), FIRST_RETRY * 2);
        assert_eq!(retry_after(3, 0.0), FIRST_RETRY * 4);
        assert_eq!(retry_after(30, 0.0), LONGEST_RETRY);
        assert_eq!(retry_after(u32::MAX, 0.0), LONGEST_RETRY);
        assert_eq!(retry_after(0, 0.0), FIRST_RETRY);
        let spread = retry_after(1, 0.999);
        assert!(spread > FIRST_RETRY && spread < FIRST_RETRY.mul_f64(1.2));
    }

    #[test]
    fn names_are_one_identity_whatever_their_order_and_case() {
        let a = names_key(&["www.Example.com".into(), "example.com".into()]);
        let b = names_key(&[
            "example.com".into(),
            "www.example.com".into(),
            "EXAMPLE.com".into(),
        ]);
        assert_eq!(a, "example.com,www.example.com");
        assert_eq!(a, b);
    }

    #[test]
    fn a_stored_certificate_never_prints_its_sealed_key() {
        let c = StoredCertificate {
            directory: "https://ca.test/dir".into(),
            names: "a.test".into(),
            chain_pem: "chain".into(),
            key_sealed: "SEALED-CANARY".into(),
            not_before: Timestamp(0),
            not_after: Timestamp(1),
            renew_at: Timestamp(0),
            issued_at: Timestamp(0),
        };
        assert!(!format!("{c:?}").contains("SEALED-CANARY"));
    }
}
