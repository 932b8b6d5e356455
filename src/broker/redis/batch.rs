//! Group commit for publishes on a single Redis server: the publishes that are waiting when
//! a Redis call can start share one script call (`lua/publish_batch.lua`), each answered
//! with its own outcome.
//!
//! At most [`IN_FLIGHT`] batch call runs at once. A publish that finds the slot free and
//! nobody queued makes the call at once, alone, from its own task (no added wait and no
//! hand-off at low load); under load the publishes that arrive while a call is under way
//! queue up and the sending task takes them together in the next call, up to the batch limit
//! (`SWITCHBOARD_REDIS_PUBLISH_BATCH`). One call then carries many events: Redis parses
//! one command and enters the script once, and the instance writes and reads one frame.
//!
//! Each event runs its own steps in the script, in the order the publishes were queued,
//! and its own failure (a key of the wrong type, Redis out of memory) is its own: the
//! script catches it and the rest of the batch still runs. A failure of the call itself
//! (Redis down, the command timed out) fails every publish of the batch, as it would fail
//! each of their single calls; the publishers retry with their idempotency keys.
//!
//! On a Redis Cluster every publish keeps its own call (`lua/publish.lua`, keys declared):
//! a script there may only touch one slot's keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::super::BrokerError;

/// Batch calls that may be under way at once. One: Redis runs scripts one at a time anyway,
/// and the publishes that wait for the call leave together in the next, so the calls grow
/// with the load. (With two, batches stayed at 3 to 4 events at 64 publishes in flight and
/// the instances and Redis spent about 4 % more CPU per event: BENCHMARKS.md, issue 21.)
/// The sending task makes one call at a time; with more slots, the others would only go to
/// publishes that find nothing queued and call on their own.
pub(super) const IN_FLIGHT: usize = 1;

const BATCH_LUA: &str = concat!(
    include_str!("../lua/epoch.lua"),
    include_str!("../lua/append.lua"),
    include_str!("../lua/publish_batch.lua")
);

/// One publish, ready for the script.
pub(super) struct Job {
    /// `<prefix>:{S}`: the session's channel and the stem of its keys.
    pub tag: String,
    /// History TTL (ms), slack included.
    pub ttl: u64,
    /// Session state TTL (ms) to check (and slide when refreshing); 0: no check.
    pub state_ttl: u64,
    /// Slide the TTLs.
    pub refresh: bool,
    /// Idempotency key.
    pub idem: Option<String>,
    /// The envelope up to its seq, and after its epoch.
    pub head: Bytes,
    pub tail: Bytes,
    pub id: uuid::Uuid,
}

/// What the script did with one publish.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Published: `<seq> <epoch> <id>`.
    Fresh(String),
    /// An earlier publish with the same idempotency key: its `<seq> <epoch> <id>`.
    Duplicate(String),
    /// The session is not live; nothing was published.
    NotLive,
}

type Reply = oneshot::Sender<Result<Outcome, BrokerError>>;

/// Shared by everything a batch call needs.
struct Shared {
    client: Client,
    script: Script,
    max: usize,
    /// `MAXLEN ~` of a history, the idempotency TTL (ms), `PUBLISH`.
    maxlen: String,
    idem_ms: String,
    publish: &'static str,
    batches: AtomicU64,
    /// The call slots ([`IN_FLIGHT`]).
    slots: Semaphore,
    /// Publishes in the queue, not yet taken into a batch.
    queued: AtomicUsize,
}

/// The queue of publishes and the task that sends them.
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<(Job, Reply)>,
    shared: Arc<Shared>,
}

