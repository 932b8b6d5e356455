//! Logging and tracing.
//!
//! Logs: `tracing` to stdout, as text or JSON lines (`SWITCHBOARD_LOG_FORMAT`), filtered by
//! `RUST_LOG` (default `info`). Each HTTP request gets a span carrying its request id
//! (`x-request-id`, generated when absent, echoed on the response) and, when tracing is on,
//! its trace id, so every line logged inside a request names both.
//!
//! Traces: OpenTelemetry over OTLP (HTTP/protobuf), configured with the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_BSP_*`). Off when no endpoint is set (or `OTEL_SDK_DISABLED=true`): then no
//! exporter exists and the event path checks one atomic flag. Spans: every HTTP request
//! (honouring an incoming W3C `traceparent`; named by route template, with the status),
//! upstream calls, a broker publish, and each delivery to local sockets, which links to the
//! publishing span through the envelope's `trace_id` and `span_id`, across instances.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderMap, Request};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// True when traces are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn otlp_configured() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn provider() -> Option<SdkTracerProvider> {
    if !otlp_configured() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("switchboard: OTLP exporter not started: {e}");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("switchboard");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            resource
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    Some(provider)
}

/// Installs the global subscriber (and the OTLP pipeline when configured); a second call
/// (tests) is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = if PROVIDER.get().is_none() {
        provider().map(|p| {
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            let tracer = p.tracer("switchboard");
            let _ = PROVIDER.set(p);
            // Per span, only what a trace viewer needs: no busy/idle timing on every poll,
            // no thread or source-location attributes (each costs work on the event path).
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
        })
    } else {
        None
    };
    let with_otel = otel.is_some();
    // The exporter sees Switchboard's debug-level spans (publish, deliver, upstream); the
    // log only what RUST_LOG asks for. Without an exporter nothing wants those spans, so
    // they cost nothing.
    let otel = otel.map(|l| {
        l.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("switchboard", tracing::Level::DEBUG)
                .with_default(tracing::Level::INFO),
        )
    });
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_filter(filter))
            .try_init(),
    };
    if installed.is_ok() && with_otel {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// Flushes and stops the exporter (at exit).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown()
    {
        eprintln!("switchboard: flushing traces failed: {e}");
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one HTTP request: method, path (never the query, which may hold a token),
/// request id, and (when tracing) the trace id, continuing an incoming `traceparent`. The
/// route template and status are recorded once known.
pub fn request_span<B>(req: &Request<B>) -> Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %request_id,
        trace_id = Empty,
        "http.route" = Empty,
        "http.response.status_code" = Empty,
        "otel.kind" = "server",
    );
    if enabled() {
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
        let _ = span.set_parent(parent);
        let trace = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace));
    }
    span
}

/// Records the matched route and status on the current request span.
pub fn record_route(method: &str, route: &str, status: u16) {
    let span = Span::current();
    span.record("http.route", route);
    span.record("http.response.status_code", status);
    if enabled() {
        // The OpenTelemetry span exists by now (its trace id was read), so rename it
        // directly rather than through `otel.name`.
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
    }
}

/// `(trace_id, span_id)` of the current span, hex, when tracing is on.
pub fn current_ids() -> Option<(String, String)> {
    if !enabled() {
        return None;
    }
    let cx = Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled())
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A span for delivering one event to this instance's sockets, linked to the span that
/// published it (read from the envelope). `None` when tracing is off.
pub fn delivery_span(json: &str, receivers: usize) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let field = |pattern: &str| {
        json.split_once(pattern)
            .and_then(|(_, rest)| rest.split('"').next())
    };
    // Untraced (or unsampled) events get no delivery span.
    let (t, s) = (field("\"trace_id\":\"")?, field("\"span_id\":\"")?);
    let (t, s) = (TraceId::from_hex(t).ok()?, SpanId::from_hex(s).ok()?);
    let span = tracing::debug_span!(
        "deliver",
        "otel.kind" = "consumer",
        event.r#type = crate::metrics::event_type(json),
        receivers,
    );
    span.add_link(SpanContext::new(
        t,
        s,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    Some(span)
}
