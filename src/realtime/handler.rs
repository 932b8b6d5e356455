//! What the sideband does with one call's server events and control commands. Every method
//! returns the client events to send, in order; the connection loop sends them.

use std::collections::{HashSet, VecDeque};

use serde_json::{Value, json};

use std::sync::Arc;

use super::CallDeps;
use super::client_events::{output_item, response_create, session_update, system_item};
use crate::config::{Steer, VoiceApi};
use crate::domain::SessionId;
use crate::scenario::view::agent_view;
use crate::sessions::tool_call::{AgentRule, ToolRan};
use crate::sessions::{Idempotency, Switch, SwitchSource, Switched, ToolRun};
use crate::tools::run::{Args, model_output};
use proto_events::events::{EventData, TranscriptAssistant, TranscriptUser};

pub use super::command::{Command, CommandError};

/// One held call's state.
pub struct Call {
    pub(crate) deps: Arc<CallDeps>,
    pub(crate) sid: SessionId,
    pub(crate) call_id: String,
    answered: HashSet<String>,
    audio_produced: bool,
    responding: bool,
    extra_instructions: Option<String>,
    tail: VecDeque<String>,
    /// Set when the call is over (hangup or upstream gone).
    pub(crate) ended: bool,
    /// The GPT-Live side of a Live call.
    live: Option<super::live::LiveCall>,
    /// Client events produced in the background (Live delegations), for the sideband loop.
    outbox: Option<tokio::sync::mpsc::UnboundedReceiver<Value>>,
    /// When a Live hang-up sent `session.close`.
    closing_since: Option<std::time::Instant>,
}

