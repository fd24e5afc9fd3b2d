//! Requirement 7: every bad input is a 4xx problem+json, nothing is stored.

use serde_json::json;

use crate::support::*;

async fn raw_post(s: &TestServer, path: &str, ct: &str, body: Vec<u8>) -> reqwest::Response {
    s.client
        .post(s.url(path))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies_get_problem_json() {
    let s = TestServer::start().await;
    let reg = "/api/v1/auth/register";
    problem(
        raw_post(&s, reg, "application/json", b"{\"email\":".to_vec()).await,
        400,
        "malformed_json",
    )
    .await;
    problem(
        raw_post(&s, reg, "application/json", b"not json".to_vec()).await,
        400,
        "malformed_json",
    )
    .await;
    problem(
        raw_post(&s, reg, "application/json", b"".to_vec()).await,
        400,
        "malformed_json",
    )
    .await;
    problem(
        raw_post(
            &s,
            reg,
            "application/json",
            b"{\"email\":\"\xff\xfe\",\"password\":\"x\"}".to_vec(),
        )
        .await,
        400,
        "invalid_utf8",
    )
    .await;
    let v = problem(
        raw_post(
            &s,
            reg,
            "application/json",
            br#"{"email":42,"password":"Secret-Canary-99!"}"#.to_vec(),
        )
        .await,
        422,
        "invalid_body",
    )
    .await;
    assert!(!v.to_string().contains("Secret-Canary"));
    let v = problem(
        raw_post(
            &s,
            reg,
            "application/json",
            br#"{"email":"a@example.com","password":"x","admin":true}"#.to_vec(),
        )
        .await,
        422,
        "invalid_body",
    )
    .await;
    assert!(v["detail"].as_str().unwrap().contains("`admin`"), "{v}");
    let v = problem(
        raw_post(
            &s,
            reg,
            "application/json",
            br#"{"email":"a@example.com"}"#.to_vec(),
        )
        .await,
        422,
        "invalid_body",
    )
    .await;
    assert!(v["detail"].as_str().unwrap().contains("`password`"), "{v}");
    problem(
        raw_post(
            &s,
            reg,
            "application/x-www-form-urlencoded",
            b"email=a&password=b".to_vec(),
        )
        .await,
        415,
        "unsupported_media_type",
    )
    .await;
    problem(
        raw_post(&s, reg, "text/plain", b"{}".to_vec()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let r = s.client.post(s.url(reg)).body("{}").send().await.unwrap();
    problem(r, 415, "unsupported_media_type").await;
    // Wrong-typed display name and a password that is not a string.
    problem(
        s.post(reg, json!({"email": "a@example.com", "password": ["x"]}))
            .await,
        422,
        "invalid_body",
    )
    .await;
    // Nothing was created by any of these.
    let r = s
        .post(
            "/api/v1/auth/login",
            json!({"email": "a@example.com", "password": "x"}),
        )
        .await;
    problem(r, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let s = TestServer::start().await;
    let big = format!(
        r#"{{"email":"a@example.com","password":"{}"}}"#,
        "A".repeat(1024 * 1024 + 10)
    );
    let r = raw_post(
        &s,
        "/api/v1/auth/register",
        "application/json",
        big.into_bytes(),
    )
    .await;
    problem(r, 413, "body_too_large").await;
    // Chunked (no Content-Length) is bounded too.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..20)
        .map(|_| Ok(bytes::Bytes::from(vec![b' '; 64 * 1024])))
        .collect();
    let r = s
        .client
        .post(s.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    problem(r, 413, "body_too_large").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_json() {
    let s = TestServer::start().await;
    problem(
        s.client.get(s.url("/api/v1/nothing")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    // A probe for a system file is refused by the guard before routing.
    problem(
        s.client
            .get(s.url("/../../etc/passwd"))
            .send()
            .await
            .unwrap(),
        403,
        "request_blocked",
    )
    .await;
    problem(
        s.client
            .get(s.url("/api/v1/auth/login"))
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    problem(
        s.client.put(s.url("/api/v1/me")).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn bad_query_parameters_get_400() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    for q in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "since=yesterday",
        "since=",
        "until=",
        "type=nope",
        "cursor=%%%",
        "bogus=1",
    ] {
        let r = s
            .get_auth(&format!("/api/v1/admin/events?{q}"), &admin)
            .await;
        problem(r, 400, "invalid_query").await;
    }
}

#[tokio::test]
async fn hostile_inputs_never_cause_a_500() {
    let s = TestServer::start().await;
    let token = s.user("fuzz@example.com").await;
    let bodies = [
        json!({"email": "x' OR '1'='1", "password": "' OR 1=1 --"}),
        json!({"email": "a@example.com\u{0000}", "password": "\u{0000}"}),
        json!({"email": "é@ü.example", "password": "🦀".repeat(300)}),
        json!({"email": "a@example.com", "password": STRONG, "display_name": "\u{202e}evil"}),
        json!({"email": "a@example.com", "password": STRONG, "display_name": " padded "}),
        json!({"email": "a@example.com", "password": STRONG, "display_name": "x".repeat(101)}),
        json!({"email": "a@example.com", "password": STRONG, "display_name": "line\nbreak"}),
        json!({"email": "a".repeat(400) + "@example.com", "password": STRONG}),
        json!([1, 2, 3]),
        json!(null),
        json!("string"),
    ];
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/setup",
        "/api/v1/me/password",
    ] {
        for b in &bodies {
            let r = s.post_auth(path, &token, b.clone()).await;
            let st = r.status().as_u16();
            assert!((400..500).contains(&st) || st == 201, "{path} {b} -> {st}");
            if st != 201 {
                assert_eq!(r.headers()["content-type"], "application/problem+json");
            }
        }
    }
    let r = s
        .client
        .delete(s.url("/api/v1/me/sessions/%00%ff"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // A path that does not decode to text is the guard's to refuse.
    problem(r, 403, "request_blocked").await;
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/me/sessions/{}", "x".repeat(5000))))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    // Odd Authorization headers.
    for h in [
        "Bearer",
        "Bearer ",
        "Basic abc",
        "bearer \u{7f}",
        &format!("Bearer {}", "a".repeat(4000)),
    ] {
        let r = s
            .client
            .get(s.url("/api/v1/me"))
            .header("authorization", h)
            .send()
            .await;
        if let Ok(r) = r {
            assert_eq!(r.status(), 401, "{h}");
        }
    }
}
