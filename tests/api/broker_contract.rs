//! The `Broker` contract, written once. `memory` runs it against `MemoryBroker`; the Redis
//! broker gets the same module with its own factory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use proto_events::Envelope;
use serde_json::json;
use switchboard::broker::{Broker, Frame, LiveSink, Publish};
use switchboard::domain::SessionId;

/// Records what reaches the sink.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<(SessionId, Frame)>>, Mutex<Vec<SessionId>>);

impl LiveSink for Recorder {
    fn deliver(&self, session: &SessionId, frame: Frame) {
        self.0.lock().unwrap().push((session.clone(), frame));
    }

    fn history_reset(&self, session: &SessionId) {
        self.1.lock().unwrap().push(session.clone());
    }
}

impl Recorder {
    fn seqs(&self, s: &SessionId) -> Vec<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(x, _)| x == s)
            .map(|(_, f)| f.seq)
            .collect()
    }
}

/// Whatever must live as long as the broker (a Redis server).
pub type Guard = Box<dyn std::any::Any + Send>;

/// Builds a broker under test.
#[async_trait]
pub trait Factory: Sync {
    /// A fresh broker delivering to a fresh recorder, and a guard that keeps its backend
    /// alive until the test ends.
    async fn make(
        &self,
        history_size: usize,
        history_ttl: Duration,
    ) -> (Arc<dyn Broker>, Arc<Recorder>, Guard);
}

fn sid(name: &str) -> SessionId {
    format!("{name}{}", uuid::Uuid::new_v4().simple())
        .parse()
        .unwrap()
}

fn event(n: u64, key: Option<&str>) -> Publish {
    Publish {
        kind: "x.test".parse().unwrap(),
        data: json!({"n": n}),
        idempotency_key: key.map(str::to_owned),
        trace_id: None,
    }
}

async fn wait_for(rec: &Recorder, s: &SessionId, n: usize) -> Vec<u64> {
    let enough =
        crate::support::eventually("the sink got the events", Duration::from_secs(2), || {
            let seqs = rec.seqs(s);
            async move { (seqs.len() >= n).then_some(()) }
        });
    // Callers assert on what arrived, so a shortfall shows as their assertion.
    let _ = tokio::time::timeout(Duration::from_secs(3), enough).await;
    rec.seqs(s)
}

pub async fn concurrent_publishes_are_ordered_without_gaps(f: &dyn Factory) {
    let (b, rec, _guard) = f.make(1000, Duration::from_secs(60)).await;
    let s = sid("order");
    let top = b.open(&s).await.unwrap();
    assert_eq!(top.seq, 0);
    b.subscribe(&s).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let b = b.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(b.publish(&s, event(t * 100 + i, None)).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=400).collect::<Vec<_>>(),
        "every seq once, no gaps"
    );
    let delivered = wait_for(&rec, &s, 400).await;
    assert_eq!(
        delivered,
        (1..=400).collect::<Vec<_>>(),
        "live delivery in seq order"
    );
    let h = b.history(&s, 0).await.unwrap().unwrap();
    assert!(h.complete);
    assert_eq!(h.top.seq, 400);
    let seqs: Vec<u64> = h.events.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
}

pub async fn envelopes_carry_the_documented_fields(f: &dyn Factory) {
    let (b, _, _guard) = f.make(10, Duration::from_secs(60)).await;
    let s = sid("env");
    let top = b.open(&s).await.unwrap();
    let p = b.publish(&s, event(7, None)).await.unwrap();
    assert_eq!(
        (p.seq, p.epoch.as_str(), p.duplicate),
        (1, top.epoch.as_str(), false)
    );
    let h = b.history(&s, 0).await.unwrap().unwrap();
    let env: Envelope = serde_json::from_str(h.events[0].text()).unwrap();
    assert_eq!(env.kind.as_str(), "x.test");
    assert_eq!(env.session_id, s.as_str());
    assert_eq!((env.seq, env.epoch.as_str()), (1, top.epoch.as_str()));
    assert_eq!(env.id, p.id);
    assert_eq!(env.id.get_version_num(), 7);
    assert_eq!(env.data, json!({"n": 7}));
    assert!(env.ts.ends_with('Z'));
}

