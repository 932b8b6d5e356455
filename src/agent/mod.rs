//! Server-side agent turns: a tool loop over the Responses API.
//!
//! One turn posts the input items, the agent's instructions and its tools to `/responses`.
//! Every `function_call` in the answer runs through the tool registry (arguments validated
//! against the tool's schema; a failure is fed back to the model as the call's output, not
//! raised), and the `function_call` plus its `function_call_output` are appended before
//! posting again. The turn ends when an answer has no calls, or at the iteration cap (then
//! it answers with what is known and says so). Usage is summed over the loop. A call of a
//! `transfer_to_<agent>` tool ends the turn with that handoff for the caller to apply.

use serde_json::{Value, json};

use crate::tools::ToolRegistry;
use crate::tools::run::{Args, Call, Runner, model_output};
use crate::upstream::responses::message_texts;
use crate::upstream::{UpstreamClient, UpstreamError};
use proto_events::events::ToolResult;

/// What one turn needs.
pub struct TurnSpec<'a> {
    /// Model id.
    pub model: &'a str,
    /// System instructions (may be empty).
    pub instructions: &'a str,
    /// Names of registered tools the agent may call.
    pub tools: &'a [String],
    /// Function tools passed through as they are (e.g. `transfer_to_*`).
    pub extra_tools: &'a [Value],
    /// Input items so far (memory + the new user item).
    pub input: Vec<Value>,
    /// Most model round trips.
    pub max_iterations: usize,
}

/// The outcome of one turn.
#[derive(Debug, Clone, Default)]
pub struct TurnResult {
    /// Id of the last response.
    pub id: String,
    /// The final answer's text.
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
    /// One report per registered tool the turn ran (what `tool.result` publishes).
    pub tool_reports: Vec<ToolResult>,
}

fn add_usage(total: &mut Value, u: &Value) {
    for key in ["input_tokens", "output_tokens", "total_tokens"] {
        let sum = total[key].as_u64().unwrap_or(0) + u[key].as_u64().unwrap_or(0);
        total[key] = json!(sum);
    }
}

/// Runs one turn.
pub async fn run_turn(
    upstream: &UpstreamClient,
    registry: &ToolRegistry,
    spec: TurnSpec<'_>,
) -> Result<TurnResult, UpstreamError> {
    let mut tools: Vec<Value> = spec
        .tools
        .iter()
        .filter_map(|n| registry.get(n))
        .map(|t| json!({"type": "function", "name": t.name.as_str(), "description": t.description, "parameters": t.parameters}))
        .collect();
    tools.extend(spec.extra_tools.iter().cloned());
    let mut input = spec.input;
    let first_new = input.len();
    let mut result = TurnResult {
        usage: json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}),
        ..TurnResult::default()
    };
    loop {
        let mut body = json!({"model": spec.model, "input": input});
        if !spec.instructions.is_empty() {
            body["instructions"] = json!(spec.instructions);
        }
        if !tools.is_empty() {
            body["tools"] = json!(tools);
        }
        let resp = upstream.post_json("responses", &body).await?;
        result.iterations += 1;
        add_usage(&mut result.usage, &resp["usage"]);
        result.id = resp["id"].as_str().unwrap_or_default().to_owned();
        result.output = resp["output"].as_array().cloned().unwrap_or_default();
        let calls: Vec<Value> = result
            .output
            .iter()
            .filter(|i| i["type"] == "function_call")
            .cloned()
            .collect();
        if calls.is_empty() {
            result.output_text = message_texts(&resp).collect();
            input.extend(
                result
                    .output
                    .iter()
                    .filter(|i| i["type"] == "message")
                    .cloned(),
            );
            break;
        }
        for call in calls {
            let name = call["name"].as_str().unwrap_or_default().to_owned();
            result.tool_calls.push(name.clone());
            let offered = spec.extra_tools.iter().any(|t| t["name"] == name.as_str());
            let output = if let Some(target) = name.strip_prefix("transfer_to_")
                && offered
            {
                result.handoff = Some(target.to_owned());
                json!({"assistant": target})
            } else {
                let runner = Runner {
                    registry,
                    upstream: Some(upstream),
                };
                let report = runner
                    .run_reported(Call {
                        tool: &name,
                        args: Args::Text(call["arguments"].as_str().unwrap_or("{}")),
                        correlation_id: call["call_id"].as_str(),
                        session_id: None,
                    })
                    .await;
                let output = model_output(&report);
                result.tool_reports.push(report);
                output
            };
            input.push(json!({"type": "function_call", "call_id": call["call_id"], "name": name, "arguments": call["arguments"]}));
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
