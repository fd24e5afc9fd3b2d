//! Protected data over HTTP: collections (administrators), records
//! (accounts and API keys), API keys, custom roles, data-access events and
//! key status. The rules are in `rampart_core::data`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::data::schema::{AccessRules, FieldDef};
use rampart_core::data::{
    Action, ApiKey, Collection, CollectionSchema, DataEventFilter, ListRequest, Mask, RecordView,
    Scope,
};
use rampart_core::{AccountId, Timestamp};
use rampart_proto::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Admin, AdminWrite, Caller, IncidentWrite, JsonBody, Meta, SteppedUp};
use crate::routes::path_id;
use crate::state::AppState;

type PathRej = axum::extract::rejection::PathRejection;
type QueryRej = axum::extract::rejection::QueryRejection;

/// A collection's definition: its fields and who may do what.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionBody {
    /// 1-63 characters: a-z first, then a-z, 0-9 or _. Ignored by PATCH.
    #[serde(default)]
    pub name: Option<String>,
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, FieldDef>,
    /// Omitted: owner-only for everything, and administrators can read.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub access: Option<AccessRules>,
    /// True: when an account is deleted, its records here are deleted
    /// too. False (the default): they stay, with no owner.
    #[serde(default)]
    pub owner_deletes: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionView {
    pub name: String,
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, FieldDef>,
    #[schema(value_type = Object)]
    pub access: AccessRules,
    /// Whether an account's records here are deleted with it.
    pub owner_deletes: bool,
    /// Counts schema changes.
    pub revision: i64,
    /// The data key sealing new sensitive values.
    pub key_id: String,
    pub created_at: String,
    pub updated_at: String,
    /// Records being rewritten in the background after this change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resealing: Option<u64>,
}

