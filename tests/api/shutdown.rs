//! Graceful shutdown of the real binary on SIGTERM: sockets closed with 1012, in-flight
//! requests finished, exit 0; and a request that would outlive the budget does not keep
//! the process alive past `SWITCHBOARD_SHUTDOWN_TIMEOUT`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::channel::close_code;
use crate::support::model::fake_model;
use crate::support::*;

async fn start(upstream: &wiremock::MockServer) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("SWITCHBOARD_RECORD_SQLITE", ":memory:")
        .env("SWITCHBOARD_PORT", port.to_string())
        .env("OPENAI_API_KEY", UPSTREAM_KEY)
        .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
        .env("SWITCHBOARD_SHUTDOWN_TIMEOUT", "3s")
        .env("SWITCHBOARD_RATE_LIMIT_IP", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/health");
    crate::support::eventually("the binary comes up", Duration::from_secs(5), || async {
        client.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    (child, port)
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: sending a signal to a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

fn run_agent(port: u16, input: &'static str) -> tokio::task::JoinHandle<Result<u16, String>> {
    tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/agent/run"))
            .json(&json!({"model": "gpt-4o-mini", "input": input}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    })
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1012_finishes_requests_and_exits_0() {
    let model = fake_model().await;
    let (mut child, port) = start(&model).await;
    let boot: serde_json::Value = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/session2?scenario_id=retail"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ws_url = boot["events"]["ws_url"].as_str().unwrap().to_owned();
    let mut sockets = Vec::new();
    for _ in 0..30 {
        let (ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        sockets.push(ws);
    }
    let in_flight = run_agent(port, "a slow question");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    sigterm(&child);

    for ws in &mut sockets {
        assert_eq!(close_code(ws).await, Some(1012), "closed as restarting");
    }
    assert_eq!(
        in_flight.await.unwrap(),
        Ok(200),
        "the in-flight request finished"
    );
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exited")
        .unwrap();
    assert!(status.success(), "{status:?}");
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
            .await
            .is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn a_request_that_outlives_the_budget_does_not_hold_the_process() {
    let model = fake_model().await;
    let (mut child, port) = start(&model).await;
    let stuck = run_agent(port, "please hang");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(8), child.wait())
        .await
        .expect("exited")
        .unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "exited at the 3 s budget: {took:?}"
    );
    assert!(
        stuck.await.unwrap().is_err(),
        "the stuck request was cut off"
    );
}

/// The real binary with JSON logs at info: the upstream echoes our key in an error, the
/// browser sends its token in URLs and headers. Neither the key nor any session token
/// appears in a response body or a log line.
#[tokio::test]
async fn no_log_line_or_response_carries_the_key_or_a_session_token() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let upstream = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(client_secret_body()))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": format!("Incorrect API key provided: {UPSTREAM_KEY}."),
            "type": "invalid_request_error", "code": "invalid_api_key"}})))
        .mount(&upstream)
        .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let logs = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("SWITCHBOARD_RECORD_SQLITE", ":memory:")
        .env("SWITCHBOARD_PORT", port.to_string())
        .env("OPENAI_API_KEY", UPSTREAM_KEY)
        .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(logs.reopen().unwrap())
        .stderr(logs.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually("the binary comes up", Duration::from_secs(5), || async {
        client
            .get(format!("{base}/api/health"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let boot: serde_json::Value = client
        .get(format!("{base}/api/session2?scenario_id=retail"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (sid, token) = (
        boot["session_id"].as_str().unwrap().to_owned(),
        boot["events"]["token"].as_str().unwrap().to_owned(),
    );
    let mut bodies = Vec::new();
    let r = client
        .post(format!("{base}/api/responses"))
        .json(&json!({"model": "gpt-4o-mini", "input": "hi"}))
        .send()
        .await
        .unwrap();
    bodies.push(r.text().await.unwrap());
    for url in [
        format!("{base}/api/sessions/{sid}?token={token}"),
        format!("{base}/api/sessions/{sid}/events?since=0"),
        format!("{base}/api/sessions/not-{sid}"),
    ] {
        let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
        bodies.push(r.text().await.unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/api/ws?session_id={sid}&token={token}"
    ))
    .await
    .unwrap();
    let _ = crate::support::channel::next_json(&mut ws).await;
    drop(ws);
    let bad = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/api/ws?session_id={sid}&token={token}x"
    ))
    .await;
    drop(bad);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let log = std::fs::read_to_string(logs.path()).unwrap();
    assert!(log.lines().count() > 5, "the instance logged: {log}");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every line is JSON"
    );
    assert!(log.contains("request_id"), "lines carry the request id");
    for (what, secret) in [
        ("upstream key", UPSTREAM_KEY),
        ("session token", token.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log:\n{log}");
        for b in &bodies {
            assert!(!b.contains(secret), "the {what} is in a response: {b}");
        }
    }
    assert!(bodies[0].contains("upstream"), "{}", bodies[0]);
}
