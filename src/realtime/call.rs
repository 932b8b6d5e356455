//! What every held call shares, whichever its voice API: [`CallCore`] (the session, the one
//! switch path, publishing, memory, the end of the call) and the [`VoiceCall`] trait that the
//! Realtime ([`super::realtime_call`]) and GPT-Live ([`super::live`]) calls implement.

use serde_json::Value;

use std::sync::Arc;

use super::CallDeps;
use super::command::{Command, CommandError};
use crate::config::VoiceApi;
use crate::domain::SessionId;
use crate::sessions::{Sessions, Switch, SwitchSource, Switched};
use proto_events::events::EventData;

/// How long a Live hang-up waits for `session.closed` before the call counts as ended.
pub const CLOSE_CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What one voice API does with its server events and the control commands; the same
/// lease, sideband loop, switch path and ending serve both.
#[async_trait::async_trait]
pub trait VoiceCall: Send {
    /// Handles one server event.
    async fn on_event(&mut self, core: &mut CallCore, ev: &Value) -> Vec<Value>;
    /// Applies a control command.
    async fn on_command(
        &mut self,
        core: &mut CallCore,
        cmd: Command,
    ) -> Result<Vec<Value>, CommandError>;
    /// Periodic work (about every 250 ms).
    async fn on_tick(&mut self, _core: &mut CallCore) -> Vec<Value> {
        vec![]
    }
    /// Picks up what a previous owner left unfinished.
    async fn resume(&mut self, _core: &mut CallCore) {}
    /// The client events that give a new call the session's earlier turns `(role, text)`,
    /// oldest first, so the agent continues instead of starting over.
    fn seed(&self, turns: &[(String, String)]) -> Vec<Value>;
}

/// What the agent is told after the earlier turns.
pub const SEED_NOTE: &str = "The messages above are from an earlier call in this same \
    conversation; the line dropped and the caller is back. Do not greet them again or start \
    over: continue from where the conversation stopped.";

/// What every call has, whichever its voice API.
pub struct CallCore {
    pub(crate) deps: Arc<CallDeps>,
    pub(crate) sid: SessionId,
    pub(crate) call_id: String,
    /// Set when the call is over (hangup or upstream gone).
    pub(crate) ended: bool,
    /// When a hang-up sent `session.close` (Live) and waits for its confirmation.
    pub(crate) closing_since: Option<std::time::Instant>,
}

impl CallCore {
    pub(crate) async fn publish<T: EventData>(&self, data: &T) {
        if let Err(e) = self.deps.sessions.publish(&self.sid, data).await {
            tracing::error!(error = %e, call_id = %self.call_id, kind = T::KIND, "publishing a call event failed");
        }
    }

    /// Marks the call over: publishes `call.ended` and forgets the call.
    pub async fn end(&mut self, reason: &str) {
        self.end_with(reason, false).await;
    }

    pub(crate) async fn end_with(&mut self, reason: &str, hang_up: bool) {
        if hang_up && VoiceApi::of_call_id(&self.call_id) == VoiceApi::Live {
            // Live has no hang-up request: the sideband's `session.close` ends it.
            return self.end_reported(reason, None).await;
        }
        self.end_call(reason, hang_up, None).await;
    }

    /// Ends the call with the upstream's own reason (Live's `session.closed`).
    pub(crate) async fn end_reported(&mut self, reason: &str, upstream_reason: Option<String>) {
        self.end_call(reason, false, upstream_reason).await;
    }

    pub(crate) async fn end_call(
        &mut self,
        reason: &str,
        hang_up: bool,
        upstream_reason: Option<String>,
    ) {
        if self.ended {
            return;
        }
        self.ended = true;
        let end = super::CallEnd {
            reason,
            hang_up,
            upstream_reason,
        };
        if let Err(e) = self.deps.end_call_with(&self.sid, &self.call_id, end).await {
            tracing::warn!(error = %e, call_id = %self.call_id, "ending the call was not fully recorded; the janitor will retry");
        }
    }

    pub(crate) async fn active(
        &self,
    ) -> Option<(std::sync::Arc<crate::scenario::Scenario>, String)> {
        active(&self.deps.sessions, &self.sid).await
    }

    /// A control switch's target must be in the session's scenario; `source` is who sent it.
    pub(crate) async fn switch_source(
        &self,
        agent: &str,
        source: &str,
    ) -> Result<SwitchSource, CommandError> {
        let Some((scn, _)) = self.active().await else {
            return Err(CommandError::SessionExpired);
        };
        if scn.agent(agent).is_none() {
            return Err(CommandError::UnknownAgent {
                agent: agent.to_owned(),
                scenario: scn.id.to_string(),
            });
        }
        Ok(if source == "client" {
            SwitchSource::Client
        } else {
            SwitchSource::Server
        })
    }

    /// Switches the active agent (the session layer's compare-and-set and `agent.switch`)
    /// and returns the agent in charge afterwards.
    pub(crate) async fn switch_only(
        &mut self,
        to: &str,
        source: SwitchSource,
        reason: String,
        confidence: f64,
    ) -> Option<String> {
        let (_, from) = self.active().await?;
        let sw = Switch {
            from,
            to: to.to_owned(),
            source,
            reason,
            confidence,
            tell_call: false,
        };
        let now = match self.deps.sessions.switch_agent(&self.sid, sw).await {
            Ok(Switched::Changed { .. } | Switched::Unchanged) => Some(to.to_owned()),
            Ok(Switched::Lost { now }) => {
                tracing::info!(call_id = %self.call_id, "another switch won; applying the current agent");
                now
            }
            Err(e) => {
                tracing::error!(error = %e, "switching the active agent failed");
                self.active().await.map(|(_, a)| a)
            }
        };
        Some(now.unwrap_or_else(|| to.to_owned()))
    }

    pub(crate) async fn remember(&self, item: Value) {
        if let Err(e) = self
            .deps
            .sessions
            .memory
            .add_items(self.sid.as_str(), &[item], None)
            .await
        {
            tracing::warn!(error = %e, "mirroring the call transcript into agent memory failed");
        }
    }
}

/// The session's scenario and the agent in charge now.
pub(crate) async fn active(
    sessions: &Sessions,
    sid: &SessionId,
) -> Option<(Arc<crate::scenario::Scenario>, String)> {
    let s = sessions.store.get(sid).await.ok()??;
    let scn = sessions.scenarios.resolve(s.scenario_id.as_str())?;
    Some((scn, s.active_agent.to_string()))
}
