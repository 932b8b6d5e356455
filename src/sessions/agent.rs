//! Multi-turn server-side agent sessions (`/api/sdk/session/*`).
//!
//! A session's spec (current agent, instructions, model, scenario, tools, the realtime
//! session it is linked to) lives in the session store under the agent session's id; its
//! conversation lives in [`crate::memory`], in the Agents SDK `RedisSession` layout, so a
//! Python worker can read and extend it.
//!
//! One message is one turn, run under the session's turn lock (renewed while the turn runs,
//! so only a dead holder's lock expires): read the whole memory, append the user item, run
//! the tool loop with the current agent; when the model hands off (`transfer_to_<agent>`),
//! continue the same turn with that agent, which stays current for later turns. The turn's
//! items (user item, calls, outputs, handoffs, the final message) are appended in one write
//! that checks the lock is still held, so nothing is half-written and two turns never
//! interleave. When the session is linked to a realtime session, the turn's tool results,
//! agent switches and final answer are published on that session's event channel.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Sessions, Switch, SwitchSource, Switched};
use crate::broker::BrokerError;
use crate::clock::now_rfc3339;
use crate::domain::{InvalidId, SessionId};
use crate::memory::{AgentMemory, LockToken, MemoryError};
use crate::scenario::view::agent_view;
use crate::scenario::{Agent, Scenario, UnknownAgent, UnknownScenario};
use crate::store::StoreError;
use crate::tools::turn::{TurnResult, TurnSpec, run_turn};
use crate::upstream::UpstreamError;

