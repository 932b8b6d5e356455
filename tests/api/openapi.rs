use crate::support::spawn_app;

#[tokio::test]
async fn openapi_lists_every_endpoint() {
    let app = spawn_app().await;
    let (s, doc) = app.get_json("/api/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/health",
        "/api/ready",
        "/api/session",
        "/api/responses",
        "/api/scenarios",
        "/api/scenarios/{id}",
        "/api/session2",
        "/api/sessions/{id}",
        "/api/sessions/{id}/events",
        "/api/events/batch",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(paths["/api/session2"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Session2Response"].is_object());
}
