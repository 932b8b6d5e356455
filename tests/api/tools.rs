//! `GET /api/tools` and `POST /api/tools/execute`: built-in and webhook tools, validation,
//! access, events and idempotency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::channel::*;
use crate::support::*;

async fn execute(app: &TestApp, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.post(app.url("/api/tools/execute")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    split(req.send().await.unwrap()).await
}

/// A retail session whose active agent is `root`.
async fn retail(app: &TestApp, root: &str) -> Sess {
    let (st, b) = app
        .get_json(&format!(
            "/api/session2?scenario_id=retail&root_agent={root}"
        ))
        .await;
    assert_eq!(st, 200);
    Sess {
        id: b["session_id"].as_str().unwrap().to_owned(),
        token: b["events"]["token"].as_str().unwrap().to_owned(),
        epoch: b["events"]["epoch"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn the_registry_lists_every_demo_tool_with_its_schema() {
    let app = spawn_app().await;
    let (st, b) = app.get_json("/api/tools").await;
    assert_eq!(st, 200);
    let names: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in [
        "authenticate_user_information",
        "save_or_update_address",
        "update_user_offer_response",
        "lookupOrders",
        "retrievePolicy",
        "checkEligibilityAndPossiblyInitiateReturn",
        "lookupNewSales",
        "addToCart",
        "checkout",
        "getNextResponseFromSupervisor",
        "lookupPolicyDocument",
        "getUserAccountInfo",
        "findNearestStore",
        "echo_context",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let sales = b
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lookupNewSales")
        .unwrap();
    assert_eq!(sales["kind"], "builtin");
    assert_eq!(
        sales["parameters"]["properties"]["category"]["enum"],
        json!(["snowboard", "apparel", "boots", "accessories", "any"])
    );
}

#[tokio::test]
async fn built_in_tools_answer_with_sample_data() {
    let app = spawn_app().await;
    let (st, r) = execute(
        &app,
        None,
        json!({"tool": "lookupNewSales", "args": {"category": "boots"}, "correlation_id": "c1"}),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["success"].as_bool(), r["correlation_id"].as_str()),
        (Some(true), Some("c1"))
    );
    let sales = r["output"]["sales"].as_array().unwrap();
    assert_eq!(sales.len(), 2);
    assert!(sales.iter().all(|s| s["type"] == "boots"));
    assert!(sales[0]["sale_discount_pct"].as_f64() >= sales[1]["sale_discount_pct"].as_f64());
    let (_, r) = execute(
        &app,
        None,
        json!({"tool": "lookupOrders", "args": {"phoneNumber": "(206) 555-0100"}}),
    )
    .await;
    let orders = r["output"]["orders"].as_array().unwrap();
    assert_eq!(orders[1]["order_status"], "in_transit");
    assert_eq!(orders[1]["delivered_date"], Value::Null);
    let (_, r) = execute(
        &app,
        None,
        json!({"tool": "echo_context", "args": {"page": "orders"}}),
    )
    .await;
    assert_eq!(r["output"], json!({"echo": {"page": "orders"}}));
    let (_, r) = execute(
        &app,
        None,
        json!({"tool": "findNearestStore", "args": {"zip_code": "02139"}}),
    )
    .await;
    assert_eq!(r["output"][0]["zip_code"], "02138");
    assert!(r["duration_ms"].is_u64());
}

#[tokio::test]
async fn bad_arguments_are_422_listing_each_failing_path() {
    let app = spawn_app().await;
    let (st, b) = execute(
        &app,
        None,
        json!({"tool": "authenticate_user_information", "args": {
            "phone_number": "2065550100", "last_4_digits": "1234", "last_4_digits_type": "passport"}}),
    )
    .await;
    assert_error(st, &b, 422, "invalid_arguments");
    let paths: Vec<&str> = b["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/phone_number"), "{paths:?}");
    assert!(paths.contains(&"/last_4_digits_type"), "{paths:?}");
    assert!(
        paths.contains(&""),
        "the missing date_of_birth is reported at the root: {paths:?}"
    );
    let (st, b) = execute(&app, None, json!({"tool": "nope"})).await;
    assert_error(st, &b, 404, "unknown_tool");
    let (st, b) = execute(&app, None, json!({"tool": "echo_context", "extra": 1})).await;
    assert_error(st, &b, 422, "invalid_body");
    let (st, b) = execute(
        &app,
        None,
        json!({"tool": "lookupNewSales", "args": "boots"}),
    )
    .await;
    assert_error(st, &b, 422, "invalid_arguments");
}

#[tokio::test]
async fn a_session_call_needs_its_token_and_a_tool_of_the_active_agent() {
    let app = spawn_app().await;
    let s = retail(&app, "returns").await;
    let other = retail(&app, "returns").await;
    let body = json!({"tool": "lookupOrders", "args": {"phoneNumber": "(206) 555-0100"}, "session_id": s.id});
    let (st, b) = execute(&app, None, body.clone()).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = execute(&app, Some(&other.token), body.clone()).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = execute(
        &app,
        Some(&s.token),
        json!({"tool": "checkout", "session_id": s.id,
        "args": {"item_ids": ["101"], "phone_number": "(206) 555-0100"}}),
    )
    .await;
    assert_error(st, &b, 403, "tool_not_allowed");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lookupOrders")
    );
    let (st, _) = execute(&app, Some(&s.token), body).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_session_call_publishes_tool_result_once_per_correlation_id() {
    let app = spawn_app().await;
    let s = retail(&app, "salesAgent").await;
    let (mut ws, _) = app.connect(&s, None).await;
    let body = json!({"tool": "lookupNewSales", "args": {"category": "any"}, "session_id": s.id, "correlation_id": "call-7"});
    let (st, first) = execute(&app, Some(&s.token), body.clone()).await;
    assert_eq!(st, 200);
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["seq"].as_u64()),
        (Some("tool.result"), Some(1))
    );
    assert_eq!(ev["data"]["correlation_id"], "call-7");
    assert_eq!(ev["data"]["tool"], "lookupNewSales");
    assert_eq!(ev["data"]["success"], true);
    assert_eq!(ev["data"]["output"], first["output"]);
    assert!(ev["data"]["duration_ms"].is_u64());
    let (st, again) = execute(&app, Some(&s.token), body).await;
    assert_eq!(st, 200);
    assert_eq!(again, first, "the first result, unchanged");
    // No second event: the next one is seq 2 and comes from a new call.
    execute(
        &app,
        Some(&s.token),
        json!({"tool": "addToCart", "args": {"item_id": "101"}, "session_id": s.id}),
    )
    .await;
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["seq"].as_u64(), ev["data"]["tool"].as_str()),
        (Some(2), Some("addToCart"))
    );
}

