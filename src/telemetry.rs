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
//! exporter exists and the event path checks one atomic flag. The sampler is applied when a
//! request arrives, before its span exists: an unsampled request's span has a target the
//! OpenTelemetry layer ignores, and a per-layer filter keeps everything under it out too, so
//! it costs what it costs with tracing off (BENCHMARKS.md). Spans: every HTTP request
//! (honouring an incoming W3C `traceparent`; named by route template, with the status),
//! upstream calls, a broker publish, and each delivery to local sockets, which links to the
//! publishing span through the envelope's `trace_id` and `span_id`, across instances.
//! Background work (a Realtime call's sideband handling one event or command) gets a root
//! span of its own, sampled at the same ratio; work outside any sampled root is never
//! exported.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, Request};
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
static SAMPLER: OnceLock<Sampling> = OnceLock::new();

/// Target of the request span of a request that is not sampled: the OpenTelemetry layer
/// ignores it and everything under it, so it costs what it costs with tracing off.
const UNTRACED: &str = "switchboard::untraced";

/// The sampling decision, taken before a request's span exists (`OTEL_TRACES_SAMPLER` and
/// `OTEL_TRACES_SAMPLER_ARG`, as the SDK reads them; default `parentbased_always_on`).
/// The SDK's own sampler is then always-on: it only ever sees spans decided here.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sampling {
    /// Follow an incoming `traceparent`'s sampled flag.
    parent_based: bool,
    /// Share of new traces sampled, 0 to 1.
    ratio: f64,
}

impl Sampling {
    fn from_env(name: Option<&str>, arg: Option<&str>) -> Self {
        let ratio = || {
            arg.and_then(|a| a.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(1.0)
        };
        let name = name.map(str::trim).unwrap_or("parentbased_always_on");
        let (parent_based, root) = match name.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name),
        };
        let ratio = match root {
            "always_off" => 0.0,
            "traceidratio" => ratio(),
            _ => 1.0,
        };
        Self {
            parent_based,
            ratio,
        }
    }

    /// Whether a request (with an incoming parent's sampled flag, if any) is traced.
    fn sample(&self, parent_sampled: Option<bool>) -> bool {
        match parent_sampled {
            Some(flag) if self.parent_based => flag,
            _ => self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio),
        }
    }
}

fn sampling() -> Sampling {
    *SAMPLER.get_or_init(|| {
        Sampling::from_env(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )
    })
}

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
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
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
        use tracing_subscriber::filter::FilterExt;
        let levels = tracing_subscriber::filter::Targets::new()
            .with_target(UNTRACED, tracing::level_filters::LevelFilter::OFF)
            .with_target("switchboard", tracing::Level::DEBUG)
            .with_default(tracing::Level::INFO);
        // The hint matters: without one the subscriber's max level is TRACE, and every
        // `log::trace!` in a dependency (tungstenite logs each socket poll) is bridged into
        // `tracing` and filtered one call at a time.
        let traced = tracing_subscriber::filter::DynFilterFn::new(traced)
            .with_max_level_hint(tracing::level_filters::LevelFilter::DEBUG);
        l.with_filter(levels.and(traced))
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

/// The OpenTelemetry layer's view: a root span whose sampling was already decided (a
/// request's, a delivery's, a background unit of work's; the unsampled ones never reach
/// here), and whatever runs inside a span it already has. Nothing else: work outside any
/// traced root (an unsampled request, whose span may exist for no layer at all) is not
/// exported and never starts a trace of its own.
fn traced<S>(meta: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>) -> bool
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if meta.is_span()
        && matches!(meta.name(), "http" | "deliver" | "background")
        && meta.target().starts_with("switchboard")
    {
        return true;
    }
    cx.lookup_current().is_some()
}

