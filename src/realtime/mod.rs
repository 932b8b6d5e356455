//! Server-side call control for both voice APIs (DESIGN.md §8, §9): unified call setup, one
//! sideband per call held by exactly one instance (a lease with a fencing token), a janitor
//! that adopts calls whose owner died, and control commands routed to the owner.
//!
//! - [`lease`]: the lease and the call index (memory and Redis).
//! - [`sideband`]: the per-call WebSocket task, lease renewal, and the janitor.
//! - [`handler`]: one held call (`Call`), dispatching to its voice API.
//! - [`call`]: what both APIs share (`CallCore`) and the `VoiceCall` trait they implement.
//! - [`realtime_call`]: the Realtime API's call; [`live`]: GPT-Live's (turns from fragments,
//!   client and Responses delegation).
//! - [`heard`]: what the user heard of each answer (interruptions), for the record.
//! - [`command`]: the control commands and their refusals.
//! - [`client_events`]: the client events it sends and which upstream errors reach the browser.
//! - [`bus`]: command routing between instances (Redis pub/sub).

pub mod bus;
pub mod call;
pub mod client_events;
pub mod command;
pub mod handler;
pub mod heard;
pub mod lease;
pub mod live;
pub mod realtime_call;
pub mod sideband;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use crate::config::RealtimeSettings;
use crate::domain::SessionId;
use crate::sessions::Sessions;
use crate::store::StoreError;
use handler::Command;
use lease::CallLeases;
use sideband::Envelope;

/// Closes a session's event-channel connections on this instance (the local hub).
pub trait SessionCloser: Send + Sync + 'static {
    /// Asks every connection of `session` here to close with `code`.
    fn close_session(&self, session: &SessionId, code: proto_events::CloseCode);
}

/// Why a control command did not complete.
#[derive(Debug)]
pub enum ControlError {
    /// The session has no live call.
    NoCall,
    /// The owner did not acknowledge in time.
    Unreachable,
    /// The owner refused it (e.g. an unknown agent).
    Rejected(String),
    /// The lease store failed.
    Store(StoreError),
}

/// What a call's sideband runs on: the session use-cases, moderation, this instance's
/// calls, and the settings it reads. Narrow on purpose; the edge's state never reaches here.
pub struct CallDeps {
    /// The session use-cases (publish, switch, run a tool) and their backends.
    pub sessions: Arc<Sessions>,
    /// Leases, the call index, and the calls whose sideband runs here.
    pub calls: Arc<Calls>,
    /// Lease TTL, sideband URL, what to do on a flagged answer.
    pub realtime: RealtimeSettings,
    /// The Realtime model calls are created with (for pricing their usage).
    pub realtime_model: String,
    /// The standard upstream key the sideband attaches with; `None` when offline.
    pub api_key: Option<secrecy::SecretString>,
    /// This instance's id (the lease owner).
    pub instance_id: String,
    /// The sidebands, their lease renewals and the janitor; stopped to hand calls over.
    pub tasks: crate::tasks::Tasks,
    /// Wakes the janitor now (another instance handed its calls over).
    pub adopt_now: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl crate::sessions::LiveCalls for CallDeps {
    async fn agent_changed(&self, session: &SessionId, agent: &str) {
        let cmd = Command::SwitchAgent {
            agent: agent.to_owned(),
            source: "server".into(),
        };
        let timeout = self.realtime.control_timeout;
        match self
            .calls
            .control(&self.instance_id, session, cmd, timeout)
            .await
        {
            Ok(_) | Err(ControlError::NoCall) => {}
            Err(e) => {
                tracing::warn!(session_id = %session, error = ?e, "the live call could not take the new agent");
            }
        }
    }

    async fn current_call(&self, session: &SessionId) -> Option<String> {
        self.calls.leases.call_of(session).await.ok().flatten()
    }
}

impl CallDeps {
    /// The lease store.
    pub fn leases(&self) -> &Arc<dyn CallLeases> {
        &self.calls.leases
    }

