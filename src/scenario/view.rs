//! JSON views of scenarios, as `/api/scenarios*` and `session2` answer them.
//!
//! Agents are rendered the way a Realtime client needs them: their own function tools
//! followed by one `transfer_to_<agent>` function tool per handoff target (the Agents SDK's
//! handoff shape), so a browser can pass an agent's `tools` to `session.update` as they are.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{Agent, Scenario};

/// The moderation guardrail's output classes (the public demo's four).
pub const GUARDRAIL_CATEGORIES: [&str; 4] = ["OFFENSIVE", "OFF_BRAND", "VIOLENCE", "NONE"];

/// One entry of `GET /api/scenarios`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScenarioSummary {
    /// Scenario id.
    pub id: String,
    /// Human label.
    pub label: String,
    /// Description.
    pub description: String,
    /// Root agent when none is named.
    pub default_root: String,
    /// Agent names in display order.
    pub agents: Vec<String>,
    /// Alternative ids.
    pub aliases: Vec<String>,
    /// The voice API its calls use by default: `realtime` or `live`.
    #[schema(example = "realtime")]
    pub voice_api: &'static str,
}

/// A function tool in the Responses/Realtime shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionTool {
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(example = "function")]
    pub kind: &'static str,
    /// Function name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// Strict argument checking (set on handoff tools, as the Agents SDK does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// An agent with everything a client needs to run it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentView {
    /// Agent name.
    pub name: String,
    /// Realtime voice.
    pub voice: String,
    /// System instructions (with the session's context appended, in `session2`).
    pub instructions: String,
    /// When another agent should hand off to this one.
    pub handoff_description: String,
    /// Function tools followed by one `transfer_to_<agent>` tool per handoff.
    pub tools: Vec<FunctionTool>,
    /// Agents this one may hand off to.
    pub handoffs: Vec<String>,
}

/// Metadata of the moderation guardrail that applies to a scenario.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuardrailView {
    /// Guardrail name (`moderation_guardrail`).
    pub name: &'static str,
    /// Output classes.
    pub categories: Vec<&'static str>,
    /// Company whose brand the classifier protects.
    pub company_name: String,
}

/// `GET /api/scenarios/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScenarioDetail {
    /// Scenario id.
    pub id: String,
    /// Human label.
    pub label: String,
    /// Description.
    pub description: String,
    /// Alternative ids.
    pub aliases: Vec<String>,
    /// Root agent when none is named.
    pub default_root: String,
    /// Company name.
    pub company_name: String,
    /// Agents in display order.
    pub agents: Vec<AgentView>,
    /// Guardrails.
    pub guardrails: Vec<GuardrailView>,
    /// The voice API its calls use by default: `realtime` or `live`.
    #[schema(example = "realtime")]
    pub voice_api: &'static str,
    /// Who answers GPT-Live delegations: `client` or `responses`.
    pub live_delegation: &'static str,
}

/// `transfer_to_<agent>`: the handoff tool name for an agent (names are `[A-Za-z0-9]`).
pub fn transfer_tool_name(agent: &str) -> String {
    format!("transfer_to_{agent}")
}

impl ScenarioSummary {
    /// Summary of a scenario.
    pub fn of(s: &Scenario) -> Self {
        Self {
            id: s.id.to_string(),
            label: s.label.clone(),
            description: s.description.clone(),
            default_root: s.default_root.to_string(),
            agents: s.agent_names(),
            aliases: s.aliases.iter().map(ToString::to_string).collect(),
            voice_api: s.voice_api.as_str(),
        }
    }
}

impl ScenarioDetail {
    /// Full view of a scenario.
    pub fn of(s: &Scenario) -> Self {
        Self {
            id: s.id.to_string(),
            label: s.label.clone(),
            description: s.description.clone(),
            aliases: s.aliases.iter().map(ToString::to_string).collect(),
            default_root: s.default_root.to_string(),
            company_name: s.company_name.clone(),
            agents: s.agents.iter().map(|a| agent_view(s, a, None)).collect(),
            guardrails: guardrails(s),
            voice_api: s.voice_api.as_str(),
            live_delegation: s.live.delegation.as_str(),
        }
    }
}

/// The GPT-Live voice layer's standing prompt: the scenario's `live.instructions`, or one
/// built from its description and the agent in charge, saying that anything needing tools,
/// accounts or policy is delegated to the backend.
pub fn live_instructions(s: &Scenario, agent: &AgentView) -> String {
    if let Some(i) = &s.live.instructions {
        return i.clone();
    }
    format!(
        "You are the voice of {company}. {description}\n\nYou speak for the {agent} agent: {role}\n\n\
         Delegate anything that needs tools, accounts, orders, policy or reasoning to the backend, \
         and speak what it answers. Keep replies short and natural.",
        company = s.company_name,
        description = s.description.trim(),
        agent = agent.name,
        role = if agent.handoff_description.is_empty() {
            "help the caller."
        } else {
            agent.handoff_description.as_str()
        },
    )
}

/// The guardrails of a scenario.
pub fn guardrails(s: &Scenario) -> Vec<GuardrailView> {
    vec![GuardrailView {
        name: "moderation_guardrail",
        categories: GUARDRAIL_CATEGORIES.to_vec(),
        company_name: s.company_name.clone(),
    }]
}

/// One agent's view; `context` is appended to its instructions when given.
pub fn agent_view(s: &Scenario, a: &Agent, context: Option<&str>) -> AgentView {
    let mut tools: Vec<FunctionTool> = a
        .tools
        .iter()
        .filter_map(|t| s.tools.get(t))
        .map(|t| FunctionTool {
            kind: "function",
            name: t.name.to_string(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
            strict: None,
        })
        .collect();
    for target in &a.handoffs {
        let desc = s
            .agent(target.as_str())
            .map(|t| t.handoff_description.trim())
            .unwrap_or_default();
        let description = if desc.is_empty() {
            format!("Hand the conversation over to the {target} agent.")
        } else {
            format!("Hand the conversation over to the {target} agent. {desc}")
        };
        tools.push(FunctionTool {
            kind: "function",
            name: transfer_tool_name(target.as_str()),
            description,
            parameters: json!({
                "type": "object",
                "properties": {},
                "required": [],
                "additionalProperties": false
            }),
            strict: Some(true),
        });
    }
    AgentView {
        name: a.name.to_string(),
        voice: a.voice.clone(),
        instructions: with_context(&a.instructions, context),
        handoff_description: a.handoff_description.clone(),
        tools,
        handoffs: a.handoffs.iter().map(ToString::to_string).collect(),
    }
}

/// Agents root first, then the rest in scenario order; the root's instructions carry the
/// context.
pub fn initial_agents(s: &Scenario, root: &Agent, context: Option<&str>) -> Vec<AgentView> {
    std::iter::once(agent_view(s, root, context))
        .chain(
            s.agents
                .iter()
                .filter(|a| a.name != root.name)
                .map(|a| agent_view(s, a, None)),
        )
        .collect()
}

/// Instructions with a context block appended.
pub fn with_context(instructions: &str, context: Option<&str>) -> String {
    match context.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!(
            "{}\n\n# Context for this session\n{c}",
            instructions.trim_end()
        ),
        None => instructions.to_owned(),
    }
}
