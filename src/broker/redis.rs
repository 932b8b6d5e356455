//! [`Broker`] on Redis: histories in Streams, live delivery through pub/sub, so an event
//! published on any instance reaches sockets on every instance.
//!
//! Layout (DESIGN.md §5; `{S}` hash-tags the session): `sb:{S}:meta` (hash: epoch, seq),
//! `sb:{S}:events` (stream; entry id `<seq>-0`, field `e` = envelope), `sb:{S}:idem:<key>`
//! (the first result of an idempotent publish, 5 min), channel `sb:{S}`.
//!
//! Publishing is one Lua script (idempotency check, epoch create-if-missing, seq increment,
//! `XADD MAXLEN ~`, `PEXPIRE`, `PUBLISH`, idempotency record), so seq order, history and live
//! delivery cannot disagree. An API publish (`Broker::publish_if_live`) also checks the
//! session there: `PEXPIRE` of its state key `sb:{S}:state` (same slot) slides the session's
//! idle TTL, and 0 (not live) publishes nothing, so the check costs no round trip of its own.
//! Publishes in flight together share one script call (group commit, [`batch`]): one
//! Redis command and one frame for many events, each with its own outcome.
//! The channel message is `<seq> <envelope>`: the receiving
//! instance hands the bytes to the hub without parsing or re-serializing them.
//!
//! Live delivery runs through a per-session [`sequencer`](super::sequencer): frames reach
//! the hub strictly in seq order without gaps. A gap (pub/sub lagged, Redis reconnected, a
//! message lost) is filled from the stream before anything later is delivered; a history
//! that was trimmed past the gap or replaced (new epoch) closes the session's sockets with
//! 4013. After a reconnect the instance re-subscribes every held session itself (fred's
//! `manage_subscriptions` sends an empty PSUBSCRIBE that Redis rejects) and catches each up.
//!
//! On a Redis Cluster the same layout holds (every key of a session shares its `{S}` slot)
//! and live delivery uses sharded pub/sub: the scripts `SPUBLISH` on the session's channel,
//! which lives on the slot's primary, and the instance `SSUBSCRIBE`s there. A reconnect or
//! a topology change (failover, resharding) re-subscribes every held channel at its current
//! owner and catches each session up from its stream. With `min_replicas` set, a publish
//! answers only after that many replicas hold it (`WAIT`), so a failover does not lose an
//! acknowledged event; a history that went backwards anyway closes the session's sockets
//! with 4013 rather than reusing seqs silently.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;

mod batch;
mod live;
mod publish;
mod refresh;

pub use super::redis_conn::{RedisClients, redact};
use super::sequencer::Sequencer;
use super::{Broker, BrokerError, Frame, History, LiveSink, Publish, Published, Top, new_epoch};
use crate::domain::SessionId;

/// How long an idempotency key is remembered, in ms.
const IDEMPOTENCY_MS: u64 = 300_000;

const PUBLISH_LUA: &str = concat!(
    include_str!("lua/epoch.lua"),
    include_str!("lua/append.lua"),
    include_str!("lua/publish.lua")
);

const OPEN_LUA: &str = concat!(include_str!("lua/epoch.lua"), include_str!("lua/open.lua"));

/// Returns {epoch, seq, first_retained_seq, seq1, env1, seq2, env2, ...} or {} without history.
const HISTORY_LUA: &str = include_str!("lua/history.lua");

/// Histories in Redis.
pub struct RedisBroker {
    client: Client,
    subscriber: SubscriberClient,
    prefix: String,
    sink: Arc<dyn LiveSink>,
    history_size: usize,
    history_ttl: Duration,
    publish: Script,
    open: Script,
    history: Script,
    /// Local subscription counts, each behind its own async lock so SUBSCRIBE/UNSUBSCRIBE of
    /// one session are serialized.
    subs: DashMap<SessionId, Arc<tokio::sync::Mutex<usize>>>,
    /// Live-delivery state of every subscribed session.
    seqs: DashMap<SessionId, Arc<parking_lot::Mutex<Sequencer>>>,
    /// Redis Cluster: sharded pub/sub.
    sharded: bool,
    /// Replicas that must acknowledge a publish before it is answered (0: none).
    min_replicas: u32,
    /// Which publishes slide the TTLs.
    refresh: refresh::Refreshes,
    /// Group commit of publishes (a single Redis server with batching on).
    batcher: Option<batch::Batcher>,
}

