use crate::support::*;

async fn get_with(app: &TestApp, sid: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = app.client.get(app.url(&format!("/api/sessions/{sid}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    split(req.send().await.unwrap()).await
}

fn forge(sid: &str, exp_offset: i64, secret: &str) -> String {
    forge_token(sid, exp_offset, secret)
}

#[tokio::test]
async fn the_session_token_reads_the_session_state() {
    let app = spawn_app().await;
    let b = app.session2("retail").await;
    let sid = b["session_id"].as_str().unwrap();
    let token = b["events"]["token"].as_str().unwrap();
    let (s, v) = get_with(&app, sid, Some(token)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["session_id"], sid);
    assert_eq!(v["scenario_id"], "customerServiceRetail");
    assert_eq!(v["root_agent"], "authentication");
    assert_eq!(v["active_agent"], "authentication");
    assert_eq!(v["epoch"], b["events"]["epoch"]);
    assert_eq!(v["seq"], 0);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn missing_wrong_or_foreign_tokens_are_401() {
    let app = spawn_app().await;
    let a = app.session2("simpleHandoff").await;
    let b = app.session2("simpleHandoff").await;
    let sid_a = a["session_id"].as_str().unwrap();
    let token_b = b["events"]["token"].as_str().unwrap();
    let (s, v) = get_with(&app, sid_a, None).await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = get_with(&app, sid_a, Some("not-a-jwt")).await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = get_with(&app, sid_a, Some(token_b)).await;
    assert_error(s, &v, 401, "unauthorized");
    // Signed with another secret.
    let (s, v) = get_with(&app, sid_a, Some(&forge(sid_a, 60, SESSION_SECRET))).await;
    assert_error(s, &v, 401, "unauthorized");
    // Basic auth is not a bearer token.
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{sid_a}")))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    let (s, v) = split(resp).await;
    assert_error(s, &v, 401, "unauthorized");
}

#[tokio::test]
async fn expired_token_is_401_and_unknown_session_is_404() {
    let app = spawn_app_with(|c| {
        c.session_secret = Some(SESSION_SECRET.to_owned().into());
    })
    .await;
    let b = app.session2("simpleHandoff").await;
    let sid = b["session_id"].as_str().unwrap();
    let (s, v) = get_with(&app, sid, Some(&forge(sid, -120, SESSION_SECRET))).await;
    assert_error(s, &v, 401, "unauthorized");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    let ghost = "0000aaaa0000bbbb";
    let (s, v) = get_with(&app, ghost, Some(&forge(ghost, 60, SESSION_SECRET))).await;
    assert_error(s, &v, 404, "unknown_session");
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = spawn_app_with(|c| c.session_ttl = std::time::Duration::from_millis(400)).await;
    let b = app.session2("simpleHandoff").await;
    let sid = b["session_id"].as_str().unwrap();
    let token = b["events"]["token"].as_str().unwrap();
    let (s, _) = get_with(&app, sid, Some(token)).await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (s, v) = get_with(&app, sid, Some(token)).await;
    assert_error(s, &v, 404, "unknown_session");
}
