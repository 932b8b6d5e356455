//! The application layer for sessions: the use-cases every entry point shares, each written
//! once. HTTP handlers, the sideband, the orchestrator's caller and the server agents call
//! these; none re-implements them.
//!
//! - [`Sessions::publish`]: publish a typed event (its kind comes from the payload type).
//! - [`Sessions::switch_agent`]: change the active agent (compare-and-set), publish
//!   `agent.switch`, and have a live call take the new agent (its owner sends the
//!   `session.update`; through [`LiveCalls`], which the calls layer implements).
//! - [`Sessions::run_tool`]: run a tool for a session (lookup, schema check, the active
//!   agent's rule, idempotency, `tool.result`).
//! - [`claim`]: claim an idempotency key, or wait for and return the first answer.
//! - [`lifecycle`]: find a session, re-creating a lost one from its token.
//! - [`agent`]: multi-turn server agent sessions (`/api/sdk/session/*`).
//! - [`record`]: the conversation record's one entry point ([`Sessions::note`]) and readers.
//!
//! [`Sessions`] holds the narrow set of backends these need (not the edge's `AppState`).
//! Errors are [`SessionError`]; the edge maps them to statuses in one file.

pub mod agent;
pub mod claim;
pub mod delegate;
pub mod health;
pub mod lifecycle;
pub mod moderate;
pub mod orchestrate;
pub mod record;
pub mod switch;
pub mod tool_call;

use std::sync::Arc;
use std::time::Duration;

use proto_events::EventType;
use proto_events::events::EventData;

use crate::broker::{Broker, BrokerError, Checked, Publish, Published};
use crate::domain::SessionId;
use crate::memory::AgentMemory;
use crate::scenario::ScenarioRegistry;
use crate::store::{SessionStore, StoreError};
use crate::tools::ToolRegistry;
use crate::upstream::UpstreamClient;

pub use switch::{Switch, SwitchSource, Switched};
pub use tool_call::{Idempotency, ToolBy, ToolRun, ToolRunError};

/// The settings the use-cases read.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Idle lifetime of a session (and of its answered function-call records).
    pub session_ttl: Duration,
    /// How long stored results (tool results by correlation id) are kept.
    pub history_ttl: Duration,
    /// Longest wait for a first call with the same correlation id to finish.
    pub tool_claim_wait: Duration,
    /// Server agents: turn lock, queue wait, memory TTL.
    pub agents: crate::config::AgentSettings,
}

/// What the session use-cases run on.
pub struct Sessions {
    /// Session state.
    pub store: Arc<dyn SessionStore>,
    /// Event histories.
    pub broker: Arc<dyn Broker>,
    /// Server-side agent memory (and call transcripts mirrored into it).
    pub memory: Arc<dyn AgentMemory>,
    /// Loaded scenarios.
    pub scenarios: Arc<ScenarioRegistry>,
    /// Registered tools.
    pub tools: Arc<ToolRegistry>,
    /// The upstream, `None` when offline.
    pub upstream: Option<UpstreamClient>,
    /// The moderation checks.
    pub moderator: Arc<crate::moderation::Moderator>,
    /// Settings.
    pub settings: SessionSettings,
    /// The live calls, told when an agent switch from outside a call must reach the call
    /// (set once at startup; weak, since the calls hold these use-cases).
    pub live_calls: std::sync::OnceLock<std::sync::Weak<dyn LiveCalls>>,
    /// The conversation record; `None` when it is off.
    pub record: Option<Arc<record::Recorder>>,
}

/// What the session use-cases need from the calls layer: a switch made outside a call (the
/// orchestrator over REST, a server agent's handoff) is applied to the session's live call
/// by its owner, which sends the call's `session.update`.
#[async_trait::async_trait]
pub trait LiveCalls: Send + Sync {
    /// `agent` is now in charge of `session`; update its live call, if it has one.
    async fn agent_changed(&self, session: &SessionId, agent: &str);
    /// The id of `session`'s call in progress, if it has one.
    async fn current_call(&self, session: &SessionId) -> Option<String>;
}

/// Why a session use-case failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session does not exist or expired.
    #[error("session {0} does not exist or has expired")]
    Gone(SessionId),
    /// The session was revoked: its tokens are refused.
    #[error("the session was revoked; its tokens are no longer accepted")]
    Revoked,
    /// The session's scenario names no such agent.
    #[error("agent {agent:?} is not in scenario {scenario}")]
    UnknownAgent {
        /// The asked-for agent.
        agent: String,
        /// The session's scenario.
        scenario: String,
    },
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Sessions {
    /// Publishes a documented event on `session`'s channel; its kind is `T::KIND`.
    pub async fn publish<T: EventData>(
        &self,
        session: &SessionId,
        data: &T,
    ) -> Result<Published, BrokerError> {
        publish_data(self.broker.as_ref(), session, data, None).await
    }

    /// Publishes an event a back end sent (any kind, untyped data) to a live session. A
    /// store that cannot be read is the broker's outage here: a publish that cannot reach
    /// the backend is `broker_unavailable` (DESIGN.md §4), even when the session read failed.
    pub async fn publish_event(
        &self,
        session: &SessionId,
        event: Publish,
    ) -> Result<Published, lifecycle::Missing> {
        // One step where the broker can check the session itself (Redis: one round trip).
        let ttl = self.settings.session_ttl;
        let event = match self.broker.publish_if_live(session, event, ttl).await {
            Checked::Done(done) => {
                return match done? {
                    Some(published) => Ok(published),
                    None if self
                        .store
                        .is_revoked(session)
                        .await
                        .map_err(BrokerError::from)? =>
                    {
                        Err(lifecycle::Missing::Revoked)
                    }
                    None => Err(lifecycle::Missing::Gone),
                };
            }
            Checked::Unsupported(event) => event,
        };
        match lifecycle::live_state(self, session).await {
            Ok(_) => {}
            Err(lifecycle::Missing::Store(e)) => return Err(BrokerError::from(e).into()),
            Err(e) => return Err(e),
        }
        Ok(self.broker.publish(session, event).await?)
    }

    /// [`Sessions::publish`] with an idempotency key: a retry within the window publishes
    /// nothing and returns the first result.
    pub async fn publish_keyed<T: EventData>(
        &self,
        session: &SessionId,
        data: &T,
        idempotency_key: String,
    ) -> Result<Published, BrokerError> {
        publish_data(self.broker.as_ref(), session, data, Some(idempotency_key)).await
    }
}

/// Publishes a typed payload on a broker (for code that holds only a broker).
pub async fn publish_data<T: EventData>(
    broker: &dyn Broker,
    session: &SessionId,
    data: &T,
    idempotency_key: Option<String>,
) -> Result<Published, BrokerError> {
    // The payload types are plain structs of strings, numbers and JSON values.
    let data = serde_json::to_value(data).expect("event payloads serialize");
    broker
        .publish(
            session,
            Publish {
                kind: EventType::of::<T>(),
                data,
                idempotency_key,
                trace_id: None,
            },
        )
        .await
}
