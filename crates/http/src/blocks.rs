//! Address blocks, for administrators: `GET/POST /api/v1/admin/blocks`,
//! `DELETE /api/v1/admin/blocks/{id}`. The same blocks as
//! `rampart block add|list|remove` and the automatic responses.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::events::{EventKind, Outcome};
use rampart_core::IpBlock;
use rampart_proto::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Admin, IncidentWrite, JsonBody, Meta};
use crate::guard::BlockError;
use crate::routes::path_id;
use crate::state::AppState;

type PathRej = axum::extract::rejection::PathRejection;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBlock {
    /// An address (`203.0.113.7`, `2001:db8::7`) or a CIDR range
    /// (`203.0.113.0/24`, `2001:db8::/48`).
    pub network: String,
    /// How long, in seconds (1 to 365 days). Left out: 15 minutes for a
    /// first block, doubling for each further block of the same network
    /// within 30 days, up to a day (the `[guard]` block settings).
    pub duration_secs: Option<u64>,
    /// Why, for the next administrator (one line, at most 200 characters).
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockView {
    pub id: String,
    pub network: String,
    pub reason: String,
    /// `admin:<account id>`, `cli`, or `auto:<rule>`.
    pub source: String,
    pub created_at: String,
    pub expires_at: String,
    /// 1 for a first block of this network, n for the n-th within 30 days.
    pub offence: u32,
}

impl From<IpBlock> for BlockView {
    fn from(b: IpBlock) -> Self {
        Self {
            id: b.id,
            network: b.network,
            reason: b.reason,
            source: b.source,
            created_at: b.created_at.to_rfc3339(),
            expires_at: b.expires_at.to_rfc3339(),
            offence: b.offence,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    pub blocks: Vec<BlockView>,
}

/// A database failure: the one internal-error mapping, detail to the log.
fn invalid(m: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_block",
        "Invalid block",
        m,
    )
}

#[utoipa::path(post, path = "/api/v1/admin/blocks", tag = "guard",
    security(("bearer" = [])),
    request_body = CreateBlock,
    responses((status = 201, body = BlockView),
        (status = 403, description = "Not an administrator, or no recent step-up", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The range holds the caller's own address (`block_includes_you`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an address or range, a range of everything, a bad duration or reason (`invalid_block`)", body = Problem, content_type = "application/problem+json")))]
pub async fn create_block(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    JsonBody(body): JsonBody<CreateBlock>,
) -> Result<Response, ApiError> {
    let net = rampart_guard::net::parse_net(&body.network).map_err(invalid)?;
    if let Some(ip) = meta
        .ip
        .as_deref()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
    {
        if net.contains(&ip) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "block_includes_you",
                "Block would lock you out",
                "The range holds the address this request came from. Block it from another address, or with `rampart block add` on the server.",
            ));
        }
    }
    let reason = body.reason.unwrap_or_default();
    let block = state
        .guard
        .add_block(
            &net.to_string(),
            body.duration_secs.map(Duration::from_secs),
            &reason,
            &format!("admin:{}", admin.account.id),
        )
        .await
        .map_err(|e| match e {
            BlockError::Invalid(m) => invalid(m),
            BlockError::Store(e) => e.into(),
        })?;
    state
        .auth
        .record_event(
            EventKind::BlockAdded,
            Outcome::Success,
            Some(&block.summary()),
            Some(&admin.account.id),
            &meta,
        )
        .await;
    Ok((StatusCode::CREATED, Json(BlockView::from(block))).into_response())
}

#[utoipa::path(get, path = "/api/v1/admin/blocks", tag = "guard",
    security(("bearer" = [])),
    responses((status = 200, body = BlockList),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json")))]
pub async fn list_blocks(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> Result<Json<BlockList>, ApiError> {
    let blocks = state
        .auth
        .store()
        .active_blocks(state.auth.clock().now(), 10_000)
        .await?;
    Ok(Json(BlockList {
        blocks: blocks.into_iter().map(BlockView::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/admin/blocks/{id}", tag = "guard",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Lifted"),
        (status = 404, description = "No such block in force", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or no recent step-up", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_block(
    State(state): State<AppState>,
    IncidentWrite(admin): IncidentWrite,
    Meta(meta): Meta,
    id: Result<Path<String>, PathRej>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    let lifted = state.guard.lift_block(&id).await?;
    if !lifted {
        return Err(ApiError::not_found());
    }
    state
        .auth
        .record_event(
            EventKind::BlockRemoved,
            Outcome::Success,
            Some(&id),
            Some(&admin.account.id),
            &meta,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
