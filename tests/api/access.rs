//! Who may do what: anonymous access off by default in Redis mode, rate limits per IP and
//! per user, several server API keys at once, token renewal, and revocation across two
//! instances.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::channel::{API_KEY, close_code, next_json};
use crate::support::redis::{RedisServer, unique_prefix};
use crate::support::*;

const USER_SECRET: &str = "host-app-user-token-secret-0123456789";

fn rate(v: &str) -> Option<switchboard::config::Rate> {
    switchboard::config::parse_rate("test", v).unwrap()
}

fn user_token(sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": now + 600}),
        &EncodingKey::from_secret(USER_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn send(
    app: &TestApp,
    m: reqwest::Method,
    p: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(m, app.url(p));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn without_credentials_redis_mode_refuses_every_model_backed_call_before_the_upstream() {
    let redis = RedisServer::start(false).await;
    let model = upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200).set_body_json(client_secret_body()),
    )
    .await;
    let base = format!("{}/v1", model.uri());
    let app = spawn_redis_app(&redis, &unique_prefix(), move |c| {
        c.openai_api_key = Some(UPSTREAM_KEY.to_owned().into());
        c.openai_base_url = base;
        c.access.allow_anonymous = None; // Redis mode's default
    })
    .await;
    use reqwest::Method;
    let calls: [(Method, &str, Option<Value>); 7] = [
        (Method::GET, "/api/session", None),
        (Method::GET, "/api/session2?scenario_id=retail", None),
        (
            Method::POST,
            "/api/session2",
            Some(json!({"scenario_id": "retail"})),
        ),
        (
            Method::POST,
            "/api/responses",
            Some(json!({"model": "gpt-4o-mini", "input": "hi"})),
        ),
        (
            Method::POST,
            "/api/agent/run",
            Some(json!({"model": "gpt-4o-mini", "input": "hi"})),
        ),
        (
            Method::POST,
            "/api/moderate",
            Some(json!({"text": "hello"})),
        ),
        (
            Method::POST,
            "/api/tools/execute",
            Some(
                json!({"tool": "getNextResponseFromSupervisor", "args": {"relevantContextFromLastUserMessage": "hi"}}),
            ),
        ),
    ];
    for (m, p, body) in calls.iter().cloned() {
        let (st, e) = split(send(&app, m.clone(), p, None, body.clone()).await).await;
        assert_error(st, &e, 401, "unauthorized");
        // A placeholder key is not a credential either.
        let (st, e) = split(send(&app, m, p, Some("sk-placeholder"), body).await).await;
        assert_error(st, &e, 401, "unauthorized");
    }
    assert!(
        model
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing reached the upstream"
    );
    let (st, _) = split(send(&app, Method::GET, calls[1].1, Some(API_KEY), None).await).await;
    assert_eq!(st, 200, "the server API key may bootstrap");
}

#[tokio::test]
async fn rate_limits_per_ip_behind_a_trusted_proxy_and_per_user() {
    let app = spawn_app_with(|c| {
        c.access.rate_ip = rate("3/min");
        c.access.client_ip_header = Some("fly-client-ip".into());
        c.access.user_jwt_secret = Some(USER_SECRET.to_owned().into());
    })
    .await;
    let boot = |ip: &'static str, bearer: Option<String>| {
        let app = &app;
        async move {
            let mut req = app
                .client
                .get(app.url("/api/session2?scenario_id=retail"))
                .header("fly-client-ip", ip);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            req.send().await.unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(boot("203.0.113.7", None).await.status(), 200);
    }
    let limited = boot("203.0.113.7", None).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let (st, e) = split(limited).await;
    assert_error(st, &e, 429, "rate_limited");
    assert_eq!(
        boot("198.51.100.9", None).await.status(),
        200,
        "another client IP has its own budget"
    );

    let per_user = spawn_app_with(|c| {
        c.access.rate_ip = None;
        c.access.rate_user = rate("2/min");
        c.access.user_jwt_secret = Some(USER_SECRET.to_owned().into());
    })
    .await;
    let go = |bearer: String| {
        let app = &per_user;
        async move {
            app.client
                .get(app.url("/api/session2?scenario_id=retail"))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(go(user_token("alice")).await, 200);
    assert_eq!(go(user_token("alice")).await, 200);
    assert_eq!(
        go(user_token("alice")).await,
        429,
        "alice is over her limit"
    );
    assert_eq!(go(user_token("bob")).await, 200, "bob is not");
}

#[tokio::test]
async fn several_api_keys_are_accepted_at_once() {
    let app = spawn_app_with(|c| {
        c.api_keys = vec![
            "old-key-being-retired".to_owned().into(),
            "new-key-rolled-out".to_owned().into(),
        ];
    })
    .await;
    let s = app.new_session().await;
    for (key, want) in [
        ("old-key-being-retired", 202),
        ("new-key-rolled-out", 202),
        ("new-key-rolled-ou", 401),
        ("new-key-rolled-outX", 401),
    ] {
        let resp = send(
            &app,
            reqwest::Method::POST,
            &format!("/api/sessions/{}/events", s.id),
            Some(key),
            Some(json!({"type": "x.ping", "data": {}})),
        )
        .await;
        assert_eq!(resp.status().as_u16(), want, "{key}");
    }
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires_and_the_old_one_stays_valid() {
    let app = spawn_app_with(|c| c.session_secret = Some(SESSION_SECRET.to_owned().into())).await;
    let s = app.new_session().await;
    let other = app.new_session().await;
    let renew = |bearer: String, id: String| {
        let app = &app;
        async move {
            split(
                send(
                    app,
                    reqwest::Method::POST,
                    &format!("/api/sessions/{id}/token"),
                    Some(&bearer),
                    None,
                )
                .await,
            )
            .await
        }
    };
    let (st, fresh) = renew(s.token.clone(), s.id.clone()).await;
    assert_eq!(st, 200, "{fresh}");
    let new_token = fresh["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, s.token);
    assert!(fresh["expires_at"].as_u64().unwrap() > 0);
    for t in [&s.token, &new_token] {
        let resp = send(
            &app,
            reqwest::Method::GET,
            &format!("/api/sessions/{}", s.id),
            Some(t),
            None,
        )
        .await;
        assert_eq!(resp.status(), 200, "both tokens work");
    }
    let (st, e) = renew(other.token.clone(), s.id.clone()).await;
    assert_error(st, &e, 401, "unauthorized");
    let expired = forge_token(&s.id, -120, SESSION_SECRET);
    let (st, e) = renew(expired, s.id.clone()).await;
    assert_error(st, &e, 401, "unauthorized");
    let (st, _) = renew(API_KEY.to_owned(), s.id.clone()).await;
    assert_eq!(st, 200, "the server API key may renew");
}

#[tokio::test]
async fn revoking_through_one_instance_closes_sockets_on_another_and_refuses_the_tokens() {
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let users = |c: &mut switchboard::config::Config| {
        c.access.user_jwt_secret = Some(USER_SECRET.to_owned().into());
    };
    let a = spawn_redis_app(&redis, &prefix, users).await;
    let b = spawn_redis_app(&redis, &prefix, users).await;
    // Alice bootstraps on A with her user token; her browser's socket is on B.
    let resp = send(
        &a,
        reqwest::Method::GET,
        "/api/session2?scenario_id=retail",
        Some(&user_token("alice")),
        None,
    )
    .await;
    let (st, boot) = split(resp).await;
    assert_eq!(st, 200, "{boot}");
    let s = crate::support::channel::Sess {
        id: boot["session_id"].as_str().unwrap().to_owned(),
        token: boot["events"]["token"].as_str().unwrap().to_owned(),
        epoch: boot["events"]["epoch"].as_str().unwrap().to_owned(),
    };
    let (mut ws, welcome) = b.connect(&s, None).await;
    assert_eq!(welcome["instance_id"], b.state.instance_id.as_str());
    a.publish(&s.id, "x.before", json!({})).await;
    assert_eq!(next_json(&mut ws).await["type"], "x.before");

    let (st, e) = delete(&a, &s.id, None).await;
    assert_error(st, &e, 401, "unauthorized");
    let (st, e) = delete(&a, &s.id, Some(s.token.clone())).await;
    assert_error(st, &e, 403, "forbidden");
    let (st, e) = delete(&a, &s.id, Some(user_token("bob"))).await;
    assert_error(st, &e, 403, "forbidden");
    let (st, _) = delete(&a, &s.id, Some(user_token("alice"))).await;
    assert_eq!(st, 204, "the owning user revokes her session");

    assert_eq!(
        close_code(&mut ws).await,
        Some(4009),
        "B closed the socket 4009"
    );
    // Later use of the token is refused everywhere.
    let q = format!("session_id={}&token={}", s.id, s.token);
    assert_eq!(
        crate::support::channel::refused_with(&b, &q).await,
        Some(4009)
    );
    for app in [&a, &b] {
        let resp = send(
            app,
            reqwest::Method::GET,
            &format!("/api/sessions/{}", s.id),
            Some(&s.token),
            None,
        )
        .await;
        let (st, e) = split(resp).await;
        assert_error(st, &e, 401, "session_revoked");
        let resp = send(
            app,
            reqwest::Method::POST,
            &format!("/api/sessions/{}/token", s.id),
            Some(&s.token),
            None,
        )
        .await;
        let (st, e) = split(resp).await;
        assert_error(st, &e, 401, "session_revoked");
    }
    // State and history are gone from Redis; revoking again is not an error.
    let (st, _) = delete(&b, &s.id, Some(API_KEY.to_owned())).await;
    assert_eq!(st, 204);
    let sid: switchboard::domain::SessionId = s.id.parse().unwrap();
    assert!(a.state.store.get(&sid).await.unwrap().is_none());
    assert!(a.state.broker.top(&sid).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.state.hub.connection_count(), 0);
}

/// `DELETE /api/sessions/{id}`; the body is `null` for a 204.
async fn delete(app: &TestApp, id: &str, bearer: Option<String>) -> (u16, Value) {
    let resp = send(
        app,
        reqwest::Method::DELETE,
        &format!("/api/sessions/{id}"),
        bearer.as_deref(),
        None,
    )
    .await;
    if resp.status() == 204 {
        assert!(resp.bytes().await.unwrap().is_empty());
        return (204, Value::Null);
    }
    split(resp).await
}
