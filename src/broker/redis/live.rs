//! Live delivery of the Redis broker: the message and reconnect listeners, the per-session
//! sequencers' I/O (catch-up from the stream), re-subscription after a reconnect or a
//! cluster topology change, and the periodic position check.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Message;

use super::RedisBroker;
use crate::broker::sequencer::Step;
use crate::broker::{Broker, Frame};
use crate::domain::SessionId;

/// Sessions whose positions one step of the position check reads at once.
const CHECK_CHUNK: usize = 64;

impl RedisBroker {
    pub(super) fn spawn_listeners(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let mut messages = self.subscriber.message_rx();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(msg) => match weak.upgrade() {
                        Some(b) => b.on_message(msg),
                        None => break,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Lost messages show up as gaps and are filled from the streams.
                        tracing::warn!(lost = n, "pub/sub receiver lagged");
                        let Some(b) = weak.upgrade() else { break };
                        b.catch_up_all();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let weak = Arc::downgrade(self);
        let mut reconnects = self.subscriber.reconnect_rx();
        tokio::spawn(async move {
            // The clients connected before this listener existed, so every event here is a
            // reconnect (and a spurious one costs one SUBSCRIBE and one history read).
            while reconnects.recv().await.is_ok() {
                let Some(b) = weak.upgrade() else { break };
                tracing::info!("Redis subscriber reconnected; re-subscribing and catching up");
                metrics::counter!("switchboard_redis_reconnects_total").increment(1);
                b.resubscribe_and_catch_up().await;
            }
        });
        if self.sharded {
            // A failover or resharding moves slots (and their shard channels) to other
            // primaries: subscribe there and fill what was missed meanwhile.
            let weak = Arc::downgrade(self);
            let mut changes = self.subscriber.cluster_change_rx();
            tokio::spawn(async move {
                while changes.recv().await.is_ok() {
                    let Some(b) = weak.upgrade() else { break };
                    tracing::info!(
                        "Redis Cluster topology changed; re-subscribing and catching up"
                    );
                    b.resubscribe_and_catch_up().await;
                }
            });
        }
    }

    fn on_message(self: &Arc<Self>, msg: Message) {
        let Some(session) = self.session_of(&msg.channel) else {
            return;
        };
        // The payload's bytes are kept as they came (the frame slices them, no copy).
        let payload = match msg.value {
            fred::types::Value::String(s) => s.into_inner(),
            fred::types::Value::Bytes(b) => b,
            _ => return,
        };
        let Some(seq_state) = self.seqs.get(&session).map(|s| s.clone()) else {
            return;
        };
        // Only the short head is read here; the frame checks the JSON's UTF-8 once.
        if let Some(epoch) = payload.strip_prefix(b"reset ") {
            let Ok(epoch) = std::str::from_utf8(epoch) else {
                return;
            };
            let step = seq_state.lock().reset(epoch);
            self.apply(&session, step);
            return;
        }
        let Some(space) = payload.iter().position(|&b| b == b' ') else {
            return;
        };
        let Some(seq) = std::str::from_utf8(&payload[..space])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        let Some(frame) = Frame::from_json_bytes(seq, payload.slice(space + 1..)) else {
            return;
        };
        let step = seq_state.lock().offer(frame);
        self.apply(&session, step);
    }

    /// Delivers what the sequencer released and starts a catch-up when it asks for one.
    fn apply(self: &Arc<Self>, session: &SessionId, step: Step) {
        if step.reset {
            self.sink.history_reset(session);
        }
        for f in step.deliver {
            self.sink.deliver(session, f);
        }
        if step.catch_up {
            let b = self.clone();
            let s = session.clone();
            tokio::spawn(async move { b.catch_up(&s).await });
        }
    }

    /// Fills a session's gap from the stream, then releases buffered live frames.
    async fn catch_up(self: &Arc<Self>, session: &SessionId) {
        let mut delay = Duration::from_millis(50);
        loop {
            let Some(state) = self.seqs.get(session).map(|s| s.clone()) else {
                return;
            };
            let after = state.lock().last();
            match self.history(session, after).await {
                Ok(h) => {
                    let step = state.lock().caught_up(h);
                    let again = step.catch_up;
                    self.apply(
                        session,
                        Step {
                            catch_up: false,
                            ..step
                        },
                    );
                    if !again {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, session_id = %session, "catch-up failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn catch_up_all(self: &Arc<Self>) {
        for entry in self.seqs.iter() {
            let step = entry.value().lock().force_catch_up();
            self.apply(entry.key(), step);
        }
    }

    async fn resubscribe_and_catch_up(self: &Arc<Self>) {
        let channels: Vec<String> = self.seqs.iter().map(|e| self.keys(e.key()).2).collect();
        if self.sharded {
            // One SSUBSCRIBE per channel: each goes to its slot's current primary (channels
            // of one SSUBSCRIBE must share a slot, and sessions rarely do).
            use futures_util::StreamExt;
            futures_util::stream::iter(channels)
                .for_each_concurrent(32, |channel| async move {
                    let mut delay = Duration::from_millis(100);
                    while let Err(e) = self.subscriber.ssubscribe(channel.clone()).await {
                        tracing::warn!(error = %e, %channel, "re-subscribe failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                })
                .await;
        } else {
            for chunk in channels.chunks(500) {
                let mut delay = Duration::from_millis(100);
                while let Err(e) = self.subscriber.subscribe(chunk.to_vec()).await {
                    tracing::warn!(error = %e, "re-subscribe failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        self.catch_up_all();
    }

    /// Compares each held session's delivered position with Redis and fills any gap (the
    /// "position check"): a lost message is noticed even if no later one arrives.
    ///
    /// The positions are read [`CHECK_CHUNK`] at a time, concurrently: the client sends
    /// the reads of a chunk together and they come back together. A check of many
    /// sessions then takes a few round trips instead of one per session. (One read after
    /// another spread each check over tens of milliseconds of interleaved traffic; the
    /// p99 at 2000/s was a little longer with it: BENCHMARKS.md, issue 21.)
    pub async fn check_positions(self: &Arc<Self>) {
        let sessions: Vec<SessionId> = self.seqs.iter().map(|e| e.key().clone()).collect();
        for chunk in sessions.chunks(CHECK_CHUNK) {
            let tops = futures_util::future::join_all(chunk.iter().map(|s| self.top(s))).await;
            for (s, top) in chunk.iter().zip(tops) {
                let Ok(Some(top)) = top else {
                    continue;
                };
                let Some(state) = self.seqs.get(s).map(|x| x.clone()) else {
                    continue;
                };
                let step = state.lock().check(&top);
                self.apply(s, step);
            }
        }
    }
}
