//! `GET`/`POST /api/session2`: the bootstrap a realtime frontend makes once per session.
//!
//! Validates the scenario (aliases allowed) and root agent, mints the ephemeral key for the
//! root agent (voice, instructions + context), creates the session and its event history,
//! and answers `SessionInitPayload` plus what the browser needs to open the event channel.
//! The key is minted first: if the upstream fails, no session is left behind. Offline, the
//! session is still created, with `ephemeral_key: null` and a `warning`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::scenarios::unknown_scenario;
use crate::domain::SessionId;
use crate::error::{ApiError, Json, Query};
use crate::http::caller::{Caller, ModelAccess};
use crate::scenario::DEFAULT_SCENARIO;
use crate::scenario::model::{Agent, VoiceApi};
use crate::scenario::view::{AgentView, GuardrailView, guardrails, initial_agents, with_context};
use crate::sessions::lifecycle::{NewSession, create_session};
use crate::state::AppState;
use crate::upstream::realtime::session_config;

/// `GET /api/session2` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Session2Query {
    /// Scenario id or alias (default `chatSupervisor`).
    pub scenario_id: Option<String>,
    /// Root agent (default: the scenario's default root).
    pub root_agent: Option<String>,
}

/// `POST /api/session2` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Session2Request {
    /// Scenario id or alias (default `chatSupervisor`).
    pub scenario_id: Option<String>,
    /// Root agent (default: the scenario's default root).
    pub root_agent: Option<String>,
    /// Context appended to the root agent's instructions: a string, or an object rendered as
    /// `key: value` lines.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// Where and how the browser opens the session's event channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsInfo {
    /// WebSocket URL, token included.
    pub ws_url: String,
    /// SSE URL, token and epoch included.
    pub sse_url: String,
    /// Session token (HS256 JWT) for session-scoped endpoints.
    pub token: String,
    /// Current history epoch.
    pub epoch: String,
    /// Current top seq (0 for a new session).
    pub seq: u64,
}

/// `SessionInitPayload` plus session and channel details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session2Response {
    /// New session id.
    pub session_id: String,
    /// Canonical scenario id.
    pub scenario_id: String,
    /// Root agent.
    pub root_agent: String,
    /// Ephemeral realtime key; `null` when offline.
    pub ephemeral_key: Option<String>,
    /// When the ephemeral key expires (unix seconds); `null` when offline.
    pub ephemeral_key_expires_at: Option<u64>,
    /// When the session token expires (unix seconds).
    pub expires_at: u64,
    /// Agents, root first, each with its tools and `transfer_to_*` handoff tools.
    pub initial_agents: Vec<AgentView>,
    /// Guardrail metadata.
    pub guardrails: Vec<GuardrailView>,
    /// Event channel.
    pub events: EventsInfo,
    /// Set when something is degraded (e.g. offline: no key was minted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The scenario's voice API: `realtime` (voice with `ephemeral_key`) or `live` (voice
    /// through `POST /api/calls`; `ephemeral_key` is null).
    #[schema(example = "realtime")]
    pub voice_api: &'static str,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/session2", get(bootstrap_get).post(bootstrap_post))
}

/// Bootstraps a session (query parameters).
#[utoipa::path(get, path = "/api/session2", tag = "sessions", params(Session2Query),
    responses((status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 200, body = Session2Response), (status = 400, body = crate::error::ErrorBody),
        (status = 502, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn bootstrap_get(
    State(state): State<AppState>,
    ModelAccess(caller): ModelAccess,
    headers: HeaderMap,
    Query(q): Query<Session2Query>,
) -> Result<Json<Session2Response>, ApiError> {
    bootstrap(&state, &caller, &headers, q.scenario_id, q.root_agent, None).await
}

/// Bootstraps a session (JSON body, may carry `context`).
#[utoipa::path(post, path = "/api/session2", tag = "sessions", request_body = Session2Request,
    responses((status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 200, body = Session2Response), (status = 400, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 504, body = crate::error::ErrorBody)))]
pub async fn bootstrap_post(
    State(state): State<AppState>,
    ModelAccess(caller): ModelAccess,
    headers: HeaderMap,
    Json(req): Json<Session2Request>,
) -> Result<Json<Session2Response>, ApiError> {
    let context = req
        .context
        .map(|c| render_context(&c, state.config.context_max_bytes))
        .transpose()?
        .flatten();
    bootstrap(
        &state,
        &caller,
        &headers,
        req.scenario_id,
        req.root_agent,
        context,
    )
    .await
}

