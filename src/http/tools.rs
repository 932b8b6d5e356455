//! `GET /api/tools` (the registry with schemas) and `POST /api/tools/execute`.
//!
//! Execution validates the arguments against the tool's schema (422 `invalid_arguments`
//! listing each failing path), runs the tool, answers `ToolExecutionResult`, and, for a
//! session, publishes `tool.result` with the same `correlation_id`. With a `session_id`
//! the session token is required and the tool must belong to the session's active agent
//! (403 otherwise). A failing tool is `success: false` plus the event, never a 5xx. Within a
//! session a repeated `correlation_id` does not run the tool again: the first result is
//! answered (for as long as the history is kept).

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use proto_events::events::ToolResult;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::sessions::authorize;
use crate::broker::publish_event;
use crate::domain::SessionId;
use crate::error::{ApiError, Json};
use crate::lifecycle::ensure_session;
use crate::state::AppState;
use crate::tools::{ToolContext, Trail};

/// Longest correlation id.
const MAX_CORRELATION_ID: usize = 200;

/// A tool in the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolInfo {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// `builtin` or `http` (a webhook of the host app).
    pub kind: &'static str,
}

/// `ToolExecutionRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolExecutionRequest {
    /// Tool name.
    pub tool: String,
    /// Arguments (default `{}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Value,
    /// Correlates the result and its `tool.result` event; makes retries safe in a session.
    pub correlation_id: Option<String>,
    /// The session the call belongs to (requires its token).
    pub session_id: Option<String>,
}

/// `ToolExecutionResult`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolExecutionResult {
    /// Tool name.
    pub tool: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Its output (`null` on failure).
    #[schema(value_type = Object)]
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// The request's correlation id.
    pub correlation_id: Option<String>,
    /// How long the tool ran.
    pub duration_ms: u64,
    /// Steps inside the tool (the chatSupervisor's own tool calls); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub breadcrumbs: Vec<proto_events::events::Breadcrumb>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tools", get(list))
        .route("/api/tools/execute", post(execute))
}

/// Lists every tool with its schema.
#[utoipa::path(get, path = "/api/tools", tag = "tools", responses((status = 200, body = Vec<ToolInfo>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ToolInfo>> {
    Json(
        state
            .tools
            .all()
            .map(|t| ToolInfo {
                name: t.name.to_string(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
                kind: t.kind,
            })
            .collect(),
    )
}

