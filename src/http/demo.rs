//! The demo page at `/`: static files compiled into the binary (no CDN, nothing fetched at
//! build or run time). The page loads the same ES module we publish as `switchboard-client`
//! (`clients/js/src/index.js`), so it exercises the client a browser app would use.
//!
//! These responses carry their own content policy (scripts, styles and connections from this
//! origin only; microphone audio for the voice part), which the API's closed default would
//! forbid.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const STYLE_CSS: &str = include_str!("../../static/style.css");
const CLIENT_JS: &str = include_str!("../../clients/js/src/index.js");

/// What the page may load: its own files, its own API (HTTP and WebSocket), media from the
/// call. Nothing from anywhere else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' data:; media-src 'self' blob: mediastream:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/`, `/app.js`, `/style.css`, `/switchboard-client.js`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/switchboard-client.js",
            get(|| async { asset("text/javascript; charset=utf-8", CLIENT_JS) }),
        )
}
