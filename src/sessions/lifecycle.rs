//! Keeping a session reachable by its token: when the store no longer has a session whose
//! token is still valid, decide whether it expired (the token is newer than the store's
//! data: 4004 / 404) or was lost (Redis came back empty, or the process restarted with a
//! configured secret: the token predates the data), and in the second case re-create it
//! from the token's claims with a new history epoch, so a token never becomes useless
//! because the backend lost its data.

use super::Sessions;
use crate::auth::SessionClaims;
use crate::broker::{BrokerError, Top};
use crate::clock::now_rfc3339;
use crate::domain::{AgentName, ScenarioId, SessionId};
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
#[derive(Debug, thiserror::Error)]
pub enum Missing {
    /// It expired (or never existed).
    #[error("the session does not exist or has expired")]
    Gone,
    /// It was revoked (`DELETE /api/sessions/{id}`): its tokens are refused.
    #[error("the session was revoked; its tokens are no longer accepted")]
    Revoked,
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed (opening a re-created session's history).
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A session to start.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its id.
    pub id: SessionId,
    /// Its scenario.
    pub scenario_id: ScenarioId,
    /// The root (and first active) agent.
    pub root: AgentName,
    /// The host app's context, rendered as text.
    pub context: Option<String>,
    /// The host-app user it belongs to.
    pub user_id: Option<String>,
}

/// Starts a session: opens its history, then stores its state (so its channel exists
/// before anyone can find it). Returns the state and the history's position.
pub async fn create_session<E>(state: &Sessions, new: NewSession) -> Result<(SessionState, Top), E>
where
    E: From<StoreError> + From<BrokerError>,
{
    let top = state.broker.open(&new.id).await?;
    let now = now_rfc3339();
    let s = SessionState {
        session_id: new.id,
        scenario_id: new.scenario_id,
        active_agent: new.root.clone(),
        root_agent: new.root,
        created_at: now.clone(),
        updated_at: now,
        context: new.context,
        user_id: new.user_id,
    };
    state.store.create(&s).await?;
    Ok((s, top))
}

/// Returns the session's state, re-creating a lost one from `claims`.
pub async fn ensure_session(
    state: &Sessions,
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
    let new = NewSession {
        id: sid.clone(),
        scenario_id: scenario.id.clone(),
        root: root.name.clone(),
        context: None,
        user_id: claims.uid.clone(),
    };
    let (s, _) = create_session::<Missing>(state, new).await?;
    tracing::warn!(session_id = %sid, "re-created a lost session from its token");
    Ok((s, Found::Recreated))
}

/// The session's state without re-creating it: [`Missing::Revoked`] for a revoked session,
/// [`Missing::Gone`] for one that expired or never existed.
pub async fn live_state(state: &Sessions, sid: &SessionId) -> Result<SessionState, Missing> {
    match state.store.get(sid).await? {
        Some(s) => Ok(s),
        None if state.store.is_revoked(sid).await? => Err(Missing::Revoked),
        None => Err(Missing::Gone),
    }
}
