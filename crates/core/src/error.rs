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
    #[error("mfa token invalid, used or expired")]
    MfaTokenInvalid,
    #[error("wrong second-factor code or assertion")]
    InvalidMfaCode,
    #[error("too many failed second-factor checks")]
    MfaLocked { retry_after: u64 },
    #[error("method not allowed here or not enrolled")]
    MethodUnavailable,
    #[error("this method has nothing to send")]
    NothingToSend,
    #[error("too many codes sent")]
    TooManyCodes { retry_after: u64 },
    #[error("the code could not be delivered")]
    DeliveryFailed,
    #[error("a recent proof of identity is required")]
    StepUpRequired,
    #[error("a second factor must be enrolled first")]
    MfaEnrollmentRequired,
    #[error("an account with a second factor steps up with it")]
    FactorRequired,
    #[error("the last factor cannot be removed")]
    LastFactor,
    #[error("no enrolment is waiting for confirmation")]
    NoPendingEnrolment,
    #[error("invalid phone number")]
    InvalidPhone,
    #[error("invalid factor name")]
    InvalidFactorName,
    #[error("no second factor is enrolled")]
    MfaNotEnabled,
    #[error("administrators cannot reset their own factors")]
    SelfReset,
    #[error("this passkey is registered already")]
    PasskeyRegistered,
    #[error("the master key is not the one this database was sealed with")]
    MasterKeyMismatch,
    #[error("invalid collection schema")]
    InvalidSchema(Vec<crate::data::schema::FieldProblem>),
    #[error("the record does not match the schema")]
    InvalidRecord(Vec<crate::data::schema::FieldProblem>),
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("a collection with this name exists")]
    CollectionExists,
    #[error("{0} stored records violate the new schema")]
    SchemaViolated(u64),
    #[error("the collection is in use: {0}")]
    CollectionInUse(String),
    #[error("another record has this value in a unique field")]
    Duplicate(String),
    #[error("a reference points to a record that does not exist")]
    MissingReference(String),
    #[error("the record changed since it was read")]
    VersionMismatch,
    #[error("invalid API key request: {0}")]
    InvalidApiKey(String),
    #[error("API key invalid, revoked or expired")]
    ApiKeyInvalid,
    #[error("API key not allowed from this address")]
    ApiKeyIpRefused,
    #[error("invalid role")]
    InvalidRole,
    #[error("invalid incident order: {0}")]
    InvalidIncident(String),
    #[error("a lockdown is in force already")]
    LockdownInForce,
    #[error("administrative changes are frozen by the lockdown")]
    LockdownFrozen,
    #[error("only the break-glass administrator handles the incident")]
    BreakGlassOnly,
    #[error("reset code invalid, used or expired")]
    InvalidResetToken,
    #[error("verification link or code invalid, used or expired")]
    InvalidVerification,
    #[error("email link invalid, used or expired")]
    InvalidEmailLink,
    #[error("an administrator's reset needs the second factor")]
    ResetNeedsFactor,
    #[error("the address is the account's already")]
    EmailUnchanged,
    #[error("it would leave no administrator")]
    LastAdmin,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the address is not verified")]
    EmailUnverified,
    #[error("no email delivery is configured")]
    NoEmailDelivery,
    #[error("not on one's own account")]
    OwnAccount,
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
            StoreError::StaleMaster => {
                Error::Unavailable("the master key was rotated meanwhile; retry".into())
            }
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
