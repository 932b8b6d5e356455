//! Running a delegated task with the session's active agent: the use-case behind a GPT-Live
//! call's client delegation. The agent runs on the server with the one Responses tool loop
//! ([`crate::tools::turn`]): its instructions, tools and `transfer_to_*`, and the
//! conversation so far from agent memory. Each tool's result is published as `tool.result`;
//! a transfer switches the active agent through the one compare-and-set path
//! ([`Sessions::switch_agent`], `agent.switch`) and the new agent takes the task on (up to
//! [`MAX_HANDOFFS`] times).

use serde_json::{Value, json};

use super::{SessionError, Sessions, Switch, SwitchSource, Switched};
use crate::domain::SessionId;
use crate::tools::turn::{CallObserver, Replay, TurnSpec, run_turn};
use crate::upstream::UpstreamError;

/// Most hand-offs while answering one delegation.
pub const MAX_HANDOFFS: usize = 3;

/// The backend model that answers delegations.
pub const DELEGATION_MODEL: &str = "gpt-4.1-mini";

/// One task to run.
pub struct Delegate<'a> {
    /// The session.
    pub session: &'a SessionId,
    /// What the caller asked (their current turn).
    pub task: &'a str,
    /// Told of each tool call with its output (progress, and the record of finished tools).
    pub observer: Option<CallObserver<'a>>,
    /// Results of tools an earlier run of this task finished, reused instead of running them.
    pub replay: Option<Replay<'a>>,
    /// The call it serves, for the record.
    pub call_id: Option<&'a str>,
}

/// What a delegation produced.
#[derive(Debug, Clone, Default)]
pub struct Delegated {
    /// The answer for the voice layer.
    pub answer: String,
    /// The agent that answered (after any hand-off).
    pub agent: String,
    /// Each hand-off, `(from, to)`, in order.
    pub handoffs: Vec<(String, String)>,
    /// Backend tokens, summed.
    pub input_tokens: u64,
    /// Backend tokens, summed.
    pub output_tokens: u64,
}

/// Why a delegation could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DelegateError {
    /// No upstream is configured.
    #[error("no upstream is configured")]
    Offline,
    /// The session is gone, or its scenario or agent.
    #[error("the session or its agent is gone")]
    Gone,
    /// The backend model failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The session store or broker failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Agent memory failed.
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
}

impl From<crate::broker::BrokerError> for DelegateError {
    fn from(e: crate::broker::BrokerError) -> Self {
        Self::Session(e.into())
    }
}

impl From<crate::store::StoreError> for DelegateError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Session(e.into())
    }
}

