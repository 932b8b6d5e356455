//! Agent sessions in Redis mode: memory shared across instances, the turn lock across
//! instances (and when its holder is killed), and interop with the OpenAI Agents SDK's own
//! `RedisSession` (Python, `openai-agents` from PyPI) on the same keys.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::python_sdk::python;
use crate::sdk_sessions::{AgentSession, call, create, say, transcript};
use crate::support::model::{fake_model, model_requests};
use crate::support::redis::{RedisServer, spawn_instance_process, unique_prefix};
use crate::support::*;

fn memory_prefix(prefix: &str) -> String {
    format!("{prefix}:agents:session")
}

async fn instance(redis: &RedisServer, prefix: &str, model: &wiremock::MockServer) -> TestApp {
    let (base, mp) = (format!("{}/v1", model.uri()), memory_prefix(prefix));
    spawn_redis_app(redis, prefix, move |c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = base;
        c.upstream_timeout = Duration::from_secs(5);
        c.agents.memory_prefix = mp;
        c.agents.lock_ttl = Duration::from_secs(2);
    })
    .await
}

#[tokio::test]
async fn turns_on_two_instances_share_one_memory_and_queue_on_one_lock() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    let a = instance(&redis, &prefix, &model).await;
    let b = instance(&redis, &prefix, &model).await;
    let s = create(&a, json!({"instructions": "x"})).await;
    assert_eq!(
        say(&a, &s, "first on A").await["final_output"],
        "reply 1: first on A"
    );
    assert_eq!(
        say(&b, &s, "second on B").await["final_output"],
        "reply 2: second on B"
    );
    assert_eq!(transcript(&b, &s).await, transcript(&a, &s).await);
    // Concurrent turns on different instances: whole turns, one after the other.
    let (r1, r2) = tokio::join!(say(&a, &s, "slow x"), say(&b, &s, "slow y"));
    let mut replies = [
        r1["final_output"].as_str().unwrap().to_owned(),
        r2["final_output"].as_str().unwrap().to_owned(),
    ];
    replies.sort();
    assert!(
        replies[0].starts_with("reply 3: ") && replies[1].starts_with("reply 4: "),
        "the later turn saw the earlier one: {replies:?}"
    );
    let items = transcript(&a, &s).await;
    assert_eq!(items.len(), 8);
    for pair in items.chunks(2) {
        assert_eq!(pair[0]["role"], "user");
        assert_eq!(pair[1]["type"], "message", "{items:?}");
    }
}

#[tokio::test]
async fn the_lock_of_a_killed_instance_expires_and_the_next_turn_runs() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    let a = instance(&redis, &prefix, &model).await;
    let (mut doomed, port) = spawn_instance_process(
        &redis,
        &prefix,
        &[
            ("SWITCHBOARD_MEMORY_PREFIX", memory_prefix(&prefix)),
            ("SWITCHBOARD_AGENT_LOCK_TTL", "2s".into()),
            ("OPENAI_API_KEY", UPSTREAM_KEY.into()),
            ("OPENAI_BASE_URL", format!("{}/v1", model.uri())),
            ("SWITCHBOARD_UPSTREAM_TIMEOUT", "120s".into()),
        ],
    );
    let s = create(&a, json!({"instructions": "x"})).await;
    say(&a, &s, "before").await;
    // The doomed instance takes the lock and hangs in its model call.
    let url = format!("http://127.0.0.1:{port}/api/sdk/session/message");
    let client = reqwest::Client::new();
    let body = json!({"session_id": s.id, "user_input": "hang forever"});
    let hung = {
        let (client, url, token, body) =
            (client.clone(), url.clone(), s.token.clone(), body.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                if client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut waited = 0;
    while !model_requests(&model)
        .await
        .iter()
        .any(|r| r.to_string().contains("hang forever"))
    {
        waited += 1;
        assert!(waited < 200, "the doomed instance never reached the model");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    hung.abort();
    let started = Instant::now();
    let r = say(&a, &s, "after").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(8),
        "the turn waited for the dead holder's lock to expire, then ran: {waited:?}"
    );
    assert_eq!(
        r["final_output"], "reply 2: after",
        "the hung turn wrote nothing"
    );
    assert_eq!(transcript(&a, &s).await.len(), 4);
}

/// Runs one step of `tests/python/agents_sdk_check.py` and returns its JSON output.
async fn py(
    redis: &RedisServer,
    prefix: &str,
    s: &AgentSession,
    model: &str,
    args: &[&str],
) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/agents_sdk_check.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg(script)
            .args(args)
            .env("REDIS_URL", redis.url())
            .env("KEY_PREFIX", memory_prefix(prefix))
            .env("AGENT_SESSION_ID", &s.id)
            .env("OPENAI_BASE_URL", format!("{model}/v1"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python step finished in time")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

#[tokio::test]
async fn the_agents_sdk_redis_session_and_switchboard_share_one_conversation() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let model = fake_model().await;
    let uri = model.uri();
    let app = instance(&redis, &prefix, &model).await;
    let s = create(&app, json!({"instructions": "Answer briefly."})).await;
    say(&app, &s, "hello").await;
    say(&app, &s, "second").await;

    // What we wrote, the SDK reads: in order and unchanged.
    let ours = transcript(&app, &s).await;
    assert_eq!(py(&redis, &prefix, &s, &uri, &["read"]).await, json!(ours));
    assert_eq!(
        py(&redis, &prefix, &s, &uri, &["read", "2"]).await,
        json!(ours[2..])
    );

    // What the SDK adds, we show and send upstream with the next turn.
    let note = json!({"role": "user", "content": "note from python"});
    py(
        &redis,
        &prefix,
        &s,
        &uri,
        &["add", &json!([note]).to_string()],
    )
    .await;
    assert_eq!(transcript(&app, &s).await.last(), Some(&note));
    assert_eq!(
        say(&app, &s, "third").await["final_output"],
        "reply 4: third"
    );
    let sent = model_requests(&model).await;
    assert_eq!(sent.last().unwrap()["input"][4], note);

    // A whole SDK run (Runner + RedisSession) continues the same conversation.
    let answer = py(&redis, &prefix, &s, &uri, &["run", "from the sdk"]).await;
    assert_eq!(
        answer, "reply 5: from the sdk",
        "the SDK's run saw our memory"
    );
    assert_eq!(
        say(&app, &s, "fourth").await["final_output"],
        "reply 6: fourth"
    );

    // pop_item from Python is seen by us; our pop is seen by Python.
    let popped = py(&redis, &prefix, &s, &uri, &["pop"]).await;
    assert_eq!(popped["content"][0]["text"], "reply 6: fourth");
    let now = transcript(&app, &s).await;
    assert_eq!(
        now.last().unwrap(),
        &json!({"role": "user", "content": "fourth"})
    );
    let (st, _) = call(
        &app,
        "POST",
        "/api/sdk/session/pop",
        Some(&s.token),
        json!({"session_id": s.id}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        py(&redis, &prefix, &s, &uri, &["read"]).await,
        json!(now[..now.len() - 1])
    );

    // clear_session from either side.
    let (st, _) = call(
        &app,
        "DELETE",
        &format!("/api/sdk/session/transcript?session_id={}", s.id),
        Some(&s.token),
        Value::Null,
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(py(&redis, &prefix, &s, &uri, &["read"]).await, json!([]));
    say(&app, &s, "again").await;
    py(&redis, &prefix, &s, &uri, &["clear"]).await;
    assert!(transcript(&app, &s).await.is_empty());
    assert_eq!(
        say(&app, &s, "still here").await["final_output"],
        "reply 1: still here"
    );
}
