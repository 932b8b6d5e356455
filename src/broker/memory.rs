//! In-process [`Broker`] for embedded mode.

use async_trait::async_trait;
use dashmap::DashMap;

use super::{Broker, BrokerError, Top, new_epoch};
use crate::domain::SessionId;

/// Histories in process memory.
#[derive(Default)]
pub struct MemoryBroker {
    tops: DashMap<SessionId, Top>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn open(&self, session: &SessionId) -> Result<Top, BrokerError> {
        Ok(self
            .tops
            .entry(session.clone())
            .or_insert_with(|| Top {
                epoch: new_epoch(),
                seq: 0,
            })
            .clone())
    }

    async fn top(&self, session: &SessionId) -> Result<Option<Top>, BrokerError> {
        Ok(self.tops.get(session).map(|t| t.clone()))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_is_idempotent_and_epochs_differ_between_sessions() {
        let b = MemoryBroker::new();
        let a: SessionId = "a".parse().unwrap();
        let t1 = b.open(&a).await.unwrap();
        assert_eq!(t1.seq, 0);
        assert_eq!(b.open(&a).await.unwrap(), t1);
        assert_eq!(b.top(&a).await.unwrap(), Some(t1.clone()));
        let t2 = b.open(&"b".parse().unwrap()).await.unwrap();
        assert_ne!(t1.epoch, t2.epoch);
        assert_eq!(b.top(&"c".parse().unwrap()).await.unwrap(), None);
    }
}
