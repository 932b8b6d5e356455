//! `POST /api/agent/run`: one server-side agent turn (Responses API plus the tool loop).
//!
//! Accepts the seed's body (`model`, `messages`, `tools`), mapping `messages` to `input`
//! (the seed sent `messages`, which the Responses API rejects), or `input` directly. `tools`
//! names registered tools. With `scenario_id` + `agent`, that agent's instructions, tools
//! and `transfer_to_*` handoff tools are used.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::scenarios::unknown_scenario;
use crate::config::MAX_ITERATIONS;
use crate::error::{ApiError, Json};
use crate::sessions::agent::{AgentConfig, scenario_agent};
use crate::state::AppState;
use crate::tools::turn::{TurnSpec, run_turn};

/// `POST /api/agent/run` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRunRequest {
    /// Model (default `gpt-4.1-mini`).
    pub model: Option<String>,
    /// Chat-style messages `[{role, content}]` (the seed's field), sent as `input`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<Value>>,
    /// Responses API `input`: a string or input items.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// System instructions (ignored with `agent`).
    pub instructions: Option<String>,
    /// Registered tools the model may call (ignored with `agent`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Scenario of `agent`.
    pub scenario_id: Option<String>,
    /// Run this scenario agent (its instructions, tools and handoff tools).
    pub agent: Option<String>,
    /// Most model round trips (default `SWITCHBOARD_AGENT_MAX_ITERATIONS`, at most 20).
    pub max_iterations: Option<usize>,
}

/// One turn's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentRunResponse {
    /// Id of the last response.
    pub id: String,
    /// The final answer.
    pub output_text: String,
    /// The last response's output items.
    #[schema(value_type = Vec<Object>)]
    pub output: Vec<Value>,
    /// Tools called, in order.
    pub tool_calls: Vec<String>,
    /// Usage summed over the loop.
    #[schema(value_type = Object)]
    pub usage: Value,
    /// Model round trips.
    pub iterations: usize,
    /// True when the iteration cap ended the turn.
    pub capped: bool,
    /// The agent the model handed off to, if any.
    pub handoff: Option<String>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/agent/run", post(run))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
}

/// Runs one agent turn.
#[utoipa::path(post, path = "/api/agent/run", tag = "agents", request_body = AgentRunRequest,
    responses((status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 200, body = AgentRunResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    _access: crate::http::caller::ModelAccess,
    Json(mut req): Json<AgentRunRequest>,
) -> Result<Json<AgentRunResponse>, ApiError> {
    let input = input_items(req.messages.take(), req.input.take())?;
    let max_iterations = req
        .max_iterations
        .unwrap_or(state.config.agents.max_iterations);
    if !(1..=MAX_ITERATIONS).contains(&max_iterations) {
        return Err(invalid(format!(
            "`max_iterations` must be 1 to {MAX_ITERATIONS}"
        )));
    }
    let cfg = agent_config(&state, &mut req)?;
    let upstream = state.upstream()?;
    let model = req.model.unwrap_or_else(|| "gpt-4.1-mini".to_owned());
    let spec = TurnSpec {
        model: &model,
        instructions: &cfg.instructions,
        tools: &cfg.tools,
        extra_tools: &cfg.handoffs,
        input,
        max_iterations,
        parallel_tool_calls: None,
        session_id: None,
        observer: None,
        replay: None,
    };
    let r = run_turn(upstream, &state.tools, spec).await?;
    Ok(Json(AgentRunResponse {
        id: r.id,
        output_text: r.output_text,
        output: r.output,
        tool_calls: r.tool_calls,
        usage: r.usage,
        iterations: r.iterations,
        capped: r.capped,
        handoff: r.handoff,
    }))
}

/// The turn's input items: `messages`, or `input` as a string or an item list.
fn input_items(messages: Option<Vec<Value>>, input: Option<Value>) -> Result<Vec<Value>, ApiError> {
    let items = match (messages, input) {
        (Some(_), Some(_)) => return Err(invalid("send `messages` or `input`, not both")),
        (Some(m), None) => m,
        (None, Some(Value::String(s))) => vec![json!({"role": "user", "content": s})],
        (None, Some(Value::Array(items))) => items,
        (None, Some(_)) => return Err(invalid("`input` must be a string or an array of items")),
        (None, None) => return Err(invalid("`messages` or `input` is required")),
    };
    if items.is_empty() {
        return Err(invalid("the input is empty"));
    }
    Ok(items)
}

/// The agent to run: a scenario's agent, or the request's own instructions and tools.
fn agent_config(state: &AppState, req: &mut AgentRunRequest) -> Result<AgentConfig, ApiError> {
    match (&req.scenario_id, &req.agent) {
        (Some(sid), Some(name)) => {
            let scenario = state
                .scenarios
                .resolve(sid)
                .ok_or_else(|| unknown_scenario(state, sid, true))?;
            let agent = scenario.agent_or_default(Some(name))?;
            Ok(scenario_agent(&scenario, agent))
        }
        (None, None) => {
            if let Some(t) = req.tools.iter().find(|t| state.tools.get(t).is_none()) {
                return Err(invalid(format!(
                    "unknown tool {t:?}; GET /api/tools lists them"
                )));
            }
            Ok(AgentConfig {
                name: String::new(),
                instructions: req.instructions.take().unwrap_or_default(),
                tools: std::mem::take(&mut req.tools),
                handoffs: Vec::new(),
            })
        }
        _ => Err(invalid("`scenario_id` and `agent` go together")),
    }
}