fn collection_view(c: Collection, resealing: Option<u64>) -> CollectionView {
    CollectionView {
        name: c.name,
        fields: c.schema.fields,
        access: c.schema.access,
        owner_deletes: c.schema.owner_deletes,
        revision: c.rev,
        key_id: c.key_id,
        created_at: c.created_at.to_rfc3339(),
        updated_at: c.updated_at.to_rfc3339(),
        resealing,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionView>,
}

/// A record: system fields, and `data`, the fields the caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordResponse {
    pub id: String,
    /// The account that created it; absent for records an API key created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Send it back in `If-Match` to update or delete only this version.
    pub version: i64,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

fn record_response(r: RecordView) -> RecordResponse {
    RecordResponse {
        id: r.id,
        owner: r.owner,
        created_at: r.created_at.to_rfc3339(),
        updated_at: r.updated_at.to_rfc3339(),
        version: r.version,
        data: r.data,
    }
}

fn with_etag(status: StatusCode, r: RecordView) -> Response {
    let etag = format!("\"{}\"", r.version);
    let mut res = (status, Json(record_response(r))).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<RecordResponse>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/v1/collections/{name}/records`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// e.g. `status = "active" and (total >= 100 or vip = true)`. Operators
    /// `= != < <= > >= in contains`; values are JSON strings, numbers,
    /// `true`, `false`, `null`; `in` takes `[v, …]`.
    pub filter: Option<String>,
    /// A field (or `id`, `created_at`, `updated_at`), `-` first for
    /// descending. Default `created_at`.
    pub sort: Option<String>,
    /// 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `true`: leave sensitive fields out (a screen that shows them only
    /// on demand: see `…/reveal`).
    pub masked: Option<bool>,
}

/// The version in `If-Match`: `"3"` (as sent in `ETag`) or `3`.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_matches('"'))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_if_match",
                "Invalid If-Match",
                "If-Match takes the record's version as sent in its ETag, e.g. \"3\".",
            )
        })
}

fn name_of(p: Result<Path<String>, PathRej>) -> Result<String, ApiError> {
    path_id(p)
}

fn two_of(p: Result<Path<(String, String)>, PathRej>) -> Result<(String, String), ApiError> {
    match p {
        Ok(Path((a, b))) if a.len() <= 64 && b.len() <= 64 => Ok((a, b)),
        _ => Err(ApiError::not_found()),
    }
}

// ----- collections ---------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/admin/collections", tag = "collections",
    security(("bearer" = [])),
    responses((status = 200, body = CollectionList),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn list_collections(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<CollectionList>, ApiError> {
    let collections = state.data.collections().await?;
    Ok(Json(CollectionList {
        collections: collections
            .into_iter()
            .map(|c| collection_view(c, None))
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/admin/collections", tag = "collections",
    security(("bearer" = [])),
    request_body = CollectionBody,
    responses((status = 201, body = CollectionView),
        (status = 403, description = "Not an administrator, or no recent step-up (`step_up_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (`collection_exists`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The schema makes no sense (`invalid_schema`, every problem listed)", body = Problem, content_type = "application/problem+json")))]
pub async fn create_collection(
    State(state): State<AppState>,
    AdminWrite(admin): AdminWrite,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<CollectionBody>,
) -> Result<Response, ApiError> {
    let name = body.name.clone().unwrap_or_default();
    let schema = CollectionSchema {
        fields: body.fields,
        access: body.access.unwrap_or_default(),
        owner_deletes: body.owner_deletes,
    };
    let c = state
        .data
        .create_collection(&name, schema, Some(&admin.account.id), &meta)
        .await?;
    Ok((StatusCode::CREATED, Json(collection_view(c, None))).into_response())
}

#[utoipa::path(get, path = "/api/v1/admin/collections/{name}", tag = "collections",
    security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = CollectionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn get_collection(
    State(state): State<AppState>,
    _admin: Admin,
    name: Result<Path<String>, PathRej>,
) -> Result<Json<CollectionView>, ApiError> {
    let name = name_of(name)?;
    Ok(Json(collection_view(
        state.data.collection(&name).await?,
        None,
    )))
}

#[utoipa::path(patch, path = "/api/v1/admin/collections/{name}", tag = "collections",
    security(("bearer" = [])),
    params(("name" = String, Path)),
    request_body(content = CollectionBody, description = "The whole new schema: fields and access. Adding a field, relaxing a limit or marking a field sensitive is applied at once (values are re-encrypted in the background); a change stored records violate is refused."),
    responses((status = 200, body = CollectionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stored records violate the new schema (`schema_violated_by_data`, with their count)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The schema makes no sense", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn update_collection(
    State(state): State<AppState>,
    AdminWrite(admin): AdminWrite,
    Meta(meta): Meta,
    name: Result<Path<String>, PathRej>,
    JsonBody(body): JsonBody<CollectionBody>,
) -> Result<Json<CollectionView>, ApiError> {
    let name = name_of(name)?;
    let schema = CollectionSchema {
        fields: body.fields,
        access: body.access.unwrap_or_default(),
        owner_deletes: body.owner_deletes,
    };
    let change = state
        .data
        .update_collection(&name, schema, Some(&admin.account.id), &meta)
        .await?;
    if change.resealing > 0 {
        let data = state.data.clone();
        tokio::spawn(async move {
            if let Err(e) = data.reseal(&|_, _| {}).await {
                tracing::error!(error = %e, "re-encryption after a schema change failed; it resumes at the next start");
            }
        });
    }
    Ok(Json(collection_view(
        change.collection,
        Some(change.resealing),
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteCollectionParams {
    /// Also delete every record of the collection.
    pub purge: Option<bool>,
}

#[utoipa::path(delete, path = "/api/v1/admin/collections/{name}", tag = "collections",
    security(("bearer" = [])),
    params(("name" = String, Path), DeleteCollectionParams),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It holds records (pass purge=true) or is referenced (`collection_in_use`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_collection(
    State(state): State<AppState>,
    AdminWrite(admin): AdminWrite,
    Meta(meta): Meta,
    name: Result<Path<String>, PathRej>,
    query: Result<Query<DeleteCollectionParams>, QueryRej>,
) -> Result<StatusCode, ApiError> {
    let name = name_of(name)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid_query("The only parameter is purge=true|false."))?;
    state
        .data
        .delete_collection(&name, q.purge.unwrap_or(false), &admin.account.id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- records -------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/collections/{name}/records", tag = "records",
    security(("bearer" = [])),
    params(("name" = String, Path)),
    request_body(content = Object, description = "The record's fields, as the schema defines them."),
    responses((status = 201, body = RecordResponse),
        (status = 404, description = "No such collection, or not allowed (the same answer)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A unique field's value is taken (`duplicate_value`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The record does not match the schema (`invalid_record`, every problem listed)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account needs a second factor first (`mfa_enrollment_required`) or, with `[accounts] email_verification = \"before_data\"`, a verified address (`email_unverified`); or the API key is not allowed from this address (`api_key_ip_refused`)", body = Problem, content_type = "application/problem+json")))]
pub async fn create_record(
    State(state): State<AppState>,
    Caller(p): Caller,
    Meta(meta): Meta,
    name: Result<Path<String>, PathRej>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let name = name_of(name)?;
    let r = state.data.create(&p, &name, &body, &meta).await?;
    Ok(with_etag(StatusCode::CREATED, r))
}

#[utoipa::path(get, path = "/api/v1/collections/{name}/records", tag = "records",
    security(("bearer" = [])),
    params(("name" = String, Path), ListParams),
    responses((status = 200, body = RecordPage),
        (status = 400, description = "Invalid filter, sort, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account needs a second factor first (`mfa_enrollment_required`) or, with `[accounts] email_verification = \"before_data\"`, a verified address (`email_unverified`); or the API key is not allowed from this address (`api_key_ip_refused`)", body = Problem, content_type = "application/problem+json")))]
pub async fn list_records(
    State(state): State<AppState>,
    Caller(p): Caller,
    Meta(meta): Meta,
    name: Result<Path<String>, PathRej>,
    query: Result<Query<ListParams>, QueryRej>,
) -> Result<Json<RecordPage>, ApiError> {
    let name = name_of(name)?;
    let Query(q) = query.map_err(|_| {
        ApiError::invalid_query(
            "Allowed parameters: filter, sort, limit (1-100), cursor, masked (true or false).",
        )
    })?;
    let page = state
        .data
        .list(
            &p,
            &name,
            &ListRequest {
                filter: q.filter,
                sort: q.sort,
                limit: q.limit,
                cursor: q.cursor,
                masked: q.masked.unwrap_or(false),
            },
            &meta,
        )
        .await?;
    Ok(Json(RecordPage {
        records: page.records.into_iter().map(record_response).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/collections/{name}/records/{id}", tag = "records",
    security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path), ReadParams),
    responses((status = 200, body = RecordResponse),
        (status = 404, description = "Missing, or not yours to read (the same answer)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account needs a second factor first (`mfa_enrollment_required`) or, with `[accounts] email_verification = \"before_data\"`, a verified address (`email_unverified`); or the API key is not allowed from this address (`api_key_ip_refused`)", body = Problem, content_type = "application/problem+json")))]
pub async fn get_record(
    State(state): State<AppState>,
    Caller(p): Caller,
    Meta(meta): Meta,
    path: Result<Path<(String, String)>, PathRej>,
    query: Result<Query<ReadParams>, QueryRej>,
) -> Result<Response, ApiError> {
    let (name, id) = two_of(path)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid_query("Allowed parameter: masked (true or false)."))?;
    let mask = if q.masked == Some(true) {
        Mask::Sensitive
    } else {
        Mask::None
    };
    let r = state.data.read_masked(&p, &name, &id, &mask, &meta).await?;
    Ok(with_etag(StatusCode::OK, r))
}

/// Query of `GET /api/v1/collections/{name}/records/{id}` (other
/// parameters are ignored, as before there were any).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `true`: leave sensitive fields out.
    pub masked: Option<bool>,
}

/// Query of `GET /api/v1/collections/{name}/records/{id}/reveal`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevealParams {
    /// The sensitive field to show.
    pub field: String,
}

#[utoipa::path(get, path = "/api/v1/collections/{name}/records/{id}/reveal", tag = "records",
    security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path), RevealParams),
    responses((status = 200, description = "The record with every sensitive field left out but `field`; the read is recorded with the field's name", body = RecordResponse),
        (status = 400, description = "`field` is not a sensitive field of the collection (`invalid_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in (an API key cannot reveal: it cannot step up)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No proof of identity in the last 10 minutes (`step_up_required`), or the account needs a second factor first", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Missing, or not yours to read (the same answer)", body = Problem, content_type = "application/problem+json")))]
/// One sensitive value, shown on demand to a person who proved it is them
/// moments ago (the console's record browser masks them until then).
pub async fn reveal_field(
    State(state): State<AppState>,
    SteppedUp(authed): SteppedUp,
    Meta(meta): Meta,
    path: Result<Path<(String, String)>, PathRej>,
    query: Result<Query<RevealParams>, QueryRej>,
) -> Result<Response, ApiError> {
    let (name, id) = two_of(path)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid_query("Send `field`: the sensitive field to show."))?;
    let p = crate::extract::data_principal(&state, authed.account)?;
    let r = state
        .data
        .read_masked(&p, &name, &id, &Mask::Reveal(q.field), &meta)
        .await?;
    Ok(with_etag(StatusCode::OK, r))
}

#[utoipa::path(patch, path = "/api/v1/collections/{name}/records/{id}", tag = "records",
    security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The version you read (its ETag); a newer stored version gets 412")),
    request_body(content = Object, description = "Fields to change; null removes an optional field."),
    responses((status = 200, body = RecordResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The record changed since you read it (`version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account needs a second factor first (`mfa_enrollment_required`) or, with `[accounts] email_verification = \"before_data\"`, a verified address (`email_unverified`); or the API key is not allowed from this address (`api_key_ip_refused`)", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "If-Match is not a version (`invalid_if_match`)", body = Problem, content_type = "application/problem+json")))]
pub async fn update_record(
    State(state): State<AppState>,
    Caller(p): Caller,
    Meta(meta): Meta,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRej>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let (name, id) = two_of(path)?;
    let version = if_match(&headers)?;
    let r = state
        .data
        .update(&p, &name, &id, &body, version, &meta)
        .await?;
    Ok(with_etag(StatusCode::OK, r))
}

#[utoipa::path(delete, path = "/api/v1/collections/{name}/records/{id}", tag = "records",
    security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The version you read (its ETag)")),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The record changed since you read it", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account needs a second factor first (`mfa_enrollment_required`) or, with `[accounts] email_verification = \"before_data\"`, a verified address (`email_unverified`); or the API key is not allowed from this address (`api_key_ip_refused`)", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "If-Match is not a version (`invalid_if_match`)", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_record(
    State(state): State<AppState>,
    Caller(p): Caller,
    Meta(meta): Meta,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let (name, id) = two_of(path)?;
    let version = if_match(&headers)?;
    state.data.delete(&p, &name, &id, version, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- API keys --------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    pub collection: String,
    /// Any of `list`, `read`, `create`, `update`, `delete`.
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub scopes: Vec<ScopeBody>,
    /// RFC 3339; absent: no expiry.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// CIDR ranges (`203.0.113.0/24`, `2001:db8::/32`) or addresses the key
    /// may be used from; absent or empty: any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeView {
    pub collection: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The start of the key, to recognise it; the rest is never shown again.
    pub prefix: String,
    pub scopes: Vec<ScopeView>,
    pub allowed_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

fn key_view(k: ApiKey) -> ApiKeyView {
    ApiKeyView {
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        scopes: k
            .scopes
            .into_iter()
            .map(|s| ScopeView {
                collection: s.collection,
                actions: s.actions.iter().map(|a| a.as_str().to_owned()).collect(),
            })
            .collect(),
        allowed_ips: k.allowed_ips,
        expires_at: k.expires_at.map(Timestamp::to_rfc3339),
        created_at: k.created_at.to_rfc3339(),
        created_by: k.created_by.0,
        revoked_at: k.revoked_at.map(Timestamp::to_rfc3339),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The key: send it as `Authorization: Bearer <key>`. Shown only now.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyView>,
}

#[utoipa::path(post, path = "/api/v1/admin/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyCreated),
        (status = 403, description = "Not an administrator, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad name, scope, range or expiry (`invalid_api_key_request`)", body = Problem, content_type = "application/problem+json")))]
