//! The Responses tool loop: the one place where a model is asked, its function calls run
//! and their outputs fed back, until it answers in words.
//!
//! One turn posts the input items, the instructions and the offered tools to `/responses`.
//! Every `function_call` in the answer runs through [`Runner`] (looked up, its arguments
//! checked against the tool's schema; a call that cannot run is fed back to the model as
//! `{"error": ...}`, not raised), and the `function_call` plus its `function_call_output` are
//! appended before posting again. A call of a tool that was not offered is refused the same
//! way. The turn ends when an answer has no calls, at a `transfer_to_<agent>` call (the
//! handoff is returned for the caller to apply), or at the iteration cap. Usage is summed
//! over the loop. The server agents and the chatSupervisor's supervisor both run here.

use serde_json::{Value, json};

use super::ToolRegistry;
use super::run::{Args, Call, RunError, Runner, model_output, refused};
use crate::domain::SessionId;
use crate::upstream::responses::message_texts;
use crate::upstream::{UpstreamClient, UpstreamError};
use proto_events::events::ToolResult;

/// Sees each function call of a turn with its output (the supervisor's breadcrumbs).
pub type CallObserver<'a> = &'a (dyn Fn(&str, &Value, &Value) + Send + Sync);

/// Results recorded by an earlier run of the same task, by tool name and arguments: a call
/// found here is not run again (its recorded output is fed to the model, and no report is
/// made), so a task finished by another instance does not repeat a tool's effect.
pub type Replay<'a> = &'a (dyn Fn(&str, &Value) -> Option<Value> + Send + Sync);

/// What one turn needs.
pub struct TurnSpec<'a> {
    /// Model id.
    pub model: &'a str,
    /// System instructions (may be empty).
    pub instructions: &'a str,
    /// Names of registered tools the model may call.
    pub tools: &'a [String],
    /// Function tools passed through as they are (e.g. `transfer_to_*`).
    pub extra_tools: &'a [Value],
    /// Input items so far (memory + the new user item).
    pub input: Vec<Value>,
    /// Most model round trips.
    pub max_iterations: usize,
    /// `parallel_tool_calls` for the request; the API's default when `None`.
    pub parallel_tool_calls: Option<bool>,
    /// The session the tools run for, if any.
    pub session_id: Option<&'a SessionId>,
    /// Told of each call and its output, if set.
    pub observer: Option<CallObserver<'a>>,
    /// Earlier results to reuse instead of running a call again, if set.
    pub replay: Option<Replay<'a>>,
}

/// The outcome of one turn.
#[derive(Debug, Clone, Default)]
pub struct TurnResult {
    /// Id of the last response.
    pub id: String,
    /// The final answer's text (one line per message).
    pub output_text: String,
    /// The last response's output items.
    pub output: Vec<Value>,
    /// Names of the tools called, in order.
    pub tool_calls: Vec<String>,
    /// Usage summed over every round trip.
    pub usage: Value,
    /// Items this turn added after the input (calls, outputs, the final message).
    pub new_items: Vec<Value>,
    /// Round trips made.
    pub iterations: usize,
    /// True when the iteration cap ended the turn.
    pub capped: bool,
    /// The agent the model handed off to, if it called `transfer_to_<agent>`.
    pub handoff: Option<String>,
    /// One report per tool call the turn ran or refused (what `tool.result` publishes).
    pub tool_reports: Vec<ToolResult>,
}

/// Runs one turn.
pub async fn run_turn(
    upstream: &UpstreamClient,
    registry: &ToolRegistry,
    spec: TurnSpec<'_>,
) -> Result<TurnResult, UpstreamError> {
    let body = request_base(registry, &spec);
    let mut input = spec.input.clone();
    let first_new = input.len();
    let mut result = TurnResult {
        usage: json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}),
        ..TurnResult::default()
    };
    loop {
        let mut request = body.clone();
        request["input"] = json!(input);
        let resp = upstream.post_json("responses", &request).await?;
        result.iterations += 1;
        add_usage(&mut result.usage, &resp["usage"]);
        result.id = resp["id"].as_str().unwrap_or_default().to_owned();
        result.output = resp["output"].as_array().cloned().unwrap_or_default();
        let calls: Vec<Value> = of_type(&result.output, "function_call").cloned().collect();
        if calls.is_empty() {
            result.output_text = answer_text(&result.output);
            input.extend(of_type(&result.output, "message").cloned());
            break;
        }
        for call in calls {
            let output = run_call(upstream, registry, &spec, &call, &mut result).await;
            input.push(json!({"type": "function_call", "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"]}));
            input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": output.to_string()}));
        }
        if result.handoff.is_some() {
            break;
        }
        if result.iterations >= spec.max_iterations.max(1) {
            result.capped = true;
            result.output_text = format!(
                "(stopped after {} model round trips with tool calls still pending; answering with what is known)",
                result.iterations
            );
            break;
        }
    }
    result.new_items = input[first_new..].to_vec();
    Ok(result)
}

