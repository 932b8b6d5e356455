//! A Realtime call's sideband logic: function calls (answered once, ever), transfers,
//! transcripts (mirrored, orchestrated, moderated) and control commands as Realtime client
//! events. Everything shared by both voice APIs is in [`CallCore`].

use std::collections::{HashSet, VecDeque};

use serde_json::{Value, json};

use super::call::{CallCore, VoiceCall};
use super::client_events::{output_item, response_create, session_update, system_item};
use super::command::{Command, CommandError};
use crate::config::Steer;
use crate::record::price::Usage;
use crate::scenario::view::agent_view;
use crate::sessions::record::Note;
use crate::sessions::tool_call::{AgentRule, ToolRan};
use crate::sessions::{Idempotency, SwitchSource, ToolRun};
use crate::tools::run::{Args, model_output};
use proto_events::events::{TranscriptAssistant, TranscriptUser};

/// A Realtime call's own state.
#[derive(Default)]
pub struct RealtimeCall {
    answered: HashSet<String>,
    audio_produced: bool,
    responding: bool,
    extra_instructions: Option<String>,
    tail: VecDeque<String>,
    heard: super::heard::Heard,
}

#[async_trait::async_trait]
impl VoiceCall for RealtimeCall {
    /// Handles one server event.
    async fn on_event(&mut self, core: &mut CallCore, ev: &Value) -> Vec<Value> {
        for (item, patch) in self.heard.on_event(ev) {
            (core.deps.sessions)
                .amend_turn(&core.sid, &core.call_id, &item, patch)
                .await;
        }
        match ev["type"].as_str().unwrap_or_default() {
            "response.created" => {
                self.responding = true;
                vec![]
            }
            "response.done" => {
                self.responding = false;
                self.note_usage(core, &ev["response"]).await;
                vec![]
            }
            "response.output_audio.delta" | "output_audio_buffer.started" => {
                self.audio_produced = true;
                vec![]
            }
            "response.function_call_arguments.done" => {
                self.on_function_call(
                    core,
                    ev["call_id"].as_str(),
                    ev["name"].as_str(),
                    ev["arguments"].as_str(),
                )
                .await
            }
            "response.output_item.done" if ev["item"]["type"] == "function_call" => {
                let item = &ev["item"];
                self.on_function_call(
                    core,
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
                self.on_user_transcript(core, item_id, text).await
            }
            "response.output_audio_transcript.done" => {
                self.audio_produced = true;
                let text = ev["transcript"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.on_assistant_transcript(
                    core,
                    ev["item_id"].as_str().unwrap_or_default(),
                    ev["response_id"].as_str().unwrap_or_default(),
                    text,
                )
                .await
            }
            "error" => {
                tracing::warn!(call_id = %core.call_id, session_id = %core.sid, error = %ev["error"], "realtime error event");
                let note = Note::new("error", json!({"error": ev["error"]})).call(&core.call_id);
                core.deps.sessions.note(&core.sid, note).await;
                if let Some(e) = super::client_events::browser_error(&core.call_id, ev) {
                    core.publish(&e).await;
                }
                vec![]
            }
            _ => vec![],
        }
    }

    fn seed(&self, turns: &[(String, String)]) -> Vec<Value> {
        let mut out: Vec<Value> = turns
            .iter()
            .map(|(role, text)| {
                let part = if role == "user" {
                    "input_text"
                } else {
                    "output_text"
                };
                json!({"type": "conversation.item.create", "item": {"type": "message",
                    "role": role, "content": [{"type": part, "text": text}]}})
            })
            .collect();
        out.push(system_item(super::call::SEED_NOTE));
        out
    }

    /// Applies a control command.
    async fn on_command(
        &mut self,
        core: &mut CallCore,
        cmd: Command,
    ) -> Result<Vec<Value>, CommandError> {
        match cmd {
            Command::SwitchAgent { agent, source } => {
                let source = core.switch_source(&agent, &source).await?;
                Ok(self
                    .switch(core, &agent, source, "control command".into(), 1.0)
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
                let Some((_, active)) = core.active().await else {
                    return Err(CommandError::SessionExpired);
                };
                Ok(self.agent_update(core, &active).await.into_iter().collect())
            }
            Command::Hangup => {
                core.end_with("hangup", true).await;
                Ok(vec![])
            }
        }
    }
}

impl RealtimeCall {
    /// Answers a function call once per `call_id`, ever (across instances too).
    async fn on_function_call(
        &mut self,
        core: &mut CallCore,
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
            let reachable = core.active().await.is_some_and(|(scn, a)| {
                scn.agent(a.as_str())
                    .is_some_and(|a| a.handoffs.iter().any(|h| h.as_str() == target))
            });
            if reachable {
                // Answered once across instances too (a takeover re-sees the call).
                let claim = crate::sessions::claim::Claim {
                    store: core.deps.sessions.store.as_ref(),
                    session: &core.sid,
                    key: &format!("fc:{call_id}"),
                    ttl: core.deps.sessions.settings.session_ttl,
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
                        core,
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
            session: &core.sid,
            tool: name,
            args: Args::Text(args.unwrap_or("{}")),
            correlation_id: Some(call_id),
            idempotency: Idempotency::AnswerOnce,
            rule: AgentRule::Any,
            report_refusals: true,
            by: "sideband",
            call_id: Some(&core.call_id),
        };
        match core.deps.sessions.run_tool(run).await {
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

    async fn on_user_transcript(
        &mut self,
        core: &mut CallCore,
        item_id: String,
        text: String,
    ) -> Vec<Value> {
        if text.is_empty() {
            return vec![];
        }
        core.publish(&TranscriptUser {
            call_id: core.call_id.clone(),
            item_id: Some(item_id.clone()),
            text: text.clone(),
        })
        .await;
        core.remember(json!({"role": "user", "content": text}))
            .await;
        let data = self.heard.user_turn(&item_id, &text);
        let note = Note::new("turn.user", data)
            .call(&core.call_id)
            .key(&item_id);
        core.deps.sessions.note(&core.sid, note).await;
        self.push_tail(format!("user: {text}"));
        let Some((scn, active)) = core.active().await else {
            return vec![];
        };
        if scn.orchestration.classifier.is_none() {
            return vec![];
        }
        let Some(agent) = scn.agent(active.as_str()) else {
            return vec![];
        };
        let tail: Vec<String> = self.tail.iter().cloned().collect();
        let upstream = core.deps.sessions.upstream.as_ref();
        let d = crate::orchestrator::decide(&scn, agent, &text, &tail, upstream).await;
        let o = crate::sessions::orchestrate::Orchestrated {
            decision: d.clone(),
            from: active.clone(),
            changed: d.chosen != active && scn.agent(&d.chosen).is_some(),
            event_seq: None,
        };
        (core.deps.sessions)
            .note_orchestration(&core.sid, Some(&core.call_id), &o)
            .await;
        if !o.changed {
            return vec![];
        }
        self.switch(
            core,
            &d.chosen,
            SwitchSource::Orchestrator,
            d.reason.clone(),
            d.confidence,
        )
        .await
    }

    async fn on_assistant_transcript(
        &mut self,
        core: &mut CallCore,
        item_id: &str,
        response_id: &str,
        text: String,
    ) -> Vec<Value> {
        if text.is_empty() {
            return vec![];
        }
        let Some((scn, active)) = core.active().await else {
            return vec![];
        };
        core.publish(&TranscriptAssistant {
            call_id: core.call_id.clone(),
            item_id: Some(item_id.to_owned()),
            response_id: Some(response_id.to_owned()),
            agent: active.clone(),
            text: text.clone(),
        })
        .await;
        core.remember(json!({"role": "assistant", "content": text}))
            .await;
        let data = self.heard.assistant_turn(item_id, response_id, &text);
        let note = Note::new("turn.assistant", data)
            .call(&core.call_id)
            .agent(&active)
            .key(item_id);
        core.deps.sessions.note(&core.sid, note).await;
        self.push_tail(format!("assistant: {text}"));
        let judged = (core.deps.sessions)
            .moderate_answer(&core.sid, &text, &scn.company_name)
            .await;
        let d = match judged {
            Ok(m) if m.decision.allowed => return vec![],
            Ok(m) => m.decision,
            Err(e) => {
                tracing::error!(error = %e, call_id = %core.call_id, "publishing moderation.flagged failed");
                return vec![];
            }
        };
        let mut out = Vec::new();
        if core.deps.realtime.steer == Steer::Cancel && self.responding {
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

    /// `session.update` for `agent` (instructions with the context and any added
    /// instructions, its tools and handoff tools; the voice only before any audio).
    async fn agent_update(&self, core: &CallCore, agent: &str) -> Option<Value> {
        let sessions = &core.deps.sessions;
        let s = sessions.store.get(&core.sid).await.ok()??;
        let scn = sessions.scenarios.resolve(s.scenario_id.as_str())?;
        let a = scn.agent(agent)?;
        let view = agent_view(&scn, a, s.context.as_deref());
        Some(session_update(
            view,
            self.extra_instructions.as_deref(),
            !self.audio_produced,
        ))
    }

    /// Switches (see [`Call::switch_only`]) and returns the call's `session.update` for the
    /// agent in charge afterwards.
    async fn switch(
        &mut self,
        core: &mut CallCore,
        to: &str,
        source: SwitchSource,
        reason: String,
        confidence: f64,
    ) -> Vec<Value> {
        let Some(now) = core.switch_only(to, source, reason, confidence).await else {
            return vec![];
        };
        self.agent_update(core, &now).await.into_iter().collect()
    }

    /// Records a response's token usage, priced for the call's model.
    async fn note_usage(&self, core: &CallCore, response: &Value) {
        let usage = &response["usage"];
        if !usage.is_object() {
            return;
        }
        let model = response["model"]
            .as_str()
            .unwrap_or(&core.deps.realtime_model)
            .to_owned();
        let data = json!({"response_id": response["id"], "status": response["status"]});
        let mut note = Note::new("usage", data).call(&core.call_id);
        note.usage = Some((model, Usage::from_api(usage)));
        core.deps.sessions.note(&core.sid, note).await;
    }

    fn push_tail(&mut self, line: String) {
        self.tail.push_back(line);
        while self.tail.len() > 8 {
            self.tail.pop_front();
        }
    }
}
