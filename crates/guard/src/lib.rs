//! The guard's decisions, free of I/O: which addresses a rule covers
//! (`net`), whether a request looks like an attack (`inspect`), token
//! buckets per client (`rate`), and the folding of repeated events into
//! counts (`aggregate`), and who may hold the server's connections
//! (`conn`). `rampart-http` runs them in front of every
//! request; the stored blocks live in the database behind `core::Store`.

pub mod aggregate;
pub mod conn;
pub mod failures;
pub mod inspect;
pub mod net;
pub mod rate;

pub use inspect::{Category, Finding, Inspector, Part, Verdict};
pub use net::{client_address, ForwardedHeader, NetList};
