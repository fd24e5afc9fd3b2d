//! The OpenAPI 3.1 document, generated from the handlers' annotations. A
//! committed copy (`openapi.json` at the repo root) is checked against it.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::{accounts, alerts, backups, blocks, data, events, incident, mfa, routes, scans};

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

/// Adds to every operation the error answers the request frame and the
/// extractors give, so a client (and schemathesis) finds every status it
/// can receive documented. An operation's own description of a status wins.
struct StandardResponses;

impl StandardResponses {
    fn for_operation(op: &Operation, write: bool) -> Vec<(&'static str, &'static str)> {
        let mut out = vec![
            ("408", "The request was not received in time"),
            ("414", "The request target is too long (`uri_too_long`)"),
            ("431", "Too many or too large headers"),
            ("503", "At capacity; retry after the Retry-After seconds"),
            (
                "429",
                "Over the rate limit for this address or credential (`rate_limited`), or, behind a trusted proxy, this client holds its share of connections (`too_many_connections`); retry after the Retry-After seconds",
            ),
        ];
        if op.request_body.is_some() {
            out.extend([
                (
                    "400",
                    "The body is not valid JSON, or the request is not valid HTTP (`malformed_request`) or has not exactly one Host (`invalid_host`)",
                ),
                ("413", "The body is larger than the limit"),
                ("415", "The body is not sent as application/json"),
                ("422", "The body does not match the schema"),
            ]);
        } else {
            out.push(("413", "The body is larger than the limit"));
        }
        let queried = op
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == ParameterIn::Query);
        if queried {
            out.push((
                "400",
                "A query parameter is invalid, or the request is not valid HTTP (`malformed_request`) or has not exactly one Host (`invalid_host`)",
            ));
        }
        out.push((
            "400",
            "The request is not valid HTTP (`malformed_request`) or has not exactly one Host (`invalid_host`)",
        ));
        if op.security.is_some() {
            out.push(("401", "No valid session"));
        }
        out.push(if write && op.security.is_some() {
            (
                "403",
                "Refused by the guard (`address_denied`, `address_blocked`, `request_blocked`), or a cookie-authenticated write without the CSRF header or an allowed Origin",
            )
        } else {
            (
                "403",
                "Refused by the guard: the address is not allowed or is blocked (`address_denied`, `address_blocked`), or the request looks like an attack (`request_blocked`)",
            )
        });
        out
    }
}

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let admin = path.starts_with("/api/v1/admin/");
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (op, write) in ops {
                let Some(op) = op else { continue };
                let mut standard = Self::for_operation(op, write);
                if admin && write {
                    standard.push((
                        "423",
                        "While the deployment is locked down: administrative changes are frozen (`lockdown_frozen`), and the incident's own actions are its break-glass administrator's (`break_glass_only`)",
                    ));
                }
                for (status, description) in standard {
                    if op.responses.responses.contains_key(status) {
                        continue;
                    }
                    let problem = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build();
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content("application/problem+json", problem)
                        .build();
                    op.responses
                        .responses
                        .insert(status.to_owned(), response.into());
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Rampart API", description = "Accounts, sessions, second factors, protected data collections and security events over HTTPS. Every error is application/problem+json with a stable `code`."),
    paths(
        routes::healthz, routes::readyz, routes::register, routes::login, routes::logout, routes::password_check, routes::admin_settings, routes::admin_certificate,
        routes::me, routes::change_password, routes::my_sessions, routes::my_sign_ins, routes::revoke_session,
        routes::setup, events::admin_events, events::event_counts, events::event_proof, routes::create_invite, routes::unlock_account,
        mfa::login_challenge, mfa::complete_login, mfa::step_up_challenge, mfa::step_up,
        mfa::status, mfa::enrol_totp, mfa::confirm_totp, mfa::enrol_email, mfa::confirm_email,
        mfa::enrol_sms, mfa::confirm_sms, mfa::enrol_passkey, mfa::confirm_passkey, mfa::remove,
        mfa::regenerate_recovery_codes, mfa::admin_reset,
        data::list_collections, data::create_collection, data::get_collection,
        data::update_collection, data::delete_collection, data::create_record, data::list_records,
        data::get_record, data::reveal_field, data::update_record, data::delete_record, data::create_api_key,
        data::list_api_keys, data::revoke_api_key, data::get_roles, data::set_roles,
        data::data_events, data::key_status,
        blocks::create_block, blocks::list_blocks, blocks::remove_block,
        scans::list_scans, scans::get_scan, backups::backup_status,
        alerts::list_alerts, alerts::get_alert, alerts::acknowledge, alerts::resolve,
        alerts::confirm, alerts::undo,
        incident::status, incident::lockdown, incident::lift, incident::plan,
        accounts::request_password_reset, accounts::confirm_password_reset,
        accounts::verify_email, accounts::resend_verification, accounts::confirm_email_change,
        accounts::undo_email_change, accounts::request_email_change, accounts::delete_me,
        accounts::export_me, accounts::list_accounts, accounts::get_account,
        accounts::disable_account, accounts::enable_account, accounts::delete_account,
        accounts::end_sessions, accounts::require_password_reset,
    ),
    modifiers(&BearerAuth, &StandardResponses),
    tags((name = "auth"), (name = "me"), (name = "mfa"), (name = "admin"), (name = "collections"), (name = "records"), (name = "api-keys"), (name = "setup"), (name = "guard"), (name = "scans"), (name = "alerts"), (name = "incident"), (name = "health"))
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
