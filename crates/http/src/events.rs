//! The trail, searched: `GET /api/v1/admin/events` and its counts per
//! time bucket. Every filter is a bound value of one fixed query
//! (`rampart_store`'s `audit` module).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use rampart_core::audit::{Category, Chained, EventQuery, Severity, MAX_ACTIONS};
use rampart_core::events::EventKind;
use rampart_core::{AccountId, Timestamp};
use rampart_proto::{EventCount, EventCounts, EventPage, EventView, Problem};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::Admin;
use crate::state::AppState;

/// Query of `GET /api/v1/admin/events` (and, without `limit` and
/// `cursor`, of its counts).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Event types (`event.action`), comma-separated, at most 8: e.g.
    /// `login_failure` or `data.read,data.list`.
    #[serde(rename = "type")]
    #[param(rename = "type", schema_with = event_type_schema)]
    pub kind: Option<String>,
    /// `authentication`, `iam`, `database`, `web`, `configuration` or `process`.
    pub category: Option<String>,
    /// `success`, `failure` or `unknown`.
    pub outcome: Option<String>,
    /// Account id (or `key:<id>` for an API key's data access).
    pub account: Option<String>,
    /// Source address, or a network in CIDR notation (`203.0.113.0/24`).
    pub ip: Option<String>,
    /// At least this severe: `info`, `low`, `medium`, `high` or `critical`.
    pub severity: Option<String>,
    /// The guard or detection rule (`rule.name`).
    pub rule: Option<String>,
    /// A data event's collection.
    pub collection: Option<String>,
    /// Text in any field of the event (none holds a secret); at most 200
    /// characters.
    pub q: Option<String>,
    /// Data-access events (`data.*`): `exclude` (the default unless `type`
    /// or `category` names them), `include` or `only`.
    pub data: Option<String>,
    /// Drills' events (`rampart drill`): `include`, `exclude` or `only`.
    /// Default: `include` for the list, `exclude` for the counts, so drills
    /// never count as real attacks.
    pub drills: Option<String>,
    /// RFC 3339; events at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339; events before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Counts only: `minute`, `hour` (default) or `day`.
    pub bucket: Option<String>,
}

/// The `type` parameter: event kinds, comma-separated (these and the
/// data-access `data.*` actions), or empty for any.
fn event_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(format!(
            "Comma-separated event types, e.g. {}, data.read",
            EventKind::ALL
                .iter()
                .take(4)
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .max_length(Some(400))
        .build()
}

fn bad_query(param: &str, detail: &str) -> ApiError {
    ApiError::invalid_query(&format!("`{param}`: {detail}"))
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// A word of 1 to 200 printable characters.
fn word<'a>(param: &str, v: &'a Option<String>) -> Result<Option<&'a str>, ApiError> {
    match given(v) {
        Some(s) if s.chars().count() > 200 || s.chars().any(char::is_control) => {
            Err(bad_query(param, "at most 200 printable characters"))
        }
        other => Ok(other),
    }
}

fn encode_cursor(e: &Chained) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}:{}:{}", e.at.0, e.seq, e.node))
}

fn decode_cursor(c: &str) -> Option<(Timestamp, String, u64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let mut parts = s.splitn(3, ':');
    let at = parts.next()?.parse().ok()?;
    let seq: u64 = parts
        .next()?
        .parse()
        .ok()
        .filter(|s| *s <= i64::MAX as u64)?;
    let node = parts.next()?;
    rampart_core::audit::node_name_ok(node).then(|| (Timestamp(at), node.to_owned(), seq))
}

