use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::*;

fn agent_names(b: &Value) -> Vec<String> {
    b["initial_agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn offline_session2_works_for_every_scenario() {
    let app = spawn_app().await;
    for (id, root) in [
        ("simpleHandoff", "greeter"),
        ("customerServiceRetail", "authentication"),
        ("chatSupervisor", "chatAgent"),
    ] {
        let b = app.session2(id).await;
        assert_eq!(b["scenario_id"], id);
        assert_eq!(b["root_agent"], root);
        assert_eq!(b["ephemeral_key"], Value::Null);
        assert!(
            b["warning"]
                .as_str()
                .unwrap()
                .contains("upstream_not_configured")
        );
        assert_eq!(b["initial_agents"][0]["name"], root);
        assert_eq!(b["events"]["seq"], 0);
        assert!(b["events"]["epoch"].as_str().is_some_and(|e| !e.is_empty()));
        let sid = b["session_id"].as_str().unwrap();
        let token = b["events"]["token"].as_str().unwrap();
        let ws = b["events"]["ws_url"].as_str().unwrap();
        assert!(
            ws.starts_with(&format!("ws://127.0.0.1:{}/api/ws?", app.port)),
            "{ws}"
        );
        assert!(ws.contains(&format!("session_id={sid}")) && ws.contains(token));
        let sse = b["events"]["sse_url"].as_str().unwrap();
        assert!(
            sse.contains(&format!("/api/sessions/{sid}/stream?token={token}&epoch=")),
            "{sse}"
        );
        assert!(b["expires_at"].as_u64().unwrap() > 1_700_000_000);
    }
}

#[tokio::test]
async fn default_scenario_is_chat_supervisor() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/session2").await;
    assert_eq!(s, 200);
    assert_eq!(b["scenario_id"], "chatSupervisor");
}

#[tokio::test]
async fn alias_and_root_agent_put_the_root_first() {
    let app = spawn_app().await;
    let (s, b) = app
        .get_json("/api/session2?scenario_id=retail&root_agent=salesAgent")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scenario_id"], "customerServiceRetail");
    assert_eq!(b["root_agent"], "salesAgent");
    assert_eq!(
        agent_names(&b),
        ["salesAgent", "authentication", "returns", "simulatedHuman"]
    );
    let sales = &b["initial_agents"][0];
    assert_eq!(
        sales["handoffs"],
        json!(["authentication", "returns", "simulatedHuman"])
    );
    let tool_names: Vec<&str> = sales["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tool_names,
        [
            "lookupNewSales",
            "addToCart",
            "checkout",
            "transfer_to_authentication",
            "transfer_to_returns",
            "transfer_to_simulatedHuman"
        ]
    );
    assert_eq!(b["guardrails"][0]["company_name"], "Snowy Peak Boards");
}

#[tokio::test]
async fn unknown_agent_is_400_naming_the_valid_ones() {
    let app = spawn_app().await;
    let (s, b) = app
        .get_json("/api/session2?scenario_id=simpleHandoff&root_agent=supervisor")
        .await;
    assert_error(s, &b, 400, "unknown_agent");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("greeter") && msg.contains("haikuWriter"),
        "{msg}"
    );
    let (s, b) = app
        .post_json(
            "/api/session2",
            &json!({"scenario_id": "retail", "root_agent": "greeter"}),
        )
        .await;
    assert_error(s, &b, 400, "unknown_agent");
}

#[tokio::test]
async fn unknown_scenario_is_400() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/session2?scenario_id=default").await;
    assert_error(s, &b, 400, "unknown_scenario");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chatSupervisor")
    );
}

#[tokio::test]
async fn post_context_is_stored_and_appended_to_the_root_instructions_only() {
    let app = spawn_app().await;
    let (s, b) = app
        .post_json(
            "/api/session2",
            &json!({"scenario_id": "simpleHandoff", "context": {"page": "pricing", "user": "Ada"}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let root_instr = b["initial_agents"][0]["instructions"].as_str().unwrap();
    assert!(
        root_instr.contains("page: pricing\nuser: Ada"),
        "{root_instr}"
    );
    let other = b["initial_agents"][1]["instructions"].as_str().unwrap();
    assert!(!other.contains("pricing"));
    let sid = b["session_id"].as_str().unwrap().parse().unwrap();
    let stored = app.state.store.get(&sid).await.unwrap().unwrap();
    assert_eq!(stored.context.as_deref(), Some("page: pricing\nuser: Ada"));

    let (s, b) = app
        .post_json(
            "/api/session2",
            &json!({"scenario_id": "simpleHandoff", "context": "Plain text."}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        b["initial_agents"][0]["instructions"]
            .as_str()
            .unwrap()
            .ends_with("Plain text.")
    );
}

#[tokio::test]
async fn bad_context_is_refused() {
    let app = spawn_app_with(|c| c.context_max_bytes = 100).await;
    let (s, b) = app
        .post_json("/api/session2", &json!({"context": "x".repeat(101)}))
        .await;
    assert_error(s, &b, 413, "context_too_large");
    let (s, b) = app
        .post_json("/api/session2", &json!({"context": [1, 2]}))
        .await;
    assert_error(s, &b, 422, "invalid_body");
}

#[tokio::test]
async fn online_session2_mints_a_key_for_the_root_agent() {
    let upstream = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200).set_body_json(client_secret_body()),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let resp = app
        .client
        .post(app.url("/api/session2"))
        .json(&json!({"scenario_id": "retail", "root_agent": "returns", "context": "VIP caller"}))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert_no_key(&text);
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["ephemeral_key"], "ek_test_123");
    assert_eq!(b["ephemeral_key_expires_at"], 1_900_000_000u64);
    assert!(b.get("warning").is_none());

    let reqs = received(&upstream, "/v1/realtime/client_secrets").await;
    assert_eq!(reqs.len(), 1);
    assert_authorized(&reqs[0]);
    let sent: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(
        sent["expires_after"],
        json!({"anchor": "created_at", "seconds": 600})
    );
    assert_eq!(sent["session"]["type"], "realtime");
    assert_eq!(sent["session"]["model"], "gpt-realtime");
    assert_eq!(sent["session"]["audio"]["output"]["voice"], "sage");
    assert_eq!(
        sent["session"]["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    let instr = sent["session"]["instructions"].as_str().unwrap();
    assert!(
        instr.contains("returns and exchanges") && instr.ends_with("VIP caller"),
        "{instr}"
    );
}

#[tokio::test]
async fn online_session2_upstream_failure_creates_no_session() {
    let upstream = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "overloaded"}})),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app
        .get_json("/api/session2?scenario_id=simpleHandoff")
        .await;
    assert_error(s, &b, 502, "upstream_error");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded")
    );
    // One try plus one retry.
    assert_eq!(
        received(&upstream, "/v1/realtime/client_secrets")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn online_session2_timeout_is_504() {
    let upstream = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200)
            .set_body_json(client_secret_body())
            .set_delay(std::time::Duration::from_secs(3)),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app.get_json("/api/session2").await;
    assert_error(s, &b, 504, "upstream_timeout");
    // A timeout is not retried.
    assert_eq!(
        received(&upstream, "/v1/realtime/client_secrets")
            .await
            .len(),
        1
    );
}
