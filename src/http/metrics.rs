//! `GET /metrics` and the per-request HTTP metrics middleware: the edge's side of
//! `crate::metrics` (which owns the recorder and takes plain values).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// `GET /metrics`: the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Response {
    crate::metrics::connections(state.hub.connection_count());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// Counts every HTTP request by route template and status, with its latency.
pub async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let status = resp.status().as_u16();
    crate::telemetry::record_route(method.as_str(), route, status);
    crate::metrics::http_request(
        method.as_str(),
        route,
        status,
        started.elapsed().as_secs_f64(),
    );
    resp
}
