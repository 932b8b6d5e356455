//! Unified call setup and control (DESIGN.md §8):
//! - `POST /api/realtime/calls?session_id=S`: the browser's SDP offer in (`application/sdp`,
//!   or JSON `{sdp, root_agent?}`), the upstream's SDP answer out (`201`, our `Location`);
//!   this instance takes the call's lease and attaches the sideband; `call.started` is
//!   published.
//! - `POST /api/realtime/calls/{call_id}/hangup`: ends the call (session token).
//! - `POST /api/sessions/{id}/control`: switch agent, say, update instructions, hang up;
//!   executed by the call's owner wherever it runs.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::sessions::authorize;
use crate::auth::{TokenError, is_api_key};
use crate::domain::SessionId;
use crate::error::{ApiError, Json, Path, Query};
use crate::http::caller::bearer;
use crate::realtime::ControlError;
use crate::realtime::handler::Command;
use crate::scenario::model::{Delegation, VoiceApi};
use crate::scenario::view::agent_view;
use crate::sessions::{Switch, SwitchSource};
use crate::state::AppState;
use crate::upstream::UpstreamError;
use crate::upstream::live::{LiveSessionSpec, live_session_config, responses_delegation};
use crate::upstream::realtime::session_config;

/// `?session_id=&api=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CallQuery {
    /// The session the call belongs to.
    pub session_id: String,
    /// `realtime` or `live`: the voice API to use instead of the scenario's
    /// (`SWITCHBOARD_VOICE_APIS` lists what may be asked for).
    pub api: Option<String>,
}

/// JSON form of the offer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// The browser's SDP offer.
    pub sdp: String,
    /// Start with this agent (validated like `session2`).
    pub root_agent: Option<String>,
    /// `realtime` or `live` (as `?api=`).
    pub api: Option<String>,
}

/// A control command's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlAck {
    /// Always true.
    pub ok: bool,
    /// The instance that applied it.
    pub applied_by: String,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/calls", post(create_call))
        .route("/api/calls/{call_id}/hangup", post(hangup))
        .route("/api/realtime/calls", post(create_call))
        .route("/api/realtime/calls/{call_id}/hangup", post(hangup))
        .route("/api/sessions/{id}/control", post(control))
}

fn invalid_sdp(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_sdp", message)
}

/// Creates a call from the browser's SDP offer, on the scenario's voice API (or the one
/// asked for with `?api=` / JSON `api`, among `SWITCHBOARD_VOICE_APIS`).
///
/// Realtime: the call is created at `/v1/realtime/calls` with the active agent's
/// instructions, voice and tools, which a `session.update` can change mid-call. GPT-Live: a
/// session is created at `/v1/live/sessions` with the scenario's Live voice and voice-layer
/// prompt (fixed for the session); the backend answers its delegations with the active
/// agent, and an agent switch is told to the voice layer with an instructions append. The
/// answer is `201 application/sdp` for both, with `Location: <path>/{call_id}`. The browser
/// gets no key for Live, and waits for `session.started` on its data channel.
/// `/api/realtime/calls` is an alias of this endpoint.
#[utoipa::path(post, path = "/api/calls", tag = "realtime", params(CallQuery),
    request_body(content = String, content_type = "application/sdp"),
    security(("session_token" = [])),
    responses((status = 201, content_type = "application/sdp", body = String), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn create_call(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<CallQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (sid, claims) = authorize(&state, &headers, &q.session_id)?;
    let offer = parse_offer(&headers, &body)?;
    let upstream = state.upstream()?;
    let (s, _) = crate::sessions::lifecycle::ensure_session(&state.sessions, &sid, &claims).await?;
    let scenario = state
        .scenarios
        .resolve(s.scenario_id.as_str())
        .ok_or_else(|| super::scenarios::unknown_scenario(&state, s.scenario_id.as_str(), false))?;
    let api = voice_api(&state, &scenario, q.api.as_deref().or(offer.api.as_deref()))?;
    // The requested root is validated now and becomes the active agent only once the
    // upstream accepted the call, so a refused offer changes nothing.
    let agent = match offer.root.as_deref() {
        Some(r) => scenario.agent_or_default(Some(r))?,
        None => scenario
            .agent(s.active_agent.as_str())
            .unwrap_or_else(|| scenario.default_agent()),
    };
    let view = agent_view(&scenario, agent, s.context.as_deref());
    let (call_id, answer) = match api {
        VoiceApi::Realtime => realtime_call(&state, upstream, &offer.sdp, view).await?,
        VoiceApi::Live => live_call(&state, upstream, &offer.sdp, &scenario, view).await?,
    };
    let sw = Switch {
        from: s.active_agent.to_string(),
        to: agent.name.to_string(),
        source: SwitchSource::Client,
        reason: "root_agent of the call".into(),
        confidence: 1.0,
        // The call does not exist yet: it starts with this agent.
        tell_call: false,
    };
    state.call_deps.start_call(&sid, &call_id, sw).await?;
    let location = format!("{}/{call_id}", uri.path().trim_end_matches('/'));
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response())
}

