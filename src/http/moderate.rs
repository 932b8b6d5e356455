//! `POST /api/moderate`: `ModerationRequest` → `ModerationDecision`.
//!
//! Without a `session_id` anyone may ask (the brand classifier then judges for
//! `context.company_name`, or "the company"). With one, the session token is required, the
//! brand is the session scenario's company, and a refused text publishes
//! `moderation.flagged` on the session's channel.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::sessions::optional_session;
use crate::error::{ApiError, Json};
use crate::sessions::moderate::TextSource;
use crate::state::AppState;

/// `ModerationRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    /// The text to judge.
    pub text: String,
    /// The end user, if known.
    pub user_id: Option<String>,
    /// Free-form context (`company_name` is used by the brand check without a session).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The session the text belongs to (requires its token).
    pub session_id: Option<String>,
    /// Where the text comes from: `user`, `assistant` or `api` (default `api`).
    pub source: Option<String>,
}

/// `ModerationDecision`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModerationDecision {
    /// False when a check flagged the text (or a check failed under fail-closed).
    pub allowed: bool,
    /// Category flags from every check that ran.
    #[schema(value_type = Object)]
    pub categories: Map<String, Value>,
    /// The text with PII redacted, when anything was redacted.
    pub sanitized_text: Option<String>,
    /// The checks that flagged the text.
    pub flagged_by: Vec<&'static str>,
    /// The brand classifier's reason, when it ran.
    pub rationale: Option<String>,
    /// Checks that could not run, and why (fail-open keeps the text allowed regardless).
    pub failures: Vec<String>,
    /// PII found, counted by kind (never the values).
    #[schema(value_type = Object)]
    pub redactions: std::collections::BTreeMap<&'static str, usize>,
    /// The checks configured.
    pub modes: Vec<&'static str>,
    /// Seq of the `moderation.flagged` event, when one was published.
    pub event_seq: Option<u64>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/moderate", post(moderate))
}

/// Judges a text.
#[utoipa::path(post, path = "/api/moderate", tag = "moderation", request_body = ModerationRequest,
    responses((status = 429, body = crate::error::ErrorBody),
        (status = 200, body = ModerationDecision), (status = 401, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn moderate(
    State(state): State<AppState>,
    _access: crate::http::caller::ModelAccess,
    headers: HeaderMap,
    Json(req): Json<ModerationRequest>,
) -> Result<Json<ModerationDecision>, ApiError> {
    let unprocessable = |msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", msg);
    if req.text.trim().is_empty() {
        return Err(unprocessable("`text` must not be empty"));
    }
    let source = TextSource::parse(req.source.as_deref().unwrap_or("api"))
        .ok_or_else(|| unprocessable("`source` must be user, assistant or api"))?;
    let session = optional_session(&state, &headers, req.session_id.as_deref()).await?;
    let company = match &session {
        Some((_, s)) => state
            .scenarios
            .resolve(s.scenario_id.as_str())
            .map(|sc| sc.company_name.clone())
            .unwrap_or_default(),
        None => req
            .context
            .get("company_name")
            .and_then(Value::as_str)
            .unwrap_or("the company")
            .to_owned(),
    };
    let sid = session.as_ref().map(|(id, _)| id);
    let m = state
        .sessions
        .moderate(sid, &req.text, &company, source)
        .await?;
    let d = m.decision;
    Ok(Json(ModerationDecision {
        allowed: d.allowed,
        categories: d.categories,
        sanitized_text: d.sanitized_text,
        flagged_by: d.flagged_by,
        rationale: d.rationale,
        failures: d.failures,
        redactions: d.redactions,
        modes: state.moderator.modes().names(),
        event_seq: m.event_seq,
    }))
}
