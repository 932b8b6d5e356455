//! Every mapping of a domain or backend error to an HTTP status and code, in one place.
//!
//! Layers below the edge return their own `thiserror` enums and know nothing of HTTP; this
//! file decides what a client sees for each. Internal failures are logged here with their
//! cause and answered without it.

use axum::http::StatusCode;

use super::ApiError;
use crate::auth::TokenError;
use crate::broker::BrokerError;
use crate::memory::MemoryError;
use crate::scenario::{UnknownAgent, UnknownScenario};
use crate::sessions::agent::AgentSessionError;
use crate::sessions::lifecycle::Missing;
use crate::sessions::{SessionError, ToolRunError};
use crate::store::StoreError;
use crate::tools::run::RunError;
use crate::upstream::UpstreamError;

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Timeout(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                e.to_string(),
            ),
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", e.to_string()),
        }
    }
}

/// For pure proxies (`/api/responses`), where the client wrote the request body: an
/// upstream 400/404/409/413/422 is the client's mistake and keeps its status (code
/// `upstream_rejected`), so SDK clients do not retry it; everything else maps as usual.
pub fn proxy_error(e: UpstreamError) -> ApiError {
    match &e {
        UpstreamError::Status {
            status: s @ (400 | 404 | 409 | 413 | 422),
            message,
        } => ApiError::new(
            StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_REQUEST),
            "upstream_rejected",
            format!("upstream refused the request: {message}"),
        ),
        _ => e.into(),
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "session store failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the session store is unavailable; retry shortly",
        )
        .with_retry_after(1)
    }
}

impl From<MemoryError> for ApiError {
    fn from(e: crate::memory::MemoryError) -> Self {
        match e {
            MemoryError::Busy => ApiError::new(
                StatusCode::CONFLICT,
                "agent_session_busy",
                "another turn on this agent session is still running; retry shortly",
            )
            .with_retry_after(1),
            MemoryError::LockLost => ApiError::new(
                StatusCode::CONFLICT,
                "agent_session_busy",
                "the turn took longer than its lock and another turn took over; nothing was written, retry",
            )
            .with_retry_after(1),
            MemoryError::Unavailable(m) => {
                tracing::error!(error = %m, "agent memory failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
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
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "the event broker is unavailable; retry shortly",
        )
        .with_retry_after(1)
    }
}

impl From<Missing> for ApiError {
    fn from(m: Missing) -> Self {
        match m {
            Missing::Gone => ApiError::not_found(
                "unknown_session",
                "the session does not exist or has expired",
            ),
            Missing::Revoked => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_revoked",
                "the session was revoked; its tokens are no longer accepted",
            ),
            Missing::Store(e) => e.into(),
            Missing::Broker(e) => e.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Gone(sid) => ApiError::not_found(
                "unknown_session",
                format!("session {sid} does not exist or has expired"),
            ),
            SessionError::Revoked => Missing::Revoked.into(),
            SessionError::UnknownAgent { .. } => {
                ApiError::bad_request("unknown_agent", e.to_string())
            }
            SessionError::Store(e) => e.into(),
            SessionError::Broker(e) => e.into(),
        }
    }
}

impl From<ToolRunError> for ApiError {
    fn from(e: ToolRunError) -> Self {
        match e {
            ToolRunError::Refused(RunError::Unknown(name)) => {
                let shown: String = name.chars().take(64).collect();
                ApiError::not_found(
                    "unknown_tool",
                    format!("no tool is named {shown:?}; GET /api/tools lists them"),
                )
            }
            ToolRunError::Refused(RunError::InvalidArguments {
                tool,
                summary,
                errors,
            }) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_arguments",
                format!("the arguments do not match {tool}'s schema: {summary}"),
            )
            .with_details(serde_json::json!(errors)),
            ToolRunError::Refused(e @ RunError::NotJson(_)) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_arguments",
                e.to_string(),
            ),
            e @ ToolRunError::NotAllowed { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "tool_not_allowed", e.to_string())
            }
            ToolRunError::InProgress => ApiError::new(
                StatusCode::CONFLICT,
                "tool_in_progress",
                "a call with this correlation_id is still running; retry later",
            )
            .with_retry_after(1),
            ToolRunError::Session(e) => e.into(),
            ToolRunError::Unreadable(e) => {
                ApiError::internal("a stored tool result is unreadable", &e)
            }
        }
    }
}

impl From<UnknownAgent> for ApiError {
    fn from(e: UnknownAgent) -> Self {
        ApiError::bad_request("unknown_agent", e.to_string())
    }
}

impl From<UnknownScenario> for ApiError {
    fn from(e: UnknownScenario) -> Self {
        ApiError::not_found("unknown_scenario", e.to_string())
    }
}

impl From<AgentSessionError> for ApiError {
    fn from(e: AgentSessionError) -> Self {
        match e {
            AgentSessionError::Offline => ApiError::upstream_not_configured(),
            e @ AgentSessionError::Unknown(_) => {
                ApiError::not_found("unknown_agent_session", e.to_string())
            }
            e @ AgentSessionError::LinkedGone(_) => {
                ApiError::not_found("unknown_session", e.to_string())
            }
            AgentSessionError::UnknownScenario(e) => e.into(),
            AgentSessionError::UnknownAgent(e) => e.into(),
            AgentSessionError::Memory(e) => e.into(),
            AgentSessionError::Store(e) => e.into(),
            AgentSessionError::Broker(e) => e.into(),
            AgentSessionError::Upstream(e) => e.into(),
            e @ (AgentSessionError::Corrupt(_) | AgentSessionError::BadId(_)) => {
                ApiError::internal("an agent session could not be read", &e)
            }
        }
    }
}
