//! The domain's errors, named for what went wrong. The HTTP layer maps each
//! to one status and stable code; none carries input or secrets.

use crate::password_policy::Rejection;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid email address")]
    InvalidEmail,
    #[error("invalid display name")]
    InvalidDisplayName,
    #[error("password does not meet the policy")]
    WeakPassword(Rejection),
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("not authenticated")]
    Unauthenticated,
    #[error("session expired")]
    SessionExpired,
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("invite required or invalid")]
    InvalidInvite,
    #[error("setup token invalid, used or expired")]
    InvalidSetupToken,
    #[error("setup already completed")]
    SetupComplete,
    #[error("password hashing is saturated")]
    Busy,
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Error::EmailTaken,
            StoreError::Unavailable(detail) => Error::Unavailable(detail),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<crate::hashing::PoolError> for Error {
    fn from(e: crate::hashing::PoolError) -> Self {
        match e {
            crate::hashing::PoolError::Busy => Error::Busy,
            other => Error::Internal(other.to_string()),
        }
    }
}
