//! A rule-based fake of `POST /v1/responses` for multi-turn agent tests. It looks at the
//! last input item:
//! - a user message containing `call:<tool>:<json args>` → a `function_call` of that tool;
//! - a user message containing `handoff:<agent>` → a `transfer_to_<agent>` call;
//! - a `function_call_output` → a message `done after <name>: <output>`;
//! - otherwise a message `reply <n>: <text>`, `n` being how many user messages the input
//!   holds (so an answer shows how much memory was sent).
//!
//! A user message containing `slow` delays the answer by 400 ms; `hang` by 60 s.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn text_of(item: &Value) -> String {
    match &item["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A complete Responses API object around `output` (the Agents SDK parses it whole).
fn response(output: Value) -> Value {
    json!({
        "id": "resp_fake", "object": "response", "created_at": 1_700_000_000u64,
        "status": "completed", "model": "gpt-4.1-mini", "output": output,
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 12}
    })
}

fn message(text: &str) -> Value {
    response(
        json!([{"id": "msg_fake", "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}]),
    )
}

fn call(name: &str, args: &str, n: usize) -> Value {
    response(
        json!([{"id": format!("fc_{n}"), "type": "function_call", "status": "completed",
        "call_id": format!("call_{n}"), "name": name, "arguments": args}]),
    )
}

/// What the fake answers to one request body.
pub fn answer(body: &Value) -> (Value, u64) {
    let input = body["input"].as_array().cloned().unwrap_or_default();
    let users = input.iter().filter(|i| i["role"] == "user").count();
    let Some(last) = input.last() else {
        return (message("reply 0: "), 0);
    };
    if last["type"] == "function_call_output" {
        let name = input
            .iter()
            .rev()
            .find(|i| i["type"] == "function_call" && i["call_id"] == last["call_id"])
            .and_then(|i| i["name"].as_str())
            .unwrap_or("?")
            .to_owned();
        let out = last["output"].as_str().unwrap_or_default();
        return (message(&format!("done after {name}: {out}")), 0);
    }
    let text = text_of(last);
    let delay = if text.contains("hang") {
        60_000
    } else if text.contains("slow") {
        400
    } else {
        0
    };
    if let Some(rest) = text.split("call:").nth(1) {
        let (tool, args) = rest.split_once(':').unwrap_or((rest, "{}"));
        return (call(tool, args.trim(), input.len()), delay);
    }
    if let Some(rest) = text.split("handoff:").nth(1) {
        let agent: String = rest
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        return (
            call(&format!("transfer_to_{agent}"), "{}", input.len()),
            delay,
        );
    }
    (message(&format!("reply {users}: {text}")), delay)
}

/// Starts the fake (it also mints realtime client secrets).
pub async fn fake_model() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let (answer, delay) = answer(&body);
            ResponseTemplate::new(200)
                .set_body_json(answer)
                .set_delay(std::time::Duration::from_millis(delay))
        })
        .mount(&server)
        .await;
    // So `session2` works against the same fake.
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(super::client_secret_body()))
        .mount(&server)
        .await;
    server
}

/// The JSON bodies the fake received, in order.
pub async fn model_requests(server: &MockServer) -> Vec<Value> {
    super::received(server, "/v1/responses")
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}
