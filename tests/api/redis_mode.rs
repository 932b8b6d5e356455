//! Redis mode with real processes: several instances on one private Redis.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::channel::*;
use crate::support::redis::{RedisServer, unique_prefix};
use crate::support::*;

#[tokio::test]
async fn an_event_published_on_a_reaches_a_socket_on_b() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let b = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let s = a.new_session().await;
    let (mut ws, w) = b.connect(&s, None).await;
    assert_eq!(w["epoch"], s.epoch.as_str());
    assert_ne!(
        w["instance_id"],
        a.get_json("/api/health").await.1["instance_id"]
    );
    let r = a
        .publish(
            &s.id,
            "agent.switch",
            json!({"from": "greeter", "to": "haikuWriter"}),
        )
        .await;
    assert_eq!(r["seq"], 1);
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["seq"].as_u64()),
        (Some("agent.switch"), Some(1))
    );
    assert_eq!(ev["data"]["to"], "haikuWriter");
}

#[tokio::test]
async fn a_thousand_events_across_fifty_sessions_stay_ordered_and_separate() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let b = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let mut sessions = Vec::new();
    for _ in 0..50 {
        let s = a.new_session().await;
        let (ws, _) = b.connect(&s, None).await;
        sessions.push((s, ws));
    }
    let ids: Vec<String> = sessions.iter().map(|(s, _)| s.id.clone()).collect();
    let mut publishers = Vec::new();
    for chunk in ids.chunks(10) {
        let (client, base, chunk) = (a.client.clone(), a.base.clone(), chunk.to_vec());
        publishers.push(tokio::spawn(async move {
            for i in 0..20 {
                for sid in &chunk {
                    let r = client
                        .post(format!("{base}/api/sessions/{sid}/events"))
                        .bearer_auth(API_KEY)
                        .json(&json!({"type": "x.n", "data": {"sid": sid, "i": i}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    for (s, ws) in sessions.iter_mut() {
        for seq in 1..=20u64 {
            let ev = next_json(ws).await;
            assert_eq!(ev["seq"], seq);
            assert_eq!(ev["session_id"], s.id.as_str());
            assert_eq!(
                ev["data"]["sid"],
                s.id.as_str(),
                "only its own session's events"
            );
        }
    }
}

#[tokio::test]
async fn session_state_written_through_a_is_read_through_b() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let b = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let (st, created) = a
        .post_json(
            "/api/session2",
            &json!({"scenario_id": "retail", "root_agent": "salesAgent", "context": "vip"}),
        )
        .await;
    assert_eq!(st, 200);
    let sid = created["session_id"].as_str().unwrap();
    let resp = b
        .client
        .get(b.url(&format!("/api/sessions/{sid}")))
        .bearer_auth(created["events"]["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (st, v) = split(resp).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["active_agent"], "salesAgent");
    assert_eq!(v["scenario_id"], "customerServiceRetail");
    assert_eq!(v["epoch"], created["events"]["epoch"]);
    let state = b
        .state
        .store
        .get(&sid.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.context.as_deref(), Some("vip"));
}

#[tokio::test]
async fn redis_down_means_503_with_retry_after_and_not_ready_until_it_returns() {
    let mut redis = RedisServer::start(true).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |_| {}).await;
    let s = a.new_session().await;
    a.publish(&s.id, "x.before", json!({})).await;
    redis.kill();
    let resp = a
        .client
        .post(a.url(&format!("/api/sessions/{}/events", s.id)))
        .bearer_auth(API_KEY)
        .json(&json!({"type": "x.during"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let b: Value = resp.json().await.unwrap();
    // DESIGN.md §4: a publish during an outage is `broker_unavailable`, whichever read
    // failed first.
    assert_eq!(b["error"]["code"], "broker_unavailable", "{b}");
    // Readiness is answered at once during the outage (a probe's usual timeout is 1 s).
    eventually(
        "not ready while Redis is down",
        Duration::from_secs(2),
        || async { (a.get_json("/api/ready").await.0 == 503).then_some(()) },
    )
    .await;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let (st, _) = a.get_json("/api/ready").await;
        assert_eq!(st, 503);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "/api/ready took {:?} during the outage",
            started.elapsed()
        );
    }
    redis.restart(true).await;
    // Ready again once Redis answers (the clients reconnect with backoff first).
    eventually(
        "ready again after Redis returned",
        Duration::from_secs(5),
        || async { (a.get_json("/api/ready").await.0 == 200).then_some(()) },
    )
    .await;
    let r = a.publish(&s.id, "x.after", json!({})).await;
    assert_eq!(r["seq"], 2, "nothing half-written during the outage");
}
