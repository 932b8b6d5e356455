//! Typed `data` payloads of the documented event kinds. Publishers build these and
//! serialize them into [`crate::Envelope::data`]; custom `x.*` events carry any JSON.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `agent.switch`: the active agent changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSwitch {
    /// Previous agent.
    pub from: String,
    /// New agent.
    pub to: String,
    /// Why (what matched, or the model's handoff).
    pub reason: String,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Who decided: `orchestrator`, `model`, `client`, `server`.
    pub source: String,
}

/// `tool.result`: a tool ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolResult {
    /// Correlates with the request (or the realtime function call id).
    pub correlation_id: Option<String>,
    /// Tool name.
    pub tool: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Its output.
    pub output: serde_json::Value,
    /// Error message when it failed.
    pub error: Option<String>,
    /// How long it ran.
    pub duration_ms: u64,
    /// Steps taken inside the tool, oldest first (e.g. the chatSupervisor's own tool calls);
    /// absent when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breadcrumbs: Vec<Breadcrumb>,
}

/// One step inside a tool, for a debugging or transcript view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Breadcrumb {
    /// What happened, e.g. `supervisor function call: lookupPolicyDocument`.
    pub title: String,
    /// Its arguments or result.
    pub data: serde_json::Value,
}

/// `moderation.flagged`: a text was flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModerationFlagged {
    /// Category flags.
    pub categories: serde_json::Map<String, serde_json::Value>,
    /// The text with sensitive parts redacted, when available.
    pub sanitized_text: Option<String>,
    /// Where the text came from (`user`, `assistant`, `api`).
    #[serde(default)]
    pub source: Option<String>,
}

/// `agent.message`: a server-side agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentMessage {
    /// The agent.
    pub agent: String,
    /// The answer text.
    pub text: String,
    /// The server-side agent session that answered.
    #[serde(default)]
    pub agent_session_id: String,
    /// Tools called during the turn, in order.
    #[serde(default)]
    pub tool_calls: Vec<String>,
    /// The caller's `client_message_id`, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// `call.started`: a realtime call was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallStarted {
    /// Upstream call id.
    pub call_id: String,
    /// Agent in charge.
    pub agent: String,
}

/// `call.ended`: a call ended (either voice API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallEnded {
    /// Upstream call id.
    pub call_id: String,
    /// Why it ended: `hangup` (asked through our API), `remote_hangup`, `expired`, `content`,
    /// `connection_lost`, `error`, or `upstream_gone` (the upstream no longer knows the call).
    pub reason: String,
    /// The upstream's own reason, when it gave one (GPT-Live's `session.closed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_reason: Option<String>,
}

/// `delegation.started`: a GPT-Live call delegated a task to the active agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DelegationStarted {
    /// Upstream call id.
    pub call_id: String,
    /// The delegation's id (`item_...`).
    pub delegation_id: String,
    /// The agent that runs it.
    pub agent: String,
    /// The task: the caller's current turn.
    pub task: String,
}

/// `delegation.completed`: a delegation was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DelegationCompleted {
    /// Upstream call id.
    pub call_id: String,
    /// The delegation's id.
    pub delegation_id: String,
    /// The agent that answered (after any hand-off).
    pub agent: String,
    /// From the delegation to the answer.
    pub duration_ms: u64,
    /// The content as sent to the voice layer.
    pub output: String,
    /// True when the user spoke again before the answer was sent.
    pub late: bool,
}

/// `x.call.error`: the Realtime API reported an error the browser must act on (the call
/// expired, the operator's quota is exhausted, the API is rate-limiting or failing).
/// Errors caused by Switchboard's own client events are only logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallError {
    /// Upstream call id.
    pub call_id: String,
    /// Upstream error code (e.g. `session_expired`), or its type when it has no code.
    pub code: String,
    /// Upstream error message.
    pub message: String,
    /// True when the call cannot continue: start a new call.
    pub terminal: bool,
}

/// `transcript.user`: a completed user transcript from a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TranscriptUser {
    /// Upstream call id.
    pub call_id: String,
    /// Conversation item id (null on GPT-Live, which has no items).
    pub item_id: Option<String>,
    /// Transcript.
    pub text: String,
}

/// `transcript.assistant`: a completed assistant transcript from a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TranscriptAssistant {
    /// Upstream call id.
    pub call_id: String,
    /// Conversation item id (null on GPT-Live).
    pub item_id: Option<String>,
    /// Response id (null on GPT-Live).
    pub response_id: Option<String>,
    /// Agent speaking.
    pub agent: String,
    /// Transcript.
    pub text: String,
}

/// A payload that knows its event kind, so a publisher names the type once (here) and never
/// as a string at the call site.
pub trait EventData: Serialize {
    /// The envelope `type` this payload is published as.
    const KIND: &'static str;
}

macro_rules! kinds {
    ($($t:ty => $k:literal),* $(,)?) => {
        $(impl EventData for $t { const KIND: &'static str = $k; })*

        /// Every kind a payload type of this module carries (the test checks each parses).
        pub const PAYLOAD_KINDS: &[&str] = &[$($k),*];
    };
}

kinds! {
    AgentSwitch => "agent.switch",
    ToolResult => "tool.result",
    ModerationFlagged => "moderation.flagged",
    AgentMessage => "agent.message",
    CallStarted => "call.started",
    CallEnded => "call.ended",
    CallError => "x.call.error",
    TranscriptUser => "transcript.user",
    TranscriptAssistant => "transcript.assistant",
    DelegationStarted => "delegation.started",
    DelegationCompleted => "delegation.completed",
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_payload_kind_is_a_valid_event_type() {
        for k in super::PAYLOAD_KINDS {
            assert!(
                k.parse::<crate::EventType>().is_ok(),
                "{k} is not a valid event type"
            );
        }
    }
}
