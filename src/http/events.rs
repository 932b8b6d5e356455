//! `GET /api/sessions/{id}/events?since=N` (history as JSON, session token) and
//! `POST /api/sessions/{id}/events` (server-side publish, server API key).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto_events::EventType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::sessions::authorize;
use crate::broker::Publish;
use crate::domain::SessionId;
use crate::error::{ApiError, Json, Path, Query};
use crate::http::caller::require_api_key;
use crate::state::AppState;

/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// History query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Return events with a seq greater than this (default 0: everything retained).
    pub since: Option<u64>,
}

/// The documented shape of an event type, built from the kinds the channel knows (so the
/// OpenAPI pattern cannot drift from validation): a known kind or a custom `x.<name>`.
pub fn event_type_schema() -> utoipa::openapi::schema::Object {
    let known: Vec<String> = (proto_events::KNOWN_EVENT_TYPES.iter())
        .map(|k| k.replace('.', "\\."))
        .collect();
    let pattern = format!("^({}|x\\.[A-Za-z0-9._-]+)$", known.join("|"));
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(pattern))
        .max_length(Some(proto_events::MAX_EVENT_TYPE_LEN))
        .build()
}

/// A server-side publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// `agent.switch`, `tool.result`, `moderation.flagged`, `agent.message`, `call.started`,
    /// `call.ended`, `transcript.user`, `transcript.assistant`, or a custom `x.<name>`.
    #[serde(rename = "type")]
    #[schema(schema_with = crate::http::events::event_type_schema)]
    pub kind: String,
    /// Payload (any JSON; default `{}`).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Makes retries safe: the same key within 5 minutes publishes once.
    pub idempotency_key: Option<String>,
}

/// Result of a publish.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishResponse {
    /// Assigned seq.
    pub seq: u64,
    /// History epoch.
    pub epoch: String,
    /// Event id (UUIDv7).
    pub id: String,
    /// True when this was a retry of an earlier publish with the same idempotency key.
    pub duplicate: bool,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/events", get(history).post(publish))
}

/// Retained events after `since`, oldest first, as a JSON array of envelopes. Headers
/// `x-switchboard-epoch`, `x-switchboard-seq` (top) and `x-switchboard-complete` (false when
/// events after `since` were already trimmed from the history).
#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "events",
    params(("id" = String, Path, description = "Session id"), HistoryQuery),
    security(("session_token" = [])),
    responses((status = 200, description = "JSON array of envelopes", body = Vec<Object>),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let (sid, _) = authorize(&state, &headers, &id)?;
    require_session(&state, &sid).await?;
    let since = q.since.unwrap_or(0);
    let (body, top, complete) = match state.broker.history(&sid, since).await? {
        Some(h) => {
            let mut body =
                String::with_capacity(2 + h.events.iter().map(|f| f.json.len() + 1).sum::<usize>());
            body.push('[');
            for (i, f) in h.events.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(f.text());
            }
            body.push(']');
            (body, h.top, h.complete)
        }
        None => ("[]".to_owned(), state.broker.open(&sid).await?, since == 0),
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&top.epoch) {
        h.insert("x-switchboard-epoch", v);
    }
    h.insert("x-switchboard-seq", HeaderValue::from(top.seq));
    h.insert(
        "x-switchboard-complete",
        HeaderValue::from_static(if complete { "true" } else { "false" }),
    );
    Ok(resp)
}

/// Publishes an event to the session's channel (server API key).
#[utoipa::path(post, path = "/api/sessions/{id}/events", tag = "events",
    params(("id" = String, Path, description = "Session id")),
    request_body = PublishRequest,
    security(("server_api_key" = [])),
    responses((status = 202, body = PublishResponse),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<PublishRequest>,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    require_api_key(&state.config, &headers)?;
    let sid: SessionId = id.parse().map_err(|_| unknown_session(&id))?;
    let kind: EventType = (req.kind.parse()).map_err(|e: proto_events::InvalidEventType| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event_type",
            e.to_string(),
        )
    })?;
    if let Some(k) = &req.idempotency_key
        && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("`idempotency_key` must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
        ));
    }
    let event = Publish {
        kind,
        data: (req.data).unwrap_or_else(|| Value::Object(Default::default())),
        idempotency_key: req.idempotency_key,
        trace_id: None,
    };
    let published = state.sessions.publish_event(&sid, event).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PublishResponse {
            seq: published.seq,
            epoch: published.epoch,
            id: published.id.to_string(),
            duplicate: published.duplicate,
        }),
    ))
}

fn unknown_session(id: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::not_found(
        "unknown_session",
        format!("session {shown:?} does not exist or has expired"),
    )
}

/// 404 unless the session exists (reading it also slides its TTL).
pub async fn require_session(state: &AppState, sid: &SessionId) -> Result<(), ApiError> {
    crate::sessions::lifecycle::live_state(&state.sessions, sid)
        .await
        .map(|_| ())
        .map_err(ApiError::from)
}
