//! Unified call setup and the sideband against a fake Realtime upstream (HTTP + WebSocket).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::channel::{API_KEY, Sess, Ws, next_json};
use crate::support::realtime::*;
use crate::support::*;

pub(crate) struct Setup {
    pub app: TestApp,
    pub fake: FakeRealtime,
    pub model: wiremock::MockServer,
    pub s: Sess,
    pub ws: Ws,
}

pub(crate) async fn setup(root: &str) -> Setup {
    let (model, fake, app) = spawn_with_realtime(|c| {
        c.deny_patterns = vec!["forbidden".into()];
    })
    .await;
    let s = app.session_for(&format!("retail&root_agent={root}")).await;
    let (ws, _) = app.connect(&s, None).await;
    Setup {
        app,
        fake,
        model,
        s,
        ws,
    }
}

pub(crate) async fn start_call(t: &mut Setup) {
    let resp = t
        .app
        .client
        .post(
            t.app
                .url(&format!("/api/realtime/calls?session_id={}", t.s.id)),
        )
        .bearer_auth(&t.s.token)
        .header("content-type", "application/sdp")
        .body("v=0\r\no=- offer\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/sdp");
    assert_eq!(
        resp.headers()["location"],
        format!("/api/realtime/calls/{CALL_ID}")
    );
    assert!(resp.text().await.unwrap().starts_with("v=0"));
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["call_id"].as_str()),
        (Some("call.started"), Some(CALL_ID))
    );
    t.fake.wait_attaches(1).await;
    let (auth, query) = t.fake.attaches.lock().unwrap()[0].clone();
    assert_eq!(
        auth,
        format!("Bearer {UPSTREAM_KEY}"),
        "the sideband uses the standard key"
    );
    assert_eq!(query, format!("call_id={CALL_ID}"));
}

pub(crate) async fn control(app: &TestApp, sid: &str, bearer: &str, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/api/sessions/{sid}/control")))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    split(resp).await
}

#[tokio::test]
async fn the_call_is_created_upstream_with_the_agent_config() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    let req = received(&t.model, "/v1/realtime/calls").await;
    assert_eq!(req.len(), 1);
    assert_authorized(&req[0]);
    let body = String::from_utf8_lossy(&req[0].body).to_string();
    assert!(
        body.contains("name=\"sdp\"") && body.contains("o=- offer"),
        "{body}"
    );
    assert!(
        body.contains("name=\"session\"")
            && body.contains("transfer_to_returns")
            && body.contains("lookupNewSales"),
        "{body}"
    );
    assert!(
        body.contains("gpt-4o-mini-transcribe"),
        "transcription is always on: {body}"
    );
}

#[tokio::test]
async fn tool_calls_are_answered_once_and_published() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    t.fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    let got = t
        .fake
        .wait_for("the tool output", |e| {
            of_type(e, "response.create").len() == 1
        })
        .await;
    let outs = of_type(&got, "conversation.item.create");
    assert_eq!(outs.len(), 1);
    assert_eq!(
        (
            outs[0]["item"]["type"].as_str(),
            outs[0]["item"]["call_id"].as_str()
        ),
        (Some("function_call_output"), Some("c1"))
    );
    let output: Value = serde_json::from_str(outs[0]["item"]["output"].as_str().unwrap()).unwrap();
    assert!(
        output["sales"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["type"] == "boots")
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["data"]["correlation_id"].as_str(),
            ev["data"]["success"].as_bool()
        ),
        (Some("tool.result"), Some("c1"), Some(true))
    );
    // The same call again (as response.output_item.done): not answered twice.
    t.fake.emit(json!({"type": "response.output_item.done", "item": {"type": "function_call", "call_id": "c1", "name": "lookupNewSales", "arguments": "{\"category\":\"boots\"}"}}));
    t.fake.emit(function_call(
        "c2",
        "lookupNewSales",
        r#"{"category":"skis"}"#,
    ));
    let got = t
        .fake
        .wait_for("the second output", |e| {
            of_type(e, "response.create").len() == 2
        })
        .await;
    let ids: Vec<&str> = of_type(&got, "conversation.item.create")
        .iter()
        .map(|e| e["item"]["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["c1", "c2"],
        "c1 answered once; a bad argument is answered with the error"
    );
    assert!(got.iter().any(|e| {
        e["item"]["output"]
            .as_str()
            .is_some_and(|o| o.contains("invalid arguments"))
    }));
}

