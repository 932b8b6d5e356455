//! The edges of a unified call: refused offers, the `root_agent` of a call, upstream errors
//! the browser must see, the voice after audio, and what a hangup leaves behind.

use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::realtime_calls::{control, setup, start_call};
use crate::support::channel::{API_KEY, next_json};
use crate::support::realtime::*;
use crate::support::*;
use switchboard::domain::SessionId;

async fn offer(t: &crate::realtime_calls::Setup, body: Value) -> (u16, Value, String) {
    let resp = t
        .app
        .client
        .post(
            t.app
                .url(&format!("/api/realtime/calls?session_id={}", t.s.id)),
        )
        .bearer_auth(&t.s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

/// The next event on the browser's channel is the marker published now: nothing else was
/// published before it.
async fn assert_nothing_published(t: &mut crate::realtime_calls::Setup) {
    t.app.publish(&t.s.id, "x.marker", json!({})).await;
    assert_eq!(next_json(&mut t.ws).await["type"], "x.marker");
}

#[tokio::test]
async fn a_refused_offer_is_400_and_changes_nothing_and_root_agent_switches_on_success() {
    let mut t = setup("salesAgent").await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/calls"))
        .and(body_string_contains("bad-offer"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Invalid SDP offer: no media section", "type": "invalid_request_error",
            "code": null, "param": null}})))
        .with_priority(1)
        .mount(&t.model)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/calls"))
        .and(body_string_contains("upstream-down"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .with_priority(1)
        .mount(&t.model)
        .await;

    let (st, e, _) = offer(
        &t,
        json!({"sdp": "v=0\r\nbad-offer\r\n", "root_agent": "returns"}),
    )
    .await;
    assert_error(st, &e, 400, "invalid_sdp");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no media section"),
        "the upstream's reason is passed on: {e}"
    );
    let (st, e, _) = offer(&t, json!({"sdp": "v=0\r\nupstream-down\r\n"})).await;
    assert_error(st, &e, 502, "upstream_error");
    let (_, state) = t.app.session_state(&t.s).await;
    assert_eq!(
        state["active_agent"], "salesAgent",
        "a refused call switches nothing"
    );
    assert_nothing_published(&mut t).await;
    assert!(t.fake.attaches.lock().unwrap().is_empty());

    let (st, _, answer) = offer(
        &t,
        json!({"sdp": "v=0\r\no=- ok\r\n", "root_agent": "returns"}),
    )
    .await;
    assert_eq!(st, 201, "{answer}");
    assert!(answer.starts_with("v=0"));
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["data"]["from"].as_str(),
            ev["data"]["to"].as_str(),
            ev["data"]["source"].as_str()
        ),
        (
            Some("agent.switch"),
            Some("salesAgent"),
            Some("returns"),
            Some("client")
        )
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["agent"].as_str()),
        (Some("call.started"), Some("returns"))
    );
    let created = received(&t.model, "/v1/realtime/calls").await;
    let body = String::from_utf8_lossy(&created.last().unwrap().body).to_string();
    assert!(
        body.contains("lookupOrders"),
        "the call starts with the root agent's tools: {body}"
    );
}

#[tokio::test]
async fn upstream_errors_reach_the_browser_only_when_it_must_act() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    // Caused by a client event Switchboard sent: logged, not the browser's business.
    t.fake
        .emit(json!({"type": "error", "event_id": "ev_1", "error": {
        "type": "invalid_request_error", "code": "invalid_value",
        "message": "Invalid value: 'foo'.", "param": "session.tool_choice", "event_id": "c_1"}}));
    // The call hit its maximum duration: the browser has to start a new one.
    t.fake.emit(json!({"type": "error", "event_id": "ev_2", "error": {
        "type": "invalid_request_error", "code": "session_expired",
        "message": "Your session hit the maximum duration of 60 minutes.", "param": null, "event_id": null}}));
    let ev = next_json(&mut t.ws).await;
    assert_eq!(ev["type"], "x.call.error", "{ev}");
    assert_eq!(
        ev["data"],
        json!({"call_id": CALL_ID, "code": "session_expired", "terminal": true,
               "message": "Your session hit the maximum duration of 60 minutes."})
    );
    t.fake.emit(
        json!({"type": "error", "error": {"type": "server_error", "code": null,
        "message": "The server had an error while processing your request."}}),
    );
    let ev = next_json(&mut t.ws).await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["data"]["code"].as_str(),
            ev["data"]["terminal"].as_bool()
        ),
        (Some("x.call.error"), Some("server_error"), Some(false))
    );
    assert!(
        t.fake.received.lock().unwrap().is_empty(),
        "errors are not answered"
    );
}

