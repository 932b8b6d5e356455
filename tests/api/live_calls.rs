//! GPT-Live calls beside Realtime ones, from the same endpoint: the strict Live create body,
//! the sideband at `/live/sessions/{id}/attach`, control commands as Live client events,
//! and `session.closed` as `call.ended` with the upstream's reason.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::realtime_calls::control;
use crate::support::channel::{API_KEY, Sess, Ws, next_json};
use crate::support::realtime::*;
use crate::support::*;

const LIVE_ID: &str = "live_u7_EWIVap3oTest";

/// Mounts Live's create: `201` JSON with the session id and the answer (no `Location`).
async fn mount_live(model: &MockServer, status: u16, body: Value) {
    Mock::given(method("POST"))
        .and(path("/v1/live/sessions"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(model)
        .await;
}

fn created() -> Value {
    json!({"session": {"id": LIVE_ID, "model": "gpt-live-1.1", "status": "active"},
           "transport": {"type": "webrtc", "sdp": "v=0\r\no=- live answer\r\n"}})
}

struct Live {
    app: TestApp,
    fake: FakeRealtime,
    model: MockServer,
    s: Sess,
    ws: Ws,
}

async fn live_session(scenario: &str) -> Live {
    live_session_with(scenario, |_| {}).await
}

/// [`live_session`] with the settings adjusted.
async fn live_session_with(
    scenario: &str,
    adjust: impl FnOnce(&mut switchboard::config::Config) + Send + 'static,
) -> Live {
    let (model, fake, app) = spawn_with_realtime(adjust).await;
    let s = app.session_for(scenario).await;
    let (ws, _) = app.connect(&s, None).await;
    Live {
        app,
        fake,
        model,
        s,
        ws,
    }
}

async fn post_call(t: &Live, path_and_query: &str, ct: &str, body: String) -> reqwest::Response {
    t.app
        .client
        .post(t.app.url(path_and_query))
        .bearer_auth(&t.s.token)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn live_creates(model: &MockServer) -> Vec<Value> {
    model
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/live/sessions")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_live_scenario_call_uses_the_strict_live_create_and_its_sideband() {
    let mut t = live_session("customerServiceRetailLive").await;
    mount_live(&t.model, 201, created()).await;
    let resp = post_call(
        &t,
        &format!("/api/calls?session_id={}", t.s.id),
        "application/sdp",
        "v=0\r\no=- offer\r\n".into(),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/sdp");
    assert_eq!(resp.headers()["location"], format!("/api/calls/{LIVE_ID}"));
    assert_eq!(resp.text().await.unwrap(), "v=0\r\no=- live answer\r\n");

    let creates = live_creates(&t.model).await;
    assert_eq!(creates.len(), 1);
    let body = &creates[0];
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["session", "transport"],
        "only the two keys Live allows"
    );
    assert_eq!(
        body["transport"],
        json!({"type": "webrtc", "sdp": "v=0\r\no=- offer\r\n"})
    );
    let session = body["session"].as_object().unwrap();
    let mut fields: Vec<&str> = session.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["audio", "delegation", "instructions", "model"]);
    assert_eq!(session["model"], "gpt-live-1.1");
    assert_eq!(session["audio"], json!({"output": {"voice": "marin"}}));
    assert_eq!(session["delegation"], json!({"type": "client"}));
    let prompt = session["instructions"].as_str().unwrap();
    assert!(
        prompt.contains("Snowy Peak Boards") && prompt.contains("Delegate"),
        "{prompt}"
    );
    assert!(
        live_creates(&t.model).await.len() == 1
            && t.model
                .received_requests()
                .await
                .unwrap()
                .iter()
                .all(|r| r.url.path() != "/v1/realtime/calls"),
        "no Realtime call was made"
    );

    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["call_id"].as_str()),
        (Some("call.started"), Some(LIVE_ID))
    );
    t.fake.wait_attaches(1).await;
    assert_eq!(
        t.fake.paths.lock().unwrap()[0],
        format!("/v1/live/sessions/{LIVE_ID}/attach")
    );
    assert_eq!(
        t.fake.attaches.lock().unwrap()[0].0,
        format!("Bearer {UPSTREAM_KEY}"),
        "the sideband attaches with the project key"
    );

    // The upstream ends the session: call.ended with our reason and its own.
    t.fake
        .emit(json!({"type": "session.closed", "reason": "remote_hangup",
                       "session": {"id": LIVE_ID}, "usage": {"seconds": 42}}));
    let ev = next_json(&mut t.ws).await;
    assert_eq!(ev["type"], "call.ended", "{ev}");
    assert_eq!(ev["data"]["call_id"], LIVE_ID);
    assert_eq!(ev["data"]["reason"], "remote_hangup");
    assert_eq!(ev["data"]["upstream_reason"], "remote_hangup");
    t.fake.wait_closed().await;
}

