//! What the sideband of a GPT-Live call does (DESIGN.md §9). Live has no conversation items:
//! turns are assembled from transcript fragments (a turn ends when the gap between one
//! fragment's `end_ms` and the next one's `start_ms` exceeds [`TURN_GAP_MS`], when the other
//! side speaks, at a delegation, or when no fragment came for that long), and the voice model
//! delegates tasks to the backend.
//!
//! - **Client delegation**: the task is the caller's current turn (the user's fragments with
//!   `start_ms <= offset_ms`, waiting up to [`LATE_FRAGMENT_WAIT`] for one that arrives after
//!   the delegation). The active agent runs it through [`Sessions::delegate`] on a background
//!   task, so transcripts keep flowing; progress goes out as `session.thinking.append`, the
//!   answer as `session.commentary.append {delegation_id}`. A delegation is recorded before it
//!   runs (so an adopter finishes an unanswered one) and answered at most once, ever (an
//!   answer-once claim taken just before it is sent).
//! - **Responses delegation**: OpenAI runs the backend model; each nested function call is
//!   run through the one tool path (answered once per `call_id`) and answered with
//!   `response.item.create`, then one `response.create` after `response.completed`. A
//!   `transfer_to_*` switches the agent and sends `session.update` with its settings; the
//!   `response.create` waits for `session.updated`.
//!
//! Background work sends its client events through the call's outbox; the sideband loop
//! sends them in order on whichever socket is attached.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::record::price::Usage;
use crate::sessions::record::Note;
use proto_events::events::{TranscriptAssistant, TranscriptUser};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::CallDeps;
use delegation::{Job, Record, answered_key, pending, record_key};
use responses::responses_update;

mod delegation;
mod responses;
mod turns;

use super::call::{CLOSE_CONFIRM_WAIT, CallCore, VoiceCall, active};
use super::command::{Command, CommandError};
use crate::domain::SessionId;
use crate::scenario::model::Delegation;
use crate::sessions::Sessions;
use crate::sessions::delegate::fit_append;
use turns::{Fragment, Turn, UserTurn};

/// Silence between fragments that ends a turn.
pub const TURN_GAP_MS: u64 = 800;

/// How long a delegation waits for the fragment that covers it.
pub const LATE_FRAGMENT_WAIT: Duration = Duration::from_millis(300);

/// Responses delegation: one backend response's progress.
#[derive(Debug, Default)]
struct BackendResponse {
    calls: usize,
    completed: bool,
}

/// A Live call's state.
pub struct LiveCall {
    deps: Arc<CallDeps>,
    sid: SessionId,
    call_id: String,
    user: Arc<UserTurn>,
    assistant: Turn,
    seen: HashSet<String>,
    outbox: mpsc::UnboundedSender<Value>,
    backend: std::collections::HashMap<String, BackendResponse>,
    awaiting_update: bool,
}

impl LiveCall {
    /// A Live call of `sid` sending background client events to `outbox`.
    pub fn new(
        deps: Arc<CallDeps>,
        sid: SessionId,
        call_id: String,
        outbox: mpsc::UnboundedSender<Value>,
    ) -> Self {
        Self {
            deps,
            sid,
            call_id,
            user: Arc::default(),
            assistant: Turn::default(),
            seen: HashSet::new(),
            outbox,
            backend: Default::default(),
            awaiting_update: false,
        }
    }

    fn sessions(&self) -> &Arc<Sessions> {
        &self.deps.sessions
    }

    /// Finishes the delegations a previous owner recorded and did not answer.
    async fn resume_pending(&mut self) {
        let pending = pending(self.sessions(), &self.sid).await;
        for id in pending {
            // One that was answered (its owner died before forgetting it) is not run again.
            let answered = self
                .sessions()
                .store
                .get_value(&self.sid, &answered_key(&id))
                .await;
            if matches!(answered, Ok(Some(_))) {
                continue;
            }
            let key = record_key(&id);
            let raw = self.sessions().store.get_value(&self.sid, &key).await;
            let Ok(Some(raw)) = raw else { continue };
            let Ok(record) = serde_json::from_str::<Record>(&raw) else {
                continue;
            };
            self.seen.insert(id.clone());
            tracing::info!(call_id = %self.call_id, delegation_id = %id, "finishing a delegation the previous owner left");
            self.spawn_delegation(record, true);
        }
    }

