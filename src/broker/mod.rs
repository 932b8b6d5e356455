//! The event broker: per-session histories with `{epoch, seq}` positions.
//!
//! Every session gets a history when it is created (`open`), named by an opaque `epoch`
//! that changes only if the history is lost. The event channel (publish, live delivery,
//! replay) is built on this trait; `MemoryBroker` serves embedded mode.

pub mod memory;

use async_trait::async_trait;
pub use proto_events::Top;

use crate::domain::SessionId;

/// A broker failure: the backend is unreachable or refused the operation. Nothing was
/// written; callers answer `503 broker_unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub struct BrokerError(pub String);

/// Per-session event histories.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Creates the session's history if it does not exist and returns its position.
    /// Idempotent: opening an existing history returns its current top unchanged.
    async fn open(&self, session: &SessionId) -> Result<Top, BrokerError>;

    /// The current position of a session's history, `None` if it has none.
    async fn top(&self, session: &SessionId) -> Result<Option<Top>, BrokerError>;

    /// Checks the backend answers (readiness).
    async fn ping(&self) -> Result<(), BrokerError>;
}

/// A fresh epoch: an opaque, unique string.
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}
