//! `GET /api/sessions/{id}/stream`: the same events over Server-Sent Events.
//!
//! The first event is `event: welcome` (same fields as the WebSocket welcome); every
//! envelope follows as an unnamed (`message`) event with `id:` = seq, so `onmessage` sees
//! them all. `Last-Event-ID` (what `EventSource` sends when it reconnects) or `?since=`
//! resumes, against the `epoch` in the query (`sse_url` from `session2` carries it). SSE
//! has no close codes, so a close is an `event: close` with `{code, reason}` before the
//! stream ends. Attach failures are plain HTTP errors in the JSON shape.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use proto_events::{CloseCode, CloseNotice};
use tokio::sync::mpsc;

use super::attach::{AttachRequest, Attached, ChannelQuery, attach, detach, still_attached};
use super::recovery::Admit;
use crate::error::{ApiError, Path, Query};
use crate::http::caller::bearer;
use crate::state::AppState;

/// Opens the stream.
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(mut q): Query<ChannelQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let epoch = q.epoch();
    let since = q
        .since
        .or_else(|| {
            headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .and_then(|s| s.trim().parse().ok());
    let req = AttachRequest {
        session_id: id,
        token: bearer(&headers).map(str::to_owned).or(q.token),
        since,
        epoch,
    };
    let attached = attach(&state, req).await.map_err(http_error)?;
    let (tx, rx) = mpsc::channel::<Event>(16);
    state.tasks.spawn(pump(state.clone(), attached, tx));
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(state.config.heartbeat))
        .into_response())
}

fn http_error(code: CloseCode) -> ApiError {
    match code {
        CloseCode::UnknownSession => ApiError::not_found(
            "unknown_session",
            "the session does not exist or has expired",
        ),
        CloseCode::SessionExpired => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session_expired",
            "the session token has expired, or the session was revoked",
        ),
        CloseCode::TryAgainLater => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "the event broker is unavailable; retry shortly",
        )
        .with_retry_after(1),
        _ => ApiError::unauthorized("the session token is missing or not valid for this session"),
    }
}

fn envelope_event(json: &str, seq: u64) -> Event {
    Event::default().id(seq.to_string()).data(json)
}

/// Feeds one SSE connection until it closes; leaves the hub when the client goes away.
async fn pump(state: AppState, attached: Attached, tx: mpsc::Sender<Event>) {
    let Attached {
        session,
        mut member,
        welcome,
        replay,
        mut seam,
        claims,
    } = attached;
    let welcome = Event::default()
        .event("welcome")
        .data(serde_json::to_string(&welcome).expect("welcome serializes"));
    let mut ok = tx.send(welcome).await.is_ok();
    for f in replay {
        if !ok {
            break;
        }
        ok = tx.send(envelope_event(f.text(), f.seq)).await.is_ok();
    }
    let close = if !ok {
        None
    } else {
        let heartbeat = state.config.heartbeat;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            tokio::select! {
                biased;
                code = &mut member.close => break code.ok(),
                () = tx.closed() => break None,
                _ = ticker.tick() => {
                    // The same check as the WebSocket loop: keeps the session alive, and
                    // ends the stream with the close notice when it is gone.
                    if let Some(code) = still_attached(&state, &session, &claims).await {
                        break Some(code);
                    }
                }
                frame = member.rx.recv() => {
                    let Some(frame) = frame else { break Some(CloseCode::SlowConsumer) };
                    match seam.admit(frame.seq) {
                        Admit::Deliver => {
                            if tx.send(envelope_event(frame.text(), frame.seq)).await.is_err() {
                                break None;
                            }
                        }
                        Admit::Duplicate => {}
                        Admit::Gap => break Some(CloseCode::HistoryLost),
                    }
                }
            }
        }
    };
    if let Some(code) = close {
        let notice = serde_json::to_string(&CloseNotice::from(code)).expect("notices serialize");
        let _ = tx.try_send(Event::default().event("close").data(notice));
    }
    detach(&state, &session, member.id).await;
}
