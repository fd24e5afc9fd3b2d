//! Newtyped identifiers, so an account id can never be passed where a
//! session id is expected.

use crate::crypto_random_id;
use rampart_crypto::Entropy;

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            pub fn generate(entropy: &dyn Entropy) -> Self {
                Self(format!(concat!($prefix, "_{}"), crypto_random_id(entropy)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(AccountId, "acc");
id_type!(SessionId, "ses");
id_type!(EventId, "evt");
id_type!(FactorId, "mfa");
