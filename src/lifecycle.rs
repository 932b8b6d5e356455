//! Keeping a session reachable by its token: when the store no longer has a session whose
//! token is still valid, decide whether it expired (the token is newer than the store's
//! data: 4004 / 404) or was lost (Redis came back empty, or the process restarted with a
//! configured secret: the token predates the data), and in the second case re-create it
//! from the token's claims with a new history epoch, so a token never becomes useless
//! because the backend lost its data.

use crate::auth::SessionClaims;
use crate::domain::SessionId;
use crate::error::ApiError;
use crate::state::AppState;
use crate::clock::now_rfc3339;
use crate::store::{SessionState, StoreError};

/// Whether a session was found or re-created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// It was in the store.
    Existing,
    /// It was lost and has been re-created from the token (new epoch).
    Recreated,
}

/// Why a session could not be produced.
#[derive(Debug)]
pub enum Missing {
    /// It expired (or never existed).
    Gone,
    /// It was revoked (`DELETE /api/sessions/{id}`): its tokens are refused.
    Revoked,
    /// A backend failed.
    Unavailable(String),
}

impl From<StoreError> for Missing {
    fn from(e: StoreError) -> Self {
        Missing::Unavailable(e.to_string())
    }
}

impl From<Missing> for ApiError {
    fn from(m: Missing) -> Self {
        match m {
            Missing::Gone => ApiError::not_found(
                "unknown_session",
                "the session does not exist or has expired",
            ),
            Missing::Revoked => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "session_revoked",
                "the session was revoked; its tokens are no longer accepted",
            ),
            Missing::Unavailable(e) => ApiError::from(StoreError::Unavailable(e)),
        }
    }
}

/// Returns the session's state, re-creating a lost one from `claims`.
pub async fn ensure_session(
    state: &AppState,
    sid: &SessionId,
    claims: &SessionClaims,
) -> Result<(SessionState, Found), Missing> {
    if let Some(s) = state.store.get(sid).await? {
        return Ok((s, Found::Existing));
    }
    if state.store.is_revoked(sid).await? {
        return Err(Missing::Revoked);
    }
    let since = state.store.dataset_since().await?;
    if claims.issued_ms() >= since {
        return Err(Missing::Gone);
    }
    let scenario = state.scenarios.resolve(&claims.scn).ok_or(Missing::Gone)?;
    let root = scenario
        .agent(&claims.root)
        .or_else(|| scenario.agent(scenario.default_root.as_str()))
        .ok_or(Missing::Gone)?;
    let now = now_rfc3339();
    let s = SessionState {
        session_id: sid.clone(),
        scenario_id: scenario.id.clone(),
        root_agent: root.name.clone(),
        active_agent: root.name.clone(),
        created_at: now.clone(),
        updated_at: now,
        context: None,
        user_id: claims.uid.clone(),
    };
    state.store.create(&s).await?;
    state
        .broker
        .open(sid)
        .await
        .map_err(|e| Missing::Unavailable(e.to_string()))?;
    tracing::warn!(session_id = %sid, "re-created a lost session from its token");
    Ok((s, Found::Recreated))
}

/// How long a revoked session's tombstone outlives the longest token of it.
const TOMBSTONE_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Revokes a session everywhere: tombstone and state first (so no token re-creates it),
/// then its call hung up, its sockets on every instance closed with 4009, its history and
/// its mirrored conversation deleted.
pub async fn revoke(state: &AppState, sid: &SessionId) -> Result<(), ApiError> {
    state
        .store
        .revoke(sid, state.config.token_ttl + TOMBSTONE_MARGIN)
        .await?;
    use crate::realtime::ControlError;
    match state
        .calls
        .control(
            &state.instance_id,
            sid,
            crate::realtime::handler::Command::Hangup,
            state.config.realtime.control_timeout,
        )
        .await
    {
        Ok(_) | Err(ControlError::NoCall) => {}
        Err(ControlError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(session_id = %sid, error = ?e, "could not hang up the call of a revoked session; forgetting it")
        }
    }
    state.calls.leases.unregister(sid).await?;
    state.calls.close_everywhere(&state.hub, sid).await?;
    state.broker.delete(sid).await?;
    if let Err(e) = state.memory.clear_session(sid.as_str()).await {
        tracing::warn!(session_id = %sid, error = %e, "clearing the revoked session's conversation failed");
    }
    tracing::info!(session_id = %sid, "session revoked");
    Ok(())
}

/// The session's state without re-creating it: 401 `session_revoked` for a revoked
/// session, 404 `unknown_session` for one that expired or never existed.
pub async fn live_state(state: &AppState, sid: &SessionId) -> Result<SessionState, ApiError> {
    match state.store.get(sid).await? {
        Some(s) => Ok(s),
        None if state.store.is_revoked(sid).await? => Err(Missing::Revoked.into()),
        None => Err(ApiError::not_found(
            "unknown_session",
            format!("session {sid} does not exist or has expired"),
        )),
    }
}
