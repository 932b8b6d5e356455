//! A call's sideband across instances (Redis mode, real processes): control sent to any
//! instance is applied by the owner; when the owner is killed another instance adopts the
//! call within two lease TTLs, re-attaches, and no function call is answered twice.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::channel::{API_KEY, next_json};
use crate::support::model::fake_model;
use crate::support::realtime::*;
use crate::support::redis::{RedisServer, spawn_instance_process, unique_prefix};
use crate::support::tcp_proxy::TcpProxy;
use crate::support::*;

/// The upstream asks for function call `c1`; waits until the owner answered it (the
/// `creates`-th `response.create` it received).
async fn answer_c1(fake: &FakeRealtime, creates: usize) {
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    fake.wait_for("the owner's answer", |e| {
        of_type(e, "response.create").len() == creates
    })
    .await;
}

/// After a takeover the upstream repeats `c1` (answered before) and sends `c2` (and
/// `also`, when given): the new owner answers `c2` and never `c1` a second time.
async fn c1_stays_answered_once(fake: &FakeRealtime, also: Option<serde_json::Value>) {
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
    if let Some(ev) = also {
        fake.emit(ev);
    }
    let got = fake
        .wait_for("the new owner's answer", |e| {
            e.iter().any(|x| x["item"]["call_id"] == "c2")
        })
        .await;
    let c1 = got.iter().filter(|x| x["item"]["call_id"] == "c1").count();
    assert_eq!(c1, 1, "c1 was answered exactly once across the takeover");
}

/// Posts an offer to `url` (a process that may still be starting) until it answers; returns
/// the status.
async fn offer_when_up(client: &reqwest::Client, url: &str, token: &str) -> u16 {
    eventually(
        "the owner process takes the call request",
        Duration::from_secs(5),
        || async {
            let r = post_offer(client, url, token).await;
            r.ok().map(|r| r.status().as_u16())
        },
    )
    .await
}

/// Two instances on one private Redis, both online against one fake model and one fake
/// Realtime socket: `a` in this process, `owner` a real process (on `port`) that will hold
/// the call.
struct Pair {
    _redis: RedisServer,
    _model: wiremock::MockServer,
    fake: FakeRealtime,
    a: TestApp,
    owner: tokio::process::Child,
    port: u16,
}

async fn pair(lease_ttl: Duration, extra: &[(&str, String)]) -> Pair {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    mount_calls(&model).await;
    let fake = FakeRealtime::start().await;
    let (url, base) = (fake.ws_url.clone(), format!("{}/v1", model.uri()));
    let live = url.replace("/v1/realtime", "/v1/live/sessions");
    let live_env = live.clone();
    let a = spawn_redis_app(&redis, &prefix, move |c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = base;
        c.realtime.ws_url = url;
        c.realtime.live_ws_url = live;
        c.realtime.lease_ttl = lease_ttl;
    })
    .await;
    let mut env = vec![
        ("OPENAI_API_KEY", UPSTREAM_KEY.to_owned()),
        ("OPENAI_BASE_URL", format!("{}/v1", model.uri())),
        ("SWITCHBOARD_REALTIME_WS_URL", fake.ws_url.clone()),
        ("OPENAI_LIVE_WS_URL", live_env),
        (
            "SWITCHBOARD_CALL_LEASE_TTL",
            format!("{}ms", lease_ttl.as_millis()),
        ),
    ];
    env.extend(extra.iter().cloned());
    let (owner, port) = spawn_instance_process(&redis, &prefix, &env);
    Pair {
        _redis: redis,
        _model: model,
        fake,
        a,
        owner,
        port,
    }
}

