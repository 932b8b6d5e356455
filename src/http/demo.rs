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

/// Path, content type and body of each file the page needs.
const ASSETS: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/app.js", "text/javascript; charset=utf-8", APP_JS),
    ("/style.css", "text/css; charset=utf-8", STYLE_CSS),
    (
        "/switchboard-client.js",
        "text/javascript; charset=utf-8",
        CLIENT_JS,
    ),
];

/// One GET route per asset.
pub fn router() -> Router<AppState> {
    ASSETS
        .into_iter()
        .fold(Router::new(), |router, (path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        })
}
