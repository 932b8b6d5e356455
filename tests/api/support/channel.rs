//! Event-channel helpers: a real WebSocket client (tokio-tungstenite) and publishing
//! through the server API.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::TestApp;

/// The server API key the channel tests configure.
pub const API_KEY: &str = "test-server-api-key";

/// A WebSocket client connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bootstrapped session: id, token, epoch.
#[derive(Debug, Clone)]
pub struct Sess {
    pub id: String,
    pub token: String,
    pub epoch: String,
}

impl TestApp {
    /// Bootstraps a session and returns its id, token and epoch.
    pub async fn new_session(&self) -> Sess {
        self.session_for("simpleHandoff").await
    }

    /// Bootstraps a session with `query` (e.g. `retail&root_agent=salesAgent`) as
    /// `scenario_id=...`.
    pub async fn session_for(&self, query: &str) -> Sess {
        let b = self.session2(query).await;
        Sess {
            id: b["session_id"].as_str().unwrap().to_owned(),
            token: b["events"]["token"].as_str().unwrap().to_owned(),
            epoch: b["events"]["epoch"].as_str().unwrap().to_owned(),
        }
    }

    /// `ws://` URL of the channel with the given query.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/api/ws?{query}", self.port)
    }

    /// Opens a socket for `s` (optionally resuming) and returns it with its welcome frame.
    pub async fn connect(&self, s: &Sess, resume: Option<(u64, &str)>) -> (Ws, Value) {
        let mut q = format!("session_id={}&token={}", s.id, s.token);
        if let Some((since, epoch)) = resume {
            q.push_str(&format!("&since={since}&epoch={epoch}"));
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(self.ws_url(&q))
            .await
            .unwrap();
        let welcome = next_json(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "first frame: {welcome}");
        (ws, welcome)
    }

    /// `GET /api/sessions/{id}` with the session's token: status and body.
    pub async fn session_state(&self, s: &Sess) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(&format!("/api/sessions/{}", s.id)))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Publishes through `POST /api/sessions/{id}/events` and returns the answer.
    pub async fn publish(&self, sid: &str, kind: &str, data: Value) -> Value {
        let resp = self
            .client
            .post(self.url(&format!("/api/sessions/{sid}/events")))
            .bearer_auth(API_KEY)
            .json(&json!({"type": kind, "data": data}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            202,
            "publish refused: {:?}",
            resp.text().await
        );
        resp.json().await.unwrap()
    }
}

/// The next text frame as JSON (answers pings on the way), failing after 5 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5s")
            .expect("connection open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code (None if the socket just ended).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => panic!("no close within 10s"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Opens a socket with a raw query and returns the close code the server sends.
pub async fn refused_with(app: &TestApp, query: &str) -> Option<u16> {
    let (mut ws, _) = tokio_tungstenite::connect_async(app.ws_url(query))
        .await
        .unwrap();
    close_code(&mut ws).await
}

/// Sends a text frame.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}
