//! Who is calling a model-backed endpoint (`/api/session`, `session2`, `/api/responses`,
//! `/api/moderate`, `/api/agent/run`), and whether they may.
//!
//! A bearer credential is, in this order: a server API key, a session token, or a user
//! token from the host app. One that is none of these is refused (401) rather than treated
//! as anonymous, except a placeholder that is not shaped like a JWT while anonymous calls
//! are allowed (what an `openai` SDK pointed at our proxy sends). Without a bearer the call
//! is anonymous, allowed only while `SWITCHBOARD_ALLOW_ANONYMOUS` holds. Every model-backed call counts against the client
//! IP's rate, and a known user (or session) also against its own; over either limit is
//! `429 rate_limited` with `Retry-After`. All of this happens before any upstream call.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use crate::auth::user::{UserClaims, UserTokenError};
use crate::auth::{SessionClaims, TokenError, is_api_key};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A server API key.
    ApiKey,
    /// A session token (for whichever session it names).
    Session(SessionClaims),
    /// A user token from the host app.
    User(UserClaims),
    /// No credentials.
    Anonymous,
}

impl Caller {
    /// The host app's user, when known (a user token, or a session created by one).
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::User(u) => Some(&u.sub),
            Caller::Session(c) => c.uid.as_deref(),
            _ => None,
        }
    }

    /// Whether the caller may start a session of `scenario` (a user token's scenario
    /// claim restricts it; everyone else may).
    pub fn may_start(&self, scenario: &str) -> bool {
        match self {
            Caller::User(UserClaims {
                scenarios: Some(allowed),
                ..
            }) => allowed.iter().any(|s| s == scenario),
            _ => true,
        }
    }

    /// The key of the caller's own rate limit.
    fn rate_key(&self) -> Option<String> {
        match self {
            Caller::User(u) => Some(format!("user:{}", u.sub)),
            Caller::Session(c) => Some(match &c.uid {
                Some(uid) => format!("user:{uid}"),
                None => format!("session:{}", c.sid),
            }),
            _ => None,
        }
    }
}

/// Classifies the request's credentials. `Ok(Anonymous)` without a bearer.
pub async fn classify(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(token) = bearer(headers) else {
        return Ok(Caller::Anonymous);
    };
    if is_api_key(&state.config, token) {
        return Ok(Caller::ApiKey);
    }
    match state.tokens.verify_any(token) {
        Ok(c) => return Ok(Caller::Session(c)),
        Err(TokenError::Expired) => return Err(TokenError::Expired.into()),
        Err(_) => {}
    }
    // Clients that must send some key (the `openai` SDKs pointed at our proxy) send a
    // placeholder. While anonymous calls are allowed, a bearer that is not even shaped like
    // a JWT is such a placeholder; a JWT that fails to verify is always refused.
    if token.split('.').count() != 3 && state.config.allow_anonymous() {
        return Ok(Caller::Anonymous);
    }
    let Some(users) = &state.users else {
        return Err(ApiError::unauthorized(
            "the bearer token is not a server API key or a session token",
        ));
    };
    users
        .verify(token)
        .await
        .map(Caller::User)
        .map_err(|e| match e {
            UserTokenError::Unavailable(m) => {
                tracing::warn!(error = %m, "user tokens cannot be verified now");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "auth_unavailable",
                    "user tokens cannot be verified right now; retry shortly",
                )
                .with_retry_after(5)
            }
            other => ApiError::unauthorized(other.to_string()),
        })
}

/// The caller of a model-backed endpoint: authenticated, allowed, and within its limits.
pub struct ModelAccess(pub Caller);

impl FromRequestParts<AppState> for ModelAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts, &state.config);
        // The IP's limit counts failed attempts too, so guessing credentials is throttled.
        state.limits.check_ip(ip)?;
        let caller = classify(state, &parts.headers).await?;
        if matches!(caller, Caller::Anonymous) && !state.config.allow_anonymous() {
            return Err(ApiError::unauthorized(
                "credentials are required: a session token, a user token from the host app, \
                 or the server API key (Authorization: Bearer ...)",
            ));
        }
        if let Some(key) = caller.rate_key() {
            state.limits.check_user(key)?;
        }
        Ok(ModelAccess(caller))
    }
}

/// The client's IP: the trusted proxy header when configured and present, else the peer.
pub fn client_ip(parts: &Parts, config: &Config) -> Option<IpAddr> {
    if let Some(h) = &config.access.client_ip_header
        && let Some(ip) = parts
            .headers
            .get(h.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks the request carries a server API key (`Authorization: Bearer <key>`), in
/// constant time. Without a configured key, server endpoints are closed.
pub fn require_api_key(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    if config.api_keys.is_empty() {
        return Err(ApiError::unauthorized(
            "server endpoints are disabled: set SWITCHBOARD_API_KEY to use them",
        ));
    }
    let given = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized("the server API key is required (Authorization: Bearer <key>)")
    })?;
    if is_api_key(config, given) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("the server API key is not valid"))
    }
}
