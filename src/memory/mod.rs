//! Server-side agent memory with the OpenAI Agents SDK `Session` semantics
//! (`get_items(limit)`, `add_items`, `pop_item`, `clear_session`), so a Python worker using
//! the SDK's `RedisSession` and Switchboard share one conversation.
//!
//! Items are Responses API input items (JSON), oldest first. On top of the SDK we add a
//! length cap (the oldest items are trimmed) and a per-session lock across instances, so two
//! concurrent turns on one agent session queue instead of interleaving. The lock is a token
//! with a TTL: a holder that dies releases it by expiry, and writes made under a lock check
//! the token first (fencing), so a holder that lost its lock cannot append.

pub mod local;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

/// A memory failure.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The backend could not be reached.
    #[error("agent memory unavailable: {0}")]
    Unavailable(#[source] fred::error::Error),
    /// The lock was lost (expired and taken by another holder) before the write.
    #[error("the agent session's lock was lost before the write")]
    LockLost,
    /// The lock could not be taken within the wait.
    #[error("the agent session is busy with another turn")]
    Busy,
}

/// A held lock on one agent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

/// Agent memory.
#[async_trait]
pub trait AgentMemory: Send + Sync + 'static {
    /// The latest `limit` items (all when `None`), oldest first.
    async fn get_items(
        &self,
        session: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, MemoryError>;

    /// Appends items (oldest first), then trims to the cap. With `lock`, appends only while
    /// that lock is still held ([`MemoryError::LockLost`] otherwise, nothing written).
    async fn add_items(
        &self,
        session: &str,
        items: &[Value],
        lock: Option<&LockToken>,
    ) -> Result<(), MemoryError>;

    /// Removes and returns the newest item.
    async fn pop_item(&self, session: &str) -> Result<Option<Value>, MemoryError>;

    /// Deletes the session's items and metadata.
    async fn clear_session(&self, session: &str) -> Result<(), MemoryError>;

    /// Takes the session's lock for `ttl`, waiting up to `wait` for a holder to finish.
    async fn lock(
        &self,
        session: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockToken, MemoryError>;

    /// Pushes the lock's expiry to `ttl` from now if `token` still holds it; false when
    /// the lock was lost.
    async fn extend_lock(
        &self,
        session: &str,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, MemoryError>;

    /// Releases the lock if `token` still holds it.
    async fn unlock(&self, session: &str, token: &LockToken) -> Result<(), MemoryError>;
}

/// A fresh lock token.
pub fn new_token() -> LockToken {
    LockToken(uuid::Uuid::new_v4().simple().to_string())
}
