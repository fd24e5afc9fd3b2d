//! Rampart's HTTP side: the TLS listener, the router, the middleware frame
//! around every request, the extractors that enforce authentication, and
//! the one error-to-response mapping. No SQL here.

pub mod accounts;
pub mod alerts;
pub mod backups;
pub mod blocks;
pub mod conns;
pub mod console;
pub mod data;
pub mod error;
pub mod events;
pub mod extract;
pub mod guard;
pub mod idle;
pub mod incident;
pub mod metrics;
pub mod mfa;
pub mod middleware;
pub mod openapi;
pub mod redirect;
pub mod routes;
pub mod scans;
pub mod server;
pub mod state;
pub mod tls;
pub mod wire;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

pub use state::{AppState, HttpSettings, Limits};

/// Builds the application router with its middleware frame.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/openapi.json", get(routes::openapi))
        .route("/auth/register", post(routes::register))
        .route("/auth/login", post(routes::login))
        .route("/auth/logout", post(routes::logout))
        .route("/auth/password-check", post(routes::password_check))
        .route("/auth/mfa", post(mfa::complete_login))
        .route("/auth/mfa/challenge", post(mfa::login_challenge))
        .route(
            "/auth/password-reset",
            post(accounts::request_password_reset),
        )
        .route(
            "/auth/password-reset/confirm",
            post(accounts::confirm_password_reset),
        )
        .route("/auth/verify-email", post(accounts::verify_email))
        .route(
            "/auth/verify-email/resend",
            post(accounts::resend_verification),
        )
        .route(
            "/auth/email-change/confirm",
            post(accounts::confirm_email_change),
        )
        .route("/auth/email-change/undo", post(accounts::undo_email_change))
        .route("/auth/step-up", post(mfa::step_up))
        .route("/auth/step-up/challenge", post(mfa::step_up_challenge))
        .route("/me/mfa", get(mfa::status))
        .route("/me/mfa/totp", post(mfa::enrol_totp))
        .route("/me/mfa/totp/confirm", post(mfa::confirm_totp))
        .route("/me/mfa/email", post(mfa::enrol_email))
        .route("/me/mfa/email/confirm", post(mfa::confirm_email))
        .route("/me/mfa/sms", post(mfa::enrol_sms))
        .route("/me/mfa/sms/confirm", post(mfa::confirm_sms))
        .route("/me/mfa/webauthn", post(mfa::enrol_passkey))
        .route("/me/mfa/webauthn/confirm", post(mfa::confirm_passkey))
        .route(
            "/me/mfa/recovery-codes",
            post(mfa::regenerate_recovery_codes),
        )
        .route("/me/mfa/{id}", delete(mfa::remove))
        .route("/me", get(routes::me).delete(accounts::delete_me))
        .route("/me/email", post(accounts::request_email_change))
        .route("/me/export", get(accounts::export_me))
        .route("/me/password", post(routes::change_password))
        .route("/me/sessions", get(routes::my_sessions))
        .route("/me/sign-ins", get(routes::my_sign_ins))
        .route("/me/sessions/{id}", delete(routes::revoke_session))
        .route("/setup", post(routes::setup))
        .route("/admin/events", get(events::admin_events))
        .route("/admin/settings", get(routes::admin_settings))
        .route("/admin/certificate", get(routes::admin_certificate))
        .route("/admin/events/counts", get(events::event_counts))
        .route("/admin/events/{id}/proof", get(events::event_proof))
        .route("/admin/invites", post(routes::create_invite))
        .route("/admin/accounts", get(accounts::list_accounts))
        .route(
            "/admin/accounts/{id}",
            get(accounts::get_account).delete(accounts::delete_account),
        )
        .route(
            "/admin/accounts/{id}/disable",
            post(accounts::disable_account),
        )
        .route(
            "/admin/accounts/{id}/enable",
            post(accounts::enable_account),
        )
        .route(
            "/admin/accounts/{id}/sessions",
            delete(accounts::end_sessions),
        )
        .route(
            "/admin/accounts/{id}/password-reset",
            post(accounts::require_password_reset),
        )
        .route("/admin/accounts/{id}/unlock", post(routes::unlock_account))
        .route("/admin/accounts/{id}/mfa/reset", post(mfa::admin_reset))
        .route(
            "/admin/accounts/{id}/roles",
            get(data::get_roles).put(data::set_roles),
        )
        .route(
            "/admin/collections",
            get(data::list_collections).post(data::create_collection),
        )
        .route(
            "/admin/collections/{name}",
            get(data::get_collection)
                .patch(data::update_collection)
                .delete(data::delete_collection),
        )
        .route(
            "/admin/api-keys",
            get(data::list_api_keys).post(data::create_api_key),
        )
        .route("/admin/api-keys/{id}", delete(data::revoke_api_key))
        .route("/admin/data-events", get(data::data_events))
        .route("/admin/keys", get(data::key_status))
        .route(
            "/admin/blocks",
            get(blocks::list_blocks).post(blocks::create_block),
        )
        .route("/admin/blocks/{id}", delete(blocks::remove_block))
        .route("/admin/alerts", get(alerts::list_alerts))
        .route("/admin/alerts/{id}", get(alerts::get_alert))
        .route("/admin/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/admin/alerts/{id}/resolve", post(alerts::resolve))
        .route("/admin/alerts/{id}/confirm", post(alerts::confirm))
        .route("/admin/alerts/{id}/undo", post(alerts::undo))
        .route("/admin/backups", get(backups::backup_status))
        .route("/admin/incident", get(incident::status))
        .route("/admin/incident/lockdown", post(incident::lockdown))
        .route("/admin/incident/lift", post(incident::lift))
        .route("/admin/incident/plan", get(incident::plan))
        .route("/admin/scans", get(scans::list_scans))
        .route("/admin/scans/{id}", get(scans::get_scan))
        .route(
            "/collections/{name}/records",
            get(data::list_records).post(data::create_record),
        )
        .route(
            "/collections/{name}/records/{id}",
            get(data::get_record)
                .patch(data::update_record)
                .delete(data::delete_record),
        )
        .route(
            "/collections/{name}/records/{id}/reveal",
            get(data::reveal_field),
        );
    Router::new()
        .nest("/api/v1", api)
        .merge(console::routes())
        .route("/", get(routes::index))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.limits.body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::frame,
        ))
        .with_state(state)
}