/// How long a Live hang-up waits for `session.closed` before the call counts as ended.
pub const CLOSE_CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Call {
    /// A call of session `sid`.
    pub fn new(deps: Arc<CallDeps>, sid: SessionId, call_id: String) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let live = (VoiceApi::of_call_id(&call_id) == VoiceApi::Live)
            .then(|| super::live::LiveCall::new(deps.clone(), sid.clone(), call_id.clone(), tx));
        Self {
            live,
            outbox: Some(rx),
            closing_since: None,
            deps,
            sid,
            call_id,
            answered: HashSet::new(),
            audio_produced: false,
            responding: false,
            extra_instructions: None,
            tail: VecDeque::new(),
            ended: false,
        }
    }

    /// True for a GPT-Live call (its id is a Live session id).
    fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The client events background work produces (taken once by the sideband loop).
    pub(crate) fn take_outbox(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Value>> {
        self.outbox.take()
    }

    /// Picks up what a previous owner left unfinished (a Live call's delegations).
    pub async fn resume(&mut self) {
        if let Some(live) = &mut self.live {
            live.resume().await;
        }
    }

    /// Periodic work: a Live call publishes turns that went quiet, and a hang-up that the
    /// upstream did not confirm in time ends the call anyway.
    pub async fn on_tick(&mut self) -> Vec<Value> {
        if self
            .closing_since
            .is_some_and(|t| t.elapsed() >= CLOSE_CONFIRM_WAIT)
        {
            if let Some(live) = &mut self.live {
                live.flush().await;
            }
            self.end_reported("hangup", None).await;
            return vec![];
        }
        match &mut self.live {
            Some(live) => live.on_tick().await,
            None => vec![],
        }
    }

    /// Handles one server event.
    pub async fn on_event(&mut self, ev: &Value) -> Vec<Value> {
        if self.is_live() {
            return self.on_live_event(ev).await;
        }
        match ev["type"].as_str().unwrap_or_default() {
            "response.created" => {
                self.responding = true;
                vec![]
            }
            "response.done" => {
                self.responding = false;
                vec![]
            }
            "response.output_audio.delta" | "output_audio_buffer.started" => {
                self.audio_produced = true;
                vec![]
            }
            "response.function_call_arguments.done" => {
                self.on_function_call(
                    ev["call_id"].as_str(),
                    ev["name"].as_str(),
                    ev["arguments"].as_str(),
                )
                .await
            }
            "response.output_item.done" if ev["item"]["type"] == "function_call" => {
                let item = &ev["item"];
                self.on_function_call(
                    item["call_id"].as_str(),
                    item["name"].as_str(),
                    item["arguments"].as_str(),
                )
                .await
            }
            "conversation.item.input_audio_transcription.completed" => {
                let text = ev["transcript"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let item_id = ev["item_id"].as_str().unwrap_or_default().to_owned();
                self.on_user_transcript(item_id, text).await
            }
            "response.output_audio_transcript.done" => {
                self.audio_produced = true;
                let text = ev["transcript"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.on_assistant_transcript(
                    ev["item_id"].as_str().unwrap_or_default(),
                    ev["response_id"].as_str().unwrap_or_default(),
                    text,
                )
                .await
            }
            "error" => {
                tracing::warn!(call_id = %self.call_id, session_id = %self.sid, error = %ev["error"], "realtime error event");
                if let Some(e) = super::client_events::browser_error(&self.call_id, ev) {
                    self.publish(&e).await;
                }
                vec![]
            }
            _ => vec![],
        }
    }

    async fn publish<T: EventData>(&self, data: &T) {
        if let Err(e) = self.deps.sessions.publish(&self.sid, data).await {
            tracing::error!(error = %e, call_id = %self.call_id, kind = T::KIND, "publishing a call event failed");
        }
    }

    /// Answers a function call once per `call_id`, ever (across instances too).
    async fn on_function_call(
        &mut self,
        call_id: Option<&str>,
        name: Option<&str>,
        args: Option<&str>,
    ) -> Vec<Value> {
        let (Some(call_id), Some(name)) = (call_id, name) else {
            return vec![];
        };
        if !self.answered.insert(call_id.to_owned()) {
            return vec![];
        }
        if let Some(target) = name.strip_prefix("transfer_to_") {
            let reachable = self.active().await.is_some_and(|(scn, a)| {
                scn.agent(a.as_str())
                    .is_some_and(|a| a.handoffs.iter().any(|h| h.as_str() == target))
            });
            if reachable {
                // Answered once across instances too (a takeover re-sees the call).
                let claim = crate::sessions::claim::Claim {
                    store: self.deps.sessions.store.as_ref(),
                    session: &self.sid,
                    key: &format!("fc:{call_id}"),
                    ttl: self.deps.sessions.settings.session_ttl,
                };
                match claim.first().await {
                    Ok(true) => {}
                    Ok(false) => return vec![],
                    Err(e) => {
                        tracing::error!(error = %e, call_id, "cannot record a function call; not answering it");
                        self.answered.remove(call_id);
                        return vec![];
                    }
                }
                let mut out = self
                    .switch(
                        target,
                        SwitchSource::Model,
                        format!("the model called {name}"),
                        1.0,
                    )
                    .await;
                out.push(output_item(call_id, &json!({"assistant": target})));
                out.push(response_create());
                return out;
            }
        }
        let run = ToolRun {
            session: &self.sid,
            tool: name,
            args: Args::Text(args.unwrap_or("{}")),
            correlation_id: Some(call_id),
            idempotency: Idempotency::AnswerOnce,
            rule: AgentRule::Any,
            report_refusals: true,
        };
        match self.deps.sessions.run_tool(run).await {
            Ok(ToolRan::Fresh(report)) | Ok(ToolRan::Repeat(report)) => {
                vec![
                    output_item(call_id, &model_output(&report)),
                    response_create(),
                ]
            }
            Ok(ToolRan::AlreadyAnswered) => vec![], // answered before a takeover
            Err(e) => {
                tracing::error!(error = %e, call_id, "cannot run a function call; not answering it");
                self.answered.remove(call_id);
                vec![]
            }
        }
    }

    async fn on_user_transcript(&mut self, item_id: String, text: String) -> Vec<Value> {
        if text.is_empty() {
            return vec![];
        }
        self.publish(&TranscriptUser {
            call_id: self.call_id.clone(),
            item_id: Some(item_id),
            text: text.clone(),
        })
        .await;
        self.remember(json!({"role": "user", "content": text}))
            .await;
        self.push_tail(format!("user: {text}"));
        let Some((scn, active)) = self.active().await else {
            return vec![];
        };
        if scn.orchestration.classifier.is_none() {
            return vec![];
        }
        let Some(agent) = scn.agent(active.as_str()) else {
            return vec![];
        };
        let tail: Vec<String> = self.tail.iter().cloned().collect();
        let upstream = self.deps.sessions.upstream.as_ref();
        let d = crate::orchestrator::decide(&scn, agent, &text, &tail, upstream).await;
        if d.chosen == active || scn.agent(&d.chosen).is_none() {
            return vec![];
        }
        self.switch(
            &d.chosen,
            SwitchSource::Orchestrator,
            d.reason.clone(),
            d.confidence,
        )
        .await
    }

    async fn on_assistant_transcript(
        &mut self,
        item_id: &str,
        response_id: &str,
        text: String,
    ) -> Vec<Value> {
        if text.is_empty() {
            return vec![];
        }
        let Some((scn, active)) = self.active().await else {
            return vec![];
        };
        self.publish(&TranscriptAssistant {
            call_id: self.call_id.clone(),
            item_id: Some(item_id.to_owned()),
            response_id: Some(response_id.to_owned()),
            agent: active.clone(),
            text: text.clone(),
        })
        .await;
        self.remember(json!({"role": "assistant", "content": text}))
            .await;
        self.push_tail(format!("assistant: {text}"));
        let judged = (self.deps.sessions)
            .moderate_answer(&self.sid, &text, &scn.company_name)
            .await;
        let d = match judged {
            Ok(m) if m.decision.allowed => return vec![],
            Ok(m) => m.decision,
            Err(e) => {
                tracing::error!(error = %e, call_id = %self.call_id, "publishing moderation.flagged failed");
                return vec![];
            }
        };
        let mut out = Vec::new();
        if self.deps.realtime.steer == Steer::Cancel && self.responding {
            out.push(json!({"type": "response.cancel"}));
        }
        let flagged: Vec<&str> = d
            .categories
            .iter()
            .filter(|(_, v)| **v == json!(true))
            .map(|(k, _)| k.as_str())
            .collect();
        out.push(system_item(&format!(
            "Your previous answer broke the conversation policy ({}). Do not repeat it. Briefly \
             apologise and steer the conversation back to how you can help.",
            flagged.join(", ")
        )));
        out.push(response_create());
        out
    }

    /// Handles one GPT-Live server event: the end of the session, errors.
    async fn on_live_event(&mut self, ev: &Value) -> Vec<Value> {
        match ev["type"].as_str().unwrap_or_default() {
            "session.closed" => {
                let upstream = ev["reason"].as_str().unwrap_or_default();
                let reason = match upstream {
                    _ if self.closing_since.is_some() => "hangup",
                    "close_requested" => "hangup",
                    "remote_hangup" | "expired" | "content" | "connection_lost" => upstream,
                    _ => "error",
                };
                if let Some(live) = &mut self.live {
                    live.flush().await;
                }
                self.end_reported(reason, Some(upstream.to_owned())).await;
                vec![]
            }
            "error" => {
                tracing::warn!(call_id = %self.call_id, session_id = %self.sid, error = %ev["error"], "live error event");
                vec![]
            }
            _ => match &mut self.live {
                Some(live) => live.on_event(ev).await,
                None => vec![],
            },
        }
    }

    /// Applies a control command to a GPT-Live call: a switch changes the agent on the
    /// server and tells the voice layer; say is commentary; instructions are appended;
    /// hang-up closes the session.
    async fn on_live_command(&mut self, cmd: Command) -> Result<Vec<Value>, CommandError> {
        let append = |kind: &str, content: &str| super::live::append(kind, None, content);
        match cmd {
            Command::SwitchAgent { agent, source } => {
                let source = self.switch_source(&agent, &source).await?;
                let now = (self
                    .switch_only(&agent, source, "control command".into(), 1.0)
                    .await)
                    .unwrap_or(agent);
                match &mut self.live {
                    Some(live) => Ok(live.agent_changed(&now).await),
                    None => Ok(vec![]),
                }
            }
            Command::Say { text } => Ok(vec![append("session.commentary.append", &text)]),
            Command::UpdateInstructions { instructions } => {
                Ok(vec![append("session.instructions.append", &instructions)])
            }
            Command::Hangup => {
                // `call.ended` follows when `session.closed` confirms it (or the wait ends).
                self.closing_since
                    .get_or_insert_with(std::time::Instant::now);
                Ok(vec![json!({"type": "session.close"})])
            }
        }
    }

    /// Applies a control command.
    pub async fn on_command(&mut self, cmd: Command) -> Result<Vec<Value>, CommandError> {
        if self.is_live() {
            return self.on_live_command(cmd).await;
        }
        match cmd {
            Command::SwitchAgent { agent, source } => {
                let source = self.switch_source(&agent, &source).await?;
                Ok(self
                    .switch(&agent, source, "control command".into(), 1.0)
                    .await)
            }
            Command::Say { text } => Ok(vec![
                system_item(&format!(
                    "Say this to the user now, word for word, then continue: {text}"
                )),
                response_create(),
            ]),
            Command::UpdateInstructions { instructions } => {
                self.extra_instructions = Some(instructions);
                let Some((_, active)) = self.active().await else {
                    return Err(CommandError::SessionExpired);
                };
                Ok(self.agent_update(&active).await.into_iter().collect())
            }
            Command::Hangup => {
                self.end_with("hangup", true).await;
                Ok(vec![])
            }
        }
    }

    /// Marks the call over: publishes `call.ended` and forgets the call.
    pub async fn end(&mut self, reason: &str) {
        self.end_with(reason, false).await;
    }

    async fn end_with(&mut self, reason: &str, hang_up: bool) {
        if hang_up && self.is_live() {
            // Live has no hang-up request: the sideband's `session.close` ends it.
            return self.end_reported(reason, None).await;
        }
        self.end_call(reason, hang_up, None).await;
    }

    /// Ends the call with the upstream's own reason (Live's `session.closed`).
    async fn end_reported(&mut self, reason: &str, upstream_reason: Option<String>) {
        self.end_call(reason, false, upstream_reason).await;
    }

    async fn end_call(&mut self, reason: &str, hang_up: bool, upstream_reason: Option<String>) {
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

    async fn active(&self) -> Option<(std::sync::Arc<crate::scenario::Scenario>, String)> {
        super::live::active(&self.deps.sessions, &self.sid).await
    }

    /// A control switch's target must be in the session's scenario; `source` is who sent it.
    async fn switch_source(&self, agent: &str, source: &str) -> Result<SwitchSource, CommandError> {
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

    /// `session.update` for `agent` (instructions with the context and any added
    /// instructions, its tools and handoff tools; the voice only before any audio).
    async fn agent_update(&self, agent: &str) -> Option<Value> {
        let sessions = &self.deps.sessions;
        let s = sessions.store.get(&self.sid).await.ok()??;
        let scn = sessions.scenarios.resolve(s.scenario_id.as_str())?;
        let a = scn.agent(agent)?;
        let view = agent_view(&scn, a, s.context.as_deref());
        Some(session_update(
            view,
            self.extra_instructions.as_deref(),
            !self.audio_produced,
        ))
    }

    /// Switches the active agent (the session layer's compare-and-set and `agent.switch`)
    /// and returns the agent in charge afterwards.
    async fn switch_only(
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

    /// Switches (see [`Call::switch_only`]) and returns the call's `session.update` for the
    /// agent in charge afterwards.
    async fn switch(
        &mut self,
        to: &str,
        source: SwitchSource,
        reason: String,
        confidence: f64,
    ) -> Vec<Value> {
        let Some(now) = self.switch_only(to, source, reason, confidence).await else {
            return vec![];
        };
        self.agent_update(&now).await.into_iter().collect()
    }

    async fn remember(&self, item: Value) {
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

    fn push_tail(&mut self, line: String) {
        self.tail.push_back(line);
        while self.tail.len() > 8 {
            self.tail.pop_front();
        }
    }
}
