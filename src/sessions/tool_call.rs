//! Running a tool for a session: the one path for `/api/tools/execute` and the sideband's
//! function calls. In order: the tool must exist, belong to the active agent when the rule
//! says so, and get arguments that match its schema; then the idempotency claim, the run,
//! the stored answer, and `tool.result` on the session's channel (with the same
//! `correlation_id`). A tool that runs and fails is a `success: false` result and its event,
//! never an error.

use proto_events::events::ToolResult;

use super::claim::{Claim, ClaimError};
use super::{SessionError, Sessions};
use crate::domain::SessionId;
use crate::store::SessionState;
use crate::tools::run::{Args, Call, RunError, Runner};

/// How repeats of one correlation id are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Every call runs.
    None,
    /// A repeated correlation id answers the first call's result (waiting while it runs)
    /// and runs nothing: retries of an API call are safe.
    FirstResult,
    /// A correlation id is answered once, ever, across instances; repeats get nothing (a
    /// Realtime function call seen twice, or again after a takeover).
    AnswerOnce,
}

/// Which tools a call may use.
#[derive(Debug, Clone, Copy)]
pub enum AgentRule<'a> {
    /// Any registered tool (the model was offered them).
    Any,
    /// Only the tools of this session's active agent.
    ActiveAgent(&'a SessionState),
}

/// One tool call for a session.
#[derive(Clone, Copy)]
pub struct ToolRun<'a> {
    /// The session.
    pub session: &'a SessionId,
    /// Tool name.
    pub tool: &'a str,
    /// Arguments.
    pub args: Args<'a>,
    /// Correlates the result and its `tool.result` (a function call's `call_id`).
    pub correlation_id: Option<&'a str>,
    /// How repeats are treated (needs a correlation id).
    pub idempotency: Idempotency,
    /// Which tools are allowed.
    pub rule: AgentRule<'a>,
    /// True: a call that cannot run (unknown tool, bad arguments) becomes a `success:
    /// false` result for the model, published like any other. False: it is an error.
    pub report_refusals: bool,
    /// Who asked, for the record: `sideband`, `rest`, `delegation` or `server_agent`.
    pub by: &'static str,
    /// The call it belongs to, for the record.
    pub call_id: Option<&'a str>,
}

/// Who ran a tool, for the record.
#[derive(Debug, Clone, Copy)]
pub struct ToolBy<'a> {
    /// `sideband`, `rest`, `delegation` or `server_agent`.
    pub by: &'static str,
    /// The call it belongs to.
    pub call_id: Option<&'a str>,
}

/// What a tool run did.
#[derive(Debug, Clone)]
pub enum ToolRan {
    /// The tool ran now; `tool.result` was published.
    Fresh(ToolResult),
    /// An earlier call with this correlation id ran it; its result.
    Repeat(ToolResult),
    /// The correlation id was answered before (answer-once): nothing ran.
    AlreadyAnswered,
}

/// Why a tool call was refused or could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ToolRunError {
    /// Unknown tool or arguments that do not match its schema.
    #[error(transparent)]
    Refused(#[from] RunError),
    /// The tool is not one of the active agent's.
    #[error("tool {tool:?} is not available to the session's active agent {agent}; its tools are {}", tools.join(", "))]
    NotAllowed {
        /// The tool.
        tool: String,
        /// The active agent.
        agent: String,
        /// Its tools.
        tools: Vec<String>,
    },
    /// The first call with this correlation id is still running.
    #[error("a call with this correlation_id is still running; retry later")]
    InProgress,
    /// A backend failed (or a stored result is unreadable).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A stored result is unreadable.
    #[error("a stored tool result is unreadable")]
    Unreadable(#[source] serde_json::Error),
}

impl From<crate::store::StoreError> for ToolRunError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Session(e.into())
    }
}

impl From<crate::broker::BrokerError> for ToolRunError {
    fn from(e: crate::broker::BrokerError) -> Self {
        Self::Session(e.into())
    }
}

impl From<ClaimError> for ToolRunError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::InProgress => Self::InProgress,
            ClaimError::Unreadable(e) => Self::Unreadable(e),
            ClaimError::Store(e) => e.into(),
        }
    }
}

