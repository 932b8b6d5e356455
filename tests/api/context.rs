//! `POST /api/context/snapshot`.

use serde_json::{Value, json};

use crate::support::*;

async fn snapshot(app: &TestApp, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/api/context/snapshot"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    split(req.send().await.unwrap()).await
}

#[tokio::test]
async fn blocks_are_labelled_scrubbed_and_reported_without_the_values() {
    let app = spawn_app().await;
    let (st, s) = snapshot(&app, None, json!({"page": "orders", "project_id": "p-42", "user_id": "u-7",
        "extra": {"contact": "ada@example.com, 206-555-0100", "plan": {"tier": "pro"}, "note": null}})).await;
    assert_eq!(st, 200, "{s}");
    assert_eq!(
        s["content_blocks"],
        json!([
            "Page: orders",
            "Project: p-42",
            "User: u-7",
            "contact: [EMAIL], [PHONE]",
            "plan: {\"tier\":\"pro\"}"
        ])
    );
    assert_eq!(s["metadata"]["redactions"], json!({"email": 1, "phone": 1}));
    assert_eq!(s["metadata"]["blocks"], 5);
    assert_eq!(s["metadata"]["stored"], false);
    assert!(!s.to_string().contains("ada@example.com"));
    assert_eq!(s["id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn the_total_size_is_capped() {
    let app = spawn_app_with(|c| c.context_max_bytes = 30).await;
    let (_, s) = snapshot(
        &app,
        None,
        json!({"page": "a".repeat(20), "extra": {"b": "c".repeat(20), "d": "e"}}),
    )
    .await;
    let blocks = s["content_blocks"].as_array().unwrap();
    let total: usize = blocks.iter().map(|b| b.as_str().unwrap().len()).sum();
    assert_eq!(total, 30);
    assert_eq!(
        (
            s["metadata"]["truncated"].as_bool(),
            s["metadata"]["dropped_blocks"].as_u64()
        ),
        (Some(true), Some(1))
    );
}

#[tokio::test]
async fn with_a_session_it_becomes_the_sessions_context() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    let body = json!({"page": "checkout", "extra": {"cart": "2 items"}, "session_id": s.id});
    let (st, b) = snapshot(&app, None, body.clone()).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = snapshot(&app, Some(&s.token), body).await;
    assert_eq!((st, b["metadata"]["stored"].as_bool()), (200, Some(true)));
    let (_, v) = app.session_state(&s).await;
    assert_eq!(v["context"], "Page: checkout\ncart: 2 items");
    let (st, b) = snapshot(&app, None, json!({"extra": "not an object"})).await;
    assert_error(st, &b, 422, "invalid_body");
}
