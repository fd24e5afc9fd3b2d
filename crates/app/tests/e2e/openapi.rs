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

/// Every `/api/v1/…` path the docs, fix texts, error details and notices
/// name, with `{a,b}` alternatives expanded; placeholders and `…` as they
/// are. Test sources are left out (they name made-up paths on purpose).
fn named_paths() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![
        root.join("README.md"),
        root.join("ARCHITECTURE.md"),
        root.join("security/README.md"),
        root.join("bench/README.md"),
    ];
    let mut dirs = vec![root.join("docs/adr"), root.join("crates")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            if p.is_dir() {
                if !["tests", "target", "benches", "examples"].contains(&name.as_str()) {
                    dirs.push(p);
                }
            } else if (name.ends_with(".md") || name.ends_with(".rs")) && name != "tests.rs" {
                files.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests at the end of a source file name made-up paths.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for (i, _) in text.match_indices("/api/v1/") {
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_{}/,.-…".contains(*c))
                .collect();
            let path = path.trim_end_matches(['.', ',', '/']);
            if path.contains('…') || path.contains("..") {
                continue;
            }
            let alternatives: Vec<String> = match (path.find('{'), path.find('}')) {
                (Some(a), Some(b)) if a < b && path[a..b].contains(',') => path[a + 1..b]
                    .split(',')
                    .map(|alt| format!("{}{alt}{}", &path[..a], &path[b + 1..]))
                    .collect(),
                _ => vec![path.to_owned()],
            };
            for p in alternatives {
                out.push((p, f.display().to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `{id}` and `{name}` as one shape, for comparing paths.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_the_docs_and_messages_name_exists_and_is_documented() {
    let doc: serde_json::Value = serde_json::from_str(rampart_http::openapi::document()).unwrap();
    let documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| shape(p))
        .collect();
    let s = TestServer::start().await;
    let named = named_paths();
    assert!(named.len() > 50, "the docs name routes: {}", named.len());
    let mut missing = Vec::new();
    for (path, file) in &named {
        let shaped = shape(path);
        // A group of routes (`/api/v1/admin`), named as a prefix.
        if documented
            .iter()
            .any(|d| d.starts_with(&format!("{shaped}/")))
        {
            continue;
        }
        // Placeholders filled in; the router answers anything but its
        // fallback's 404 and 405 for a route that exists.
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let mut routed = false;
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let r = s
                .client
                .request(method.parse().unwrap(), s.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            let fallback = (status == 404 && body.contains("\"not_found\"")) || status == 405;
            if !fallback {
                routed = true;
                break;
            }
        }
        let in_doc = documented.iter().any(|d| {
            d == &shaped
                || (d.split('/').count() == shaped.split('/').count()
                    && d.split('/')
                        .zip(shaped.split('/'))
                        .all(|(a, b)| a == b || a == "{}"))
        }) || path == "/api/v1/openapi.json";
        if !routed || !in_doc {
            missing.push(format!(
                "{path} (in {file}): {}",
                if routed {
                    "not in the OpenAPI document"
                } else {
                    "no such route"
                }
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
