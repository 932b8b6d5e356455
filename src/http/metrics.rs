//! `GET /metrics` and the per-request HTTP metrics middleware: the edge's side of
//! `crate::metrics` (which owns the recorder and takes plain values).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

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

/// Counts every HTTP request by route template and status, with its latency. Added with
/// `Router::layer`, so it wraps each route and sees its [`MatchedPath`].
#[derive(Debug, Clone, Copy)]
pub struct TrackLayer;

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

/// See [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned();
        // Ready (poll_ready above): called now, so only its future is kept.
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let route = route.as_ref().map_or("unmatched", |p| p.as_str());
            let status = resp.status().as_u16();
            crate::telemetry::record_route(method.as_str(), route, status);
            crate::metrics::http_request(
                method.as_str(),
                route,
                status,
                started.elapsed().as_secs_f64(),
            );
            Ok(resp)
        })
    }
}
