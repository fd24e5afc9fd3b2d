//! Issue 5: protected data. Collections and schemas, least privilege, API
//! keys, encryption at rest with rotation, data-access events; each on a
//! fresh SQLite file and on a fresh PostgreSQL schema.

use std::sync::Arc;

use reqwest::Response;
use serde_json::{json, Value};

use rampart_core::Clock;

use crate::support::*;

/// Runs `f` on SQLite and on PostgreSQL (when reachable; required in CI).
macro_rules! both {
    ($sqlite:ident, $pg:ident, $body:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(TestServer::start().await).await;
        }

        #[tokio::test]
        async fn $pg() {
            let Some(url) = fresh_pg_schema().await else {
                return;
            };
            $body(
                TestServer::with(Options {
                    db: Db::Postgres(url),
                    ..Options::default()
                })
                .await,
            )
            .await;
        }
    };
}

/// The README's example: a customers collection with a sensitive,
/// searchable, unique `email` and a `tax_id` only administrators read.
fn customers() -> Value {
    json!({
        "name": "customers",
        "fields": {
            "name": {"type": "text", "required": true, "max_length": 100},
            "email": {"type": "email", "required": true, "sensitive": true, "searchable": true, "unique": true},
            "tax_id": {"type": "text", "sensitive": true, "read": ["admin"], "pattern": "[A-Z0-9-]{4,20}"},
            "tier": {"type": "enum", "values": ["free", "pro"]},
            "spend": {"type": "number", "min": 0},
            "visits": {"type": "integer", "min": 0},
            "vip": {"type": "boolean"},
            "since": {"type": "datetime"},
            "site": {"type": "url"},
            "notes": {"type": "text", "multiline": true},
            "meta": {"type": "json", "max_depth": 3, "max_bytes": 200}
        }
    })
}

