//! `/api/sdk/session/*`: multi-turn server-side agent sessions with memory (the seed's
//! Agents SDK endpoints, kept shape-compatible, on shared memory).
//!
//! - `POST /api/sdk/session/create` → `{session_id, agent_name, model, token, ...}`. Either a
//!   free-form agent (`instructions` required, optional registered `tools`) or a scenario
//!   agent (`scenario_id`, `agent_name` defaults to its root). `realtime_session_id` (with
//!   that session's token as the bearer) links it: its events go to that session's channel.
//!   Creating an id that exists returns it again, but only to a caller holding its token or
//!   the server API key.
//! - `POST /api/sdk/session/message` → `{final_output, new_items_len, tool_calls, ...}`;
//!   `client_message_id` makes a retry return the first answer without a second turn.
//! - `GET /api/sdk/session/transcript?session_id=&limit=` → `{session_id, items, length}`.
//! - `DELETE /api/sdk/session/transcript?session_id=` clears the conversation (the SDK's
//!   `clear_session`); `POST /api/sdk/session/pop` removes the newest item (`pop_item`).
//!
//! Everything but `create` takes the token `create` returned (or the server API key).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{TokenError, is_api_key};
use crate::config::MAX_ITERATIONS;
use crate::domain::SessionId;
use crate::error::{ApiError, Json, Query};
use crate::http::caller::bearer;
use crate::sessions::agent::{
    Handoff, Message, load_spec, run_message, unknown_agent_session, with_turn_lock,
};
use crate::sessions::claim::{Claim, ClaimError, Once, OnceError, once};
use crate::state::AppState;

pub mod create;

/// `POST /api/sdk/session/create` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Your own id (1-64 of `[A-Za-z0-9_-]`); generated when absent.
    pub session_id: Option<String>,
    /// Agent name (free-form: default `assistant`; scenario: one of its agents, default its root).
    pub agent_name: Option<String>,
    /// Instructions (required without a scenario; with one, added to every agent's own).
    pub instructions: Option<String>,
    /// Model (default `gpt-4.1-mini`).
    pub model: Option<String>,
    /// Run the agents of this scenario (their tools and handoffs).
    pub scenario_id: Option<String>,
    /// Registered tools of a free-form agent (`GET /api/tools`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Link to this realtime session (bearer: its session token); defaults the scenario
    /// and agent to that session's.
    pub realtime_session_id: Option<String>,
}

/// An agent session.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateResponse {
    /// Agent session id (the Agents SDK `session_id` of its memory).
    pub session_id: String,
    /// Agent in charge.
    pub agent_name: String,
    /// Model.
    pub model: String,
    /// Scenario, if any.
    pub scenario_id: Option<String>,
    /// Linked realtime session, if any.
    pub realtime_session_id: Option<String>,
    /// Bearer token for the other `/api/sdk/session/*` calls.
    pub token: String,
    /// When the token expires (unix seconds).
    pub expires_at: u64,
    /// False when the session existed already.
    pub created: bool,
}

/// `POST /api/sdk/session/message` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// Agent session id.
    pub session_id: String,
    /// The user's text (not blank).
    pub user_input: String,
    /// Overrides for this turn only.
    pub agent: Option<AgentOverride>,
    /// Your id for this message (1-128 of `[A-Za-z0-9_.:-]`): a retry with the same id
    /// returns the first answer and adds nothing.
    pub client_message_id: Option<String>,
    /// Most model round trips per agent (default `SWITCHBOARD_AGENT_MAX_ITERATIONS`).
    pub max_iterations: Option<usize>,
}

/// Per-turn overrides (the seed's `agent` object).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentOverride {
    /// Run this turn with this agent (scenario sessions: one of its agents).
    pub name: Option<String>,
    /// Instructions for this turn.
    pub instructions: Option<String>,
    /// Model for this turn.
    pub model: Option<String>,
}

