//! The scenario file format as written (YAML, serde types). Unknown fields are refused, so
//! a typo is an error rather than a silently ignored setting. `checks` and `model` read
//! these; validation into a [`super::Scenario`] lives in `model`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Scenario id (`[A-Za-z0-9_-]`).
    pub id: String,
    /// Human label.
    pub label: String,
    /// One-paragraph description.
    #[serde(default)]
    pub description: String,
    /// Other ids that resolve to this scenario (e.g. `retail`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Company name the moderation guardrail judges brand safety against.
    pub company_name: String,
    /// Root agent when the client names none; defaults to the first agent.
    #[serde(default)]
    pub default_root: Option<String>,
    /// Agents, in display order.
    pub agents: Vec<AgentFile>,
    /// Function tools the agents may use.
    #[serde(default)]
    pub tools: Vec<ToolFile>,
    /// How `/api/orchestrate` chooses the agent.
    #[serde(default)]
    pub orchestration: OrchestrationFile,
    /// The voice API its calls use: `realtime` (the default) or `live` (GPT-Live).
    #[serde(default)]
    pub voice_api: Option<String>,
    /// GPT-Live settings (used when a call runs on Live).
    #[serde(default)]
    pub live: LiveFile,
}

/// GPT-Live settings of a scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveFile {
    /// Who answers delegations: `client` (Switchboard runs the active agent; the default)
    /// or `responses` (OpenAI runs the backend model; Switchboard runs its function tools).
    #[serde(default)]
    pub delegation: Option<String>,
    /// Live voice name (default `marin`); the agents' Realtime voices are never sent to Live.
    #[serde(default)]
    pub voice: Option<String>,
    /// The voice layer's standing prompt; built from the scenario when absent.
    #[serde(default)]
    pub instructions: Option<String>,
    /// End the session (`session.close`) when moderation flags an assistant turn, instead
    /// of only appending a corrective instruction (Live speech cannot be truncated).
    #[serde(default)]
    pub close_on_flag: bool,
}

/// Orchestration settings of a scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestrationFile {
    /// `local` (keyword and example scoring; the default) or `llm` (a model picks among the
    /// reachable agents; the local scorer answers when the model cannot).
    #[serde(default)]
    pub classifier: Option<String>,
    /// An agent reachable from anywhere when the user is upset (e.g. `simulatedHuman`).
    #[serde(default)]
    pub escalate_to: Option<String>,
    /// Words or phrases that trigger the escalation.
    #[serde(default)]
    pub escalate_keywords: Vec<String>,
}

/// One agent as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Agent name (`[A-Za-z0-9]`).
    pub name: String,
    /// Realtime voice (default `sage`, as in the public demo).
    #[serde(default)]
    pub voice: Option<String>,
    /// When another agent should hand off to this one.
    #[serde(default)]
    pub handoff_description: String,
    /// System instructions.
    pub instructions: String,
    /// Names of tools from the scenario's `tools`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Names of agents this one may hand off to.
    #[serde(default)]
    pub handoffs: Vec<String>,
    /// Words or phrases that suggest this agent (orchestration).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Example user messages this agent handles (orchestration).
    #[serde(default)]
    pub examples: Vec<String>,
}

/// One function tool as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFile {
    /// Function name.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
    /// Makes this a webhook tool: the host app's endpoint runs it. Without it, a built-in
    /// tool of the same name must exist.
    #[serde(default)]
    pub http: Option<HttpToolFile>,
}

/// A webhook tool's endpoint as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToolFile {
    /// `http://` or `https://` URL.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: Option<String>,
    /// Timeout in milliseconds (default 10 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Extra request headers: header name → name of the environment variable holding the value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variable holding the HMAC-SHA256 key; when set, requests carry
    /// `X-Switchboard-Signature: sha256=<hex of HMAC(body)>`.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
}
