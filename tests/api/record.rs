//! The conversation record (DESIGN.md §10) as a user sees it: the timeline of a call against
//! the fake Realtime upstream (turns as heard, tools, switches, usage and its cost), a second
//! call seeded with the first one's turns, who may read and erase a record, and the session
//! list.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::realtime_calls::{Setup, control, setup, start_call};
use crate::support::channel::{API_KEY, Sess};
use crate::support::realtime::*;
use crate::support::*;

/// The session's whole timeline, read with `bearer`.
pub(crate) async fn timeline(
    app: &TestApp,
    sid: &str,
    bearer: Option<&str>,
    query: &str,
) -> (u16, Value) {
    let mut req = app
        .client
        .get(app.url(&format!("/api/sessions/{sid}/timeline?{query}")));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    split(req.send().await.unwrap()).await
}

/// Waits until the timeline holds an item `pred` accepts; returns the items.
pub(crate) async fn items_until(
    app: &TestApp,
    sid: &str,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(what, Duration::from_secs(10), || async {
        let (st, b) = timeline(app, sid, Some(API_KEY), "limit=500").await;
        let items = b["items"].as_array().cloned().unwrap_or_default();
        (st == 200 && pred(&items)).then_some(items)
    })
    .await
}

pub(crate) fn kinds(items: &[Value]) -> Vec<&str> {
    items.iter().map(|i| i["kind"].as_str().unwrap()).collect()
}

fn of_kind<'a>(items: &'a [Value], kind: &str) -> Vec<&'a Value> {
    items.iter().filter(|i| i["kind"] == kind).collect()
}

const ANSWER: &str = "We have two boots on sale this week: the Alpine Pro at thirty percent off \
    and the Trail Runner at twenty percent off, and both come in every size from six to thirteen.";

