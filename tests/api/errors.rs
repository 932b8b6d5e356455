//! Bad input anywhere gets a 4xx in the JSON error shape, never plain text or a 500.

use serde_json::json;

use crate::support::{assert_error, spawn_app, spawn_app_with, split};

#[tokio::test]
async fn unknown_route_is_404_json() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/nope").await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = app.get_json("/nope").await;
    assert_error(s, &b, 404, "not_found");
    // `/` is the demo page: HTML, with its own content policy (same-origin scripts only).
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let client = app
        .client
        .get(app.url("/switchboard-client.js"))
        .send()
        .await
        .unwrap();
    assert!(
        client
            .text()
            .await
            .unwrap()
            .contains("export class SwitchboardClient")
    );
}

#[tokio::test]
async fn wrong_method_is_405_json_with_allow() {
    let app = spawn_app().await;
    let resp = app
        .client
        .delete(app.url("/api/session2"))
        .send()
        .await
        .unwrap();
    let allow = resp.headers().get("allow").cloned();
    let (s, b) = split(resp).await;
    assert_error(s, &b, 405, "method_not_allowed");
    let allow = allow
        .expect("Allow header kept")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let resp = app
        .client
        .put(app.url("/api/responses"))
        .send()
        .await
        .unwrap();
    let (s, b) = split(resp).await;
    assert_error(s, &b, 405, "method_not_allowed");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for path in ["/api/session2", "/api/responses"] {
        let resp = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body("{\"scenario_id\": ")
            .send()
            .await
            .unwrap();
        let (s, b) = split(resp).await;
        assert_error(s, &b, 400, "malformed_json");
    }
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_422() {
    let app = spawn_app().await;
    let (s, b) = app
        .post_json("/api/session2", &json!({"scenario_id": 12}))
        .await;
    assert_error(s, &b, 422, "invalid_body");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scenario_id")
    );
    let (s, b) = app
        .post_json("/api/session2", &json!({"scenarioId": "retail"}))
        .await;
    assert_error(s, &b, 422, "invalid_body");
    let (s, b) = app.post_json("/api/session2", &json!(["retail"])).await;
    assert_error(s, &b, 422, "invalid_body");
}

#[tokio::test]
async fn missing_content_type_is_415() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/session2"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let (s, b) = split(resp).await;
    assert_error(s, &b, 415, "unsupported_media_type");
}

#[tokio::test]
async fn oversize_body_is_413() {
    let app = spawn_app_with(|c| c.body_limit = 2048).await;
    let big = json!({"scenario_id": "retail", "context": "x".repeat(4096)});
    let (s, b) = app.post_json("/api/session2", &big).await;
    assert_error(s, &b, 413, "payload_too_large");
    // Also when the body is streamed without a Content-Length.
    let chunks = vec![Ok::<_, std::io::Error>(vec![b' '; 4096])];
    let resp = app
        .client
        .post(app.url("/api/responses"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let (s, b) = split(resp).await;
    assert_error(s, &b, 413, "payload_too_large");
}

#[tokio::test]
async fn bad_query_is_400() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/session2?scenario_id=%ZZ").await;
    assert!(s == 400, "{s} {b}");
    assert!(b["error"]["code"].is_string());
}
