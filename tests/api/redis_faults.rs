//! Faults in Redis mode, with real processes: Redis killed and restarted (with its data,
//! and empty), an instance process killed, a slow client under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::broker::Publish;

use crate::support::channel::*;
use crate::support::redis::{RedisServer, spawn_instance_process, unique_prefix};
use crate::support::*;

/// Publishes `x.n` events through `app` until `stop`; returns the acknowledged seqs and
/// how many publishes were refused.
pub fn publish_until(
    app: Arc<TestApp>,
    sid: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<u64>, usize)> {
    tokio::spawn(async move {
        let (mut acked, mut refused) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            let r = app
                .client
                .post(app.url(&format!("/api/sessions/{sid}/events")))
                .bearer_auth(API_KEY)
                .json(&json!({"type": "x.n"}))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 202 => {
                    acked.push(r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap())
                }
                Ok(r) => {
                    assert_eq!(r.status(), 503, "only 503 during an outage");
                    assert!(r.headers().contains_key("retry-after"));
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (acked, refused)
    })
}

/// Reads events until `want` (the highest acknowledged seq) and checks they are contiguous
/// from `from`, without duplicates.
async fn read_contiguous(ws: &mut Ws, from: u64, want: u64) {
    let mut next = from;
    while next <= want {
        let ev = next_json(ws).await;
        assert_eq!(
            ev["seq"].as_u64().unwrap(),
            next,
            "exactly once, in order: {ev}"
        );
        next += 1;
    }
}

#[tokio::test]
async fn redis_killed_and_restarted_with_its_data_loses_nothing() {
    let mut redis = RedisServer::start(true).await;
    let prefix = unique_prefix();
    let a = Arc::new(spawn_redis_app(&redis, &prefix, |_| {}).await);
    let b = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let s = a.new_session().await;
    let (mut stays, _) = b.connect(&s, None).await;
    let (mut leaves, _) = b.connect(&s, None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = publish_until(a.clone(), s.id.clone(), stop.clone());
    let first = next_json(&mut leaves).await["seq"].as_u64().unwrap();
    drop(leaves);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    // Longer than the 2 s command timeout, so publishes during it are refused.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    redis.restart(true).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, refused) = publisher.await.unwrap();
    assert!(refused > 0, "publishes during the outage were refused");
    let max = *acked.last().expect("publishes succeeded");
    assert!(acked.windows(2).all(|w| w[0] < w[1]));
    // The socket that stayed connected gets everything, once, in order.
    read_contiguous(&mut stays, 1, max).await;
    // The one that left recovers from where it was.
    let (mut back, w) = b.connect(&s, Some((first, &s.epoch))).await;
    assert_eq!(w["recovered"], true, "{w}");
    read_contiguous(&mut back, first + 1, max).await;
}

#[tokio::test]
async fn redis_restarted_empty_tells_clients_to_resync_and_keeps_tokens_working() {
    let mut redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let b = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let s = a.new_session().await;
    let (mut ws, _) = b.connect(&s, None).await;
    for _ in 0..3 {
        a.publish(&s.id, "x.n", json!({})).await;
    }
    read_contiguous(&mut ws, 1, 3).await;
    redis.restart(false).await;
    assert_eq!(
        close_code(&mut ws).await,
        Some(4013),
        "the connected client is told"
    );
    // The token still opens the session (re-created from its claims, new epoch).
    let (mut ws, w) = b.connect(&s, Some((3, &s.epoch))).await;
    assert_eq!(w["recovered"], false);
    assert_ne!(w["epoch"], s.epoch.as_str());
    assert_eq!(w["seq"], 0);
    let resp = a
        .client
        .get(a.url(&format!("/api/sessions/{}", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let (st, v) = split(resp).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["scenario_id"].as_str(), v["root_agent"].as_str()),
        (Some("simpleHandoff"), Some("greeter"))
    );
    a.publish(&s.id, "x.new", json!({})).await;
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["seq"].as_u64(), ev["epoch"].clone()),
        (Some(1), w["epoch"].clone())
    );
}

#[tokio::test]
async fn clients_of_a_killed_instance_recover_everything_on_another() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let (mut doomed, port) = spawn_instance_process(&redis, &prefix, &[]);
    let s = a.new_session().await;
    let url = format!(
        "ws://127.0.0.1:{port}/api/ws?session_id={}&token={}",
        s.id, s.token
    );
    let mut ws = eventually(
        "the instance process comes up",
        Duration::from_secs(5),
        || async {
            tokio_tungstenite::connect_async(&url)
                .await
                .ok()
                .map(|(w, _)| w)
        },
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    for _ in 0..3 {
        a.publish(&s.id, "x.n", json!({})).await;
    }
    read_contiguous(&mut ws, 1, 3).await;
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    for _ in 0..4 {
        a.publish(&s.id, "x.n", json!({})).await;
    }
    let (mut back, w) = a.connect(&s, Some((3, &s.epoch))).await;
    assert_eq!(
        (w["recovered"].as_bool(), w["replayed"].as_u64()),
        (Some(true), Some(4))
    );
    read_contiguous(&mut back, 4, 7).await;
}

#[tokio::test]
async fn a_slow_client_is_closed_4008_without_slowing_the_fast_one() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let b = spawn_redis_app(&redis, &prefix, |c| c.conn_queue = 16).await;
    let s = a.new_session().await;
    let (mut slow, _) = b.connect(&s, None).await;
    let (mut fast, _) = b.connect(&s, None).await;
    let n = 1000u64;
    let reader = tokio::spawn(async move {
        read_contiguous(&mut fast, 1, n).await;
    });
    let sid = s.id.parse().unwrap();
    let blob = "z".repeat(16 * 1024);
    // About 2000 events/s.
    let mut tick = tokio::time::interval(Duration::from_micros(500));
    for _ in 0..n {
        tick.tick().await;
        a.state
            .broker
            .publish(
                &sid,
                Publish {
                    kind: "x.big".parse().unwrap(),
                    data: json!({"blob": blob}),
                    idempotency_key: None,
                    trace_id: None,
                },
            )
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the fast client kept up")
        .unwrap();
    assert_eq!(close_code(&mut slow).await, Some(4008));
    let (mut again, w) = b.connect(&s, Some((0, &s.epoch))).await;
    assert_eq!(
        (w["recovered"].as_bool(), w["replayed"].as_u64()),
        (Some(true), Some(n))
    );
    read_contiguous(&mut again, 1, n).await;
}
