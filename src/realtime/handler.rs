//! What the sideband does with one call's server events and control commands. Every method
//! returns the client events to send, in order; the connection loop sends them.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client_events::{output_item, response_create, session_update, system_item};
use crate::broker::publish_event;
use crate::config::Steer;
use crate::domain::SessionId;
use crate::scenario::view::agent_view;
use crate::state::AppState;
use proto_events::events::{
    AgentSwitch, CallEnded, ModerationFlagged, TranscriptAssistant, TranscriptUser,
};

/// A command for the call's owner (the body of `POST /api/sessions/{id}/control`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Make `agent` the active agent (`session.update` with its config).
    SwitchAgent {
        /// Target agent.
        agent: String,
        /// Who asked (`server` or `client`); always set by Switchboard.
        #[serde(default)]
        #[schema(ignore)]
        source: String,
    },
    /// Have the assistant say `text` now.
    Say {
        /// What to say.
        text: String,
    },
    /// Add instructions to the active agent's for the rest of the call.
    UpdateInstructions {
        /// The added instructions.
        instructions: String,
    },
    /// End the call.
    Hangup,
}

/// One held call's state.
pub struct Call {
    pub(crate) state: AppState,
    pub(crate) sid: SessionId,
    pub(crate) call_id: String,
    answered: HashSet<String>,
    audio_produced: bool,
    responding: bool,
    extra_instructions: Option<String>,
    tail: VecDeque<String>,
    /// Set when the call is over (hangup or upstream gone).
    pub(crate) ended: bool,
}

