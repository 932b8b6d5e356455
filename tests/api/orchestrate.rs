//! `POST /api/orchestrate`: scoring, hysteresis, reachability, escalation, events, the
//! compare-and-set race across instances, and the LLM classifier.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::channel::*;
use crate::support::redis::{RedisServer, unique_prefix};
use crate::support::*;

async fn orchestrate(app: &TestApp, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.post(app.url("/api/orchestrate")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    split(req.send().await.unwrap()).await
}

async fn session(app: &TestApp, scenario: &str, root: &str) -> Sess {
    let (st, b) = app
        .get_json(&format!(
            "/api/session2?scenario_id={scenario}&root_agent={root}"
        ))
        .await;
    assert_eq!(st, 200, "{b}");
    Sess {
        id: b["session_id"].as_str().unwrap().to_owned(),
        token: b["events"]["token"].as_str().unwrap().to_owned(),
        epoch: b["events"]["epoch"].as_str().unwrap().to_owned(),
    }
}

async fn active_agent(app: &TestApp, s: &Sess) -> String {
    app.session_state(s).await.1["active_agent"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_clear_intent_switches_and_publishes_agent_switch() {
    let app = spawn_app().await;
    let s = session(&app, "retail", "authentication").await;
    let (mut ws, _) = app.connect(&s, None).await;
    let (st, d) = orchestrate(
        &app,
        Some(&s.token),
        json!({"session_id": s.id,
        "last_user_text": "I want to return my boots, they arrived damaged"}),
    )
    .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(
        (
            d["chosen_root"].as_str(),
            d["changed"].as_bool(),
            d["from"].as_str()
        ),
        (Some("returns"), Some(true), Some("authentication"))
    );
    assert!(d["reason"].as_str().unwrap().contains("\"return\""), "{d}");
    assert_eq!(d["source"], "local");
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "agent.switch");
    assert_eq!(
        (
            ev["data"]["from"].as_str(),
            ev["data"]["to"].as_str(),
            ev["data"]["source"].as_str()
        ),
        (
            Some("authentication"),
            Some("returns"),
            Some("orchestrator")
        )
    );
    assert!(ev["data"]["confidence"].as_f64().unwrap() > 0.0);
    assert_eq!(active_agent(&app, &s).await, "returns");
}

#[tokio::test]
async fn weak_evidence_does_not_flap_and_no_change_means_no_event() {
    let app = spawn_app().await;
    let s = session(&app, "retail", "returns").await;
    let (mut ws, _) = app.connect(&s, None).await;
    let (_, d) = orchestrate(
        &app,
        Some(&s.token),
        json!({"session_id": s.id, "last_user_text": "sounds good",
        "transcript_tail": ["is there a sale", {"text": "any discount today?"}]}),
    )
    .await;
    assert_eq!(
        (d["chosen_root"].as_str(), d["changed"].as_bool()),
        (Some("returns"), Some(false)),
        "{d}"
    );
    assert_eq!(d["event_seq"], Value::Null);
    app.publish(&s.id, "x.marker", json!({})).await;
    assert_eq!(
        next_json(&mut ws).await["type"],
        "x.marker",
        "no agent.switch was published"
    );
}

#[tokio::test]
async fn only_reachable_agents_are_chosen_but_escalation_reaches_anywhere() {
    let app = spawn_app().await;
    let s = session(&app, "simpleHandoff", "haikuWriter").await;
    let (_, d) = orchestrate(
        &app,
        Some(&s.token),
        json!({"session_id": s.id, "last_user_text": "hello hi hey"}),
    )
    .await;
    assert_eq!(
        d["chosen_root"], "haikuWriter",
        "greeter is not reachable from haikuWriter: {d}"
    );
    let r = session(&app, "retail", "salesAgent").await;
    let (_, d) = orchestrate(
        &app,
        Some(&r.token),
        json!({"session_id": r.id,
        "last_user_text": "This is ridiculous, let me speak to a manager"}),
    )
    .await;
    assert_eq!(
        (d["chosen_root"].as_str(), d["changed"].as_bool()),
        (Some("simulatedHuman"), Some(true))
    );
    assert!(d["reason"].as_str().unwrap().starts_with("escalation"));
}

#[tokio::test]
async fn without_a_session_it_advises_and_bad_input_is_refused() {
    let app = spawn_app().await;
    let (st, d) = orchestrate(
        &app,
        None,
        json!({"scenario_id": "simpleHandoff", "last_user_text": "write me a haiku please"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            d["chosen_root"].as_str(),
            d["from"].as_str(),
            d["changed"].as_bool()
        ),
        (Some("haikuWriter"), Some("greeter"), Some(true))
    );
    let (st, b) = orchestrate(&app, None, json!({"last_user_text": "hi"})).await;
    assert_error(st, &b, 400, "invalid_body");
    let (st, b) = orchestrate(&app, None, json!({"scenario_id": "nope"})).await;
    assert_error(st, &b, 400, "unknown_scenario");
    let (st, b) = orchestrate(
        &app,
        None,
        json!({"scenario_id": "retail", "context": {"active_agent": "boss"}}),
    )
    .await;
    assert_error(st, &b, 400, "unknown_agent");
    let (st, b) = orchestrate(
        &app,
        None,
        json!({"scenario_id": "retail", "transcript_tail": [3]}),
    )
    .await;
    assert_error(st, &b, 422, "invalid_body");
    let s = app.new_session().await;
    let (st, b) = orchestrate(&app, None, json!({"session_id": s.id})).await;
    assert_error(st, &b, 401, "unauthorized");
}

#[tokio::test]
async fn two_concurrent_decisions_on_two_instances_switch_once() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let b = spawn_redis_app(&redis, &prefix, |_| {}).await;
    for round in 0..5 {
        let s = session(&a, "retail", "authentication").await;
        let (mut ws, _) = b.connect(&s, None).await;
        let body = json!({"session_id": s.id, "last_user_text": "I need a refund for my order"});
        let (ra, rb) = tokio::join!(
            orchestrate(&a, Some(&s.token), body.clone()),
            orchestrate(&b, Some(&s.token), body)
        );
        let changed = [&ra.1, &rb.1]
            .iter()
            .filter(|d| d["changed"] == true)
            .count();
        assert_eq!(changed, 1, "round {round}: {} / {}", ra.1, rb.1);
        assert_eq!(next_json(&mut ws).await["type"], "agent.switch");
        a.publish(&s.id, "x.marker", json!({})).await;
        assert_eq!(
            next_json(&mut ws).await["type"],
            "x.marker",
            "exactly one agent.switch"
        );
        assert_eq!(active_agent(&b, &s).await, "returns");
    }
}

#[tokio::test]
async fn the_llm_classifier_decides_when_the_scenario_asks_and_falls_back_when_it_cannot() {
    let upstream = MockServer::start().await;
    let choice =
        r#"{"agent":"billing","reason":"The user asks about an invoice.","confidence":0.8}"#;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(response_body(choice)))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(client_secret_body()))
        .mount(&upstream)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("desk.yaml"),
        "id: desk\nlabel: Desk\ncompany_name: Acme\norchestration: {classifier: llm}\nagents:\n  - name: front\n    instructions: Greet.\n    handoffs: [billing]\n  - name: billing\n    handoff_description: Invoices and payments.\n    instructions: Help with bills.\n    keywords: [invoice]\n",
    )
    .unwrap();
    let p = dir.path().to_owned();
    let app = spawn_online(&upstream, move |c| c.scenarios_dir = Some(p)).await;
    let (_, d) = orchestrate(
        &app,
        None,
        json!({"scenario_id": "desk", "last_user_text": "my statement looks wrong"}),
    )
    .await;
    assert_eq!(
        (d["chosen_root"].as_str(), d["source"].as_str()),
        (Some("billing"), Some("llm")),
        "{d}"
    );
    let sent: Value =
        serde_json::from_slice(&received(&upstream, "/v1/responses").await[0].body).unwrap();
    assert_eq!(
        sent["text"]["format"]["schema"]["properties"]["agent"]["enum"],
        json!(["front", "billing"])
    );
    // The model fails now: the local scorer decides and says so.
    let (_, d) = orchestrate(
        &app,
        None,
        json!({"scenario_id": "desk", "last_user_text": "about my invoice"}),
    )
    .await;
    assert_eq!(
        (d["chosen_root"].as_str(), d["source"].as_str()),
        (Some("billing"), Some("local")),
        "{d}"
    );
    assert!(d["failure"].as_str().is_some());
    tokio::time::sleep(Duration::from_millis(10)).await;
}
