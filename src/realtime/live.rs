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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proto_events::events::{
    DelegationCompleted, DelegationStarted, TranscriptAssistant, TranscriptUser,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::CallDeps;
use super::call::{CLOSE_CONFIRM_WAIT, CallCore, VoiceCall, active};
use super::command::{Command, CommandError};
use crate::domain::SessionId;
use crate::scenario::model::Delegation;
use crate::sessions::delegate::{Delegate, fit_append};
use crate::sessions::tool_call::{AgentRule, ToolRan};
use crate::sessions::{Idempotency, Sessions, ToolRun};
use crate::tools::run::{Args, model_output};

/// Silence between fragments that ends a turn.
pub const TURN_GAP_MS: u64 = 800;

/// How long a delegation waits for the fragment that covers it.
pub const LATE_FRAGMENT_WAIT: Duration = Duration::from_millis(300);

/// Where a call's pending delegations are listed (a JSON array of ids).
const PENDING_KEY: &str = "live:pending";

/// One transcript fragment.
#[derive(Debug, Clone)]
struct Fragment {
    text: String,
    start_ms: u64,
    end_ms: u64,
    seen: Instant,
}

/// The fragments of the turn being spoken.
#[derive(Debug, Default)]
struct Turn(Vec<Fragment>);

impl Turn {
    fn text(&self) -> String {
        self.0
            .iter()
            .map(|f| f.text.as_str())
            .collect::<String>()
            .trim()
            .to_owned()
    }

    /// True when `next` starts after a silence longer than the turn gap.
    fn gap_before(&self, start_ms: u64) -> bool {
        self.0
            .last()
            .is_some_and(|l| start_ms.saturating_sub(l.end_ms) > TURN_GAP_MS)
    }

    fn quiet_for(&self, d: Duration) -> bool {
        self.0.last().is_some_and(|l| l.seen.elapsed() >= d)
    }
}

/// The user's current turn, shared with the delegations that wait for it.
#[derive(Default)]
struct UserTurn {
    turn: Mutex<Turn>,
    arrived: Notify,
    /// `start_ms` of the latest user fragment (to tell a late answer).
    latest_start: AtomicU64,
}

/// A recorded delegation (what an adopter needs to finish it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    id: String,
    task: String,
    offset_ms: u64,
    started_ms: u64,
    /// Tools it finished: `(name, arguments, output)`, reused if another instance resumes it.
    #[serde(default)]
    tools: Vec<(String, Value, Value)>,
}

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
        if let Err(e) = self
            .sessions()
            .add_usage(&self.sid, seconds, input, output)
            .await
        {
            tracing::warn!(error = %e, call_id = %self.call_id, "recording usage failed");
        }
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

    /// Responses delegation: one nested backend event.
    async fn on_backend_event(&mut self, ev: &Value) -> Vec<Value> {
        let inner = &ev["event"];
        let id = ev["delegation_id"].as_str().unwrap_or_default().to_owned();
        match inner["type"].as_str().unwrap_or_default() {
            "response.output_item.done" if inner["item"]["type"] == "function_call" => {
                self.backend.entry(id).or_default().calls += 1;
                self.on_backend_call(&inner["item"]).await
            }
            "response.completed" => {
                let usage = &inner["response"]["usage"];
                let (i, o) = (
                    usage["input_tokens"].as_u64(),
                    usage["output_tokens"].as_u64(),
                );
                self.add_usage(None, i.unwrap_or(0), o.unwrap_or(0)).await;
                self.backend.entry(id).or_default().completed = true;
                self.ready_responses()
            }
            _ => vec![],
        }
    }

    /// `response.create` for every backend response that completed with calls answered
    /// (held while a `session.update` is unconfirmed).
    fn ready_responses(&mut self) -> Vec<Value> {
        if self.awaiting_update {
            return vec![];
        }
        let ready: Vec<String> = (self.backend.iter())
            .filter(|(_, r)| r.completed && r.calls > 0)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ready {
            self.backend.remove(&id);
            out.push(json!({"type": "response.create"}));
        }
        out
    }

    /// Runs one backend function call through the one tool path, once per `call_id`.
    async fn on_backend_call(&mut self, item: &Value) -> Vec<Value> {
        let (Some(call_id), Some(name)) = (item["call_id"].as_str(), item["name"].as_str()) else {
            return vec![];
        };
        let output = |v: Value| {
            json!({"type": "response.item.create", "item": {"type": "function_call_output",
                   "call_id": call_id, "output": v.to_string()}})
        };
        if let Some(target) = name.strip_prefix("transfer_to_") {
            return self
                .backend_transfer(call_id, target)
                .await
                .into_iter()
                .map(output)
                .collect();
        }
        let Some(state) = self.sessions().store.get(&self.sid).await.ok().flatten() else {
            return vec![];
        };
        let run = ToolRun {
            session: &self.sid,
            tool: name,
            args: Args::Text(item["arguments"].as_str().unwrap_or("{}")),
            correlation_id: Some(call_id),
            idempotency: Idempotency::AnswerOnce,
            rule: AgentRule::ActiveAgent(&state),
            report_refusals: true,
        };
        match self.sessions().run_tool(run).await {
            Ok(ToolRan::Fresh(r) | ToolRan::Repeat(r)) => vec![output(model_output(&r))],
            Ok(ToolRan::AlreadyAnswered) => vec![],
            Err(e) => vec![output(json!({"error": e.to_string()}))],
        }
    }

    /// A backend `transfer_to_*`: switch, then the new agent's settings for later delegations.
    async fn backend_transfer(&mut self, call_id: &str, target: &str) -> Option<Value> {
        let key = format!("fc:{call_id}");
        let claim = crate::sessions::claim::Claim {
            store: self.sessions().store.as_ref(),
            session: &self.sid,
            key: &key,
            ttl: self.sessions().settings.session_ttl,
        };
        if !claim.first().await.unwrap_or(false) {
            return None;
        }
        let (scn, from) = active(self.sessions(), &self.sid).await?;
        let agent = scn.agent(target)?;
        let switch = crate::sessions::Switch {
            from,
            to: target.to_owned(),
            source: crate::sessions::SwitchSource::Model,
            reason: format!("transfer_to_{target}"),
            confidence: 1.0,
            tell_call: false,
        };
        if let Err(e) = self.sessions().switch_agent(&self.sid, switch).await {
            tracing::error!(error = %e, "switching the active agent failed");
        }
        let update = responses_update(&scn, agent);
        let _ = self.outbox.send(update);
        self.awaiting_update = true;
        Some(json!({"assistant": target}))
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

    async fn resume(&mut self, _core: &mut CallCore) {
        self.resume_pending().await;
    }
}