    /// Handles one Live server event (other than the end of the session); returns the
    /// client events to send now.
    async fn on_live(&mut self, ev: &Value) -> Vec<Value> {
        match ev["type"].as_str().unwrap_or_default() {
            "session.input_transcript.delta" => {
                self.on_fragment(ev, true).await;
                vec![]
            }
            "session.output_transcript.delta" => {
                self.on_fragment(ev, false).await;
                vec![]
            }
            "session.delegation.created" => self.on_delegation(ev).await,
            "response.event" => self.on_backend_event(ev).await,
            "session.updated" => {
                self.awaiting_update = false;
                self.ready_responses()
            }
            "session.usage.updated" => {
                let seconds = ev["usage"]["seconds"].as_f64();
                self.add_usage(seconds, 0, 0).await;
                vec![]
            }
            _ => vec![],
        }
    }

    /// Publishes turns nobody has added to for a turn gap.
    async fn tick(&mut self) -> Vec<Value> {
        let gap = Duration::from_millis(TURN_GAP_MS);
        let user_quiet = self.user.turn.lock().quiet_for(gap);
        if user_quiet {
            self.flush_user().await;
        }
        if self.assistant.quiet_for(gap) {
            return self.flush_assistant().await;
        }
        vec![]
    }

    /// Publishes whatever turns are open (the call is ending).
    async fn flush(&mut self) {
        self.flush_user().await;
        self.flush_assistant().await;
    }

    /// Records the session's usage (Live reports cumulative seconds).
    async fn add_usage(&self, seconds: Option<f64>, input: u64, output: u64) {
        let before = (self.sessions().usage(&self.sid).await.ok().flatten())
            .and_then(|u| u["seconds"].as_f64())
            .unwrap_or(0.0);
        if let Err(e) = self
            .sessions()
            .add_usage(&self.sid, seconds, input, output)
            .await
        {
            tracing::warn!(error = %e, call_id = %self.call_id, "recording usage failed");
        }
        // Live reports cumulative seconds per call: the record keeps each increase.
        let billed_ms = seconds.map_or(0, |s| {
            let delta = if s >= before { s - before } else { s };
            (delta * 1000.0).round() as u64
        });
        if billed_ms == 0 && input == 0 && output == 0 {
            return;
        }
        let usage = Usage {
            input_text_tokens: input,
            output_text_tokens: output,
            billed_ms,
            ..Usage::default()
        };
        let source = if seconds.is_some() {
            "voice"
        } else {
            "backend"
        };
        let mut note = Note::new("usage", json!({"source": source, "seconds_total": seconds}))
            .call(&self.call_id);
        note.usage = Some((self.deps.realtime.live_model.clone(), usage));
        self.sessions().note(&self.sid, note).await;
    }

    async fn on_fragment(&mut self, ev: &Value, user: bool) {
        let f = Fragment {
            text: ev["delta"].as_str().unwrap_or_default().to_owned(),
            start_ms: ev["start_ms"].as_u64().unwrap_or(0),
            end_ms: ev["end_ms"].as_u64().unwrap_or(0),
            seen: Instant::now(),
        };
        if user {
            // The assistant stopped: its turn is over.
            self.flush_assistant().await;
            let gap = self.user.turn.lock().gap_before(f.start_ms);
            if gap {
                self.flush_user().await;
            }
            self.user
                .latest_start
                .fetch_max(f.start_ms, Ordering::SeqCst);
            self.user.turn.lock().0.push(f);
            self.user.arrived.notify_waiters();
        } else {
            self.flush_user().await;
            if self.assistant.gap_before(f.start_ms) {
                let out = self.flush_assistant().await;
                self.send_all(out);
            }
            self.assistant.0.push(f);
        }
    }

    fn send_all(&self, events: Vec<Value>) {
        for e in events {
            let _ = self.outbox.send(e);
        }
    }

    async fn flush_user(&mut self) {
        let text = {
            let mut turn = self.user.turn.lock();
            let text = turn.text();
            turn.0.clear();
            text
        };
        publish_user(&self.deps, &self.sid, &self.call_id, text).await;
    }

