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

/// Sends each documented operation the bad requests every client can make
/// (no session, malformed JSON, wrong content type, a body of the wrong
/// shape, a bad query) and checks that each status it answers is documented
/// for that operation, with a problem+json body.
#[tokio::test]
async fn every_error_status_answered_is_documented() {
    let doc: serde_json::Value = serde_json::from_str(rampart_http::openapi::document()).unwrap();
    let s = TestServer::start().await;
    let user = s.user("doc@example.com").await;
    let admin = s.admin().await;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let url = s.url(&path.replace("{id}", "ses_0"));
        for (method, op) in ops.as_object().unwrap() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let with_body = op.get("requestBody").is_some();
            let mut requests = vec![s.client.request(method.clone(), &url)];
            if with_body {
                let bearer = format!("Bearer {user}");
                for (ctype, body) in [
                    ("application/json", "{\"x\":"),
                    ("text/plain", "hello"),
                    ("application/json", "{\"unexpected\": 1}"),
                ] {
                    requests.push(
                        s.client
                            .request(method.clone(), &url)
                            .header("authorization", &bearer)
                            .header("content-type", ctype)
                            .body(body),
                    );
                }
            }
            if op.get("parameters").is_some() {
                requests.push(
                    s.client
                        .request(method.clone(), format!("{url}?limit=0"))
                        .header("authorization", format!("Bearer {admin}")),
                );
            }
            for request in requests {
                let r = request.send().await.unwrap();
                let status = r.status().as_u16().to_string();
                if r.status().is_success() {
                    continue;
                }
                assert!(
                    op["responses"].get(&status).is_some(),
                    "{method} {path} answered {status}, which its document does not list"
                );
                assert_eq!(
                    r.headers()["content-type"],
                    "application/problem+json",
                    "{method} {path}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} error answers checked");
}
