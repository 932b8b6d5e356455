//! `/api/sdk/session/*`: multi-turn server agents with memory, against a rule-based fake
//! model (see `support::model`).

use serde_json::{Value, json};

use crate::support::channel::{API_KEY, next_json};
use crate::support::model::{fake_model, model_requests};
use crate::support::*;

/// Sends `body` to `path` with `token` as the bearer (`GET`/`DELETE` put it in the query).
pub async fn call(
    app: &TestApp,
    m: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut rb = match m {
        "GET" => app.client.get(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        _ => app.client.post(app.url(path)).json(&body),
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An agent session: id and token.
pub struct AgentSession {
    pub id: String,
    pub token: String,
}

pub async fn create(app: &TestApp, body: Value) -> AgentSession {
    let (st, b) = call(app, "POST", "/api/sdk/session/create", None, body).await;
    assert_eq!(st, 201, "{b}");
    AgentSession {
        id: b["session_id"].as_str().unwrap().to_owned(),
        token: b["token"].as_str().unwrap().to_owned(),
    }
}

pub async fn say(app: &TestApp, a: &AgentSession, text: &str) -> Value {
    let (st, b) = call(
        app,
        "POST",
        "/api/sdk/session/message",
        Some(&a.token),
        json!({"session_id": a.id, "user_input": text}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    b
}

pub async fn transcript(app: &TestApp, a: &AgentSession) -> Vec<Value> {
    let (st, b) = call(
        app,
        "GET",
        &format!("/api/sdk/session/transcript?session_id={}", a.id),
        Some(&a.token),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["length"].as_u64().unwrap() as usize,
        b["items"].as_array().unwrap().len()
    );
    b["items"].as_array().unwrap().clone()
}

fn brief() -> Value {
    json!({"agent_name": "helper", "instructions": "Answer briefly."})
}

#[tokio::test]
async fn two_turns_share_memory_and_the_model_sees_it_in_order() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(&app, brief()).await;
    let r1 = say(&app, &a, "hello").await;
    assert_eq!(
        (
            r1["final_output"].as_str(),
            r1["new_items_len"].as_u64(),
            r1["agent_name"].as_str()
        ),
        (Some("reply 1: hello"), Some(1), Some("helper"))
    );
    let r2 = say(&app, &a, "and again").await;
    assert_eq!(r2["final_output"], "reply 2: and again");
    let sent = model_requests(&model).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["instructions"], "Answer briefly.");
    assert_eq!(sent[0]["model"], "gpt-4.1-mini");
    let items = transcript(&app, &a).await;
    assert_eq!(items.len(), 4);
    assert_eq!(items[0], json!({"role": "user", "content": "hello"}));
    assert_eq!(items[1]["content"][0]["text"], "reply 1: hello");
    assert_eq!(items[2], json!({"role": "user", "content": "and again"}));
    assert_eq!(
        sent[1]["input"],
        json!(items[..3]),
        "the second turn sends exactly the memory plus the new user item"
    );
    let (_, last) = call(
        &app,
        "GET",
        &format!("/api/sdk/session/transcript?session_id={}&limit=1", a.id),
        Some(&a.token),
        Value::Null,
    )
    .await;
    assert_eq!(last["items"], json!([items[3]]));
}

#[tokio::test]
async fn tools_run_through_the_registry_and_land_in_memory() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(
        &app,
        json!({"instructions": "Sell boards.", "tools": ["lookupNewSales"], "model": "gpt-4.1"}),
    )
    .await;
    let r = say(&app, &a, r#"call:lookupNewSales:{"category":"boots"}"#).await;
    assert_eq!(r["tool_calls"], json!(["lookupNewSales"]));
    assert_eq!(
        (r["new_items_len"].as_u64(), r["iterations"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        r["usage"]["total_tokens"], 24,
        "summed over both round trips"
    );
    assert!(
        r["final_output"]
            .as_str()
            .unwrap()
            .starts_with("done after lookupNewSales:")
    );
    let items = transcript(&app, &a).await;
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("user"))
        .collect();
    assert_eq!(
        kinds,
        ["user", "function_call", "function_call_output", "message"]
    );
    let out: Value = serde_json::from_str(items[2]["output"].as_str().unwrap()).unwrap();
    assert!(
        out["sales"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["type"] == "boots"),
        "{out}"
    );
    let sent = model_requests(&model).await;
    assert_eq!(sent[0]["model"], "gpt-4.1");
    assert_eq!(sent[0]["tools"][0]["name"], "lookupNewSales");
    // A tool error is fed back to the model, not raised.
    let r = say(&app, &a, r#"call:lookupNewSales:{"category":"skis"}"#).await;
    assert!(
        r["final_output"]
            .as_str()
            .unwrap()
            .contains("invalid arguments"),
        "{r}"
    );
}

#[tokio::test]
async fn a_handoff_continues_the_turn_with_the_new_agent_and_sticks() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(
        &app,
        json!({"scenario_id": "retail", "agent_name": "salesAgent"}),
    )
    .await;
    let r = say(&app, &a, "handoff:returns please").await;
    assert_eq!(r["agent_name"], "returns", "{r}");
    assert_eq!(
        r["handoffs"],
        json!([{"from": "salesAgent", "to": "returns"}])
    );
    assert_eq!(r["tool_calls"], json!(["transfer_to_returns"]));
    assert_eq!(
        r["final_output"],
        r#"done after transfer_to_returns: {"assistant":"returns"}"#
    );
    let sent = model_requests(&model).await;
    assert_eq!(sent.len(), 2);
    let instr = |i: usize| sent[i]["instructions"].as_str().unwrap().to_owned();
    assert!(instr(0).contains("sales"), "{}", instr(0));
    assert!(instr(1).contains("returns and exchanges"), "{}", instr(1));
    assert!(
        sent[1]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "lookupOrders")
    );
    let items = transcript(&app, &a).await;
    assert_eq!(
        items[1]["name"], "transfer_to_returns",
        "the transcript records the handoff"
    );
    // The next turn starts with the new agent.
    say(&app, &a, "where is my order").await;
    let sent = model_requests(&model).await;
    assert!(
        sent[2]["instructions"]
            .as_str()
            .unwrap()
            .contains("returns and exchanges")
    );
    // An agent that is not offered is not a handoff: the call fails back to the model.
    let r = say(&app, &a, "handoff:nobody").await;
    assert_eq!(r["agent_name"], "returns");
    assert!(
        r["final_output"].as_str().unwrap().contains("unknown tool"),
        "{r}"
    );
}

#[tokio::test]
async fn a_linked_session_publishes_switches_tool_results_and_answers() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let rt = app.session_for("retail&root_agent=salesAgent").await;
    let (mut ws, _) = app.connect(&rt, None).await;
    // Linking needs the realtime session's token.
    let body = json!({"realtime_session_id": rt.id});
    let (st, b) = call(&app, "POST", "/api/sdk/session/create", None, body.clone()).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = call(
        &app,
        "POST",
        "/api/sdk/session/create",
        Some(&rt.token),
        body,
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(
        (b["scenario_id"].as_str(), b["agent_name"].as_str()),
        (Some("customerServiceRetail"), Some("salesAgent"))
    );
    let a = AgentSession {
        id: b["session_id"].as_str().unwrap().into(),
        token: b["token"].as_str().unwrap().into(),
    };
    let r = say(&app, &a, "handoff:returns").await;
    assert_eq!(r["published"], true);
    let switch = next_json(&mut ws).await;
    assert_eq!(switch["type"], "agent.switch");
    assert_eq!(
        (
            switch["data"]["from"].as_str(),
            switch["data"]["to"].as_str(),
            switch["data"]["source"].as_str()
        ),
        (Some("salesAgent"), Some("returns"), Some("model"))
    );
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["type"], "agent.message");
    assert_eq!(
        (
            msg["data"]["agent"].as_str(),
            msg["data"]["agent_session_id"].as_str()
        ),
        (Some("returns"), Some(a.id.as_str()))
    );
    assert_eq!(msg["data"]["text"], r["final_output"]);
    let (_, s) = app.session_state(&rt).await;
    assert_eq!(s["active_agent"], "returns");
    say(
        &app,
        &a,
        r#"call:lookupOrders:{"phoneNumber":"+1 206 555 0100"}"#,
    )
    .await;
    let tr = next_json(&mut ws).await;
    assert_eq!(tr["type"], "tool.result");
    assert_eq!(
        (tr["data"]["tool"].as_str(), tr["data"]["success"].as_bool()),
        (Some("lookupOrders"), Some(true))
    );
    assert_eq!(next_json(&mut ws).await["type"], "agent.message");
}

#[tokio::test]
async fn a_retried_client_message_id_returns_the_first_answer_once() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(&app, brief()).await;
    let body = json!({"session_id": a.id, "user_input": "slow hello", "client_message_id": "m-1"});
    let (r1, r2) = tokio::join!(
        call(
            &app,
            "POST",
            "/api/sdk/session/message",
            Some(&a.token),
            body.clone()
        ),
        call(
            &app,
            "POST",
            "/api/sdk/session/message",
            Some(&a.token),
            body.clone()
        ),
    );
    assert_eq!((r1.0, r2.0), (200, 200), "{r1:?} {r2:?}");
    assert_eq!(r1.1["final_output"], r2.1["final_output"]);
    assert_eq!(
        [
            r1.1["duplicate"].as_bool().unwrap(),
            r2.1["duplicate"].as_bool().unwrap()
        ]
        .iter()
        .filter(|d| **d)
        .count(),
        1
    );
    let (st, r3) = call(
        &app,
        "POST",
        "/api/sdk/session/message",
        Some(&a.token),
        body,
    )
    .await;
    assert_eq!((st, r3["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(model_requests(&model).await.len(), 1, "one turn ran");
    assert_eq!(transcript(&app, &a).await.len(), 2, "appended once");
}

#[tokio::test]
async fn concurrent_messages_run_as_whole_turns_one_after_the_other() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(
        &app,
        json!({"instructions": "x", "tools": ["lookupNewSales"]}),
    )
    .await;
    let t1 = r#"slow call:lookupNewSales:{"category":"boots"}"#;
    let (r1, r2) = tokio::join!(say(&app, &a, t1), say(&app, &a, "slow second"));
    let items = transcript(&app, &a).await;
    assert_eq!(items.len(), 6, "{items:?}");
    let users: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| i["role"] == "user")
        .map(|(n, _)| n)
        .collect();
    // Either order, but each turn's items are contiguous, and the later turn saw the
    // earlier one.
    let first_is_tool_turn = users == [0, 4];
    assert!(
        first_is_tool_turn || users == [0, 2],
        "interleaved: {items:?}"
    );
    assert!(
        r1["final_output"]
            .as_str()
            .unwrap()
            .starts_with("done after")
    );
    let want = if first_is_tool_turn {
        "reply 2: slow second"
    } else {
        "reply 1: slow second"
    };
    assert_eq!(r2["final_output"], want);
}

#[tokio::test]
async fn pop_and_clear_edit_the_conversation() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(&app, brief()).await;
    say(&app, &a, "one").await;
    let body = json!({"session_id": a.id});
    let (st, p) = call(
        &app,
        "POST",
        "/api/sdk/session/pop",
        Some(&a.token),
        body.clone(),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["item"]["content"][0]["text"], "reply 1: one");
    assert_eq!(
        transcript(&app, &a).await,
        [json!({"role": "user", "content": "one"})]
    );
    let (st, _) = call(
        &app,
        "DELETE",
        &format!("/api/sdk/session/transcript?session_id={}", a.id),
        Some(&a.token),
        Value::Null,
    )
    .await;
    assert_eq!(st, 204);
    assert!(transcript(&app, &a).await.is_empty());
    let (_, p) = call(&app, "POST", "/api/sdk/session/pop", Some(&a.token), body).await;
    assert_eq!(p["item"], Value::Null);
    assert_eq!(
        say(&app, &a, "fresh").await["final_output"],
        "reply 1: fresh",
        "still usable"
    );
}

#[tokio::test]
async fn a_failed_turn_writes_nothing_and_can_be_retried() {
    let upstream = upstream_with("/v1/responses", wiremock::ResponseTemplate::new(500)).await;
    let app = spawn_online(&upstream, |_| {}).await;
    let a = create(&app, brief()).await;
    let body = json!({"session_id": a.id, "user_input": "hi", "client_message_id": "m-9"});
    for _ in 0..2 {
        let (st, b) = call(
            &app,
            "POST",
            "/api/sdk/session/message",
            Some(&a.token),
            body.clone(),
        )
        .await;
        assert_eq!(st, 502, "{b}");
    }
    assert!(transcript(&app, &a).await.is_empty());
}

#[tokio::test]
async fn who_may_call_and_what_is_refused() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let a = create(&app, json!({"session_id": "conv-42", "instructions": "x"})).await;
    let b = create(&app, brief()).await;
    let msg = |id: &str| json!({"session_id": id, "user_input": "hi"});
    let path = "/api/sdk/session/message";
    let (st, e) = call(&app, "POST", path, None, msg(&a.id)).await;
    assert_error(st, &e, 401, "unauthorized");
    let (st, e) = call(&app, "POST", path, Some(&b.token), msg(&a.id)).await;
    assert_error(st, &e, 401, "unauthorized");
    let rt = app.new_session().await;
    let (st, e) = call(&app, "POST", path, Some(&rt.token), msg(&rt.id)).await;
    assert_error(st, &e, 401, "unauthorized");
    let (st, e) = call(
        &app,
        "GET",
        &format!("/api/sdk/session/transcript?session_id={}", rt.id),
        Some(&rt.token),
        Value::Null,
    )
    .await;
    assert_error(st, &e, 401, "unauthorized");
    let (st, e) = call(
        &app,
        "POST",
        path,
        Some(&a.token),
        json!({"session_id": a.id, "user_input": "  "}),
    )
    .await;
    assert_error(st, &e, 400, "invalid_body");
    let (st, e) = call(&app, "POST", path, Some(API_KEY), msg("never-made")).await;
    assert_error(st, &e, 404, "unknown_agent_session");
    let (st, e) = call(
        &app,
        "POST",
        path,
        Some(&a.token),
        json!({"session_id": a.id, "user_input": "hi", "client_message_id": "a b"}),
    )
    .await;
    assert_error(st, &e, 400, "invalid_body");
    // Creating an existing id: only for its token holder.
    let again = json!({"session_id": "conv-42", "instructions": "y"});
    let (st, e) = call(&app, "POST", "/api/sdk/session/create", None, again.clone()).await;
    assert_error(st, &e, 409, "agent_session_exists");
    let (st, r) = call(
        &app,
        "POST",
        "/api/sdk/session/create",
        Some(&a.token),
        again,
    )
    .await;
    assert_eq!((st, r["created"].as_bool()), (200, Some(false)), "{r}");
    for (body, code) in [
        (json!({}), "invalid_body"),
        (
            json!({"instructions": "x", "tools": ["nope"]}),
            "unknown_tool",
        ),
        (
            json!({"session_id": "a b", "instructions": "x"}),
            "invalid_session_id",
        ),
        (
            json!({"scenario_id": "retail", "agent_name": "boss"}),
            "unknown_agent",
        ),
        (
            json!({"scenario_id": "retail", "tools": ["checkout"]}),
            "invalid_body",
        ),
        (json!({"scenario_id": "nope"}), "unknown_scenario"),
    ] {
        let (st, e) = call(&app, "POST", "/api/sdk/session/create", None, body.clone()).await;
        assert_error(st, &e, 400, code);
    }
    let offline = spawn_app().await;
    let c = create(&offline, brief()).await;
    let (st, e) = call(&offline, "POST", path, Some(&c.token), msg(&c.id)).await;
    assert_error(st, &e, 503, "upstream_not_configured");
}

