//! The access matrix: every session-scoped endpoint (REST, WebSocket, SSE, tools,
//! orchestrate, context, moderate, control, calls, agent sessions, token renewal) against
//! no token, another session's token, an expired token, and a revoked session's own token;
//! then the right token, which works.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::channel::{Sess, refused_with};
use crate::support::realtime::*;
use crate::support::*;

/// A refusal case: its name, the session in the path, the bearer, the expected status and
/// the accepted error codes.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, &'a [&'a str]);

/// One endpoint: how to call it for session `sid` with `bearer`.
struct Endpoint {
    name: &'static str,
    method: Method,
    path: fn(&str) -> String,
    body: fn(&str) -> Option<Value>,
    sdp: bool,
    /// Status with the right token.
    ok: u16,
}

fn endpoints() -> Vec<Endpoint> {
    fn none(_: &str) -> Option<Value> {
        None
    }
    vec![
        Endpoint {
            name: "session state",
            method: Method::GET,
            path: |s| format!("/api/sessions/{s}"),
            body: none,
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "event history",
            method: Method::GET,
            path: |s| format!("/api/sessions/{s}/events?since=0"),
            body: none,
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "token renewal",
            method: Method::POST,
            path: |s| format!("/api/sessions/{s}/token"),
            body: none,
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "tools/execute",
            method: Method::POST,
            path: |_| "/api/tools/execute".into(),
            body: |s| {
                Some(
                    json!({"tool": "lookupNewSales", "args": {"category": "boots"}, "session_id": s}),
                )
            },
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "orchestrate",
            method: Method::POST,
            path: |_| "/api/orchestrate".into(),
            body: |s| Some(json!({"session_id": s, "last_user_text": "I want to buy boots"})),
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "context snapshot",
            method: Method::POST,
            path: |_| "/api/context/snapshot".into(),
            body: |s| Some(json!({"session_id": s, "page": "checkout"})),
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "moderate",
            method: Method::POST,
            path: |_| "/api/moderate".into(),
            body: |s| Some(json!({"session_id": s, "text": "hello there"})),
            sdp: false,
            ok: 200,
        },
        Endpoint {
            name: "agent session create",
            method: Method::POST,
            path: |_| "/api/sdk/session/create".into(),
            body: |s| Some(json!({"realtime_session_id": s})),
            sdp: false,
            ok: 201,
        },
        Endpoint {
            name: "control",
            method: Method::POST,
            path: |s| format!("/api/sessions/{s}/control"),
            body: |_| Some(json!({"action": "switch_agent", "agent": "returns"})),
            sdp: false,
            ok: 409, // authorized; no call yet
        },
        Endpoint {
            name: "realtime call",
            method: Method::POST,
            path: |s| format!("/api/realtime/calls?session_id={s}"),
            body: none,
            sdp: true,
            ok: 201,
        },
        Endpoint {
            name: "hangup",
            method: Method::POST,
            path: |_| format!("/api/realtime/calls/{CALL_ID}/hangup"),
            body: none,
            sdp: false,
            ok: 200, // after the call above
        },
        Endpoint {
            name: "SSE stream",
            method: Method::GET,
            path: |s| format!("/api/sessions/{s}/stream"),
            body: none,
            sdp: false,
            ok: 200,
        },
    ]
}

async fn call(app: &TestApp, e: &Endpoint, sid: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .request(e.method.clone(), app.url(&(e.path)(sid)));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if e.sdp {
        req = req
            .header("content-type", "application/sdp")
            .body("v=0\r\no=- offer\r\n");
    } else if let Some(b) = (e.body)(sid) {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status < 300 {
        return (status, Value::Null); // SSE streams and SDP answers are not JSON
    }
    split(resp).await
}

#[tokio::test]
async fn every_session_scoped_endpoint_refuses_wrong_tokens_and_accepts_the_right_one() {
    let (_model, fake, app) = spawn_with_realtime(|c| {
        c.session_secret = Some(SESSION_SECRET.to_owned().into());
    })
    .await;
    let s = app.session_for("retail&root_agent=salesAgent").await;
    let other = app.session_for("retail").await;
    let revoked: Sess = app.session_for("retail").await;
    let resp = app
        .client
        .delete(app.url(&format!("/api/sessions/{}", revoked.id)))
        .bearer_auth(crate::support::channel::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let expired = forge_token(&s.id, -120, SESSION_SECRET);

    for e in endpoints() {
        let cases: [Case; 4] = [
            ("no token", &s.id, None, 401, &["unauthorized"]),
            (
                "another session's token",
                &s.id,
                Some(&other.token),
                // The hangup names no session: another session's token simply has no
                // such call.
                if e.name == "hangup" { 404 } else { 401 },
                &["unauthorized", "unknown_call"],
            ),
            (
                "an expired token",
                &s.id,
                Some(&expired),
                401,
                &["unauthorized", "session_expired"],
            ),
            (
                "a revoked session's token",
                &revoked.id,
                Some(&revoked.token),
                401,
                &["session_revoked", "session_expired"],
            ),
        ];
        for (case, sid, bearer, want, codes) in cases {
            let (st, body) = call(&app, &e, sid, bearer).await;
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                st == want && codes.contains(&code),
                "{} with {case}: {st} {body}",
                e.name
            );
        }
    }
    assert!(
        fake.attaches.lock().unwrap().is_empty(),
        "no refused call was created"
    );

    // The WebSocket: the same four cases as close codes, then the right token.
    let ws = |sid: &str, token: &str| format!("session_id={sid}&token={token}");
    assert_eq!(
        refused_with(&app, &format!("session_id={}", s.id)).await,
        Some(4001)
    );
    assert_eq!(
        refused_with(&app, &ws(&s.id, &other.token)).await,
        Some(4001)
    );
    assert_eq!(refused_with(&app, &ws(&s.id, &expired)).await, Some(4009));
    assert_eq!(
        refused_with(&app, &ws(&revoked.id, &revoked.token)).await,
        Some(4009)
    );
    let (_, welcome) = app.connect(&s, None).await;
    assert_eq!(welcome["type"], "welcome");

    // The right token works everywhere (in this order: the hangup needs the call).
    for e in endpoints() {
        let (st, body) = call(&app, &e, &s.id, Some(&s.token)).await;
        assert_eq!(st, e.ok, "{} with the right token: {body}", e.name);
        if e.name == "realtime call" {
            fake.wait_attaches(1).await;
        }
    }
}
