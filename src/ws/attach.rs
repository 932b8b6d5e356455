//! Attaching a connection to a session, shared by the WebSocket and SSE endpoints.
//!
//! Order matters: authenticate, check the session, join the hub and subscribe the broker
//! (which counts subscriptions per session) *before* reading the history, so no
//! event published meanwhile can fall between the history read and live delivery. Then
//! [`recovery::plan`](super::recovery::plan) decides the replay and the seam de-duplicates.

use proto_events::{CloseCode, Welcome};

use super::hub::Member;
use super::recovery::{Plan, Seam, plan};
use crate::auth::{SessionClaims, TokenError};
use crate::broker::Frame;
use crate::domain::SessionId;
use crate::sessions::lifecycle::{Missing, ensure_session};
use crate::state::AppState;

/// The query of both channel endpoints (`/api/ws`, and `/api/sessions/{id}/events/stream`,
/// which takes the session from its path). Numbers are taken as text so a bad value
/// degrades to "absent" (no replay) instead of refusing the connection.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ChannelQuery {
    /// Session id (WebSocket only).
    pub session_id: Option<String>,
    /// Session token (SSE also takes it as a bearer header).
    pub token: Option<String>,
    /// Last seq the client has.
    pub since: Option<String>,
    /// The epoch that seq belongs to.
    pub epoch: Option<String>,
}

impl ChannelQuery {
    /// `since` as a number, when it is one.
    pub fn since(&self) -> Option<u64> {
        self.since.as_deref().and_then(|s| s.trim().parse().ok())
    }

    /// `epoch`, unless empty.
    pub fn epoch(&mut self) -> Option<String> {
        self.epoch.take().filter(|e| !e.is_empty())
    }
}

/// The client's request to attach.
#[derive(Debug, Default, Clone)]
pub struct AttachRequest {
    /// Session id as sent.
    pub session_id: String,
    /// Session token, if any.
    pub token: Option<String>,
    /// Last seq the client has.
    pub since: Option<u64>,
    /// Epoch that seq belongs to.
    pub epoch: Option<String>,
}

/// A connection attached to its session.
pub struct Attached {
    /// The session.
    pub session: SessionId,
    /// Hub membership (live queue and close signal).
    pub member: Member,
    /// First frame to send.
    pub welcome: Welcome,
    /// Events to replay after `welcome`.
    pub replay: Vec<Frame>,
    /// The seam for live events.
    pub seam: Seam,
    /// The token's claims (to re-create the session if it is lost while connected).
    pub claims: SessionClaims,
}

/// Authenticates and attaches; the error is the close code to send.
pub async fn attach(state: &AppState, req: AttachRequest) -> Result<Attached, CloseCode> {
    let (session, claims) = authenticate(state, &req).await?;
    let (member, _) = state.hub.join(&session);
    // Subscribe before reading the history (the broker counts subscriptions per session).
    if let Err(e) = state.broker.subscribe(&session).await {
        tracing::warn!(error = %e, session_id = %session, "subscribe failed while attaching");
        state.hub.leave(&session, member.id);
        return Err(CloseCode::TryAgainLater);
    }
    match read_position(state, &session, &req).await {
        Ok(p) => {
            if req.since.is_some() {
                let outcome = if p.0.recovered { "hit" } else { "miss" };
                metrics::counter!("switchboard_recoveries_total", "outcome" => outcome)
                    .increment(1);
            }
            let welcome = Welcome {
                session_id: session.to_string(),
                epoch: p.1,
                seq: p.2,
                recovered: p.0.recovered,
                replayed: p.0.replay.len() as u64,
                instance_id: state.instance_id.clone(),
                heartbeat_s: state.config.heartbeat.as_secs(),
            };
            let seam = Seam::new(p.0.replay.last().map_or(p.0.start_after, |f| f.seq));
            Ok(Attached {
                session,
                member,
                welcome,
                replay: p.0.replay,
                seam,
                claims,
            })
        }
        Err(code) => {
            detach(state, &session, member.id).await;
            Err(code)
        }
    }
}

/// Checks the token and finds (or re-creates) its session.
async fn authenticate(
    state: &AppState,
    req: &AttachRequest,
) -> Result<(SessionId, SessionClaims), CloseCode> {
    let token = req.token.as_deref().filter(|t| !t.is_empty());
    let token = token.ok_or(CloseCode::Unauthorized)?;
    let claims = state
        .tokens
        .verify(token, &req.session_id)
        .map_err(|e| match e {
            TokenError::Expired => CloseCode::SessionExpired,
            TokenError::Missing | TokenError::Invalid => CloseCode::Unauthorized,
        })?;
    let session: SessionId = req
        .session_id
        .parse()
        .map_err(|_| CloseCode::Unauthorized)?;
    match ensure_session(&state.sessions, &session, &claims).await {
        Ok(_) => {}
        Err(Missing::Gone) => return Err(CloseCode::UnknownSession),
        Err(Missing::Revoked) => return Err(CloseCode::SessionExpired),
        Err(e @ (Missing::Store(_) | Missing::Broker(_))) => {
            tracing::warn!(error = %e, "session store unavailable while attaching");
            return Err(CloseCode::TryAgainLater);
        }
    }
    Ok((session, claims))
}

async fn read_position(
    state: &AppState,
    session: &SessionId,
    req: &AttachRequest,
) -> Result<(Plan, String, u64), CloseCode> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, session_id = %session, "broker unavailable while attaching");
        CloseCode::TryAgainLater
    };
    let after = req.since.unwrap_or(u64::MAX);
    let history = match state
        .broker
        .history(session, after)
        .await
        .map_err(|e| unavailable(&e))?
    {
        Some(h) => h,
        None => {
            // The history expired (or was lost): start a new one; nothing can be replayed.
            let top = state
                .broker
                .open(session)
                .await
                .map_err(|e| unavailable(&e))?;
            crate::broker::History {
                top,
                events: Vec::new(),
                complete: false,
            }
        }
    };
    let p = plan(req.since, req.epoch.as_deref(), &history);
    Ok((p, history.top.epoch, history.top.seq))
}

/// Leaves the hub and drops this connection's broker subscription.
pub async fn detach(state: &AppState, session: &SessionId, member_id: u64) {
    state.hub.leave(session, member_id);
    if let Err(e) = state.broker.unsubscribe(session).await {
        tracing::warn!(error = %e, session_id = %session, "unsubscribe failed");
    }
}

/// The per-heartbeat check both transports run while a connection is open: an open
/// connection is activity, so it keeps the session from idling out; and a session that
/// expired, was revoked or was lost and re-created ends the connection with the code the
/// client acts on (4004, 4009, 4013). `None` keeps it open (a store blip is not a reason to
/// drop anyone).
pub async fn still_attached(
    state: &AppState,
    session: &SessionId,
    claims: &SessionClaims,
) -> Option<CloseCode> {
    use crate::sessions::lifecycle::Found;
    match ensure_session(&state.sessions, session, claims).await {
        Ok((_, Found::Existing)) | Err(Missing::Store(_) | Missing::Broker(_)) => None,
        Ok((_, Found::Recreated)) => Some(CloseCode::HistoryLost),
        Err(Missing::Gone) => Some(CloseCode::UnknownSession),
        Err(Missing::Revoked) => Some(CloseCode::SessionExpired),
    }
}