pub async fn idempotency_keys_publish_once(f: &dyn Factory) {
    let (b, rec, _guard) = f.make(10, Duration::from_secs(60)).await;
    let s = sid("idem");
    b.subscribe(&s).await.unwrap();
    let first = b.publish(&s, event(1, Some("k1"))).await.unwrap();
    let again = b.publish(&s, event(2, Some("k1"))).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.seq, again.id, again.epoch.clone()),
        (first.seq, first.id, first.epoch.clone())
    );
    let other = b.publish(&s, event(3, Some("k2"))).await.unwrap();
    assert_eq!(other.seq, 2);
    let h = b.history(&s, 0).await.unwrap().unwrap();
    assert_eq!(h.events.len(), 2);
    assert_eq!(
        wait_for(&rec, &s, 2).await,
        [1, 2],
        "the duplicate was not delivered"
    );
    // The same key on another session is independent.
    let s2 = sid("idem2");
    assert!(
        !b.publish(&s2, event(1, Some("k1")))
            .await
            .unwrap()
            .duplicate
    );
}

pub async fn history_is_bounded_and_reports_completeness(f: &dyn Factory) {
    let (b, _, _guard) = f.make(10, Duration::from_secs(60)).await;
    let s = sid("bound");
    for i in 0..25 {
        b.publish(&s, event(i, None)).await.unwrap();
    }
    let h = b.history(&s, 0).await.unwrap().unwrap();
    let seqs: Vec<u64> = h.events.iter().map(|f| f.seq).collect();
    assert!(!h.complete, "events 1..=15 were trimmed");
    assert!(seqs.len() >= 10 && *seqs.last().unwrap() == 25, "{seqs:?}");
    let windows = [
        (15u64, 10usize, true),
        (20, 5, true),
        (25, 0, true),
        (30, 0, false),
    ];
    for (after, n, complete) in windows {
        let h = b.history(&s, after).await.unwrap().unwrap();
        assert_eq!((h.events.len(), h.complete), (n, complete), "after {after}");
        assert!(h.events.iter().all(|f| f.seq > after));
    }
}

pub async fn open_top_and_missing_sessions(f: &dyn Factory) {
    let (b, _, _guard) = f.make(10, Duration::from_secs(60)).await;
    let s = sid("open");
    assert!(b.top(&s).await.unwrap().is_none());
    assert!(b.history(&s, 0).await.unwrap().is_none());
    let t1 = b.open(&s).await.unwrap();
    assert_eq!(b.open(&s).await.unwrap(), t1, "open is idempotent");
    b.publish(&s, event(1, None)).await.unwrap();
    let t2 = b.top(&s).await.unwrap().unwrap();
    assert_eq!((t2.epoch, t2.seq), (t1.epoch.clone(), 1));
    let other = b.open(&sid("other")).await.unwrap();
    assert_ne!(other.epoch, t1.epoch, "epochs are unique");
    b.ping().await.unwrap();
}

pub async fn sessions_are_isolated(f: &dyn Factory) {
    let (b, rec, _guard) = f.make(10, Duration::from_secs(60)).await;
    let (a, c) = (sid("a"), sid("c"));
    b.subscribe(&a).await.unwrap();
    b.subscribe(&c).await.unwrap();
    for i in 0..3 {
        b.publish(&a, event(i, None)).await.unwrap();
    }
    b.publish(&c, event(9, None)).await.unwrap();
    assert_eq!(b.history(&c, 0).await.unwrap().unwrap().events.len(), 1);
    assert_eq!(wait_for(&rec, &a, 3).await, [1, 2, 3]);
    assert_eq!(wait_for(&rec, &c, 1).await, [1]);
}

pub async fn an_expired_history_comes_back_with_a_new_epoch(f: &dyn Factory) {
    let (b, rec, _guard) = f.make(10, Duration::from_millis(1000)).await;
    let s = sid("ttl");
    let t1 = b.open(&s).await.unwrap();
    b.publish(&s, event(1, None)).await.unwrap();
    b.subscribe(&s).await.unwrap();
    let resets_before = rec.1.lock().unwrap().iter().filter(|x| **x == s).count();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(b.history(&s, 0).await.unwrap().is_none(), "history expired");
    let t2 = b.open(&s).await.unwrap();
    assert_ne!(t2.epoch, t1.epoch);
    assert_eq!(t2.seq, 0);
    // Through Redis the reset notice arrives by pub/sub, so give it a moment.
    crate::support::eventually(
        "the sink is told the history was reset",
        Duration::from_secs(2),
        || {
            let resets = rec.1.lock().unwrap().iter().filter(|x| **x == s).count();
            async move { (resets > resets_before).then_some(()) }
        },
    )
    .await;
}

