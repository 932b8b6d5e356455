//! `GET`/`POST /api/sessions/{id}/events` and the SSE stream.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::channel::*;
use crate::support::*;

async fn post_event(app: &TestApp, sid: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("/api/sessions/{sid}/events")))
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    split(req.send().await.unwrap()).await
}

#[tokio::test]
async fn publish_needs_the_server_key_and_a_valid_event() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    let ok = json!({"type": "x.note", "data": {"a": 1}});
    let (st, b) = post_event(&app, &s.id, None, &ok).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = post_event(&app, &s.id, Some("wrong-key"), &ok).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = post_event(&app, &s.id, Some(&s.token), &ok).await;
    assert_error(st, &b, 401, "unauthorized");
    let (st, b) = post_event(&app, &s.id, Some(API_KEY), &json!({"type": "welcome"})).await;
    assert_error(st, &b, 422, "invalid_event_type");
    let (st, b) = post_event(
        &app,
        &s.id,
        Some(API_KEY),
        &json!({"type": "x.ok", "extra": 1}),
    )
    .await;
    assert_error(st, &b, 422, "invalid_body");
    let (st, b) = post_event(&app, &s.id, Some(API_KEY), &json!({"data": {}})).await;
    assert_error(st, &b, 422, "invalid_body");
    let (st, b) = post_event(&app, "nosuchsession", Some(API_KEY), &ok).await;
    assert_error(st, &b, 404, "unknown_session");
    let (st, b) = post_event(&app, &s.id, Some(API_KEY), &ok).await;
    assert_eq!(st, 202, "{b}");
    assert_eq!(
        (
            b["seq"].as_u64(),
            b["epoch"].as_str(),
            b["duplicate"].as_bool()
        ),
        (Some(1), Some(s.epoch.as_str()), Some(false))
    );
    assert!(b["id"].as_str().is_some());
}

#[tokio::test]
async fn publish_without_a_configured_key_is_refused() {
    let app = spawn_app_with(|c| c.api_keys.clear()).await;
    let s = app.new_session().await;
    let (st, b) = post_event(&app, &s.id, Some("anything"), &json!({"type": "x.a"})).await;
    assert_error(st, &b, 401, "unauthorized");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_API_KEY")
    );
}

#[tokio::test]
async fn idempotency_key_makes_retries_safe() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    let body = json!({"type": "tool.result", "data": {"ok": true}, "idempotency_key": "req-1"});
    let (_, first) = post_event(&app, &s.id, Some(API_KEY), &body).await;
    let (st, again) = post_event(&app, &s.id, Some(API_KEY), &body).await;
    assert_eq!(st, 202);
    assert_eq!(
        (again["seq"].clone(), again["id"].clone()),
        (first["seq"].clone(), first["id"].clone())
    );
    assert_eq!(again["duplicate"], true);
    let (st, b) = post_event(
        &app,
        &s.id,
        Some(API_KEY),
        &json!({"type": "x.a", "idempotency_key": ""}),
    )
    .await;
    assert_error(st, &b, 422, "invalid_body");
}

#[tokio::test]
async fn history_returns_envelopes_after_since() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    for i in 0..5 {
        app.publish(&s.id, "x.h", json!({"i": i})).await;
    }
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{}/events?since=2", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-switchboard-seq"], "5");
    assert_eq!(resp.headers()["x-switchboard-complete"], "true");
    assert_eq!(resp.headers()["x-switchboard-epoch"], s.epoch.as_str());
    let (st, b) = split(resp).await;
    assert_eq!(st, 200);
    let seqs: Vec<u64> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(b[0]["data"]["i"], 2);
    let (st, b) = app
        .get_json(&format!("/api/sessions/{}/events", s.id))
        .await;
    assert_error(st, &b, 401, "unauthorized");
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{}/events?since=abc", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let (st, b) = split(resp).await;
    assert_error(st, &b, 400, "invalid_query");
}

