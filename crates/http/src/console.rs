//! The console and the hosted pages (ADR 0017): hand-written HTML, one
//! stylesheet and one script, compiled into the binary. The pages call the
//! public API like any other client; this module only serves files.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The policy of every page: scripts and styles from this origin only, no
/// inline code, no eval, nothing fetched from elsewhere. `data:` images
/// are the TOTP QR code, shown as an `<img>` so its markup cannot run.
pub const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'";

/// The console's sections: `/console/<section>`, one shell page each.
pub const SECTIONS: [&str; 11] = [
    "accounts",
    "collections",
    "events",
    "alerts",
    "firewall",
    "scanner",
    "backups",
    "incident",
    "api-keys",
    "settings",
    "dashboard",
];

const SCRIPT: &[u8] = include_bytes!("../console/console.js");
const STYLE: &[u8] = include_bytes!("../console/console.css");
const SIGN_IN: &[u8] = include_bytes!("../console/sign-in.html");
const SETUP: &[u8] = include_bytes!("../console/setup.html");
const VERIFY_EMAIL: &[u8] = include_bytes!("../console/verify-email.html");
const RESET_PASSWORD: &[u8] = include_bytes!("../console/reset-password.html");
const EMAIL_CHANGE: &[u8] = include_bytes!("../console/email-change.html");
const ACCOUNT: &[u8] = include_bytes!("../console/account.html");
const CONSOLE: &[u8] = include_bytes!("../console/console.html");

/// The page routes, merged into the router beside `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(|| async { page(SIGN_IN) }))
        .route("/setup", get(|| async { page(SETUP) }))
        .route("/verify-email", get(|| async { page(VERIFY_EMAIL) }))
        .route("/reset-password", get(|| async { page(RESET_PASSWORD) }))
        .route("/confirm-email", get(|| async { page(EMAIL_CHANGE) }))
        .route("/undo-email-change", get(|| async { page(EMAIL_CHANGE) }))
        .route("/account", get(|| async { Redirect::to("/account/") }))
        .route("/account/", get(|| async { page(ACCOUNT) }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { page(CONSOLE) }))
        .route("/console/{section}", get(section))
        .route(
            "/assets/console.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/console.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

async fn section(Path(name): Path<String>) -> Response {
    if SECTIONS.contains(&name.as_str()) {
        page(CONSOLE)
    } else {
        ApiError::not_found().into_response()
    }
}

/// Marks an answer as a console page: the frame gives it [`PAGE_POLICY`]
/// instead of the API's policy (`middleware::add_security_headers`).
#[derive(Debug, Clone, Copy)]
pub struct Page;

fn page(body: &'static [u8]) -> Response {
    let mut res = asset(body, "text/html; charset=utf-8");
    res.extensions_mut().insert(Page);
    res
}

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy the issue asks for: no inline or eval'd script, scripts
    /// from this origin only.
    #[test]
    fn the_page_policy_is_strict() {
        assert!(!PAGE_POLICY.contains("unsafe-"));
        assert!(PAGE_POLICY.contains("script-src 'self'"));
        assert!(PAGE_POLICY.starts_with("default-src 'none'"));
        assert!(PAGE_POLICY.contains("frame-ancestors 'none'"));
    }

    /// Nothing in the pages runs inline or comes from elsewhere: no
    /// `<script>` without `src`, no `style=` or `on…=` attribute, no
    /// absolute URL to another origin.
    #[test]
    fn pages_hold_no_inline_code_and_no_foreign_url() {
        for body in [
            SIGN_IN,
            SETUP,
            VERIFY_EMAIL,
            RESET_PASSWORD,
            EMAIL_CHANGE,
            ACCOUNT,
            CONSOLE,
        ] {
            let html = std::str::from_utf8(body).unwrap();
            for (i, _) in html.match_indices("<script") {
                let tag = &html[i..i + html[i..].find('>').unwrap()];
                assert!(tag.contains("src=\"/assets/"), "inline script: {tag}");
            }
            assert!(!html.contains("<style"), "inline style");
            assert!(!html.contains(" style="), "style attribute");
            let lower = html.to_ascii_lowercase();
            assert!(
                !lower.contains(" onclick")
                    && !lower.contains(" onload")
                    && !lower.contains(" onsubmit"),
                "inline handler"
            );
            assert!(
                !lower.contains("http://") && !lower.contains("https://"),
                "foreign URL"
            );
        }
        let script = std::str::from_utf8(SCRIPT).unwrap();
        // Markup from data never becomes HTML: every text goes through
        // textContent.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!script.contains(sink), "the script uses {sink}");
        }
    }
}