#[tokio::test]
async fn the_owner_applies_control_and_a_killed_owner_is_replaced() {
    let Pair {
        _redis,
        _model,
        fake,
        a,
        mut owner,
        port,
    } = pair(Duration::from_secs(1), &[]).await;
    let s = a.session_for("retail&root_agent=salesAgent").await;
    let (mut ws, _) = a.connect(&s, None).await;
    // The call is created through the other process, which takes the lease.
    let call_url = format!(
        "http://127.0.0.1:{port}/api/realtime/calls?session_id={}",
        s.id
    );
    let created = offer_when_up(&a.client, &call_url, &s.token).await;
    let created = Some(created);
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
    answer_c1(&fake, 2).await;
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
    c1_stays_answered_once(&fake, None).await;
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

/// Two instances on one Redis; the owner's own link to Redis is cut (a partition: the other
/// instance still reaches Redis). The owner must let go of the call before its lease can
/// expire, never answer anything it cannot record, and the other instance takes over.
#[tokio::test]
async fn an_owner_that_loses_redis_stops_before_another_takes_over() {
    let redis = RedisServer::start(false).await;
    let proxy = TcpProxy::start(redis.port).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    mount_calls(&model).await;
    let fake = FakeRealtime::start().await;
    let settings = |url: String, base: String, redis_url: Option<String>| {
        move |c: &mut switchboard::config::Config| {
            c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
            c.openai_base_url = base;
            c.realtime.ws_url = url;
            c.realtime.lease_ttl = Duration::from_secs(1);
            if let Some(r) = redis_url {
                c.redis_url = Some(r);
            }
        }
    };
    let base = format!("{}/v1", model.uri());
    let owner = spawn_redis_app(
        &redis,
        &prefix,
        settings(fake.ws_url.clone(), base.clone(), Some(proxy.redis_url())),
    )
    .await;
    let other = spawn_redis_app(&redis, &prefix, settings(fake.ws_url.clone(), base, None)).await;
    let s = other.session_for("retail&root_agent=salesAgent").await;
    let url = owner.url(&format!("/api/realtime/calls?session_id={}", s.id));
    let resp = post_offer(&owner.client, &url, &s.token).await.unwrap();
    assert_eq!(resp.status(), 201);
    fake.wait_attaches(1).await;

    proxy.cut();
    let cut = Instant::now();
    // The upstream asks for a tool while the owner cannot reach Redis.
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    let closed = fake.wait_closed().await;
    fake.wait_attaches(2).await;
    let timeline = fake.timeline.lock().unwrap().clone();
    let adopted = timeline.iter().rev().find(|(a, _)| *a).unwrap().1;
    eprintln!(
        "owner let go {:?} after the cut; the other instance attached {:?} after the cut",
        closed - cut,
        adopted - cut
    );
    assert!(
        closed < adopted,
        "the old owner closed its sideband before the new owner attached: {timeline:?}"
    );
    assert!(
        closed - cut < Duration::from_secs(1),
        "let go within one TTL"
    );
    assert!(
        fake.received.lock().unwrap().is_empty(),
        "the cut-off owner answered nothing"
    );
    // The upstream repeats the pending call to the new owner, which answers it once.
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    let got = fake
        .wait_for("the new owner's answer", |e| {
            of_type(e, "response.create").len() == 1
        })
        .await;
    let answers = of_type(&got, "conversation.item.create");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["item"]["call_id"], "c1");
    let sid = s.id.parse().unwrap();
    let holder = other
        .state
        .calls
        .leases
        .holder(&sid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.owner, other.state.instance_id);
}

/// A lease held by an instance that is gone (nobody listens on its control channel: 504 at
/// once) or frozen (it listens but never acknowledges: 504 after the control timeout).
#[tokio::test]
async fn control_for_an_unresponsive_owner_is_504() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let a = spawn_redis_app(&redis, &prefix, |c| {
        c.realtime.control_timeout = Duration::from_millis(300);
    })
    .await;
    let s = a.session_for("retail&root_agent=salesAgent").await;
    let sid = s.id.parse().unwrap();
    let leases = a.state.calls.leases.clone();
    leases.register(&sid, "rtc_ghost").await.unwrap();
    leases
        .acquire(&sid, "instance-that-froze", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("granted");
    let say = || async {
        let started = Instant::now();
        let resp = a
            .client
            .post(a.url(&format!("/api/sessions/{}/control", s.id)))
            .bearer_auth(API_KEY)
            .json(&json!({"action": "say", "text": "anyone there?"}))
            .send()
            .await
            .unwrap();
        let (st, e) = split(resp).await;
        assert_error(st, &e, 504, "owner_unreachable");
        started.elapsed()
    };
    let gone = say().await;
    assert!(
        gone < Duration::from_millis(300),
        "nobody listens: no need to wait ({gone:?})"
    );
    // A frozen owner: subscribed to its control channel, never answering.
    let mut frozen = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "SUBSCRIBE"])
        .arg(format!("{prefix}:ctl:instance-that-froze"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli");
    eventually(
        "the frozen instance listens on its channel",
        Duration::from_secs(2),
        || async {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "PUBSUB", "NUMSUB"])
                .arg(format!("{prefix}:ctl:instance-that-froze"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .ends_with('1')
                .then_some(())
        },
    )
    .await;
    let waited = say().await;
    let _ = frozen.kill();
    let _ = frozen.wait();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "answered once the control timeout passed: {waited:?}"
    );
}

