//! `GET /api/ws`: the WebSocket endpoint, one function per connection.
//!
//! The upgrade always completes; authentication failures are then reported with a close
//! code (4001/4004/4009), which a browser can read (it cannot read a refused handshake's
//! status). [`run`] is one `tokio::select!` over the close signal, live events, inbound
//! frames and the heartbeat.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use proto_events::{ClientCommand, CloseCode, ErrorFrame, Pong};
use tokio::time::Instant;

use super::attach::{AttachRequest, Attached, ChannelQuery, attach, detach, still_attached};
use super::recovery::Admit;
use crate::state::AppState;

/// Upgrades and serves the connection.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(mut q): Query<ChannelQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = state.config.max_frame;
    let req = AttachRequest {
        since: q.since(),
        epoch: q.epoch(),
        session_id: q.session_id.unwrap_or_default(),
        token: q.token,
    };
    // The socket reads messages up to `READ_CAP` so that an oversize one (over `max`) is
    // consumed and answered with 1009 while the connection stays orderly; past the cap the
    // frame is refused unread (still 1009, best effort).
    let cap = max.max(READ_CAP);
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(socket, state, req))
}

async fn serve(mut socket: WebSocket, state: AppState, req: AttachRequest) {
    match attach(&state, req).await {
        Ok(attached) => {
            let session = attached.session.clone();
            let id = attached.member.id;
            run(socket, &state, attached).await;
            detach(&state, &session, id).await;
        }
        Err(code) => {
            let _ = socket.send(close_message(code)).await;
        }
    }
}

fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(code.reason()),
    }))
}

/// A broker frame as a WebSocket text message (the bytes are shared, not copied).
fn frame_message(frame: crate::broker::Frame) -> Message {
    // Frames are built from `String`s, so the check cannot fail; an empty text stands in.
    Message::Text(Utf8Bytes::try_from(frame.json.clone()).unwrap_or_default())
}

fn json_message<T: serde::Serialize>(v: &T) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(v).expect("protocol frames serialize"),
    ))
}

/// The connection loop. Returns when the connection is over.
async fn run(socket: WebSocket, state: &AppState, attached: Attached) {
    let Attached {
        session,
        mut member,
        welcome,
        replay,
        mut seam,
        claims,
    } = attached;
    let max_frame = state.config.max_frame;
    let (mut tx, mut rx) = socket.split();
    if tx.feed(json_message(&welcome)).await.is_err() {
        return;
    }
    for f in replay {
        if tx.feed(frame_message(f)).await.is_err() {
            return;
        }
    }
    if tx.flush().await.is_err() {
        return;
    }
    let heartbeat = state.config.heartbeat;
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut last_seen = Instant::now();
    let close = loop {
        tokio::select! {
            biased;
            code = &mut member.close => break code.ok(),
            frame = member.rx.recv() => {
                let Some(frame) = frame else { break Some(CloseCode::SlowConsumer) };
                if let Step::End(code) = deliver(&mut tx, &mut member.rx, &mut seam, frame).await {
                    break code;
                }
            }
            msg = rx.next() => {
                last_seen = Instant::now();
                if let Step::End(code) = on_client(&mut tx, msg, max_frame).await {
                    break code;
                }
            }
            _ = ticker.tick() => {
                if let Some(code) = still_attached(state, &session, &claims).await {
                    break Some(code);
                }
                if last_seen.elapsed() > heartbeat * 2 {
                    tracing::info!(session_id = %session, "dropping a silent client");
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: 1001,
                        reason: Utf8Bytes::from_static("heartbeat timeout"),
                    }))).await;
                    break None;
                }
                if tx.send(Message::Ping(Default::default())).await.is_err() { break None; }
            }
        }
    };
    if let Some(code) = close {
        // A slow consumer may not read this promptly; do not wait long for it.
        let _ = tokio::time::timeout(Duration::from_secs(2), tx.send(close_message(code))).await;
        if code == CloseCode::MessageTooBig {
            linger(&mut rx).await;
        }
    }
}