/// The query the parameters describe (limit and cursor aside).
fn query_of(q: &EventParams, counting: bool) -> Result<EventQuery, ApiError> {
    let actions: Vec<String> = match word("type", &q.kind)? {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if actions.len() > MAX_ACTIONS {
        return Err(bad_query("type", "at most 8 types"));
    }
    if let Some(a) = actions
        .iter()
        .find(|a| !rampart_core::audit::known_action(a))
    {
        let a: String = a.chars().take(40).filter(|c| !c.is_control()).collect();
        return Err(bad_query(
            "type",
            &format!("unknown event type `{a}` (see the `type` values in the API reference)"),
        ));
    }
    let category = match given(&q.category) {
        None => None,
        Some(c) => Some(Category::parse(c).ok_or_else(|| {
            bad_query(
                "category",
                "one of authentication, iam, database, web, configuration, process",
            )
        })?),
    };
    let outcome = match given(&q.outcome) {
        None => None,
        Some(o @ ("success" | "failure" | "unknown")) => Some(o.to_owned()),
        Some(_) => return Err(bad_query("outcome", "success, failure or unknown")),
    };
    let source_net = match given(&q.ip) {
        None => None,
        Some(s) => Some(
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| bad_query("ip", "an IP address or a CIDR network"))?
                .trunc(),
        ),
    };
    let min_severity = match given(&q.severity) {
        None => None,
        Some(s) => Some(
            Severity::parse(s)
                .ok_or_else(|| bad_query("severity", "info, low, medium, high or critical"))?,
        ),
    };
    let names_data =
        actions.iter().any(|a| a.starts_with("data.")) || category == Some(Category::Database);
    let data_access = match given(&q.data) {
        None if names_data || !actions.is_empty() => None,
        None | Some("exclude") => Some(false),
        Some("include") => None,
        Some("only") => Some(true),
        Some(_) => return Err(bad_query("data", "exclude, include or only")),
    };
    let drills = match given(&q.drills) {
        None if counting => Some(false),
        None | Some("include") => None,
        Some("exclude") => Some(false),
        Some("only") => Some(true),
        Some(_) => return Err(bad_query("drills", "include, exclude or only")),
    };
    let ts = |name: &str, v: &Option<String>| ApiError::query_time(name, v.as_deref());
    Ok(EventQuery {
        actions,
        category,
        data_access,
        outcome,
        user_id: word("account", &q.account)?.map(|a| AccountId(a.to_owned()).0),
        source_net,
        min_severity,
        rule: word("rule", &q.rule)?.map(str::to_owned),
        object: word("collection", &q.collection)?.map(str::to_owned),
        text: word("q", &q.q)?.map(str::to_owned),
        since: ts("since", &q.since)?,
        until: ts("until", &q.until)?,
        limit: 0,
        cursor: None,
        drills,
    })
}

const ALLOWED: &str = "Allowed parameters: type, category, outcome, account, ip, severity, rule, \
                       collection, q, data, since, until, limit (1-500), cursor; for counts, bucket.";

fn params(
    query: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<EventParams, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|_| ApiError::invalid_query(ALLOWED))
}

pub fn view(e: Chained) -> EventView {
    let fields = serde_json::Value::Object(e.fields_map());
    EventView {
        id: format!("{}:{}", e.node, e.seq),
        node: e.node,
        seq: e.seq,
        at: e.at.to_rfc3339(),
        kind: e.action,
        category: e.category,
        outcome: e.outcome,
        severity: Severity::ALL
            .into_iter()
            .find(|s| s.number() == e.severity)
            .map(|s| s.as_str())
            .unwrap_or("info")
            .to_owned(),
        reason: e.reason,
        account_id: e.user_id,
        ip: e.source_ip,
        user_agent: e.user_agent,
        request_id: e.request_id,
        rule: e.rule,
        object: e.object,
        fields,
    }
}