#[tokio::test]
async fn a_live_session_gets_no_browser_key() {
    let (_model, _fake, app) = spawn_with_realtime(|_| {}).await;
    let live = app.session2("customerServiceRetailLive").await;
    assert_eq!(live["voice_api"], "live");
    assert!(live["ephemeral_key"].is_null(), "{live}");
    assert!(live["warning"].as_str().unwrap().contains("/api/calls"));
    let realtime = app.session2("retail").await;
    assert_eq!(realtime["voice_api"], "realtime");
    assert!(realtime["ephemeral_key"].as_str().is_some());
}

#[tokio::test]
async fn one_endpoint_serves_both_apis_and_the_allowed_list_is_enforced() {
    let mut t = live_session("retail").await;
    mount_calls(&t.model).await;
    mount_live(&t.model, 201, created()).await;
    // A Realtime scenario asks for Live in the JSON body; the alias path answers the same.
    let offer = json!({"sdp": "v=0\r\no=- offer\r\n", "api": "live"}).to_string();
    let resp = post_call(
        &t,
        &format!("/api/realtime/calls?session_id={}", t.s.id),
        "application/json",
        offer,
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["location"],
        format!("/api/realtime/calls/{LIVE_ID}"),
        "the alias keeps its own Location"
    );
    assert_eq!(live_creates(&t.model).await.len(), 1);
    assert_eq!(next_json(&mut t.ws).await["type"], "call.started");

    // An unknown API is refused before anything reaches the upstream.
    let resp = post_call(
        &t,
        &format!("/api/calls?session_id={}&api=sip", t.s.id),
        "application/sdp",
        "v=0\r\n".into(),
    )
    .await;
    let (st, b) = split(resp).await;
    assert_error(st, &b, 400, "invalid_body");

    // A deployment that offers only Realtime refuses `api=live`.
    let (model, _fake, app) = spawn_with_realtime(|c| {
        c.realtime.voice_apis = vec![switchboard::config::VoiceApi::Realtime];
    })
    .await;
    let s = app.session_for("retail").await;
    let url = app.url(&format!("/api/calls?session_id={}&api=live", s.id));
    let resp = post_offer(&app.client, &url, &s.token).await.unwrap();
    let (st, b) = split(resp).await;
    assert_error(st, &b, 400, "voice_api_not_allowed");
    assert!(live_creates(&model).await.is_empty());
}

