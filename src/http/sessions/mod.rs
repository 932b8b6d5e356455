//! `GET /api/sessions/{id}`: a session's state and history position (session token).
//! `POST /api/sessions/{id}/token` renews its token; `DELETE /api/sessions/{id}` revokes it
//! ([`admin`]).

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{SessionClaims, TokenError};
use crate::domain::SessionId;
use crate::error::{ApiError, Json, Path};
use crate::http::caller::bearer;
use crate::state::AppState;

pub mod admin;
pub mod revoke;

/// `GET /api/sessions/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    pub session_id: String,
    /// Canonical scenario id.
    pub scenario_id: String,
    /// Root agent at bootstrap.
    pub root_agent: String,
    /// Agent currently in charge.
    pub active_agent: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// History epoch.
    pub epoch: String,
    /// Top seq of the history.
    pub seq: u64,
    /// The session's context (from `session2` or `POST /api/context/snapshot`).
    pub context: Option<String>,
    /// The host app's user who created the session (from their user token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What the session's calls used so far: `{seconds, input_tokens, output_tokens}`
    /// (GPT-Live voice seconds, cumulative; backend tokens of delegations), once any is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub usage: Option<serde_json::Value>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/sessions/{id}",
            get(get_session).delete(admin::revoke_session),
        )
        .route("/api/sessions/{id}/token", post(admin::renew_token))
}

/// Checks the request's bearer token is valid for session `id` and returns the parsed id.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(SessionId, SessionClaims), ApiError> {
    let token = bearer(headers).ok_or(TokenError::Missing)?;
    let claims = state.tokens.verify(token, id)?;
    let sid = id.parse().map_err(|_| TokenError::Invalid)?;
    Ok((sid, claims))
}

/// For endpoints where `session_id` is optional: with one, the bearer token must be valid
/// for it and the session must exist (or be re-created from the token); returns its id and
/// state.
pub async fn optional_session(
    state: &AppState,
    headers: &HeaderMap,
    session_id: Option<&str>,
) -> Result<Option<(SessionId, crate::store::SessionState)>, ApiError> {
    let Some(id) = session_id else {
        return Ok(None);
    };
    let (sid, claims) = authorize(state, headers, id)?;
    let (s, _) = crate::sessions::lifecycle::ensure_session(&state.sessions, &sid, &claims).await?;
    Ok(Some((sid, s)))
}

/// A session's state: 401 without a valid token for it, 404 when it no longer exists.
#[utoipa::path(get, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("session_token" = [])),
    responses((status = 200, body = SessionView), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let (sid, claims) = authorize(&state, &headers, &id)?;
    let (s, _) = crate::sessions::lifecycle::ensure_session(&state.sessions, &sid, &claims).await?;
    let top = state.broker.open(&sid).await?;
    let usage = state.sessions.usage(&sid).await?;
    Ok(Json(SessionView {
        usage,
        session_id: s.session_id.to_string(),
        scenario_id: s.scenario_id.to_string(),
        root_agent: s.root_agent.to_string(),
        active_agent: s.active_agent.to_string(),
        created_at: s.created_at,
        updated_at: s.updated_at,
        epoch: top.epoch,
        seq: top.seq,
        context: s.context,
        user_id: s.user_id,
    }))
}
