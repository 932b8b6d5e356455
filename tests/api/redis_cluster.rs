//! Redis Cluster mode against a real local cluster (three primaries with replicas):
//! cross-instance delivery over sharded pub/sub, recovery from the streams, agent memory and
//! revocation with hash-tagged keys, and a primary killed while events are published (its
//! replica takes over) without losing an acknowledged event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::redis_faults::publish_until;
use crate::sdk_sessions::{call, create, say};
use crate::support::channel::*;
use crate::support::cluster::RedisCluster;
use crate::support::model::fake_model;
use crate::support::redis::{spawn_instance_process_at, unique_prefix};
use crate::support::*;

/// An in-process instance on the cluster (with a fake model when given one).
async fn cluster_app(
    cluster: &RedisCluster,
    prefix: &str,
    model: Option<&wiremock::MockServer>,
    min_replicas: u32,
) -> TestApp {
    let (url, prefix) = (cluster.url(), prefix.to_owned());
    let adjust = move |c: &mut switchboard::config::Config| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
        c.session_secret = Some(SESSION_SECRET.to_owned().into());
        c.position_check = Duration::from_millis(500);
        c.access.allow_anonymous = Some(true);
        c.ops.redis_min_replicas = min_replicas;
    };
    match model {
        Some(m) => spawn_online(m, adjust).await,
        None => spawn_app_with(adjust).await,
    }
}

/// Opens a socket on the instance listening on `port`, retrying while it starts.
async fn connect_at(port: u16, s: &Sess, resume: Option<u64>) -> (Ws, Value) {
    let mut url = format!(
        "ws://127.0.0.1:{port}/api/ws?session_id={}&token={}",
        s.id, s.token
    );
    if let Some(since) = resume {
        url.push_str(&format!("&since={since}&epoch={}", s.epoch));
    }
    let what = format!("instance on {port} comes up");
    let mut ws = eventually(&what, Duration::from_secs(10), || async {
        tokio_tungstenite::connect_async(&url)
            .await
            .ok()
            .map(|(ws, _)| ws)
    })
    .await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

#[tokio::test]
async fn events_cross_instances_recover_and_memory_works_on_a_cluster() {
    let cluster = RedisCluster::start(1).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    let a = cluster_app(&cluster, &prefix, Some(&model), 0).await;
    let (_b, b_port) = spawn_instance_process_at(&cluster.url(), &prefix, &[]);

    // Enough sessions that every primary serves some of them.
    let mut sessions = Vec::new();
    for _ in 0..24 {
        sessions.push(a.new_session().await);
    }
    let primaries: BTreeSet<u16> = sessions
        .iter()
        .map(|s| cluster.primary_of(&format!("{{{}}}", s.id)))
        .collect();
    assert_eq!(
        primaries.len(),
        3,
        "sessions spread over the three primaries"
    );

    let mut sockets = Vec::new();
    for s in &sessions {
        sockets.push(connect_at(b_port, s, None).await.0);
    }
    // Live delivery rides sharded pub/sub: the channel is subscribed at its slot's primary.
    let channel = format!("{prefix}:{{{}}}", sessions[0].id);
    let owner = cluster.primary_of(&channel).to_string();
    let shard_subs =
        crate::support::cluster::cli(&["-p", &owner, "pubsub", "shardnumsub", &channel]);
    assert_eq!(
        shard_subs.lines().nth(1).map(str::trim),
        Some("1"),
        "{shard_subs}"
    );
    for round in 0..5 {
        for s in &sessions {
            a.publish(&s.id, "x.n", json!({"round": round})).await;
        }
    }
    for ws in &mut sockets {
        for seq in 1..=5 {
            let ev = next_json(ws).await;
            assert_eq!(
                (ev["seq"].as_u64(), &ev["data"]["round"]),
                (Some(seq), &json!(seq - 1))
            );
        }
    }

    // Recovery: a socket that was away gets what it missed, in order, from the stream.
    let s = &sessions[0];
    drop(sockets.remove(0));
    for _ in 0..3 {
        a.publish(&s.id, "x.n", json!({})).await;
    }
    let (mut back, welcome) = connect_at(b_port, s, Some(5)).await;
    assert_eq!(
        (welcome["recovered"].as_bool(), welcome["replayed"].as_u64()),
        (Some(true), Some(3))
    );
    for seq in 6..=8 {
        assert_eq!(next_json(&mut back).await["seq"], seq);
    }

    // Agent memory: its scripts touch several keys of one (hash-tagged) session.
    let agent = create(&a, json!({"session_id": "conv-7", "instructions": "x"})).await;
    say(&a, &agent, "hello").await;
    let answer = say(&a, &agent, "again").await;
    assert!(
        answer.to_string().contains("reply 2"),
        "memory kept: {answer}"
    );
    let (st, t) = call(
        &a,
        "GET",
        "/api/sdk/session/transcript?session_id=conv-7",
        Some(&agent.token),
        json!(null),
    )
    .await;
    assert_eq!((st, t["length"].as_u64()), (200, Some(4)), "{t}");

    // Revocation closes the session's sockets on the other instance.
    let victim = &sessions[1];
    let resp = a
        .client
        .delete(a.url(&format!("/api/sessions/{}", victim.id)))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(close_code(&mut sockets[0]).await, Some(4009));
}

/// Every seq a socket of `s` on `port` receives until it holds all of `acked`, reconnecting
/// (with `since`) whenever the socket closes, the way a browser client does.
async fn receive_all(port: u16, s: &Sess, acked: &[u64]) -> Vec<u64> {
    let want = acked.iter().copied().max().unwrap_or(0);
    let mut got: Vec<u64> = Vec::new();
    let (mut ws, _) = connect_at(port, s, Some(0)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.last().copied().unwrap_or(0) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} stuck at {:?} of {want}",
            s.id,
            got.last()
        );
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let ev: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some(seq) = ev["seq"].as_u64() {
                    got.push(seq);
                }
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            _ => {
                let since = got.last().copied().unwrap_or(0);
                ws = connect_at(port, s, Some(since)).await.0;
            }
        }
    }
    got
}