    /// Publishes the assistant's turn and moderates it; a flagged answer gets a corrective
    /// instructions append (Live speech cannot be truncated).
    async fn flush_assistant(&mut self) -> Vec<Value> {
        let text = self.assistant.text();
        self.assistant.0.clear();
        if text.is_empty() {
            return vec![];
        }
        let Some((scn, agent)) = active(self.sessions(), &self.sid).await else {
            return vec![];
        };
        let data = TranscriptAssistant {
            call_id: self.call_id.clone(),
            item_id: None,
            response_id: None,
            agent,
            text: text.clone(),
        };
        publish(self.sessions(), &self.sid, &data).await;
        remember(
            self.sessions(),
            &self.sid,
            json!({"role": "assistant", "content": text}),
        )
        .await;
        let turn = json!({"text": text, "generated_text": text, "interrupted": false});
        let note = Note::new("turn.assistant", turn)
            .call(&self.call_id)
            .agent(&data.agent);
        self.sessions().note(&self.sid, note).await;
        let judged = (self.sessions())
            .moderate_answer(&self.sid, &text, &scn.company_name)
            .await;
        match judged {
            Ok(m) if !m.decision.allowed => {
                let mut out = vec![append(
                    "session.instructions.append",
                    None,
                    "Your last answer broke the conversation policy. Do not repeat it; briefly \
                     apologise and steer back to how you can help.",
                )];
                if scn.live.close_on_flag {
                    tracing::warn!(call_id = %self.call_id, "closing a Live session after a flagged answer");
                    out.push(json!({"type": "session.close"}));
                }
                out
            }
            Ok(_) => vec![],
            Err(e) => {
                tracing::error!(error = %e, call_id = %self.call_id, "moderating a Live answer failed");
                vec![]
            }
        }
    }

    async fn on_delegation(&mut self, ev: &Value) -> Vec<Value> {
        let d = &ev["delegation"];
        let Some(id) = d["id"].as_str().map(str::to_owned) else {
            return vec![];
        };
        if !self.seen.insert(id.clone()) {
            return vec![]; // a repeated announcement
        }
        if d["target"] == "responses" {
            self.backend.entry(id).or_default();
            return vec![];
        }
        let record = Record {
            id,
            task: String::new(),
            offset_ms: ev["offset_ms"].as_u64().unwrap_or(0),
            started_ms: crate::clock::unix_now_ms(),
            tools: Vec::new(),
        };
        self.flush_assistant().await;
        self.spawn_delegation(record, false);
        vec![]
    }

    fn spawn_delegation(&self, record: Record, resumed: bool) {
        let job = Job {
            deps: self.deps.clone(),
            sid: self.sid.clone(),
            call_id: self.call_id.clone(),
            user: self.user.clone(),
            outbox: self.outbox.clone(),
        };
        self.deps
            .tasks
            .spawn(async move { job.run(record, resumed).await });
    }

    /// A switch from outside the backend (control, orchestration): the voice layer is told,
    /// and under Responses delegation the backend takes the new agent's settings.
    pub async fn agent_changed(&mut self, agent: &str) -> Vec<Value> {
        let Some((scn, _)) = active(self.sessions(), &self.sid).await else {
            return vec![];
        };
        let Some(a) = scn.agent(agent) else {
            return vec![];
        };
        let mut out = vec![append("session.instructions.append", None, &persona(a))];
        if scn.live.delegation == Delegation::Responses {
            out.push(responses_update(&scn, a));
            self.awaiting_update = true;
        }
        out
    }
}

#[async_trait::async_trait]
impl VoiceCall for LiveCall {
    async fn on_event(&mut self, core: &mut CallCore, ev: &Value) -> Vec<Value> {
        match ev["type"].as_str().unwrap_or_default() {
            "session.closed" => {
                let upstream = ev["reason"].as_str().unwrap_or_default();
                let reason = match upstream {
                    _ if core.closing_since.is_some() => "hangup",
                    "close_requested" => "hangup",
                    "remote_hangup" | "expired" | "content" | "connection_lost" => upstream,
                    _ => "error",
                };
                self.flush().await;
                core.end_reported(reason, Some(upstream.to_owned())).await;
                vec![]
            }
            "error" => {
                tracing::warn!(call_id = %core.call_id, session_id = %core.sid, error = %ev["error"], "live error event");
                vec![]
            }
            _ => self.on_live(ev).await,
        }
    }

