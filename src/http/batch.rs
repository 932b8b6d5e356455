//! `POST /api/events/batch`: many publishes in one request (server API key).
//!
//! For servers that publish a lot: one HTTP round trip carries up to 1000 events, for any
//! sessions. Every item is validated before anything is published (a bad item refuses the
//! whole batch with 422). Events of one session are published in request order; different
//! sessions are published concurrently, which lets the Redis client pipeline them. Each
//! item gets its own result: `{seq, epoch, id, duplicate}` or `{error: {code, message}}`
//! (e.g. an unknown session), so one bad session does not fail the rest.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::future::join_all;
use proto_events::EventType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::events::PublishResponse;
use crate::broker::Publish;
use crate::domain::SessionId;
use crate::error::{ApiError, ErrorDetail, Json};
use crate::http::caller::require_api_key;
use crate::state::AppState;

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;

/// One event of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// Target session.
    pub session_id: String,
    /// Event type (as for a single publish).
    #[serde(rename = "type")]
    #[schema(schema_with = crate::http::events::event_type_schema)]
    pub kind: String,
    /// Payload (default `{}`).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Idempotency key (as for a single publish).
    pub idempotency_key: Option<String>,
}

/// A batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1000 events.
    pub events: Vec<BatchItem>,
}

/// The result of one item.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    /// Published.
    Ok(PublishResponse),
    /// Not published.
    Err {
        /// Why.
        error: ErrorDetail,
    },
}

/// Results in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One per event, in request order.
    pub results: Vec<BatchResult>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/events/batch", post(publish_batch))
}

fn item_error(code: &str, message: String) -> BatchResult {
    BatchResult::Err {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
            details: None,
        },
    }
}

/// Publishes a batch of events.
#[utoipa::path(post, path = "/api/events/batch", tag = "events", request_body = BatchRequest,
    security(("server_api_key" = [])),
    responses((status = 202, body = BatchResponse), (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn publish_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<BatchRequest>,
) -> Result<(StatusCode, Json<BatchResponse>), ApiError> {
    require_api_key(&state.config, &headers)?;
    if req.events.is_empty() || req.events.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("`events` must hold 1 to {MAX_BATCH} events"),
        ));
    }
    // Validate everything first: nothing is published from a batch with a bad item.
    let items = req
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| checked(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    // Group by session, keeping request order within each session.
    let mut by_session: HashMap<SessionId, Vec<usize>> = HashMap::new();
    let mut results: Vec<Option<BatchResult>> = (0..items.len()).map(|_| None).collect();
    for (i, item) in items.iter().enumerate() {
        match &item.sid {
            Some(s) => by_session.entry(s.clone()).or_default().push(i),
            None => results[i] = Some(unknown(&item.raw_sid)),
        }
    }
    let groups = join_all(
        by_session
            .into_iter()
            .map(|(sid, idx)| publish_group(&state, &items, sid, idx)),
    )
    .await;
    for (i, r) in groups.into_iter().flatten() {
        results[i] = Some(r);
    }
    // Every index is either an unparsable session id or in exactly one group.
    let results = results
        .into_iter()
        .map(|r| r.expect("every item is answered"))
        .collect();
    Ok((StatusCode::ACCEPTED, Json(BatchResponse { results })))
}

/// One checked batch item.
struct Item {
    sid: Option<SessionId>,
    raw_sid: String,
    kind: EventType,
    data: Option<Value>,
    key: Option<String>,
}

fn checked(i: usize, e: BatchItem) -> Result<Item, ApiError> {
    let invalid = |code: &'static str, m: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            format!("events[{i}]: {m}"),
        )
    };
    let kind: EventType = e
        .kind
        .parse()
        .map_err(|err: proto_events::InvalidEventType| {
            invalid("invalid_event_type", err.to_string())
        })?;
    if e.idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        return Err(invalid(
            "invalid_body",
            "`idempotency_key` must be 1 to 200 bytes".into(),
        ));
    }
    Ok(Item {
        sid: e.session_id.parse::<SessionId>().ok(),
        raw_sid: e.session_id,
        kind,
        data: e.data,
        key: e.idempotency_key,
    })
}

/// Publishes one session's items in request order; each gets its own result.
async fn publish_group(
    state: &AppState,
    items: &[Item],
    sid: SessionId,
    idx: Vec<usize>,
) -> Vec<(usize, BatchResult)> {
    match state.store.get(&sid).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return idx
                .into_iter()
                .map(|i| (i, unknown(sid.as_str())))
                .collect();
        }
        Err(e) => {
            let r = || item_error("broker_unavailable", e.to_string());
            return idx.into_iter().map(|i| (i, r())).collect();
        }
    }
    let mut out = Vec::with_capacity(idx.len());
    for i in idx {
        let item = &items[i];
        let event = Publish {
            kind: item.kind.clone(),
            data: item
                .data
                .clone()
                .unwrap_or_else(|| Value::Object(Default::default())),
            idempotency_key: item.key.clone(),
            trace_id: None,
        };
        let r = match state.broker.publish(&sid, event).await {
            Ok(p) => BatchResult::Ok(PublishResponse {
                seq: p.seq,
                epoch: p.epoch,
                id: p.id.to_string(),
                duplicate: p.duplicate,
            }),
            Err(e) => item_error("broker_unavailable", e.to_string()),
        };
        out.push((i, r));
    }
    out
}

fn unknown(raw: &str) -> BatchResult {
    let shown: String = raw.chars().take(64).collect();
    item_error(
        "unknown_session",
        format!("session {shown:?} does not exist or has expired"),
    )
}