impl Batcher {
    /// Starts the sending task; it ends when the batcher is dropped.
    pub(super) fn start(
        client: Client,
        max: usize,
        history_size: usize,
        idem_ms: u64,
        publish: &'static str,
    ) -> Self {
        let shared = Arc::new(Shared {
            client,
            script: Script::from_lua(BATCH_LUA),
            max: max.max(1),
            maxlen: history_size.to_string(),
            idem_ms: idem_ms.to_string(),
            publish,
            batches: AtomicU64::new(0),
            slots: Semaphore::new(IN_FLIGHT),
            queued: AtomicUsize::new(0),
        });
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(rx, shared.clone()));
        Self { queue, shared }
    }

    /// Sends `job` and waits for its outcome.
    ///
    /// When no call is under way and nothing is queued, the publish makes its call itself,
    /// alone, from the caller's task: at low load a publish then wakes no other task of
    /// ours on its way to Redis and back. Otherwise it joins the queue and leaves with the
    /// next batch.
    pub(super) async fn run(&self, job: Job) -> Result<Outcome, BrokerError> {
        if self.shared.queued.load(Ordering::Acquire) == 0
            && let Ok(slot) = self.shared.slots.try_acquire()
        {
            let outcome = call(&self.shared, vec![job]).await.pop();
            drop(slot);
            return outcome.unwrap_or(Err(BrokerError::Protocol("publish batch reply")));
        }
        let (tx, rx) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send((job, tx)).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(BrokerError::Other("the publish queue is closed".into()));
        }
        rx.await
            .map_err(|_| BrokerError::Other("the publish batch was dropped".into()))?
    }

    /// Script calls made so far.
    pub(super) fn batches(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }
}

/// Waits for a queued publish and a call slot, then sends everything queued by then (up to
/// the limit) in one call.
async fn collect(mut rx: mpsc::UnboundedReceiver<(Job, Reply)>, shared: Arc<Shared>) {
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let Ok(slot) = shared.slots.acquire().await else {
            return;
        };
        let mut batch = Vec::with_capacity(shared.max.min(64));
        batch.push(first);
        while batch.len() < shared.max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        let outcomes = call(&shared, jobs).await;
        drop(slot);
        for (outcome, reply) in outcomes.into_iter().zip(replies) {
            let _ = reply.send(outcome);
        }
    }
}

/// One script call for `jobs`: an outcome for each, in order.
async fn call(shared: &Shared, jobs: Vec<Job>) -> Vec<Result<Outcome, BrokerError>> {
    let n = jobs.len();
    shared.batches.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("switchboard_redis_publish_batches_total").increment(1);
    let mut args: Vec<Value> = Vec::with_capacity(5 + 8 * n);
    args.push(Value::Integer(n as i64));
    args.push(shared.maxlen.as_str().into());
    args.push(shared.idem_ms.as_str().into());
    args.push(shared.publish.into());
    args.push(super::super::new_epoch()[..14].into());
    for job in jobs {
        args.push(job.tag.into());
        args.push(Value::Integer(job.ttl as i64));
        args.push(Value::Integer(job.state_ttl as i64));
        args.push(if job.refresh { "1" } else { "0" }.into());
        args.push(job.idem.unwrap_or_default().into());
        args.push(Value::Bytes(job.head));
        args.push(Value::Bytes(job.tail));
        args.push(job.id.to_string().into());
    }
    let result: Result<Vec<Value>, Error> = shared
        .script
        .evalsha_with_reload(&shared.client, Vec::<String>::new(), args)
        .await;
    match result {
        Ok(v) if v.len() == 2 * n => v
            .chunks_exact(2)
            .map(|pair| outcome(&pair[0], &pair[1]))
            .collect(),
        Ok(_) => (0..n)
            .map(|_| Err(BrokerError::Protocol("publish batch reply")))
            .collect(),
        Err(e) => {
            metrics::counter!("switchboard_redis_errors_total", "op" => "broker").increment(1);
            (0..n).map(|_| Err(BrokerError::Redis(e.clone()))).collect()
        }
    }
}

/// One event's pair of the script's reply.
fn outcome(flag: &Value, result: &Value) -> Result<Outcome, BrokerError> {
    let flag = flag
        .as_i64()
        .or_else(|| flag.as_string().and_then(|s| s.parse().ok()));
    let text = || result.as_string().unwrap_or_default();
    match flag {
        Some(1) => Ok(Outcome::Fresh(text())),
        Some(0) => Ok(Outcome::Duplicate(text())),
        Some(-1) => Ok(Outcome::NotLive),
        Some(2) => {
            metrics::counter!("switchboard_redis_errors_total", "op" => "broker").increment(1);
            Err(BrokerError::Other(format!(
                "Redis refused the publish: {}",
                text()
            )))
        }
        _ => Err(BrokerError::Protocol("publish batch reply")),
    }
}