    /// Starts owning a call the upstream accepted: makes the call's agent the active one
    /// (`agent.switch` when it changes), records the call, publishes `call.started`, takes
    /// the lease and attaches the sideband here. When the lease store cannot be reached now,
    /// some instance's janitor adopts the call once it can.
    pub async fn start_call(
        self: &Arc<Self>,
        sid: &SessionId,
        call_id: &str,
        agent: crate::sessions::Switch,
    ) -> Result<(), crate::sessions::SessionError> {
        let name = agent.to.clone();
        self.sessions.switch_agent(sid, agent).await?;
        self.leases().register(sid, call_id).await?;
        let started = proto_events::events::CallStarted {
            call_id: call_id.to_owned(),
            agent: name,
        };
        self.sessions.publish(sid, &started).await?;
        let api = crate::config::VoiceApi::of_call_id(call_id);
        let data = serde_json::json!({"api": api.as_str(), "agent": started.agent});
        let note = crate::sessions::record::Note::new("call.started", data).call(call_id);
        self.sessions.note(sid, note).await;
        let ttl = self.realtime.lease_ttl;
        match self.leases().acquire(sid, &self.instance_id, ttl).await {
            Ok(Some(lease)) => {
                sideband::spawn(self.clone(), sid.clone(), call_id.to_owned(), lease);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, call_id, "could not take the call's lease now"),
        }
        Ok(())
    }

    /// Hands this instance's calls over (SIGTERM): stops every sideband, which releases its
    /// lease without ending the call, waits up to `within` for them, then tells the other
    /// instances to adopt now rather than at their next janitor pass. Returns how many
    /// calls were let go.
    pub async fn hand_over(&self, within: Duration) -> usize {
        let held = self.calls.local.len();
        if !self.tasks.stop(within).await {
            tracing::warn!(
                "some sidebands did not stop in time; their leases expire by themselves"
            );
        }
        if held > 0 {
            if let Some(bus) = &self.calls.bus
                && let Err(e) = bus.broadcast_handover().await
            {
                tracing::warn!(error = %e, "announcing the hand-over failed; calls are adopted at the next janitor pass");
            }
            tracing::info!(calls = held, "handed calls over to the other instances");
        }
        held
    }

    /// Ends `sid`'s call `call_id`: asks the upstream to hang up (when `hang_up`; a failure
    /// there is logged, the call is over for us either way), publishes `call.ended` with
    /// `reason`, and forgets the call. The one path for every way a call ends.
    pub async fn end_call(
        &self,
        sid: &SessionId,
        call_id: &str,
        reason: &str,
        hang_up: bool,
    ) -> Result<(), crate::sessions::SessionError> {
        let end = CallEnd {
            reason,
            hang_up,
            upstream_reason: None,
        };
        self.end_call_with(sid, call_id, end).await
    }