pub async fn create_api_key(
    State(state): State<AppState>,
    AdminWrite(admin): AdminWrite,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> Result<Response, ApiError> {
    let invalid = |m: &str| ApiError::from(rampart_core::Error::InvalidApiKey(m.to_owned()));
    let mut scopes = Vec::new();
    for s in body.scopes {
        let mut actions = Vec::new();
        for a in &s.actions {
            actions.push(
                Action::parse(a)
                    .ok_or_else(|| invalid("actions are list, read, create, update and delete"))?,
            );
        }
        actions.sort();
        actions.dedup();
        scopes.push(Scope {
            collection: s.collection,
            actions,
        });
    }
    let expires_at = match &body.expires_at {
        Some(s) => Some(
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| invalid("expires_at is an RFC 3339 date-time"))?,
        ),
        None => None,
    };
    let (key, secret) = state
        .data
        .create_api_key(
            &body.name,
            scopes,
            body.allowed_ips,
            expires_at,
            &admin.account.id,
            &meta,
        )
        .await?;
    let mut res = (
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            key: key_view(key),
            secret: secret.expose_secret().to_owned(),
        }),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[utoipa::path(get, path = "/api/v1/admin/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<ApiKeyList>, ApiError> {
    Ok(Json(ApiKeyList {
        api_keys: state
            .data
            .api_keys()
            .await?
            .into_iter()
            .map(key_view)
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/admin/api-keys/{id}", tag = "api-keys",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "Unknown or already revoked", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .data
        .revoke_api_key(&id, &admin.account.id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- roles -----------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Custom roles, besides the built-in `admin` or `member`.
    pub roles: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/accounts/{id}/roles", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Roles),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An id no account can have", body = Problem, content_type = "application/problem+json")))]
pub async fn get_roles(
    State(state): State<AppState>,
    _admin: Admin,
    id: Result<Path<String>, PathRej>,
) -> Result<Json<Roles>, ApiError> {
    let id = AccountId(path_id(id)?);
    Ok(Json(Roles {
        roles: state.data.roles_of(&id).await?,
    }))
}

#[utoipa::path(put, path = "/api/v1/admin/accounts/{id}/roles", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body = Roles,
    responses((status = 200, body = Roles),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid role name (`invalid_role`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn set_roles(
    State(state): State<AppState>,
    AdminWrite(admin): AdminWrite,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
    JsonBody(body): JsonBody<Roles>,
) -> Result<Json<Roles>, ApiError> {
    let id = AccountId(path_id(id)?);
    let roles = state
        .data
        .set_roles(&id, body.roles, &admin.account.id, &meta)
        .await?;
    Ok(Json(Roles { roles }))
}

// ----- data-access events and keys ---------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DataEventParams {
    pub collection: Option<String>,
    /// An account id or API key id.
    pub actor: Option<String>,
    /// RFC 3339; events at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DataEventView {
    pub at: String,
    /// `account` or `api_key`.
    pub actor_kind: String,
    pub actor_id: String,
    pub collection: String,
    pub action: String,
    pub record_ids: Vec<String>,
    pub count: i64,
    /// `allowed`, `denied`, `not_found` or `invalid`.
    pub outcome: String,
    /// Decrypted sensitive values were returned.
    pub sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DataEventPage {
    pub events: Vec<DataEventView>,
}

#[utoipa::path(get, path = "/api/v1/admin/data-events", tag = "admin",
    security(("bearer" = [])),
    params(DataEventParams),
    responses((status = 200, body = DataEventPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn data_events(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<DataEventParams>, QueryRej>,
) -> Result<Json<DataEventPage>, ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::invalid_query("Allowed parameters: collection, actor, since, limit (1-500).")
    })?;
    let since = match &q.since {
        Some(s) => Some(
            Timestamp::parse_rfc3339(s)
                .ok_or_else(|| ApiError::invalid_query("since is an RFC 3339 date-time."))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_query("limit must be between 1 and 500."));
    }
    state.data.flush_events().await;
    let events = state
        .data
        .data_events(&DataEventFilter {
            collection: q.collection,
            actor: q.actor,
            since,
            limit,
        })
        .await?;
    Ok(Json(DataEventPage {
        events: events
            .into_iter()
            .map(|e| DataEventView {
                at: e.at.to_rfc3339(),
                actor_kind: e.actor_kind,
                actor_id: e.actor_id,
                collection: e.collection,
                action: e.action,
                record_ids: e.record_ids,
                count: e.count,
                outcome: e.outcome,
                sensitive: e.sensitive,
                ip: e.ip,
                request_id: e.request_id,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    /// `collection:<name>`, `index:<name>` or `system`.
    pub scope: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// Records whose sensitive values this key still protects.
    pub records: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyStatus {
    pub keys: Vec<KeyView>,
}

#[utoipa::path(get, path = "/api/v1/admin/keys", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = KeyStatus),
        (status = 403, description = "Not an administrator, no second factor yet, or (for changes) no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn key_status(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<KeyStatus>, ApiError> {
    Ok(Json(KeyStatus {
        keys: status(&state.data).await?,
    }))
}

/// Every data key with its use (also printed by `rampart keys status`).
pub async fn status(data: &rampart_core::data::DataService) -> Result<Vec<KeyView>, ApiError> {
    let usage: BTreeMap<String, u64> = data
        .store()
        .key_usage()
        .await
        .map_err(rampart_core::Error::from)?
        .into_iter()
        .collect();
    Ok(data
        .store()
        .data_keys()
        .await
        .map_err(rampart_core::Error::from)?
        .into_iter()
        .map(|k| KeyView {
            records: usage.get(&k.id).copied().unwrap_or(0),
            id: k.id,
            scope: k.scope,
            created_at: k.created_at.to_rfc3339(),
            retired_at: k.retired_at.map(Timestamp::to_rfc3339),
        })
        .collect())
}
