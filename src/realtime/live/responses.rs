//! Responses delegation: OpenAI runs the backend model; each nested function call runs
//! through the one tool path and is answered with `response.item.create`, then one
//! `response.create` after `response.completed` (held while a `session.update` for a new
//! agent is unconfirmed).

use serde_json::{Value, json};

use super::{LiveCall, active};
use crate::sessions::tool_call::{AgentRule, ToolRan};
use crate::sessions::{Idempotency, ToolRun};
use crate::tools::run::{Args, model_output};

impl LiveCall {
    /// Responses delegation: one nested backend event.
    pub(super) async fn on_backend_event(&mut self, ev: &Value) -> Vec<Value> {
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
    pub(super) fn ready_responses(&mut self) -> Vec<Value> {
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
            by: "delegation",
            call_id: Some(&self.call_id),
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
}

/// `session.update` with an agent's backend settings (Responses delegation).
pub(super) fn responses_update(
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
