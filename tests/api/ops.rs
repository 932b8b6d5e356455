//! What operators see and rely on: `/metrics` in the Prometheus text format, security
//! headers on every response, and a request timeout in the JSON error shape.

use serde_json::json;

use crate::support::channel::next_json;
use crate::support::model::fake_model;
use crate::support::*;

/// The value of the sample whose line starts with `series` (name and labels), or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    resp.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_events_deliveries_and_rejections() {
    let app = spawn_app_with(|c| {
        c.access.rate_ip = switchboard::config::parse_rate("t", "2/min").unwrap()
    })
    .await;
    let health =
        r#"switchboard_http_requests_total{method="GET",route="/api/health",status="200"}"#;
    let published = r#"switchboard_events_published_total{type="x.metrics_probe"}"#;
    let delivered = r#"switchboard_events_delivered_total{type="x.metrics_probe"}"#;
    let limited = r#"switchboard_rate_limited_total{scope="ip"}"#;
    let before = scrape(&app).await;

    for _ in 0..3 {
        app.get_json("/api/health").await;
    }
    // Two sessions through the IP limit of 2/min, then a refusal.
    let s = app.new_session().await;
    app.new_session().await;
    let resp = app
        .client
        .get(app.url("/api/session2?scenario_id=retail"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let (mut ws, _) = app.connect(&s, None).await;
    app.publish(&s.id, "x.metrics_probe", json!({})).await;
    assert_eq!(next_json(&mut ws).await["type"], "x.metrics_probe");

    let after = scrape(&app).await;
    assert!(
        sample(&after, health) - sample(&before, health) >= 3.0,
        "{after}"
    );
    assert_eq!(sample(&after, published) - sample(&before, published), 1.0);
    assert_eq!(sample(&after, delivered) - sample(&before, delivered), 1.0);
    assert!(sample(&after, limited) - sample(&before, limited) >= 1.0);
    assert!(
        after.contains(
            "switchboard_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/health\""
        ),
        "latency histogram by route template"
    );
    assert!(
        after.contains(r#"route="/api/sessions/{id}/events""#),
        "routes are templates, never raw ids"
    );
    assert!(!after.contains(&s.id), "no session id in any label");
    assert!(after.contains("switchboard_publish_deliver_lag_seconds_bucket"));
    assert!(sample(&after, "switchboard_connections") >= 1.0);
    drop(ws);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/api/health", "/api/no-such-route", "/api/sessions/nope"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert!(h.contains_key("strict-transport-security"), "{path}");
    }
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_408_in_the_json_shape() {
    let model = fake_model().await;
    let app = spawn_online(&model, |c| {
        c.ops.request_timeout = std::time::Duration::from_secs(1);
        c.upstream_timeout = std::time::Duration::from_secs(30);
    })
    .await;
    let started = std::time::Instant::now();
    let resp = app
        .client
        .post(app.url("/api/agent/run"))
        .json(&json!({"model": "gpt-4o-mini", "input": "please hang"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-content-type-options"],
        "nosniff",
        "timeouts carry the security headers too"
    );
    let (st, e) = split(resp).await;
    assert_error(st, &e, 408, "request_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn the_dashboard_and_deploy_files_name_real_metrics_and_parse() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).unwrap();
    let documented = read("src/metrics.rs");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/switchboard.json")).unwrap();
    let re = regex::Regex::new(r"switchboard_[a-z_]+").unwrap();
    let mut names = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for m in re.find_iter(target["expr"].as_str().unwrap()) {
                let name = m.as_str().trim_end_matches("_bucket");
                assert!(
                    documented.contains(&format!("`{name}`")),
                    "{name} in the dashboard is not a metric Switchboard exports"
                );
                names += 1;
            }
        }
    }
    assert!(names >= 12);
    for yaml in [
        "docker-compose.yml",
        "deploy/otel-collector.yaml",
        "deploy/prometheus.yml",
    ] {
        let v: serde_json::Value = serde_yaml_ng::from_str(&read(yaml)).unwrap();
        assert!(v.is_object(), "{yaml}");
    }
    let fly = read("fly.toml");
    for needle in [
        "kill_signal = \"SIGTERM\"",
        "path = \"/api/ready\"",
        "type = \"tcp\"",
        "type = \"connections\"",
    ] {
        assert!(fly.contains(needle), "fly.toml lacks {needle}");
    }
}
