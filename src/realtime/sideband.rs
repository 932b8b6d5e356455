//! The sideband: one task per held call, attached to the call's Realtime WebSocket with the
//! standard key, in one `select!` loop over the upstream socket, control commands, and the
//! lease. The lease is renewed by its own task every third of its TTL; a renewal that fails
//! (lost, or Redis unreachable for longer than a third of the TTL) stops the sideband before
//! any other instance may take over. A dropped socket is re-attached with backoff from
//! 100 ms; an upstream that no longer knows the call (HTTP 404 on attach) ends it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument;

use std::sync::Arc;

use super::CallDeps;
use super::handler::{Call, Command};
use super::lease::Lease;
use crate::config::VoiceApi;
use crate::domain::SessionId;
use crate::telemetry;

/// A command and where to send its outcome.
pub type Envelope = (
    Command,
    oneshot::Sender<Result<(), super::handler::CommandError>>,
);

/// Attaches to a call's upstream once, sends `ev` and detaches: a hang-up for a GPT-Live call
/// that no instance holds. False when the upstream could not be reached.
pub(crate) async fn send_once(deps: &CallDeps, call_id: &str, ev: &serde_json::Value) -> bool {
    let Attach::Ws(ws) = attach(deps, call_id).await else {
        return false;
    };
    let mut ws = *ws;
    let sent = ws.send(Message::text(ev.to_string())).await.is_ok();
    let _ = ws.close(None).await;
    sent
}

enum Attach {
    Ws(Box<UpstreamSocket>),
    Gone,
    Retry(String),
}

async fn attach(deps: &CallDeps, call_id: &str) -> Attach {
    let Some(key) = deps.api_key.as_ref() else {
        return Attach::Gone;
    };
    let url = match VoiceApi::of_call_id(call_id) {
        VoiceApi::Realtime => format!("{}?call_id={call_id}", deps.realtime.ws_url),
        VoiceApi::Live => format!("{}/{call_id}/attach", deps.realtime.live_ws_url),
    };
    let mut req = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Attach::Retry(e.to_string()),
    };
    use secrecy::ExposeSecret;
    let auth = format!("Bearer {}", key.expose_secret());
    match auth.parse() {
        Ok(v) => {
            req.headers_mut().insert("authorization", v);
        }
        Err(_) => return Attach::Gone,
    }
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Ok(Ok((ws, _))) => Attach::Ws(Box::new(ws)),
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status() == 404 => Attach::Gone,
        Ok(Err(e)) => Attach::Retry(e.to_string()),
        Err(_) => Attach::Retry("attach timed out".into()),
    }
}

/// Renews `lease` until it is lost; flips `lost` then.
fn spawn_renewal(
    state: Arc<CallDeps>,
    sid: SessionId,
    lease: Lease,
    lost: watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    let ttl = state.realtime.lease_ttl;
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            let renewed =
                tokio::time::timeout(ttl / 3, state.calls.leases.renew(&sid, &lease, ttl)).await;
            match renewed {
                Ok(Ok(true)) => {}
                other => {
                    tracing::warn!(session_id = %sid, outcome = ?other.map(|r| r.map_err(|e| e.to_string())), "call lease lost; stopping the sideband");
                    let _ = lost.send(true);
                    return;
                }
            }
        }
    })
}

/// Starts the sideband for a call whose lease this instance holds.
pub fn spawn(state: Arc<CallDeps>, sid: SessionId, call_id: String, lease: Lease) {
    let (tx, rx) = mpsc::channel::<Envelope>(16);
    if state.tasks.is_stopping() {
        return; // handing over: leave the call to another instance
    }
    state.calls.local.insert(sid.clone(), tx);
    let tasks = state.tasks.clone();
    tasks.spawn_cooperative(run(state, sid, call_id, lease, rx));
}

async fn run(
    state: Arc<CallDeps>,
    sid: SessionId,
    call_id: String,
    lease: Lease,
    mut rx: mpsc::Receiver<Envelope>,
) {
    let (lost_tx, mut lost) = watch::channel(false);
    let stop = state.tasks.token().clone();
    let renewal = spawn_renewal(state.clone(), sid.clone(), lease.clone(), lost_tx);
    let mut call = Call::new(state.clone(), sid.clone(), call_id.clone());
    let mut outbox = call.take_outbox().expect("a new call has its outbox");
    call.resume().await;
    call.seed().await;
    let mut backoff = Duration::from_millis(100);
    tracing::info!(session_id = %sid, call_id, fence = lease.fence, "sideband holding the call");
    'attach: while !call.ended() && !*lost.borrow() {
        let ws = match attach(&state, &call_id).await {
            Attach::Ws(ws) => {
                backoff = Duration::from_millis(100);
                ws
            }
            Attach::Gone => {
                call.end("upstream_gone").await;
                break;
            }
            Attach::Retry(e) => {
                tracing::warn!(call_id, error = %e, retry_in = ?backoff, "sideband attach failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = lost.changed() => {}
                    () = stop.cancelled() => break 'attach,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let io = Io {
            rx: &mut rx,
            outbox: &mut outbox,
            lost: &mut lost,
            stop: &stop,
        };
        match serve(*ws, &mut call, io).await {
            Detached::Reattach => continue 'attach,
            Detached::Stop => break 'attach,
        }
    }
    renewal.abort();
    state.calls.local.remove(&sid);
    if !*lost.borrow()
        && let Err(e) = state.calls.leases.release(&sid, &lease).await
    {
        tracing::warn!(error = %e, "releasing a call lease failed; it expires by itself");
    }
    tracing::info!(session_id = %sid, call_id, ended = call.ended(), "sideband stopped");
}

/// Why [`serve`] let go of the upstream socket.
enum Detached {
    /// The socket dropped: attach again.
    Reattach,
    /// The call ended, the lease was lost, or this instance is handing over.
    Stop,
}

type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the sideband loop listens to besides the socket.
struct Io<'a> {
    /// Control commands.
    rx: &'a mut mpsc::Receiver<Envelope>,
    /// Client events from the call's background work.
    outbox: &'a mut mpsc::UnboundedReceiver<serde_json::Value>,
    /// Flips when the lease is lost.
    lost: &'a mut watch::Receiver<bool>,
    /// Cancelled to hand the call over.
    stop: &'a tokio_util::sync::CancellationToken,
}

