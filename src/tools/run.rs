//! Running one tool call: the single place where a call is looked up, its arguments checked
//! against the tool's JSON Schema, the tool run and timed, and its breadcrumbs collected.
//! REST (`/api/tools/execute`, through the session layer), the sideband, the server agents'
//! tool loop and the supervisor all come through here.

use std::time::Instant;

use serde_json::Value;

use super::{ArgumentError, ToolContext, ToolRegistry, Trail};
use crate::domain::SessionId;
use crate::upstream::UpstreamClient;
use proto_events::events::ToolResult;

/// Why a call did not get to run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No tool has this name.
    #[error("unknown tool {0}")]
    Unknown(String),
    /// The arguments were sent as text that is not JSON (a model's function call).
    #[error("the arguments are not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The arguments do not match the tool's schema.
    #[error("invalid arguments: {summary}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Every failure, one line each joined with `; `.
        summary: String,
        /// Every failing path.
        errors: Vec<ArgumentError>,
    },
}

/// Arguments as they arrive: parsed JSON (REST) or a model's argument text.
#[derive(Debug, Clone, Copy)]
pub enum Args<'a> {
    /// Already JSON (`null` counts as `{}`).
    Json(&'a Value),
    /// Text to parse.
    Text(&'a str),
}

/// One call to run.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// Tool name.
    pub tool: &'a str,
    /// Its arguments.
    pub args: Args<'a>,
    /// The caller's correlation id (a function call's `call_id`), echoed in the result.
    pub correlation_id: Option<&'a str>,
    /// The session it runs for, if any.
    pub session_id: Option<&'a SessionId>,
}

/// What a run needs from outside.
#[derive(Clone, Copy)]
pub struct Runner<'a> {
    /// The tools.
    pub registry: &'a ToolRegistry,
    /// The upstream, for tools that ask a model.
    pub upstream: Option<&'a UpstreamClient>,
}

impl Runner<'_> {
    /// Looks the tool up and checks the arguments, without running anything: a caller that
    /// must refuse bad input before claiming an idempotency key asks this first.
    pub fn check(&self, call: &Call<'_>) -> Result<Value, RunError> {
        let tool = self
            .registry
            .get(call.tool)
            .ok_or_else(|| RunError::Unknown(call.tool.to_owned()))?;
        let args = match call.args {
            Args::Json(Value::Null) => Value::Object(Default::default()),
            Args::Json(v) => v.clone(),
            Args::Text(t) => serde_json::from_str(t).map_err(RunError::NotJson)?,
        };
        tool.validate(&args)
            .map_err(|errors| RunError::InvalidArguments {
                tool: call.tool.to_owned(),
                summary: summary(&errors),
                errors,
            })?;
        Ok(args)
    }

    /// Runs a call. A tool that runs and fails is `Ok` with `success: false`; only a call
    /// that could not run (unknown tool, bad arguments) is an `Err`.
    pub async fn run(&self, call: Call<'_>) -> Result<ToolResult, RunError> {
        let args = self.check(&call)?;
        Ok(self.execute(call, args).await)
    }

    /// Runs a call whose arguments [`Runner::check`] returned.
    pub async fn execute(&self, call: Call<'_>, args: Value) -> ToolResult {
        let Some(tool) = self.registry.get(call.tool) else {
            return refused(call, RunError::Unknown(call.tool.to_owned()));
        };
        let started = Instant::now();
        let trail = Trail::default();
        let ctx = ToolContext {
            upstream: self.upstream,
            tools: Some(self.registry),
            session_id: call.session_id,
            correlation_id: call.correlation_id,
            trail: Some(&trail),
        };
        let outcome = tool.call(&ctx, args).await;
        let (success, output, error) = match outcome {
            Ok(v) => (true, v, None),
            Err(e) => (false, Value::Null, Some(e.to_string())),
        };
        ToolResult {
            correlation_id: call.correlation_id.map(str::to_owned),
            tool: call.tool.to_owned(),
            success,
            output,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
            breadcrumbs: trail.take(),
        }
    }

    /// Runs a call for a model: a call that could not run is reported as `success: false`
    /// too, so the model sees `{"error": ...}` as the call's output and can correct itself.
    pub async fn run_reported(&self, call: Call<'_>) -> ToolResult {
        match self.check(&call) {
            Ok(args) => self.execute(call, args).await,
            Err(e) => refused(call, e),
        }
    }
}

/// A call that could not run, as the `success: false` result a model is shown.
pub fn refused(call: Call<'_>, e: RunError) -> ToolResult {
    ToolResult {
        correlation_id: call.correlation_id.map(str::to_owned),
        tool: call.tool.to_owned(),
        success: false,
        output: Value::Null,
        error: Some(e.to_string()),
        duration_ms: 0,
        breadcrumbs: Vec::new(),
    }
}

/// What a model is given as a call's output: the tool's output, or `{"error": ...}`.
pub fn model_output(r: &ToolResult) -> Value {
    if r.success {
        r.output.clone()
    } else {
        serde_json::json!({"error": r.error})
    }
}

/// Every argument error on one line: `path message; path message`.
fn summary(errors: &[ArgumentError]) -> String {
    errors
        .iter()
        .map(|e| {
            let path = if e.path.is_empty() {
                "(arguments)"
            } else {
                &e.path
            };
            format!("{path} {}", e.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