impl Sessions {
    /// The tool runner over this instance's registry and upstream.
    pub fn runner(&self) -> Runner<'_> {
        Runner {
            registry: &self.tools,
            upstream: self.upstream.as_ref(),
        }
    }

    /// Runs a tool for a session (see the module doc for the order of checks).
    pub async fn run_tool(&self, run: ToolRun<'_>) -> Result<ToolRan, ToolRunError> {
        let call = Call {
            tool: run.tool,
            args: run.args,
            correlation_id: run.correlation_id,
            session_id: Some(run.session),
        };
        // Checked once: the result decides both the refusal and what runs below.
        let checked = match self.runner().check(&call) {
            Err(RunError::Unknown(t)) if !run.report_refusals => {
                return Err(RunError::Unknown(t).into());
            }
            other => other,
        };
        if let AgentRule::ActiveAgent(state) = run.rule {
            self.check_agent_rule(state, run.tool)?;
        }
        let checked = match checked {
            Err(e) if !run.report_refusals => return Err(e.into()),
            other => other,
        };
        let key = run.correlation_id.map(|c| match run.idempotency {
            Idempotency::AnswerOnce => format!("fc:{c}"),
            _ => format!("tool:{c}"),
        });
        let claim = key.as_deref().map(|key| Claim {
            store: self.store.as_ref(),
            session: run.session,
            key,
            ttl: match run.idempotency {
                Idempotency::AnswerOnce => self.settings.session_ttl,
                _ => self.settings.history_ttl,
            },
        });
        let earlier = match (run.idempotency, &claim) {
            (Idempotency::FirstResult, Some(c)) => c
                .claim_or_wait(self.settings.tool_claim_wait)
                .await?
                .map(ToolRan::Repeat),
            (Idempotency::AnswerOnce, Some(c)) => {
                (!c.first().await?).then_some(ToolRan::AlreadyAnswered)
            }
            _ => None,
        };
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
        let arguments = match run.args {
            Args::Json(v) => v.clone(),
            Args::Text(t) => serde_json::from_str(t).unwrap_or_else(|_| t.into()),
        };
        let result = match checked {
            Ok(args) => self.runner().execute(call, args).await,
            Err(e) => crate::tools::run::refused(call, e),
        };
        let by = ToolBy {
            by: run.by,
            call_id: run.call_id,
        };
        self.note_tool(run.session, &result, arguments, by).await;
        if let (Idempotency::FirstResult, Some(c)) = (run.idempotency, &claim) {
            c.answer(&result).await?;
        }
        let idem = match run.idempotency {
            Idempotency::FirstResult => key,
            _ => None,
        };
        match idem {
            Some(k) => self.publish_keyed(run.session, &result, k).await?,
            None => self.publish(run.session, &result).await?,
        };
        Ok(ToolRan::Fresh(result))
    }

    /// Records a tool call that ran (from any path: this one, delegations, server agents).
    pub async fn note_tool(
        &self,
        session: &SessionId,
        result: &ToolResult,
        arguments: serde_json::Value,
        by: ToolBy<'_>,
    ) {
        let data = serde_json::json!({
            "tool": result.tool,
            "arguments": arguments,
            "correlation_id": result.correlation_id,
            "success": result.success,
            "result": result.output,
            "error": result.error,
            "duration_ms": result.duration_ms,
            "by": by.by,
        });
        let mut note = super::record::Note::new("tool.call", data);
        note.call_id = by.call_id;
        self.note(session, note).await;
    }

    fn check_agent_rule(&self, state: &SessionState, tool: &str) -> Result<(), ToolRunError> {
        let scenario = self.scenarios.resolve(state.scenario_id.as_str());
        let agent = scenario
            .as_ref()
            .and_then(|sc| sc.agent(state.active_agent.as_str()));
        if agent.is_some_and(|a| a.tools.iter().any(|t| t.as_str() == tool)) {
            return Ok(());
        }
        Err(ToolRunError::NotAllowed {
            tool: tool.to_owned(),
            agent: state.active_agent.to_string(),
            tools: agent
                .map(|a| a.tools.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        })
    }
}
