//! Prometheus metrics (`GET /metrics`): the `metrics` facade with the Prometheus exporter's
//! recorder (no HTTP listener of its own; the route renders it).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `switchboard_http_requests_total` | counter | `method`, `route` (template), `status` |
//! | `switchboard_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `switchboard_connections` | gauge | |
//! | `switchboard_events_published_total` | counter | `type` |
//! | `switchboard_events_delivered_total` | counter | `type` |
//! | `switchboard_publish_deliver_lag_seconds` | histogram | |
//! | `switchboard_recoveries_total` | counter | `outcome` (`hit`, `miss`) |
//! | `switchboard_slow_consumer_closes_total` | counter | |
//! | `switchboard_redis_errors_total` | counter | `op` |
//! | `switchboard_redis_reconnects_total` | counter | |
//! | `switchboard_upstream_requests_total` | counter | `endpoint`, `status` (`timeout`, `transport` on failure) |
//! | `switchboard_upstream_request_duration_seconds` | histogram | `endpoint` |
//! | `switchboard_rate_limited_total` | counter | `scope` (`ip`, `user`) |
//!
//! One recorder serves the whole process (tests run many apps in one process and share it).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide recorder's handle (installed on first use).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); then this handle
            // renders an empty page rather than failing startup.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Response {
    metrics::gauge!("switchboard_connections").set(state.hub.connection_count() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

/// Counts every HTTP request by route template and status, with its latency.
pub async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    crate::telemetry::record_route(&method, &route, resp.status().as_u16());
    let status = resp.status().as_u16().to_string();
    metrics::counter!("switchboard_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("switchboard_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The event type of a serialized envelope, read from its first field without parsing the
/// whole JSON (`{"type":"<kind>",...}`; the envelope always serializes `type` first).
pub fn event_type(json: &str) -> &str {
    json.strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("unknown")
}

/// Counts a frame handed to `receivers` local connections, and its publish→deliver lag.
pub fn delivering(frame: &crate::broker::Frame, receivers: usize) {
    let json = frame.json.as_str();
    metrics::counter!("switchboard_events_delivered_total", "type" => event_type(json).to_owned())
        .increment(receivers as u64);
    if let Some(ts) = json
        .split_once("\"ts\":\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|ts| humantime::parse_rfc3339(ts).ok())
        && let Ok(lag) = std::time::SystemTime::now().duration_since(ts)
    {
        metrics::histogram!("switchboard_publish_deliver_lag_seconds").record(lag.as_secs_f64());
    }
}

/// Counts a published event.
pub fn published(kind: &str) {
    metrics::counter!("switchboard_events_published_total", "type" => kind.to_owned()).increment(1);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_type_is_read_from_the_envelope_prefix() {
        assert_eq!(
            super::event_type(r#"{"type":"agent.switch","session_id":"s"}"#),
            "agent.switch"
        );
        assert_eq!(super::event_type("garbage"), "unknown");
    }
}