#[tokio::test]
async fn a_failing_tool_is_success_false_with_its_event_not_a_5xx() {
    let app = spawn_app().await;
    let s = retail(&app, "returns").await;
    let (mut ws, _) = app.connect(&s, None).await;
    let (st, r) = execute(&app, Some(&s.token), json!({"tool": "checkEligibilityAndPossiblyInitiateReturn",
        "args": {"userDesiredAction": "return boots", "question": "Is it eligible?"}, "session_id": s.id})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["success"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("upstream_not_configured"),
        "{r}"
    );
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["data"]["success"].as_bool(), ev["data"]["error"].clone()),
        (Some(false), r["error"].clone())
    );
}

#[tokio::test]
async fn the_return_check_asks_the_model() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(response_body("eligible: true\nUnused and within 30 days.")),
        )
        .mount(&upstream)
        .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (_, r) = execute(
        &app,
        None,
        json!({"tool": "checkEligibilityAndPossiblyInitiateReturn",
        "args": {"userDesiredAction": "return boots", "question": "Unused, delivered Dec 6"}}),
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    assert!(
        r["output"]["result"]
            .as_str()
            .unwrap()
            .starts_with("eligible: true")
    );
    let sent: Value =
        serde_json::from_slice(&received(&upstream, "/v1/responses").await[0].body).unwrap();
    assert_eq!(sent["model"], "o4-mini");
    assert!(
        sent["input"][1]["content"]
            .as_str()
            .unwrap()
            .contains("Unused, delivered Dec 6")
    );
}

#[tokio::test]
async fn the_supervisor_runs_its_tool_loop() {
    let upstream = MockServer::start().await;
    let turn = Arc::new(AtomicUsize::new(0));
    let t = turn.clone();
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(move |_: &Request| {
            if t.fetch_add(1, Ordering::SeqCst) == 0 {
                ResponseTemplate::new(200).set_body_json(json!({"id": "r1", "output": [
                    {"type": "function_call", "call_id": "fc1", "name": "getUserAccountInfo",
                     "arguments": "{\"phone_number\":\"(206) 555-0142\"}"}]}))
            } else {
                ResponseTemplate::new(200).set_body_json(response_body("Your balance is $42.17."))
            }
        })
        .mount(&upstream)
        .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (_, r) = execute(
        &app,
        None,
        json!({"tool": "getNextResponseFromSupervisor",
        "args": {"relevantContextFromLastUserMessage": "What do I owe?"}}),
    )
    .await;
    assert_eq!(
        r["output"],
        json!({"nextResponse": "Your balance is $42.17."}),
        "{r}"
    );
    let reqs = received(&upstream, "/v1/responses").await;
    assert_eq!(reqs.len(), 2);
    let second: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(second["model"], "gpt-4.1");
    assert_eq!(second["parallel_tool_calls"], false);
    let items = second["input"].as_array().unwrap();
    assert_eq!(items[2]["type"], "function_call");
    assert_eq!(items[3]["type"], "function_call_output");
    assert!(items[3]["output"].as_str().unwrap().contains("NT-123456"));
}