/// How long a publish waits for its replicas.
const REPLICA_WAIT_MS: i64 = 500;

fn unavailable(e: Error) -> BrokerError {
    metrics::counter!("switchboard_redis_errors_total", "op" => "broker").increment(1);
    BrokerError::Redis(e)
}

impl RedisBroker {
    /// Publish calls sent to Redis so far (with group commit, fewer than publishes).
    pub fn publish_calls(&self) -> Option<u64> {
        self.batcher.as_ref().map(batch::Batcher::batches)
    }

    /// Sessions with a subscription entry on this instance (0 once every socket left).
    pub fn subscription_entries(&self) -> usize {
        self.subs.len()
    }

    /// Drops `session`'s count entry if it is at 0 and nobody else holds it. Called with
    /// `lock` held; a caller that cloned the entry to subscribe keeps it alive.
    fn forget_if_unused(&self, session: &SessionId, lock: &Arc<tokio::sync::Mutex<usize>>) {
        // Two references: the map's and the caller's. The map's shard lock is held during the
        // check, so no new clone can appear meanwhile.
        self.subs.remove_if(session, |_, l| {
            Arc::ptr_eq(l, lock) && Arc::strong_count(l) == 2
        });
    }

    /// A broker on connected clients, delivering to `sink`; starts its message and
    /// reconnect tasks.
    pub fn new(
        clients: &RedisClients,
        prefix: &str,
        sink: Arc<dyn LiveSink>,
        history_size: usize,
        history_ttl: Duration,
    ) -> Arc<Self> {
        let broker = Arc::new(Self {
            client: clients.client.clone(),
            subscriber: clients.subscriber.clone(),
            prefix: prefix.to_owned(),
            sink,
            history_size: history_size.max(1),
            history_ttl,
            publish: Script::from_lua(PUBLISH_LUA),
            open: Script::from_lua(OPEN_LUA),
            history: Script::from_lua(HISTORY_LUA),
            subs: DashMap::new(),
            seqs: DashMap::new(),
            sharded: clients.cluster,
            min_replicas: clients.min_replicas,
            refresh: refresh::Refreshes::default(),
            batcher: (!clients.cluster && clients.publish_batch > 1).then(|| {
                batch::Batcher::start(
                    clients.client.clone(),
                    clients.publish_batch,
                    history_size.max(1),
                    IDEMPOTENCY_MS,
                    "PUBLISH",
                )
            }),
        });
        broker.spawn_listeners();
        broker
    }

    fn keys(&self, s: &SessionId) -> (String, String, String) {
        let p = &self.prefix;
        (
            format!("{p}:{{{s}}}:meta"),
            format!("{p}:{{{s}}}:events"),
            format!("{p}:{{{s}}}"),
        )
    }

    fn session_of(&self, channel: &str) -> Option<SessionId> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        rest.strip_suffix('}')?.parse().ok()
    }

    fn publish_command(&self) -> &'static str {
        if self.sharded { "SPUBLISH" } else { "PUBLISH" }
    }

    fn ttl_ms(&self) -> u64 {
        self.history_ttl.as_millis().max(1) as u64
    }
}

fn parse_history(values: Vec<Value>, after: u64) -> Result<Option<History>, BrokerError> {
    if values.is_empty() {
        return Ok(None);
    }
    let text = |v: &Value| v.as_string().unwrap_or_default();
    let num = |v: &Value| -> u64 { text(v).parse().unwrap_or(0) };
    if values.len() < 3 {
        return Err(BrokerError::Protocol("history reply"));
    }
    let top = Top {
        epoch: text(&values[0]),
        seq: num(&values[1]),
    };
    let events: Vec<Frame> = values[3..]
        .chunks_exact(2)
        .map(|p| Frame::from_json(num(&p[0]), text(&p[1])))
        .filter(|f| f.seq <= top.seq)
        .collect();
    let complete = after <= top.seq && events.len() as u64 == top.seq - after;
    Ok(Some(History {
        top,
        events,
        complete,
    }))
}

