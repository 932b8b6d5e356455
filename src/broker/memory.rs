//! In-process [`Broker`] for embedded mode.
//!
//! Each session has a log behind its own mutex: publishing assigns the seq, appends, trims
//! to `history_size`, and hands the frame to the sink while still holding the lock, so the
//! sink sees a session's events in seq order even with concurrent publishers (the sink
//! never blocks). Events older than `history_ttl` are dropped, and a session's whole log is
//! dropped after `history_ttl` without activity (a later open starts a new epoch).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::time::Instant;

use super::{
    Broker, BrokerError, Frame, History, LiveSink, Publish, Published, Top, encode, new_epoch,
};
use crate::domain::SessionId;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

struct Log {
    epoch: String,
    seq: u64,
    events: VecDeque<(Instant, Frame)>,
    idem: HashMap<String, (Instant, Published)>,
    touched: Instant,
}

impl Log {
    fn new(now: Instant) -> Self {
        Self {
            epoch: new_epoch(),
            seq: 0,
            events: VecDeque::new(),
            idem: HashMap::new(),
            touched: now,
        }
    }

    fn top(&self) -> Top {
        Top {
            epoch: self.epoch.clone(),
            seq: self.seq,
        }
    }

    fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .events
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= ttl)
        {
            self.events.pop_front();
        }
        self.idem
            .retain(|_, (at, _)| now.duration_since(*at) < IDEMPOTENCY_WINDOW);
    }
}

/// Histories in process memory.
pub struct MemoryBroker {
    logs: DashMap<SessionId, Arc<Mutex<Log>>>,
    sink: Arc<dyn LiveSink>,
    history_size: usize,
    history_ttl: Duration,
}

impl MemoryBroker {
    /// A broker delivering to `sink`, keeping at most `history_size` events per session for
    /// at most `history_ttl`, with its sweeper running.
    pub fn new(sink: Arc<dyn LiveSink>, history_size: usize, history_ttl: Duration) -> Arc<Self> {
        let broker = Arc::new(Self {
            logs: DashMap::new(),
            sink,
            history_size: history_size.max(1),
            history_ttl,
        });
        let weak = Arc::downgrade(&broker);
        let every = history_ttl.clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { break };
                let now = Instant::now();
                b.logs.retain(|_, log| {
                    let log = log.lock();
                    now.duration_since(log.touched) < b.history_ttl
                });
            }
        });
        broker
    }

    fn log(&self, session: &SessionId) -> Option<Arc<Mutex<Log>>> {
        let log = self.logs.get(session)?.clone();
        let now = Instant::now();
        let stale = now.duration_since(log.lock().touched) >= self.history_ttl;
        if stale {
            self.logs.remove(session);
            return None;
        }
        Some(log)
    }

    fn log_or_create(&self, session: &SessionId) -> Arc<Mutex<Log>> {
        if let Some(l) = self.log(session) {
            return l;
        }
        let mut created = false;
        let log = self
            .logs
            .entry(session.clone())
            .or_insert_with(|| {
                created = true;
                Arc::new(Mutex::new(Log::new(Instant::now())))
            })
            .clone();
        if created {
            // Sockets attached to an expired history must not read seq 1 of the new epoch
            // as a duplicate of the old seq 1.
            self.sink.history_reset(session);
        }
        log
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn open(&self, session: &SessionId) -> Result<Top, BrokerError> {
        let log = self.log_or_create(session);
        let mut log = log.lock();
        log.touched = Instant::now();
        Ok(log.top())
    }

    async fn append(
        &self,
        session: &SessionId,
        mut event: Publish,
    ) -> Result<Published, BrokerError> {
        let log = self.log_or_create(session);
        let mut log = log.lock();
        let now = Instant::now();
        log.expire(now, self.history_ttl);
        log.touched = now;
        if let Some(key) = &event.idempotency_key
            && let Some((_, first)) = log.idem.get(key)
        {
            return Ok(Published {
                duplicate: true,
                ..first.clone()
            });
        }
        let seq = log.seq + 1;
        let data = std::mem::take(&mut event.data);
        let (id, frame) = encode(session, seq, &log.epoch, &event.kind, data, event.trace_id);
        log.seq = seq;
        log.events.push_back((now, frame.clone()));
        while log.events.len() > self.history_size {
            log.events.pop_front();
        }
        let published = Published {
            seq,
            epoch: log.epoch.clone(),
            id,
            duplicate: false,
        };
        crate::metrics::published(event.kind.as_str());
        if let Some(key) = event.idempotency_key {
            log.idem.insert(key, (now, published.clone()));
        }
        // Still under the session lock: the sink sees this session's events in seq order.
        self.sink.deliver(session, frame);
        Ok(published)
    }

    async fn history(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<Option<History>, BrokerError> {
        let Some(log) = self.log(session) else {
            return Ok(None);
        };
        let mut log = log.lock();
        let now = Instant::now();
        log.expire(now, self.history_ttl);
        log.touched = now;
        let events: Vec<Frame> = log
            .events
            .iter()
            .filter(|(_, f)| f.seq > after)
            .map(|(_, f)| f.clone())
            .collect();
        let complete = after <= log.seq && events.len() as u64 == log.seq - after;
        Ok(Some(History {
            top: log.top(),
            events,
            complete,
        }))
    }

    async fn top(&self, session: &SessionId) -> Result<Option<Top>, BrokerError> {
        Ok(self.log(session).map(|l| l.lock().top()))
    }

    async fn subscribe(&self, _session: &SessionId) -> Result<(), BrokerError> {
        // Every publish already reaches this process's sink.
        Ok(())
    }

    async fn unsubscribe(&self, _session: &SessionId) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn delete(&self, session: &SessionId) -> Result<(), BrokerError> {
        self.logs.remove(session);
        Ok(())
    }
}
