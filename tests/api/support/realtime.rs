//! A fake Realtime upstream: the HTTP call endpoints (on a wiremock server) and a WebSocket
//! server speaking the Realtime event protocol. It records every client event and every
//! attach, and sends scripted server events to whoever is attached.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The fake's call id.
pub const CALL_ID: &str = "rtc_test1";

/// The WebSocket half.
#[derive(Clone)]
pub struct FakeRealtime {
    /// `ws://127.0.0.1:<port>/v1/realtime`.
    pub ws_url: String,
    /// Client events received, in order.
    pub received: Arc<Mutex<Vec<Value>>>,
    /// `(authorization, query)` of every attach.
    pub attaches: Arc<Mutex<Vec<(String, String)>>>,
    /// The path of every attach (`/v1/realtime`, or a Live `/v1/live/sessions/{id}/attach`).
    pub paths: Arc<Mutex<Vec<String>>>,
    /// When each attach was attempted (refused ones too).
    pub attempts: Arc<Mutex<Vec<Instant>>>,
    /// How many of the next attaches to refuse with HTTP 503.
    pub refuse: Arc<std::sync::atomic::AtomicUsize>,
    /// Every attach (`true`) and every closed socket (`false`), with when, in order.
    pub timeline: Arc<Mutex<Vec<(bool, Instant)>>>,
    to_clients: broadcast::Sender<Option<Value>>,
}

impl FakeRealtime {
    /// Starts the WebSocket server.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (to_clients, _) = broadcast::channel(64);
        let fake = Self {
            ws_url: format!("ws://127.0.0.1:{port}/v1/realtime"),
            received: Arc::default(),
            attaches: Arc::default(),
            paths: Arc::default(),
            timeline: Arc::default(),
            attempts: Arc::default(),
            refuse: Arc::default(),
            to_clients,
        };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move {
                    let (attaches, attempts, refuse) =
                        (f.attaches.clone(), f.attempts.clone(), f.refuse.clone());
                    let paths = f.paths.clone();
                    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
                    let cb = move |req: &Request, resp: Response| {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let query = req.uri().query().unwrap_or_default().to_owned();
                        attempts.lock().unwrap().push(Instant::now());
                        use std::sync::atomic::Ordering::SeqCst;
                        if refuse
                            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            let mut no = tokio_tungstenite::tungstenite::http::Response::new(None);
                            *no.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::SERVICE_UNAVAILABLE;
                            return Err(no);
                        }
                        attaches.lock().unwrap().push((auth, query));
                        paths.lock().unwrap().push(req.uri().path().to_owned());
                        Ok(resp)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                        return;
                    };
                    f.timeline.lock().unwrap().push((true, Instant::now()));
                    let (mut sink, mut stream) = ws.split();
                    let mut events = f.to_clients.subscribe();
                    let _ = sink
                        .send(Message::text(
                            json!({"type": "session.created", "session": {}}).to_string(),
                        ))
                        .await;
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(Ok(Message::Text(t))) => {
                                    if let Ok(v) = serde_json::from_str(t.as_str()) {
                                        f.received.lock().unwrap().push(v);
                                    }
                                }
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                            ev = events.recv() => match ev {
                                Ok(Some(v)) => { let _ = sink.send(Message::text(v.to_string())).await; }
                                // `None` drops every attached socket.
                                Ok(None) | Err(_) => { let _ = sink.close().await; break; }
                            },
                        }
                    }
                    f.timeline.lock().unwrap().push((false, Instant::now()));
                });
            }
        });
        fake
    }

    /// Sends a server event to every attached sideband.
    pub fn emit(&self, ev: Value) {
        let _ = self.to_clients.send(Some(ev));
    }

    /// Drops every attached socket.
    pub fn drop_all(&self) {
        let _ = self.to_clients.send(None);
    }

    /// Waits until `n` attaches happened.
    pub async fn wait_attaches(&self, n: usize) {
        let what = format!("sideband attach #{n}");
        super::eventually(&what, Duration::from_secs(5), || async {
            (self.attaches.lock().unwrap().len() >= n).then_some(())
        })
        .await;
        // Let the attached socket subscribe to scripted events.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Sockets attached now.
    pub fn open(&self) -> usize {
        let t = self.timeline.lock().unwrap();
        t.iter().filter(|(a, _)| *a).count() - t.iter().filter(|(a, _)| !*a).count()
    }

    /// Waits until no socket is attached; returns when the last one closed.
    pub async fn wait_closed(&self) -> Instant {
        super::eventually(
            "the sideband socket closes",
            Duration::from_secs(5),
            || async {
                (self.open() == 0).then(|| self.timeline.lock().unwrap().last().unwrap().1)
            },
        )
        .await
    }

    /// Waits until the received client events satisfy `pred`; returns them.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let got = self.received.lock().unwrap().clone();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "timed out waiting for {what}; received {:?}",
            self.received.lock().unwrap()
        );
    }
}

/// A fake model (with the calls endpoint mounted), a fake Realtime WebSocket, and an app
/// online against both; `adjust` tunes the config further.
pub async fn spawn_with_realtime(
    adjust: impl FnOnce(&mut switchboard::config::Config) + Send + 'static,
) -> (MockServer, FakeRealtime, super::TestApp) {
    let model = super::model::fake_model().await;
    mount_calls(&model).await;
    let fake = FakeRealtime::start().await;
    let url = fake.ws_url.clone();
    let live = url.replace("/v1/realtime", "/v1/live/sessions");
    let app = super::spawn_online(&model, move |c| {
        c.realtime.ws_url = url;
        c.realtime.live_ws_url = live;
        adjust(c);
    })
    .await;
    (model, fake, app)
}

/// Mounts the HTTP call endpoints on `server`.
pub async fn mount_calls(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/realtime/calls"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("content-type", "application/sdp")
                .insert_header("location", format!("/v1/realtime/calls/{CALL_ID}"))
                .set_body_string("v=0\r\no=- answer\r\n"),
        )
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1/realtime/calls/[^/]+/hangup$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(server)
        .await;
}

/// POSTs a minimal SDP offer to a call endpoint `url` with the session token.
pub async fn post_offer(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
}

/// A function-call server event.
pub fn function_call(call_id: &str, name: &str, args: &str) -> Value {
    json!({"type": "response.function_call_arguments.done", "response_id": "resp_1", "item_id": "item_1",
           "call_id": call_id, "name": name, "arguments": args})
}

/// Client events of one type.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}