async fn send(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let mut r = s.client.request(method, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn create_collection(s: &TestServer, admin: &str, body: Value) {
    let r = s.post_auth("/api/v1/admin/collections", admin, body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn create(s: &TestServer, token: &str, collection: &str, body: Value) -> Value {
    let r = s
        .post_auth(
            &format!("/api/v1/collections/{collection}/records"),
            token,
            body,
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn list(s: &TestServer, token: &str, collection: &str, query: &str) -> Vec<Value> {
    let r = s
        .client
        .get(s.url(&format!("/api/v1/collections/{collection}/records")))
        .query(&[("filter", query)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["records"].as_array().unwrap().clone()
}

async fn list_all(s: &TestServer, token: &str, collection: &str) -> Vec<Value> {
    let v: Value = s
        .get_auth(
            &format!("/api/v1/collections/{collection}/records?limit=100"),
            token,
        )
        .await
        .json()
        .await
        .unwrap();
    v["records"].as_array().unwrap().clone()
}

fn codes(v: &Value) -> Vec<String> {
    v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap().to_owned())
        .collect()
}

async fn schema_violations_are_refused_and_change_nothing(s: TestServer) {
    let admin = s.admin().await;
    create_collection(&s, &admin, customers()).await;
    let alice = s.user("alice@example.com").await;
    let good = json!({"name": "Ada", "email": "ada@example.com", "tier": "pro", "spend": 12.5,
        "visits": 3, "vip": true, "since": "2026-01-31T10:30:00+01:00", "site": "https://ada.example",
        "notes": "line one\nline two", "meta": {"a": [1, 2]}});
    let rec = create(&s, &alice, "customers", good.clone()).await;
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["owner"].as_str().unwrap().len(), 36);
    assert_eq!(rec["data"]["since"], "2026-01-31T09:30:00.000Z");
    assert_eq!(rec["data"]["email"], "ada@example.com");
    // The owner may not read tax_id (administrators only).
    assert!(rec["data"].get("tax_id").is_none());

    let bad: Vec<(Value, &str)> = vec![
        (json!({"email": "b@example.com"}), "required"),
        (
            json!({"name": "B", "email": "b@example.com", "extra": 1}),
            "unknown_field",
        ),
        (json!({"name": 5, "email": "b@example.com"}), "wrong_type"),
        (
            json!({"name": "B", "email": "not-an-email"}),
            "invalid_email",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "visits": "3"}),
            "wrong_type",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "visits": 3.5}),
            "wrong_type",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "visits": -1}),
            "too_small",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "spend": "12"}),
            "wrong_type",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "vip": "true"}),
            "wrong_type",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "tier": "gold"}),
            "not_in_enum",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "since": "last tuesday"}),
            "wrong_type",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "site": "javascript:alert(1)"}),
            "invalid_url",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "tax_id": "bad id!"}),
            "pattern_mismatch",
        ),
        (
            json!({"name": "x".repeat(101), "email": "b@example.com"}),
            "too_long",
        ),
        (
            json!({"name": "B\u{0}", "email": "b@example.com"}),
            "control_character",
        ),
        (
            json!({"name": "B\nC", "email": "b@example.com"}),
            "control_character",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "notes": "bell\u{7}"}),
            "control_character",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "meta": {"a": {"b": {"c": 1}}}}),
            "too_deep",
        ),
        (
            json!({"name": "B", "email": "b@example.com", "meta": {"a": "x".repeat(300)}}),
            "too_large",
        ),
    ];
    for (body, code) in bad {
        let r = s
            .post_auth(
                "/api/v1/collections/customers/records",
                &alice,
                body.clone(),
            )
            .await;
        let p = problem(r, 422, "invalid_record").await;
        assert_eq!(codes(&p), vec![code.to_owned()], "{body}");
    }
    let r = s
        .post_auth(
            "/api/v1/collections/customers/records",
            &alice,
            json!([1, 2]),
        )
        .await;
    problem(r, 422, "invalid_record").await;
    // A unique value, compared without regard to case for emails.
    let r = s
        .post_auth(
            "/api/v1/collections/customers/records",
            &alice,
            json!({"name": "Dup", "email": "ADA@example.com"}),
        )
        .await;
    let p = problem(r, 409, "duplicate_value").await;
    assert_eq!(p["violations"][0]["field"], "email");
    // Nothing of the refused writes was stored.
    assert_eq!(list_all(&s, &alice, "customers").await.len(), 1);

    // Updates: partial, validated against the whole record, versioned.
    let id = rec["id"].as_str().unwrap();
    let path = format!("/api/v1/collections/customers/records/{id}");
    let r = send(
        &s,
        reqwest::Method::PATCH,
        &path,
        &alice,
        Some(json!({"visits": "many"})),
    )
    .await;
    problem(r, 422, "invalid_record").await;
    let r = send(
        &s,
        reqwest::Method::PATCH,
        &path,
        &alice,
        Some(json!({"name": null})),
    )
    .await;
    assert_eq!(
        codes(&problem(r, 422, "invalid_record").await),
        vec!["required"]
    );
    let r = s
        .client
        .patch(s.url(&path))
        .bearer_auth(&alice)
        .header("If-Match", "\"1\"")
        .json(&json!({"visits": 4, "vip": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["data"]["visits"], 4);
    assert!(v["data"].get("vip").is_none());
    assert_eq!(v["data"]["email"], "ada@example.com");
    // A stale version is refused, and changes nothing.
    for method in [reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let r = s
            .client
            .request(method, s.url(&path))
            .bearer_auth(&alice)
            .header("If-Match", "\"1\"")
            .json(&json!({"visits": 9}))
            .send()
            .await
            .unwrap();
        problem(r, 412, "version_mismatch").await;
    }
    let now: Value = s.get_auth(&path, &alice).await.json().await.unwrap();
    assert_eq!(now["data"]["visits"], 4);
    let r = s
        .client
        .delete(s.url(&path))
        .bearer_auth(&alice)
        .header("If-Match", "nonsense")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_if_match").await;

    // References must point at an existing record.
    create_collection(
        &s,
        &admin,
        json!({"name": "orders", "fields": {
            "customer": {"type": "reference", "collection": "customers", "required": true},
            "total": {"type": "number"}}}),
    )
    .await;
    let r = s
        .post_auth(
            "/api/v1/collections/orders/records",
            &alice,
            json!({"customer": "rec_00000000000000000000000000000000", "total": 1}),
        )
        .await;
    problem(r, 422, "invalid_reference").await;
    create(&s, &alice, "orders", json!({"customer": id, "total": 10})).await;
    // A referenced collection cannot be deleted; one with records needs purge.
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/api/v1/admin/collections/customers",
        &admin,
        None,
    )
    .await;
    problem(r, 409, "collection_in_use").await;
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/api/v1/admin/collections/orders",
        &admin,
        None,
    )
    .await;
    problem(r, 409, "collection_in_use").await;
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/api/v1/admin/collections/orders?purge=true",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);

    // Schema definitions that make no sense are refused, listing why.
    let r = s
        .post_auth("/api/v1/admin/collections", &admin,
            json!({"name": "bad", "fields": {"id": {"type": "text"}, "n": {"type": "integer", "pattern": "x"}}}))
        .await;
    let p = problem(r, 422, "invalid_schema").await;
    assert_eq!(
        codes(&p),
        vec!["reserved_field_name", "limit_not_applicable"]
    );
    let r = s
        .post_auth("/api/v1/admin/collections", &admin, customers())
        .await;
    problem(r, 409, "collection_exists").await;
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            &admin,
            json!({"name": "x", "fields": {"a": {"type": "money"}}}),
        )
        .await;
    problem(r, 422, "invalid_body").await;
    // Members cannot define collections.
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            &alice,
            json!({"name": "mine", "fields": {"a": {"type": "text"}}}),
        )
        .await;
    problem(r, 403, "admin_required").await;
}

both!(
    schema_violations_are_refused_sqlite,
    schema_violations_are_refused_postgres,
    schema_violations_are_refused_and_change_nothing
);

