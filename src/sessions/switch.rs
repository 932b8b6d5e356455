//! Switching a session's active agent: the one compare-and-set path. Of two concurrent
//! switches from the same agent, on any instances, exactly one changes the state and
//! publishes `agent.switch {from, to, reason, confidence, source}`; the other learns which
//! agent is in charge now.

use proto_events::events::AgentSwitch;

use super::{SessionError, Sessions};
use crate::domain::SessionId;

/// Who asked for a switch (the `source` of `agent.switch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchSource {
    /// The model called `transfer_to_*` (a call or a server agent).
    Model,
    /// The browser (a call's `root_agent`, a session-token control command).
    Client,
    /// A back end with the server API key.
    Server,
    /// The orchestrator's decision.
    Orchestrator,
}

impl SwitchSource {
    /// As published.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Client => "client",
            Self::Server => "server",
            Self::Orchestrator => "orchestrator",
        }
    }
}

/// One requested switch.
#[derive(Debug, Clone)]
pub struct Switch {
    /// The agent expected in charge now (the compare of compare-and-set).
    pub from: String,
    /// The agent to put in charge.
    pub to: String,
    /// Who asked.
    pub source: SwitchSource,
    /// Why.
    pub reason: String,
    /// In [0, 1].
    pub confidence: f64,
    /// Also update the session's live call (its `session.update`). False when the switch
    /// comes from the call's own sideband, which updates the call itself.
    pub tell_call: bool,
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq)]
pub enum Switched {
    /// The agent changed and `agent.switch` was published with this seq.
    Changed {
        /// Seq of the `agent.switch` event.
        seq: u64,
    },
    /// `to` was in charge already: nothing changed, nothing was published.
    Unchanged,
    /// Another switch changed the agent first; `now` is in charge (`None`: the session
    /// expired meanwhile).
    Lost {
        /// The agent in charge now.
        now: Option<String>,
    },
}

impl Sessions {
    /// Makes `sw.to` the active agent if `sw.from` still is, and publishes `agent.switch`.
    /// The target must be an agent of the session's scenario (checked by the caller, who
    /// knows which rule applies: a handoff, any agent, a reachable one).
    pub async fn switch_agent(
        &self,
        session: &SessionId,
        sw: Switch,
    ) -> Result<Switched, SessionError> {
        if sw.from == sw.to {
            return Ok(Switched::Unchanged);
        }
        if !self
            .store
            .cas_active_agent(session, &sw.from, &sw.to)
            .await?
        {
            let now = self.store.get(session).await?;
            return Ok(Switched::Lost {
                now: now.map(|s| s.active_agent.to_string()),
            });
        }
        let data = AgentSwitch {
            from: sw.from,
            to: sw.to,
            reason: sw.reason,
            confidence: sw.confidence,
            source: sw.source.as_str().to_owned(),
        };
        let published = self.publish(session, &data).await?;
        let note = serde_json::json!({"from": data.from, "to": data.to, "source": data.source,
            "reason": data.reason, "confidence": data.confidence});
        self.note(
            session,
            super::record::Note::new("agent.switch", note).agent(&data.to),
        )
        .await;
        if sw.tell_call
            && let Some(calls) = self.live_calls.get().and_then(std::sync::Weak::upgrade)
        {
            calls.agent_changed(session, &data.to).await;
        }
        Ok(Switched::Changed { seq: published.seq })
    }
}
