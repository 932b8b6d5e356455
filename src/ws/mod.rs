//! The event channel's transports: WebSocket (`/api/ws`) and SSE
//! (`/api/sessions/{id}/stream`), the local hub they share, and the recovery logic.
//!
//! - [`hub`]: this instance's connections by session; bounded queues, 4008 on overflow.
//! - [`attach`]: authenticate, join the hub, read the history, plan the replay.
//! - [`recovery`]: the replay decision and the history/live seam (pure, property-tested).
//! - [`socket`]: the per-connection WebSocket loop.
//! - [`sse`]: the SSE stream.

pub mod attach;
pub mod hub;
pub mod recovery;
pub mod socket;
pub mod sse;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// Routes of the channel.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/ws", get(socket::upgrade))
        .route("/api/sessions/{id}/stream", get(sse::stream))
}
