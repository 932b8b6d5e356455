//! In-process [`AgentMemory`] for embedded mode.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::{AgentMemory, LockToken, MemoryError, new_token};

#[derive(Default)]
struct Sessions {
    items: HashMap<String, Vec<Value>>,
    locks: HashMap<String, (LockToken, Instant)>,
}

/// Agent memory in process memory.
pub struct InMemory {
    inner: Mutex<Sessions>,
    cap: usize,
}

impl InMemory {
    /// Keeps at most `cap` items per session.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Sessions::default()),
            cap: cap.max(1),
        }
    }
}

#[async_trait]
impl AgentMemory for InMemory {
    async fn get_items(
        &self,
        session: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, MemoryError> {
        let g = self.inner.lock().expect("memory lock");
        let all = g.items.get(session).map(Vec::as_slice).unwrap_or_default();
        let from = limit.map_or(0, |n| all.len().saturating_sub(n));
        Ok(all[from..].to_vec())
    }

    async fn add_items(
        &self,
        session: &str,
        items: &[Value],
        lock: Option<&LockToken>,
    ) -> Result<(), MemoryError> {
        let mut g = self.inner.lock().expect("memory lock");
        if let Some(token) = lock {
            let held = g
                .locks
                .get(session)
                .is_some_and(|(t, until)| t == token && *until > Instant::now());
            if !held {
                return Err(MemoryError::LockLost);
            }
        }
        let list = g.items.entry(session.to_owned()).or_default();
        list.extend_from_slice(items);
        if list.len() > self.cap {
            let excess = list.len() - self.cap;
            list.drain(..excess);
        }
        Ok(())
    }

    async fn pop_item(&self, session: &str) -> Result<Option<Value>, MemoryError> {
        let mut g = self.inner.lock().expect("memory lock");
        Ok(g.items.get_mut(session).and_then(Vec::pop))
    }

    async fn clear_session(&self, session: &str) -> Result<(), MemoryError> {
        self.inner
            .lock()
            .expect("memory lock")
            .items
            .remove(session);
        Ok(())
    }

    async fn lock(
        &self,
        session: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockToken, MemoryError> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut g = self.inner.lock().expect("memory lock");
                let now = Instant::now();
                let free = g.locks.get(session).is_none_or(|(_, until)| *until <= now);
                if free {
                    let token = new_token();
                    g.locks
                        .insert(session.to_owned(), (token.clone(), now + ttl));
                    return Ok(token);
                }
            }
            if Instant::now() >= deadline {
                return Err(MemoryError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn extend_lock(
        &self,
        session: &str,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, MemoryError> {
        let mut g = self.inner.lock().expect("memory lock");
        let now = Instant::now();
        match g.locks.get_mut(session) {
            Some((t, until)) if t == token && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn unlock(&self, session: &str, token: &LockToken) -> Result<(), MemoryError> {
        let mut g = self.inner.lock().expect("memory lock");
        if g.locks.get(session).is_some_and(|(t, _)| t == token) {
            g.locks.remove(session);
        }
        Ok(())
    }
}
