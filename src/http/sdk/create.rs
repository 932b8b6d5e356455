//! `POST /api/sdk/session/create`: a new agent session, or an existing one for its token
//! holder.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{CreateRequest, CreateResponse, bounded, parse_id};
use crate::auth::{TokenError, is_api_key};
use crate::clock::now_rfc3339;
use crate::domain::SessionId;
use crate::error::{ApiError, Json};
use crate::http::caller::bearer;
use crate::sessions::agent::{AgentSpec, load_spec, save_spec};
use crate::state::AppState;

const DEFAULT_MODEL: &str = "gpt-4.1-mini";

/// Creates an agent session (or returns an existing one to its token holder).
#[utoipa::path(post, path = "/api/sdk/session/create", tag = "agents", request_body = CreateRequest,
    responses((status = 201, body = CreateResponse), (status = 200, body = CreateResponse),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<CreateRequest>,
) -> Result<(StatusCode, Json<CreateResponse>), ApiError> {
    let given = bearer(&headers);
    let api_key = given.is_some_and(|t| is_api_key(&state.config, t));
    let id = match &req.session_id {
        Some(s) => parse_id(s)?,
        None => SessionId::generate(),
    };
    if req.session_id.is_some() {
        if let Some(spec) = load_spec(&state.sessions, &id).await? {
            let holder =
                api_key || given.is_some_and(|t| state.tokens.verify_agent(t, id.as_str()).is_ok());
            if !holder {
                return Err(exists(
                    &id,
                    "send its token (or the server API key) to get it again",
                ));
            }
            return Ok((StatusCode::OK, Json(answer(&state, spec, false))));
        }
        if !api_key
            && !state
                .memory
                .get_items(id.as_str(), Some(1))
                .await?
                .is_empty()
        {
            return Err(exists(
                &id,
                "its memory exists (e.g. written by an Agents SDK RedisSession); adopting it needs the server API key",
            ));
        }
    }
    let mut scenario_id = req.scenario_id.clone();
    let mut agent_name = bounded("agent_name", req.agent_name, 64)?;
    if let Some(rt) = &req.realtime_session_id {
        let rsid = parse_id(rt)?;
        let token = given.ok_or(TokenError::Missing)?;
        let claims = if api_key {
            None
        } else {
            Some(state.tokens.verify(token, rt)?)
        };
        let rt_state = match claims {
            Some(c) => {
                crate::sessions::lifecycle::ensure_session(&state.sessions, &rsid, &c)
                    .await?
                    .0
            }
            None => state.store.get(&rsid).await?.ok_or_else(|| {
                ApiError::not_found(
                    "unknown_session",
                    format!("session {rsid} does not exist or has expired"),
                )
            })?,
        };
        match &scenario_id {
            None => scenario_id = Some(rt_state.scenario_id.to_string()),
            Some(s)
                if state.scenarios.resolve(s).map(|x| x.id.clone())
                    != Some(rt_state.scenario_id.clone()) =>
            {
                return Err(ApiError::bad_request(
                    "scenario_mismatch",
                    format!(
                        "the realtime session runs scenario {}; a linked agent session uses the same",
                        rt_state.scenario_id
                    ),
                ));
            }
            Some(_) => {}
        }
        if agent_name.is_none() {
            agent_name = Some(rt_state.active_agent.to_string());
        }
    }
    let instructions = req.instructions.unwrap_or_default();
    let (agent_name, scenario_id) = match &scenario_id {
        Some(s) => {
            let scenario = state
                .scenarios
                .resolve(s)
                .ok_or_else(|| crate::http::scenarios::unknown_scenario(&state, s, true))?;
            let agent = scenario.agent_or_default(agent_name.as_deref())?;
            if !req.tools.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "`tools` is for free-form agents; a scenario agent has its scenario's tools",
                ));
            }
            (agent.name.to_string(), Some(scenario.id.to_string()))
        }
        None => {
            if instructions.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "`instructions` is required unless `scenario_id` (or `realtime_session_id`) is given",
                ));
            }
            for t in &req.tools {
                if state.tools.get(t).is_none() {
                    return Err(ApiError::bad_request(
                        "unknown_tool",
                        format!("unknown tool {t:?}; GET /api/tools lists them"),
                    ));
                }
            }
            (agent_name.unwrap_or_else(|| "assistant".to_owned()), None)
        }
    };
    let now = now_rfc3339();
    let spec = AgentSpec {
        session_id: id.to_string(),
        agent_name,
        instructions,
        model: bounded("model", req.model, 128)?.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        scenario_id,
        tools: req.tools,
        realtime_session_id: req.realtime_session_id,
        created_at: now.clone(),
        updated_at: now,
    };
    save_spec(&state.sessions, &spec).await?;
    Ok((StatusCode::CREATED, Json(answer(&state, spec, true))))
}

fn exists(id: &SessionId, how: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "agent_session_exists",
        format!("agent session {id} exists; {how}"),
    )
}

fn answer(state: &AppState, spec: AgentSpec, created: bool) -> CreateResponse {
    let (token, expires_at) = state.tokens.issue_agent(&spec.session_id);
    CreateResponse {
        session_id: spec.session_id,
        agent_name: spec.agent_name,
        model: spec.model,
        scenario_id: spec.scenario_id,
        realtime_session_id: spec.realtime_session_id,
        token,
        expires_at,
        created,
    }
}
