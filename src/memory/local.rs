//! In-process [`AgentMemory`] for embedded mode.
//!
//! Each conversation is its own map entry (a sharded map, so two sessions never wait on one
//! lock) with an idle expiry like the Redis layout's TTL: every read or write slides it, an
//! expired conversation reads as empty, and expired entries are swept as writes come in, so
//! memory follows the conversations in use, not every conversation ever held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use serde_json::Value;
use tokio::time::Instant;

use super::{AgentMemory, LockToken, MemoryError, new_token};

/// One conversation and when it idles out.
struct Conversation {
    items: Vec<Value>,
    expires: Option<Instant>,
}

/// Sweep expired conversations once per this many writes.
const SWEEP_EVERY: u64 = 256;

/// Agent memory in process memory.
pub struct InMemory {
    items: DashMap<String, Conversation>,
    locks: DashMap<String, (LockToken, Instant)>,
    cap: usize,
    ttl: Option<Duration>,
    writes: AtomicU64,
}

impl InMemory {
    /// Keeps at most `cap` items per session, with no expiry.
    pub fn new(cap: usize) -> Self {
        Self {
            items: DashMap::new(),
            locks: DashMap::new(),
            cap: cap.max(1),
            ttl: None,
            writes: AtomicU64::new(0),
        }
    }

    /// Forgets a conversation `ttl` after its last read or write (`SWITCHBOARD_MEMORY_TTL`).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Conversations held now (expired ones count until the next sweep).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no conversation is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn expiry(&self, now: Instant) -> Option<Instant> {
        self.ttl.map(|t| now + t)
    }

    fn sweep_now_and_then(&self, now: Instant) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == 0 {
            self.items.retain(|_, c| c.expires.is_none_or(|e| e > now));
            self.locks.retain(|_, (_, until)| *until > now);
        }
    }
}

fn live(c: &Conversation, now: Instant) -> bool {
    c.expires.is_none_or(|e| e > now)
}

#[async_trait]
impl AgentMemory for InMemory {
    async fn get_items(
        &self,
        session: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, MemoryError> {
        let now = Instant::now();
        let Some(mut c) = self.items.get_mut(session) else {
            return Ok(Vec::new());
        };
        if !live(&c, now) {
            drop(c);
            self.items.remove_if(session, |_, c| !live(c, now));
            return Ok(Vec::new());
        }
        c.expires = self.expiry(now);
        let from = limit.map_or(0, |n| c.items.len().saturating_sub(n));
        Ok(c.items[from..].to_vec())
    }

    async fn add_items(
        &self,
        session: &str,
        items: &[Value],
        lock: Option<&LockToken>,
    ) -> Result<(), MemoryError> {
        let now = Instant::now();
        if let Some(token) = lock {
            let held = self
                .locks
                .get(session)
                .is_some_and(|l| &l.0 == token && l.1 > now);
            if !held {
                return Err(MemoryError::LockLost);
            }
        }
        {
            let mut c = self
                .items
                .entry(session.to_owned())
                .or_insert_with(|| Conversation {
                    items: Vec::new(),
                    expires: None,
                });
            if !live(&c, now) {
                c.items.clear();
            }
            c.expires = self.expiry(now);
            c.items.extend_from_slice(items);
            if c.items.len() > self.cap {
                let excess = c.items.len() - self.cap;
                c.items.drain(..excess);
            }
        }
        self.sweep_now_and_then(now);
        Ok(())
    }

    async fn pop_item(&self, session: &str) -> Result<Option<Value>, MemoryError> {
        let now = Instant::now();
        let Some(mut c) = self.items.get_mut(session) else {
            return Ok(None);
        };
        if !live(&c, now) {
            return Ok(None);
        }
        c.expires = self.expiry(now);
        Ok(c.items.pop())
    }

    async fn clear_session(&self, session: &str) -> Result<(), MemoryError> {
        self.items.remove(session);
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
            let now = Instant::now();
            let mut entry = self
                .locks
                .entry(session.to_owned())
                .or_insert_with(|| (LockToken(String::new()), now));
            if entry.1 <= now {
                let token = new_token();
                *entry = (token.clone(), now + ttl);
                return Ok(token);
            }
            drop(entry);
            if now >= deadline {
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
        let now = Instant::now();
        match self.locks.get_mut(session) {
            Some(mut l) if &l.0 == token && l.1 > now => {
                l.1 = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn unlock(&self, session: &str, token: &LockToken) -> Result<(), MemoryError> {
        self.locks.remove_if(session, |_, (t, _)| t == token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn an_idle_conversation_expires_and_is_swept() {
        let mem = InMemory::new(100).with_ttl(Duration::from_secs(60));
        mem.add_items("kept", &[json!({"role": "user", "content": "hi"})], None)
            .await
            .unwrap();
        for i in 0..10 {
            let s = format!("gone{i}");
            mem.add_items(&s, &[json!({"n": i})], None).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(40)).await;
        // A read slides the expiry of the conversation in use.
        assert_eq!(mem.get_items("kept", None).await.unwrap().len(), 1);
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(mem.get_items("gone3", None).await.unwrap().is_empty());
        assert_eq!(mem.get_items("kept", None).await.unwrap().len(), 1);
        // Writes sweep what expired: memory is back to the conversations in use.
        for _ in 0..SWEEP_EVERY {
            mem.add_items("kept", &[], None).await.unwrap();
        }
        assert_eq!(mem.len(), 1);
    }
}
