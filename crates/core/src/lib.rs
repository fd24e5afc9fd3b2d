//! Rampart's domain: accounts, the password policy, sessions, security
//! events, and the traits the outside world is reached through (storage,
//! clock, randomness). No SQL and no HTTP here.

pub mod acme;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod data;
pub mod email;
pub mod error;
pub mod events;
pub mod hashing;
pub mod ids;
pub mod incident;
pub mod lifecycle;
pub mod mfa;
pub mod model;
pub mod notify;
pub mod password_policy;
pub mod store;

pub use auth::{AuthConfig, AuthService, BruteForcePolicy, RegistrationMode, RequestMeta};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use email::Email;
pub use error::Error;
pub use ids::{AccountId, EventId, FactorId, SessionId};
pub use model::{Account, Role, Session};
pub use store::{
    AdminPosture, ApiKeyPosture, Confirmed, FactorRemoval, IpBlock, LoginAttempt, ScanReportRow,
    Settle, Store, StoreError,
};

/// 128 random bits, lowercase hex: the body of every generated id.
pub(crate) fn crypto_random_id(entropy: &dyn rampart_crypto::Entropy) -> String {
    let mut b = [0u8; 16];
    entropy.fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
