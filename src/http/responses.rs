//! `POST /api/responses`: a proxy to the upstream Responses API.
//!
//! Adds what the SDKs synthesize client-side: `output_text` (every `output_text` part of
//! every `message` item, joined without separator) and, when the request asked for
//! `text.format.type == "json_schema"`, `output_parsed` (the first message text that parses
//! as JSON, else `null`). With `stream: true` the upstream's SSE bytes are passed through as
//! they arrive.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use crate::error::{ApiError, Json};
use crate::state::AppState;
use crate::upstream::responses::add_sdk_fields;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/responses", post(create))
}

/// The documented shape of a Responses API request: `model` is the one field this proxy
/// checks; every other field (`input`, `instructions`, `tools`, `text`, `stream`, ...) is
/// passed to the upstream as sent.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ResponsesRequest {
    /// Model id, e.g. `gpt-4.1-mini`.
    #[schema(min_length = 1, pattern = "\\S")]
    model: String,
    /// Stream the upstream's server-sent events.
    stream: Option<bool>,
}

/// Creates a model response through the upstream.
#[utoipa::path(post, path = "/api/responses", tag = "models",
    request_body(content = ResponsesRequest, description = "A Responses API request; fields other than `model` pass through unchanged"),
    responses((status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),

        (status = 200, description = "The upstream response plus `output_text` (and `output_parsed` for json_schema formats); `text/event-stream` when `stream` is true", body = Object),
        (status = 400, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    _access: crate::http::caller::ModelAccess,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object (a Responses API request)",
        ));
    };
    match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => {}
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "`model` is required and must be a non-empty string",
            ));
        }
    }
    let upstream = state.upstream()?;
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(upstream, &body).await;
    }
    let wants_parsed =
        body.pointer("/text/format/type").and_then(Value::as_str) == Some("json_schema");
    let mut resp = upstream
        .post_json("responses", &body)
        .await
        .map_err(crate::error::proxy_error)?;
    add_sdk_fields(&mut resp, wants_parsed);
    Ok(Json(resp).into_response())
}

/// Relays a streamed answer as it arrives (`text/event-stream`, unbuffered).
async fn stream(
    upstream: &crate::upstream::UpstreamClient,
    body: &Value,
) -> Result<Response, ApiError> {
    let resp = upstream
        .post_stream("responses", body)
        .await
        .map_err(crate::error::proxy_error)?;
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/event-stream"));
    let mut out = Body::from_stream(resp.bytes_stream()).into_response();
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(out)
}