/// How often the call's periodic work runs (Live turns that went quiet).
const TICK: Duration = Duration::from_millis(250);

/// Runs one attached upstream socket: server events, control commands and background client
/// events through the call, their client events out, until the socket drops or the sideband
/// must stop.
async fn serve(ws: UpstreamSocket, call: &mut Call, io: Io<'_>) -> Detached {
    let Io {
        rx,
        outbox,
        lost,
        stop,
    } = io;
    let call_id = call.call_id().to_owned();
    let (mut sink, mut stream) = ws.split();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let out = tokio::select! {
            Some(ev) = outbox.recv() => vec![ev],
            _ = tick.tick() => match while_held(lost, call.on_tick()).await {
                Some(out) => out,
                None => return Detached::Stop,
            },
            _ = lost.changed() => return Detached::Stop,
            // Handing over: stop between events; the lease is released by the caller, so
            // another instance re-attaches at once.
            () = stop.cancelled() => return Detached::Stop,
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str(t.as_str()) {
                    Ok(ev) => {
                        let work = call
                            .on_event(&ev)
                            .instrument(telemetry::background_span("sideband.event"));
                        match while_held(lost, work).await {
                            Some(out) => out,
                            None => return Detached::Stop,
                        }
                    }
                    Err(_) => vec![],
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    tracing::info!(call_id, "sideband socket closed; re-attaching");
                    return Detached::Reattach;
                }
                Some(Ok(_)) => vec![],
            },
            cmd = rx.recv() => match cmd {
                Some((cmd, reply)) => {
                    let work = call
                        .on_command(cmd)
                        .instrument(telemetry::background_span("sideband.command"));
                    match while_held(lost, work).await {
                        Some(Ok(out)) => { let _ = reply.send(Ok(())); out }
                        Some(Err(e)) => { let _ = reply.send(Err(e)); vec![] }
                        // The reply is dropped: the caller sees the owner as gone.
                        None => return Detached::Stop,
                    }
                }
                None => return Detached::Stop,
            },
        };
        if *lost.borrow() {
            return Detached::Stop; // never act after the lease is gone
        }
        for ev in out {
            if sink.send(Message::text(ev.to_string())).await.is_err() {
                return Detached::Reattach;
            }
        }
        if call.ended() {
            let _ = sink.close().await;
            return Detached::Stop;
        }
    }
}

/// Runs one piece of the call's work unless the lease is lost first: then the work is dropped
/// where it stands (`None`). A handler waiting on an unreachable store must not keep the
/// socket open past the lease, or the old and the new owner would hold the call together.
async fn while_held<T>(
    lost: &mut watch::Receiver<bool>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    if *lost.borrow() {
        return None;
    }
    tokio::select! {
        biased;
        out = work => Some(out),
        _ = lost.changed() => None,
    }
}

/// Adopts orphaned calls (no live lease) every half lease TTL, on every instance.
/// Wakes early when another instance announces a hand-over; stops with the call tasks.
pub fn spawn_janitor(state: Arc<CallDeps>) {
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let period = state.realtime.lease_ttl / 2;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                () = state.adopt_now.notified() => {}
            }
            adopt_orphans(&state).await;
        }
    });
}

/// One janitor pass.
pub async fn adopt_orphans(state: &Arc<CallDeps>) {
    if state.tasks.is_stopping() {
        return;
    }
    let calls = match state.calls.leases.calls().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "janitor cannot list calls");
            return;
        }
    };
    for (sid, call_id) in calls {
        if state.calls.local.contains_key(&sid) {
            continue;
        }
        match state.sessions.store.get(&sid).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = state.calls.leases.unregister(&sid).await; // the session expired
                continue;
            }
            Err(_) => continue,
        }
        if let Ok(Some(lease)) = state
            .calls
            .leases
            .acquire(&sid, &state.instance_id, state.realtime.lease_ttl)
            .await
        {
            tracing::info!(session_id = %sid, call_id, "adopting an orphaned call");
            spawn(state.clone(), sid, call_id, lease);
        }
    }
}
