//! Revoking a session everywhere (`DELETE /api/sessions/{id}`).

use crate::domain::SessionId;
use crate::error::ApiError;
use crate::state::AppState;

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
    state
        .calls
        .close_everywhere(state.hub.as_ref(), sid)
        .await?;
    state.broker.delete(sid).await?;
    if let Err(e) = state.memory.clear_session(sid.as_str()).await {
        tracing::warn!(session_id = %sid, error = %e, "clearing the revoked session's conversation failed");
    }
    tracing::info!(session_id = %sid, "session revoked");
    Ok(())
}