/// Runs a tool.
#[utoipa::path(post, path = "/api/tools/execute", tag = "tools", request_body = ToolExecutionRequest,
    security((), ("session_token" = [])),
    responses((status = 200, body = ToolExecutionResult),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn execute(
    State(state): State<AppState>,
    // Tools may call the model (the supervisor, the returns check): the same access rules
    // and rate limits as the model-backed endpoints.
    _access: crate::http::caller::ModelAccess,
    headers: HeaderMap,
    Json(req): Json<ToolExecutionRequest>,
) -> Result<Json<ToolExecutionResult>, ApiError> {
    if req
        .correlation_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > MAX_CORRELATION_ID)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("`correlation_id` must be 1 to {MAX_CORRELATION_ID} bytes"),
        ));
    }
    let session = match &req.session_id {
        Some(id) => Some(authorize(&state, &headers, id)?),
        None => None,
    };
    let tool = state.tools.get(&req.tool).ok_or_else(|| {
        let shown: String = req.tool.chars().take(64).collect();
        ApiError::not_found(
            "unknown_tool",
            format!("no tool is named {shown:?}; GET /api/tools lists them"),
        )
    })?;
    if let Some((sid, claims)) = &session {
        let (s, _) = ensure_session(&state, sid, claims).await?;
        let scenario = state.scenarios.resolve(s.scenario_id.as_str());
        let agent = scenario
            .as_ref()
            .and_then(|sc| sc.agent(s.active_agent.as_str()));
        let allowed = agent.is_some_and(|a| a.tools.iter().any(|t| t.as_str() == req.tool));
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tool_not_allowed",
                format!(
                    "tool {:?} is not available to the session's active agent {}; its tools are {}",
                    req.tool,
                    s.active_agent,
                    agent
                        .map(|a| a
                            .tools
                            .iter()
                            .map(|t| t.to_string())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    let args = if req.args.is_null() {
        json!({})
    } else {
        req.args
    };
    if let Err(errors) = tool.validate(&args) {
        let summary = errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    if e.path.is_empty() {
                        "(arguments)"
                    } else {
                        &e.path
                    },
                    e.message
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_arguments",
            format!(
                "the arguments do not match {}'s schema: {summary}",
                req.tool
            ),
        )
        .with_details(json!(errors)));
    }

    let sid = session.as_ref().map(|(s, _)| s.clone());
    let claim = match (&sid, &req.correlation_id) {
        (Some(s), Some(c)) => Some((s.clone(), format!("tool:{c}"))),
        _ => None,
    };
    if let Some((s, key)) = &claim
        && let Some(first) = claim_or_wait(&state, s, key).await?
    {
        return Ok(Json(first));
    }

    let started = Instant::now();
    let trail = Trail::default();
    let ctx = ToolContext {
        upstream: state.upstream.as_ref(),
        session_id: sid.as_ref(),
        correlation_id: req.correlation_id.as_deref(),
        trail: Some(&trail),
    };
    let outcome = tool.call(&ctx, args).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let result = match outcome {
        Ok(output) => ToolExecutionResult {
            tool: req.tool.clone(),
            success: true,
            output,
            error: None,
            correlation_id: req.correlation_id.clone(),
            duration_ms,
            breadcrumbs: trail.take(),
        },
        Err(e) => ToolExecutionResult {
            tool: req.tool.clone(),
            success: false,
            output: Value::Null,
            error: Some(e.to_string()),
            correlation_id: req.correlation_id.clone(),
            duration_ms,
            breadcrumbs: trail.take(),
        },
    };
    if let Some((s, key)) = &claim {
        let stored = serde_json::to_string(&result).expect("results serialize");
        state
            .store
            .put_value(s, key, &stored, state.config.history_ttl)
            .await?;
    }
    if let Some(s) = &sid {
        publish_result(&state, s, &result, claim.as_ref().map(|c| c.1.clone())).await?;
    }
    Ok(Json(result))
}

/// Claims the correlation id; if another call holds it, waits for and returns its result.
async fn claim_or_wait(
    state: &AppState,
    sid: &SessionId,
    key: &str,
) -> Result<Option<ToolExecutionResult>, ApiError> {
    let ttl = state.config.history_ttl;
    let Some(mut existing) = state.store.put_once(sid, key, "pending", ttl).await? else {
        return Ok(None);
    };
    let deadline = Instant::now()
        + state.config.upstream_timeout * (state.config.upstream_retries + 1)
        + Duration::from_secs(5);
    loop {
        if existing != "pending" {
            return serde_json::from_str(&existing)
                .map(Some)
                .map_err(|e| ApiError::internal("a stored tool result is unreadable", &e));
        }
        if Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tool_in_progress",
                "a call with this correlation_id is still running; retry later",
            )
            .with_retry_after(1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        existing = state.store.get_value(sid, key).await?.unwrap_or_default();
    }
}

async fn publish_result(
    state: &AppState,
    sid: &SessionId,
    r: &ToolExecutionResult,
    idempotency_key: Option<String>,
) -> Result<(), ApiError> {
    let data = ToolResult {
        correlation_id: r.correlation_id.clone(),
        tool: r.tool.clone(),
        success: r.success,
        output: r.output.clone(),
        error: r.error.clone(),
        duration_ms: r.duration_ms,
        breadcrumbs: r.breadcrumbs.clone(),
    };
    publish_event(
        state.broker.as_ref(),
        sid,
        "tool.result",
        &data,
        idempotency_key,
    )
    .await?;
    Ok(())
}