/// Why an agent-session use-case failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentSessionError {
    /// No upstream key is configured.
    #[error("no OPENAI_API_KEY is configured, so model-backed endpoints are offline")]
    Offline,
    /// The agent session does not exist or expired.
    #[error(
        "agent session {0} does not exist or has expired; create it with POST /api/sdk/session/create"
    )]
    Unknown(SessionId),
    /// The realtime session it is linked to expired.
    #[error("the linked realtime session {0} has expired")]
    LinkedGone(SessionId),
    /// Its scenario is no longer loaded.
    #[error(transparent)]
    UnknownScenario(#[from] UnknownScenario),
    /// The named agent is not in its scenario.
    #[error(transparent)]
    UnknownAgent(#[from] UnknownAgent),
    /// The agent memory failed or is busy.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The model call failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A stored spec is unreadable.
    #[error("a stored agent session is unreadable")]
    Corrupt(#[source] serde_json::Error),
    /// A stored id is not a valid id.
    #[error("a stored session id is invalid")]
    BadId(#[source] InvalidId),
}

impl From<super::SessionError> for AgentSessionError {
    fn from(e: super::SessionError) -> Self {
        match e {
            super::SessionError::Store(e) => e.into(),
            super::SessionError::Broker(e) => e.into(),
            super::SessionError::Gone(id) => Self::LinkedGone(id),
            other => Self::Store(StoreError::Corrupt(other.to_string())),
        }
    }
}

/// Store key (in the agent session's scope) of its spec.
const SPEC_KEY: &str = "agent:spec";

/// Most handoffs one turn may follow.
pub const MAX_HANDOFFS: usize = 4;

/// What an agent session runs with; stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The agent session's id (the Agents SDK `session_id`).
    pub session_id: String,
    /// The agent in charge (changes with handoffs in a scenario session).
    pub agent_name: String,
    /// Free-form sessions: the instructions. Scenario sessions: extra instructions added
    /// to every agent's own (may be empty).
    pub instructions: String,
    /// Model id.
    pub model: String,
    /// Scenario whose agents, tools and handoffs the session uses, if any.
    pub scenario_id: Option<String>,
    /// Registered tools of a free-form session.
    pub tools: Vec<String>,
    /// Realtime session whose event channel receives this session's events, if linked.
    pub realtime_session_id: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last turn (RFC 3339).
    pub updated_at: String,
}

/// Reads a spec.
pub async fn load_spec(
    state: &Sessions,
    id: &SessionId,
) -> Result<Option<AgentSpec>, AgentSessionError> {
    match state.store.get_value(id, SPEC_KEY).await? {
        None => Ok(None),
        Some(raw) => serde_json::from_str(&raw)
            .map(Some)
            .map_err(AgentSessionError::Corrupt),
    }
}

/// Writes a spec (its expiry slides with the memory's).
pub async fn save_spec(state: &Sessions, spec: &AgentSpec) -> Result<(), AgentSessionError> {
    let id: SessionId = spec.session_id.parse().map_err(AgentSessionError::BadId)?;
    // A spec is strings and lists of strings.
    let raw = serde_json::to_string(spec).expect("specs serialize");
    state
        .store
        .put_value(&id, SPEC_KEY, &raw, state.settings.agents.memory_ttl)
        .await?;
    Ok(())
}

/// One agent's turn settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Agent name.
    pub name: String,
    /// Instructions.
    pub instructions: String,
    /// Registered tools it may call.
    pub tools: Vec<String>,
    /// Its `transfer_to_*` function tools.
    pub handoffs: Vec<Value>,
}

/// A scenario agent's instructions, tools and handoff tools.
pub fn scenario_agent(scenario: &Scenario, agent: &Agent) -> AgentConfig {
    let view = agent_view(scenario, agent, None);
    let handoffs = view
        .tools
        .iter()
        .filter(|t| t.name.starts_with("transfer_to_"))
        .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    AgentConfig {
        name: agent.name.to_string(),
        instructions: view.instructions,
        tools: agent.tools.iter().map(ToString::to_string).collect(),
        handoffs,
    }
}

/// The config of agent `name` in a session; `instructions` replaces the instructions for
/// one turn.
pub fn config_for(
    state: &Sessions,
    spec: &AgentSpec,
    name: &str,
    instructions: Option<&str>,
) -> Result<AgentConfig, AgentSessionError> {
    let mut cfg = match &spec.scenario_id {
        Some(sid) => {
            let scenario = state.scenarios.get(sid)?;
            let agent = scenario.agent_or_default(Some(name))?;
            let mut cfg = scenario_agent(&scenario, agent);
            if !spec.instructions.trim().is_empty() {
                cfg.instructions = format!("{}\n\n{}", cfg.instructions, spec.instructions);
            }
            cfg
        }
        None => AgentConfig {
            name: name.to_owned(),
            instructions: spec.instructions.clone(),
            tools: spec.tools.clone(),
            handoffs: Vec::new(),
        },
    };
    if let Some(i) = instructions {
        cfg.instructions = i.to_owned();
    }
    Ok(cfg)
}

/// One message to run.
#[derive(Debug, Clone)]
pub struct Message {
    /// The user's text.
    pub user_input: String,
    /// Run this turn with this agent (scenario sessions: one of its agents).
    pub agent: Option<String>,
    /// Replace the instructions for this turn.
    pub instructions: Option<String>,
    /// Use this model for this turn.
    pub model: Option<String>,
    /// Most model round trips per agent in this turn.
    pub max_iterations: usize,
    /// The caller's id of this message, echoed in `agent.message`.
    pub client_message_id: Option<String>,
}

/// One handoff during a turn.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Handoff {
    /// Agent that handed off.
    pub from: String,
    /// Agent that took over.
    pub to: String,
}

/// What a turn produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The final answer.
    pub final_output: String,
    /// Items the run added after the user item.
    pub new_items_len: usize,
    /// Tools called, in order (handoff tools included).
    pub tool_calls: Vec<String>,
    /// The agent in charge at the end.
    pub agent: String,
    /// Handoffs followed, in order.
    pub handoffs: Vec<Handoff>,
    /// Usage summed over every round trip.
    pub usage: Value,
    /// Model round trips.
    pub iterations: usize,
    /// True when an iteration or handoff cap ended the turn.
    pub capped: bool,
    /// False when the linked realtime session could not be told (its events were lost).
    pub published: bool,
}

impl Outcome {
    /// Adds one model turn (its calls, round trips, usage, answer); returns its handoff.
    fn add_turn(&mut self, r: TurnResult) -> Option<String> {
        self.tool_calls.extend(r.tool_calls);
        self.iterations += r.iterations;
        for key in ["input_tokens", "output_tokens", "total_tokens"] {
            let sum = self.usage[key].as_u64().unwrap_or(0) + r.usage[key].as_u64().unwrap_or(0);
            self.usage[key] = json!(sum);
        }
        self.final_output = r.output_text;
        self.capped = r.capped;
        r.handoff
    }
}

