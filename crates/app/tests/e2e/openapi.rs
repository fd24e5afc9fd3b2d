//! Requirement 4: the OpenAPI document is served, and the committed copy
//! matches what the code generates.

use crate::support::*;

#[tokio::test]
async fn committed_openapi_matches_the_generated_document() {
    let generated = rampart_http::openapi::document();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is out of date: run `cargo run -- openapi > openapi.json`"
    );
    let v: serde_json::Value = serde_json::from_str(generated).unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/me/sessions",
        "/api/v1/me/sessions/{id}",
        "/api/v1/setup",
        "/api/v1/admin/events",
        "/api/v1/healthz",
        "/api/v1/readyz",
    ] {
        assert!(v["paths"][p].is_object(), "{p} undocumented");
    }
    let s = TestServer::start().await;
    let served = s
        .client
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "application/json");
    assert_eq!(served.text().await.unwrap(), generated);
}

#[tokio::test]
async fn health_and_readiness() {
    let s = TestServer::start().await;
    for p in ["/healthz", "/readyz", "/api/v1/healthz", "/api/v1/readyz"] {
        let r = s.client.get(s.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
    let token = s.user("ready@example.com").await;
    s.running().auth.store().close().await;
    let r = s.client.get(s.url("/api/v1/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "database gone");
    // Requests that need the database get 503 with Retry-After, not 500.
    let r = s.get_auth("/api/v1/me", &token).await;
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, 503, "database_unavailable").await;
    let r = s.client.get(s.url("/api/v1/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still alive");
}
