//! Renewing a session token and revoking a session.
//!
//! - `POST /api/sessions/{id}/token`: a new token for the session, for the holder of a valid
//!   (unexpired) token of it, the server API key, or the user who created it. The old token
//!   stays valid until its own `exp`.
//! - `DELETE /api/sessions/{id}`: the server API key or the user who created it. State,
//!   history and the mirrored conversation are deleted, a live call is hung up, every socket
//!   on every instance is closed with 4009, and later tokens are refused (401
//!   `session_revoked`, close 4009).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::TokenError;
use crate::domain::SessionId;
use crate::error::{ApiError, Json, Path};
use crate::http::caller::{Caller, classify};
use crate::sessions::lifecycle::{Missing, ensure_session};
use crate::state::AppState;

/// A renewed session token.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenewedToken {
    /// The new token.
    pub token: String,
    /// Its expiry (unix seconds).
    pub expires_at: u64,
}

fn parse(id: &str) -> Result<SessionId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::not_found(
            "unknown_session",
            format!("session {id:?} does not exist or has expired"),
        )
    })
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The session's state for a caller allowed to manage it.
async fn managed(
    state: &AppState,
    caller: &Caller,
    sid: &SessionId,
    session_token_ok: bool,
) -> Result<crate::store::SessionState, ApiError> {
    let s = match caller {
        Caller::Anonymous => return Err(TokenError::Missing.into()),
        Caller::Session(c) if session_token_ok => {
            if c.sid != sid.as_str() {
                return Err(TokenError::Invalid.into());
            }
            ensure_session(&state.sessions, sid, c).await?.0
        }
        Caller::Session(_) => {
            return Err(forbidden(
                "a session token cannot revoke its session; use the server API key or the user's token",
            ));
        }
        Caller::ApiKey | Caller::User(_) => match state.store.get(sid).await? {
            Some(s) => s,
            None if state.store.is_revoked(sid).await? => return Err(Missing::Revoked.into()),
            None => return Err(Missing::Gone.into()),
        },
    };
    if let Caller::User(u) = caller
        && s.user_id.as_deref() != Some(u.sub.as_str())
    {
        return Err(forbidden("the session belongs to another user"));
    }
    Ok(s)
}

/// Renews a session token.
#[utoipa::path(post, path = "/api/sessions/{id}/token", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("session_token" = []), ("server_api_key" = []), ("user_token" = [])),
    responses((status = 200, body = RenewedToken), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
pub async fn renew_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RenewedToken>, ApiError> {
    let caller = classify(&state, &headers).await?;
    let sid = match &caller {
        // A token for another session is a bad credential here, not a missing session.
        Caller::Session(c) if c.sid != id => return Err(TokenError::Invalid.into()),
        _ => parse(&id)?,
    };
    let s = managed(&state, &caller, &sid, true).await?;
    let (token, expires_at) = state.tokens.issue_user(
        &sid,
        s.scenario_id.as_str(),
        s.root_agent.as_str(),
        s.user_id.as_deref(),
    );
    Ok(Json(RenewedToken { token, expires_at }))
}

/// Revokes a session.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("server_api_key" = []), ("user_token" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = classify(&state, &headers).await?;
    let sid = parse(&id)?;
    match managed(&state, &caller, &sid, false).await {
        Ok(_) => {}
        // Revoking twice is not an error.
        Err(e) if e.code == "session_revoked" => return Ok(StatusCode::NO_CONTENT),
        Err(e) => return Err(e),
    }
    crate::http::sessions::revoke::revoke(&state, &sid).await?;
    Ok(StatusCode::NO_CONTENT)
}
