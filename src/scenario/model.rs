//! The scenario file format (YAML) and its validation.
//!
//! A file is parsed into [`ScenarioFile`] (unknown fields are refused, so a typo is an error
//! rather than a silently ignored setting), then [`ScenarioFile::validate`] checks every
//! cross-reference and returns a [`Scenario`]. Every error names the file and the field.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::checks::{check_http, check_parameters};
pub use super::file::{AgentFile, HttpToolFile, OrchestrationFile, ScenarioFile, ToolFile};
use crate::domain::{AgentName, ScenarioId, ToolName};

/// Voices the Realtime API accepts.
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse",
];

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario id.
    pub id: ScenarioId,
    /// Human label.
    pub label: String,
    /// Description.
    pub description: String,
    /// Alternative ids.
    pub aliases: Vec<ScenarioId>,
    /// Company name for the moderation guardrail.
    pub company_name: String,
    /// Default root agent.
    pub default_root: AgentName,
    /// Agents in file order.
    pub agents: Vec<Agent>,
    /// Tools by name.
    pub tools: BTreeMap<ToolName, Tool>,
    /// Orchestration settings (the classifier, a known escalation target).
    pub orchestration: Orchestration,
    /// The voice API its calls use unless a call asks for the other.
    pub voice_api: VoiceApi,
    /// GPT-Live settings.
    pub live: LiveSettings,
    /// Where it came from (`builtin:<file>` or a path), for messages.
    pub source: String,
}

/// The `live:` block: a known delegation type, a plain voice name.
fn validate_live(
    f: super::file::LiveFile,
    err: &dyn Fn(String, String) -> ScenarioError,
) -> Result<LiveSettings, ScenarioError> {
    let delegation = match f.delegation.as_deref().map(str::trim) {
        None | Some("client") => Delegation::Client,
        Some("responses") => Delegation::Responses,
        Some(other) => {
            return Err(err(
                "live.delegation".into(),
                format!("{other:?}: expected client or responses"),
            ));
        }
    };
    let voice = f.voice.unwrap_or_else(|| "marin".to_owned());
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if voice.is_empty() || voice.len() > 64 || !voice.chars().all(plain) {
        return Err(err(
            "live.voice".into(),
            format!("{voice:?} is not a voice name"),
        ));
    }
    Ok(LiveSettings {
        delegation,
        voice,
        instructions: f.instructions.filter(|i| !i.trim().is_empty()),
        close_on_flag: f.close_on_flag,
    })
}

pub use crate::config::VoiceApi;

/// Who answers a Live session's delegations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delegation {
    /// Switchboard runs the active agent and answers with commentary.
    #[default]
    Client,
    /// OpenAI runs the backend model; Switchboard runs its function tools.
    Responses,
}

impl Delegation {
    /// `client` or `responses`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Responses => "responses",
        }
    }
}

/// A scenario's GPT-Live settings, validated.
#[derive(Debug, Clone, Default)]
pub struct LiveSettings {
    /// Who answers delegations.
    pub delegation: Delegation,
    /// Live voice.
    pub voice: String,
    /// The voice layer's prompt, when the file sets one.
    pub instructions: Option<String>,
    /// Close the session when an assistant turn is flagged.
    pub close_on_flag: bool,
}

/// A validated agent.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Name.
    pub name: AgentName,
    /// Voice.
    pub voice: String,
    /// Handoff description.
    pub handoff_description: String,
    /// Instructions.
    pub instructions: String,
    /// Tools, in file order.
    pub tools: Vec<ToolName>,
    /// Handoff targets, in file order.
    pub handoffs: Vec<AgentName>,
    /// Orchestration keywords, lower-cased.
    pub keywords: Vec<String>,
    /// Orchestration examples.
    pub examples: Vec<String>,
}

/// A validated tool declaration.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Name.
    pub name: ToolName,
    /// Description.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// Webhook endpoint, for tools the host app runs.
    pub http: Option<HttpToolFile>,
}

/// A scenario file that cannot be loaded; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ScenarioError {
    /// The file (path or `builtin:<name>`).
    pub file: String,
    /// The field path, e.g. `agents[1].handoffs[0]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Scenario {
    /// The agent with this name.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name.as_str() == name)
    }

    /// Agent names in file order.
    pub fn agent_names(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.name.to_string()).collect()
    }

    /// The root agent when a client names none.
    pub fn default_agent(&self) -> &Agent {
        // Validation refuses a scenario whose default root is not one of its agents, and a
        // `Scenario` is only built by validation.
        self.agent(self.default_root.as_str())
            .expect("a validated scenario contains its default root")
    }

    /// The agent named `wanted` (trimmed), or the default root when none is named.
    pub fn agent_or_default(&self, wanted: Option<&str>) -> Result<&Agent, UnknownAgent> {
        match wanted.map(str::trim).filter(|r| !r.is_empty()) {
            None => Ok(self.default_agent()),
            Some(r) => self.agent(r).ok_or_else(|| UnknownAgent {
                agent: r.chars().take(64).collect(),
                scenario: self.id.to_string(),
                agents: self.agent_names(),
            }),
        }
    }
}

