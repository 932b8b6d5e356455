//! `POST /api/context/snapshot`: `ContextSnapshotRequest` → `ContextSnapshot`.
//!
//! Assembles labelled blocks (`Page: …`, `Project: …`, `User: …`, then each `extra` entry
//! as `key: value`, keys sorted), scrubs PII from each with the moderation redactor, and
//! caps the total at `SWITCHBOARD_CONTEXT_MAX_BYTES` (the block that crosses the cap is cut
//! at a character boundary, later ones are dropped). With a `session_id` (and its token) the
//! snapshot becomes the session's context, so the agents of later turns and calls see it.
//! `metadata` reports sizes, counts and what kinds of PII were redacted, never the values.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::sessions::authorize;
use crate::error::{ApiError, Json};
use crate::moderation::redact::redact;
use crate::sessions::lifecycle::ensure_session;
use crate::state::AppState;

/// `ContextSnapshotRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSnapshotRequest {
    /// The page the user is on.
    pub page: Option<String>,
    /// The project in view.
    pub project_id: Option<String>,
    /// The user.
    pub user_id: Option<String>,
    /// Anything else, rendered as `key: value` blocks.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
    /// Store the snapshot as this session's context (requires its token).
    pub session_id: Option<String>,
}

/// `ContextSnapshot`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextSnapshot {
    /// Snapshot id (UUIDv7).
    pub id: String,
    /// The blocks, PII scrubbed, within the size cap.
    pub content_blocks: Vec<String>,
    /// Sizes, counts, redaction kinds, whether it was stored.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/context/snapshot", post(snapshot))
}

/// Builds a context snapshot.
#[utoipa::path(post, path = "/api/context/snapshot", tag = "context", request_body = ContextSnapshotRequest,
    responses((status = 200, body = ContextSnapshot), (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ContextSnapshotRequest>,
) -> Result<Json<ContextSnapshot>, ApiError> {
    let session = match &req.session_id {
        Some(id) => {
            let (sid, claims) = authorize(&state, &headers, id)?;
            ensure_session(&state.sessions, &sid, &claims).await?;
            Some(sid)
        }
        None => None,
    };
    let raw = raw_blocks(&req);
    let (blocks, redactions, truncated, dropped) =
        scrub_and_cap(raw, state.config.context_max_bytes);
    let size: usize = blocks.iter().map(String::len).sum();
    let stored = match &session {
        Some(sid) => {
            let text = blocks.join("\n");
            state
                .store
                .set_context(sid, (!text.is_empty()).then_some(text.as_str()))
                .await?
        }
        None => false,
    };
    Ok(Json(ContextSnapshot {
        id: uuid::Uuid::now_v7().to_string(),
        metadata: json!({
            "size": size,
            "blocks": blocks.len(),
            "truncated": truncated,
            "dropped_blocks": dropped,
            "redactions": redactions,
            "stored": stored,
        }),
        content_blocks: blocks,
    }))
}

/// The request's fields as `Label: value` lines, then its extras sorted by key.
fn raw_blocks(req: &ContextSnapshotRequest) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    for (label, v) in [
        ("Page", &req.page),
        ("Project", &req.project_id),
        ("User", &req.user_id),
    ] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            raw.push(format!("{label}: {v}"));
        }
    }
    let extra: BTreeMap<&String, &Value> = req.extra.iter().collect();
    for (k, v) in extra {
        match v {
            Value::Null => {}
            Value::String(s) => raw.push(format!("{k}: {s}")),
            other => raw.push(format!("{k}: {other}")),
        }
    }
    raw
}

/// Redacts each block and keeps them within `max` bytes in total.
fn scrub_and_cap(
    raw: Vec<String>,
    max: usize,
) -> (Vec<String>, BTreeMap<&'static str, usize>, bool, usize) {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let (mut used, mut truncated, mut dropped) = (0usize, false, 0usize);
    for block in raw {
        let (clean, c) = redact(&block);
        for (k, n) in c {
            *counts.entry(k).or_default() += n;
        }
        if truncated {
            dropped += 1;
            continue;
        }
        if used + clean.len() <= max {
            used += clean.len();
            out.push(clean);
            continue;
        }
        let mut cut = max - used;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            out.push(clean[..cut].to_owned());
        } else {
            dropped += 1;
        }
        truncated = true;
        used = max;
    }
    (out, counts, truncated, dropped)
}
