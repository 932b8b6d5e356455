//! `POST /api/orchestrate`: `OrchestrationRequest` → `OrchestrationDecision`.
//!
//! With a `session_id` (and its token) the decision is about that session: the scenario
//! and active agent come from its state, and a change is applied with a compare-and-set on
//! `active_agent` (of two concurrent decisions from the same state, on any instances, only
//! one switches) and published as `agent.switch` `{from, to, reason, confidence, source}`.
//! No change, no event. Without a session it only advises: `scenario_id` is required and
//! `context.active_agent` (default: the scenario's root) is the starting point.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::scenarios::unknown_scenario;
use super::sessions::optional_session;
use crate::error::{ApiError, Json};
use crate::sessions::orchestrate::{Orchestrate, Orchestrated};
use crate::state::AppState;

/// `OrchestrationRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrchestrationRequest {
    /// Scenario (required without a session; ignored with one).
    pub scenario_id: Option<String>,
    /// The user's latest message.
    pub last_user_text: Option<String>,
    /// Recent transcript lines, oldest first (strings, or objects with `text`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub transcript_tail: Vec<Value>,
    /// Free-form context; `active_agent` is the starting point without a session.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The session to decide for (requires its token).
    pub session_id: Option<String>,
}

/// `OrchestrationDecision`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrchestrationDecision {
    /// The agent in charge after this decision.
    pub chosen_root: String,
    /// Why (what matched).
    pub reason: String,
    /// Whether the agent changed.
    pub changed: bool,
    /// In [0, 1].
    pub confidence: f64,
    /// `local` or `llm`.
    pub source: &'static str,
    /// The agent in charge before.
    pub from: String,
    /// Candidate scores (local scorer).
    #[schema(value_type = Object)]
    pub scores: Map<String, Value>,
    /// Why the LLM classifier could not decide, when it could not.
    pub failure: Option<String>,
    /// Seq of the `agent.switch` event, when one was published.
    pub event_seq: Option<u64>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/orchestrate", post(orchestrate))
}

/// Chooses the agent that should be in charge.
#[utoipa::path(post, path = "/api/orchestrate", tag = "orchestration", request_body = OrchestrationRequest,
    responses((status = 200, body = OrchestrationDecision), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn orchestrate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<OrchestrationRequest>,
) -> Result<Json<OrchestrationDecision>, ApiError> {
    let tail = transcript_lines(&req.transcript_tail)?;
    let session = optional_session(&state, &headers, req.session_id.as_deref()).await?;
    let (scenario_id, active) = match &session {
        Some((_, s)) => (s.scenario_id.to_string(), Some(s.active_agent.to_string())),
        None => {
            let id = req.scenario_id.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_body",
                    "`scenario_id` is required without a `session_id`",
                )
            })?;
            let active = req.context.get("active_agent").and_then(Value::as_str);
            (id, active.map(str::to_owned))
        }
    };
    let scenario = state
        .scenarios
        .resolve(&scenario_id)
        .ok_or_else(|| unknown_scenario(&state, &scenario_id, true))?;
    let active = scenario.agent_or_default(active.as_deref())?;
    let asked = Orchestrate {
        session: session.as_ref().map(|(id, _)| id),
        scenario: &scenario,
        active,
        last_user_text: req.last_user_text.as_deref().unwrap_or_default(),
        tail: &tail,
    };
    Ok(Json(state.sessions.orchestrate(asked).await?.into()))
}

impl From<Orchestrated> for OrchestrationDecision {
    fn from(o: Orchestrated) -> Self {
        let d = o.decision;
        Self {
            changed: o.changed,
            chosen_root: d.chosen,
            reason: d.reason,
            confidence: d.confidence,
            source: d.source,
            from: o.from,
            scores: d
                .scores
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect(),
            failure: d.failure,
            event_seq: o.event_seq,
        }
    }
}

/// The transcript tail as lines: strings, or objects with `text` (or `content`).
fn transcript_lines(tail: &[Value]) -> Result<Vec<String>, ApiError> {
    tail.iter()
        .enumerate()
        .map(|(i, v)| {
            let text = match v {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o
                    .get("text")
                    .or_else(|| o.get("content"))
                    .and_then(Value::as_str),
                _ => None,
            };
            text.map(str::to_owned).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("transcript_tail[{i}] must be a string or an object with `text`"),
                )
            })
        })
        .collect()
}
