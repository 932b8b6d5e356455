//! The official `openai` Python SDK against our `/api/responses` proxy (fake upstream).
//! The interpreter comes from `SWITCHBOARD_TEST_PYTHON` or `./.venv/bin/python`, which
//! `scripts/test` prepares; without it this test fails with instructions, never skips.

use std::path::PathBuf;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = std::env::var_os("SWITCHBOARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with the openai SDK at {}: run scripts/test (it creates .venv from \
         tests/python/requirements.txt) or set SWITCHBOARD_TEST_PYTHON",
        p.display()
    );
    p
}

async fn responses_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    // Answer by request: a JSON verdict when a json_schema format is asked for, else text.
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let text = if body.pointer("/text/format/type").and_then(Value::as_str)
                == Some("json_schema")
            {
                r#"{"moderationRationale":"Polite greeting.","moderationCategory":"NONE"}"#
            } else {
                "Hello from the fake upstream"
            };
            ResponseTemplate::new(200).set_body_json(response_body(text))
        })
        .mount(&upstream)
        .await;
    upstream
}

/// Runs the SDK script with `key` as its API key; returns (success, stdout + stderr).
async fn run_sdk(app: &TestApp, key: &str) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_sdk_check.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .env("SWITCHBOARD_BASE_URL", app.url("/api"))
        .env("OPENAI_API_KEY", key)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn openai_python_sdk_create_and_parse_through_the_proxy() {
    let upstream = responses_upstream().await;
    let app = spawn_online(&upstream, |_| {}).await;
    let (ok, stdout) = run_sdk(&app, "sk-client-side-placeholder").await;
    assert!(ok, "python failed:\n{stdout}");
    assert!(
        stdout.contains("create ok: Hello from the fake upstream"),
        "{stdout}"
    );
    assert!(stdout.contains("parse ok: NONE"), "{stdout}");

    let reqs = received(&upstream, "/v1/responses").await;
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        // Our key went upstream, not the SDK's placeholder.
        assert_authorized(r);
    }
    let parse_req: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(parse_req["text"]["format"]["type"], "json_schema");
    assert_eq!(parse_req["model"], "gpt-4o-mini");
}

/// With anonymous calls off (Redis mode's default), the SDK's key must be a real
/// credential: a session token works, a placeholder is refused before the upstream.
#[tokio::test]
async fn openai_python_sdk_uses_a_session_token_when_anonymous_is_off() {
    let upstream = responses_upstream().await;
    let app = spawn_online(&upstream, |c| c.access.allow_anonymous = Some(false)).await;
    let (ok, out) = run_sdk(&app, "sk-client-side-placeholder").await;
    assert!(
        !ok && out.contains("AuthenticationError") && out.contains("401"),
        "{out}"
    );
    assert!(received(&upstream, "/v1/responses").await.is_empty());
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(client_secret_body()))
        .mount(&upstream)
        .await;
    let resp = app
        .client
        .get(app.url("/api/session2?scenario_id=retail"))
        .bearer_auth(crate::support::channel::API_KEY)
        .send()
        .await
        .unwrap();
    let (st, boot) = split(resp).await;
    assert_eq!(st, 200, "{boot}");
    let token = boot["events"]["token"].as_str().unwrap();
    let (ok, out) = run_sdk(&app, token).await;
    assert!(ok, "python failed with a session token:\n{out}");
    assert!(
        out.contains("create ok: Hello from the fake upstream"),
        "{out}"
    );
}