/// A root span for one unit of background work (a sideband event or command), sampled at
/// the configured ratio; disabled when unsampled or when tracing is off, so the work inside
/// it is not exported either. `op` becomes the exported span's name.
pub fn background_span(op: &'static str) -> Span {
    if !enabled() || !sampling().sample(None) {
        return Span::none();
    }
    tracing::info_span!(target: "switchboard::telemetry", "background", "otel.name" = op)
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

/// The request span at `target` (a literal: each target is its own callsite).
macro_rules! http_span {
    ($target:literal, $req:expr, $request_id:expr) => {
        tracing::info_span!(
            target: $target,
            "http",
            method = %$req.method(),
            path = %$req.uri().path(),
            request_id = %$request_id,
            trace_id = Empty,
            "http.route" = Empty,
            "http.response.status_code" = Empty,
            "otel.kind" = "server",
        )
    };
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
    if !enabled() {
        return http_span!("switchboard::telemetry", req, request_id);
    }
    // Most requests carry no `traceparent`: skip the propagator (and its allocations) then.
    let parent = req.headers().contains_key("traceparent").then(|| {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())))
    });
    let remote = parent
        .as_ref()
        .map(|p| p.span().span_context().clone())
        .unwrap_or_else(SpanContext::empty_context);
    let parent_sampled = remote.is_valid().then(|| remote.is_sampled());
    if sampling().sample(parent_sampled) {
        let span = http_span!("switchboard::telemetry", req, request_id);
        if let Some(parent) = parent {
            let _ = span.set_parent(parent);
        }
        let trace = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace));
        span
    } else {
        // Not exported, but log lines still carry a trace id: the caller's, or a fresh one.
        let span = http_span!("switchboard::untraced", req, request_id);
        let trace = if remote.is_valid() {
            remote.trace_id()
        } else {
            TraceId::from(rand::random::<u128>())
        };
        span.record("trace_id", tracing::field::display(trace));
        span
    }
}

/// Records the matched route and status on the current request span.
pub fn record_route(method: &str, route: &str, status: u16) {
    let span = Span::current();
    span.record("http.route", route);
    span.record("http.response.status_code", status);
    if enabled() && span.metadata().is_some_and(|m| m.target() != UNTRACED) {
        // The OpenTelemetry span exists by now (its trace id was read), so rename it
        // directly rather than through `otel.name`.
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
    }
}

/// The span of one broker publish, or a disabled one unless the current span is a sampled
/// trace's. Deciding here, before the span macro runs, matters: a span that reaches the
/// per-layer filters is allocated in the registry even when every filter turns it down.
pub fn publish_span(session: &crate::domain::SessionId, kind: &str) -> Span {
    if !enabled()
        || Span::current()
            .metadata()
            .is_none_or(|m| m.target() == UNTRACED)
    {
        return Span::none();
    }
    tracing::debug_span!(
        "broker.publish",
        "otel.kind" = "producer",
        session_id = %session,
        event.r#type = %kind,
    )
}

/// `(trace_id, span_id)` of the current span, hex, when tracing is on.
pub fn current_ids() -> Option<(String, String)> {
    if !enabled() {
        return None;
    }
    // An unsampled request's span is disabled, so nothing is current: no lookup needed.
    let current = Span::current();
    if current.is_none() {
        return None;
    }
    let cx = current.context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled())
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A span for delivering one event to this instance's sockets, linked to the span that
/// published it (the frame's trace ids). `None` when tracing is off.
pub fn delivery_span(
    kind: &str,
    trace_id: Option<&str>,
    span_id: Option<&str>,
    receivers: usize,
) -> Option<Span> {
    if !enabled() {
        return None;
    }
    // Untraced (or unsampled) events get no delivery span.
    let (t, s) = (trace_id?, span_id?);
    let (t, s) = (TraceId::from_hex(t).ok()?, SpanId::from_hex(s).ok()?);
    let span = tracing::debug_span!(
        "deliver",
        "otel.kind" = "consumer",
        event.r#type = kind,
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

#[cfg(test)]
mod tests {
    use super::Sampling;

    #[test]
    fn the_sampler_variables_are_read_as_the_sdk_reads_them() {
        let s = |n: Option<&str>, a: Option<&str>| Sampling::from_env(n, a);
        let default = s(None, None);
        assert!(default.parent_based && default.ratio == 1.0);
        let tenth = s(Some("parentbased_traceidratio"), Some("0.1"));
        assert!(tenth.parent_based && tenth.ratio == 0.1);
        assert_eq!(
            s(Some("traceidratio"), Some("2")).ratio,
            1.0,
            "out of range: 1"
        );
        let off = s(Some("always_off"), None);
        assert!(!off.parent_based && off.ratio == 0.0);
        // Parent-based: the caller's flag wins; otherwise the ratio decides.
        assert!(s(Some("parentbased_always_off"), None).sample(Some(true)));
        assert!(!default.sample(Some(false)));
        assert!(s(Some("always_on"), None).sample(Some(false)));
        assert!(!off.sample(None));
        let hits = (0..10_000).filter(|_| tenth.sample(None)).count();
        assert!((700..1300).contains(&hits), "about a tenth: {hits}");
    }
}