/// A loopback webhook receiver: checks the signature, counts calls, answers per `mode`.
async fn webhook_receiver(secret: &'static str, calls: Arc<AtomicUsize>) -> String {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/hook/{mode}",
        axum::routing::post(
            move |axum::extract::Path(mode): axum::extract::Path<String>,
                  headers: HeaderMap,
                  body: Bytes| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let sig = headers
                        .get("x-switchboard-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let want = switchboard::tools::webhook::signature(secret.as_bytes(), &body);
                    if sig != want {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            "bad signature".to_owned(),
                        );
                    }
                    let token = headers
                        .get("x-api-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    match mode.as_str() {
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            (axum::http::StatusCode::OK, "{}".to_owned())
                        }
                        "broken" => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "database is down".to_owned(),
                        ),
                        _ => {
                            let req: Value = serde_json::from_slice(&body).unwrap();
                            (
                                axum::http::StatusCode::OK,
                                json!({"draft_id": "d-1", "saw": req, "token": token}).to_string(),
                            )
                        }
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn webhook_scenario(base: &str) -> String {
    let tool = |name: &str, mode: &str| {
        format!(
            "  - name: {name}\n    description: Drafts through the host app.\n    parameters:\n      type: object\n      properties:\n        title: {{type: string}}\n      required: [title]\n    http:\n      url: {base}/hook/{mode}\n      timeout_ms: 500\n      headers: {{x-api-token: SB_TEST_HOOK_TOKEN}}\n      hmac_secret_env: SB_TEST_HOOK_SECRET\n"
        )
    };
    format!(
        "id: drafts\nlabel: Drafts\ncompany_name: Acme\nagents:\n  - name: writer\n    instructions: Write drafts.\n    tools: [saveDraft, slowDraft, brokenDraft]\ntools:\n{}{}{}",
        tool("saveDraft", "ok"),
        tool("slowDraft", "slow"),
        tool("brokenDraft", "broken")
    )
}

#[tokio::test]
async fn webhook_tools_are_signed_and_their_failures_are_reported() {
    // SAFETY: nextest runs each test in its own process, so no other thread reads the environment.
    unsafe {
        std::env::set_var("SB_TEST_HOOK_TOKEN", "hook-token-1");
        std::env::set_var("SB_TEST_HOOK_SECRET", "hook-secret-1");
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let base = webhook_receiver("hook-secret-1", calls.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("drafts.yaml"), webhook_scenario(&base)).unwrap();
    let path = dir.path().to_owned();
    let app = spawn_app_with(move |c| c.scenarios_dir = Some(path)).await;
    let (_, b) = app.get_json("/api/session2?scenario_id=drafts").await;
    let s = Sess {
        id: b["session_id"].as_str().unwrap().to_owned(),
        token: b["events"]["token"].as_str().unwrap().to_owned(),
        epoch: String::new(),
    };
    let run = |tool: &str, cid: &str| json!({"tool": tool, "args": {"title": "Hello"}, "session_id": s.id, "correlation_id": cid});
    let (st, r) = execute(&app, Some(&s.token), run("saveDraft", "d1")).await;
    assert_eq!(st, 200);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["output"]["draft_id"], "d-1");
    assert_eq!(r["output"]["token"], "hook-token-1");
    assert_eq!(r["output"]["saw"]["arguments"], json!({"title": "Hello"}));
    assert_eq!(r["output"]["saw"]["session_id"], s.id.as_str());
    assert_eq!(r["output"]["saw"]["correlation_id"], "d1");
    // A retry with the same correlation id does not call the webhook again.
    let (_, again) = execute(&app, Some(&s.token), run("saveDraft", "d1")).await;
    assert_eq!(again, r);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let (st, r) = execute(&app, Some(&s.token), run("brokenDraft", "d2")).await;
    assert_eq!((st, r["success"].as_bool()), (200, Some(false)));
    assert!(
        r["error"].as_str().unwrap().contains("500")
            && r["error"].as_str().unwrap().contains("database is down"),
        "{r}"
    );
    let (st, r) = execute(&app, Some(&s.token), run("slowDraft", "d3")).await;
    assert_eq!((st, r["success"].as_bool()), (200, Some(false)));
    assert!(
        r["error"].as_str().unwrap().contains("did not answer"),
        "{r}"
    );
}

#[tokio::test]
async fn a_webhook_secret_that_is_not_set_fails_startup() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = webhook_scenario("http://127.0.0.1:9")
        .replace("SB_TEST_HOOK_SECRET", "SB_TEST_UNSET_SECRET_VAR");
    std::fs::write(dir.path().join("drafts.yaml"), yaml).unwrap();
    // SAFETY: as above.
    unsafe { std::env::set_var("SB_TEST_HOOK_TOKEN", "t") };
    let mut config = test_config();
    config.scenarios_dir = Some(dir.path().to_owned());
    let err = match switchboard::Application::build(config).await {
        Ok(_) => panic!("startup should fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("drafts.yaml")
            && err.contains("hmac_secret_env")
            && err.contains("SB_TEST_UNSET_SECRET_VAR"),
        "{err}"
    );
}
