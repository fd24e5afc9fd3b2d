//! Rampart's scanner: input in, findings out.
//!
//! - [`posture`]: `scan self`, this deployment's settings, files,
//!   certificate and accounts;
//! - [`advisory`]: `scan deps`, a `Cargo.lock` against the RustSec
//!   advisory database (a copy ships in the binary);
//! - [`url`]: `scan url`, any HTTPS server's [`tls`] (protocols, suites,
//!   certificate, an SSL Labs-style grade), [`headers`] (an MDN
//!   Observatory-style score) and [`exposure`] (well-known sensitive paths);
//! - [`report`] and [`render`]: findings, and the terminal, JSON, SARIF
//!   and HTML forms of a report.
//!
//! The crate touches the network only in `url` and `tls`, and the disk only
//! to read advisories, lock files, certificates and file metadata. It never
//! opens the database: the binary gathers [`posture::SelfFacts`].

pub mod advisory;
pub mod exposure;
pub mod headers;
pub mod posture;
pub mod render;
pub mod report;
pub mod tls;
pub mod url;

pub use report::{Finding, Progress, Quiet, Report, ScanKind, Severity, Skipped};