/// A turn's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    /// Agent session id.
    pub session_id: String,
    /// The final answer.
    pub final_output: String,
    /// Items the turn added after the user item.
    pub new_items_len: usize,
    /// Tools called, in order.
    pub tool_calls: Vec<String>,
    /// Agent in charge after the turn.
    pub agent_name: String,
    /// Handoffs followed, in order.
    pub handoffs: Vec<Handoff>,
    /// Usage summed over the turn.
    #[schema(value_type = Object)]
    pub usage: Value,
    /// Model round trips.
    pub iterations: usize,
    /// True when an iteration or handoff cap ended the turn.
    pub capped: bool,
    /// False when the linked realtime session could not be told.
    pub published: bool,
    /// True when this answers a retry of an earlier `client_message_id`.
    #[serde(default)]
    pub duplicate: bool,
}

/// `session_id` (+ `limit`) in the query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionQuery {
    /// Agent session id.
    pub session_id: String,
    /// Only the latest N items.
    pub limit: Option<usize>,
}

/// A conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Transcript {
    /// Agent session id.
    pub session_id: String,
    /// Responses API input items, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Number of items returned.
    pub length: usize,
}

/// `POST /api/sdk/session/pop` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PopRequest {
    /// Agent session id.
    pub session_id: String,
}

/// The removed item.
#[derive(Debug, Serialize, ToSchema)]
pub struct Popped {
    /// Agent session id.
    pub session_id: String,
    /// The newest item, or `null` when the conversation was empty.
    #[schema(value_type = Option<Object>)]
    pub item: Option<Value>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sdk/session/create", post(create::create))
        .route("/api/sdk/session/message", post(message))
        .route("/api/sdk/session/transcript", get(transcript).delete(clear))
        .route("/api/sdk/session/pop", post(pop))
}

pub(super) fn parse_id(id: &str) -> Result<SessionId, ApiError> {
    id.parse().map_err(|e: crate::domain::InvalidId| {
        ApiError::bad_request("invalid_session_id", e.to_string())
    })
}

/// The agent session's id when the bearer is its token or the server API key.
fn authorize(state: &AppState, headers: &HeaderMap, id: &str) -> Result<SessionId, ApiError> {
    let sid = parse_id(id)?;
    let token = bearer(headers).ok_or(TokenError::Missing)?;
    if !is_api_key(&state.config, token) {
        state.tokens.verify_agent(token, id)?;
    }
    Ok(sid)
}

pub(super) fn bounded(
    field: &str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match v.map(|s| s.trim().to_owned()) {
        Some(s) if s.is_empty() => Err(ApiError::bad_request(
            "invalid_body",
            format!("`{field}` must not be blank"),
        )),
        Some(s) if s.chars().count() > max => Err(ApiError::bad_request(
            "invalid_body",
            format!("`{field}` is longer than {max} characters"),
        )),
        other => Ok(other),
    }
}