/// The call's voice API: the one asked for when this deployment allows it, else the
/// scenario's.
fn voice_api(
    state: &AppState,
    scenario: &crate::scenario::Scenario,
    asked: Option<&str>,
) -> Result<VoiceApi, ApiError> {
    let Some(asked) = asked else {
        return Ok(scenario.voice_api);
    };
    let api = VoiceApi::parse(asked).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            format!("api {asked:?}: use realtime or live"),
        )
    })?;
    if !state.config.realtime.voice_apis.contains(&api) {
        return Err(ApiError::bad_request(
            "voice_api_not_allowed",
            format!(
                "this deployment does not offer the {} voice API (SWITCHBOARD_VOICE_APIS)",
                api.as_str()
            ),
        ));
    }
    Ok(api)
}

/// A Realtime call with the agent's instructions, voice and tools.
async fn realtime_call(
    state: &AppState,
    upstream: &crate::upstream::UpstreamClient,
    sdp: &str,
    view: crate::scenario::view::AgentView,
) -> Result<(String, String), ApiError> {
    let mut session = session_config(&state.config, Some(&view.voice), Some(&view.instructions));
    session["tools"] = json!(view.tools);
    session["tool_choice"] = json!("auto");
    upstream_call(upstream, sdp, &session).await
}

/// A GPT-Live session: the scenario's Live voice and voice-layer prompt; under Responses
/// delegation the agent's instructions and function tools for the backend model.
async fn live_call(
    state: &AppState,
    upstream: &crate::upstream::UpstreamClient,
    sdp: &str,
    scenario: &crate::scenario::Scenario,
    view: crate::scenario::view::AgentView,
) -> Result<(String, String), ApiError> {
    let instructions = crate::scenario::view::live_instructions(scenario, &view);
    let responses = (scenario.live.delegation == Delegation::Responses).then(|| {
        let tools: Vec<serde_json::Value> = (view.tools.iter())
            .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
            .collect();
        responses_delegation(LIVE_BACKEND_MODEL, &view.instructions, &tools)
    });
    let spec = LiveSessionSpec {
        model: &state.config.realtime.live_model,
        instructions: &instructions,
        voice: &scenario.live.voice,
        responses,
    };
    let created = upstream
        .create_live_session(sdp, &live_session_config(&spec))
        .await
        .map_err(refused_offer)?;
    Ok((created.id, created.answer))
}

/// The backend model of Responses delegation.
const LIVE_BACKEND_MODEL: &str = "gpt-4.1-mini";

/// An upstream 4xx about the offer (not auth or rate) is the client's `400 invalid_sdp`.
fn refused_offer(e: UpstreamError) -> ApiError {
    match e {
        UpstreamError::Status {
            status: status @ 400..=499,
            message,
        } if status != 401 && status != 429 => {
            invalid_sdp(format!("the upstream refused the offer: {message}"))
        }
        other => other.into(),
    }
}

/// A parsed offer.
struct Offer {
    sdp: String,
    root: Option<String>,
    api: Option<String>,
}

/// The offer, the optional `root_agent` and `api`: `application/sdp`, or JSON.
fn parse_offer(headers: &HeaderMap, body: &Bytes) -> Result<Offer, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let offer = if ct.starts_with("application/json") {
        let r: CallRequest = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })?;
        Offer {
            sdp: r.sdp,
            root: r.root_agent,
            api: r.api,
        }
    } else {
        let sdp = String::from_utf8(body.to_vec())
            .map_err(|_| invalid_sdp("the SDP offer is not UTF-8"))?;
        Offer {
            sdp,
            root: None,
            api: None,
        }
    };
    if !offer.sdp.trim_start().starts_with("v=") {
        return Err(invalid_sdp(
            "the body is not an SDP offer (it must start with `v=`)",
        ));
    }
    Ok(offer)
}

/// Creates the call upstream; returns its id and the SDP answer. An upstream 4xx about the
/// offer (not auth or rate) is the client's `400 invalid_sdp`.
async fn upstream_call(
    upstream: &crate::upstream::UpstreamClient,
    sdp: &str,
    session: &serde_json::Value,
) -> Result<(String, String), ApiError> {
    let (location, answer) = upstream
        .create_call(sdp, session)
        .await
        .map_err(refused_offer)?;
    let call_id = location.rsplit('/').next().unwrap_or_default().to_owned();
    let call_ok = !call_id.is_empty()
        && call_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !call_ok {
        return Err(UpstreamError::InvalidBody(format!(
            "no usable call id in Location {location:?}"
        ))
        .into());
    }
    Ok((call_id, answer))
}

