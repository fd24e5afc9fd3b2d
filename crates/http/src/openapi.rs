//! The OpenAPI 3.1 document, generated from the handlers' annotations. A
//! committed copy (`openapi.json` at the repo root) is checked against it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Rampart API", description = "Accounts, sessions and security events over HTTPS. Every error is application/problem+json with a stable `code`."),
    paths(
        routes::healthz, routes::readyz, routes::register, routes::login, routes::logout,
        routes::me, routes::change_password, routes::my_sessions, routes::revoke_session,
        routes::setup, routes::admin_events, routes::create_invite,
    ),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "me"), (name = "admin"), (name = "setup"), (name = "health"))
)]
struct ApiDoc;

/// The document as pretty JSON, with a trailing newline. Built once.
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut s = doc.to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}
