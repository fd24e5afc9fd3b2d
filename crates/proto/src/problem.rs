//! RFC 9457 problem details, the one error format of the API.

use serde::Serialize;
use utoipa::ToSchema;

/// An error response (`application/problem+json`).
///
/// `code` is stable and meant for programs; `title` and `detail` are for
/// people. Neither ever contains secrets, stored data or internals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:rampart:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `weak_password`.
    pub code: String,
    /// The request id to quote when asking for help.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For `weak_password`, `invalid_record` and `invalid_schema`: every
    /// rule that failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// For `weak_password`: how to choose a stronger password.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
}

/// One failed rule, with a stable code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Violation {
    pub code: String,
    pub message: String,
    /// The field a record or schema problem is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: u16, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:rampart:problem:{code}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            request_id: None,
            violations: Vec::new(),
            suggestions: Vec::new(),
        }
    }
}