/// Ends a call (either voice API; `/api/realtime/calls/{call_id}/hangup` is an alias).
#[utoipa::path(post, path = "/api/calls/{call_id}/hangup", tag = "realtime",
    params(("call_id" = String, Path, description = "Call id")), security(("session_token" = [])),
    responses((status = 200, body = ControlAck), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn hangup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Result<Json<ControlAck>, ApiError> {
    let token = bearer(&headers).ok_or(TokenError::Missing)?;
    let claims = state.tokens.verify_any(token)?;
    let sid: SessionId = claims.sid.parse().map_err(|_| TokenError::Invalid)?;
    crate::sessions::lifecycle::live_state(&state.sessions, &sid).await?;
    if state.calls.leases.call_of(&sid).await?.as_deref() != Some(call_id.as_str()) {
        return Err(ApiError::not_found(
            "unknown_call",
            format!("call {call_id} is not a live call of this session"),
        ));
    }
    let by = match state
        .calls
        .control(
            &state.instance_id,
            &sid,
            Command::Hangup,
            state.config.realtime.control_timeout,
        )
        .await
    {
        Ok(by) => by,
        // Nobody holds the call (its owner died): end it here.
        Err(ControlError::Unreachable) => {
            let deps = &state.call_deps;
            deps.end_call(&sid, &call_id, "hangup", true).await?;
            state.instance_id.clone()
        }
        Err(e) => return Err(control_error(e)),
    };
    Ok(Json(ControlAck {
        ok: true,
        applied_by: by,
    }))
}

fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::NoCall => ApiError::new(
            StatusCode::CONFLICT,
            "no_active_call",
            "the session has no live call",
        ),
        ControlError::Unreachable => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "owner_unreachable",
            "the instance holding the call did not acknowledge in time; retry shortly",
        )
        .with_retry_after(1),
        ControlError::Rejected(m) => ApiError::bad_request("control_rejected", m),
        ControlError::Store(e) => e.into(),
    }
}

/// Sends a command to the session's live call.
#[utoipa::path(post, path = "/api/sessions/{id}/control", tag = "realtime", request_body = Command,
    params(("id" = String, Path, description = "Session id")),
    security(("server_api_key" = []), ("session_token" = [])),
    responses((status = 200, body = ControlAck), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn control(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(mut cmd): Json<Command>,
) -> Result<Json<ControlAck>, ApiError> {
    let server = bearer(&headers).is_some_and(|t| is_api_key(&state.config, t));
    let sid: SessionId = if server {
        id.parse().map_err(|e: crate::domain::InvalidId| {
            ApiError::bad_request("invalid_session_id", e.to_string())
        })?
    } else {
        authorize(&state, &headers, &id)?.0
    };
    let s = crate::sessions::lifecycle::live_state(&state.sessions, &sid).await?;
    check_command(&state, &s, server, &mut cmd)?;
    let by = state
        .calls
        .control(
            &state.instance_id,
            &sid,
            cmd,
            state.config.realtime.control_timeout,
        )
        .await
        .map_err(control_error)?;
    Ok(Json(ControlAck {
        ok: true,
        applied_by: by,
    }))
}

/// Refuses what a caller may not send: an unknown agent, with a session token a switch the
/// active agent does not hand off to or any action but a switch or a hang-up, a blank text.
/// A switch's `source` is set from who sent it.
fn check_command(
    state: &AppState,
    s: &crate::store::SessionState,
    server: bool,
    cmd: &mut Command,
) -> Result<(), ApiError> {
    match cmd {
        Command::SwitchAgent { agent, source } => {
            let scenario = state.scenarios.resolve(s.scenario_id.as_str());
            let known = scenario
                .as_ref()
                .is_some_and(|sc| sc.agent(agent).is_some());
            if !known {
                return Err(ApiError::bad_request(
                    "unknown_agent",
                    format!("agent {agent:?} is not in scenario {}", s.scenario_id),
                ));
            }
            let reachable = scenario
                .as_ref()
                .and_then(|sc| sc.agent(s.active_agent.as_str()))
                .is_some_and(|a| a.handoffs.iter().any(|h| h.as_str() == agent));
            if !server && !reachable {
                return Err(forbidden(format!(
                    "with a session token, switch only to an agent the active agent {} hands off to",
                    s.active_agent
                )));
            }
            *source = if server { "server" } else { "client" }.to_owned();
        }
        Command::Hangup => {}
        _ if !server => return Err(forbidden("this action needs the server API key".into())),
        Command::Say { text } | Command::UpdateInstructions { instructions: text }
            if text.trim().is_empty() =>
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the text must not be blank",
            ));
        }
        _ => {}
    }
    Ok(())
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}