impl Sessions {
    /// Runs `d.task` with the active agent and returns its answer.
    pub async fn delegate(&self, d: Delegate<'_>) -> Result<Delegated, DelegateError> {
        let upstream = self.upstream.as_ref().ok_or(DelegateError::Offline)?;
        let state = self
            .store
            .get(d.session)
            .await?
            .ok_or(DelegateError::Gone)?;
        let scenario = (self.scenarios)
            .resolve(state.scenario_id.as_str())
            .ok_or(DelegateError::Gone)?;
        let mut input = self.memory.get_items(d.session.as_str(), None).await?;
        let last_is_task = input.last().is_some_and(|i| i["content"] == d.task);
        if !last_is_task {
            input.push(json!({"role": "user", "content": d.task}));
        }
        let mut current = state.active_agent.to_string();
        let mut out = Delegated::default();
        loop {
            let agent = scenario.agent(&current).ok_or(DelegateError::Gone)?;
            let cfg = super::agent::scenario_agent(&scenario, agent);
            let spec = TurnSpec {
                model: DELEGATION_MODEL,
                instructions: &cfg.instructions,
                tools: &cfg.tools,
                extra_tools: &cfg.handoffs,
                input: input.clone(),
                max_iterations: self.settings.agents.max_iterations,
                parallel_tool_calls: None,
                session_id: Some(d.session),
                observer: d.observer,
                replay: d.replay,
            };
            let turn = run_turn(upstream, &self.tools, spec).await?;
            out.input_tokens += turn.usage["input_tokens"].as_u64().unwrap_or(0);
            out.output_tokens += turn.usage["output_tokens"].as_u64().unwrap_or(0);
            for report in &turn.tool_reports {
                self.publish(d.session, report).await?;
                let args = crate::tools::turn::call_arguments(
                    &turn.new_items,
                    report.correlation_id.as_deref(),
                );
                let by = super::ToolBy {
                    by: "delegation",
                    call_id: d.call_id,
                };
                self.note_tool(d.session, report, args, by).await;
            }
            let usage = crate::record::price::Usage::from_api(&turn.usage);
            let mut note =
                super::record::Note::new("usage", json!({"source": "delegation"})).agent(&current);
            note.call_id = d.call_id;
            note.usage = Some((DELEGATION_MODEL.to_owned(), usage));
            self.note(d.session, note).await;
            input.extend(turn.new_items.iter().cloned());
            out.answer = turn.output_text;
            let Some(target) = turn.handoff else { break };
            if out.handoffs.len() >= MAX_HANDOFFS || scenario.agent(&target).is_none() {
                break;
            }
            let switch = Switch {
                from: current.clone(),
                to: target.clone(),
                source: SwitchSource::Model,
                reason: format!("transfer_to_{target}"),
                confidence: 1.0,
                tell_call: false,
            };
            match self.switch_agent(d.session, switch).await? {
                Switched::Changed { .. } | Switched::Unchanged => {
                    out.handoffs.push((current.clone(), target.clone()));
                    current = target;
                }
                // Another switch won: the agent in charge now takes the task on.
                Switched::Lost { now } => current = now.unwrap_or(current),
            }
        }
        out.agent = current;
        Ok(out)
    }
}

/// A Live append's content: at most about 500 tokens (2,000 characters), cut at a sentence
/// or word boundary.
pub fn fit_append(text: &str) -> String {
    const MAX: usize = 2000;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let cut = head
        .rfind(['.', '!', '?'])
        .map(|i| i + 1)
        .filter(|&i| i > MAX / 2)
        .or_else(|| head.rfind(' '))
        .unwrap_or(end);
    head[..cut].trim_end().to_owned()
}

/// The usage a session has accrued on its calls (cumulative voice seconds, backend tokens).
pub const USAGE_KEY: &str = "usage";

impl Sessions {
    /// Adds to the session's usage: `seconds` replaces (Live reports cumulative totals),
    /// tokens add up.
    pub async fn add_usage(
        &self,
        session: &SessionId,
        seconds: Option<f64>,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Value, crate::store::StoreError> {
        let now = self.store.get_value(session, USAGE_KEY).await?;
        let mut usage: Value = now
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_else(|| json!({"seconds": 0.0, "input_tokens": 0, "output_tokens": 0}));
        if let Some(s) = seconds {
            usage["seconds"] = json!(s);
        }
        for (key, add) in [
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
        ] {
            usage[key] = json!(usage[key].as_u64().unwrap_or(0) + add);
        }
        let ttl = self.settings.session_ttl;
        (self.store)
            .put_value(session, USAGE_KEY, &usage.to_string(), ttl)
            .await?;
        Ok(usage)
    }

    /// The session's usage so far, if it has any.
    pub async fn usage(
        &self,
        session: &SessionId,
    ) -> Result<Option<Value>, crate::store::StoreError> {
        let raw = self.store.get_value(session, USAGE_KEY).await?;
        Ok(raw.and_then(|v| serde_json::from_str(&v).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::fit_append;

    #[test]
    fn long_answers_are_cut_at_a_sentence() {
        assert_eq!(fit_append("  short  "), "short");
        let long = "This is one sentence. ".repeat(200);
        let cut = fit_append(&long);
        assert!(cut.len() <= 2000 && cut.ends_with('.'), "{}", cut.len());
        let words = "word ".repeat(1000);
        assert!(fit_append(&words).len() <= 2000);
    }
}
