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

#[tokio::test]
async fn openai_python_sdk_create_and_parse_through_the_proxy() {
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
    let app = spawn_online(&upstream, |_| {}).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_sdk_check.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .env("SWITCHBOARD_BASE_URL", app.url("/api"))
        .env("OPENAI_API_KEY", "sk-client-side-placeholder")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
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
