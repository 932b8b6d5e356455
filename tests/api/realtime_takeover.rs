//! A call's sideband across instances (Redis mode, real processes): control sent to any
//! instance is applied by the owner; when the owner is killed another instance adopts the
//! call within two lease TTLs, re-attaches, and no function call is answered twice.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::channel::{API_KEY, next_json};
use crate::support::model::fake_model;
use crate::support::realtime::*;
use crate::support::redis::{RedisServer, spawn_instance_process, unique_prefix};
use crate::support::*;

#[tokio::test]
async fn the_owner_applies_control_and_a_killed_owner_is_replaced() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    mount_calls(&model).await;
    let fake = FakeRealtime::start().await;
    let (url, base) = (fake.ws_url.clone(), format!("{}/v1", model.uri()));
    let a = spawn_redis_app(&redis, &prefix, move |c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = base;
        c.realtime.ws_url = url;
        c.realtime.lease_ttl = Duration::from_secs(1);
    })
    .await;
    let (mut owner, port) = spawn_instance_process(
        &redis,
        &prefix,
        &[
            ("OPENAI_API_KEY", UPSTREAM_KEY.into()),
            ("OPENAI_BASE_URL", format!("{}/v1", model.uri())),
            ("SWITCHBOARD_REALTIME_WS_URL", fake.ws_url.clone()),
            ("SWITCHBOARD_CALL_LEASE_TTL", "1s".into()),
        ],
    );
    let s = a.session_for("retail&root_agent=salesAgent").await;
    let (mut ws, _) = a.connect(&s, None).await;
    // The call is created through the other process, which takes the lease.
    let call_url = format!(
        "http://127.0.0.1:{port}/api/realtime/calls?session_id={}",
        s.id
    );
    let mut created = None;
    for _ in 0..100 {
        let r = a
            .client
            .post(&call_url)
            .bearer_auth(&s.token)
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
            .await;
        if let Ok(r) = r {
            created = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(created, Some(201));
    assert_eq!(next_json(&mut ws).await["type"], "call.started");
    fake.wait_attaches(1).await;

    // Control sent to A is applied by the owner.
    let resp = a
        .client
        .post(a.url(&format!("/api/sessions/{}/control", s.id)))
        .bearer_auth(API_KEY)
        .json(&json!({"action": "say", "text": "routed through Redis"}))
        .send()
        .await
        .unwrap();
    let (st, ack) = split(resp).await;
    assert_eq!(st, 200, "{ack}");
    assert_ne!(
        ack["applied_by"],
        a.state.instance_id.as_str(),
        "the owner process applied it"
    );
    fake.wait_for("the routed say", |e| {
        e.iter()
            .any(|x| x.to_string().contains("routed through Redis"))
    })
    .await;

    // A function call the owner answers just before it dies.
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    fake.wait_for("the owner's answer", |e| {
        of_type(e, "response.create").len() == 2
    })
    .await;
    owner.start_kill().unwrap();
    owner.wait().await.unwrap();
    let killed = Instant::now();
    fake.wait_attaches(2).await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_millis(2500),
        "adopted within 2 x TTL (+ margin): {takeover:?}"
    );
    eprintln!("takeover after the owner was killed: {takeover:?}");
    // The upstream repeats the call it saw answered: the new owner does not run it again.
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    fake.emit(function_call(
        "c2",
        "lookupNewSales",
        r#"{"category":"skis"}"#,
    ));
    let got = fake
        .wait_for("the new owner's answer", |e| {
            e.iter().any(|x| x["item"]["call_id"] == "c2")
        })
        .await;
    let c1 = got.iter().filter(|x| x["item"]["call_id"] == "c1").count();
    assert_eq!(c1, 1, "c1 was answered exactly once across the takeover");
    let resp = a
        .client
        .post(a.url(&format!("/api/sessions/{}/control", s.id)))
        .bearer_auth(API_KEY)
        .json(&json!({"action": "say", "text": "after takeover"}))
        .send()
        .await
        .unwrap();
    let (st, ack) = split(resp).await;
    assert_eq!(
        (st, ack["applied_by"].as_str()),
        (200, Some(a.state.instance_id.as_str()))
    );
}
