//! The HTTP API's request and response types, its stable error codes, and
//! the problem+json error body. No I/O lives here.

pub mod api;
pub mod problem;

pub use api::*;
pub use problem::{Problem, Violation};