impl Call {
    /// A call of session `sid`.
    pub fn new(state: AppState, sid: SessionId, call_id: String) -> Self {
        Self {
            state,
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

    /// Handles one server event.
    pub async fn on_event(&mut self, ev: &Value) -> Vec<Value> {
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
                    self.publish("x.call.error", &e).await;
                }
                vec![]
            }
            _ => vec![],
        }
    }

    async fn publish<T: Serialize>(&self, kind: &str, data: &T) {
        if let Err(e) = publish_event(self.state.broker.as_ref(), &self.sid, kind, data, None).await
        {
            tracing::error!(error = %e, call_id = %self.call_id, kind, "publishing a call event failed");
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
        let key = format!("fc:{call_id}");
        match self
            .state
            .store
            .put_once(&self.sid, &key, "1", self.state.config.session_ttl)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => return vec![], // answered before a takeover
            Err(e) => {
                tracing::error!(error = %e, call_id, "cannot record a function call; not answering it");
                self.answered.remove(call_id);
                return vec![];
            }
        }
        if let Some(target) = name.strip_prefix("transfer_to_") {
            let reachable = self.active().await.is_some_and(|(scn, a)| {
                scn.agent(a.as_str())
                    .is_some_and(|a| a.handoffs.iter().any(|h| h.as_str() == target))
            });
            if reachable {
                let mut out = self
                    .switch(target, "model", format!("the model called {name}"), 1.0)
                    .await;
                out.push(output_item(call_id, &json!({"assistant": target})));
                out.push(response_create());
                return out;
            }
        }
        let report = crate::agent::run_tool(
            self.state.upstream.as_ref(),
            &self.state.tools,
            call_id,
            name,
            args.unwrap_or("{}"),
        )
        .await;
        let output = if report.success {
            report.output.clone()
        } else {
            json!({"error": report.error})
        };
        self.publish("tool.result", &report).await;
        vec![output_item(call_id, &output), response_create()]
    }

    async fn on_user_transcript(&mut self, item_id: String, text: String) -> Vec<Value> {
        if text.is_empty() {
            return vec![];
        }
        self.publish(
            "transcript.user",
            &TranscriptUser {
                call_id: self.call_id.clone(),
                item_id,
                text: text.clone(),
            },
        )
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
        let d =
            crate::orchestrator::decide(&scn, agent, &text, &tail, self.state.upstream.as_ref())
                .await;
        if d.chosen == active || scn.agent(&d.chosen).is_none() {
            return vec![];
        }
        self.switch(&d.chosen, "orchestrator", d.reason.clone(), d.confidence)
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
        self.publish(
            "transcript.assistant",
            &TranscriptAssistant {
                call_id: self.call_id.clone(),
                item_id: item_id.to_owned(),
                response_id: response_id.to_owned(),
                agent: active.clone(),
                text: text.clone(),
            },
        )
        .await;
        self.remember(json!({"role": "assistant", "content": text}))
            .await;
        self.push_tail(format!("assistant: {text}"));
        let d = self
            .state
            .moderator
            .moderate(&text, &scn.company_name, self.state.upstream.as_ref())
            .await;
        if d.allowed {
            return vec![];
        }
        self.publish(
            "moderation.flagged",
            &ModerationFlagged {
                categories: d.categories.clone(),
                sanitized_text: d.sanitized_text.clone(),
                source: Some("assistant".into()),
            },
        )
        .await;
        let mut out = Vec::new();
        if self.state.config.realtime.steer == Steer::Cancel && self.responding {
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

    /// Applies a control command.
    pub async fn on_command(&mut self, cmd: Command) -> Result<Vec<Value>, String> {
        match cmd {
            Command::SwitchAgent { agent, source } => {
                let Some((scn, _)) = self.active().await else {
                    return Err("the session has expired".into());
                };
                if scn.agent(&agent).is_none() {
                    return Err(format!("agent {agent:?} is not in scenario {}", scn.id));
                }
                let source = if source.is_empty() {
                    "server".to_owned()
                } else {
                    source
                };
                Ok(self
                    .switch(&agent, &source, "control command".into(), 1.0)
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
                    return Err("the session has expired".into());
                };
                Ok(self.agent_update(&active).await.into_iter().collect())
            }
            Command::Hangup => {
                self.end("hangup").await;
                if let Some(up) = &self.state.upstream {
                    let path = format!("realtime/calls/{}/hangup", self.call_id);
                    if let Err(e) = up.post_json(&path, &json!({})).await {
                        tracing::warn!(error = %e, call_id = %self.call_id, "upstream hangup failed");
                    }
                }
                Ok(vec![])
            }
        }
    }

    /// Marks the call over: publishes `call.ended` and forgets the call.
    pub async fn end(&mut self, reason: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.publish(
            "call.ended",
            &CallEnded {
                call_id: self.call_id.clone(),
                reason: reason.to_owned(),
            },
        )
        .await;
        if let Err(e) = self.state.calls.leases.unregister(&self.sid).await {
            tracing::warn!(error = %e, "forgetting an ended call failed; the janitor will retry");
        }
    }

    async fn active(&self) -> Option<(std::sync::Arc<crate::scenario::Scenario>, String)> {
        let s = self.state.store.get(&self.sid).await.ok()??;
        let scn = self.state.scenarios.resolve(s.scenario_id.as_str())?;
        Some((scn, s.active_agent.to_string()))
    }

    /// `session.update` for `agent` (instructions with the context and any added
    /// instructions, its tools and handoff tools; the voice only before any audio).
    async fn agent_update(&self, agent: &str) -> Option<Value> {
        let s = self.state.store.get(&self.sid).await.ok()??;
        let scn = self.state.scenarios.resolve(s.scenario_id.as_str())?;
        let a = scn.agent(agent)?;
        let view = agent_view(&scn, a, s.context.as_deref());
        Some(session_update(
            view,
            self.extra_instructions.as_deref(),
            !self.audio_produced,
        ))
    }

    /// Switches the active agent (compare-and-set), publishes `agent.switch`, and returns
    /// the `session.update`.
    async fn switch(
        &mut self,
        to: &str,
        source: &str,
        reason: String,
        confidence: f64,
    ) -> Vec<Value> {
        let Some((_, from)) = self.active().await else {
            return vec![];
        };
        if from == to {
            return self.agent_update(to).await.into_iter().collect();
        }
        match self
            .state
            .store
            .cas_active_agent(&self.sid, &from, to)
            .await
        {
            Ok(true) => {
                self.publish(
                    "agent.switch",
                    &AgentSwitch {
                        from,
                        to: to.to_owned(),
                        reason,
                        confidence,
                        source: source.to_owned(),
                    },
                )
                .await;
            }
            Ok(false) => {
                tracing::info!(call_id = %self.call_id, "another switch won; applying the current agent")
            }
            Err(e) => tracing::error!(error = %e, "switching the active agent failed"),
        }
        let now = self
            .active()
            .await
            .map(|(_, a)| a)
            .unwrap_or_else(|| to.to_owned());
        self.agent_update(&now).await.into_iter().collect()
    }

    async fn remember(&self, item: Value) {
        if let Err(e) = self
            .state
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