#[tokio::test]
async fn the_supervisor_leaves_breadcrumbs_in_the_tool_result() {
    let model = fake_model().await;
    let app = spawn_online(&model, |_| {}).await;
    let rt = app.session_for("chatSupervisor").await;
    let (mut ws, _) = app.connect(&rt, None).await;
    let (st, r) = call(
        &app,
        "POST",
        "/api/tools/execute",
        Some(&rt.token),
        json!({"session_id": rt.id, "tool": "getNextResponseFromSupervisor",
               "args": {"relevantContextFromLastUserMessage": r#"call:lookupPolicyDocument:{"topic":"roaming"}"#}}),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert!(
        r["output"]["nextResponse"]
            .as_str()
            .unwrap()
            .starts_with("done after lookupPolicyDocument"),
        "{r}"
    );
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "tool.result");
    let crumbs = ev["data"]["breadcrumbs"].as_array().expect("breadcrumbs");
    assert_eq!(crumbs.len(), 2, "{crumbs:?}");
    assert_eq!(
        crumbs[0]["title"],
        "supervisor function call: lookupPolicyDocument"
    );
    assert_eq!(crumbs[0]["data"], json!({"topic": "roaming"}));
    assert_eq!(
        crumbs[1]["title"],
        "supervisor function call result: lookupPolicyDocument"
    );
    assert_eq!(ev["data"]["output"], r["output"]);
}