#[tokio::test]
async fn the_voice_changes_only_before_the_call_produced_audio() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    let switch = |agent: &str| json!({"action": "switch_agent", "agent": agent});
    let (st, _) = control(&t.app, &t.s.id, API_KEY, switch("returns")).await;
    assert_eq!(st, 200);
    let got = t
        .fake
        .wait_for("the first session.update", |e| {
            of_type(e, "session.update").len() == 1
        })
        .await;
    let voice = &of_type(&got, "session.update")[0]["session"]["audio"]["output"]["voice"];
    assert!(
        voice.is_string(),
        "before any audio the agent's voice is applied: {got:?}"
    );
    // Audio flows; a function call after it proves the sideband has read the audio event.
    t.fake.emit(
        json!({"type": "response.output_audio.delta", "response_id": "r1", "item_id": "i1", "delta": "AAAA"}),
    );
    t.fake.emit(function_call(
        "c1",
        "lookupOrders",
        r#"{"phoneNumber":"+1 206 555 0100"}"#,
    ));
    t.fake
        .wait_for("the tool answer", |e| {
            !of_type(e, "response.create").is_empty()
        })
        .await;
    let (st, _) = control(&t.app, &t.s.id, API_KEY, switch("salesAgent")).await;
    assert_eq!(st, 200);
    let got = t
        .fake
        .wait_for("the second session.update", |e| {
            of_type(e, "session.update").len() == 2
        })
        .await;
    let second = &of_type(&got, "session.update")[1]["session"];
    assert!(
        second.get("audio").is_none(),
        "no voice change once audio was produced: {second}"
    );
    assert!(
        second["instructions"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("sales"),
        "{second}"
    );
}

#[tokio::test]
async fn a_hangup_releases_the_lease_and_closes_the_sideband() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    let sid: SessionId = t.s.id.parse().unwrap();
    let leases = t.app.state.calls.leases.clone();
    let held = leases.holder(&sid).await.unwrap().expect("a held lease");
    assert_eq!(held.owner, t.app.state.instance_id);
    assert_eq!(t.fake.open(), 1);
    let resp = t
        .app
        .client
        .post(t.app.url(&format!("/api/realtime/calls/{CALL_ID}/hangup")))
        .bearer_auth(&t.s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(next_json(&mut t.ws).await["type"], "call.ended");
    t.fake.wait_closed().await;
    eventually(
        "the lease is released, not left to expire",
        std::time::Duration::from_secs(1),
        || async { leases.holder(&sid).await.unwrap().is_none().then_some(()) },
    )
    .await;
    assert_eq!(leases.call_of(&sid).await.unwrap(), None);
    // A janitor pass does not bring the call back.
    switchboard::realtime::sideband::adopt_orphans(&t.app.state.call_deps).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(t.fake.attaches.lock().unwrap().len(), 1);
    let (st, e) = control(
        &t.app,
        &t.s.id,
        API_KEY,
        json!({"action": "say", "text": "hi"}),
    )
    .await;
    assert_error(st, &e, 409, "no_active_call");
}

#[tokio::test]
async fn a_dropped_sideband_reattaches_with_growing_backoff() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    // The upstream drops the socket and refuses the next three attaches.
    t.fake.refuse.store(3, std::sync::atomic::Ordering::SeqCst);
    t.fake.drop_all();
    t.fake.wait_attaches(2).await;
    let attempts = t.fake.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 5, "1 attach, 3 refused, 1 re-attach");
    let gaps: Vec<u128> = attempts[1..]
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    eprintln!("gaps between attach attempts (ms): {gaps:?}");
    assert!(
        gaps[0] >= 90 && gaps[1] >= gaps[0] * 3 / 2 && gaps[2] >= gaps[1] * 3 / 2,
        "backoff from 100 ms, doubling: {gaps:?}"
    );
    assert!(
        attempts[4] - attempts[1] < std::time::Duration::from_secs(5),
        "re-attached within 5 s"
    );
    t.fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    t.fake
        .wait_for("an answer after re-attaching", |e| {
            !of_type(e, "response.create").is_empty()
        })
        .await;
    assert_eq!(next_json(&mut t.ws).await["type"], "tool.result");
}