    /// [`CallDeps::end_call`] with the upstream's own reason, when it gave one. A GPT-Live
    /// call has no hang-up request (its sideband sends `session.close`), so `hang_up` only
    /// reaches the upstream for a Realtime call.
    pub async fn end_call_with(
        &self,
        sid: &SessionId,
        call_id: &str,
        end: CallEnd<'_>,
    ) -> Result<(), crate::sessions::SessionError> {
        let (reason, hang_up) = (end.reason, end.hang_up);
        let realtime =
            crate::config::VoiceApi::of_call_id(call_id) == crate::config::VoiceApi::Realtime;
        if hang_up && !realtime {
            // Live has no hang-up request: attach once and close the session.
            let close = serde_json::json!({"type": "session.close"});
            if !sideband::send_once(self, call_id, &close).await {
                tracing::warn!(call_id, "could not reach the Live session to close it");
            }
        }
        if hang_up
            && realtime
            && let Some(up) = &self.sessions.upstream
        {
            let path = format!("realtime/calls/{call_id}/hangup");
            if let Err(e) = up.post_json(&path, &serde_json::json!({})).await {
                tracing::warn!(error = %e, call_id, "upstream hangup failed");
            }
        }
        let data = proto_events::events::CallEnded {
            call_id: call_id.to_owned(),
            reason: reason.to_owned(),
            upstream_reason: end.upstream_reason,
        };
        self.sessions.publish(sid, &data).await?;
        let cost = crate::record::usd(self.sessions.call_cost(sid, call_id).await);
        let note = serde_json::json!({"reason": data.reason, "upstream_reason": data.upstream_reason,
            "cost_usd": cost});
        let note = crate::sessions::record::Note::new("call.ended", note).call(call_id);
        self.sessions.note(sid, note).await;
        self.leases().forget_call(sid, call_id).await?;
        Ok(())
    }
}

/// How a call ended.
#[derive(Debug, Clone)]
pub struct CallEnd<'a> {
    /// Our reason (`call.ended`'s `reason`).
    pub reason: &'a str,
    /// Ask the upstream to hang up (Realtime).
    pub hang_up: bool,
    /// The upstream's own reason, when it gave one.
    pub upstream_reason: Option<String>,
}

/// This instance's view of calls.
pub struct Calls {
    /// Leases and the call index.
    pub leases: Arc<dyn CallLeases>,
    /// Calls whose sideband runs here.
    pub local: Arc<DashMap<SessionId, mpsc::Sender<Envelope>>>,
    pub(crate) bus: Option<bus::Bus>,
}

impl Calls {
    /// Calls on `leases`, with `bus` for routing in Redis mode.
    pub fn new(
        leases: Arc<dyn CallLeases>,
        local: Arc<DashMap<SessionId, mpsc::Sender<Envelope>>>,
        bus: Option<bus::Bus>,
    ) -> Self {
        Self { leases, local, bus }
    }

    /// Closes `sid`'s sockets on every instance with 4009 (through Redis in Redis mode).
    pub async fn close_everywhere(
        &self,
        hub: &dyn SessionCloser,
        sid: &SessionId,
    ) -> Result<(), StoreError> {
        match &self.bus {
            Some(bus) => bus
                .broadcast_revoked(sid)
                .await
                .map_err(StoreError::Unavailable),
            None => {
                hub.close_session(sid, proto_events::CloseCode::SessionExpired);
                Ok(())
            }
        }
    }

    /// Has the owner of `sid`'s call apply `cmd`; returns the instance that applied it.
    pub async fn control(
        &self,
        me: &str,
        sid: &SessionId,
        cmd: Command,
        timeout: Duration,
    ) -> Result<String, ControlError> {
        if self
            .leases
            .call_of(sid)
            .await
            .map_err(ControlError::Store)?
            .is_none()
        {
            return Err(ControlError::NoCall);
        }
        if let Some(tx) = self.local.get(sid).map(|t| t.clone()) {
            let (rtx, rrx) = oneshot::channel();
            tx.send((cmd, rtx))
                .await
                .map_err(|_| ControlError::Unreachable)?;
            return match tokio::time::timeout(timeout, rrx).await {
                Ok(Ok(Ok(()))) => Ok(me.to_owned()),
                Ok(Ok(Err(e))) => Err(ControlError::Rejected(e.to_string())),
                _ => Err(ControlError::Unreachable),
            };
        }
        let holder = self.leases.holder(sid).await.map_err(ControlError::Store)?;
        match (holder, &self.bus) {
            (Some(l), Some(bus)) if l.owner != me => bus
                .request(&l.owner, sid, cmd, timeout)
                .await
                .map_err(|e| match e {
                    bus::RouteError::Unreachable => ControlError::Unreachable,
                    bus::RouteError::Rejected(m) => ControlError::Rejected(m),
                }),
            _ => Err(ControlError::Unreachable),
        }
    }
}
