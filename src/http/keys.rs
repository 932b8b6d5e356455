//! `GET /api/session`: mints a realtime ephemeral key and answers in the legacy shape the
//! public demo frontend reads (`client_secret.value`), plus the GA fields at the top level.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, Json};
use crate::state::AppState;
use crate::upstream::realtime::session_config;

/// The legacy `client_secret` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSecret {
    /// The ephemeral key.
    pub value: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
}

/// `GET /api/session` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EphemeralKey {
    /// Legacy shape read by the demo frontend.
    pub client_secret: ClientSecret,
    /// The effective realtime session config.
    #[schema(value_type = Object)]
    pub session: Value,
    /// The ephemeral key (GA shape).
    pub value: String,
    /// Expiry, unix seconds (GA shape).
    pub expires_at: u64,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/session", get(mint))
}

/// Mints an ephemeral realtime key.
#[utoipa::path(get, path = "/api/session", tag = "realtime",
    responses((status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 200, body = EphemeralKey),
        (status = 502, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
        (status = 504, body = crate::error::ErrorBody)))]
pub async fn mint(
    State(state): State<AppState>,
    _access: crate::http::caller::ModelAccess,
) -> Result<Json<EphemeralKey>, ApiError> {
    let upstream = state.upstream()?;
    let key = upstream
        .mint_client_secret(
            state.config.key_ttl,
            session_config(&state.config, None, None),
        )
        .await?;
    Ok(Json(EphemeralKey {
        client_secret: ClientSecret {
            value: key.value.clone(),
            expires_at: key.expires_at,
        },
        session: key.session,
        value: key.value,
        expires_at: key.expires_at,
    }))
}
