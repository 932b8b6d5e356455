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
use crate::orchestrator::decide;
use crate::sessions::{Switch, SwitchSource, Switched};
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
    let (scenario, active_name) = match &session {
        Some((_, s)) => (
            state
                .scenarios
                .resolve(s.scenario_id.as_str())
                .ok_or_else(|| unknown_scenario(&state, s.scenario_id.as_str(), true))?,
            Some(s.active_agent.to_string()),
        ),
        None => {
            let id = req.scenario_id.as_deref().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_body",
                    "`scenario_id` is required without a `session_id`",
                )
            })?;
            let sc = state
                .scenarios
                .resolve(id)
                .ok_or_else(|| unknown_scenario(&state, id, true))?;
            let active = req
                .context
                .get("active_agent")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (sc, active)
        }
    };
    let active = scenario.agent_or_default(active_name.as_deref())?;
    let text = req.last_user_text.as_deref().unwrap_or_default();
    let d = decide(&scenario, active, text, &tail, state.upstream.as_ref()).await;
    let from = active.name.to_string();
    let mut out = OrchestrationDecision {
        changed: d.chosen != from,
        chosen_root: d.chosen.clone(),
        reason: d.reason.clone(),
        confidence: d.confidence,
        source: d.source,
        from: from.clone(),
        scores: d
            .scores
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect(),
        failure: d.failure.clone(),
        event_seq: None,
    };
    if let Some((sid, _)) = &session
        && out.changed
    {
        let sw = Switch {
            from: from.clone(),
            to: d.chosen.clone(),
            source: SwitchSource::Orchestrator,
            reason: d.reason.clone(),
            confidence: d.confidence,
            tell_call: true,
        };
        match state.sessions.switch_agent(sid, sw).await? {
            Switched::Changed { seq } => out.event_seq = Some(seq),
            Switched::Unchanged => out.changed = false,
            Switched::Lost { now } => {
                // Another decision switched first: report the state as it is now.
                out.changed = false;
                out.chosen_root = now.unwrap_or(from);
                out.reason = format!("another decision changed the agent first ({})", out.reason);
            }
        }
    }
    Ok(Json(out))
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
