//! `GET /api/session`: the legacy key endpoint the demo frontend calls.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn mints_a_key_in_the_legacy_and_ga_shapes() {
    let upstream = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200).set_body_json(client_secret_body()),
    )
    .await;
    let app = spawn_online(&upstream, |c| c.realtime_model = "gpt-realtime-mini".into()).await;
    let resp = app
        .client
        .get(app.url("/api/session"))
        .send()
        .await
        .unwrap();
    let (s, b) = split(resp).await;
    assert_eq!(s, 200);
    assert_eq!(b["client_secret"]["value"], "ek_test_123");
    assert_eq!(b["client_secret"]["expires_at"], 1_900_000_000u64);
    assert_eq!(b["value"], "ek_test_123");
    assert_eq!(b["session"]["type"], "realtime");
    assert_no_key(&b.to_string());
    let reqs = received(&upstream, "/v1/realtime/client_secrets").await;
    assert_eq!(reqs.len(), 1);
    assert_authorized(&reqs[0]);
    let sent: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(sent["session"]["model"], "gpt-realtime-mini");
}

#[tokio::test]
async fn upstream_errors_map_to_502_without_the_key() {
    let upstream = MockServer::start().await;
    let leaky = format!("Incorrect API key provided: {UPSTREAM_KEY}.");
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"message": leaky}})),
        )
        .mount(&upstream)
        .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let resp = app
        .client
        .get(app.url("/api/session"))
        .send()
        .await
        .unwrap();
    let (s, b) = split(resp).await;
    assert_error(s, &b, 502, "upstream_error");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Incorrect API key provided"), "{msg}");
    assert_no_key(msg);
    assert!(!msg.contains("sk-"), "{msg}");
    // 401 is not retried.
    assert_eq!(
        received(&upstream, "/v1/realtime/client_secrets")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_2xx_without_a_key_is_502() {
    let upstream = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200).set_body_json(json!({"session": {}})),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app.get_json("/api/session").await;
    assert_error(s, &b, 502, "upstream_error");
}

#[tokio::test]
async fn rate_limits_are_retried_then_succeed() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(client_secret_body()))
        .mount(&upstream)
        .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app.get_json("/api/session").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        received(&upstream, "/v1/realtime/client_secrets")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn timeout_is_504() {
    let upstream = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200)
            .set_body_json(client_secret_body())
            .set_delay(std::time::Duration::from_secs(3)),
    )
    .await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (s, b) = app.get_json("/api/session").await;
    assert_error(s, &b, 504, "upstream_timeout");
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = format!("http://127.0.0.1:{port}/v1");
        c.upstream_retries = 0;
    })
    .await;
    let (s, b) = app.get_json("/api/session").await;
    assert_error(s, &b, 502, "upstream_error");
}

#[tokio::test]
async fn offline_is_503() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/session").await;
    assert_error(s, &b, 503, "upstream_not_configured");
}