/// A named agent that is not in the scenario.
#[derive(Debug, Clone, thiserror::Error)]
#[error("agent {agent:?} is not in scenario {scenario}; its agents are {}", agents.join(", "))]
pub struct UnknownAgent {
    /// The name asked for (at most 64 characters of it).
    pub agent: String,
    /// The scenario.
    pub scenario: String,
    /// Its agents.
    pub agents: Vec<String>,
}

impl ScenarioFile {
    /// Parses YAML text.
    pub fn parse(file: &str, text: &str) -> Result<Self, ScenarioError> {
        serde_yaml_ng::from_str(text).map_err(|e| ScenarioError {
            file: file.to_owned(),
            field: e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "(document)".to_owned()),
            message: e.to_string(),
        })
    }

    /// Checks every rule and returns the validated scenario.
    pub fn validate(self, file: &str) -> Result<Scenario, ScenarioError> {
        let err = |field: String, message: String| ScenarioError {
            file: file.to_owned(),
            field,
            message,
        };
        let id: ScenarioId = self
            .id
            .parse()
            .map_err(|e: crate::domain::InvalidId| err("id".into(), e.to_string()))?;
        let aliases = self
            .aliases
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<ScenarioId>()
                    .map_err(|e| err(format!("aliases[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (field, value) in [("label", &self.label), ("company_name", &self.company_name)] {
            if value.trim().is_empty() {
                return Err(err(field.into(), "must not be empty".into()));
            }
        }
        if self.agents.is_empty() {
            return Err(err(
                "agents".into(),
                "a scenario needs at least one agent".into(),
            ));
        }
        let tools = validate_tools(self.tools, &err)?;
        let known = agent_names(&self.agents, &err)?;
        let agents = self
            .agents
            .into_iter()
            .enumerate()
            .map(|(i, a)| validate_agent(i, a, &tools, &known, &err))
            .collect::<Result<Vec<_>, _>>()?;
        let default_root = match self.default_root {
            None => agents[0].name.clone(),
            Some(r) => agents
                .iter()
                .find(|a| a.name.as_str() == r)
                .map(|a| a.name.clone())
                .ok_or_else(|| {
                    err(
                        "default_root".into(),
                        format!("unknown agent {r:?}; agents are {}", known.join(", ")),
                    )
                })?,
        };
        let orchestration = validate_orchestration(self.orchestration, &known, &err)?;
        let voice_api = match self.voice_api.as_deref() {
            None => VoiceApi::Realtime,
            Some(v) => VoiceApi::parse(v).ok_or_else(|| {
                err(
                    "voice_api".into(),
                    format!("{v:?}: expected realtime or live"),
                )
            })?,
        };
        let live = validate_live(self.live, &err)?;
        Ok(Scenario {
            voice_api,
            live,
            id,
            label: self.label,
            description: self.description,
            aliases,
            company_name: self.company_name,
            default_root,
            agents,
            tools,
            orchestration,
            source: file.to_owned(),
        })
    }
}

/// Builds a [`ScenarioError`] for a field of the file being validated.
type Err<'a> = dyn Fn(String, String) -> ScenarioError + 'a;

fn validate_tools(
    files: Vec<ToolFile>,
    err: &Err<'_>,
) -> Result<BTreeMap<ToolName, Tool>, ScenarioError> {
    let mut tools = BTreeMap::new();
    for (i, t) in files.into_iter().enumerate() {
        let at = |f: &str| format!("tools[{i}].{f}");
        let name: ToolName = t
            .name
            .parse()
            .map_err(|e: crate::domain::InvalidId| err(at("name"), e.to_string()))?;
        if t.description.trim().is_empty() {
            return Err(err(at("description"), "must not be empty".into()));
        }
        check_parameters(&t.parameters).map_err(|m| err(at("parameters"), m))?;
        if let Some(h) = &t.http {
            check_http(h).map_err(|(f, m)| err(at(&format!("http.{f}")), m))?;
        }
        let tool = Tool {
            name: name.clone(),
            description: t.description,
            parameters: t.parameters,
            http: t.http,
        };
        if tools.insert(name.clone(), tool).is_some() {
            return Err(err(at("name"), format!("tool {name:?} is declared twice")));
        }
    }
    Ok(tools)
}

/// Every agent's name, checked to be valid and unique.
fn agent_names(agents: &[AgentFile], err: &Err<'_>) -> Result<Vec<String>, ScenarioError> {
    let mut names = HashSet::new();
    for (i, a) in agents.iter().enumerate() {
        let name: AgentName = a.name.parse().map_err(|e: crate::domain::InvalidId| {
            err(format!("agents[{i}].name"), e.to_string())
        })?;
        if !names.insert(name) {
            return Err(err(
                format!("agents[{i}].name"),
                format!("agent {:?} is declared twice", a.name),
            ));
        }
    }
    Ok(agents.iter().map(|a| a.name.clone()).collect())
}

fn validate_agent(
    i: usize,
    a: AgentFile,
    tools: &BTreeMap<ToolName, Tool>,
    known: &[String],
    err: &Err<'_>,
) -> Result<Agent, ScenarioError> {
    let at = |f: String| format!("agents[{i}].{f}");
    if a.instructions.trim().is_empty() {
        return Err(err(at("instructions".into()), "must not be empty".into()));
    }
    let voice = a.voice.unwrap_or_else(|| "sage".to_owned());
    if !VOICES.contains(&voice.as_str()) {
        return Err(err(
            at("voice".into()),
            format!("unknown voice {voice:?}; use one of {}", VOICES.join(", ")),
        ));
    }
    let mut agent_tools = Vec::new();
    for (j, t) in a.tools.iter().enumerate() {
        match tools.keys().find(|k| k.as_str() == t) {
            Some(k) if !agent_tools.contains(k) => agent_tools.push(k.clone()),
            Some(_) => {
                return Err(err(
                    at(format!("tools[{j}]")),
                    format!("tool {t:?} is listed twice"),
                ));
            }
            None => {
                return Err(err(
                    at(format!("tools[{j}]")),
                    format!("unknown tool {t:?}: declare it under `tools`"),
                ));
            }
        }
    }
    let mut handoffs: Vec<AgentName> = Vec::new();
    for (j, h) in a.handoffs.iter().enumerate() {
        let problem = if h == &a.name {
            Some("an agent cannot hand off to itself".to_owned())
        } else if !known.contains(h) {
            Some(format!(
                "unknown agent {h:?}; agents are {}",
                known.join(", ")
            ))
        } else if handoffs.iter().any(|x| x.as_str() == h) {
            Some(format!("{h:?} is listed twice"))
        } else {
            None
        };
        if let Some(m) = problem {
            return Err(err(at(format!("handoffs[{j}]")), m));
        }
        // `known` holds only names that parsed (checked by `agent_names`).
        handoffs.push(h.parse().expect("a known agent name is valid"));
    }
    Ok(Agent {
        // Checked by `agent_names`.
        name: a.name.parse().expect("agent names were validated"),
        voice,
        handoff_description: a.handoff_description,
        instructions: a.instructions,
        tools: agent_tools,
        handoffs,
        keywords: a
            .keywords
            .iter()
            .map(|k| k.trim().to_lowercase())
            .filter(|k| !k.is_empty())
            .collect(),
        examples: a.examples,
    })
}

fn validate_orchestration(
    o: OrchestrationFile,
    known: &[String],
    err: &Err<'_>,
) -> Result<Orchestration, ScenarioError> {
    let classifier = match o.classifier.as_deref() {
        None => None,
        Some("local") => Some(Classifier::Local),
        Some("llm") => Some(Classifier::Llm),
        Some(c) => {
            return Err(err(
                "orchestration.classifier".into(),
                format!("{c:?}: use local or llm"),
            ));
        }
    };
    if let Some(e) = &o.escalate_to
        && !known.contains(e)
    {
        return Err(err(
            "orchestration.escalate_to".into(),
            format!("unknown agent {e:?}; agents are {}", known.join(", ")),
        ));
    }
    Ok(Orchestration {
        classifier,
        escalate_to: o.escalate_to,
        escalate_keywords: o.escalate_keywords,
    })
}

/// Which classifier chooses the agent in charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classifier {
    /// Keyword and example scoring.
    Local,
    /// A model picks among the reachable agents (the local scorer answers when it cannot).
    Llm,
}

/// A scenario's validated orchestration settings.
#[derive(Debug, Clone, Default)]
pub struct Orchestration {
    /// The classifier the file names; `None` when it names none (the local scorer answers
    /// `/api/orchestrate`, and a call's sideband does not orchestrate on its own).
    pub classifier: Option<Classifier>,
    /// An agent reachable from anywhere when the user is upset (an agent of the scenario).
    pub escalate_to: Option<String>,
    /// Words or phrases that trigger the escalation.
    pub escalate_keywords: Vec<String>,
}