#[tokio::test]
async fn live_refusals_map_like_realtime_ones() {
    let t = live_session("customerServiceRetailLive").await;
    let err = json!({"error": {"message": "Unknown parameter: 'session.voice'.", "type": "invalid_request_error",
                               "code": "unknown_parameter", "param": "session.voice"}});
    mount_live(&t.model, 400, err).await;
    let url = format!("/api/calls?session_id={}", t.s.id);
    let resp = post_call(&t, &url, "application/sdp", "v=0\r\n".into()).await;
    let (st, b) = split(resp).await;
    assert_error(st, &b, 400, "invalid_sdp");

    // A Live create that does not answer in time is 504, as for Realtime.
    let (model, _fake, app) = spawn_with_realtime(|c| {
        c.upstream_timeout = std::time::Duration::from_millis(300);
        c.upstream_retries = 0;
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/live/sessions"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(created())
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&model)
        .await;
    let s = app.session_for("customerServiceRetailLive").await;
    let resp = (app
        .client
        .post(app.url(&format!("/api/calls?session_id={}", s.id))))
    .bearer_auth(&s.token)
    .header("content-type", "application/sdp")
    .body("v=0\r\n")
    .send()
    .await
    .unwrap();
    let (st, b) = split(resp).await;
    assert_error(st, &b, 504, "upstream_timeout");

    let t = live_session("customerServiceRetailLive").await;
    // A 201 without a usable session id is the upstream's fault.
    mount_live(&t.model, 201, json!({"transport": {"sdp": "v=0\r\n"}})).await;
    let url = format!("/api/calls?session_id={}", t.s.id);
    let resp = post_call(&t, &url, "application/sdp", "v=0\r\n".into()).await;
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn control_commands_become_live_client_events() {
    let mut t = live_session("customerServiceRetailLive").await;
    mount_live(&t.model, 201, created()).await;
    let url = format!("/api/calls?session_id={}", t.s.id);
    assert_eq!(
        post_call(&t, &url, "application/sdp", "v=0\r\n".into())
            .await
            .status(),
        201
    );
    assert_eq!(next_json(&mut t.ws).await["type"], "call.started");
    t.fake.wait_attaches(1).await;

    for cmd in [
        json!({"action": "say", "text": "One moment."}),
        json!({"action": "update_instructions", "instructions": "Mention the winter sale."}),
        json!({"action": "switch_agent", "agent": "returns"}),
    ] {
        let (st, ack) = control(&t.app, &t.s.id, API_KEY, cmd).await;
        assert_eq!(st, 200, "{ack}");
    }
    let ev = next_json(&mut t.ws).await;
    assert_eq!(ev["type"], "agent.switch");
    assert_eq!(
        (ev["data"]["from"].as_str(), ev["data"]["to"].as_str()),
        (Some("authentication"), Some("returns"))
    );
    let got = t.fake.wait_for("three appends", |r| r.len() >= 3).await;
    assert_eq!(
        got[0],
        json!({"type": "session.commentary.append", "delegation_id": null, "content": "One moment."})
    );
    assert_eq!(
        got[1],
        json!({"type": "session.instructions.append", "delegation_id": null, "content": "Mention the winter sale."})
    );
    assert_eq!(got[2]["type"], "session.instructions.append");
    assert!(
        got[2]["content"].as_str().unwrap().contains("returns"),
        "{}",
        got[2]
    );
    assert!(
        got.iter().all(|e| ![
            "session.update",
            "conversation.item.create",
            "response.create"
        ]
        .contains(&e["type"].as_str().unwrap_or_default())),
        "no Realtime-only event reaches Live: {got:?}"
    );
    let resp = t
        .app
        .client
        .get(t.app.url(&format!("/api/sessions/{}", t.s.id)))
        .bearer_auth(&t.s.token)
        .send()
        .await
        .unwrap();
    let (_, view) = split(resp).await;
    assert_eq!(view["active_agent"], "returns");

    // Hang-up: `session.close`; call.ended once the upstream confirms it.
    let (st, _) = control(&t.app, &t.s.id, API_KEY, json!({"action": "hangup"})).await;
    assert_eq!(st, 200);
    t.fake
        .wait_for("session.close", |r| {
            r.iter().any(|e| e["type"] == "session.close")
        })
        .await;
    t.fake.emit(
        json!({"type": "session.closed", "reason": "close_requested", "usage": {"seconds": 3}}),
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(ev["data"]["upstream_reason"], "close_requested");
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["reason"].as_str()),
        (Some("call.ended"), Some("hangup"))
    );
}

/// A Live session of `scenario` (query form) with its call created and its sideband attached.
async fn live_call(scenario: &str) -> Live {
    live_call_with(scenario, |_| {}).await
}

/// [`live_call`] with the settings adjusted.
async fn live_call_with(
    scenario: &str,
    adjust: impl FnOnce(&mut switchboard::config::Config) + Send + 'static,
) -> Live {
    let mut t = live_session_with(scenario, adjust).await;
    mount_live(&t.model, 201, created()).await;
    let url = format!("/api/calls?session_id={}", t.s.id);
    let resp = post_call(&t, &url, "application/sdp", "v=0\r\n".into()).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(next_json(&mut t.ws).await["type"], "call.started");
    t.fake.wait_attaches(1).await;
    t
}

fn user_says(text: &str, start_ms: u64, end_ms: u64) -> Value {
    json!({"type": "session.input_transcript.delta", "delta": text, "start_ms": start_ms, "end_ms": end_ms,
           "event_id": "event_u"})
}

fn delegation(id: &str, offset_ms: u64) -> Value {
    json!({"type": "session.delegation.created", "offset_ms": offset_ms,
           "delegation": {"id": id, "type": "delegation", "target": "client"}})
}

/// The next events of the channel until one of `kind`; returns them all.
async fn until(ws: &mut Ws, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let ev = next_json(ws).await;
        let done = ev["type"] == kind;
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_delegation_is_answered_by_the_active_agent_with_its_tools_once() {
    let mut t = live_call("customerServiceRetailLive&root_agent=returns").await;
    t.fake.emit(user_says("Where are my orders? ", 1000, 1800));
    // The delegation arrives before the fragment that covers it.
    t.fake.emit(delegation("item_d1", 1900));
    t.fake.emit(user_says(
        r#"call:lookupOrders:{"phoneNumber":"(206) 135-1246"}"#,
        1900,
        2600,
    ));
    let events = until(&mut t.ws, "delegation.completed").await;
    assert_eq!(
        kinds(&events),
        [
            "transcript.user",
            "delegation.started",
            "tool.result",
            "delegation.completed"
        ],
        "{events:?}"
    );
    let task = events[1]["data"]["task"].as_str().unwrap();
    assert!(
        task.starts_with("Where are my orders?") && task.contains("call:lookupOrders"),
        "{task}"
    );
    assert_eq!(
        events[0]["data"]["text"], task,
        "the turn ends at the delegation"
    );
    assert!(events[0]["data"]["item_id"].is_null());
    assert_eq!(events[1]["data"]["agent"], "returns");
    assert_eq!(events[1]["data"]["delegation_id"], "item_d1");
    let tool = &events[2]["data"];
    assert_eq!(
        (tool["tool"].as_str(), tool["success"].as_bool()),
        (Some("lookupOrders"), Some(true))
    );
    let done = &events[3]["data"];
    assert_eq!(done["delegation_id"], "item_d1");
    assert_eq!(done["agent"], "returns");
    assert_eq!(done["late"], false);
    let output = done["output"].as_str().unwrap();
    assert!(output.starts_with("done after lookupOrders"), "{output}");

    let got = t
        .fake
        .wait_for("the commentary", |r| {
            r.iter().any(|e| e["type"] == "session.commentary.append")
        })
        .await;
    let answers = of_type(&got, "session.commentary.append");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["delegation_id"], "item_d1");
    assert_eq!(answers[0]["content"], output);
    let thinking = of_type(&got, "session.thinking.append");
    assert!(
        thinking.iter().any(|e| e["delegation_id"] == "item_d1"),
        "progress is sent as thinking: {got:?}"
    );

    // The same announcement again is ignored: still one answer.
    t.fake.emit(delegation("item_d1", 1900));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let got = t.fake.received.lock().unwrap().clone();
    assert_eq!(of_type(&got, "session.commentary.append").len(), 1);
}

#[tokio::test]
async fn a_transfer_during_a_delegation_switches_once_and_the_next_goes_to_the_new_agent() {
    let mut t = live_call("customerServiceRetailLive").await;
    t.fake.emit(user_says(
        "I want to return something, handoff:returns please",
        500,
        2000,
    ));
    t.fake.emit(delegation("item_t1", 500));
    let events = until(&mut t.ws, "delegation.completed").await;
    assert_eq!(
        kinds(&events),
        [
            "transcript.user",
            "delegation.started",
            "agent.switch",
            "delegation.completed"
        ],
        "{events:?}"
    );
    assert_eq!(events[1]["data"]["agent"], "authentication");
    let sw = &events[2]["data"];
    assert_eq!(
        (
            sw["from"].as_str(),
            sw["to"].as_str(),
            sw["source"].as_str()
        ),
        (Some("authentication"), Some("returns"), Some("model"))
    );
    assert_eq!(events[3]["data"]["agent"], "returns");
    let got = t
        .fake
        .wait_for("the persona append", |r| {
            r.iter().any(|e| e["type"] == "session.instructions.append")
                && r.iter().any(|e| e["type"] == "session.commentary.append")
        })
        .await;
    let appends = of_type(&got, "session.instructions.append");
    assert_eq!(appends.len(), 1, "{got:?}");
    assert!(appends[0]["delegation_id"].is_null());
    assert!(appends[0]["content"].as_str().unwrap().contains("returns"));

    // The next delegation is the new agent's.
    t.fake.emit(user_says("What is your policy?", 5000, 6000));
    t.fake.emit(delegation("item_t2", 5000));
    let events = until(&mut t.ws, "delegation.completed").await;
    let started = events
        .iter()
        .find(|e| e["type"] == "delegation.started")
        .unwrap();
    assert_eq!(started["data"]["agent"], "returns");
    assert!(
        events.iter().all(|e| e["type"] != "agent.switch"),
        "one switch only: {events:?}"
    );
}

#[tokio::test]
async fn turns_end_at_a_silence_gap_and_usage_is_kept() {
    let mut t = live_call("customerServiceRetailLive").await;
    t.fake.emit(user_says("Hello", 0, 400));
    t.fake.emit(user_says(" there", 500, 900));
    // More than 800 ms of silence: a new turn.
    t.fake.emit(user_says("Anyone?", 2000, 2400));
    let first = next_json(&mut t.ws).await;
    assert_eq!(
        (first["type"].as_str(), first["data"]["text"].as_str()),
        (Some("transcript.user"), Some("Hello there"))
    );
    t.fake.emit(
        json!({"type": "session.output_transcript.delta", "delta": "Hi! How can I help?",
                       "start_ms": 2600, "end_ms": 3400}),
    );
    // The assistant speaking ends the user's turn; a quiet second ends the assistant's.
    let second = next_json(&mut t.ws).await;
    assert_eq!(second["data"]["text"], "Anyone?");
    let third = next_json(&mut t.ws).await;
    assert_eq!(third["type"], "transcript.assistant");
    assert_eq!(third["data"]["text"], "Hi! How can I help?");
    assert_eq!(third["data"]["agent"], "authentication");
    assert!(third["data"]["response_id"].is_null());

    t.fake
        .emit(json!({"type": "session.usage.updated", "usage": {"seconds": 12.5}}));
    t.fake
        .emit(json!({"type": "session.usage.updated", "usage": {"seconds": 19.0}}));
    let url = t.app.url(&format!("/api/sessions/{}", t.s.id));
    let usage = eventually(
        "the usage is kept",
        std::time::Duration::from_secs(2),
        || async {
            let resp = t
                .app
                .client
                .get(&url)
                .bearer_auth(&t.s.token)
                .send()
                .await
                .ok()?;
            let (_, v) = split(resp).await;
            (v["usage"]["seconds"] == 19.0).then(|| v["usage"].clone())
        },
    )
    .await;
    assert_eq!(usage["seconds"], 19.0, "cumulative, not summed: {usage}");
}

const RESPONSES_DESK: &str = r#"
id: desk
label: Desk
company_name: Acme
voice_api: live
live: {delegation: responses, voice: cedar, instructions: You are the Acme voice.}
agents:
  - name: front
    instructions: Greet and look things up.
    tools: [lookupOrders]
    handoffs: [billing]
  - name: billing
    handoff_description: Invoices and payments.
    instructions: Help with bills.
tools:
  - name: lookupOrders
    description: List the orders placed with a phone number, with items and delivery status.
    parameters:
      type: object
      properties:
        phoneNumber:
          type: string
          description: The caller's phone number.
      required: [phoneNumber]
      additionalProperties: false
"#;

fn backend(delegation_id: &str, event: Value) -> Value {
    json!({"type": "response.event", "delegation_id": delegation_id, "event": event})
}

fn backend_call(call_id: &str, name: &str, args: &str) -> Value {
    json!({"type": "response.output_item.done", "item": {"type": "function_call", "status": "completed",
           "id": format!("fc_{call_id}"), "call_id": call_id, "name": name, "arguments": args}})
}

fn backend_completed() -> Value {
    json!({"type": "response.completed", "response": {"id": "resp_b", "status": "completed", "output": [],
           "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}}})
}

#[tokio::test]
async fn responses_delegation_answers_each_function_call_once_then_creates_the_response() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("desk.yaml"), RESPONSES_DESK).unwrap();
    let p = dir.path().to_owned();
    let mut t = live_call_with("desk", move |c| c.scenarios_dir = Some(p)).await;

    let create = &live_creates(&t.model).await[0]["session"];
    assert_eq!(create["instructions"], "You are the Acme voice.");
    assert_eq!(create["audio"]["output"]["voice"], "cedar");
    let delegation = &create["delegation"];
    assert_eq!(delegation["type"], "responses");
    assert_eq!(
        delegation["responses"]["instructions"],
        "Greet and look things up."
    );
    let names: Vec<&str> = delegation["responses"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lookupOrders", "transfer_to_billing"]);

    t.fake.emit(json!({"type": "session.delegation.created", "offset_ms": 100,
        "delegation": {"id": "item_r1", "type": "delegation", "target": "responses", "response_id": "resp_b"}}));
    let call = backend_call(
        "call_a",
        "lookupOrders",
        r#"{"phoneNumber":"(206) 135-1246"}"#,
    );
    t.fake.emit(backend("item_r1", call.clone()));
    t.fake.emit(backend("item_r1", call)); // a repeat is not answered again
    t.fake.emit(backend("item_r1", backend_completed()));
    let got = t
        .fake
        .wait_for("response.create", |r| {
            r.iter().any(|e| e["type"] == "response.create")
        })
        .await;
    let outputs = of_type(&got, "response.item.create");
    assert_eq!(outputs.len(), 1, "{got:?}");
    assert_eq!(outputs[0]["item"]["call_id"], "call_a");
    assert_eq!(outputs[0]["item"]["type"], "function_call_output");
    let pos = |kind: &str| got.iter().position(|e| e["type"] == kind).unwrap();
    assert!(
        pos("response.item.create") < pos("response.create"),
        "{got:?}"
    );
    assert_eq!(of_type(&got, "response.create").len(), 1);
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["tool"].as_str()),
        (Some("tool.result"), Some("lookupOrders"))
    );

    // A transfer: the switch, the new agent's settings, and the response only after
    // `session.updated`.
    t.fake.emit(backend(
        "item_r2",
        backend_call("call_b", "transfer_to_billing", "{}"),
    ));
    t.fake.emit(backend("item_r2", backend_completed()));
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["to"].as_str()),
        (Some("agent.switch"), Some("billing"))
    );
    let got = t
        .fake
        .wait_for("session.update", |r| {
            r.iter().any(|e| e["type"] == "session.update")
        })
        .await;
    let update = of_type(&got, "session.update")[0];
    assert_eq!(update["session"]["delegation"]["type"], "responses");
    assert_eq!(
        update["session"]["delegation"]["responses"]["instructions"],
        "Help with bills."
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = of_type(&t.fake.received.lock().unwrap().clone(), "response.create").len();
    assert_eq!(before, 1, "the response waits for session.updated");
    t.fake
        .emit(json!({"type": "session.updated", "session": {}}));
    t.fake
        .wait_for("the second response.create", |r| {
            of_type(r, "response.create").len() == 2
        })
        .await;
}

