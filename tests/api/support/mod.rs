//! Test helpers: `spawn_app()` runs the real application on 127.0.0.1:0 in this process;
//! the fake upstream is a wiremock server on loopback that stands in for the OpenAI API.

#![allow(dead_code)]

pub mod channel;
pub mod cluster;
pub mod model;
pub mod postgres;
pub mod realtime;
pub mod redis;
pub mod tcp_proxy;

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::state::AppState;
use switchboard::{Application, Config};
use tokio::sync::oneshot;
use wiremock::MockServer;

/// The upstream key the tests configure; no response or log may contain it.
pub const UPSTREAM_KEY: &str = "sk-test-4f9d2c1b8a7e6d5c4b3a2f1e";
/// A session secret for tests that forge tokens.
pub const SESSION_SECRET: &str = "test-session-secret-0123456789abcdef";

/// A running application.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// A client for it.
    pub client: reqwest::Client,
    /// Its state (stores, tokens).
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestApp {
    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET and return status + JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        split(resp).await
    }

    /// POST JSON and return status + JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        split(resp).await
    }

    /// Bootstraps a session offline-style and returns the `session2` answer.
    pub async fn session2(&self, scenario: &str) -> Value {
        let (status, body) = self
            .get_json(&format!("/api/session2?scenario_id={scenario}"))
            .await;
        assert_eq!(status, 200, "session2 failed: {body}");
        body
    }
}

/// Status and JSON body of a response (panics if the body is not JSON).
pub async fn split(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.expect("body read");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}, non-JSON body ({ct}): {text:?}"));
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} for {text}"
    );
    (status, body)
}

/// Asserts the JSON error shape with the given status and code.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "unexpected status; body {body}");
    assert_eq!(
        body["error"]["code"], want_code,
        "unexpected code; body {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}

/// A session token for `sid` signed with `secret`, expiring `exp_offset` seconds from now
/// (negative: already expired); scenario `simpleHandoff`, root `greeter`.
pub fn forge_token(sid: &str, exp_offset: i64, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sid": sid, "scn": "simpleHandoff", "root": "greeter", "iat": now, "exp": now + exp_offset}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The configuration tests start from: loopback, port 0, offline, embedded.
pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        api_keys: vec![channel::API_KEY.to_owned().into()],
        // Tests make many calls from one IP; the access tests set their own limits.
        access: switchboard::config::AccessSettings {
            rate_ip: None,
            rate_user: None,
            ..switchboard::config::AccessSettings::defaults()
        },
        ..Config::default()
    }
}

/// Spawns the app offline with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app with adjusted settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    adjust(&mut config);
    switchboard::telemetry::init(config.log_format);
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    let state = app.state();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(app.run_with_shutdown(async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        state,
        stop: Some(tx),
    }
}

/// Spawns an instance in Redis mode on `redis` with key prefix `prefix` (instances sharing
/// a prefix form one deployment).
pub async fn spawn_redis_app(
    redis: &redis::RedisServer,
    prefix: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let (url, prefix) = (redis.url(), prefix.to_owned());
    spawn_app_with(move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
        c.session_secret = Some(SESSION_SECRET.to_owned().into());
        c.position_check = Duration::from_millis(500);
        // Redis mode refuses anonymous model-backed calls by default; most tests bootstrap
        // sessions anonymously (the access tests check the default).
        c.access.allow_anonymous = Some(true);
        adjust(c);
    })
    .await
}

/// Spawns the app pointed at a fake upstream, with a short timeout and fast retries.
pub async fn spawn_online(upstream: &MockServer, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let base = format!("{}/v1", upstream.uri());
    spawn_app_with(move |c| {
        c.openai_api_key = Some(SecretString::from(UPSTREAM_KEY));
        c.openai_base_url = base;
        c.upstream_timeout = Duration::from_millis(700);
        c.upstream_retries = 1;
        adjust(c);
    })
    .await
}

/// A fake upstream answering every `POST` to `path` with `template`.
pub async fn upstream_with(path: &str, template: wiremock::ResponseTemplate) -> MockServer {
    let upstream = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(path))
        .respond_with(template)
        .mount(&upstream)
        .await;
    upstream
}

/// A successful client-secret answer.
pub fn client_secret_body() -> Value {
    json!({
        "value": "ek_test_123",
        "expires_at": 1_900_000_000u64,
        "session": {"type": "realtime", "model": "gpt-realtime"}
    })
}

/// A Responses API answer whose single message says `text`.
pub fn response_body(text: &str) -> Value {
    json!({
        "id": "resp_test_1",
        "object": "response",
        "created_at": 1_700_000_000u64,
        "status": "completed",
        "model": "gpt-4.1-mini",
        "output": [{
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]
        }],
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 8
        }
    })
}

/// The requests the fake upstream received on `path`.
pub async fn received(upstream: &MockServer, path: &str) -> Vec<wiremock::Request> {
    upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

/// Asserts an upstream request carried the test key as a bearer token.
pub fn assert_authorized(req: &wiremock::Request) {
    let auth = req
        .headers
        .get("authorization")
        .expect("authorization header sent upstream")
        .to_str()
        .unwrap();
    assert_eq!(auth, format!("Bearer {UPSTREAM_KEY}"));
}

/// Asserts a body does not contain the upstream key.
pub fn assert_no_key(text: &str) {
    assert!(
        !text.contains(UPSTREAM_KEY),
        "the upstream key leaked: {text}"
    );
}

/// Polls `check` every 25 ms until it returns `Some`, for at most `within`; panics when it
/// never does. The one way tests wait for something to happen (instead of a hand-written
/// loop).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
