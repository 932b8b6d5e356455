//! Deciding which agent should be in charge, and applying the decision to a session: the
//! orchestrator scores (or asks its classifier), and a change goes through the one switch
//! path ([`Sessions::switch_agent`]), so of two concurrent decisions from the same state only
//! one switches. Without a session the decision only advises.

use super::{SessionError, Sessions, Switch, SwitchSource, Switched};
use crate::domain::SessionId;
use crate::orchestrator::{Decision, decide};
use crate::scenario::model::{Agent, Scenario};

/// One decision to make.
pub struct Orchestrate<'a> {
    /// The session to apply it to; `None` only advises.
    pub session: Option<&'a SessionId>,
    /// The session's (or the named) scenario.
    pub scenario: &'a Scenario,
    /// The agent in charge now.
    pub active: &'a Agent,
    /// The user's latest message.
    pub last_user_text: &'a str,
    /// Recent transcript lines, oldest first.
    pub tail: &'a [String],
}

/// A decision and what it did.
#[derive(Debug, Clone)]
pub struct Orchestrated {
    /// What the orchestrator decided (`chosen` is the agent in charge afterwards).
    pub decision: Decision,
    /// The agent in charge before.
    pub from: String,
    /// Whether the agent changed.
    pub changed: bool,
    /// Seq of the `agent.switch` event, when one was published.
    pub event_seq: Option<u64>,
}

impl Sessions {
    /// Decides, and for a session applies a change (publishing `agent.switch` and telling
    /// the live call). A decision that lost the race reports the agent in charge now.
    pub async fn orchestrate(&self, o: Orchestrate<'_>) -> Result<Orchestrated, SessionError> {
        let mut decision = decide(
            o.scenario,
            o.active,
            o.last_user_text,
            o.tail,
            self.upstream.as_ref(),
        )
        .await;
        let from = o.active.name.to_string();
        let mut out = Orchestrated {
            changed: decision.chosen != from,
            from: from.clone(),
            event_seq: None,
            decision: decision.clone(),
        };
        let Some(sid) = o.session.filter(|_| out.changed) else {
            if let Some(sid) = o.session {
                self.note_orchestration(sid, None, &out).await;
            }
            return Ok(out);
        };
        let switch = Switch {
            from: from.clone(),
            to: decision.chosen.clone(),
            source: SwitchSource::Orchestrator,
            reason: decision.reason.clone(),
            confidence: decision.confidence,
            tell_call: true,
        };
        match self.switch_agent(sid, switch).await? {
            Switched::Changed { seq } => out.event_seq = Some(seq),
            Switched::Unchanged => out.changed = false,
            Switched::Lost { now } => {
                out.changed = false;
                decision.chosen = now.unwrap_or(from);
                decision.reason = format!(
                    "another decision changed the agent first ({})",
                    decision.reason
                );
                out.decision = decision;
            }
        }
        self.note_orchestration(sid, None, &out).await;
        Ok(out)
    }

    /// Records an orchestration decision, whether or not it switched (REST and the sideband).
    pub async fn note_orchestration(
        &self,
        session: &SessionId,
        call_id: Option<&str>,
        o: &Orchestrated,
    ) {
        let data = serde_json::json!({
            "from": o.from,
            "chosen": o.decision.chosen,
            "changed": o.changed,
            "reason": o.decision.reason,
            "confidence": o.decision.confidence,
        });
        let mut note = super::record::Note::new("orchestration", data).agent(&o.from);
        note.call_id = call_id;
        self.note(session, note).await;
    }
}