#[tokio::test]
async fn an_answer_sent_after_the_caller_spoke_again_is_late_but_still_sent() {
    let mut t = live_call("customerServiceRetailLive").await;
    t.fake
        .emit(user_says("slow question about my account", 100, 900));
    t.fake.emit(delegation("item_l1", 100));
    let events = until(&mut t.ws, "delegation.started").await;
    assert_eq!(kinds(&events), ["transcript.user", "delegation.started"]);
    // The caller speaks again while the backend is still working.
    t.fake.emit(user_says("hello?", 1500, 1900));
    let events = until(&mut t.ws, "delegation.completed").await;
    let done = events.last().unwrap();
    assert_eq!(done["data"]["late"], true, "{done}");
    t.fake
        .wait_for("the late answer", |r| {
            r.iter().any(|e| {
                e["type"] == "session.commentary.append" && e["delegation_id"] == "item_l1"
            })
        })
        .await;
}

#[tokio::test]
async fn a_hangup_the_upstream_never_confirms_still_ends_the_call() {
    let mut t = live_call("customerServiceRetailLive").await;
    let url = t.app.url(&format!("/api/calls/{LIVE_ID}/hangup"));
    let resp = t
        .app
        .client
        .post(&url)
        .bearer_auth(&t.s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    t.fake
        .wait_for("session.close", |r| {
            r.iter().any(|e| e["type"] == "session.close")
        })
        .await;
    // Nothing ends the call while it waits for `session.closed`...
    let early =
        tokio::time::timeout(std::time::Duration::from_millis(4300), next_json(&mut t.ws)).await;
    assert!(
        early.is_err(),
        "no event before the confirmation wait ends: {early:?}"
    );
    // ...and then it ends anyway.
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["reason"].as_str()),
        (Some("call.ended"), Some("hangup"))
    );
    assert!(ev["data"]["upstream_reason"].is_null());
    t.fake.wait_closed().await;
}

