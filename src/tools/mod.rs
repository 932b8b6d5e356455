//! Tools: the [`Tool`] trait, the registry built at startup, argument validation.
//!
//! Every tool has a name, a description and a JSON Schema for its arguments. Scenario files
//! declare the tools their agents use; each declaration is bound either to a built-in
//! implementation of the same name ([`builtin`]) or, with an `http:` block, to a webhook
//! the host app serves ([`webhook`]). A few tools exist outside any agent's list (the
//! supervisor's three tools and `echo_context`). Arguments are checked against the schema
//! (compiled once, at startup) before a tool runs.

pub mod builtin;
pub mod data;
pub mod run;
pub mod turn;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{SessionId, ToolName};
use crate::scenario::{ScenarioError, ScenarioRegistry};
use crate::upstream::UpstreamClient;

/// What a running tool may use.
pub struct ToolContext<'a> {
    /// The upstream, when configured (tools that ask a model).
    pub upstream: Option<&'a UpstreamClient>,
    /// The registry, for tools that run other tools (the supervisor).
    pub tools: Option<&'a ToolRegistry>,
    /// The session the call belongs to, if any.
    pub session_id: Option<&'a SessionId>,
    /// The caller's correlation id, if any.
    pub correlation_id: Option<&'a str>,
    /// Where a tool records the steps it took (published with `tool.result`).
    pub trail: Option<&'a Trail>,
}

/// Breadcrumbs a tool leaves while it runs (e.g. the supervisor's own tool calls).
#[derive(Debug, Default)]
pub struct Trail(parking_lot::Mutex<Vec<proto_events::events::Breadcrumb>>);

impl Trail {
    /// Records one step.
    pub fn push(&self, title: impl Into<String>, data: Value) {
        self.0.lock().push(proto_events::events::Breadcrumb {
            title: title.into(),
            data,
        });
    }

    /// The steps so far, oldest first; leaves the trail empty.
    pub fn take(&self) -> Vec<proto_events::events::Breadcrumb> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// A tool that ran but failed. Reported as `success: false`, never as an HTTP error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    /// The tool needs the model and no upstream key is configured.
    #[error("upstream_not_configured: this tool asks a model and no OPENAI_API_KEY is set")]
    Offline,
    /// Anything else, with a message for the caller.
    #[error("{0}")]
    Failed(String),
}

/// A tool implementation.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Runs with validated arguments.
    async fn call(&self, ctx: &ToolContext<'_>, args: Value) -> Result<Value, ToolError>;
}

/// One failing argument.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArgumentError {
    /// JSON Pointer into the arguments (`""` is the whole object).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A registered tool.
pub struct ToolEntry {
    /// Name.
    pub name: ToolName,
    /// Description.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// `builtin` or `http`.
    pub kind: &'static str,
    validator: jsonschema::Validator,
    imp: Arc<dyn Tool>,
}

impl ToolEntry {
    /// Checks arguments against the schema; lists every failure.
    pub fn validate(&self, args: &Value) -> Result<(), Vec<ArgumentError>> {
        let errors: Vec<ArgumentError> = self
            .validator
            .iter_errors(args)
            .map(|e| ArgumentError {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Runs the tool (arguments must have been validated).
    pub async fn call(&self, ctx: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        self.imp.call(ctx, args).await
    }
}

/// Every tool, by name.
#[derive(Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, ToolEntry>,
}

impl ToolRegistry {
    /// Binds every tool declared in the scenarios to its implementation, adds the tools that
    /// stand outside any agent's list, and compiles each schema. A declaration without an
    /// implementation, or one name declared differently in two files, fails startup.
    pub fn build(scenarios: &ScenarioRegistry) -> Result<Self, ScenarioError> {
        let mut reg = Self::default();
        for (name, description, parameters) in builtin::extra_declarations() {
            let imp = builtin::implementation(&name).expect("extra tools are built in");
            reg.insert(
                "builtin",
                &name,
                description,
                parameters,
                imp,
                "builtin:tools",
            )?;
        }
        for s in scenarios.all() {
            for (i, t) in s.tools.values().enumerate() {
                let err = |message: String| ScenarioError {
                    file: s.source.clone(),
                    field: format!("tools[{i}]"),
                    message,
                };
                if let Some(existing) = reg.tools.get(t.name.as_str()) {
                    if existing.parameters != t.parameters
                        || (existing.kind == "http") != t.http.is_some()
                    {
                        return Err(err(format!(
                            "tool {:?} is declared elsewhere with another schema or kind",
                            t.name.as_str()
                        )));
                    }
                    continue;
                }
                let (kind, imp): (&'static str, Arc<dyn Tool>) = match &t.http {
                    Some(h) => ("http", Arc::new(webhook::WebhookTool::new(t.name.as_str(), h))),
                    None => (
                        "builtin",
                        builtin::implementation(t.name.as_str()).ok_or_else(|| {
                            err(format!(
                                "no built-in tool is named {:?}; add an `http:` block to call a webhook",
                                t.name.as_str()
                            ))
                        })?,
                    ),
                };
                reg.insert(
                    kind,
                    t.name.as_str(),
                    t.description.clone(),
                    t.parameters.clone(),
                    imp,
                    &s.source,
                )?;
            }
        }
        Ok(reg)
    }

    fn insert(
        &mut self,
        kind: &'static str,
        name: &str,
        description: String,
        parameters: Value,
        imp: Arc<dyn Tool>,
        source: &str,
    ) -> Result<(), ScenarioError> {
        let validator = jsonschema::validator_for(&parameters).map_err(|e| ScenarioError {
            file: source.to_owned(),
            field: format!("tools.{name}.parameters"),
            message: e.to_string(),
        })?;
        let tool_name: ToolName =
            name.parse()
                .map_err(|e: crate::domain::InvalidId| ScenarioError {
                    file: source.to_owned(),
                    field: "tools".into(),
                    message: e.to_string(),
                })?;
        self.tools.insert(
            name.to_owned(),
            ToolEntry {
                name: tool_name,
                description,
                parameters,
                kind,
                validator,
                imp,
            },
        );
        Ok(())
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<&ToolEntry> {
        self.tools.get(name)
    }

    /// All tools, by name.
    pub fn all(&self) -> impl Iterator<Item = &ToolEntry> {
        self.tools.values()
    }
}