async fn bootstrap(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    scenario_id: Option<String>,
    root_agent: Option<String>,
    context: Option<String>,
) -> Result<Json<Session2Response>, ApiError> {
    let wanted = scenario_id
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SCENARIO.to_owned());
    let scenario = state
        .scenarios
        .resolve(wanted.trim())
        .ok_or_else(|| unknown_scenario(state, &wanted, true))?;
    if !caller.may_start(scenario.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scenario_not_allowed",
            format!("your user token does not allow scenario {}", scenario.id),
        ));
    }
    let root = scenario.agent_or_default(root_agent.as_deref())?;
    let key = match scenario.voice_api {
        VoiceApi::Live if state.upstream.is_none() => ephemeral_key(state, root, None).await?,
        VoiceApi::Realtime => ephemeral_key(state, root, context.as_deref()).await?,
        // Live never gives the browser a key: the call endpoint creates the session.
        VoiceApi::Live => KeyOrWarning {
            value: None,
            expires_at: None,
            warning: Some(
                "voice_api_live: this scenario runs on GPT-Live; start voice with POST \
                 /api/calls?session_id=... (no browser key is needed)"
                    .to_owned(),
            ),
        },
    };
    let new = NewSession {
        id: SessionId::generate(),
        scenario_id: scenario.id.clone(),
        root: root.name.clone(),
        context,
        user_id: caller.user_id().map(str::to_owned),
    };
    let (s, top) = create_session::<ApiError>(&state.sessions, new).await?;
    let sid = &s.session_id;
    let (token, expires_at) = (state.tokens).issue_user(
        sid,
        scenario.id.as_str(),
        root.name.as_str(),
        s.user_id.as_deref(),
    );
    tracing::info!(session_id = %sid, scenario = %scenario.id, root = %root.name, "session created");
    Ok(Json(Session2Response {
        session_id: sid.to_string(),
        scenario_id: scenario.id.to_string(),
        root_agent: root.name.to_string(),
        ephemeral_key: key.value,
        ephemeral_key_expires_at: key.expires_at,
        expires_at,
        initial_agents: initial_agents(&scenario, root, s.context.as_deref()),
        guardrails: guardrails(&scenario),
        events: events_info(state, headers, sid, token, top.epoch, top.seq),
        warning: key.warning,
        voice_api: scenario.voice_api.as_str(),
    }))
}

/// The browser's ephemeral key, or why there is none.
struct KeyOrWarning {
    value: Option<String>,
    expires_at: Option<u64>,
    warning: Option<String>,
}

/// Mints an ephemeral key for the root agent; offline, a warning instead.
async fn ephemeral_key(
    state: &AppState,
    root: &Agent,
    context: Option<&str>,
) -> Result<KeyOrWarning, ApiError> {
    let Some(up) = &state.upstream else {
        return Ok(KeyOrWarning {
            value: None,
            expires_at: None,
            warning: Some(
                "upstream_not_configured: no OPENAI_API_KEY is set, so no ephemeral key was \
                 minted; the session and its event channel work, voice does not"
                    .to_owned(),
            ),
        });
    };
    let instructions = with_context(&root.instructions, context);
    let cfg = session_config(&state.config, Some(&root.voice), Some(&instructions));
    let key = up.mint_client_secret(state.config.key_ttl, cfg).await?;
    Ok(KeyOrWarning {
        value: Some(key.value),
        expires_at: Some(key.expires_at),
        warning: None,
    })
}

/// A string context as is; an object as sorted `key: value` lines; `null`/empty as none.
fn render_context(c: &Value, max: usize) -> Result<Option<String>, ApiError> {
    let text = match c {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim().to_owned(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "`context` must be a string or an object",
            ));
        }
    };
    if text.len() > max {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "context_too_large",
            format!("`context` is {} bytes; the limit is {max}", text.len()),
        ));
    }
    Ok((!text.is_empty()).then_some(text))
}

/// Event-channel URLs from `SWITCHBOARD_PUBLIC_URL`, else from the request's Host (and
/// `X-Forwarded-Proto` behind a proxy).
fn events_info(
    state: &AppState,
    headers: &HeaderMap,
    sid: &SessionId,
    token: String,
    epoch: String,
    seq: u64,
) -> EventsInfo {
    let base = state.config.public_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        format!("{proto}://{host}")
    });
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        format!("ws://{}", base.trim_start_matches("http://"))
    };
    EventsInfo {
        ws_url: format!("{ws_base}/api/ws?session_id={sid}&token={token}"),
        sse_url: format!("{base}/api/sessions/{sid}/stream?token={token}&epoch={epoch}"),
        token,
        epoch,
        seq,
    }
}
