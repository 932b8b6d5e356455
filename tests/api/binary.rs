//! The real binary: starts with no environment at all, refuses bad settings before binding,
//! and stops cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env_clear()
        .env("SWITCHBOARD_RECORD_SQLITE", ":memory:")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn invalid_settings_fail_before_the_port_is_bound() {
    let port = free_port();
    for (var, value) in [
        ("SWITCHBOARD_KEY_TTL", "1s"),
        ("PORT", "http"),
        ("SWITCHBOARD_SESSION_SECRET", "short"),
        // Below twice the heartbeat (25 s): every socket would lose its session.
        ("SWITCHBOARD_SESSION_TTL", "30s"),
    ] {
        let out = bare_command()
            .env("SWITCHBOARD_PORT", if var == "PORT" { "" } else { "0" })
            .env(var, value)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "id: x\nlabel: X\ncompany_name: C\nagents: []\n",
    )
    .unwrap();
    let out = bare_command()
        .arg("--port")
        .arg(port.to_string())
        .env("SWITCHBOARD_SCENARIOS_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("agents"),
        "{stderr}"
    );
    // Nothing was left listening.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[tokio::test]
async fn with_no_environment_it_serves_every_scenario_offline_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = bare_command()
        .arg("--port")
        .arg(port.to_string())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}/api/health");
    crate::support::eventually("the binary listens", Duration::from_secs(5), || async {
        client.get(&health).send().await.ok().map(|_| ())
    })
    .await;
    // The counters operators alert on exist, at 0, before anything happened.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "switchboard_slow_consumer_closes_total",
        "switchboard_redis_reconnects_total",
        r#"switchboard_redis_errors_total{op="broker"}"#,
        r#"switchboard_recoveries_total{outcome="miss"}"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == format!("{series} 0")),
            "{series} is not exported at 0:\n{metrics}"
        );
    }
    for scenario in ["simpleHandoff", "customerServiceRetail", "chatSupervisor"] {
        let b: serde_json::Value = client
            .get(format!("{base}/api/session2?scenario_id={scenario}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(b["scenario_id"], scenario);
        assert_eq!(b["ephemeral_key"], serde_json::Value::Null);
        assert!(b["warning"].is_string());
    }
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert!(
        stdout.contains("embedded mode") && stdout.contains("offline"),
        "startup line: {stdout}"
    );
}