/// Minimal SSE reader: returns (event name, id, data) triples as they arrive.
struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> (String, Option<String>, String) {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_owned(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // keep-alive comment
                }
                return (event, id, data);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("an SSE event within 5s")
                .expect("stream open")
                .unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn sse_delivers_welcome_then_events_and_resumes_with_last_event_id() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    let url = app.url(&format!(
        "/api/sessions/{}/stream?token={}&epoch={}",
        s.id, s.token, s.epoch
    ));
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut sse = SseReader::new(resp);
    let (event, _, data) = sse.next().await;
    assert_eq!(event, "welcome");
    let w: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (w["seq"].as_u64(), w["epoch"].as_str()),
        (Some(0), Some(s.epoch.as_str()))
    );
    for i in 0..3 {
        app.publish(&s.id, "x.s", json!({"i": i})).await;
    }
    for seq in 1..=3u64 {
        let (event, id, data) = sse.next().await;
        assert_eq!(
            (event.as_str(), id.as_deref()),
            ("message", Some(seq.to_string().as_str()))
        );
        assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["seq"], seq);
    }
    drop(sse);
    app.publish(&s.id, "x.s", json!({"i": 3})).await;
    // What an EventSource sends when it reconnects on its own.
    let resp = app
        .client
        .get(&url)
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(resp);
    let (_, _, data) = sse.next().await;
    let w: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (w["recovered"].as_bool(), w["replayed"].as_u64()),
        (Some(true), Some(2))
    );
    for seq in 3..=4u64 {
        assert_eq!(
            sse.next().await.1.as_deref(),
            Some(seq.to_string().as_str())
        );
    }
}

#[tokio::test]
async fn sse_refuses_bad_tokens_in_the_json_shape() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    let (st, b) = app
        .get_json(&format!("/api/sessions/{}/stream", s.id))
        .await;
    assert_error(st, &b, 401, "unauthorized");
    let other = app.new_session().await;
    let (st, b) = app
        .get_json(&format!(
            "/api/sessions/{}/stream?token={}",
            s.id, other.token
        ))
        .await;
    assert_error(st, &b, 401, "unauthorized");
    // A bearer header works too.
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{}/stream", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_batch_publishes_in_order_per_session_with_per_item_results() {
    let app = spawn_app().await;
    let a = app.new_session().await;
    let b = app.new_session().await;
    let (mut wa, _) = app.connect(&a, None).await;
    let (mut wb, _) = app.connect(&b, None).await;
    let mut events = Vec::new();
    for i in 0..10 {
        let sid = if i % 2 == 0 { &a.id } else { &b.id };
        events.push(json!({"session_id": sid, "type": "x.batch", "data": {"i": i}}));
    }
    events.push(json!({"session_id": "nosuchsession", "type": "x.batch"}));
    let resp = app
        .client
        .post(app.url("/api/events/batch"))
        .bearer_auth(API_KEY)
        .json(&json!({"events": events}))
        .send()
        .await
        .unwrap();
    let (st, r) = split(resp).await;
    assert_eq!(st, 202, "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 11);
    for (i, res) in results.iter().take(10).enumerate() {
        assert_eq!(res["seq"].as_u64(), Some(i as u64 / 2 + 1), "{res}");
    }
    assert_eq!(results[10]["error"]["code"], "unknown_session");
    for (ws, first) in [(&mut wa, 0), (&mut wb, 1)] {
        for k in 0..5u64 {
            let ev = next_json(ws).await;
            assert_eq!(
                (ev["seq"].as_u64(), ev["data"]["i"].as_u64()),
                (Some(k + 1), Some(first + 2 * k))
            );
        }
    }
}

#[tokio::test]
async fn a_batch_with_a_bad_item_publishes_nothing() {
    let app = spawn_app().await;
    let s = app.new_session().await;
    let post = |body: Value| {
        let req = app
            .client
            .post(app.url("/api/events/batch"))
            .bearer_auth(API_KEY)
            .json(&body);
        async move { split(req.send().await.unwrap()).await }
    };
    let (st, b) = post(json!({"events": [
        {"session_id": s.id, "type": "x.ok"},
        {"session_id": s.id, "type": "nope"}
    ]}))
    .await;
    assert_error(st, &b, 422, "invalid_event_type");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[1]")
    );
    let (st, b) = post(json!({"events": []})).await;
    assert_error(st, &b, 422, "invalid_body");
    let resp = app
        .client
        .post(app.url("/api/events/batch"))
        .json(&json!({"events": [{"session_id": s.id, "type": "x.ok"}]}))
        .send()
        .await
        .unwrap();
    let (st, b) = split(resp).await;
    assert_error(st, &b, 401, "unauthorized");
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{}/events", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let (_, events) = split(resp).await;
    assert_eq!(events, json!([]), "nothing was published");
}

