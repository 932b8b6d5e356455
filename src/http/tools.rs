//! `GET /api/tools` (the registry with schemas) and `POST /api/tools/execute`.
//!
//! Execution validates the arguments against the tool's schema (422 `invalid_arguments`
//! listing each failing path), runs the tool, answers `ToolExecutionResult`, and, for a
//! session, publishes `tool.result` with the same `correlation_id`. With a `session_id`
//! the session token is required and the tool must belong to the session's active agent
//! (403 otherwise). A failing tool is `success: false` plus the event, never a 5xx. Within a
//! session a repeated `correlation_id` does not run the tool again: the first result is
//! answered (for as long as the history is kept).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use proto_events::events::ToolResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::sessions::authorize;
use crate::error::{ApiError, Json};
use crate::sessions::lifecycle::ensure_session;
use crate::sessions::tool_call::{AgentRule, ToolRan};
use crate::sessions::{Idempotency, ToolRun, ToolRunError};
use crate::state::AppState;
use crate::tools::run::{Args, Call, RunError};

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
    check_correlation_id(req.correlation_id.as_deref())?;
    let session = (req.session_id.as_deref())
        .map(|id| authorize(&state, &headers, id))
        .transpose()?;
    if state.tools.get(&req.tool).is_none() {
        return Err(ToolRunError::from(RunError::Unknown(req.tool)).into());
    }
    let args = Args::Json(&req.args);
    let correlation_id = req.correlation_id.as_deref();
    let Some((sid, claims)) = &session else {
        let call = Call {
            tool: &req.tool,
            args,
            correlation_id,
            session_id: None,
        };
        let result = state
            .sessions
            .runner()
            .run(call)
            .await
            .map_err(ToolRunError::from)?;
        return Ok(Json(result.into()));
    };
    let (s, _) = ensure_session(&state.sessions, sid, claims).await?;
    let run = ToolRun {
        session: sid,
        tool: &req.tool,
        args,
        correlation_id,
        idempotency: Idempotency::FirstResult,
        rule: AgentRule::ActiveAgent(&s),
        report_refusals: false,
        by: "rest",
        call_id: None,
    };
    match state.sessions.run_tool(run).await? {
        ToolRan::Fresh(r) | ToolRan::Repeat(r) => Ok(Json(r.into())),
        // Only answer-once runs end here.
        ToolRan::AlreadyAnswered => Err(ToolRunError::InProgress.into()),
    }
}

/// A correlation id is 1 to [`MAX_CORRELATION_ID`] bytes.
fn check_correlation_id(id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(c) if c.is_empty() || c.len() > MAX_CORRELATION_ID => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("`correlation_id` must be 1 to {MAX_CORRELATION_ID} bytes"),
        )),
        _ => Ok(()),
    }
}

impl From<ToolResult> for ToolExecutionResult {
    fn from(r: ToolResult) -> Self {
        Self {
            tool: r.tool,
            success: r.success,
            output: r.output,
            error: r.error,
            correlation_id: r.correlation_id,
            duration_ms: r.duration_ms,
            breadcrumbs: r.breadcrumbs,
        }
    }
}