type Tx = futures_util::stream::SplitSink<WebSocket, Message>;

/// What the loop does after one step.
enum Step {
    /// Go on.
    Continue,
    /// End the connection, with this close code (none: the socket is gone).
    End(Option<CloseCode>),
}

/// Sends a live frame and whatever else is already queued, in one flush, in `seq` order
/// (duplicates of the replay dropped; a gap ends the connection with 4013).
async fn deliver(
    tx: &mut Tx,
    queue: &mut tokio::sync::mpsc::Receiver<crate::broker::Frame>,
    seam: &mut super::recovery::Seam,
    frame: crate::broker::Frame,
) -> Step {
    match seam.admit(frame.seq) {
        Admit::Deliver => {}
        Admit::Duplicate => return Step::Continue,
        Admit::Gap => return Step::End(Some(CloseCode::HistoryLost)),
    }
    if tx.feed(frame_message(frame)).await.is_err() {
        return Step::End(None);
    }
    let mut gap = false;
    while let Ok(next) = queue.try_recv() {
        match seam.admit(next.seq) {
            Admit::Deliver => {
                if tx.feed(frame_message(next)).await.is_err() {
                    break;
                }
            }
            Admit::Duplicate => {}
            Admit::Gap => {
                gap = true;
                break;
            }
        }
    }
    if tx.flush().await.is_err() {
        return Step::End(None);
    }
    if gap {
        Step::End(Some(CloseCode::HistoryLost))
    } else {
        Step::Continue
    }
}

/// Answers one client frame: `ping` with `pong`, anything else with an error frame; an
/// oversize frame ends the connection with 1009.
async fn on_client(
    tx: &mut Tx,
    msg: Option<Result<Message, axum::Error>>,
    max_frame: usize,
) -> Step {
    let reply = match msg {
        None | Some(Ok(Message::Close(_))) => return Step::End(None),
        Some(Ok(Message::Text(t))) if t.len() > max_frame => {
            return Step::End(Some(CloseCode::MessageTooBig));
        }
        Some(Ok(Message::Binary(b))) if b.len() > max_frame => {
            return Step::End(Some(CloseCode::MessageTooBig));
        }
        Some(Err(e)) => {
            // Past the read cap the socket refuses the frame unread (see `READ_CAP`).
            let text = e.to_string();
            let too_big = text.contains("too long") || text.contains("too big");
            return Step::End(too_big.then_some(CloseCode::MessageTooBig));
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Step::Continue,
        Some(Ok(Message::Text(text))) => match ClientCommand::parse(text.as_str()) {
            Ok(ClientCommand::Ping { id }) => json_message(&Pong { id }),
            Err(e) => json_message(&e.to_frame()),
        },
        Some(Ok(Message::Binary(_))) => json_message(&ErrorFrame {
            code: "binary_not_supported".into(),
            message: "send commands as JSON text frames".into(),
        }),
    };
    if tx.send(reply).await.is_err() {
        Step::End(None)
    } else {
        Step::Continue
    }
}

/// Keeps a connection open briefly after the 1009 close frame was sent for an oversize
/// frame. The client is usually still sending that frame; dropping the socket now, with its
/// bytes unread, makes the kernel answer with a reset, and a client that had not yet read
/// the close frame loses it (it sees 1006 instead of 1009). Waiting until the client closes
/// its side, or [`LINGER`] at most, lets it read the frame first.
async fn linger(rx: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            match rx.next().await {
                None | Some(Ok(Message::Close(_))) => return,
                // The oversize frame is still in the read buffer: tungstenite reports it
                // again; wait a little instead of spinning on it.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
}

/// Largest client message read (and discarded) to answer an oversize one cleanly.
const READ_CAP: usize = 4 * 1024 * 1024;

/// Longest wait for the client after an oversize frame's close.
const LINGER: Duration = Duration::from_secs(1);
