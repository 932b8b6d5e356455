//! In-memory [`SessionStore`] for embedded mode: a sharded map with sliding expiry.
//!
//! Expired entries are invisible at once (checked on read) and removed by a sweeper task,
//! so memory stays bounded by the sessions active within one TTL. Time comes from
//! `tokio::time`, so tests can pause and advance it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::time::Instant;

use super::{SessionState, SessionStore, StoreError};
use crate::domain::SessionId;

struct Entry {
    state: SessionState,
    expires: Instant,
}

/// The tombstone's key in a session's value scope (`:` is not a key callers use alone).
const REVOKED: &str = ":revoked";

/// Sessions in process memory.
pub struct MemoryStore {
    map: DashMap<SessionId, Entry>,
    values: DashMap<(SessionId, String), (String, Instant)>,
    ttl: Duration,
    since: u64,
}

impl MemoryStore {
    /// A store whose sessions expire after `ttl` without activity, with its sweeper running.
    pub fn new(ttl: Duration) -> Arc<Self> {
        let store = Arc::new(Self {
            map: DashMap::new(),
            values: DashMap::new(),
            ttl,
            since: crate::clock::unix_now_ms(),
        });
        let weak = Arc::downgrade(&store);
        let every = ttl.clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                let now = Instant::now();
                store.map.retain(|_, e| e.expires > now);
                store.values.retain(|_, (_, expires)| *expires > now);
            }
        });
        store
    }

    /// Number of live entries (expired ones not yet swept count too).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, state: &SessionState) -> Result<(), StoreError> {
        self.map.insert(
            state.session_id.clone(),
            Entry {
                state: state.clone(),
                expires: Instant::now() + self.ttl,
            },
        );
        Ok(())
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        let now = Instant::now();
        let Some(mut e) = self.map.get_mut(id) else {
            return Ok(None);
        };
        if e.expires <= now {
            drop(e);
            self.map.remove_if(id, |_, e| e.expires <= now);
            return Ok(None);
        }
        e.expires = now + self.ttl;
        Ok(Some(e.state.clone()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn revoke(&self, id: &SessionId, ttl: Duration) -> Result<(), StoreError> {
        self.map.remove(id);
        self.values.retain(|(s, _), _| s != id);
        self.values.insert(
            (id.clone(), REVOKED.to_owned()),
            ("1".to_owned(), Instant::now() + ttl),
        );
        Ok(())
    }

    async fn is_revoked(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self
            .values
            .get(&(id.clone(), REVOKED.to_owned()))
            .is_some_and(|v| v.1 > Instant::now()))
    }

    async fn set_context(&self, id: &SessionId, context: Option<&str>) -> Result<bool, StoreError> {
        let now = Instant::now();
        let Some(mut e) = self.map.get_mut(id).filter(|e| e.expires > now) else {
            return Ok(false);
        };
        e.state.context = context.map(str::to_owned);
        e.state.updated_at = crate::clock::now_rfc3339();
        e.expires = now + self.ttl;
        Ok(true)
    }

    async fn cas_active_agent(
        &self,
        id: &SessionId,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let Some(mut e) = self.map.get_mut(id).filter(|e| e.expires > now) else {
            return Ok(false);
        };
        if e.state.active_agent.as_str() != from {
            return Ok(false);
        }
        e.state.active_agent = to
            .parse()
            .map_err(|err: crate::domain::InvalidId| StoreError::Corrupt(err.to_string()))?;
        e.state.updated_at = crate::clock::now_rfc3339();
        e.expires = now + self.ttl;
        Ok(true)
    }

    async fn put_once(
        &self,
        session: &SessionId,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut entry = self
            .values
            .entry((session.clone(), key.to_owned()))
            .or_insert_with(|| (String::new(), now));
        if entry.1 > now {
            return Ok(Some(entry.0.clone()));
        }
        *entry = (value.to_owned(), now + ttl);
        Ok(None)
    }

    async fn put_value(
        &self,
        session: &SessionId,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.values.insert(
            (session.clone(), key.to_owned()),
            (value.to_owned(), Instant::now() + ttl),
        );
        Ok(())
    }

    async fn delete_value(&self, session: &SessionId, key: &str) -> Result<(), StoreError> {
        self.values.remove(&(session.clone(), key.to_owned()));
        Ok(())
    }

    async fn get_value(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        Ok(self
            .values
            .get(&(session.clone(), key.to_owned()))
            .filter(|e| e.1 > now)
            .map(|e| e.0.clone()))
    }

    async fn dataset_since(&self) -> Result<u64, StoreError> {
        Ok(self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str) -> SessionState {
        SessionState {
            session_id: id.parse().unwrap(),
            scenario_id: "simpleHandoff".parse().unwrap(),
            root_agent: "greeter".parse().unwrap(),
            active_agent: "greeter".parse().unwrap(),
            created_at: crate::clock::now_rfc3339(),
            updated_at: crate::clock::now_rfc3339(),
            context: None,
            user_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_slides_on_read_and_expires_when_idle() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let s = state("s1");
        store.create(&s).await.unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(store.get(&s.session_id).await.unwrap(), Some(s.clone()));
        // The read pushed expiry to t=18s; at t=16s it is still there.
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(store.get(&s.session_id).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.get(&s.session_id).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_removes_idle_sessions() {
        let store = MemoryStore::new(Duration::from_secs(1));
        for i in 0..50 {
            store.create(&state(&format!("s{i}"))).await.unwrap();
        }
        assert_eq!(store.len(), 50);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(store.is_empty());
    }
}
