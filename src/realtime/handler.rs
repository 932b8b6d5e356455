//! One held call: the shared [`CallCore`] and, behind [`VoiceCall`] (both in
//! [`super::call`]), the Realtime implementation ([`super::realtime_call`]) or the GPT-Live
//! one ([`super::live`]), chosen by the call id. Every method returns the client events to
//! send, in order; the sideband loop sends them.

use serde_json::Value;

use std::sync::Arc;

use super::CallDeps;
pub use super::call::{CallCore, VoiceCall};
use crate::config::VoiceApi;
use crate::domain::SessionId;

pub use super::command::{Command, CommandError};

/// One held call.
pub struct Call {
    core: CallCore,
    voice: Box<dyn VoiceCall>,
    /// Client events produced in the background (Live delegations), for the sideband loop.
    outbox: Option<tokio::sync::mpsc::UnboundedReceiver<Value>>,
    /// Its sender, for the seed of earlier turns.
    to_outbox: tokio::sync::mpsc::UnboundedSender<Value>,
}

impl Call {
    /// A call of session `sid`; its id tells the voice API.
    pub fn new(deps: Arc<CallDeps>, sid: SessionId, call_id: String) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let voice: Box<dyn VoiceCall> = match VoiceApi::of_call_id(&call_id) {
            VoiceApi::Live => Box::new(super::live::LiveCall::new(
                deps.clone(),
                sid.clone(),
                call_id.clone(),
                tx.clone(),
            )),
            VoiceApi::Realtime => Box::new(super::realtime_call::RealtimeCall::default()),
        };
        let core = CallCore {
            deps,
            sid,
            call_id,
            ended: false,
            closing_since: None,
        };
        Self {
            core,
            voice,
            outbox: Some(rx),
            to_outbox: tx,
        }
    }

    /// Seeds a new call with the session's earlier turns (once per call, across instances:
    /// an adopter does not seed again), queued before anything the call itself produces.
    pub async fn seed(&mut self) {
        let sessions = &self.core.deps.sessions;
        let claim = crate::sessions::claim::Claim {
            store: sessions.store.as_ref(),
            session: &self.core.sid,
            key: &format!("seeded:{}", self.core.call_id),
            ttl: sessions.settings.session_ttl,
        };
        if !matches!(claim.first().await, Ok(true)) {
            return;
        }
        let turns = sessions
            .seed_turns(&self.core.sid, &self.core.call_id)
            .await;
        if turns.is_empty() {
            return;
        }
        tracing::info!(call_id = %self.core.call_id, turns = turns.len(), "seeding the call with earlier turns");
        for ev in self.voice.seed(&turns) {
            let _ = self.to_outbox.send(ev);
        }
    }

    /// The upstream call id.
    pub fn call_id(&self) -> &str {
        &self.core.call_id
    }

    /// True once the call is over.
    pub fn ended(&self) -> bool {
        self.core.ended
    }

    /// The client events background work produces (taken once by the sideband loop).
    pub(crate) fn take_outbox(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Value>> {
        self.outbox.take()
    }

    /// Picks up what a previous owner left unfinished (a Live call's delegations).
    pub async fn resume(&mut self) {
        self.voice.resume(&mut self.core).await;
    }

    /// Periodic work.
    pub async fn on_tick(&mut self) -> Vec<Value> {
        self.voice.on_tick(&mut self.core).await
    }

    /// Handles one server event.
    pub async fn on_event(&mut self, ev: &Value) -> Vec<Value> {
        self.voice.on_event(&mut self.core, ev).await
    }

    /// Applies a control command.
    pub async fn on_command(&mut self, cmd: Command) -> Result<Vec<Value>, CommandError> {
        self.voice.on_command(&mut self.core, cmd).await
    }

    /// Marks the call over: publishes `call.ended` and forgets the call.
    pub async fn end(&mut self, reason: &str) {
        self.core.end(reason).await;
    }
}