/// Renews a turn lock in the background until dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    fn start(memory: Arc<dyn AgentMemory>, id: String, token: LockToken, ttl: Duration) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match memory.extend_lock(&id, &token, ttl).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    // A blip: try again next period; the lock still has time left.
                    Err(e) => tracing::warn!(error = %e, "renewing an agent turn lock failed"),
                }
            }
        }))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes the session's turn lock (waiting behind a running turn), runs `f`, releases it.
pub async fn with_turn_lock<T, E, F, Fut>(state: &Sessions, id: &SessionId, f: F) -> Result<T, E>
where
    E: From<MemoryError>,
    F: FnOnce(LockToken) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let settings = &state.settings.agents;
    let token = state
        .memory
        .lock(id.as_str(), settings.lock_ttl, settings.queue_wait)
        .await?;
    let renewal = Renewal::start(
        state.memory.clone(),
        id.to_string(),
        token.clone(),
        settings.lock_ttl,
    );
    let result = f(token.clone()).await;
    drop(renewal);
    if let Err(e) = state.memory.unlock(id.as_str(), &token).await {
        tracing::warn!(error = %e, "releasing an agent turn lock failed; it expires by itself");
    }
    result
}

/// Runs one message as one turn, under the session's lock.
pub async fn run_message(
    state: &Sessions,
    id: &SessionId,
    msg: Message,
) -> Result<Outcome, AgentSessionError> {
    let upstream = state.upstream.as_ref().ok_or(AgentSessionError::Offline)?;
    with_turn_lock(state, id, |lock| async move {
        let mut spec = load_spec(state, id).await?.ok_or_else(|| unknown_agent_session(id))?;
        let model = msg.model.clone().unwrap_or_else(|| spec.model.clone());
        let mut current = msg.agent.clone().unwrap_or_else(|| spec.agent_name.clone());
        let mut input = state.memory.get_items(id.as_str(), None).await?;
        if let Some(heard) = linked_call_context(state, &spec).await {
            input.insert(0, heard);
        }
        let user_item = json!({"role": "user", "content": msg.user_input});
        input.push(user_item.clone());
        let mut written = vec![user_item];
        let mut out = Outcome {
            usage: json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}),
            published: true,
            ..Outcome::default()
        };
        let mut reports = Vec::new();
        loop {
            // The turn's instruction override applies to the agent it was sent for.
            let instructions = if out.handoffs.is_empty() { msg.instructions.as_deref() } else { None };
            let cfg = config_for(state, &spec, &current, instructions)?;
            let mut r = run_turn(
                upstream,
                &state.tools,
                TurnSpec {
                    model: &model,
                    instructions: &cfg.instructions,
                    tools: &cfg.tools,
                    extra_tools: &cfg.handoffs,
                    input: input.clone(),
                    max_iterations: msg.max_iterations,
                    parallel_tool_calls: None,
                    session_id: Some(id),
                    observer: None,
                    replay: None,
                },
            )
            .await?;
            input.extend(r.new_items.iter().cloned());
            written.extend(std::mem::take(&mut r.new_items));
            reports.extend(std::mem::take(&mut r.tool_reports));
            let Some(target) = out.add_turn(r) else { break };
            out.handoffs.push(Handoff { from: current.clone(), to: target.clone() });
            current = target;
            if out.handoffs.len() >= MAX_HANDOFFS {
                out.capped = true;
                out.final_output = format!(
                    "(stopped after {MAX_HANDOFFS} handoffs in one turn; {current} is now in charge)"
                );
                break;
            }
        }
        out.new_items_len = written.len() - 1;
        out.agent = current.clone();
        state.memory.add_items(id.as_str(), &written, Some(&lock)).await?;
        if !out.handoffs.is_empty() {
            spec.agent_name = current;
        }
        spec.updated_at = now_rfc3339();
        save_spec(state, &spec).await?;
        if let Some(rt) = &spec.realtime_session_id {
            out.published = publish_turn(state, id, rt, &out, &reports, msg.client_message_id.clone())
                .await
                .inspect_err(|e| tracing::error!(error = %e, agent_session = %id, "publishing a server agent turn failed"))
                .is_ok();
            if let Ok(rsid) = rt.parse::<SessionId>() {
                note_turn(state, &rsid, id, &msg.user_input, &out, &reports, &written).await;
            }
        }
        Ok(out)
    })
    .await
}