/// A REST hang-up of a Live call that no instance holds attaches once to close it.
#[tokio::test]
async fn a_hangup_with_no_owner_still_closes_the_live_session() {
    let (model, fake, app) = spawn_with_realtime(|_| {}).await;
    mount_live(&model, 201, created()).await;
    let s = app.session_for("customerServiceRetailLive").await;
    let (mut ws, _) = app.connect(&s, None).await;
    let deps = app.state.call_deps.clone();
    let sid: switchboard::domain::SessionId = s.id.parse().unwrap();
    // The call is known (registered) but nobody holds its sideband.
    deps.leases().register(&sid, LIVE_ID).await.unwrap();
    let resp = (app
        .client
        .post(app.url(&format!("/api/calls/{LIVE_ID}/hangup"))))
    .bearer_auth(&s.token)
    .send()
    .await
    .unwrap();
    let (st, body) = split(resp).await;
    assert_eq!(st, 200, "{body}");
    fake.wait_for("session.close", |r| {
        r.iter().any(|e| e["type"] == "session.close")
    })
    .await;
    assert!(
        fake.paths
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.ends_with(&format!("{LIVE_ID}/attach")))
    );
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["reason"].as_str()),
        (Some("call.ended"), Some("hangup"))
    );
}

/// An adopter finishes a recorded, unanswered delegation without running the tools the
/// previous owner already finished: their recorded outputs are reused.
#[tokio::test]
async fn a_resumed_delegation_reuses_the_tools_its_first_owner_finished() {
    let (model, fake, app) = spawn_with_realtime(|_| {}).await;
    mount_live(&model, 201, created()).await;
    let s = app
        .session_for("customerServiceRetailLive&root_agent=returns")
        .await;
    let (mut ws, _) = app.connect(&s, None).await;
    let sid: switchboard::domain::SessionId = s.id.parse().unwrap();
    let args = json!({"phoneNumber": "(206) 135-1246"});
    let record = json!({"id": "item_old", "task": format!("call:lookupOrders:{args}"),
        "offset_ms": 100, "started_ms": 1, "tools": [["lookupOrders", args, {"orders": "as recorded"}]]});
    let store = &app.state.sessions.store;
    let ttl = std::time::Duration::from_secs(60);
    store
        .put_value(&sid, "live:deleg:item_old", &record.to_string(), ttl)
        .await
        .unwrap();
    store
        .put_value(&sid, "live:pending", r#"["item_old"]"#, ttl)
        .await
        .unwrap();

    let resp = (app
        .client
        .post(app.url(&format!("/api/calls?session_id={}", s.id))))
    .bearer_auth(&s.token)
    .header("content-type", "application/sdp")
    .body("v=0\r\n")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let events = until(&mut ws, "delegation.completed").await;
    assert_eq!(
        kinds(&events),
        ["call.started", "delegation.completed"],
        "no tool ran again: {events:?}"
    );
    let output = events[1]["data"]["output"].as_str().unwrap();
    assert!(output.contains("as recorded"), "{output}");
    let got = fake
        .wait_for("the answer", |r| {
            r.iter().any(|e| e["type"] == "session.commentary.append")
        })
        .await;
    assert_eq!(
        of_type(&got, "session.commentary.append")[0]["delegation_id"],
        "item_old"
    );
    let pending = store.get_value(&sid, "live:pending").await.unwrap();
    assert_eq!(
        pending.as_deref(),
        Some("[]"),
        "the delegation is no longer pending"
    );
}

#[tokio::test]
async fn a_flagged_live_answer_gets_a_correction_and_closes_when_the_scenario_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let desk = "id: strict\nlabel: Strict\ncompany_name: Acme\nvoice_api: live\n\
                live: {close_on_flag: true}\nagents:\n  - name: front\n    instructions: Help.\n";
    std::fs::write(dir.path().join("strict.yaml"), desk).unwrap();
    let p = dir.path().to_owned();
    let mut t = live_call_with("strict", move |c| {
        c.scenarios_dir = Some(p);
        c.deny_patterns = vec!["forbidden".into()];
    })
    .await;
    t.fake.emit(
        json!({"type": "session.output_transcript.delta", "delta": "That is forbidden talk.",
                       "start_ms": 0, "end_ms": 900}),
    );
    let events = until(&mut t.ws, "moderation.flagged").await;
    assert_eq!(
        kinds(&events),
        ["transcript.assistant", "moderation.flagged"]
    );
    assert_eq!(events[1]["data"]["source"], "assistant");
    let got = t
        .fake
        .wait_for("the correction and the close", |r| {
            r.iter().any(|e| e["type"] == "session.close")
        })
        .await;
    let pos = |kind: &str| got.iter().position(|e| e["type"] == kind).unwrap();
    assert!(
        pos("session.instructions.append") < pos("session.close"),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_live_call_is_recorded_and_a_second_call_continues_from_it() {
    let mut t = live_call("customerServiceRetailLive").await;
    t.fake.emit(user_says("Where is my order?", 0, 900));
    t.fake
        .emit(json!({"type": "session.output_transcript.delta",
        "delta": "Let me check that for you.", "start_ms": 1200, "end_ms": 2400}));
    t.fake.emit(user_says("Thanks.", 4000, 4400));
    t.fake
        .emit(json!({"type": "session.usage.updated", "usage": {"seconds": 12.5}}));
    t.fake
        .emit(json!({"type": "session.usage.updated", "usage": {"seconds": 19.0}}));
    let items = crate::record::items_until(&t.app, &t.s.id, "the Live call's record", |i| {
        i.iter().filter(|x| x["kind"] == "usage").count() == 2
            && i.iter().filter(|x| x["kind"] == "turn.user").count() == 2
    })
    .await;
    let turns: Vec<(&str, &str)> = items
        .iter()
        .filter(|i| i["kind"].as_str().unwrap().starts_with("turn."))
        .map(|i| {
            (
                i["kind"].as_str().unwrap(),
                i["data"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            ("turn.user", "Where is my order?"),
            ("turn.assistant", "Let me check that for you."),
            ("turn.user", "Thanks."),
        ]
    );
    let usage: Vec<&Value> = items.iter().filter(|i| i["kind"] == "usage").collect();
    let seconds: Vec<f64> = usage
        .iter()
        .map(|u| u["data"]["usage"]["seconds"].as_f64().unwrap())
        .collect();
    assert_eq!(
        seconds,
        [12.5, 6.5],
        "each increase of the cumulative total, once"
    );
    assert_eq!(usage[0]["data"]["model"], "gpt-live-1.1");
    let cost: i64 = usage
        .iter()
        .map(|u| switchboard::record::parse_usd(u["cost_usd"].as_str().unwrap()))
        .sum();
    assert!(
        (cost - 15_833_327).abs() <= 2,
        "19 s at $0.05 a minute: {cost}"
    );

    // The upstream ends the call; the caller calls back on the same session.
    t.fake
        .emit(json!({"type": "session.closed", "reason": "client", "usage": {"seconds": 19.0}}));
    until(&mut t.ws, "call.ended").await;
    let before = t.fake.received.lock().unwrap().len();
    Mock::given(method("POST"))
        .and(path("/v1/live/sessions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "session": {"id": "live_second_call", "model": "gpt-live-1.1", "status": "active"},
            "transport": {"type": "webrtc", "sdp": "v=0\r\no=- live answer\r\n"}})))
        .with_priority(1)
        .mount(&t.model)
        .await;
    let url = format!("/api/calls?session_id={}", t.s.id);
    let resp = post_call(&t, &url, "application/sdp", "v=0\r\n".into()).await;
    assert_eq!(resp.status(), 201);
    let got = eventually(
        "the second call's seed",
        std::time::Duration::from_secs(5),
        || async {
            let got = t.fake.received.lock().unwrap().clone();
            let seeded = got[before..]
                .iter()
                .any(|x| x["type"] == "session.instructions.append");
            seeded.then_some(got)
        },
    )
    .await;
    let seed = got[before..]
        .iter()
        .find(|x| x["type"] == "session.instructions.append")
        .unwrap();
    let content = seed["content"].as_str().unwrap();
    assert!(
        content.contains(
            "user: Where is my order?\nassistant: Let me check that for you.\nuser: Thanks."
        ),
        "{content}"
    );
    assert!(content.contains("Do not greet"), "{content}");
}
