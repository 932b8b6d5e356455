//! The edge: what every HTTP request passes through before the router, in one service.
//!
//! In order, from the outside in: a request id (the caller's `x-request-id`, or a new UUID),
//! the request's tracing span, a time limit (`408` past it), and a guard that turns a
//! panicking handler into `500`. On the way out, an error answer without a JSON body (a
//! `405` from the router, the `408`, a `413` from the body limit) is rewritten into the JSON
//! error shape, the request id is echoed, and the security headers are added unless the
//! handler set its own.
//!
//! These were once seven tower layers (request id twice, trace, JSON errors, timeout, panic
//! guard, five header setters). Each layer nested its future in the next and the JSON-error
//! step cloned and boxed the inner service per request; one service does the same work with
//! one boxed future (the event path's profile in `BENCHMARKS.md`, issue 21).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::error::{json_error_response, panic_response};

/// The request id header: read from the request, set when absent, echoed on the answer.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers every response carries unless its handler set them: no MIME sniffing, no
/// framing, no referrer, a closed content policy (JSON needs none), HSTS for the TLS front.
pub const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
    (
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    ),
    (
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        HeaderName::from_static("strict-transport-security"),
        HeaderValue::from_static("max-age=63072000; includeSubDomains"),
    ),
];

/// Wraps a service in the [`Edge`].
#[derive(Debug, Clone, Copy)]
pub struct EdgeLayer {
    timeout: Duration,
}

impl EdgeLayer {
    /// Requests whose answer takes longer than `timeout` are answered `408`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            timeout: self.timeout,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    timeout: Duration,
}

type EdgeFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> EdgeFuture {
        let started = Instant::now();
        let request_id = match req.headers().get(&REQUEST_ID) {
            Some(v) => v.clone(),
            None => {
                let v = new_request_id();
                req.headers_mut().insert(REQUEST_ID, v.clone());
                v
            }
        };
        let method = req.method().clone();
        let span = crate::telemetry::request_span(&req);
        // The inner service is ready (poll_ready above), so it is called here, inside the
        // span, and only its future travels; a panic while building it is caught too.
        let called = {
            let _entered = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
        };
        let timeout = self.timeout;
        let answer = async move {
            let resp = match called {
                Ok(fut) => {
                    match tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind()).await
                    {
                        Ok(Ok(Ok(resp))) => resp,
                        Ok(Ok(Err(never))) => match never {},
                        Ok(Err(panic)) => panic_response(panic),
                        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
                    }
                }
                Err(panic) => panic_response(panic),
            };
            let mut resp = json_error_response(&method, resp);
            let status = resp.status();
            let latency_ms = started.elapsed().as_secs_f64() * 1e3;
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), latency_ms, "response failed");
            } else {
                tracing::debug!(status = status.as_u16(), latency_ms, "finished request");
            }
            let headers = resp.headers_mut();
            if !headers.contains_key(&REQUEST_ID) {
                headers.insert(REQUEST_ID, request_id);
            }
            for (name, value) in SECURITY_HEADERS {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
            Ok(resp)
        };
        Box::pin(answer.instrument(span))
    }
}

/// A fresh request id (a UUIDv4, hyphenated).
fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "never"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/framed",
                get(|| async { ([("x-frame-options", "SAMEORIGIN")], "<p>page</p>") }),
            )
            .layer(EdgeLayer::new(Duration::from_millis(200)))
    }

    async fn get_path(path: &str, id: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = Request::get(path);
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        let resp = app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn error_code(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["error"]["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_plain_answer_gets_a_request_id_and_the_security_headers() {
        let (status, h, body) = get_path("/ok", None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
        let id = h["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(h[&name], value, "{name}");
        }
        let (_, h, _) = get_path("/ok", Some("caller-7")).await;
        assert_eq!(h["x-request-id"], "caller-7");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_json_500_and_the_server_keeps_serving() {
        let (status, h, body) = get_path("/boom", Some("r-1")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_code(&body), "internal");
        assert!(
            !body.contains("handler bug"),
            "the panic text stays in the log: {body}"
        );
        assert_eq!(h["x-request-id"], "r-1");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(get_path("/ok", None).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_json_408_and_a_wrong_method_a_json_405() {
        let (status, h, body) = get_path("/slow", None).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(error_code(&body), "request_timeout");
        assert_eq!(h["content-type"], "application/json");
        let resp = app()
            .oneshot(Request::post("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(resp.headers().contains_key("allow"), "Allow survives");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            error_code(std::str::from_utf8(&body).unwrap()),
            "method_not_allowed"
        );
    }

    #[tokio::test]
    async fn a_header_the_handler_set_is_kept() {
        let (_, h, _) = get_path("/framed", None).await;
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}