    /// A switch changes the agent on the server and tells the voice layer; say is
    /// commentary; instructions are appended; hang-up closes the session.
    async fn on_command(
        &mut self,
        core: &mut CallCore,
        cmd: Command,
    ) -> Result<Vec<Value>, CommandError> {
        match cmd {
            Command::SwitchAgent { agent, source } => {
                let source = core.switch_source(&agent, &source).await?;
                let now = (core.switch_only(&agent, source, "control command".into(), 1.0))
                    .await
                    .unwrap_or(agent);
                Ok(self.agent_changed(&now).await)
            }
            Command::Say { text } => Ok(vec![append("session.commentary.append", None, &text)]),
            Command::UpdateInstructions { instructions } => Ok(vec![append(
                "session.instructions.append",
                None,
                &instructions,
            )]),
            Command::Hangup => {
                // `call.ended` follows when `session.closed` confirms it (or the wait ends).
                core.closing_since.get_or_insert_with(Instant::now);
                Ok(vec![json!({"type": "session.close"})])
            }
        }
    }

    /// Turns that went quiet; a hang-up the upstream did not confirm in time ends the call.
    async fn on_tick(&mut self, core: &mut CallCore) -> Vec<Value> {
        if core
            .closing_since
            .is_some_and(|t| t.elapsed() >= CLOSE_CONFIRM_WAIT)
        {
            self.flush().await;
            core.end_reported("hangup", None).await;
            return vec![];
        }
        self.tick().await
    }

    fn seed(&self, turns: &[(String, String)]) -> Vec<Value> {
        // Live takes no conversation items: the earlier turns go in as an instructions
        // append, the most recent ones that fit.
        let mut lines: Vec<String> = Vec::new();
        let mut room = 1800usize;
        for (role, text) in turns.iter().rev() {
            let line = format!("{role}: {text}");
            if line.len() + 1 > room {
                break;
            }
            room -= line.len() + 1;
            lines.push(line);
        }
        lines.reverse();
        let content = format!(
            "Earlier in this conversation:\n{}\n\n{}",
            lines.join("\n"),
            super::call::SEED_NOTE
        );
        vec![append("session.instructions.append", None, &content)]
    }

    async fn resume(&mut self, _core: &mut CallCore) {
        self.resume_pending().await;
    }
}

/// What the voice layer is told when an agent takes over.
pub fn persona(a: &crate::scenario::model::Agent) -> String {
    let role = if a.handoff_description.is_empty() {
        "help the caller"
    } else {
        a.handoff_description.as_str()
    };
    fit_append(&format!(
        "From now on you speak for the {} agent ({role}). Keep delegating anything that needs \
         tools, accounts or policy.",
        a.name
    ))
}

/// A Live append (`session.instructions|thinking|commentary.append`).
pub fn append(kind: &str, delegation_id: Option<&str>, content: &str) -> Value {
    json!({"type": kind, "delegation_id": delegation_id, "content": fit_append(content)})
}

async fn publish<T: proto_events::events::EventData>(
    sessions: &Sessions,
    sid: &SessionId,
    data: &T,
) {
    if let Err(e) = sessions.publish(sid, data).await {
        tracing::error!(error = %e, kind = T::KIND, "publishing a Live call event failed");
    }
}

async fn remember(sessions: &Sessions, sid: &SessionId, item: Value) {
    if let Err(e) = sessions.memory.add_items(sid.as_str(), &[item], None).await {
        tracing::warn!(error = %e, "mirroring the Live transcript into agent memory failed");
    }
}

async fn publish_user(deps: &CallDeps, sid: &SessionId, call_id: &str, text: String) {
    if text.is_empty() {
        return;
    }
    let data = TranscriptUser {
        call_id: call_id.to_owned(),
        item_id: None,
        text: text.clone(),
    };
    publish(&deps.sessions, sid, &data).await;
    remember(
        &deps.sessions,
        sid,
        json!({"role": "user", "content": text}),
    )
    .await;
    let note = Note::new("turn.user", json!({"text": text})).call(call_id);
    deps.sessions.note(sid, note).await;
}
