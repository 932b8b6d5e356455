//! `AppState`: what every handler can reach. Built once by `startup`, cloned per request
//! (a pointer copy).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::TokenIssuer;
use crate::broker::{Broker, BrokerError};
use crate::config::Config;
use crate::error::ApiError;
use crate::scenario::ScenarioRegistry;
use crate::store::{SessionStore, StoreError};
use crate::upstream::UpstreamClient;

/// Shared application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// Checked settings.
    pub config: Config,
    /// Loaded scenarios.
    pub scenarios: ScenarioRegistry,
    /// Registered tools.
    pub tools: crate::tools::ToolRegistry,
    /// Moderation checks.
    pub moderator: crate::moderation::Moderator,
    /// Session state.
    pub store: Arc<dyn SessionStore>,
    /// Event histories.
    pub broker: Arc<dyn Broker>,
    /// Server-side agent memory.
    pub memory: Arc<dyn crate::memory::AgentMemory>,
    /// Realtime calls and their sidebands.
    pub calls: Arc<crate::realtime::Calls>,
    /// This instance's connections.
    pub hub: Arc<crate::ws::hub::Hub>,
    /// Upstream client; `None` when offline.
    pub upstream: Option<UpstreamClient>,
    /// Session tokens.
    pub tokens: TokenIssuer,
    /// User tokens from the host app; `None` when not configured.
    pub users: Option<crate::auth::user::UserVerifier>,
    /// Rate limits of the model-backed endpoints.
    pub limits: Arc<crate::auth::caller::Limits>,
    /// This process's id (in `/api/health` and the `welcome` frame).
    pub instance_id: String,
    /// Process start, for uptime.
    pub started: Instant,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// The upstream client, or `503 upstream_not_configured` when offline.
    pub fn upstream(&self) -> Result<&UpstreamClient, ApiError> {
        self.upstream
            .as_ref()
            .ok_or_else(ApiError::upstream_not_configured)
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "session store failed");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the session store is unavailable; retry shortly",
        )
        .with_retry_after(1)
    }
}

impl From<crate::memory::MemoryError> for ApiError {
    fn from(e: crate::memory::MemoryError) -> Self {
        use crate::memory::MemoryError;
        match e {
            MemoryError::Busy => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "agent_session_busy",
                "another turn on this agent session is still running; retry shortly",
            )
            .with_retry_after(1),
            MemoryError::LockLost => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "agent_session_busy",
                "the turn took longer than its lock and another turn took over; nothing was written, retry",
            )
            .with_retry_after(1),
            MemoryError::Unavailable(m) => {
                tracing::error!(error = %m, "agent memory failed");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the agent memory store is unavailable; retry shortly",
                )
                .with_retry_after(1)
            }
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        tracing::error!(error = %e, "broker failed");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "the event broker is unavailable; retry shortly",
        )
        .with_retry_after(1)
    }
}