/// Runs one user turn through the session's agent and its tools.
#[utoipa::path(post, path = "/api/sdk/session/message", tag = "agents", request_body = MessageRequest,
    security(("session_token" = [])),
    responses((status = 200, body = MessageResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
pub async fn message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<MessageRequest>,
) -> Result<Json<MessageResponse>, ApiError> {
    let id = authorize(&state, &headers, &req.session_id)?;
    let msg = parse_message(&state, req)?;
    state.upstream()?;
    if load_spec(&state.sessions, &id).await?.is_none() {
        return Err(unknown_agent_session(&id).into());
    }
    let key = (msg.client_message_id.as_ref()).map(|c| format!("agent:msg:{c}"));
    let claim = key.as_deref().map(|key| Claim {
        store: state.store.as_ref(),
        session: &id,
        key,
        ttl: state.config.history_ttl,
    });
    let wait = state.config.agents.queue_wait + state.config.upstream_timeout * 2;
    let answered = once(claim, wait, || async {
        let outcome = run_message(&state.sessions, &id, msg).await?;
        Ok::<_, ApiError>(MessageResponse {
            session_id: id.to_string(),
            final_output: outcome.final_output,
            new_items_len: outcome.new_items_len,
            tool_calls: outcome.tool_calls,
            agent_name: outcome.agent,
            handoffs: outcome.handoffs,
            usage: outcome.usage,
            iterations: outcome.iterations,
            capped: outcome.capped,
            published: outcome.published,
            duplicate: false,
        })
    });
    match answered.await {
        Ok(Once::Fresh(resp)) => Ok(Json(resp)),
        Ok(Once::Repeat(first)) => Ok(Json(MessageResponse {
            duplicate: true,
            ..first
        })),
        Err(OnceError::Work(e)) => Err(e),
        Err(OnceError::Claim(e)) => Err(claim_error(e)),
    }
}

/// The checked message of a `message` request.
fn parse_message(state: &AppState, req: MessageRequest) -> Result<Message, ApiError> {
    if req.user_input.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "`user_input` must not be blank",
        ));
    }
    let max_iterations = req
        .max_iterations
        .unwrap_or(state.config.agents.max_iterations);
    if !(1..=MAX_ITERATIONS).contains(&max_iterations) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`max_iterations` must be 1 to {MAX_ITERATIONS}"),
        ));
    }
    if let Some(c) = &req.client_message_id {
        let ok = (1..=128).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_body",
                "`client_message_id` must be 1-128 characters from [A-Za-z0-9_.:-]",
            ));
        }
    }
    let o = req.agent.unwrap_or(AgentOverride {
        name: None,
        instructions: None,
        model: None,
    });
    Ok(Message {
        user_input: req.user_input,
        agent: bounded("agent.name", o.name, 64)?,
        instructions: o.instructions,
        model: bounded("agent.model", o.model, 128)?,
        max_iterations,
        client_message_id: req.client_message_id,
    })
}

/// A message's claim that could not be settled.
fn claim_error(e: ClaimError) -> ApiError {
    match e {
        ClaimError::InProgress => ApiError::new(
            StatusCode::CONFLICT,
            "message_in_progress",
            "a message with this client_message_id is still running; retry later",
        )
        .with_retry_after(1),
        ClaimError::Unreadable(e) => ApiError::internal("a stored agent answer is unreadable", &e),
        ClaimError::Store(e) => e.into(),
    }
}

/// The conversation so far (latest `limit` items, oldest first).
#[utoipa::path(get, path = "/api/sdk/session/transcript", tag = "agents", params(SessionQuery),
    security(("session_token" = [])),
    responses((status = 200, body = Transcript), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn transcript(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SessionQuery>,
) -> Result<Json<Transcript>, ApiError> {
    let id = authorize(&state, &headers, &q.session_id)?;
    if load_spec(&state.sessions, &id).await?.is_none() {
        return Err(unknown_agent_session(&id).into());
    }
    let items = state.memory.get_items(id.as_str(), q.limit).await?;
    Ok(Json(Transcript {
        session_id: id.to_string(),
        length: items.len(),
        items,
    }))
}

/// Clears the conversation (the agent session stays, with its current agent).
#[utoipa::path(delete, path = "/api/sdk/session/transcript", tag = "agents", params(SessionQuery),
    security(("session_token" = [])),
    responses((status = 204), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn clear(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SessionQuery>,
) -> Result<StatusCode, ApiError> {
    let id = authorize(&state, &headers, &q.session_id)?;
    if load_spec(&state.sessions, &id).await?.is_none() {
        return Err(unknown_agent_session(&id).into());
    }
    with_turn_lock(&state.sessions, &id, |_| async {
        state.memory.clear_session(id.as_str()).await?;
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes and returns the newest item (e.g. to retract the last user message).
#[utoipa::path(post, path = "/api/sdk/session/pop", tag = "agents", request_body = PopRequest,
    security(("session_token" = [])),
    responses((status = 200, body = Popped), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn pop(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<PopRequest>,
) -> Result<Json<Popped>, ApiError> {
    let id = authorize(&state, &headers, &req.session_id)?;
    if load_spec(&state.sessions, &id).await?.is_none() {
        return Err(unknown_agent_session(&id).into());
    }
    let item = with_turn_lock(&state.sessions, &id, |_| async {
        Ok::<_, ApiError>(state.memory.pop_item(id.as_str()).await?)
    })
    .await?;
    Ok(Json(Popped {
        session_id: id.to_string(),
        item,
    }))
}