/// The request without its input: model, instructions, the offered tools' declarations.
fn request_base(registry: &ToolRegistry, spec: &TurnSpec<'_>) -> Value {
    let mut tools: Vec<Value> = spec
        .tools
        .iter()
        .filter_map(|n| registry.get(n))
        .map(|t| json!({"type": "function", "name": t.name.as_str(), "description": t.description, "parameters": t.parameters}))
        .collect();
    tools.extend(spec.extra_tools.iter().cloned());
    let mut body = json!({"model": spec.model});
    if !spec.instructions.is_empty() {
        body["instructions"] = json!(spec.instructions);
    }
    if !tools.is_empty() {
        body["tools"] = json!(tools);
    }
    if let Some(parallel) = spec.parallel_tool_calls {
        body["parallel_tool_calls"] = json!(parallel);
    }
    body
}

/// Runs one function call (or takes its handoff) and returns what the model is shown.
async fn run_call(
    upstream: &UpstreamClient,
    registry: &ToolRegistry,
    spec: &TurnSpec<'_>,
    call: &Value,
    result: &mut TurnResult,
) -> Value {
    let name = call["name"].as_str().unwrap_or_default();
    let arguments = call["arguments"].as_str().unwrap_or("{}");
    result.tool_calls.push(name.to_owned());
    let extra = spec.extra_tools.iter().any(|t| t["name"] == name);
    if let Some(target) = name.strip_prefix("transfer_to_")
        && extra
    {
        result.handoff = Some(target.to_owned());
        return json!({"assistant": target});
    }
    if let Some(replay) = spec.replay
        && let Ok(args) = serde_json::from_str::<Value>(arguments)
        && let Some(output) = replay(name, &args)
    {
        return output;
    }
    let one = Call {
        tool: name,
        args: Args::Text(arguments),
        correlation_id: call["call_id"].as_str(),
        session_id: spec.session_id,
    };
    let report = if extra || spec.tools.iter().any(|t| t == name) {
        let runner = Runner {
            registry,
            upstream: Some(upstream),
        };
        runner.run_reported(one).await
    } else {
        refused(one, RunError::Unknown(name.to_owned()))
    };
    let output = model_output(&report);
    if let Some(observe) = spec.observer {
        let args = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        observe(name, &args, &output);
    }
    result.tool_reports.push(report);
    output
}

fn of_type<'v>(items: &'v [Value], kind: &'v str) -> impl Iterator<Item = &'v Value> + 'v {
    items.iter().filter(move |i| i["type"] == kind)
}

/// The text of every message, one line each.
fn answer_text(output: &[Value]) -> String {
    of_type(output, "message")
        .map(|m| message_texts(&json!({"output": [m]})).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn add_usage(total: &mut Value, u: &Value) {
    for key in ["input_tokens", "output_tokens", "total_tokens"] {
        let sum = total[key].as_u64().unwrap_or(0) + u[key].as_u64().unwrap_or(0);
        total[key] = json!(sum);
    }
}

/// The parsed arguments of function call `call_id` among a turn's items (`null` when it is
/// not there); text that is not JSON stays a string.
pub fn call_arguments(items: &[Value], call_id: Option<&str>) -> Value {
    items
        .iter()
        .find(|i| i["type"] == "function_call" && i["call_id"].as_str() == call_id)
        .and_then(|i| i["arguments"].as_str())
        .map(|a| serde_json::from_str(a).unwrap_or_else(|_| Value::String(a.to_owned())))
        .unwrap_or(Value::Null)
}
