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
    if req.session_id.is_some()
        && let Some(spec) = existing(&state, &id, given, api_key).await?
    {
        return Ok((StatusCode::OK, Json(answer(&state, spec, false))));
    }
    let mut scenario_id = req.scenario_id.clone();
    let mut agent_name = bounded("agent_name", req.agent_name.clone(), 64)?;
    if let Some(rt) = &req.realtime_session_id {
        let (scn, agent) = linked(&state, rt, given, api_key, scenario_id.as_deref()).await?;
        scenario_id = Some(scn);
        agent_name = agent_name.or(Some(agent));
    }
    let instructions = req.instructions.clone().unwrap_or_default();
    let (agent_name, scenario_id) = agent_of(
        &state,
        &req,
        scenario_id.as_deref(),
        agent_name,
        &instructions,
    )?;
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

/// An existing agent session `id`, for its token holder (or the server API key). 409 for
/// anyone else, and when only its memory exists (adopting that needs the API key).
async fn existing(
    state: &AppState,
    id: &SessionId,
    given: Option<&str>,
    api_key: bool,
) -> Result<Option<AgentSpec>, ApiError> {
    if let Some(spec) = load_spec(&state.sessions, id).await? {
        let holder =
            api_key || given.is_some_and(|t| state.tokens.verify_agent(t, id.as_str()).is_ok());
        if !holder {
            return Err(exists(
                id,
                "send its token (or the server API key) to get it again",
            ));
        }
        return Ok(Some(spec));
    }
    if !api_key
        && !state
            .memory
            .get_items(id.as_str(), Some(1))
            .await?
            .is_empty()
    {
        return Err(exists(
            id,
            "its memory exists (e.g. written by an Agents SDK RedisSession); adopting it needs the server API key",
        ));
    }
    Ok(None)
}

/// The scenario and active agent of the realtime session `rt` an agent session links to
/// (its token, or the server API key, is required); a different `scenario_id` is refused.
async fn linked(
    state: &AppState,
    rt: &str,
    given: Option<&str>,
    api_key: bool,
    scenario_id: Option<&str>,
) -> Result<(String, String), ApiError> {
    let rsid = parse_id(rt)?;
    let token = given.ok_or(TokenError::Missing)?;
    let rt_state = if api_key {
        state.store.get(&rsid).await?.ok_or_else(|| {
            ApiError::not_found(
                "unknown_session",
                format!("session {rsid} does not exist or has expired"),
            )
        })?
    } else {
        let claims = state.tokens.verify(token, rt)?;
        crate::sessions::lifecycle::ensure_session(&state.sessions, &rsid, &claims)
            .await?
            .0
    };
    if let Some(s) = scenario_id
        && state.scenarios.resolve(s).map(|x| x.id.clone()) != Some(rt_state.scenario_id.clone())
    {
        return Err(ApiError::bad_request(
            "scenario_mismatch",
            format!(
                "the realtime session runs scenario {}; a linked agent session uses the same",
                rt_state.scenario_id
            ),
        ));
    }
    Ok((
        rt_state.scenario_id.to_string(),
        rt_state.active_agent.to_string(),
    ))
}

/// The agent (and canonical scenario id) a new session runs: a scenario's agent, or a
/// free-form agent with instructions and registered tools.
fn agent_of(
    state: &AppState,
    req: &CreateRequest,
    scenario_id: Option<&str>,
    agent_name: Option<String>,
    instructions: &str,
) -> Result<(String, Option<String>), ApiError> {
    if let Some(s) = scenario_id {
        let scenario = state
            .scenarios
            .resolve(s)
            .ok_or_else(|| crate::http::scenarios::unknown_scenario(state, s, true))?;
        let agent = scenario.agent_or_default(agent_name.as_deref())?;
        if !req.tools.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_body",
                "`tools` is for free-form agents; a scenario agent has its scenario's tools",
            ));
        }
        return Ok((agent.name.to_string(), Some(scenario.id.to_string())));
    }
    if instructions.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "`instructions` is required unless `scenario_id` (or `realtime_session_id`) is given",
        ));
    }
    if let Some(t) = req.tools.iter().find(|t| state.tools.get(t).is_none()) {
        return Err(ApiError::bad_request(
            "unknown_tool",
            format!("unknown tool {t:?}; GET /api/tools lists them"),
        ));
    }
    Ok((agent_name.unwrap_or_else(|| "assistant".to_owned()), None))
}