/// A history lives its full TTL after the session's last event, however busy the session
/// was before (Redis refreshes the TTLs once per window, not on every publish), and then
/// expires.
pub async fn a_busy_history_lives_its_ttl_after_the_last_event(f: &dyn Factory) {
    let (b, _rec, _guard) = f.make(100, Duration::from_millis(1000)).await;
    let s = sid("busy");
    b.open(&s).await.unwrap();
    for n in 0..20 {
        b.publish(&s, event(n, None)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let last = tokio::time::Instant::now();
    tokio::time::sleep_until(last + Duration::from_millis(900)).await;
    let h = b.history(&s, 0).await.unwrap();
    assert_eq!(
        h.and_then(|h| h.events.last().map(|f| f.seq)),
        Some(20),
        "the last event is still there 0.9 s after it was published (TTL 1 s)"
    );
    tokio::time::sleep_until(last + Duration::from_millis(1500)).await;
    let h = b.history(&s, 0).await.unwrap();
    assert!(
        h.is_none_or(|h| h.events.is_empty()),
        "the events expired soon after their TTL"
    );
}

pub async fn concurrent_publishes_to_many_sessions_keep_each_order(f: &dyn Factory) {
    let (b, rec, _guard) = f.make(100, Duration::from_secs(60)).await;
    let sessions: Vec<SessionId> = (0..20).map(|_| sid("many")).collect();
    for s in &sessions {
        b.subscribe(s).await.unwrap();
    }
    // 400 publishes in flight at once, 20 per session; one in each session is idempotent
    // and sent five times.
    let mut tasks = Vec::new();
    for round in 0..20u64 {
        for s in &sessions {
            let (b, s) = (b.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                let key = (round == 7).then_some("once");
                let copies = if key.is_some() { 5 } else { 1 };
                let mut out = Vec::new();
                let sends = (0..copies).map(|_| b.publish(&s, event(round, key)));
                for p in futures_util::future::join_all(sends).await {
                    out.push((s.clone(), p.unwrap()));
                }
                out
            }));
        }
    }
    let mut by_session: std::collections::HashMap<SessionId, Vec<_>> = Default::default();
    for t in tasks {
        for (s, p) in t.await.unwrap() {
            by_session.entry(s).or_default().push(p);
        }
    }
    for s in &sessions {
        let published = &by_session[s];
        let fresh: Vec<u64> = {
            let mut v: Vec<u64> = published
                .iter()
                .filter(|p| !p.duplicate)
                .map(|p| p.seq)
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(
            fresh,
            (1..=20).collect::<Vec<_>>(),
            "each seq once per session"
        );
        let dups: Vec<_> = published.iter().filter(|p| p.duplicate).collect();
        assert_eq!(
            dups.len(),
            4,
            "the idempotent publish ran once, four duplicates"
        );
        let original = published
            .iter()
            .find(|p| !p.duplicate && dups.iter().any(|d| d.id == p.id))
            .expect("the duplicates answer with the original's id");
        assert!(dups.iter().all(|d| d.seq == original.seq));
        assert_eq!(
            wait_for(&rec, s, 20).await,
            (1..=20).collect::<Vec<_>>(),
            "live delivery in seq order, duplicates not delivered"
        );
        let h = b.history(s, 0).await.unwrap().unwrap();
        assert!(h.complete);
        assert_eq!(h.events.len(), 20);
    }
}

/// Generates the contract's tests for a factory expression.
#[macro_export]
macro_rules! broker_contract_tests {
    ($factory:expr) => {
        use $crate::broker_contract as c;
        #[tokio::test]
        async fn a_busy_history_lives_its_ttl_after_the_last_event() {
            c::a_busy_history_lives_its_ttl_after_the_last_event(&$factory).await
        }
        #[tokio::test]
        async fn concurrent_publishes_to_many_sessions_keep_each_order() {
            c::concurrent_publishes_to_many_sessions_keep_each_order(&$factory).await
        }
        #[tokio::test]
        async fn concurrent_publishes_are_ordered_without_gaps() {
            c::concurrent_publishes_are_ordered_without_gaps(&$factory).await
        }
        #[tokio::test]
        async fn envelopes_carry_the_documented_fields() {
            c::envelopes_carry_the_documented_fields(&$factory).await
        }
        #[tokio::test]
        async fn idempotency_keys_publish_once() {
            c::idempotency_keys_publish_once(&$factory).await
        }
        #[tokio::test]
        async fn history_is_bounded_and_reports_completeness() {
            c::history_is_bounded_and_reports_completeness(&$factory).await
        }
        #[tokio::test]
        async fn open_top_and_missing_sessions() {
            c::open_top_and_missing_sessions(&$factory).await
        }
        #[tokio::test]
        async fn sessions_are_isolated() {
            c::sessions_are_isolated(&$factory).await
        }
        #[tokio::test]
        async fn an_expired_history_comes_back_with_a_new_epoch() {
            c::an_expired_history_comes_back_with_a_new_epoch(&$factory).await
        }
    };
}

/// The contract against `MemoryBroker`.
pub mod memory {
    use super::*;
    use switchboard::broker::memory::MemoryBroker;

    pub struct MemoryFactory;

    #[async_trait]
    impl Factory for MemoryFactory {
        async fn make(
            &self,
            size: usize,
            ttl: Duration,
        ) -> (Arc<dyn Broker>, Arc<Recorder>, Guard) {
            let rec = Arc::new(Recorder::default());
            (MemoryBroker::new(rec.clone(), size, ttl), rec, Box::new(()))
        }
    }

    crate::broker_contract_tests!(MemoryFactory);
}

/// The contract against `RedisBroker`, each test on its own private redis-server.
pub mod redis {
    use super::*;
    use crate::support::redis::{RedisServer, unique_prefix};
    use switchboard::broker::redis::{RedisBroker, RedisClients};

    /// Starts a private server per broker; the guard stops it when the test ends.
    pub struct RedisFactory;

    #[async_trait]
    impl Factory for RedisFactory {
        async fn make(
            &self,
            size: usize,
            ttl: Duration,
        ) -> (Arc<dyn Broker>, Arc<Recorder>, Guard) {
            let server = RedisServer::start(false).await;
            let clients = RedisClients::connect(&server.url()).await.unwrap();
            let rec = Arc::new(Recorder::default());
            let broker = RedisBroker::new(&clients, &unique_prefix(), rec.clone(), size, ttl);
            (broker, rec, Box::new(server))
        }
    }

    crate::broker_contract_tests!(RedisFactory);

    /// Publishes in flight together share Redis calls (group commit), and an event that
    /// fails in its batch fails alone.
    #[tokio::test]
    async fn publishes_in_flight_share_calls_and_a_failing_one_fails_alone() {
        use fred::prelude::KeysInterface;
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let rec = Arc::new(Recorder::default());
        let prefix = unique_prefix();
        let broker = RedisBroker::new(&clients, &prefix, rec, 100, Duration::from_secs(60));
        let bad = sid("bad");
        // A meta key of the wrong type: the script's HGET on it raises WRONGTYPE.
        let _: () = clients
            .client
            .set(
                format!("{prefix}:{{{bad}}}:meta"),
                "not a hash",
                None,
                None,
                false,
            )
            .await
            .unwrap();
        let good: Vec<SessionId> = (0..50).map(|_| sid("good")).collect();
        let mut sends = Vec::new();
        for (i, s) in good.iter().enumerate() {
            if i == 25 {
                sends.push((true, broker.publish(&bad, event(0, None))));
            }
            sends.push((false, broker.publish(s, event(i as u64, None))));
        }
        let (which, futs): (Vec<bool>, Vec<_>) = sends.into_iter().unzip();
        let results = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all(futs),
        )
        .await
        .expect("every publish of the burst is answered");
        for (is_bad, r) in which.iter().zip(&results) {
            if *is_bad {
                let e = r
                    .as_ref()
                    .expect_err("the wrong-type key fails its publish");
                assert!(e.to_string().contains("WRONGTYPE"), "{e}");
            } else {
                assert_eq!(r.as_ref().expect("the others still publish").seq, 1);
            }
        }
        let calls = broker
            .publish_calls()
            .expect("group commit is on by default");
        assert!(
            calls < 51 / 2,
            "51 publishes in flight took {calls} Redis calls"
        );
        for s in &good {
            assert_eq!(broker.history(s, 0).await.unwrap().unwrap().events.len(), 1);
        }
        // After the burst, a publish that finds nothing under way makes one call of its own
        // and is answered at once (the call slot and the queue were left clean).
        for (i, s) in good.iter().skip(1).take(3).enumerate() {
            let before = broker.publish_calls().unwrap();
            let p =
                tokio::time::timeout(Duration::from_secs(5), broker.publish(s, event(100, None)))
                    .await
                    .unwrap_or_else(|_| panic!("publish {i} after the burst hung"))
                    .unwrap();
            assert_eq!(p.seq, 2);
            assert_eq!(broker.publish_calls().unwrap(), before + 1);
        }
        // With batching off, each publish is its own call and behaves the same.
        let mut single = RedisClients::connect(&server.url()).await.unwrap();
        single.publish_batch = 1;
        let one = RedisBroker::new(
            &single,
            &prefix,
            Arc::new(Recorder::default()),
            100,
            Duration::from_secs(60),
        );
        assert!(one.publish_calls().is_none());
        assert_eq!(one.publish(&good[0], event(9, None)).await.unwrap().seq, 2);
        assert!(one.publish(&bad, event(9, None)).await.is_err());
    }

    /// An event that reached the history but whose pub/sub message was lost is delivered
    /// by the position check, for every held session (more than one chunk of reads).
    #[tokio::test]
    async fn the_position_check_delivers_what_pub_sub_lost_for_every_held_session() {
        use fred::prelude::{HashesInterface, StreamsInterface};
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let rec = Arc::new(Recorder::default());
        let prefix = unique_prefix();
        let broker = RedisBroker::new(&clients, &prefix, rec.clone(), 100, Duration::from_secs(60));
        let sessions: Vec<SessionId> = (0..150).map(|_| sid("quiet")).collect();
        for s in &sessions {
            broker.subscribe(s).await.unwrap();
            assert_eq!(broker.publish(s, event(1, None)).await.unwrap().seq, 1);
        }
        crate::support::eventually("the first events", Duration::from_secs(5), || async {
            sessions.iter().all(|s| rec.seqs(s) == [1]).then_some(())
        })
        .await;
        // Seq 2 of each session: in the history, but its message never sent.
        for s in &sessions {
            let meta = format!("{prefix}:{{{s}}}:meta");
            let epoch: String = clients.client.hget(&meta, "epoch").await.unwrap();
            let seq: u64 = clients.client.hincrby(&meta, "seq", 1).await.unwrap();
            let env = format!(
                r#"{{"type":"x.lost","session_id":"{s}","seq":{seq},"epoch":"{epoch}","data":{{}}}}"#
            );
            let _: String = clients
                .client
                .xadd(
                    format!("{prefix}:{{{s}}}:events"),
                    false,
                    None,
                    format!("{seq}-0"),
                    vec![("e", env)],
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            sessions.iter().all(|s| rec.seqs(s) == [1]),
            "nothing announces a lost message"
        );
        broker.check_positions().await;
        crate::support::eventually("every lost event", Duration::from_secs(5), || async {
            sessions.iter().all(|s| rec.seqs(s) == [1, 2]).then_some(())
        })
        .await;
    }

    /// Memory follows the sessions held, not the sessions ever served.
    #[tokio::test]
    async fn subscription_entries_go_back_to_zero_when_sessions_leave() {
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let rec = Arc::new(Recorder::default());
        let broker = RedisBroker::new(
            &clients,
            &unique_prefix(),
            rec,
            100,
            Duration::from_secs(60),
        );
        for i in 0..40 {
            let sid: SessionId = format!("leaving{i}").parse().unwrap();
            broker.subscribe(&sid).await.unwrap();
            broker.subscribe(&sid).await.unwrap();
            broker.unsubscribe(&sid).await.unwrap();
            assert_eq!(broker.subscription_entries(), 1, "still held once");
            broker.unsubscribe(&sid).await.unwrap();
        }
        assert_eq!(broker.subscription_entries(), 0);
        // A session that comes back is delivered to again.
        let sid: SessionId = "leaving0".parse().unwrap();
        broker.subscribe(&sid).await.unwrap();
        assert_eq!(broker.subscription_entries(), 1);
    }
}
