//! Session state: the `SessionStore` trait and its implementations.
//!
//! A session is created by `session2` and read by every session-scoped endpoint. Its TTL
//! slides: every successful read or write pushes the expiry out by the configured idle
//! lifetime. The in-memory implementation ([`memory::MemoryStore`]) serves embedded mode;
//! the Redis one (`sb:{S}:state`, DESIGN.md §5) serves Redis mode.

pub mod memory;
pub mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{AgentName, ScenarioId, SessionId};

/// What the store keeps about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Session id.
    pub session_id: SessionId,
    /// Canonical scenario id (never an alias).
    pub scenario_id: ScenarioId,
    /// Root agent chosen at bootstrap.
    pub root_agent: AgentName,
    /// Agent currently in charge (changes on handoffs and orchestration).
    pub active_agent: AgentName,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
    /// Context supplied at bootstrap, appended to the root agent's instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The host app's user who created the session (`sub` of their user token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// A store failure. Callers answer it as a 503 (the backend is unavailable) and never as a
/// client error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] fred::error::Error),
    /// Stored data could not be decoded.
    #[error("session store holds undecodable data: {0}")]
    Corrupt(String),
}

/// Session state storage.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session (replacing any previous state under the same id) with a fresh TTL.
    async fn create(&self, state: &SessionState) -> Result<(), StoreError>;

    /// Reads a session and slides its TTL. `Ok(None)` when it never existed or expired.
    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError>;

    /// Checks the backend answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Replaces the session's context (and `updated_at`). `Ok(false)` when the session does
    /// not exist.
    async fn set_context(&self, id: &SessionId, context: Option<&str>) -> Result<bool, StoreError>;

    /// Sets `active_agent` to `to` only if it is `from` now (and bumps `updated_at`).
    /// Atomic across instances: of two concurrent calls from the same state, one wins.
    async fn cas_active_agent(
        &self,
        id: &SessionId,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError>;

    /// Stores `value` under `key` in `session`'s scope unless something is there already, in
    /// which case nothing changes and the existing value is returned. Expires after `ttl`.
    /// Atomic across instances: exactly one caller gets `None`.
    async fn put_once(
        &self,
        session: &SessionId,
        key: &str,
        value: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError>;

    /// Overwrites `key` in `session`'s scope, expiring after `ttl`.
    async fn put_value(
        &self,
        session: &SessionId,
        key: &str,
        value: &str,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// Removes `key` from `session`'s scope (nothing happens when it is absent).
    async fn delete_value(&self, session: &SessionId, key: &str) -> Result<(), StoreError>;

    /// Reads `key` in `session`'s scope.
    async fn get_value(&self, session: &SessionId, key: &str)
    -> Result<Option<String>, StoreError>;

    /// Deletes the session's state and leaves a tombstone for `ttl` (the longest a token of
    /// it can live), so its tokens are refused instead of re-creating it. Values in its
    /// scope stop being reachable and expire with their own TTL.
    async fn revoke(&self, id: &SessionId, ttl: std::time::Duration) -> Result<(), StoreError>;

    /// True while the session's tombstone exists.
    async fn is_revoked(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Unix milliseconds since which this store's data has existed (process start in memory;
    /// the first write after Redis came up empty in Redis mode). A session token issued
    /// before it may name a session that was lost rather than one that expired.
    async fn dataset_since(&self) -> Result<u64, StoreError>;
}
