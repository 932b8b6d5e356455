//! [`RecordBuffer`] in process memory, for embedded mode: entries wait here for the flusher.
//! An instance killed before the flush loses what it held (at most one flush interval);
//! Redis mode ([`super::redis`]) keeps them in Redis instead.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Entry, RecordBuffer, RecordError};

#[derive(Default)]
struct Inner {
    seq: HashMap<String, u64>,
    buf: HashMap<String, Vec<Entry>>,
    erased: HashSet<String>,
    claimed: HashMap<String, Instant>,
}

/// Buffered entries in memory.
#[derive(Default)]
pub struct MemoryBuffer {
    inner: Mutex<Inner>,
}

#[async_trait]
impl RecordBuffer for MemoryBuffer {
    async fn append(&self, mut entry: Entry) -> Result<Option<u64>, RecordError> {
        let mut g = self.inner.lock();
        if g.erased.contains(&entry.session_id) {
            return Ok(None);
        }
        let seq = g.seq.entry(entry.session_id.clone()).or_default();
        *seq += 1;
        entry.seq = *seq;
        let n = entry.seq;
        g.buf
            .entry(entry.session_id.clone())
            .or_default()
            .push(entry);
        Ok(Some(n))
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<String>, RecordError> {
        let mut g = self.inner.lock();
        let now = Instant::now();
        let ready: Vec<String> = g
            .buf
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.clone())
            .filter(|k| g.claimed.get(k).is_none_or(|until| *until <= now))
            .take(limit)
            .collect();
        for k in &ready {
            g.claimed.insert(k.clone(), now + lease);
        }
        Ok(ready)
    }

    async fn pending(&self, session: &str, limit: usize) -> Result<Vec<Entry>, RecordError> {
        let g = self.inner.lock();
        Ok(g.buf
            .get(session)
            .map(|v| v.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn ack(&self, session: &str, seq: u64) -> Result<(), RecordError> {
        let mut g = self.inner.lock();
        g.claimed.remove(session);
        if let Some(v) = g.buf.get_mut(session) {
            v.retain(|e| e.seq > seq);
            if v.is_empty() {
                g.buf.remove(session);
            }
        }
        Ok(())
    }

    async fn erase(&self, session: &str) -> Result<(), RecordError> {
        let mut g = self.inner.lock();
        g.buf.remove(session);
        g.claimed.remove(session);
        g.erased.insert(session.to_owned());
        Ok(())
    }
}