/// An app with a 1 s heartbeat and the given idle session TTL, a session, and its open SSE
/// stream.
async fn sse_with_session_ttl(ttl: Duration) -> (TestApp, Sess, reqwest::Response) {
    let app = spawn_app_with(move |c| {
        c.heartbeat = Duration::from_secs(1);
        c.session_ttl = ttl;
    })
    .await;
    let s = app.new_session().await;
    let url = app.url(&format!(
        "/api/sessions/{}/stream?token={}&epoch={}",
        s.id, s.token, s.epoch
    ));
    let resp = app.client.get(&url).send().await.unwrap();
    (app, s, resp)
}

#[tokio::test]
async fn an_sse_only_client_keeps_its_session_alive() {
    let (app, s, resp) = sse_with_session_ttl(Duration::from_millis(3000)).await;
    assert_eq!(resp.status(), 200);
    // Read (keep-alives included) for longer than the idle TTL, on SSE only.
    let reader = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let _ = tokio::time::timeout(Duration::from_secs(7), async {
            while body.next().await.is_some() {}
        })
        .await;
    });
    tokio::time::sleep(Duration::from_millis(6000)).await;
    assert_eq!(
        app.session_state(&s).await.0,
        200,
        "the session idled out despite its open SSE stream"
    );
    reader.abort();
}

#[tokio::test]
async fn the_sse_stream_of_an_expired_session_ends_with_the_close_notice() {
    // The session's idle TTL is shorter than one heartbeat here, so it expires while the
    // stream is open (a configuration the binary refuses; tests build it directly).
    let (_app, _s, resp) = sse_with_session_ttl(Duration::from_millis(300)).await;
    let mut sse = SseReader::new(resp);
    assert_eq!(sse.next().await.0, "welcome");
    let (event, _, data) = sse.next().await;
    assert_eq!(event, "close", "{data}");
    let notice: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(notice["code"], 4004, "{notice}");
    // And the stream ends instead of sending keep-alives forever.
    let rest = tokio::time::timeout(Duration::from_secs(5), sse.stream.next())
        .await
        .expect("the stream ends");
    assert!(rest.is_none(), "the stream is still open");
}

/// Redis mode checks the session inside the publish script: a publish to a session that
/// never existed, expired, or was revoked is refused as before and stores nothing, and a
/// publish keeps the session alive like any other use of it.
#[tokio::test]
async fn in_redis_mode_a_publish_checks_the_session_in_the_same_step() {
    let redis = crate::support::redis::RedisServer::start(false).await;
    let app = spawn_redis_app(&redis, &crate::support::redis::unique_prefix(), |c| {
        c.session_ttl = Duration::from_secs(2);
        c.heartbeat = Duration::from_secs(1);
    })
    .await;
    let ev = json!({"type": "x.note", "data": {"n": 1}});
    let nobody = "00000000-0000-4000-8000-000000000000";
    let (st, b) = post_event(&app, nobody, Some(API_KEY), &ev).await;
    assert_error(st, &b, 404, "unknown_session");

    let s = app.new_session().await;
    // Publishing every 500 ms keeps a 2 s session alive for 3 s.
    for _ in 0..6 {
        let (st, b) = post_event(&app, &s.id, Some(API_KEY), &ev).await;
        assert_eq!(st, 202, "{b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{}/events?since=0", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let history: Value = resp.json().await.unwrap();
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(6),
        "the session outlived its 2 s TTL because it was used, and kept every event"
    );
    let resp = app
        .client
        .delete(app.url(&format!("/api/sessions/{}", s.id)))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (st, b) = post_event(&app, &s.id, Some(API_KEY), &ev).await;
    assert_error(st, &b, 401, "session_revoked");

    let gone = app.new_session().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, b) = post_event(&app, &gone.id, Some(API_KEY), &ev).await;
    assert_error(st, &b, 404, "unknown_session");
}
