//! `AppState`: what every handler can reach. Built once by `startup`, cloned per request
//! (a pointer copy).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::TokenIssuer;
use crate::broker::Broker;
use crate::config::Config;
use crate::error::ApiError;
use crate::scenario::ScenarioRegistry;
use crate::store::SessionStore;
use crate::upstream::UpstreamClient;

/// Shared application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// Checked settings.
    pub config: Config,
    /// Loaded scenarios.
    pub scenarios: Arc<ScenarioRegistry>,
    /// Registered tools.
    pub tools: Arc<crate::tools::ToolRegistry>,
    /// This instance's background work (stopped at shutdown; calls are a child group).
    pub tasks: crate::tasks::Tasks,
    /// Readiness, kept by a background check (`/api/ready` reads it).
    pub health: Arc<crate::sessions::health::Health>,
    /// The session use-cases (application layer), over the same backends.
    pub sessions: Arc<crate::sessions::Sessions>,
    /// Moderation checks.
    pub moderator: Arc<crate::moderation::Moderator>,
    /// Session state.
    pub store: Arc<dyn SessionStore>,
    /// Event histories.
    pub broker: Arc<dyn Broker>,
    /// Server-side agent memory.
    pub memory: Arc<dyn crate::memory::AgentMemory>,
    /// Realtime calls and their sidebands.
    pub calls: Arc<crate::realtime::Calls>,
    /// What a call's sideband runs on (shares `sessions`, `moderator` and `calls`).
    pub call_deps: Arc<crate::realtime::CallDeps>,
    /// This instance's connections.
    pub hub: Arc<crate::ws::hub::Hub>,
    /// Upstream client; `None` when offline.
    pub upstream: Option<UpstreamClient>,
    /// Session tokens.
    pub tokens: TokenIssuer,
    /// User tokens from the host app; `None` when not configured.
    pub users: Option<crate::auth::user::UserVerifier>,
    /// Rate limits of the model-backed endpoints.
    pub limits: Arc<crate::http::limits::Limits>,
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