/// What was said on the linked voice session's calls (its record, the assistant as heard),
/// as a system item ahead of the agent session's own conversation.
async fn linked_call_context(state: &Sessions, spec: &AgentSpec) -> Option<Value> {
    let rsid: SessionId = spec.realtime_session_id.as_deref()?.parse().ok()?;
    let turns = state.seed_turns(&rsid, "").await;
    if turns.is_empty() {
        return None;
    }
    let lines: Vec<String> = turns
        .iter()
        .map(|(role, text)| format!("{role}: {text}"))
        .collect();
    Some(json!({"role": "system", "content": format!(
        "The conversation so far on the linked voice call (the assistant's lines are what the \
         caller heard):\n{}",
        lines.join("\n")
    )}))
}

/// Records a server agent's turn in the linked voice session's record: the input, each
/// tool call (`by: server_agent`) and the answer.
async fn note_turn(
    state: &Sessions,
    rsid: &SessionId,
    id: &SessionId,
    user_input: &str,
    out: &Outcome,
    reports: &[proto_events::events::ToolResult],
    written: &[Value],
) {
    use super::record::Note;
    let via = json!({"text": user_input, "via": "server_agent", "agent_session_id": id.as_str()});
    state.note(rsid, Note::new("turn.user", via)).await;
    for report in reports {
        let args = crate::tools::turn::call_arguments(written, report.correlation_id.as_deref());
        let by = super::ToolBy {
            by: "server_agent",
            call_id: None,
        };
        state.note_tool(rsid, report, args, by).await;
    }
    let said = json!({"text": out.final_output, "generated_text": out.final_output, "interrupted": false,
                      "via": "server_agent", "agent_session_id": id.as_str()});
    state
        .note(rsid, Note::new("turn.assistant", said).agent(&out.agent))
        .await;
}

/// Publishes a turn on the linked realtime session: each tool result, each handoff (as
/// `agent.switch`, when the realtime scenario has that agent), then the answer.
async fn publish_turn(
    state: &Sessions,
    id: &SessionId,
    realtime: &str,
    out: &Outcome,
    reports: &[proto_events::events::ToolResult],
    client_message_id: Option<String>,
) -> Result<(), AgentSessionError> {
    use proto_events::events::AgentMessage;
    let rsid: SessionId = realtime.parse().map_err(AgentSessionError::BadId)?;
    let Some(rt) = state.store.get(&rsid).await? else {
        return Err(AgentSessionError::LinkedGone(rsid));
    };
    for report in reports {
        state.publish(&rsid, report).await?;
    }
    let scenario = state.scenarios.resolve(rt.scenario_id.as_str());
    let mut active = rt.active_agent.to_string();
    for h in &out.handoffs {
        let known = scenario.as_ref().is_some_and(|s| s.agent(&h.to).is_some());
        if !known || active == h.to {
            continue;
        }
        let sw = Switch {
            from: active.clone(),
            to: h.to.clone(),
            source: SwitchSource::Model,
            reason: format!("handoff by the server agent of agent session {id}"),
            confidence: 1.0,
            tell_call: true,
        };
        match state.switch_agent(&rsid, sw).await? {
            Switched::Changed { .. } => active = h.to.clone(),
            Switched::Lost { now: Some(now) } => active = now,
            Switched::Lost { now: None } | Switched::Unchanged => {}
        }
    }
    let data = AgentMessage {
        agent: out.agent.clone(),
        text: out.final_output.clone(),
        agent_session_id: id.to_string(),
        tool_calls: out.tool_calls.clone(),
        client_message_id,
    };
    state.publish(&rsid, &data).await?;
    Ok(())
}

/// The agent session does not exist (`404 unknown_agent_session` at the edge).
pub fn unknown_agent_session(id: &SessionId) -> AgentSessionError {
    AgentSessionError::Unknown(id.clone())
}