/// `session.update` with an agent's backend settings (Responses delegation).
fn responses_update(
    scn: &crate::scenario::Scenario,
    agent: &crate::scenario::model::Agent,
) -> Value {
    let view = crate::scenario::view::agent_view(scn, agent, None);
    let tools: Vec<Value> = (view.tools.iter())
        .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    json!({"type": "session.update", "session": {"delegation": {"type": "responses",
           "responses": {"instructions": view.instructions, "tools": tools}}}})
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

fn record_key(id: &str) -> String {
    format!("live:deleg:{id}")
}

async fn save_record(sessions: &Sessions, sid: &SessionId, record: &Record) {
    let raw = serde_json::to_string(record).unwrap_or_default();
    let ttl = sessions.settings.session_ttl;
    let key = record_key(&record.id);
    if let Err(e) = sessions.store.put_value(sid, &key, &raw, ttl).await {
        tracing::warn!(error = %e, "recording a delegation failed");
    }
}

async fn pending(sessions: &Sessions, sid: &SessionId) -> Vec<String> {
    let raw = sessions
        .store
        .get_value(sid, PENDING_KEY)
        .await
        .ok()
        .flatten();
    raw.and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default()
}

async fn set_pending(sessions: &Sessions, sid: &SessionId, ids: &[String]) {
    let ttl = sessions.settings.session_ttl;
    let raw = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    if let Err(e) = sessions.store.put_value(sid, PENDING_KEY, &raw, ttl).await {
        tracing::warn!(error = %e, "recording pending delegations failed");
    }
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
}

/// One client delegation, run in the background.
struct Job {
    deps: Arc<CallDeps>,
    sid: SessionId,
    call_id: String,
    user: Arc<UserTurn>,
    outbox: mpsc::UnboundedSender<Value>,
}

impl Job {
    async fn run(self, mut record: Record, resumed: bool) {
        let sessions = self.deps.sessions.clone();
        if !resumed {
            record.task = self.task(record.offset_ms).await;
            save_record(&sessions, &self.sid, &record).await;
            let mut ids = pending(&sessions, &self.sid).await;
            ids.push(record.id.clone());
            set_pending(&sessions, &self.sid, &ids).await;
        }
        let agent = active(&sessions, &self.sid)
            .await
            .map(|(_, a)| a)
            .unwrap_or_default();
        let started = DelegationStarted {
            call_id: self.call_id.clone(),
            delegation_id: record.id.clone(),
            agent,
            task: record.task.clone(),
        };
        if !resumed {
            // A resumed delegation was announced by the owner that recorded it.
            publish(&sessions, &self.sid, &started).await;
        }
        // Finished tools are recorded by one writer, in order, so an adopter can reuse them.
        let finished = Arc::new(Mutex::new(record.clone()));
        let (dirty, mut writes) = mpsc::unbounded_channel::<()>();
        let writer = {
            let (sessions, sid, finished) = (sessions.clone(), self.sid.clone(), finished.clone());
            tokio::spawn(async move {
                while writes.recv().await.is_some() {
                    while writes.try_recv().is_ok() {}
                    let snapshot = finished.lock().clone();
                    save_record(&sessions, &sid, &snapshot).await;
                }
            })
        };
        let outbox = self.outbox.clone();
        let id = record.id.clone();
        let progress = {
            let finished = finished.clone();
            move |tool: &str, args: &Value, output: &Value| {
                let note = format!("Looked up {tool}; preparing the answer.");
                let _ = outbox.send(append("session.thinking.append", Some(&id), &note));
                let done = (tool.to_owned(), args.clone(), output.clone());
                finished.lock().tools.push(done);
                let _ = dirty.send(());
            }
        };
        let earlier = record.tools.clone();
        let replay = move |tool: &str, args: &Value| {
            (earlier.iter())
                .find(|(t, a, _)| t == tool && a == args)
                .map(|(_, _, output)| output.clone())
        };
        let task = if record.task.is_empty() {
            "(the caller said nothing I could hear)"
        } else {
            &record.task
        };
        let asked = Delegate {
            session: &self.sid,
            task,
            observer: Some(&progress),
            replay: Some(&replay),
        };
        let (answer, agent) = match sessions.delegate(asked).await {
            Ok(done) => {
                for (_, to) in &done.handoffs {
                    if let Some((scn, _)) = active(&sessions, &self.sid).await
                        && let Some(a) = scn.agent(to)
                    {
                        let _ = self.outbox.send(append(
                            "session.instructions.append",
                            None,
                            &persona(a),
                        ));
                    }
                }
                let (i, o) = (done.input_tokens, done.output_tokens);
                if let Err(e) = sessions.add_usage(&self.sid, None, i, o).await {
                    tracing::warn!(error = %e, "recording delegation usage failed");
                }
                (done.answer, done.agent)
            }
            Err(e) => {
                tracing::warn!(error = %e, call_id = %self.call_id, "a delegation failed");
                let agent = active(&sessions, &self.sid)
                    .await
                    .map(|(_, a)| a)
                    .unwrap_or_default();
                (
                    "I'm sorry, I can't look that up right now. Please try again in a moment."
                        .to_owned(),
                    agent,
                )
            }
        };
        drop(progress);
        let _ = writer.await;
        self.answer(&record, answer, agent).await;
    }

    /// The caller's current turn: the user's fragments up to the delegation's offset
    /// (waiting briefly for one that covers it); the turn ends here.
    async fn task(&self, offset_ms: u64) -> String {
        let deadline = tokio::time::Instant::now() + LATE_FRAGMENT_WAIT;
        loop {
            let arrived = self.user.arrived.notified();
            let covered = (self.user.turn.lock().0.iter()).any(|f| f.start_ms >= offset_ms);
            if covered {
                break;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        let taken: Vec<Fragment> = {
            let mut turn = self.user.turn.lock();
            let (taken, rest) = turn.0.drain(..).partition(|f| f.start_ms <= offset_ms);
            turn.0 = rest;
            taken
        };
        let text = Turn(taken).text();
        publish_user(&self.deps, &self.sid, &self.call_id, text.clone()).await;
        text
    }

    /// Sends the answer once, ever, and publishes `delegation.completed`.
    async fn answer(&self, record: &Record, answer: String, agent: String) {
        let sessions = &self.deps.sessions;
        let key = format!("live:answered:{}", record.id);
        let claim = crate::sessions::claim::Claim {
            store: sessions.store.as_ref(),
            session: &self.sid,
            key: &key,
            ttl: sessions.settings.session_ttl,
        };
        match claim.first().await {
            Ok(true) => {}
            Ok(false) => return, // another instance answered it
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a delegation's answer; not answering twice");
                return;
            }
        }
        let content = fit_append(&answer);
        let _ = (self.outbox).send(append(
            "session.commentary.append",
            Some(&record.id),
            &content,
        ));
        let late = self.user.latest_start.load(Ordering::SeqCst) > record.offset_ms;
        let done = DelegationCompleted {
            call_id: self.call_id.clone(),
            delegation_id: record.id.clone(),
            agent,
            duration_ms: crate::clock::unix_now_ms().saturating_sub(record.started_ms),
            output: content,
            late,
        };
        publish(sessions, &self.sid, &done).await;
        let ids: Vec<String> = (pending(sessions, &self.sid).await.into_iter())
            .filter(|i| *i != record.id)
            .collect();
        set_pending(sessions, &self.sid, &ids).await;
        let _ = sessions
            .store
            .delete_value(&self.sid, &record_key(&record.id))
            .await;
    }
}