#[tokio::test]
async fn a_primary_killed_mid_traffic_loses_no_acknowledged_event() {
    // Two replicas per primary: after a failover the new primary still has one, so
    // `WAIT 1` keeps succeeding without bringing the dead node back.
    let mut cluster = RedisCluster::start(2).await;
    let prefix = unique_prefix();
    let a = Arc::new(cluster_app(&cluster, &prefix, None, 1).await);
    let (_b, b_port) = spawn_instance_process_at(
        &cluster.url(),
        &prefix,
        &[
            ("SWITCHBOARD_REDIS_MIN_REPLICAS", "1".to_owned()),
            // Live delivery must resume by re-subscribing at the new primary, not wait for
            // the periodic position check to notice the gap.
            ("SWITCHBOARD_POSITION_CHECK", "60s".to_owned()),
        ],
    );
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(a.new_session().await);
    }
    let doomed = cluster.primary_of(&format!("{{{}}}", sessions[0].id));
    // Sockets on the other instance, open before the fault.
    let mut early = Vec::new();
    for s in &sessions {
        early.push(connect_at(b_port, s, None).await.0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = sessions
        .iter()
        .map(|s| publish_until(a.clone(), s.id.clone(), stop.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.kill(doomed);
    // A replica takes over and the other one follows it.
    let key = format!("{{{}}}", sessions[0].id);
    cluster
        .wait_failover(&key, doomed, Duration::from_secs(30))
        .await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for p in publishers {
        acked.push(p.await.unwrap().0);
    }
    // The failed-over shard takes publishes again (its new primary has a replica for WAIT).
    let after = a.publish(&sessions[0].id, "x.n", json!({})).await;
    acked[0].push(after["seq"].as_u64().unwrap());
    // The sockets that lived through the failover get every acknowledged event, in order.
    for (i, (s, ws)) in sessions.iter().zip(early.iter_mut()).enumerate() {
        let want = *acked[i].iter().max().unwrap();
        let mut got = Vec::new();
        while got.last().copied().unwrap_or(0) < want {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let ev: Value = serde_json::from_str(t.as_str()).unwrap();
                    if let Some(seq) = ev["seq"].as_u64() {
                        got.push(seq);
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("session {i}: socket ended ({other:?}) after {got:?}"),
            }
        }
        let missing: Vec<_> = acked[i].iter().filter(|q| !got.contains(q)).collect();
        assert!(
            missing.is_empty(),
            "session {i} live socket missed {missing:?}"
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        // And a fresh reader replays the whole history from the new primary.
        let all = receive_all(b_port, s, &acked[i]).await;
        let missing: Vec<_> = acked[i].iter().filter(|q| !all.contains(q)).collect();
        assert!(missing.is_empty(), "session {i} history lost {missing:?}");
    }
}
