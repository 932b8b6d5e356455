//! `POST /api/moderate`: local rules, upstream and brand checks, fail-open/closed, events.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::channel::*;
use crate::support::*;

async fn moderate(app: &TestApp, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.post(app.url("/api/moderate")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    split(req.send().await.unwrap()).await
}

#[tokio::test]
async fn local_rules_refuse_denied_phrases_and_redact_pii() {
    let app =
        spawn_app_with(|c| c.deny_patterns = vec!["competitor board".into(), "idiot".into()]).await;
    let (st, d) = moderate(
        &app,
        None,
        json!({"text": "Buy a Competitor Board instead"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            d["allowed"].as_bool(),
            d["categories"]["denied_phrase"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert_eq!(d["flagged_by"], json!(["local"]));
    let (_, d) = moderate(
        &app,
        None,
        json!({"text": "Reach me at ada@example.com or 206-555-0100"}),
    )
    .await;
    assert_eq!(d["allowed"], true);
    assert_eq!(d["sanitized_text"], "Reach me at [EMAIL] or [PHONE]");
    assert_eq!(d["redactions"], json!({"email": 1, "phone": 1}));
    assert_eq!(d["categories"]["pii"], true);
    let (_, d) = moderate(
        &app,
        None,
        json!({"text": "Idiotic is a longer word, order SNP-20230914-001"}),
    )
    .await;
    assert_eq!(
        (d["allowed"].as_bool(), d["sanitized_text"].clone()),
        (Some(true), Value::Null),
        "no near-miss: {d}"
    );
}

#[tokio::test]
async fn a_refused_text_in_a_session_publishes_moderation_flagged() {
    let app = spawn_app_with(|c| c.deny_patterns = vec!["forbidden".into()]).await;
    let s = app.new_session().await;
    let (mut ws, _) = app.connect(&s, None).await;
    let body = json!({"text": "this is forbidden, mail x@y.io", "session_id": s.id, "source": "assistant"});
    let (st, b) = moderate(&app, None, body.clone()).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, d) = moderate(&app, Some(&s.token), body).await;
    assert_eq!(
        (st, d["allowed"].as_bool(), d["event_seq"].as_u64()),
        (200, Some(false), Some(1))
    );
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "moderation.flagged");
    assert_eq!(ev["data"]["categories"]["denied_phrase"], true);
    assert_eq!(
        ev["data"]["sanitized_text"],
        "this is forbidden, mail [EMAIL]"
    );
    assert_eq!(ev["data"]["source"], "assistant");
    // An allowed text publishes nothing.
    let (_, d) = moderate(
        &app,
        Some(&s.token),
        json!({"text": "hello", "session_id": s.id}),
    )
    .await;
    assert_eq!(
        (d["allowed"].as_bool(), d["event_seq"].clone()),
        (Some(true), Value::Null)
    );
}

#[tokio::test]
async fn the_upstream_model_maps_into_categories() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/moderations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "modr-1", "model": "omni-moderation-latest",
            "results": [{"flagged": true, "categories": {"harassment": true, "violence": false},
                         "category_scores": {"harassment": 0.91, "violence": 0.01}}]}),
        ))
        .mount(&upstream)
        .await;
    let app = spawn_online(&upstream, |c| {
        c.moderation = switchboard::moderation::Modes::parse("local,upstream").unwrap()
    })
    .await;
    let (_, d) = moderate(&app, None, json!({"text": "you are awful"})).await;
    assert_eq!(
        (
            d["allowed"].as_bool(),
            d["categories"]["harassment"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert_eq!(d["flagged_by"], json!(["upstream"]));
    assert_eq!(d["modes"], json!(["local", "upstream"]));
    let sent: Value =
        serde_json::from_slice(&received(&upstream, "/v1/moderations").await[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"model": "omni-moderation-latest", "input": "you are awful"})
    );
}

#[tokio::test]
async fn the_brand_classifier_judges_for_the_sessions_company() {
    let upstream = MockServer::start().await;
    let verdict = r#"{"moderationRationale":"Mocks a rival shop.","moderationCategory":"OFF_BRAND","testText":null}"#;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(response_body(verdict)))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(client_secret_body()))
        .mount(&upstream)
        .await;
    let app = spawn_online(&upstream, |c| {
        c.moderation = switchboard::moderation::Modes::parse("brand").unwrap()
    })
    .await;
    let (_, b) = app.get_json("/api/session2?scenario_id=retail").await;
    let (sid, token) = (
        b["session_id"].as_str().unwrap(),
        b["events"]["token"].as_str().unwrap(),
    );
    let (_, d) = moderate(
        &app,
        Some(token),
        json!({"text": "Their boards are junk", "session_id": sid}),
    )
    .await;
    assert_eq!(
        (
            d["allowed"].as_bool(),
            d["categories"]["OFF_BRAND"].as_bool()
        ),
        (Some(false), Some(true)),
        "{d}"
    );
    assert_eq!(d["rationale"], "Mocks a rival shop.");
    let sent: Value =
        serde_json::from_slice(&received(&upstream, "/v1/responses").await[0].body).unwrap();
    assert_eq!(sent["text"]["format"]["type"], "json_schema");
    assert!(
        sent["input"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Snowy Peak Boards")
    );
}

#[tokio::test]
async fn failures_are_open_or_closed_as_configured() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/moderations"))
        .respond_with(ResponseTemplate::new(500).set_body_string("down"))
        .mount(&upstream)
        .await;
    let modes = switchboard::moderation::Modes::parse("local,upstream").unwrap();
    let open = spawn_online(&upstream, |c| c.moderation = modes).await;
    let (_, d) = moderate(&open, None, json!({"text": "hello"})).await;
    assert_eq!(d["allowed"], true);
    assert!(
        d["failures"][0].as_str().unwrap().starts_with("upstream:"),
        "{d}"
    );
    let closed = spawn_online(&upstream, |c| {
        c.moderation = modes;
        c.moderation_fail_closed = true;
    })
    .await;
    let (_, d) = moderate(&closed, None, json!({"text": "hello"})).await;
    assert_eq!(d["allowed"], false);
    // Offline, an upstream check is a failure too (open by default).
    let offline = spawn_app_with(|c| c.moderation = modes).await;
    let (_, d) = moderate(&offline, None, json!({"text": "hello"})).await;
    assert_eq!(d["allowed"], true);
    assert!(
        d["failures"][0]
            .as_str()
            .unwrap()
            .contains("upstream_not_configured")
    );
}

#[tokio::test]
async fn bad_requests_are_422() {
    let app = spawn_app().await;
    let (st, b) = moderate(&app, None, json!({"text": "  "})).await;
    assert_error(st, &b, 422, "invalid_body");
    let (st, b) = moderate(&app, None, json!({"text": "hi", "source": "robot"})).await;
    assert_error(st, &b, 422, "invalid_body");
    let (st, b) = moderate(&app, None, json!({"txt": "hi"})).await;
    assert_error(st, &b, 422, "invalid_body");
}

/// Every model-backed path of tools, moderation and orchestration, against an upstream that
/// errors, one that times out, and none at all: each answers 200 with the failure visible,
/// never a 5xx.
#[tokio::test]
async fn model_backed_paths_report_upstream_errors_timeouts_and_offline() {
    enum Up {
        Error,
        Slow,
        Offline,
    }
    for up in [Up::Error, Up::Slow, Up::Offline] {
        let server = MockServer::start().await;
        let template = match up {
            Up::Error => ResponseTemplate::new(500).set_body_string("upstream exploded"),
            _ => ResponseTemplate::new(200)
                .set_body_json(response_body("late"))
                .set_delay(std::time::Duration::from_secs(3)),
        };
        Mock::given(method("POST"))
            .respond_with(template)
            .mount(&server)
            .await;
        let modes = switchboard::moderation::Modes::parse("local,upstream,brand").unwrap();
        let app = match up {
            Up::Offline => spawn_app_with(move |c| c.moderation = modes).await,
            _ => {
                spawn_online(&server, move |c| {
                    c.moderation = modes;
                    c.upstream_retries = 0;
                })
                .await
            }
        };
        let label = match up {
            Up::Error => "error",
            Up::Slow => "timeout",
            Up::Offline => "offline",
        };
        let want = match up {
            Up::Error => "upstream exploded",
            Up::Slow => "timed out",
            Up::Offline => "upstream_not_configured",
        };
        for (tool, args) in [
            (
                "checkEligibilityAndPossiblyInitiateReturn",
                json!({"userDesiredAction": "return", "question": "ok?"}),
            ),
            (
                "getNextResponseFromSupervisor",
                json!({"relevantContextFromLastUserMessage": "bill"}),
            ),
        ] {
            let resp = app
                .client
                .post(app.url("/api/tools/execute"))
                .json(&json!({"tool": tool, "args": args}))
                .send()
                .await
                .unwrap();
            let (st, r) = split(resp).await;
            assert_eq!(
                (st, r["success"].as_bool()),
                (200, Some(false)),
                "{label} {tool}: {r}"
            );
            assert!(
                r["error"].as_str().unwrap().contains(want),
                "{label} {tool}: {r}"
            );
        }
        let (st, d) = moderate(&app, None, json!({"text": "hello"})).await;
        assert_eq!(
            (st, d["allowed"].as_bool()),
            (200, Some(true)),
            "{label}: {d}"
        );
        let failures = d["failures"].as_array().unwrap();
        assert_eq!(
            failures.len(),
            2,
            "{label}: upstream and brand both failed: {d}"
        );
        assert!(
            failures.iter().all(|f| f.as_str().unwrap().contains(want)),
            "{label}: {d}"
        );
    }
}