async fn least_privilege(s: TestServer) {
    let admin = s.admin().await;
    create_collection(&s, &admin, customers()).await;
    let alice = s.user("alice@example.com").await;
    let bob = s.user("bob@example.com").await;
    let rec = create(
        &s,
        &alice,
        "customers",
        json!({"name": "Ada", "email": "ada@example.com", "tax_id": "TX-1234"}),
    )
    .await;
    let id = rec["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/collections/customers/records/{id}");

    // Owner-only by default: Bob sees nothing, and a foreign record looks
    // exactly like a missing one.
    let foreign = problem(s.get_auth(&path, &bob).await, 404, "not_found").await;
    let missing = problem(
        s.get_auth(
            "/api/v1/collections/customers/records/rec_0123456789abcdef0123456789abcdef",
            &bob,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(foreign["detail"], missing["detail"]);
    let r = send(
        &s,
        reqwest::Method::PATCH,
        &path,
        &bob,
        Some(json!({"name": "Mallory"})),
    )
    .await;
    problem(r, 404, "not_found").await;
    let r = send(&s, reqwest::Method::DELETE, &path, &bob, None).await;
    problem(r, 404, "not_found").await;
    assert!(list_all(&s, &bob, "customers").await.is_empty());
    assert_eq!(list_all(&s, &alice, "customers").await.len(), 1);
    // An unknown collection is the same 404.
    problem(
        s.get_auth("/api/v1/collections/nope/records", &bob).await,
        404,
        "not_found",
    )
    .await;

    // A reference cannot probe a record its writer may not read: Alice's
    // record is "missing" to Bob, exactly like one that does not exist.
    create_collection(
        &s,
        &admin,
        json!({"name": "orders", "fields": {
        "customer": {"type": "reference", "collection": "customers", "required": true}}}),
    )
    .await;
    let r = s
        .post_auth(
            "/api/v1/collections/orders/records",
            &bob,
            json!({"customer": id}),
        )
        .await;
    problem(r, 422, "invalid_reference").await;
    create(&s, &alice, "orders", json!({"customer": id})).await;
    // Administrators read (and see the hidden field); they may not update.
    let v: Value = s.get_auth(&path, &admin).await.json().await.unwrap();
    assert_eq!(v["data"]["tax_id"], "TX-1234");
    let mine: Value = s.get_auth(&path, &alice).await.json().await.unwrap();
    assert!(
        mine["data"].get("tax_id").is_none(),
        "hidden from its owner"
    );
    assert_eq!(mine["data"]["name"], "Ada");
    let r = send(
        &s,
        reqwest::Method::PATCH,
        &path,
        &admin,
        Some(json!({"name": "Admin"})),
    )
    .await;
    problem(r, 404, "not_found").await;
    // A hidden field cannot be probed through filters either.
    let r = s
        .client
        .get(s.url("/api/v1/collections/customers/records"))
        .query(&[("filter", "tax_id = \"TX-1234\"")])
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_filter").await;

    // Custom roles: `support` may read and list everything, and see tax_id.
    let mut schema = customers();
    schema["access"] = json!({"list": ["owner", "admin", "support"], "read": ["owner", "admin", "support"],
        "create": ["owner"], "update": ["owner"], "delete": []});
    schema["fields"]["tax_id"]["read"] = json!(["admin", "support"]);
    let r = send(
        &s,
        reqwest::Method::PATCH,
        "/api/v1/admin/collections/customers",
        &admin,
        Some(schema),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let me: Value = s.get_auth("/api/v1/me", &bob).await.json().await.unwrap();
    let bob_id = me["id"].as_str().unwrap();
    let r = send(
        &s,
        reqwest::Method::PUT,
        &format!("/api/v1/admin/accounts/{bob_id}/roles"),
        &admin,
        Some(json!({"roles": ["support"]})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = send(
        &s,
        reqwest::Method::PUT,
        &format!("/api/v1/admin/accounts/{bob_id}/roles"),
        &admin,
        Some(json!({"roles": ["Admin; DROP"]})),
    )
    .await;
    problem(r, 422, "invalid_role").await;
    let v: Value = s.get_auth(&path, &bob).await.json().await.unwrap();
    assert_eq!(v["data"]["tax_id"], "TX-1234");
    assert_eq!(list_all(&s, &bob, "customers").await.len(), 1);
    // Nobody may delete now, not even the owner.
    let r = send(&s, reqwest::Method::DELETE, &path, &alice, None).await;
    problem(r, 404, "not_found").await;

    // Every denial is a security event and a data-access event.
    s.running().auth.flush_notices().await;
    let ev: Value = s
        .get_auth("/api/v1/admin/events?type=access_denied", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(ev["events"].as_array().unwrap().len() >= 4, "{ev}");
    let de: Value = s
        .get_auth("/api/v1/admin/data-events?collection=customers", &admin)
        .await
        .json()
        .await
        .unwrap();
    let events = de["events"].as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["outcome"] == "denied" && e["action"] == "update"));
    // Reads of sensitive values are marked; an owner's read of its record
    // (email is sensitive) is one.
    assert!(events.iter().any(|e| e["outcome"] == "allowed"
        && e["action"] == "read"
        && e["sensitive"] == true
        && e["record_ids"][0] == id.as_str()));
    assert!(events
        .iter()
        .any(|e| e["action"] == "create" && e["count"] == 1));
}

both!(
    least_privilege_sqlite,
    least_privilege_postgres,
    least_privilege
);

async fn api_keys(s: TestServer) {
    let admin = s.admin().await;
    create_collection(&s, &admin, customers()).await;
    let key = |scopes: Value, ips: Value| json!({"name": "billing sync", "scopes": scopes, "allowed_ips": ips});
    let r = s
        .post_auth(
            "/api/v1/admin/api-keys",
            &admin,
            key(
                json!([{"collection": "customers", "actions": ["create", "read", "list"]}]),
                json!(["127.0.0.0/8"]),
            ),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created: Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    // Within its scopes it works; beyond them, nothing.
    let rec = create(
        &s,
        &secret,
        "customers",
        json!({"name": "Key Co", "email": "key@example.com", "tax_id": "TX-9999"}),
    )
    .await;
    assert!(rec.get("owner").is_none());
    assert!(
        rec["data"].get("tax_id").is_none(),
        "restricted fields are hidden from keys"
    );
    let path = format!(
        "/api/v1/collections/customers/records/{}",
        rec["id"].as_str().unwrap()
    );
    assert_eq!(s.get_auth(&path, &secret).await.status(), 200);
    assert_eq!(list_all(&s, &secret, "customers").await.len(), 1);
    let r = send(&s, reqwest::Method::DELETE, &path, &secret, None).await;
    problem(r, 404, "not_found").await;
    create_collection(
        &s,
        &admin,
        json!({"name": "notes", "fields": {"text": {"type": "text"}}}),
    )
    .await;
    let r = s
        .post_auth(
            "/api/v1/collections/notes/records",
            &secret,
            json!({"text": "hi"}),
        )
        .await;
    problem(r, 404, "not_found").await;
    // Update rights are not read rights: an update-only key gets no values back.
    let r = s
        .post_auth("/api/v1/admin/api-keys", &admin,
            json!({"name": "writer", "scopes": [{"collection": "customers", "actions": ["update"]}]}))
        .await;
    let writer: Value = r.json().await.unwrap();
    let r = send(
        &s,
        reqwest::Method::PATCH,
        &path,
        writer["secret"].as_str().unwrap(),
        Some(json!({"name": "Key Co 2"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], json!({}), "{v}");
    assert_eq!(v["version"], 2);
    // An API key is not a session.
    problem(
        s.get_auth("/api/v1/me", &secret).await,
        401,
        "unauthenticated",
    )
    .await;
    problem(
        s.get_auth("/api/v1/admin/collections", &secret).await,
        401,
        "unauthenticated",
    )
    .await;

    // Listed by prefix only; the secret is stored hashed.
    let listed: Value = s
        .get_auth("/api/v1/admin/api-keys", &admin)
        .await
        .json()
        .await
        .unwrap();
    let mine = listed["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .unwrap();
    assert_eq!(mine["prefix"], created["prefix"]);
    assert!(!listed.to_string().contains(&secret));

    // Outside its address range, refused.
    let r = s
        .post_auth(
            "/api/v1/admin/api-keys",
            &admin,
            key(
                json!([{"collection": "customers", "actions": ["list"]}]),
                json!(["10.0.0.0/8"]),
            ),
        )
        .await;
    let far: Value = r.json().await.unwrap();
    problem(
        s.get_auth(
            "/api/v1/collections/customers/records",
            far["secret"].as_str().unwrap(),
        )
        .await,
        403,
        "api_key_ip_refused",
    )
    .await;

    // Expiry and revocation.
    let soon = rampart_core::Timestamp(s.clock.now().millis() + 60_000).to_rfc3339();
    let r = s
        .post_auth("/api/v1/admin/api-keys", &admin,
            json!({"name": "short", "scopes": [{"collection": "customers", "actions": ["list"]}], "expires_at": soon}))
        .await;
    let short: Value = r.json().await.unwrap();
    let short = short["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get_auth("/api/v1/collections/customers/records", &short)
            .await
            .status(),
        200
    );
    s.clock.advance(std::time::Duration::from_secs(61));
    problem(
        s.get_auth("/api/v1/collections/customers/records", &short)
            .await,
        401,
        "api_key_invalid",
    )
    .await;
    let r = send(
        &s,
        reqwest::Method::DELETE,
        &format!("/api/v1/admin/api-keys/{}", created["id"].as_str().unwrap()),
        &admin,
        None,
    )
    .await;
    assert!(r.status() == 204 || r.status() == 403, "{}", r.status());
    if r.status() == 403 {
        // The clock moved past the step-up window: prove it again.
        s.step_up("owner@example.com", &admin).await;
        let r = send(
            &s,
            reqwest::Method::DELETE,
            &format!("/api/v1/admin/api-keys/{}", created["id"].as_str().unwrap()),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status(), 204);
    }
    problem(s.get_auth(&path, &secret).await, 401, "api_key_invalid").await;
    problem(
        s.get_auth(
            &path,
            "rk_00000000_forgedforgedforgedforgedforgedforgedforgedf",
        )
        .await,
        401,
        "api_key_invalid",
    )
    .await;

    // Bad requests are refused with a clear message.
    for bad in [
        json!({"name": "", "scopes": [{"collection": "customers", "actions": ["list"]}]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": [{"collection": "nope", "actions": ["list"]}]}),
        json!({"name": "x", "scopes": [{"collection": "customers", "actions": ["drop"]}]}),
        json!({"name": "x", "scopes": [{"collection": "customers", "actions": ["list"]}], "allowed_ips": ["10.0.0.0/99"]}),
        json!({"name": "x", "scopes": [{"collection": "customers", "actions": ["list"]}], "expires_at": "2001-01-01T00:00:00Z"}),
    ] {
        let r = s
            .post_auth("/api/v1/admin/api-keys", &admin, bad.clone())
            .await;
        problem(r, 422, "invalid_api_key_request").await;
    }
    let ev: Value = s
        .get_auth("/api/v1/admin/events?type=api_key_refused", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(ev["events"].as_array().unwrap().len() >= 3);
}

both!(api_keys_sqlite, api_keys_postgres, api_keys);

async fn filters(s: TestServer) {
    let admin = s.admin().await;
    create_collection(&s, &admin, customers()).await;
    let alice = s.user("alice@example.com").await;
    let nasty = [
        "x' OR '1'='1",
        "\"); DROP TABLE records; --",
        "1; SELECT * FROM accounts",
        "Robert'); DELETE FROM collections;--",
        "%' AND 1=0 UNION SELECT password_hash FROM accounts --",
    ];
    for (i, n) in nasty.iter().enumerate() {
        let email = format!("user{i}@example.com");
        let rec = create(&s, &alice, "customers",
            json!({"name": n, "email": email, "visits": i, "tier": if i % 2 == 0 { "free" } else { "pro" }})).await;
        assert_eq!(rec["data"]["name"], *n, "stored verbatim");
    }
    for (i, n) in nasty.iter().enumerate() {
        let f = format!("name = {}", serde_json::to_string(n).unwrap());
        let found = list(&s, &alice, "customers", &f).await;
        assert_eq!(found.len(), 1, "{f}");
        assert_eq!(found[0]["data"]["visits"], i);
    }
    assert_eq!(
        list(&s, &alice, "customers", "visits >= 2 and tier = \"free\"")
            .await
            .len(),
        2
    );
    assert_eq!(
        list(&s, &alice, "customers", "visits < 1 or visits > 3")
            .await
            .len(),
        2
    );
    assert_eq!(
        list(&s, &alice, "customers", "tier in [\"pro\"]")
            .await
            .len(),
        2
    );
    assert_eq!(
        list(&s, &alice, "customers", "name contains \"DROP\"")
            .await
            .len(),
        1
    );
    assert_eq!(list(&s, &alice, "customers", "vip = null").await.len(), 5);
    assert_eq!(
        list(&s, &alice, "customers", "tier != \"pro\"").await.len(),
        3
    );
    // A searchable sensitive field: exact matches through its blind index.
    let hit = list(&s, &alice, "customers", "email = \"USER3@example.com\"").await;
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0]["data"]["visits"], 3);
    assert_eq!(
        list(
            &s,
            &alice,
            "customers",
            "email in [\"user1@example.com\", \"user4@example.com\"]"
        )
        .await
        .len(),
        2
    );
    // Sorting and pages.
    let r: Value = s
        .get_auth(
            "/api/v1/collections/customers/records?sort=-visits&limit=2",
            &alice,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["records"][0]["data"]["visits"], 4);
    let cursor = r["next_cursor"].as_str().unwrap();
    let r: Value = s
        .get_auth(
            &format!("/api/v1/collections/customers/records?sort=-visits&limit=2&cursor={cursor}"),
            &alice,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["records"][0]["data"]["visits"], 2);

    // Bad filters: 400 with a clear message, never a 500.
    for (f, words) in [
        ("nope = 1", "no field"),
        ("visits = \"3\"", "wrong type"),
        ("vip = 1", "wrong type"),
        ("email > \"a\"", "encrypted"),
        ("email contains \"a\"", "encrypted"),
        ("tax_id = \"x\"", "no field"),
        ("visits contains \"1\"", "contains"),
        ("meta = 1", "json"),
        ("name = ", "expected a value"),
        ("name = 'single'", "unexpected character"),
        ("(((((((((((name = \"a\")))))))))))", "nested"),
    ] {
        let r = s
            .client
            .get(s.url("/api/v1/collections/customers/records"))
            .query(&[("filter", f)])
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        let p = problem(r, 400, "invalid_filter").await;
        assert!(p["detail"].as_str().unwrap().contains(words), "{f}: {p}");
    }
    for q in [
        "sort=email",
        "sort=meta",
        "sort=nope",
        "limit=0",
        "limit=1000",
        "cursor=abc",
        "bogus=1",
    ] {
        let r = s
            .get_auth(
                &format!("/api/v1/collections/customers/records?{q}"),
                &alice,
            )
            .await;
        problem(r, 400, "invalid_query").await;
    }
}

both!(filters_sqlite, filters_postgres, filters);

const CANARY: &str = "CANARY-7d1f3a9e-never-in-plaintext";

/// The data tables whose PostgreSQL rows the canary searches.
const DATA_TABLES: &[&str] = &[
    "records",
    "record_unique",
    "audit_events",
    "audit_pending",
    "audit_checkpoints",
    "collections",
    "data_keys",
];

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn encrypted_at_rest(s: TestServer, pg: Option<String>) {
    let admin = s.admin().await;
    create_collection(&s, &admin, customers()).await;
    let alice = s.user("alice@example.com").await;
    let email = format!("{}@example.com", CANARY.to_lowercase());
    let a = create(
        &s,
        &alice,
        "customers",
        json!({"name": "A", "email": email, "tax_id": "TX-CANARY"}),
    )
    .await;
    let b = create(
        &s,
        &alice,
        "customers",
        json!({"name": "B", "email": "b@example.com"}),
    )
    .await;
    // Plain fields are stored as they are (the check below can see data).
    let plain = create(
        &s,
        &alice,
        "customers",
        json!({"name": "PLAIN-MARKER-4411", "email": "c@example.com"}),
    )
    .await;
    let _ = plain;
    s.running().data.flush_events().await;
    let bytes = stored_bytes(&s, pg.as_deref(), DATA_TABLES).await;
    assert!(
        contains(&bytes, "PLAIN-MARKER-4411"),
        "the search sees stored data"
    );
    assert!(
        !contains(&bytes, &email),
        "a sensitive value is stored in plaintext"
    );
    assert!(!contains(&bytes, &email.to_uppercase()));
    assert!(!contains(&bytes, "TX-CANARY"));
    // It is still found by an exact match, and read back.
    let hit = list(&s, &alice, "customers", &format!("email = \"{email}\"")).await;
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0]["data"]["email"], email.as_str());

    // A ciphertext moved into another record (or field) does not open.
    let store = &s.running().data;
    let rec_a = store
        .store()
        .record("customers", a["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    let rec_b = store
        .store()
        .record("customers", b["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    let mut forged = rec_b.clone();
    forged
        .sealed
        .insert("email".into(), rec_a.sealed["email"].clone());
    assert!(store
        .store()
        .reseal_record(&forged, &rec_b, &[], rec_b.key_id.as_deref().unwrap())
        .await
        .unwrap());
    let path = format!(
        "/api/v1/collections/customers/records/{}",
        b["id"].as_str().unwrap()
    );
    let r = s.get_auth(&path, &alice).await;
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(!text.contains(CANARY.to_lowercase().as_str()), "{text}");
    // The other record is unharmed.
    let r: Value = s
        .get_auth(
            &format!(
                "/api/v1/collections/customers/records/{}",
                a["id"].as_str().unwrap()
            ),
            &alice,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["email"], email.as_str());
    // Moved to another field of the same record, it does not open either.
    let rec_a = store
        .store()
        .record("customers", a["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    let mut moved = rec_a.clone();
    moved
        .sealed
        .insert("tax_id".into(), rec_a.sealed["email"].clone());
    assert!(store
        .store()
        .reseal_record(&moved, &rec_a, &[], rec_a.key_id.as_deref().unwrap())
        .await
        .unwrap());
    let r = s
        .get_auth(
            &format!(
                "/api/v1/collections/customers/records/{}",
                a["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(!text.contains(CANARY.to_lowercase().as_str()), "{text}");
    assert_eq!(problem_code(&text), "internal_error");
}

fn problem_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn encrypted_at_rest_sqlite() {
    encrypted_at_rest(TestServer::start().await, None).await;
}

#[tokio::test]
async fn encrypted_at_rest_postgres() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let s = TestServer::with(Options {
        db: Db::Postgres(url.clone()),
        ..Options::default()
    })
    .await;
    encrypted_at_rest(s, Some(url)).await;
}

async fn schema_migrations(s: TestServer) {
    let admin = s.admin().await;
    create_collection(
        &s,
        &admin,
        json!({"name": "people", "fields": {
        "name": {"type": "text", "max_length": 10},
        "phone": {"type": "text"}}}),
    )
    .await;
    let alice = s.user("alice@example.com").await;
    for i in 0..5 {
        create(
            &s,
            &alice,
            "people",
            json!({"name": format!("p{i}"), "phone": format!("PHONE-SECRET-{i}")}),
        )
        .await;
    }
    create(&s, &alice, "people", json!({"name": "longername"})).await;
    let patch = |fields: Value| {
        let s = &s;
        let admin = admin.clone();
        async move {
            send(
                s,
                reqwest::Method::PATCH,
                "/api/v1/admin/collections/people",
                &admin,
                Some(json!({"fields": fields})),
            )
            .await
        }
    };
    // Tightening that stored records violate: refused with the count.
    let r =
        patch(json!({"name": {"type": "text", "max_length": 5}, "phone": {"type": "text"}})).await;
    let p = problem(r, 409, "schema_violated_by_data").await;
    assert!(
        p["detail"].as_str().unwrap().starts_with("1 stored record"),
        "{p}"
    );
    let r = patch(json!({"name": {"type": "text", "max_length": 10}, "phone": {"type": "text", "required": true}})).await;
    let p = problem(r, 409, "schema_violated_by_data").await;
    assert!(
        p["detail"].as_str().unwrap().starts_with("1 stored record"),
        "{p}"
    );
    let r = patch(json!({"name": {"type": "integer"}, "phone": {"type": "text"}})).await;
    let p = problem(r, 409, "schema_violated_by_data").await;
    assert!(
        p["detail"].as_str().unwrap().starts_with("6 stored record"),
        "{p}"
    );
    // Nothing changed: the old schema still applies.
    create(&s, &alice, "people", json!({"name": "tenletters"})).await;
    // Online: a new optional field, a relaxed limit, and phone made
    // sensitive (existing values are encrypted in the background).
    let r = patch(json!({"name": {"type": "text", "max_length": 50}, "phone": {"type": "text", "sensitive": true, "searchable": true},
        "age": {"type": "integer"}})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resealing"], 7);
    s.running().data.reseal(&|_, _| {}).await.unwrap();
    let rows = list_all(&s, &alice, "people").await;
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().any(|r| r["data"]["phone"] == "PHONE-SECRET-3"));
    assert_eq!(
        list(&s, &alice, "people", "phone = \"PHONE-SECRET-2\"")
            .await
            .len(),
        1
    );
    let sealed = s
        .running()
        .data
        .store()
        .stale_records("people", "none", i64::MAX, "", 100)
        .await
        .unwrap();
    for r in sealed {
        assert!(
            !r.data.contains_key("phone"),
            "phone left in plaintext in {}",
            r.id
        );
    }
    create(
        &s,
        &alice,
        "people",
        json!({"name": "a name longer than ten", "age": 30}),
    )
    .await;
}

both!(
    schema_migrations_sqlite,
    schema_migrations_postgres,
    schema_migrations
);

async fn rotation_under_load(s: TestServer) {
    let admin = s.admin().await;
    create_collection(
        &s,
        &admin,
        json!({"name": "vault", "fields": {
        "a": {"type": "text", "sensitive": true},
        "b": {"type": "text", "sensitive": true, "searchable": true, "unique": true},
        "c": {"type": "integer", "sensitive": true},
        "n": {"type": "integer"}}}),
    )
    .await;
    let alice = s.user("alice@example.com").await;
    let mut ids = Vec::new();
    for i in 0..120 {
        let r = create(
            &s,
            &alice,
            "vault",
            json!({"a": format!("a{i}"), "b": format!("b{i}"), "c": i, "n": i}),
        )
        .await;
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let before: Value = s
        .get_auth("/api/v1/admin/keys", &admin)
        .await
        .json()
        .await
        .unwrap();
    let old_key = before["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scope"] == "collection:vault")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = Arc::new(s);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (s, alice, ids, stop) = (s.clone(), alice.clone(), ids.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0u32;
            let mut i = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = &ids[i % ids.len()];
                let path = format!("/api/v1/collections/vault/records/{id}");
                let r = s.get_auth(&path, &alice).await;
                assert_eq!(
                    r.status(),
                    200,
                    "read during rotation: {}",
                    r.text().await.unwrap()
                );
                let v: Value = r.json().await.unwrap();
                let n = v["data"]["n"].as_i64().unwrap();
                assert_eq!(v["data"]["c"].as_i64().unwrap(), n);
                if w % 2 == 0 {
                    let r = send(
                        &s,
                        reqwest::Method::PATCH,
                        &path,
                        &alice,
                        Some(json!({"a": format!("w{w}-{done}")})),
                    )
                    .await;
                    assert_eq!(
                        r.status(),
                        200,
                        "write during rotation: {}",
                        r.text().await.unwrap()
                    );
                }
                done += 1;
                i += 7;
            }
            done
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let data = s.running().data.clone();
    let rotated = data.rotate_data_keys().await.unwrap();
    assert_eq!(rotated.len(), 1);
    let n = data.reseal(&|_, _| {}).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert!(total > 0);
    assert!(n > 0 && n <= 120, "{n}");
    // Every value readable, every record under the new key, the old one
    // retired, the unique index intact.
    for (i, id) in ids.iter().enumerate() {
        let v: Value = s
            .get_auth(&format!("/api/v1/collections/vault/records/{id}"), &alice)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["data"]["b"], format!("b{i}"));
    }
    let after: Value = s
        .get_auth("/api/v1/admin/keys", &admin)
        .await
        .json()
        .await
        .unwrap();
    let keys = after["keys"].as_array().unwrap();
    let old = keys.iter().find(|k| k["id"] == old_key.as_str()).unwrap();
    assert_eq!(old["records"], 0);
    assert!(old["retired_at"].is_string(), "{after}");
    let new = keys
        .iter()
        .find(|k| k["id"] == rotated[0].1.as_str())
        .unwrap();
    assert_eq!(new["records"], 120);
    let r = s
        .post_auth(
            "/api/v1/collections/vault/records",
            &alice,
            json!({"b": "b5"}),
        )
        .await;
    problem(r, 409, "duplicate_value").await;
    assert_eq!(list(&s, &alice, "vault", "b = \"b77\"").await.len(), 1);
}

both!(
    rotation_under_load_sqlite,
    rotation_under_load_postgres,
    rotation_under_load
);

/// A database from before data keys: its second-factor values were sealed
/// with the master key itself. After the upgrade they still open (the
/// system data key is the old master key), and a wrong master key is
/// refused before anything is written.
#[tokio::test]
async fn a_database_sealed_by_the_master_key_upgrades_in_place() {
    use rampart_core::data::DataStore;
    use rampart_core::Store;
    use rampart_crypto::{Keyring, OsEntropy, SecretBytes};
    let dir = tempfile::tempdir().unwrap();
    let data = private_dir(&dir);
    let master = [7u8; 32];
    let ring = Keyring::new(&SecretBytes::new(master.to_vec()), &[]).unwrap();
    let url = format!("sqlite://{}?mode=rwc", data.join("rampart.db").display());
    let store = rampart_store::open(&url).await.unwrap();
    let sealed = ring.seal(&OsEntropy, "key_check", b"rampart");
    store
        .add_first_key_check(ring.current_key_id(), &sealed, rampart_core::Timestamp(1))
        .await
        .unwrap();
    // An administrator whose TOTP secret was sealed with the master key,
    // as issue 4 did it.
    let now = rampart_core::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let hasher =
        rampart_crypto::PasswordHasher::new(rampart_crypto::Argon2Params::MINIMUM).unwrap();
    let account = rampart_core::Account {
        id: rampart_core::AccountId::generate(&OsEntropy),
        email: rampart_core::Email::parse("old@example.com").unwrap(),
        display_name: None,
        password_hash: rampart_crypto::SecretString::new(
            hasher
                .hash(&rampart_crypto::SecretString::from(STRONG), &OsEntropy)
                .unwrap(),
        ),
        role: rampart_core::Role::Admin,
        created_at: now,
        has_mfa: false,
        lifecycle: Default::default(),
    };
    store.insert_account(&account).await.unwrap();
    let secret = rampart_crypto::totp_secret(&OsEntropy);
    let factor_id = rampart_core::FactorId::generate(&OsEntropy);
    let factor = rampart_core::model::Factor {
        id: factor_id.clone(),
        account_id: account.id.clone(),
        kind: rampart_core::model::FactorKind::Totp,
        name: "Phone".into(),
        sealed: Some(ring.seal(
            &OsEntropy,
            &format!("mfa_factors:{}:totp", factor_id.as_str()),
            secret.expose_secret(),
        )),
        created_at: now,
        confirmed_at: Some(now),
        last_used_at: None,
        last_step: -1,
        credential_hash: None,
    };
    store.insert_factor(&factor).await.unwrap();
    store.close().await;

    // The wrong key: refused, and no system key was written.
    write_master_key(&data, &[9u8; 32]);
    let settings = settings_for(&data);
    let e = rampart::start(&settings, rampart::Deps::default())
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("same master key"), "{e:#}");
    let store = rampart_store::open(&url).await.unwrap();
    assert!(store.data_keys().await.unwrap().is_empty());
    store.close().await;

    // The right key: it starts, and the system key is the old master key.
    write_master_key(&data, &master);
    let s = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    // The old master is kept as `system-legacy` (to open and check what it
    // sealed); the system key itself is new, and the key check moved to it.
    let keys = s.running().data.store().data_keys().await.unwrap();
    let system = keys.iter().find(|k| k.scope == "system").unwrap();
    let legacy = keys.iter().find(|k| k.scope == "system-legacy").unwrap();
    assert_eq!(legacy.id, ring.current_key_id());
    assert_ne!(system.id, ring.current_key_id());
    let checks = Store::key_checks(s.running().auth.store().as_ref())
        .await
        .unwrap();
    assert_eq!(checks[0].split('.').nth(1), Some(system.id.as_str()));
    // The old TOTP secret was re-sealed with the new key, and still works.
    let factors = Store::factors_of(s.running().auth.store().as_ref(), &account.id)
        .await
        .unwrap();
    assert_eq!(
        factors[0].sealed.as_deref().unwrap().split('.').nth(1),
        Some(system.id.as_str())
    );
    s.totp.lock().unwrap().insert(
        "old@example.com".into(),
        rampart_crypto::totp_base32(&secret)
            .expose_secret()
            .to_owned(),
    );
    let token = s.login_mfa("old@example.com").await;
    assert_eq!(s.get_auth("/api/v1/me", &token).await.status(), 200);
    let v: Value = s
        .get_auth("/api/v1/admin/keys", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(v.to_string().contains("\"system\""));
}

/// A database still at schema version 3 (issue 4) and the wrong master
/// key: the start is refused before any migration runs, so the database
/// stays as it was (and the previous build still opens it).
#[tokio::test]
async fn a_refused_start_does_not_migrate_an_old_database() {
    use rampart_crypto::{Keyring, OsEntropy, SecretBytes};
    let dir = tempfile::tempdir().unwrap();
    let data = private_dir(&dir);
    let url = format!("sqlite://{}?mode=rwc", data.join("rampart.db").display());
    // Migrations 1 to 3 only, as issue 4's build left the database.
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../store/migrations/sqlite"
    )))
    .await
    .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= 3)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    let master = [5u8; 32];
    let ring = Keyring::new(&SecretBytes::new(master.to_vec()), &[]).unwrap();
    sqlx::query("INSERT INTO key_checks (id, key_id, sealed, created_at) VALUES (1, ?, ?, 1)")
        .bind(ring.current_key_id())
        .bind(ring.seal(&OsEntropy, "key_check", b"rampart"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let version = |url: String| async move {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let (v,): (i64,) = sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    };
    let settings = || settings_for(&data);
    write_master_key(&data, &[6u8; 32]);
    let e = rampart::start(&settings(), rampart::Deps::default())
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("same master key"), "{e:#}");
    assert_eq!(
        version(url.clone()).await,
        3,
        "a refused start migrated the database"
    );
    write_master_key(&data, &master);
    let running = rampart::start(&settings(), rampart::Deps::default())
        .await
        .unwrap();
    running.shutdown().await;
    assert_eq!(version(url.clone()).await, rampart_store::SCHEMA_VERSION);
}

/// `data` under the temporary directory, private as Rampart wants it.
fn private_dir(dir: &tempfile::TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let data = dir.path().join("data");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .unwrap();
    data
}

/// Writes a master key file (base64, 0600) into `data`.
fn write_master_key(data: &std::path::Path, key: &[u8; 32]) {
    use base64::Engine;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(data.join("master.key"))
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        base64::engine::general_purpose::STANDARD
            .encode(key)
            .as_bytes(),
    )
    .unwrap();
}

/// Settings for a server on `data`, on a free port, without the redirect.
fn settings_for(data: &std::path::Path) -> rampart::Settings {
    rampart::Settings::load(
        None,
        [
            ("RAMPART_LISTEN", "127.0.0.1:0"),
            ("RAMPART_HTTP_LISTEN", "off"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
        &rampart::Overrides {
            data_dir: Some(data.to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap()
}