/// SIGTERM hands calls over: the owner releases each call's lease and tells the others, so
/// another instance re-attaches at once (not after up to twice the lease TTL); no function
/// call is answered twice, no transcript is lost or repeated, and the process exits within
/// its shutdown timeout.
#[tokio::test]
async fn sigterm_hands_the_call_over_at_once() {
    // A long lease: without the hand-over, adoption would take 5 to 20 s.
    let extra = [("SWITCHBOARD_SHUTDOWN_TIMEOUT", "5s".to_owned())];
    let Pair {
        _redis,
        _model,
        fake,
        a,
        mut owner,
        port,
    } = pair(Duration::from_secs(10), &extra).await;
    let s = a.session_for("retail&root_agent=salesAgent").await;
    let (mut ws, _) = a.connect(&s, None).await;
    let call_url = format!(
        "http://127.0.0.1:{port}/api/realtime/calls?session_id={}",
        s.id
    );
    let created = eventually(
        "the owner process answers",
        Duration::from_secs(5),
        || async {
            a.client
                .post(&call_url)
                .bearer_auth(&s.token)
                .header("content-type", "application/sdp")
                .body("v=0\r\n")
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        },
    )
    .await;
    assert_eq!(created, 201);
    assert_eq!(next_json(&mut ws).await["type"], "call.started");
    fake.wait_attaches(1).await;

    // Before the hand-over: a transcript and an answered function call.
    fake.emit(
        json!({"type": "conversation.item.input_audio_transcription.completed",
        "item_id": "u1", "transcript": "before the deploy"}),
    );
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["item_id"].as_str()),
        (Some("transcript.user"), Some("u1"))
    );
    answer_c1(&fake, 1).await;
    assert_eq!(next_json(&mut ws).await["type"], "tool.result");

    // SIGTERM the owner.
    let pid = owner.id().expect("running") as i32;
    // SAFETY: sending a signal to a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    fake.wait_attaches(2).await;
    let handover = signalled.elapsed();
    eprintln!("re-attached {handover:?} after SIGTERM");
    assert!(
        handover < Duration::from_secs(2),
        "re-attached after {handover:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(6), owner.wait())
        .await
        .expect("the owner exited within its shutdown timeout")
        .unwrap();
    assert!(status.success(), "{status:?}");

    // After: the upstream repeats c1 (seen answered) and sends c2 and a new transcript.
    let u2 = json!({"type": "conversation.item.input_audio_transcription.completed",
        "item_id": "u2", "transcript": "after the deploy"});
    c1_stays_answered_once(&fake, Some(u2)).await;
    // The browser's channel: c2's result and u2's transcript, each once, nothing repeated.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = next_json(&mut ws).await;
        match ev["type"].as_str() {
            Some("tool.result") => seen.push(format!("tool {}", ev["data"]["correlation_id"])),
            Some("transcript.user") => seen.push(format!("user {}", ev["data"]["item_id"])),
            _ => {}
        }
    }
    seen.sort();
    assert_eq!(seen, [r#"tool "c2""#, r#"user "u2""#]);
    let resp = a
        .client
        .get(a.url(&format!("/api/sessions/{}/events?since=0", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let (st, hist) = split(resp).await;
    assert_eq!(st, 200, "{hist}");
    let transcripts: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "transcript.user")
        .filter_map(|e| e["data"]["item_id"].as_str())
        .collect();
    assert_eq!(transcripts, ["u1", "u2"], "every transcript once, in order");
}

/// GPT-Live: the owner is killed (SIGKILL) while a delegation runs; the other instance
/// adopts the call, finishes the recorded delegation and answers it exactly once. Control
/// sent to the instance that does not hold the call is applied by the one that does.
#[tokio::test]
async fn a_live_delegation_survives_its_owner_being_killed_and_is_answered_once() {
    let Pair {
        _redis,
        _model,
        fake,
        a,
        mut owner,
        port,
    } = pair(Duration::from_secs(1), &[]).await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/live/sessions"))
        .respond_with(wiremock::ResponseTemplate::new(201).set_body_json(json!({
            "session": {"id": "live_takeover1"},
            "transport": {"type": "webrtc", "sdp": "v=0\r\no=- live\r\n"}})))
        .mount(&_model)
        .await;
    let s = a
        .session_for("customerServiceRetailLive&root_agent=returns")
        .await;
    let (mut ws, _) = a.connect(&s, None).await;
    let call_url = format!("http://127.0.0.1:{port}/api/calls?session_id={}", s.id);
    let created = offer_when_up(&a.client, &call_url, &s.token).await;
    assert_eq!(created, 201);
    assert_eq!(next_json(&mut ws).await["type"], "call.started");
    fake.wait_attaches(1).await;
    assert!(fake.paths.lock().unwrap()[0].ends_with("/live_takeover1/attach"));

    // Control sent to A, which does not hold the call, is applied by the owner.
    let resp = (a
        .client
        .post(a.url(&format!("/api/sessions/{}/control", s.id))))
    .bearer_auth(API_KEY)
    .json(&json!({"action": "say", "text": "routed to the owner"}))
    .send()
    .await
    .unwrap();
    let (st, ack) = split(resp).await;
    assert_eq!(st, 200, "{ack}");
    assert_ne!(ack["applied_by"], a.state.instance_id.as_str());
    fake.wait_for("the routed commentary", |e| {
        e.iter().any(|x| {
            x["type"] == "session.commentary.append" && x["content"] == "routed to the owner"
        })
    })
    .await;

    // A delegation whose backend turn is slow; the owner dies while it runs.
    fake.emit(
        json!({"type": "session.input_transcript.delta", "start_ms": 100, "end_ms": 900,
        "delta": r#"slow call:lookupOrders:{"phoneNumber":"(206) 135-1246"}"#}),
    );
    fake.emit(
        json!({"type": "session.delegation.created", "offset_ms": 100,
        "delegation": {"id": "item_k1", "type": "delegation", "target": "client"}}),
    );
    let mut seen = Vec::new();
    loop {
        let ev = next_json(&mut ws).await;
        let started = ev["type"] == "delegation.started";
        seen.push(ev);
        if started {
            break;
        }
    }
    owner.start_kill().unwrap();
    owner.wait().await.unwrap();
    let killed = Instant::now();
    fake.wait_attaches(2).await;
    eprintln!(
        "Live call re-attached {:?} after the owner was killed",
        killed.elapsed()
    );
    loop {
        let ev = next_json(&mut ws).await;
        let done = ev["type"] == "delegation.completed";
        seen.push(ev);
        if done {
            break;
        }
    }
    let completed = seen.last().unwrap();
    assert_eq!(completed["data"]["delegation_id"], "item_k1");
    assert!(
        completed["data"]["output"]
            .as_str()
            .unwrap()
            .starts_with("done after lookupOrders")
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = fake.received.lock().unwrap().clone();
    let answers: Vec<_> = got
        .iter()
        .filter(|e| e["type"] == "session.commentary.append" && e["delegation_id"] == "item_k1")
        .collect();
    assert_eq!(answers.len(), 1, "answered exactly once: {got:?}");
    let started = seen
        .iter()
        .filter(|e| e["type"] == "delegation.started")
        .count();
    assert_eq!(started, 1, "{seen:?}");
}