#[utoipa::path(get, path = "/api/v1/admin/events", tag = "admin", security(("bearer" = [])),
    params(EventParams),
    responses((status = 200, body = EventPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or no second factor yet (`mfa_enrollment_required`)", body = Problem, content_type = "application/problem+json")))]
pub async fn admin_events(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let q = params(query)?;
    if q.bucket.is_some() {
        return Err(bad_query("bucket", "only for /admin/events/counts"));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad_query("limit", "must be between 1 and 500"));
    }
    let mut filter = query_of(&q, false)?;
    filter.limit = limit + 1;
    filter.cursor = match given(&q.cursor) {
        None => None,
        Some(c) => Some(
            decode_cursor(c).ok_or_else(|| bad_query("cursor", "not a cursor from this API"))?,
        ),
    };
    let mut events = state.auth.events(&filter).await?;
    let next_cursor = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(EventPage {
        events: events.into_iter().map(view).collect(),
        next_cursor,
    }))
}

/// Most buckets in one answer.
const MAX_BUCKETS: i64 = 2_000;

#[utoipa::path(get, path = "/api/v1/admin/events/counts", tag = "admin", security(("bearer" = [])),
    params(EventParams),
    responses((status = 200, body = EventCounts),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or no second factor yet (`mfa_enrollment_required`)", body = Problem, content_type = "application/problem+json")))]
pub async fn event_counts(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventCounts>, ApiError> {
    let q = params(query)?;
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(bad_query("limit", "counts take no limit or cursor"));
    }
    let (name, bucket_ms) = match given(&q.bucket).unwrap_or("hour") {
        "minute" => ("minute", 60_000),
        "hour" => ("hour", 3_600_000),
        "day" => ("day", 86_400_000),
        _ => return Err(bad_query("bucket", "minute, hour or day")),
    };
    let mut filter = query_of(&q, true)?;
    let until = filter.until.unwrap_or_else(|| state.auth.clock().now());
    let since = filter
        .since
        .unwrap_or(Timestamp(until.millis() - bucket_ms * 48));
    if since >= until {
        return Err(bad_query("since", "must be before until"));
    }
    if (until.millis() - since.millis()) / bucket_ms > MAX_BUCKETS {
        return Err(bad_query(
            "bucket",
            "at most 2000 buckets: a shorter range or a longer bucket",
        ));
    }
    filter.since = Some(since);
    filter.until = Some(until);
    let counts = state.auth.event_counts(&filter, bucket_ms).await?;
    Ok(Json(EventCounts {
        bucket: name.to_owned(),
        since: since.to_rfc3339(),
        until: until.to_rfc3339(),
        counts: counts
            .into_iter()
            .map(|(start, count)| EventCount {
                start: start.to_rfc3339(),
                count,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/events/{id}/proof", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The event's `id`: `node:seq`")),
    responses((status = 200, description = "The event's inclusion proof against the newest signed checkpoint of its chain, as `rampart audit proof` writes it: check it anywhere with `rampart audit check-proof` and the audit public key", body = Object),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event (`not_found`), or no checkpoint covers it yet (`no_proof_yet`: a checkpoint is signed every `verify_every_secs`)", body = Problem, content_type = "application/problem+json")))]
/// An event's inclusion proof: where it sits in its chain's Merkle tree,
/// under a signed checkpoint.
pub async fn event_proof(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<rampart_core::audit::proof::Proof>, ApiError> {
    let Some((node, seq)) = id
        .rsplit_once(':')
        .filter(|(node, _)| !node.is_empty() && node.len() <= 100)
        .and_then(|(node, seq)| Some((node, seq.parse::<u64>().ok()?)))
    else {
        return Err(ApiError::not_found());
    };
    let store = state.auth.store().clone();
    let exists = store
        .audit_range(node, seq, 1)
        .await
        .map_err(|e| ApiError::internal(format!("audit trail: {e}")))?
        .iter()
        .any(|e| e.seq == seq);
    if !exists {
        return Err(ApiError::not_found());
    }
    match rampart_core::audit::proof::prove(store.as_ref(), node, seq).await {
        Ok(Some(p)) => Ok(Json(p)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_proof_yet",
            "No proof yet",
            "No signed checkpoint covers this event yet; one is signed every minute or so (`[audit] verify_every_secs`). Try again shortly.",
        )),
        Err(e) => Err(e.into()),
    }
}