#[tokio::test]
async fn a_transfer_updates_the_session_then_answers_and_switches() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    t.fake
        .emit(function_call("h1", "transfer_to_returns", "{}"));
    let got = t
        .fake
        .wait_for("the transfer", |e| {
            !of_type(e, "response.create").is_empty()
        })
        .await;
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "session.update",
            "conversation.item.create",
            "response.create"
        ]
    );
    let session = &got[0]["session"];
    assert!(
        session["instructions"]
            .as_str()
            .unwrap()
            .contains("returns and exchanges")
    );
    assert!(
        session["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "lookupOrders")
    );
    assert_eq!(got[1]["item"]["output"], r#"{"assistant":"returns"}"#);
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["data"]["to"].as_str(),
            ev["data"]["source"].as_str()
        ),
        (Some("agent.switch"), Some("returns"), Some("model"))
    );
    let (_, st) = t.app.session_state(&t.s).await;
    assert_eq!(st["active_agent"], "returns");
}

#[tokio::test]
async fn transcripts_are_mirrored_orchestrated_and_moderated() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    t.fake.emit(
        json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1",
                       "transcript": "This is ridiculous, I want a manager"}),
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["text"].as_str()),
        (
            Some("transcript.user"),
            Some("This is ridiculous, I want a manager")
        )
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["data"]["to"].as_str(),
            ev["data"]["source"].as_str()
        ),
        (
            Some("agent.switch"),
            Some("simulatedHuman"),
            Some("orchestrator")
        )
    );
    t.fake
        .wait_for("the orchestrated session.update", |e| {
            !of_type(e, "session.update").is_empty()
        })
        .await;
    t.fake.emit(json!({"type": "response.output_audio_transcript.done", "response_id": "r9", "item_id": "a1",
                       "transcript": "That is forbidden knowledge."}));
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["agent"].as_str()),
        (Some("transcript.assistant"), Some("simulatedHuman"))
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["source"].as_str()),
        (Some("moderation.flagged"), Some("assistant"))
    );
    let got = t
        .fake
        .wait_for("the steering", |e| {
            !of_type(e, "response.create").is_empty()
        })
        .await;
    let steer = of_type(&got, "conversation.item.create");
    assert_eq!(steer[0]["item"]["role"], "system");
    assert!(
        steer[0]["item"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("denied_phrase")
    );
    // Both sides of the call are in the agent-memory layout, for a server agent to continue.
    let items = t.app.state.memory.get_items(&t.s.id, None).await.unwrap();
    assert_eq!(
        items,
        [
            json!({"role": "user", "content": "This is ridiculous, I want a manager"}),
            json!({"role": "assistant", "content": "That is forbidden knowledge."})
        ]
    );
}

