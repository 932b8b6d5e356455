//! Hostile input: schemathesis (PyPI) generates requests from `/api/openapi.json` against a
//! live instance with a fake upstream. No request may produce a 5xx, and every documented
//! response must match its schema. Bounded by example count and time.

use std::time::Duration;

use crate::support::channel::API_KEY;
use crate::support::realtime::spawn_with_realtime;

#[tokio::test]
async fn generated_requests_never_get_a_5xx_or_a_response_off_the_schema() {
    let (_model, _fake, app) = spawn_with_realtime(|c| {
        c.upstream_timeout = Duration::from_secs(2);
    })
    .await;
    // Two real sessions, so operations that need one reach their logic instead of a 404:
    // `a` is used everywhere; `b` is the one the generated DELETEs revoke.
    let a = app.session2("customerServiceRetail").await;
    let b = app.session2("customerServiceRetail").await;
    let (a_id, a_token) = (
        a["session_id"].as_str().unwrap(),
        a["events"]["token"].as_str().unwrap(),
    );
    let b_id = b["session_id"].as_str().unwrap();
    // `c` runs tools: its active agent (the root) stays put, whatever `a` is switched to.
    let c = app.session2("customerServiceRetail").await;
    let (c_id, c_token) = (
        c["session_id"].as_str().unwrap(),
        c["events"]["token"].as_str().unwrap(),
    );
    // An agent (Agents SDK memory) session for the `/api/sdk/session/*` operations.
    let (status, agent) = app
        .post_json(
            "/api/sdk/session/create",
            &serde_json::json!({"session_id": "fuzz-agent", "instructions": "Answer briefly."}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let agent_token = agent["token"].as_str().unwrap();
    let venv = crate::python_sdk::python();
    let st = venv.parent().unwrap().join("schemathesis");
    assert!(
        st.exists(),
        "schemathesis is not installed in the test venv: run scripts/test"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[auth.openapi.server_api_key]
bearer = "{API_KEY}"

[auth.openapi.session_token]
bearer = "{a_token}"

[parameters]
"path.id" = "{a_id}"
"body.session_id" = "{a_id}"

[[operations]]
include-operation-id = "detail"
parameters = {{ "path.id" = "customerServiceRetail" }}

[[operations]]
include-path-regex = "^/api/sdk/session/(message|pop|transcript)$"
headers = {{ Authorization = "Bearer {agent_token}" }}
parameters = {{ "body.session_id" = "fuzz-agent", "query.session_id" = "fuzz-agent" }}

[[operations]]
include-path = "/api/tools/execute"
headers = {{ Authorization = "Bearer {c_token}" }}
parameters = {{ "body.session_id" = "{c_id}", "body.tool" = "update_user_offer_response", "body.args" = {{ phone = "+1 206 555 0100", offer_id = "a-592", user_response = "ACCEPTED" }} }}

[[operations]]
include-operation-id = "revoke_session"
parameters = {{ "path.id" = "{b_id}" }}
"#
        ),
    )
    .unwrap();
    let hooks = dir.path().join("sb_hooks.py");
    // The SDP offer body is plain text; schemathesis has no serializer for its media type.
    std::fs::write(
        &hooks,
        "import schemathesis\nschemathesis.serializer.alias('application/sdp', 'text/plain')\n",
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&st)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(app.url("/api/openapi.json"))
            .args(["--url", &app.url("")])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
            ])
            .args(["--max-examples", "15", "--workers", "2", "--seed", "1"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-time", "120", "--request-timeout", "10"])
            .args(["--report-dir", dir.path().to_str().unwrap()])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("PYTHONPATH", dir.path())
            .env("SCHEMATHESIS_HOOKS", "sb_hooks")
            .output(),
    )
    .await
    .expect("schemathesis finished within its bound")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // The run reached the operations' logic, not only their auth and validation errors:
    // each of these answered 2xx at least once (counted by the instance's own metrics).
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reached = |method: &str, route: &str| {
        metrics.lines().any(|l| {
            l.starts_with("switchboard_http_requests_total{")
                && l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("route=\"{route}\""))
                && l.contains("status=\"2")
        })
    };
    let missed: Vec<_> = REACHED.iter().filter(|(m, r)| !reached(m, r)).collect();
    assert!(missed.is_empty(), "never answered 2xx: {missed:?}");
}

/// Operations whose success path the generated requests must reach.
const REACHED: &[(&str, &str)] = &[
    ("GET", "/api/sessions/{id}"),
    ("DELETE", "/api/sessions/{id}"),
    ("POST", "/api/sessions/{id}/token"),
    ("POST", "/api/sessions/{id}/events"),
    ("GET", "/api/sessions/{id}/events"),
    ("GET", "/api/scenarios/{id}"),
    ("POST", "/api/session2"),
    ("POST", "/api/sdk/session/message"),
    ("GET", "/api/sdk/session/transcript"),
    ("POST", "/api/moderate"),
    ("POST", "/api/orchestrate"),
    ("POST", "/api/tools/execute"),
    ("POST", "/api/responses"),
];
