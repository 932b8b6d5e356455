//! The record's guarantee under failure, with real processes, one Redis and one Postgres:
//! a call whose owner is killed (SIGKILL) mid-call and adopted by another instance is
//! recorded once, in order; a database that hangs or refuses for a few seconds loses
//! nothing that was accepted, and the record catches up.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::config::RecordDatabase;

use crate::record::kinds;
use crate::support::channel::{API_KEY, Sess};
use crate::support::model::fake_model;
use crate::support::postgres::PostgresServer;
use crate::support::realtime::*;
use crate::support::redis::{RedisServer, spawn_instance_process, unique_prefix};
use crate::support::*;

/// The session's row in the database (what has been flushed), through the session list.
async fn flushed(app: &TestApp, sid: &str) -> Option<Value> {
    let resp = app
        .client
        .get(app.url("/api/sessions?limit=200"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .ok()?;
    let (st, b) = split(resp).await;
    if st != 200 {
        return None;
    }
    b["sessions"]
        .as_array()?
        .iter()
        .find(|r| r["session_id"] == sid)
        .cloned()
}

async fn all_items(app: &TestApp, sid: &str) -> Option<Vec<Value>> {
    let (st, b) = crate::record::timeline(app, sid, Some(API_KEY), "limit=500").await;
    (st == 200).then(|| b["items"].as_array().cloned().unwrap_or_default())
}

fn say(fake: &FakeRealtime, user: &str, text: &str, answer_item: &str, answer: &str) {
    fake.emit(json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": user, "transcript": text}));
    fake.emit(
        json!({"type": "response.output_audio_transcript.done", "item_id": answer_item,
                     "response_id": format!("resp_{answer_item}"), "transcript": answer}),
    );
}

#[tokio::test]
async fn a_call_adopted_after_its_owner_is_killed_is_recorded_once_in_order() {
    let pg = PostgresServer::start().await;
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    mount_calls(&model).await;
    let fake = FakeRealtime::start().await;
    let (url, base, db) = (fake.ws_url.clone(), format!("{}/v1", model.uri()), pg.url());
    let a = spawn_redis_app(&redis, &prefix, move |c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = base;
        c.realtime.ws_url = url;
        c.realtime.lease_ttl = Duration::from_secs(1);
        c.record.database = RecordDatabase::Postgres(db);
    })
    .await;
    let env = [
        ("OPENAI_API_KEY", UPSTREAM_KEY.to_owned()),
        ("OPENAI_BASE_URL", format!("{}/v1", model.uri())),
        ("SWITCHBOARD_REALTIME_WS_URL", fake.ws_url.clone()),
        ("SWITCHBOARD_CALL_LEASE_TTL", "1s".to_owned()),
        ("DATABASE_URL", pg.url()),
    ];
    let (mut owner, port) = spawn_instance_process(&redis, &prefix, &env);
    let s = a.session_for("retail&root_agent=salesAgent").await;
    let url = format!("http://127.0.0.1:{port}/api/calls?session_id={}", s.id);
    let created = eventually(
        "the owner takes the call",
        Duration::from_secs(10),
        || async {
            post_offer(&a.client, &url, &s.token)
                .await
                .ok()
                .map(|r| r.status().as_u16())
        },
    )
    .await;
    assert_eq!(created, 201);
    fake.wait_attaches(1).await;

    say(&fake, "u1", "Any boots on sale?", "a1", "Yes, two pairs.");
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    fake.wait_for("the owner's answer", |e| {
        of_type(e, "response.create").len() == 1
    })
    .await;
    eventually("the owner's items", Duration::from_secs(5), || async {
        let items = all_items(&a, &s.id).await?;
        (kinds(&items).contains(&"tool.call")).then_some(())
    })
    .await;
    owner.start_kill().unwrap();
    owner.wait().await.unwrap();
    fake.wait_attaches(2).await;

    // The upstream repeats c1 (answered before) and goes on; the adopter records the rest.
    fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    fake.emit(function_call(
        "c2",
        "lookupNewSales",
        r#"{"category":"apparel"}"#,
    ));
    say(&fake, "u2", "And jackets?", "a2", "One jacket is on sale.");
    let row = eventually(
        "everything in the database",
        Duration::from_secs(15),
        || async {
            let row = flushed(&a, &s.id).await?;
            (row["turns"] == 4 && row["tool_calls"] == 2).then_some(row)
        },
    )
    .await;
    assert_eq!(row["calls"], 1);
    let items = all_items(&a, &s.id).await.unwrap();
    let seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let turns: Vec<&str> = items
        .iter()
        .filter(|i| i["kind"].as_str().unwrap().starts_with("turn."))
        .map(|i| i["data"]["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(turns, ["u1", "a1", "u2", "a2"], "every turn once, in order");
    let tools: Vec<&str> = items
        .iter()
        .filter(|i| i["kind"] == "tool.call")
        .map(|i| i["data"]["correlation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["c1", "c2"],
        "c1 is recorded once across the takeover"
    );
    assert_eq!(
        kinds(&items)
            .iter()
            .filter(|k| **k == "call.started")
            .count(),
        1
    );
}

async fn execute(app: &TestApp, s: &Sess, n: usize) -> Instant {
    let body = json!({"session_id": s.id, "tool": "lookupNewSales", "args": {"category": "boots"},
                      "correlation_id": format!("t{n}")});
    let started = Instant::now();
    let resp = app
        .client
        .post(app.url("/api/tools/execute"))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "tool call {n} is accepted while the database is down"
    );
    started
}

async fn caught_up(app: &TestApp, s: &Sess, n: u64) {
    eventually("the record catches up", Duration::from_secs(20), || async {
        let row = flushed(app, &s.id).await?;
        (row["tool_calls"] == n).then_some(())
    })
    .await;
    let items = all_items(app, &s.id).await.unwrap();
    let ids: Vec<String> = items
        .iter()
        .map(|i| i["data"]["correlation_id"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    assert_eq!(ids, want, "every accepted item, once, in order");
}

#[tokio::test]
async fn a_database_that_hangs_or_refuses_loses_nothing_and_the_record_catches_up() {
    let pg = PostgresServer::start().await;
    let redis = RedisServer::start(false).await;
    let db = pg.url();
    let app = spawn_redis_app(&redis, &unique_prefix(), move |c| {
        c.record.database = RecordDatabase::Postgres(db);
        c.record.flush_every = Duration::from_millis(50);
    })
    .await;
    let s = app.session_for("retail&root_agent=salesAgent").await;
    execute(&app, &s, 0).await;
    caught_up(&app, &s, 1).await;

    // Hangs: every Postgres process stopped. The API still answers at once.
    pg.freeze();
    for n in 1..4 {
        let t = execute(&app, &s, n).await;
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not held up by the database"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.thaw();
    caught_up(&app, &s, 4).await;

    // Refuses: Postgres killed, then started again on the same data.
    let mut pg = pg;
    pg.kill();
    for n in 4..7 {
        execute(&app, &s, n).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.restart().await;
    caught_up(&app, &s, 7).await;
}
