//! `GET /api/health` (liveness) and `GET /api/ready` (readiness: store and broker answer).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Json};
use crate::state::AppState;

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always true when the process answers.
    pub ok: bool,
    /// Crate version.
    pub version: &'static str,
    /// This instance's id.
    pub instance_id: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// `embedded` or `redis`.
    pub mode: &'static str,
    /// `configured` or `offline`.
    pub upstream: &'static str,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// True when every dependency answers.
    pub ready: bool,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/ready", get(ready))
}

/// Liveness.
#[utoipa::path(get, path = "/api/health", tag = "ops",
    responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION"),
        instance_id: state.instance_id.clone(),
        uptime_s: state.started.elapsed().as_secs(),
        mode: state.config.mode(),
        upstream: if state.upstream.is_some() {
            "configured"
        } else {
            "offline"
        },
    })
}

/// Readiness: 200 when the last background check reached the session store and the
/// broker, else 503. Answered from memory, at once, even while a backend hangs.
#[utoipa::path(get, path = "/api/ready", tag = "ops",
    responses((status = 200, body = Ready), (status = 503, body = crate::error::ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.health.ready().map_err(|what| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("the {what} is not reachable"),
        )
        .with_retry_after(1)
    })?;
    Ok(Json(Ready { ready: true }))
}