#[async_trait]
impl Broker for RedisBroker {
    async fn open(&self, session: &SessionId) -> Result<Top, BrokerError> {
        let (meta, events, channel) = self.keys(session);
        let r: Vec<Value> = self
            .open
            .evalsha_with_reload(
                &self.client,
                vec![meta, events],
                vec![
                    channel,
                    self.ttl_ms().to_string(),
                    new_epoch(),
                    self.publish_command().to_owned(),
                ],
            )
            .await
            .map_err(unavailable)?;
        match r.as_slice() {
            [epoch, seq] => Ok(Top {
                epoch: epoch.as_string().unwrap_or_default(),
                seq: seq.as_string().and_then(|s| s.parse().ok()).unwrap_or(0),
            }),
            _ => Err(BrokerError::Protocol("open reply")),
        }
    }

    async fn append(&self, session: &SessionId, event: Publish) -> Result<Published, BrokerError> {
        self.append_checked(session, event, None)
            .await?
            .ok_or(BrokerError::Protocol("publish reply"))
    }

    async fn publish_if_live(
        &self,
        session: &SessionId,
        event: Publish,
        session_ttl: std::time::Duration,
    ) -> super::Checked {
        use tracing::Instrument;
        let span = crate::telemetry::publish_span(session, event.kind.as_str());
        let ttl = session_ttl.as_millis().max(1) as u64;
        super::Checked::Done(
            self.append_checked(session, event, Some(ttl))
                .instrument(span)
                .await,
        )
    }

    async fn history(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<Option<History>, BrokerError> {
        let (meta, events, _) = self.keys(session);
        let arg = if after == u64::MAX {
            "none".to_owned()
        } else {
            after.to_string()
        };
        let r: Vec<Value> = self
            .history
            .evalsha_with_reload(&self.client, vec![meta, events], vec![arg])
            .await
            .map_err(unavailable)?;
        let mut h = parse_history(r, after.min(u64::MAX - 1))?;
        if after == u64::MAX
            && let Some(h) = h.as_mut()
        {
            h.complete = false;
        }
        Ok(h)
    }

    async fn top(&self, session: &SessionId) -> Result<Option<Top>, BrokerError> {
        let (meta, _, _) = self.keys(session);
        let (epoch, seq): (Option<String>, Option<u64>) = self
            .client
            .hmget(meta, vec!["epoch", "seq"])
            .await
            .map_err(unavailable)?;
        Ok(epoch.map(|epoch| Top {
            epoch,
            seq: seq.unwrap_or(0),
        }))
    }

    async fn subscribe(&self, session: &SessionId) -> Result<(), BrokerError> {
        // (The count's entry is removed again when it drops back to 0: the map holds the
        // sessions held now, not every session ever served.)
        let lock = self.subs.entry(session.clone()).or_default().clone();
        let mut count = lock.lock().await;
        if *count == 0 {
            let (_, _, channel) = self.keys(session);
            let seq = Arc::new(parking_lot::Mutex::new(Sequencer::new()));
            self.seqs.insert(session.clone(), seq.clone());
            let subscribed = if self.sharded {
                self.subscriber.ssubscribe(channel).await
            } else {
                self.subscriber.subscribe(channel).await
            };
            if let Err(e) = subscribed {
                self.seqs.remove(session);
                self.forget_if_unused(session, &lock);
                return Err(unavailable(e));
            }
            // Live frames that arrive now are buffered until the position is known.
            let top = match self.top(session).await {
                Ok(t) => t,
                Err(e) => {
                    self.seqs.remove(session);
                    self.forget_if_unused(session, &lock);
                    return Err(e);
                }
            };
            let step = seq.lock().start(top);
            for f in step.deliver {
                self.sink.deliver(session, f);
            }
        }
        *count += 1;
        Ok(())
    }

    async fn unsubscribe(&self, session: &SessionId) -> Result<(), BrokerError> {
        let Some(lock) = self.subs.get(session).map(|l| l.clone()) else {
            return Ok(());
        };
        let mut count = lock.lock().await;
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.seqs.remove(session);
            let (_, _, channel) = self.keys(session);
            let unsubscribed = if self.sharded {
                self.subscriber.sunsubscribe(channel).await
            } else {
                self.subscriber.unsubscribe(channel).await
            };
            self.forget_if_unused(session, &lock);
            unsubscribed.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let _: String = self.client.ping(None).await.map_err(unavailable)?;
        if !self.subscriber.is_connected() {
            return Err(BrokerError::Other("the pub/sub connection is down".into()));
        }
        Ok(())
    }

    async fn delete(&self, session: &SessionId) -> Result<(), BrokerError> {
        let (meta, events, _) = self.keys(session);
        let _: i64 = self
            .client
            .del(vec![meta, events])
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
