//! `POST /api/agent/run`: the tool loop against a fake upstream scripted per request.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

fn call(name: &str, args: &str, id: &str) -> Value {
    json!({"id": "r", "output": [{"type": "function_call", "call_id": id, "name": name, "arguments": args}],
           "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}})
}

/// A fake upstream that answers `script[i]` to the i-th request (the last one repeats).
async fn scripted(script: Vec<Value>) -> (MockServer, Arc<Mutex<usize>>) {
    let server = MockServer::start().await;
    let n = Arc::new(Mutex::new(0usize));
    let counter = n.clone();
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(move |_: &Request| {
            let mut i = counter.lock().unwrap();
            let body = script[(*i).min(script.len() - 1)].clone();
            *i += 1;
            ResponseTemplate::new(200).set_body_json(body)
        })
        .mount(&server)
        .await;
    (server, n)
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    received(server, "/v1/responses")
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_tool_call_runs_and_the_model_gets_its_output() {
    let (server, _) = scripted(vec![
        call("lookupNewSales", r#"{"category":"boots"}"#, "c1"),
        response_body("Boots are 20% off."),
    ])
    .await;
    let app = spawn_online(&server, |_| {}).await;
    let (st, r) = app
        .post_json("/api/agent/run", &json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Any boot deals?"}], "tools": ["lookupNewSales"]}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["output_text"], "Boots are 20% off.");
    assert_eq!(r["tool_calls"], json!(["lookupNewSales"]));
    assert_eq!(
        (r["iterations"].as_u64(), r["capped"].as_bool()),
        (Some(2), Some(false))
    );
    assert_eq!(
        r["usage"]["input_tokens"], 10,
        "summed over both round trips"
    );
    let sent = bodies(&server).await;
    assert!(
        sent[0].get("messages").is_none(),
        "messages are sent as input"
    );
    assert_eq!(
        sent[0]["input"],
        json!([{"role": "user", "content": "Any boot deals?"}])
    );
    assert_eq!(sent[0]["tools"][0]["name"], "lookupNewSales");
    let input = sent[1]["input"].as_array().unwrap();
    assert_eq!(input.len(), 3);
    assert_eq!(
        (input[1]["type"].as_str(), input[1]["call_id"].as_str()),
        (Some("function_call"), Some("c1"))
    );
    assert_eq!(input[2]["type"], "function_call_output");
    let out: Value = serde_json::from_str(input[2]["output"].as_str().unwrap()).unwrap();
    assert!(
        out["sales"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["type"] == "boots")
    );
}

#[tokio::test]
async fn tool_errors_are_fed_back_and_the_cap_ends_the_loop() {
    let (server, _) = scripted(vec![call("lookupNewSales", r#"{"category":"skis"}"#, "c1")]).await;
    let app = spawn_online(&server, |_| {}).await;
    let (st, r) = app
        .post_json(
            "/api/agent/run",
            &json!({"input": "deals?", "tools": ["lookupNewSales"], "max_iterations": 3}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["iterations"].as_u64(), r["capped"].as_bool()),
        (Some(3), Some(true))
    );
    assert!(
        r["output_text"]
            .as_str()
            .unwrap()
            .contains("stopped after 3")
    );
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 3);
    let fed_back = sent[1]["input"][2]["output"].as_str().unwrap();
    assert!(
        fed_back.contains("invalid arguments") && fed_back.contains("/category"),
        "{fed_back}"
    );
}

#[tokio::test]
async fn a_scenario_agent_brings_its_tools_and_hands_off() {
    let (server, _) = scripted(vec![call("transfer_to_returns", "{}", "h1")]).await;
    let app = spawn_online(&server, |_| {}).await;
    let (_, r) = app
        .post_json("/api/agent/run", &json!({"scenario_id": "retail", "agent": "salesAgent", "input": "I want to return this"}))
        .await;
    assert_eq!(r["handoff"], "returns", "{r}");
    let sent = bodies(&server).await;
    assert!(
        sent[0]["instructions"]
            .as_str()
            .unwrap()
            .contains("sales specialist")
    );
    let names: Vec<&str> = sent[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "lookupNewSales",
            "addToCart",
            "checkout",
            "transfer_to_authentication",
            "transfer_to_returns",
            "transfer_to_simulatedHuman"
        ]
    );
}

#[tokio::test]
async fn bad_requests_and_offline() {
    let app = spawn_app().await;
    let (st, b) = app
        .post_json("/api/agent/run", &json!({"input": "hi"}))
        .await;
    assert_error(st, &b, 503, "upstream_not_configured");
    for body in [
        json!({}),
        json!({"input": []}),
        json!({"input": 3}),
        json!({"input": "hi", "messages": []}),
        json!({"input": "hi", "tools": ["nope"]}),
        json!({"input": "hi", "agent": "salesAgent"}),
        json!({"input": "hi", "max_iterations": 0}),
    ] {
        let (st, b) = app.post_json("/api/agent/run", &body).await;
        assert_error(st, &b, 422, "invalid_body");
    }
    let (st, b) = app
        .post_json(
            "/api/agent/run",
            &json!({"input": "hi", "scenario_id": "retail", "agent": "boss"}),
        )
        .await;
    assert_error(st, &b, 400, "unknown_agent");
}