/// What the fake sends for one answer with usage.
fn answer(item: &str, resp: &str, text: &str) -> Vec<Value> {
    vec![
        json!({"type": "response.created", "response": {"id": resp}}),
        json!({"type": "response.output_item.added", "response_id": resp, "item": {"id": item, "type": "message"}}),
        json!({"type": "output_audio_buffer.started", "response_id": resp}),
        json!({"type": "response.output_audio_transcript.done", "item_id": item, "response_id": resp, "transcript": text}),
        json!({"type": "response.done", "response": {"id": resp, "status": "completed",
            "output": [{"id": item, "type": "message"}],
            "usage": {"total_tokens": 1500, "input_tokens": 1200, "output_tokens": 300,
                "input_token_details": {"text_tokens": 200, "audio_tokens": 1000, "cached_tokens": 100,
                    "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 0}},
                "output_token_details": {"text_tokens": 50, "audio_tokens": 250}}}}),
    ]
}

fn user_says(t: &Setup, item: &str, text: &str) {
    t.fake.emit(json!({"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 1200}));
    t.fake.emit(
        json!({"type": "input_audio_buffer.speech_stopped", "item_id": item, "audio_end_ms": 2900}),
    );
    t.fake.emit(json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": item, "transcript": text}));
}

/// The usage above on gpt-realtime: 100 text in at $4/M, 100 cached text at $0.40/M,
/// 1000 audio in at $32/M, 50 text out at $16/M and 250 audio out at $64/M = $0.04924.
const ANSWER_COST: &str = "0.04924";

#[tokio::test]
async fn a_call_is_recorded_in_order_with_what_the_user_heard_and_what_it_cost() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    user_says(&t, "u1", "Do you have boots on sale?");
    t.fake.emit(function_call(
        "c1",
        "lookupNewSales",
        r#"{"category":"boots"}"#,
    ));
    t.fake
        .wait_for("the tool output", |e| {
            of_type(e, "response.create").len() == 1
        })
        .await;
    for ev in answer("a1", "resp_2", ANSWER) {
        t.fake.emit(ev);
    }
    // The browser cuts playback off after the response completed: the truncation comes last.
    t.fake
        .emit(json!({"type": "output_audio_buffer.cleared", "response_id": "resp_2"}));
    t.fake.emit(json!({"type": "conversation.item.truncated", "item_id": "a1", "content_index": 0, "audio_end_ms": 2000}));
    t.fake
        .emit(function_call("h1", "transfer_to_returns", "{}"));
    let items = items_until(&t.app, &t.s.id, "the switch and the interruption", |i| {
        of_kind(i, "agent.switch").len() == 1
            && of_kind(i, "turn.assistant")
                .first()
                .is_some_and(|a| a["data"]["audio_end_ms"] == 2000)
    })
    .await;
    assert_eq!(
        kinds(&items),
        [
            "call.started",
            "turn.user",
            "orchestration",
            "tool.call",
            "turn.assistant",
            "moderation",
            "usage",
            "agent.switch"
        ],
        "{items:#?}"
    );
    let decided = of_kind(&items, "orchestration")[0];
    assert_eq!(
        (
            decided["data"]["from"].as_str(),
            decided["data"]["changed"].as_bool()
        ),
        (Some("salesAgent"), Some(false))
    );
    let judged = of_kind(&items, "moderation")[0];
    assert_eq!(
        (
            judged["data"]["source"].as_str(),
            judged["data"]["allowed"].as_bool()
        ),
        (Some("assistant"), Some(true))
    );
    let seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(items.iter().all(|i| i["call_id"] == CALL_ID));

    let user = of_kind(&items, "turn.user")[0];
    assert_eq!(user["data"]["text"], "Do you have boots on sale?");
    assert_eq!(
        (
            user["data"]["speech_started_ms"].as_u64(),
            user["data"]["speech_stopped_ms"].as_u64()
        ),
        (Some(1200), Some(2900))
    );
    assert_eq!(user["agent"], "salesAgent");

    let tool = of_kind(&items, "tool.call")[0];
    assert_eq!(
        (
            tool["data"]["tool"].as_str(),
            tool["data"]["by"].as_str(),
            tool["data"]["success"].as_bool()
        ),
        (Some("lookupNewSales"), Some("sideband"), Some(true))
    );
    assert_eq!(tool["data"]["arguments"], json!({"category": "boots"}));
    assert!(tool["data"]["result"]["sales"].is_array());

    // What the user heard: 2 s of an answer that takes about 12 s to say.
    let said = of_kind(&items, "turn.assistant")[0];
    let heard = said["data"]["text"].as_str().unwrap();
    assert_eq!(said["data"]["interrupted"], true);
    assert_eq!(said["data"]["generated_text"], ANSWER);
    assert_eq!(said["data"]["heard"], "estimate");
    assert!(
        !heard.is_empty() && heard.len() < ANSWER.len() / 2,
        "{heard:?}"
    );
    assert!(ANSWER.starts_with(heard), "{heard:?}");

    let usage = of_kind(&items, "usage")[0];
    assert_eq!(usage["data"]["model"], "gpt-realtime");
    assert_eq!(usage["data"]["usage"]["input_audio_tokens"], 1000);
    assert_eq!(usage["cost_usd"], ANSWER_COST);

    let switch = of_kind(&items, "agent.switch")[0];
    assert_eq!(
        (
            switch["data"]["from"].as_str(),
            switch["data"]["to"].as_str(),
            switch["data"]["source"].as_str()
        ),
        (Some("salesAgent"), Some("returns"), Some("model"))
    );
    let (_, page) = timeline(&t.app, &t.s.id, Some(&t.s.token), "").await;
    assert_eq!(page["cost_usd"], ANSWER_COST, "the session's running cost");

    // An interruption seen before the transcript is folded in when the turn is recorded.
    let mut early = answer("a2", "resp_3", ANSWER);
    let transcript = early.remove(3);
    early.insert(3, json!({"type": "conversation.item.truncated", "item_id": "a2", "content_index": 0, "audio_end_ms": 4000}));
    early.insert(4, transcript);
    for ev in early {
        t.fake.emit(ev);
    }
    let items = items_until(&t.app, &t.s.id, "the second answer", |i| {
        of_kind(i, "usage").len() == 2
    })
    .await;
    let second = of_kind(&items, "turn.assistant")[1];
    assert_eq!(second["data"]["interrupted"], true);
    assert_eq!(second["agent"], "returns");
    let longer = second["data"]["text"].as_str().unwrap();
    assert!(
        longer.len() > heard.len() && ANSWER.starts_with(longer),
        "{longer:?}"
    );
    let (_, page) = timeline(&t.app, &t.s.id, Some(API_KEY), "kinds=usage").await;
    assert_eq!(kinds(page["items"].as_array().unwrap()), ["usage", "usage"]);
    assert_eq!(page["cost_usd"], "0.09848");
    let (st, _) = control(&t.app, &t.s.id, API_KEY, json!({"action": "hangup"})).await;
    assert_eq!(st, 200);
    let items = items_until(&t.app, &t.s.id, "the end of the call", |i| {
        !of_kind(i, "call.ended").is_empty()
    })
    .await;
    assert_eq!(
        of_kind(&items, "call.ended")[0]["data"]["cost_usd"],
        "0.09848",
        "what the call cost"
    );
    // The whole record, for whoever reads the test output (`--no-capture`).
    eprintln!("{}", serde_json::to_string_pretty(&items).unwrap());
}

#[tokio::test]
async fn a_second_call_on_the_session_continues_from_the_first_ones_turns() {
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    user_says(&t, "u1", "Do you have boots on sale?");
    for ev in answer("a1", "resp_1", "Yes, the Alpine Pro is thirty percent off.") {
        t.fake.emit(ev);
    }
    user_says(&t, "u2", "Great, add it to my cart.");
    items_until(&t.app, &t.s.id, "the first call's turns", |i| {
        of_kind(i, "turn.user").len() == 2
    })
    .await;
    let (st, _) = control(&t.app, &t.s.id, API_KEY, json!({"action": "hangup"})).await;
    assert_eq!(st, 200);
    let before = t.fake.received.lock().unwrap().len();

    // The page reloads: a new call on the same session.
    Mock::given(method("POST"))
        .and(path("/v1/realtime/calls"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("content-type", "application/sdp")
                .insert_header("location", "/v1/realtime/calls/rtc_second")
                .set_body_string("v=0\r\no=- answer\r\n"),
        )
        .with_priority(1)
        .mount(&t.model)
        .await;
    let url = t.app.url(&format!("/api/calls?session_id={}", t.s.id));
    let resp = post_offer(&t.app.client, &url, &t.s.token).await.unwrap();
    assert_eq!(resp.status(), 201);
    let got = t
        .fake
        .wait_for("the seed of the second call", |e| {
            e[before..]
                .iter()
                .filter(|e| e["type"] == "conversation.item.create")
                .count()
                >= 4
        })
        .await;
    let seed: Vec<(String, String)> = got[before..]
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .map(|e| {
            let item = &e["item"];
            (
                item["role"].as_str().unwrap().to_owned(),
                item["content"][0]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seed[..3],
        [
            ("user".to_owned(), "Do you have boots on sale?".to_owned()),
            (
                "assistant".to_owned(),
                "Yes, the Alpine Pro is thirty percent off.".to_owned()
            ),
            ("user".to_owned(), "Great, add it to my cart.".to_owned()),
        ],
        "earlier turns, oldest first"
    );
    assert_eq!(seed[3].0, "system");
    assert!(seed[3].1.contains("Do not greet"), "{}", seed[3].1);
    let assistant_part = got[before..]
        .iter()
        .find(|e| e["item"]["role"] == "assistant")
        .unwrap();
    assert_eq!(assistant_part["item"]["content"][0]["type"], "output_text");
    assert!(
        of_type(&got[before..], "response.create").is_empty(),
        "nothing asks for a response before the seed"
    );
}

#[tokio::test]
async fn a_small_seed_budget_keeps_the_most_recent_turns() {
    let (model, fake, app) = spawn_with_realtime(|c| c.record.seed_tokens = 20).await;
    let s = app.session_for("retail&root_agent=salesAgent").await;
    let mut t = Setup {
        ws: app.connect(&s, None).await.0,
        app,
        fake,
        model,
        s,
    };
    start_call(&mut t).await;
    user_says(
        &t,
        "u1",
        "An old question that no longer matters at all to anyone here.",
    );
    user_says(&t, "u2", "The latest question.");
    items_until(&t.app, &t.s.id, "both turns", |i| {
        of_kind(i, "turn.user").len() == 2
    })
    .await;
    control(&t.app, &t.s.id, API_KEY, json!({"action": "hangup"})).await;
    let before = t.fake.received.lock().unwrap().len();
    Mock::given(method("POST"))
        .and(path("/v1/realtime/calls"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("content-type", "application/sdp")
                .insert_header("location", "/v1/realtime/calls/rtc_third")
                .set_body_string("v=0\r\no=- answer\r\n"),
        )
        .with_priority(1)
        .mount(&t.model)
        .await;
    let url = t.app.url(&format!("/api/calls?session_id={}", t.s.id));
    assert_eq!(
        post_offer(&t.app.client, &url, &t.s.token)
            .await
            .unwrap()
            .status(),
        201
    );
    let got = t
        .fake
        .wait_for("the seed", |e| {
            e[before..].iter().any(|e| e["item"]["role"] == "system")
        })
        .await;
    let texts: Vec<&str> = got[before..]
        .iter()
        .filter(|e| e["item"]["role"] == "user")
        .map(|e| e["item"]["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["The latest question."]);
}

async fn execute(app: &TestApp, s: &Sess, tool: &str, args: Value) -> Value {
    let body = json!({"session_id": s.id, "tool": tool, "args": args});
    let resp = app
        .client
        .post(app.url("/api/tools/execute"))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, b) = split(resp).await;
    assert_eq!(st, 200, "{b}");
    b
}

const USER_SECRET: &str = "record-test-user-secret-of-32-bytes-or-more";

fn user_token(sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(USER_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn user_session(app: &TestApp, user: &str) -> Sess {
    let resp = app
        .client
        .get(app.url("/api/session2?scenario_id=retail&root_agent=salesAgent"))
        .bearer_auth(user_token(user))
        .send()
        .await
        .unwrap();
    let (st, b) = split(resp).await;
    assert_eq!(st, 200, "{b}");
    Sess {
        id: b["session_id"].as_str().unwrap().to_owned(),
        token: b["events"]["token"].as_str().unwrap().to_owned(),
        epoch: b["events"]["epoch"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn only_the_session_its_owner_and_the_server_may_read_or_erase_a_record() {
    let app = spawn_app_with(|c| {
        c.access.user_jwt_secret = Some(USER_SECRET.to_owned().into());
    })
    .await;
    let alice = user_session(&app, "alice").await;
    let bob = user_session(&app, "bob").await;
    execute(&app, &alice, "lookupNewSales", json!({"category": "boots"})).await;

    let ok = |b: &Value| kinds(b["items"].as_array().unwrap()) == ["tool.call"];
    let (st, b) = timeline(&app, &alice.id, Some(&alice.token), "").await;
    assert!(st == 200 && ok(&b), "{b}");
    assert_eq!(b["items"][0]["data"]["by"], "rest");
    let (st, b) = timeline(&app, &alice.id, Some(API_KEY), "").await;
    assert!(st == 200 && ok(&b), "{b}");
    let (st, b) = timeline(&app, &alice.id, Some(&user_token("alice")), "").await;
    assert!(st == 200 && ok(&b), "the owner: {b}");

    let (st, b) = timeline(&app, &alice.id, Some(&bob.token), "").await;
    assert_error(st, &b, 403, "forbidden");
    let (st, b) = timeline(&app, &alice.id, Some(&user_token("bob")), "").await;
    assert_error(st, &b, 403, "forbidden");
    let (st, b) = timeline(&app, &alice.id, None, "").await;
    assert_eq!(st, 401, "{b}");
    let (st, b) = timeline(&app, &alice.id, Some(&alice.token), "kinds=speech").await;
    assert_error(st, &b, 400, "invalid_query");
    let (st, b) = timeline(&app, &alice.id, Some(&alice.token), "limit=0").await;
    assert_error(st, &b, 400, "invalid_query");
    let (st, b) = timeline(
        &app,
        "00000000-0000-4000-8000-000000000000",
        Some(API_KEY),
        "",
    )
    .await;
    assert_error(st, &b, 404, "unknown_session");

    // The session list is the server's.
    let (st, b) = split(
        app.client
            .get(app.url("/api/sessions"))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, 403, "forbidden");
    let (st, b) = split(
        app.client
            .get(app.url("/api/sessions?sort=size"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(st, &b, 400, "invalid_query");

    // Erasure: bob may not, alice may; afterwards the timeline is 404 and stays so.
    let erase = |bearer: String| {
        let req = app
            .client
            .delete(app.url(&format!("/api/sessions/{}/record", alice.id)))
            .bearer_auth(bearer);
        async move {
            let resp = req.send().await.unwrap();
            let st = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (st, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let (st, b) = erase(user_token("bob")).await;
    assert_error(st, &b, 403, "forbidden");
    let (st, b) = erase(alice.token.clone()).await;
    assert_error(st, &b, 403, "forbidden");
    let (st, _) = erase(user_token("alice")).await;
    assert_eq!(st, 204);
    execute(
        &app,
        &alice,
        "lookupNewSales",
        json!({"category": "apparel"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // past a flush
    let (st, b) = timeline(&app, &alice.id, Some(API_KEY), "").await;
    assert_error(st, &b, 404, "unknown_session");
    let (st, b) = timeline(&app, &alice.id, Some(&alice.token), "").await;
    assert_error(st, &b, 404, "unknown_session");
}

#[tokio::test]
async fn the_session_list_filters_sorts_pages_and_exports() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let s = app.session_for("retail&root_agent=salesAgent").await;
        for _ in 0..=n {
            execute(&app, &s, "lookupNewSales", json!({"category": "boots"})).await;
        }
        ids.push(s);
    }
    let other = app.session_for("retailLive&root_agent=salesAgent").await;
    execute(&app, &other, "lookupNewSales", json!({"category": "boots"})).await;
    let list = |q: &'static str| {
        let req = app
            .client
            .get(app.url(&format!("/api/sessions?{q}")))
            .bearer_auth(API_KEY);
        async move { split(req.send().await.unwrap()).await }
    };
    let all = eventually("the list", Duration::from_secs(5), || async {
        let (st, b) = list("scenario=customerServiceRetail").await;
        (st == 200 && b["total"] == 3).then_some(b)
    })
    .await;
    let rows = all["sessions"].as_array().unwrap();
    assert_eq!(rows[0]["session_id"], ids[2].id.as_str(), "newest first");
    assert_eq!(rows[0]["tool_calls"], 3);
    assert_eq!(rows[0]["live"], false);
    assert!(rows.iter().all(|r| r["cost_usd"] == "0.00"));
    let (_, page) = list("scenario=customerServiceRetail&sort=-started&limit=2").await;
    let first: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[0].id.as_str(), ids[1].id.as_str()]);
    assert_eq!(page["next_offset"], 2);
    let (_, b) = list("from=2999-01-01T00:00:00Z").await;
    assert_eq!(b["total"], 0);
    let (st, b) = list("from=yesterday").await;
    assert_error(st, &b, 400, "invalid_query");

    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{}/timeline/export", ids[2].id)))
        .bearer_auth(&ids[2].token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["kind"] == "tool.call"));

    // Cursor pagination walks the same items.
    let (_, p1) = timeline(&app, &ids[2].id, Some(API_KEY), "limit=2").await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_u64().unwrap();
    let (_, p2) = timeline(
        &app,
        &ids[2].id,
        Some(API_KEY),
        &format!("limit=2&after={cursor}"),
    )
    .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_linked_server_agent_reads_the_calls_record_and_adds_its_own_turns() {
    use crate::sdk_sessions::{AgentSession, call, say};
    let mut t = setup("salesAgent").await;
    start_call(&mut t).await;
    user_says(&t, "u1", "My order number is SNP-20230914-001.");
    items_until(&t.app, &t.s.id, "the caller's turn", |i| {
        of_kind(i, "turn.user").len() == 1
    })
    .await;
    let body = json!({"realtime_session_id": t.s.id});
    let (st, b) = call(
        &t.app,
        "POST",
        "/api/sdk/session/create",
        Some(&t.s.token),
        body,
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let a = AgentSession {
        id: b["session_id"].as_str().unwrap().into(),
        token: b["token"].as_str().unwrap().into(),
    };
    let before = crate::support::model::model_requests(&t.model).await.len();
    say(
        &t.app,
        &a,
        r#"call:lookupOrders:{"phoneNumber":"+1 206 555 0100"}"#,
    )
    .await;
    let asked = crate::support::model::model_requests(&t.model).await;
    let seen = asked[before..].iter().any(|r| {
        r["input"][0]["role"] == "system"
            && r["input"][0]["content"]
                .as_str()
                .is_some_and(|c| c.contains("user: My order number is SNP-20230914-001."))
    });
    assert!(
        seen,
        "the server agent sees the call's record: {:?}",
        &asked[before..]
    );
    let items = items_until(&t.app, &t.s.id, "the server agent's turn", |i| {
        of_kind(i, "tool.call").len() == 1 && of_kind(i, "turn.assistant").len() == 1
    })
    .await;
    let tool = of_kind(&items, "tool.call")[0];
    assert_eq!(
        (tool["data"]["tool"].as_str(), tool["data"]["by"].as_str()),
        (Some("lookupOrders"), Some("server_agent"))
    );
    assert_eq!(tool["data"]["arguments"]["phoneNumber"], "+1 206 555 0100");
    let said = of_kind(&items, "turn.assistant")[0];
    assert_eq!(said["data"]["via"], "server_agent");
    assert_eq!(said["data"]["agent_session_id"], a.id.as_str());
}

#[tokio::test]
async fn with_redaction_on_personal_data_never_reaches_the_record() {
    let app = spawn_app_with(|c| c.record.redact = true).await;
    let s = app.session_for("retail&root_agent=returns").await;
    let r = execute(
        &app,
        &s,
        "lookupOrders",
        json!({"phoneNumber": "(206) 555-0100"}),
    )
    .await;
    assert_eq!(r["success"], true, "the tool itself sees the real number");
    let (st, b) = timeline(&app, &s.id, Some(API_KEY), "").await;
    assert_eq!(st, 200);
    let stored = b["items"][0]["data"].to_string();
    assert!(!stored.contains("555-0100"), "{stored}");
    assert_eq!(b["items"][0]["data"]["arguments"]["phoneNumber"], "[PHONE]");
}