#[tokio::test]
async fn control_commands_hangup_and_reattach() {
    let mut t = setup("salesAgent").await;
    let (st, e) = control(&t.app, &t.s.id, API_KEY, json!({"action": "hangup"})).await;
    assert_error(st, &e, 409, "no_active_call");
    start_call(&mut t).await;
    let (st, e) = control(
        &t.app,
        &t.s.id,
        &t.s.token,
        json!({"action": "say", "text": "hi"}),
    )
    .await;
    assert_error(st, &e, 403, "forbidden");
    let (st, e) = control(
        &t.app,
        &t.s.id,
        &t.s.token,
        json!({"action": "switch_agent", "agent": "boss"}),
    )
    .await;
    assert_error(st, &e, 400, "unknown_agent");
    let (st, a) = control(
        &t.app,
        &t.s.id,
        API_KEY,
        json!({"action": "say", "text": "Welcome back!"}),
    )
    .await;
    assert_eq!(
        (st, a["applied_by"].as_str()),
        (200, Some(t.app.state.instance_id.as_str())),
        "{a}"
    );
    t.fake
        .wait_for("the say", |e| {
            e.iter().any(|x| x.to_string().contains("Welcome back!"))
        })
        .await;
    let (st, _) = control(
        &t.app,
        &t.s.id,
        &t.s.token,
        json!({"action": "switch_agent", "agent": "returns"}),
    )
    .await;
    assert_eq!(st, 200);
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["source"].as_str()),
        (Some("agent.switch"), Some("client"))
    );
    // A dropped sideband socket is re-attached.
    t.fake.drop_all();
    t.fake.wait_attaches(2).await;
    t.fake.emit(function_call(
        "c7",
        "lookupOrders",
        r#"{"phoneNumber":"+1 206 555 0100"}"#,
    ));
    t.fake
        .wait_for("an answer after re-attaching", |e| {
            e.iter().any(|x| x["item"]["call_id"] == "c7")
        })
        .await;
    assert_eq!(next_json(&mut t.ws).await["type"], "tool.result");
    let resp = t
        .app
        .client
        .post(t.app.url(&format!("/api/realtime/calls/{CALL_ID}/hangup")))
        .bearer_auth(&t.s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["reason"].as_str()),
        (Some("call.ended"), Some("hangup"))
    );
    assert_eq!(
        received(&t.model, &format!("/v1/realtime/calls/{CALL_ID}/hangup"))
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.fake.attaches.lock().unwrap().len(),
        2,
        "no re-attach after a hangup"
    );
    let (st, e) = control(&t.app, &t.s.id, API_KEY, json!({"action": "hangup"})).await;
    assert_error(st, &e, 409, "no_active_call");
}

#[tokio::test]
async fn bad_offers_are_400() {
    let t = setup("salesAgent").await;
    let url = t
        .app
        .url(&format!("/api/realtime/calls?session_id={}", t.s.id));
    let resp = t
        .app
        .client
        .post(&url)
        .bearer_auth(&t.s.token)
        .header("content-type", "application/sdp")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (st, e) = split(resp).await;
    assert_error(st, &e, 400, "invalid_sdp");
    let resp = t
        .app
        .client
        .post(&url)
        .header("content-type", "application/sdp")
        .body("v=0")
        .send()
        .await
        .unwrap();
    let (st, e) = split(resp).await;
    assert_error(st, &e, 401, "unauthorized");
    let resp = t
        .app
        .client
        .post(&url)
        .bearer_auth(&t.s.token)
        .json(&json!({"sdp": "v=0", "root_agent": "boss"}))
        .send()
        .await
        .unwrap();
    let (st, e) = split(resp).await;
    assert_error(st, &e, 400, "unknown_agent");
}

/// A switch made outside the call (the orchestrator over REST) reaches the live call: its
/// owner sends the new agent's `session.update`, and `agent.switch` is published once.
#[tokio::test]
async fn an_orchestrated_switch_over_rest_updates_the_live_call() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    let before = of_type(&t.fake.received.lock().unwrap(), "session.update").len();
    let resp = t
        .app
        .client
        .post(t.app.url("/api/orchestrate"))
        .bearer_auth(&t.s.token)
        .json(&json!({"session_id": t.s.id, "last_user_text": "This is ridiculous, I want a manager"}))
        .send()
        .await
        .unwrap();
    let (st, d) = split(resp).await;
    assert_eq!((st, d["changed"].as_bool()), (200, Some(true)), "{d}");
    let to = d["chosen_root"].as_str().unwrap().to_owned();
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["to"].as_str()),
        (Some("agent.switch"), Some(to.as_str()))
    );
    let got = t
        .fake
        .wait_for("the call's session.update", |e| {
            of_type(e, "session.update").len() > before
        })
        .await;
    let update = of_type(&got, "session.update").last().unwrap().to_string();
    assert!(
        update.contains("transfer_to_"),
        "the new agent's tools: {update}"
    );
    // The owner applied it without a second agent.switch.
    t.app.publish(&t.s.id, "x.marker", json!({})).await;
    assert_eq!(next_json(&mut t.ws).await["type"], "x.marker");
}
