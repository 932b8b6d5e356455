//! Hostile input: schemathesis (PyPI) generates requests from `/api/openapi.json` against a
//! live instance with a fake upstream. No request may produce a 5xx, and every documented
//! response must match its schema. Bounded by example count and time.

use std::time::Duration;

use crate::support::channel::API_KEY;
use crate::support::model::fake_model;
use crate::support::realtime::{FakeRealtime, mount_calls};
use crate::support::*;

#[tokio::test]
async fn generated_requests_never_get_a_5xx_or_a_response_off_the_schema() {
    let model = fake_model().await;
    mount_calls(&model).await;
    let fake = FakeRealtime::start().await;
    let url = fake.ws_url.clone();
    let app = spawn_online(&model, move |c| {
        c.realtime.ws_url = url;
        c.upstream_timeout = Duration::from_secs(2);
    })
    .await;
    let venv = crate::python_sdk::python();
    let st = venv.parent().unwrap().join("schemathesis");
    assert!(
        st.exists(),
        "schemathesis is not installed in the test venv: run scripts/test"
    );
    let report = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&st)
            .arg("run")
            .arg(app.url("/api/openapi.json"))
            .args(["--url", &app.url("")])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
            ])
            .args(["--max-examples", "15", "--workers", "2", "--seed", "1"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-time", "150", "--request-timeout", "10"])
            .args(["-H", &format!("Authorization: Bearer {API_KEY}")])
            .args(["--report-dir", report.path().to_str().unwrap()])
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "")
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
}
