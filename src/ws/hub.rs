//! The local hub: this instance's WebSocket and SSE connections, by session.
//!
//! The broker hands every live event of a session to [`Hub::deliver`], which fans the one
//! shared [`Frame`] out to that session's connections here. Each connection has a bounded
//! queue; when a queue is full the connection is removed and told to close with 4008 (slow
//! consumer), so one slow client never holds up the publisher or the other clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use proto_events::CloseCode;
use tokio::sync::{mpsc, oneshot};

use crate::broker::{Frame, LiveSink};
use crate::domain::SessionId;

struct Conn {
    id: u64,
    tx: mpsc::Sender<Frame>,
    close: Option<oneshot::Sender<CloseCode>>,
}

/// One connection's membership: its queue of live events and its close signal.
pub struct Member {
    /// Connection id within the hub.
    pub id: u64,
    /// Live events, in seq order.
    pub rx: mpsc::Receiver<Frame>,
    /// Fires when the hub wants the connection closed (slow consumer, shutdown, ...).
    pub close: oneshot::Receiver<CloseCode>,
}

/// Connections of this instance, by session.
pub struct Hub {
    sessions: DashMap<SessionId, Vec<Conn>>,
    queue: usize,
    next_id: AtomicU64,
    connections: AtomicUsize,
}

impl Hub {
    /// A hub whose connections queue at most `queue` events each.
    pub fn new(queue: usize) -> Arc<Self> {
        Arc::new(Self {
            sessions: DashMap::new(),
            queue: queue.max(1),
            next_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
        })
    }

    /// Adds a connection to `session`. Returns the membership and whether it is the first
    /// local connection of the session (the caller then subscribes the broker).
    pub fn join(&self, session: &SessionId) -> (Member, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue);
        let (close_tx, close) = oneshot::channel();
        let mut conns = self.sessions.entry(session.clone()).or_default();
        let first = conns.is_empty();
        conns.push(Conn {
            id,
            tx,
            close: Some(close_tx),
        });
        self.connections.fetch_add(1, Ordering::Relaxed);
        (Member { id, rx, close }, first)
    }

    /// Removes a connection. Returns true when it was the session's last local one (the
    /// caller then unsubscribes the broker). Leaving twice is harmless.
    pub fn leave(&self, session: &SessionId, id: u64) -> bool {
        let mut removed = false;
        let last = self
            .sessions
            .remove_if_mut(session, |_, conns| {
                let before = conns.len();
                conns.retain(|c| c.id != id);
                removed = conns.len() < before;
                conns.is_empty()
            })
            .is_some();
        if removed {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
        last
    }

    /// Asks every connection of `session` to close with `code`.
    pub fn close_session(&self, session: &SessionId, code: CloseCode) {
        if let Some(mut conns) = self.sessions.get_mut(session) {
            for c in conns.iter_mut() {
                if let Some(tx) = c.close.take() {
                    let _ = tx.send(code);
                }
            }
        }
    }

    /// Asks up to `n` connections not yet asked to close with `code`; returns how many were
    /// asked (0 when none is left).
    pub fn close_some(&self, code: CloseCode, n: usize) -> usize {
        let mut asked = 0;
        for mut conns in self.sessions.iter_mut() {
            for c in conns.iter_mut() {
                if asked == n {
                    return asked;
                }
                if let Some(tx) = c.close.take() {
                    let _ = tx.send(code);
                    asked += 1;
                }
            }
        }
        asked
    }

    /// Asks every connection to close with `code` (shutdown).
    pub fn close_all(&self, code: CloseCode) {
        for mut conns in self.sessions.iter_mut() {
            for c in conns.iter_mut() {
                if let Some(tx) = c.close.take() {
                    let _ = tx.send(code);
                }
            }
        }
    }

    /// Connections currently held.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Sessions with at least one local connection.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.sessions.iter().map(|e| e.key().clone()).collect()
    }
}

impl crate::realtime::SessionCloser for Hub {
    fn close_session(&self, session: &SessionId, code: CloseCode) {
        Hub::close_session(self, session, code);
    }
}

impl LiveSink for Hub {
    fn deliver(&self, session: &SessionId, frame: Frame) {
        let Some(mut conns) = self.sessions.get_mut(session) else {
            return;
        };
        crate::metrics::delivering(&frame.meta.kind, frame.meta.ts_ms, conns.len());
        let m = &frame.meta;
        let span = crate::telemetry::delivery_span(
            &m.kind,
            m.trace_id.as_deref(),
            m.span_id.as_deref(),
            conns.len(),
        );
        let _entered = span.as_ref().map(|s| s.enter());
        let mut dropped = 0;
        conns.retain_mut(|c| match c.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(tx) = c.close.take() {
                    let _ = tx.send(CloseCode::SlowConsumer);
                }
                tracing::info!(session_id = %session, conn = c.id, "closing a slow consumer (4008)");
                metrics::counter!("switchboard_slow_consumer_closes_total").increment(1);
                dropped += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                dropped += 1;
                false
            }
        });
        if dropped > 0 {
            self.connections.fetch_sub(dropped, Ordering::Relaxed);
        }
        // An emptied entry is removed by the connections' own `leave`.
    }

    fn history_reset(&self, session: &SessionId) {
        self.close_session(session, CloseCode::HistoryLost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame::from_json(seq, format!("{{\"seq\":{seq}}}"))
    }

    #[tokio::test]
    async fn a_full_queue_closes_only_that_connection() {
        let hub = Hub::new(2);
        let s: SessionId = "s".parse().unwrap();
        let (mut fast, first) = hub.join(&s);
        assert!(first);
        let (mut slow, first) = hub.join(&s);
        assert!(!first);
        for seq in 1..=3 {
            hub.deliver(&s, frame(seq));
            assert_eq!(fast.rx.recv().await.unwrap().seq, seq);
        }
        assert_eq!(slow.close.try_recv(), Ok(CloseCode::SlowConsumer));
        assert_eq!(hub.connection_count(), 1);
        hub.deliver(&s, frame(4));
        assert_eq!(fast.rx.recv().await.unwrap().seq, 4);
        assert!(!hub.leave(&s, slow.id), "the slow one was already removed");
        assert!(hub.leave(&s, fast.id));
        assert_eq!(hub.connection_count(), 0);
    }

    #[tokio::test]
    async fn sessions_are_isolated_and_close_all_reaches_everyone() {
        let hub = Hub::new(8);
        let a: SessionId = "a".parse().unwrap();
        let b: SessionId = "b".parse().unwrap();
        let (mut ma, _) = hub.join(&a);
        let (mut mb, _) = hub.join(&b);
        hub.deliver(&a, frame(1));
        assert_eq!(ma.rx.recv().await.unwrap().seq, 1);
        assert!(mb.rx.try_recv().is_err());
        hub.close_all(CloseCode::ServiceRestart);
        assert_eq!(ma.close.try_recv(), Ok(CloseCode::ServiceRestart));
        assert_eq!(mb.close.try_recv(), Ok(CloseCode::ServiceRestart));
    }
}
