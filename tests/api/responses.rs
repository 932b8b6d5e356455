//! `POST /api/responses`: proxy with `output_text` / `output_parsed`, streaming passthrough.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

async fn upstream_answering(template: ResponseTemplate) -> MockServer {
    upstream_with("/v1/responses", template).await
}

#[tokio::test]
async fn proxies_and_adds_output_text() {
    let upstream =
        upstream_answering(ResponseTemplate::new(200).set_body_json(response_body("Hello there")))
            .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let req = json!({"model": "gpt-4.1-mini", "input": [{"role": "user", "content": "hi"}]});
    let (s, b) = app.post_json("/api/responses", &req).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["output_text"], "Hello there");
    assert_eq!(b["id"], "resp_test_1");
    assert!(b.get("output_parsed").is_none());
    let reqs = received(&upstream, "/v1/responses").await;
    assert_eq!(reqs.len(), 1);
    assert_authorized(&reqs[0]);
    let sent: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(sent, req, "the body is forwarded unchanged");
}

#[tokio::test]
async fn json_schema_format_adds_output_parsed() {
    let verdict = r#"{"moderationRationale":"fine","moderationCategory":"NONE","testText":null}"#;
    let upstream =
        upstream_answering(ResponseTemplate::new(200).set_body_json(response_body(verdict))).await;
    let app = spawn_online(&upstream, |_| {}).await;
    let req = json!({
        "model": "gpt-4o-mini",
        "input": [{"role": "user", "content": "classify"}],
        "text": {"format": {"type": "json_schema", "name": "output_format", "strict": true,
            "schema": {"type": "object"}}}
    });
    let (s, b) = app.post_json("/api/responses", &req).await;
    assert_eq!(s, 200);
    assert_eq!(b["output_parsed"]["moderationCategory"], "NONE");

    // Text that is not JSON gives `output_parsed: null`, not an error.
    let upstream =
        upstream_answering(ResponseTemplate::new(200).set_body_json(response_body("not json")))
            .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app.post_json("/api/responses", &req).await;
    assert_eq!(s, 200);
    assert_eq!(b["output_parsed"], Value::Null);
}

#[tokio::test]
async fn upstream_client_errors_keep_their_status() {
    let upstream = upstream_answering(
        ResponseTemplate::new(400)
            .set_body_json(json!({"error": {"message": "Unknown model 'nope'"}})),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app
        .post_json("/api/responses", &json!({"model": "nope", "input": "hi"}))
        .await;
    assert_error(s, &b, 400, "upstream_rejected");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown model")
    );
    assert_eq!(
        received(&upstream, "/v1/responses").await.len(),
        1,
        "4xx is not retried"
    );
}

#[tokio::test]
async fn upstream_server_errors_are_502_after_retries() {
    let upstream = upstream_answering(ResponseTemplate::new(500).set_body_string("boom")).await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app
        .post_json("/api/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_error(s, &b, 502, "upstream_error");
    assert!(b["error"]["message"].as_str().unwrap().contains("boom"));
    assert_eq!(received(&upstream, "/v1/responses").await.len(), 2);
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let upstream = upstream_answering(
        ResponseTemplate::new(200)
            .set_body_json(response_body("late"))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app
        .post_json("/api/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_error(s, &b, 504, "upstream_timeout");
}

#[tokio::test]
async fn offline_is_503_and_bad_bodies_are_400() {
    let app = spawn_app().await;
    let (s, b) = app
        .post_json("/api/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_error(s, &b, 503, "upstream_not_configured");
    let (s, b) = app
        .post_json("/api/responses", &json!("just a string"))
        .await;
    assert_error(s, &b, 400, "invalid_body");
    let (s, b) = app
        .post_json("/api/responses", &json!({"input": "no model"}))
        .await;
    assert_error(s, &b, 400, "invalid_body");
}

/// A fake upstream that streams two SSE events and sends the second only after `release`.
async fn streaming_upstream(release: Arc<Notify>) -> String {
    let app = axum::Router::new().route(
        "/v1/responses",
        axum::routing::post(move || {
            let release = release.clone();
            async move {
                let stream = async_stream(release);
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn async_stream(
    release: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let first = "event: response.output_text.delta\ndata: {\"delta\":\"Hel\"}\n\n";
    let second = "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n";
    futures_util::stream::once(async move { Ok(bytes::Bytes::from(first)) }).chain(
        futures_util::stream::once(async move {
            release.notified().await;
            Ok(bytes::Bytes::from(second))
        }),
    )
}

#[tokio::test]
async fn stream_true_passes_events_through_as_they_arrive() {
    let release = Arc::new(Notify::new());
    let base = streaming_upstream(release.clone()).await;
    let app = spawn_app_with(move |c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = base;
    })
    .await;
    let resp = app
        .client
        .post(app.url("/api/responses"))
        .json(&json!({"model": "m", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    // The first event arrives while the upstream is still holding the second one back.
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("first event passed through before the stream ended")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Hel"));
    release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains("response.completed"));
}
