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
//! | `switchboard_tokens_total` | counter | `model`, `scenario`, `agent`, `kind` (`input_text`, `input_audio`, `cached_text`, `cached_audio`, `output_text`, `output_audio`) |
//! | `switchboard_voice_billed_ms_total` | counter | `model`, `scenario`, `agent` (voice billed by time: GPT-Live) |
//! | `switchboard_cost_nanousd_total` | counter | `model`, `scenario`, `agent` (billionths of a US dollar, from the price table) |
//! | `switchboard_record_flushed_total` | counter | (record items written to the database) |
//! | `switchboard_record_flush_errors_total` | counter | (failed flush passes; items stay buffered) |
//! | `switchboard_record_errors_total` | counter | `op` (`db`, `buffer`) |
//!
//! One recorder serves the whole process (tests run many apps in one process and share it).

use std::sync::OnceLock;

use dashmap::DashMap;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
            export_alerting_counters();
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

static HASHER: std::sync::LazyLock<std::collections::hash_map::RandomState> =
    std::sync::LazyLock::new(Default::default);
static HTTP: std::sync::LazyLock<DashMap<u64, (metrics::Counter, metrics::Histogram)>> =
    std::sync::LazyLock::new(DashMap::new);
static PUBLISHED: std::sync::LazyLock<DashMap<String, metrics::Counter>> =
    std::sync::LazyLock::new(DashMap::new);
static DELIVERED: std::sync::LazyLock<DashMap<String, metrics::Counter>> =
    std::sync::LazyLock::new(DashMap::new);
static LAG: std::sync::LazyLock<metrics::Histogram> =
    std::sync::LazyLock::new(|| metrics::histogram!("switchboard_publish_deliver_lag_seconds"));

/// Registers, at 0, the counters operators alert on, so `/metrics` shows them (and a rate
/// over them is defined) before their first increment. Labelled ones get every label value
/// the code uses.
fn export_alerting_counters() {
    metrics::counter!("switchboard_slow_consumer_closes_total").absolute(0);
    metrics::counter!("switchboard_redis_reconnects_total").absolute(0);
    metrics::counter!("switchboard_record_flushed_total").absolute(0);
    metrics::counter!("switchboard_record_flush_errors_total").absolute(0);
    for op in ["broker", "store", "memory", "lease", "replica_wait"] {
        metrics::counter!("switchboard_redis_errors_total", "op" => op).absolute(0);
    }
    for outcome in ["hit", "miss"] {
        metrics::counter!("switchboard_recoveries_total", "outcome" => outcome).absolute(0);
    }
    for scope in ["ip", "user"] {
        metrics::counter!("switchboard_rate_limited_total", "scope" => scope).absolute(0);
    }
}

/// Distinct event-type labels per metric before custom types fold into `x.other`.
const MAX_TYPE_LABELS: usize = 64;

/// The cached counter of `name` for event type `kind`.
fn per_type(
    map: &DashMap<String, metrics::Counter>,
    name: &'static str,
    kind: &str,
) -> metrics::Counter {
    if let Some(c) = map.get(kind) {
        return c.clone();
    }
    // Custom `x.*` types are chosen by publishers; past a bound they share one label so a
    // stream of distinct names cannot grow the series count (or this map) without limit.
    let kind = if map.len() >= MAX_TYPE_LABELS && !proto_events::KNOWN_EVENT_TYPES.contains(&kind) {
        "x.other"
    } else {
        kind
    };
    map.entry(kind.to_owned())
        .or_insert_with(|| metrics::counter!(name, "type" => kind.to_owned()))
        .clone()
}

/// Counts a frame of type `kind` handed to `receivers` local connections, and its
/// publish→deliver lag from the envelope's time (`ts_ms`, unix milliseconds; 0 = unknown).
pub fn delivering(kind: &str, ts_ms: u64, receivers: usize) {
    per_type(&DELIVERED, "switchboard_events_delivered_total", kind).increment(receivers as u64);
    let now = crate::clock::unix_now_ms();
    if ts_ms > 0 && now >= ts_ms {
        LAG.record((now - ts_ms) as f64 / 1000.0);
    }
}

/// Counts an HTTP request by method, route template and status, with its latency. The
/// handles are cached per label set, so the hot path does one map lookup instead of
/// building label sets.
pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    let key = {
        use std::hash::BuildHasher;
        HASHER.hash_one((method, route, status))
    };
    let handles = HTTP
        .entry(key)
        .or_insert_with(|| {
            let (m, r) = (method.to_owned(), route.to_owned());
            (
                metrics::counter!("switchboard_http_requests_total", "method" => m.clone(), "route" => r.clone(), "status" => status.to_string()),
                metrics::histogram!("switchboard_http_request_duration_seconds", "method" => m, "route" => r),
            )
        })
        .clone();
    handles.0.increment(1);
    handles.1.record(seconds);
}

/// Sets the gauge of open event-channel connections on this instance.
pub fn connections(n: usize) {
    metrics::gauge!("switchboard_connections").set(n as f64);
}

/// Counts a published event.
pub fn published(kind: &str) {
    per_type(&PUBLISHED, "switchboard_events_published_total", kind).increment(1);
}

#[cfg(test)]
mod tests {
    #[test]
    fn custom_event_types_fold_into_one_label_past_the_bound() {
        let map = dashmap::DashMap::new();
        for i in 0..200 {
            super::per_type(&map, "t_total", &format!("x.kind{i}")).increment(1);
        }
        super::per_type(&map, "t_total", "agent.switch").increment(1);
        assert_eq!(map.len(), super::MAX_TYPE_LABELS + 2);
        assert!(map.contains_key("x.other") && map.contains_key("agent.switch"));
        assert!(!map.contains_key("x.kind150"));
    }
}
