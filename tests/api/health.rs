use crate::support::spawn_app;

#[tokio::test]
async fn health_reports_version_instance_and_mode() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["mode"], "embedded");
    assert_eq!(body["upstream"], "offline");
    assert!(body["instance_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["uptime_s"].is_u64());
}

#[tokio::test]
async fn ready_is_200_in_embedded_mode() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200);
    assert_eq!(body["ready"], true);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/api/health")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    let resp = app
        .client
        .get(app.url("/api/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}
