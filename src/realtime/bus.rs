//! Routing control commands to a call's owner across instances (Redis mode). Every instance
//! subscribes to `sb:ctl:<its instance id>`; a command is published to the owner's channel
//! with a request id, and the owner answers on the sender's channel once it applied it.
//!
//! The same subscription carries revocations: `sb:revoked` is a broadcast of session ids
//! whose sockets every instance closes with 4009; and hand-overs: `sb:handover` names an
//! instance that released its calls on shutdown, so the others adopt them at once.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::handler::Command;
use super::sideband::Envelope;
use crate::domain::SessionId;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Cmd {
        req: String,
        from: String,
        sid: SessionId,
        cmd: Command,
    },
    Ack {
        req: String,
        by: String,
        error: Option<String>,
    },
}

/// Why a routed command did not complete.
#[derive(Debug)]
pub enum RouteError {
    /// Nobody answered in time (or nobody listens on the owner's channel).
    Unreachable,
    /// The owner refused it.
    Rejected(String),
}

/// What the bus serves and signals on this instance.
pub struct BusParts {
    /// Calls whose sideband runs here (commands for them are applied).
    pub local: Arc<DashMap<SessionId, mpsc::Sender<Envelope>>>,
    /// Closes a revoked session's sockets here.
    pub hub: Arc<dyn super::SessionCloser>,
    /// Wakes the janitor when another instance hands its calls over.
    pub adopt_now: Arc<tokio::sync::Notify>,
    /// Owns the listener tasks.
    pub tasks: crate::tasks::Tasks,
}

type Pending = Arc<DashMap<String, oneshot::Sender<Result<String, String>>>>;

struct Channels {
    own: String,
    revoked: String,
    handover: String,
}

impl Channels {
    fn all(&self) -> Vec<String> {
        vec![
            self.own.clone(),
            self.revoked.clone(),
            self.handover.clone(),
        ]
    }
}

/// The receiving side: what one pub/sub message on the bus's channels means.
struct Listener {
    client: Client,
    prefix: String,
    me: String,
    pending: Pending,
    channels: Channels,
    parts: BusParts,
}

impl Listener {
    fn on_message(&self, channel: &str, text: String) {
        if channel == self.channels.handover {
            // Another instance let its calls go: adopt them now.
            if text != self.me {
                self.parts.adopt_now.notify_one();
            }
            return;
        }
        if channel == self.channels.revoked {
            if let Ok(sid) = text.parse::<SessionId>() {
                self.parts
                    .hub
                    .close_session(&sid, proto_events::CloseCode::SessionExpired);
            }
            return;
        }
        match serde_json::from_str::<Wire>(&text) {
            Ok(Wire::Ack { req, by, error }) => {
                if let Some((_, tx)) = self.pending.remove(&req) {
                    let _ = tx.send(error.map_or(Ok(by), Err));
                }
            }
            Ok(Wire::Cmd {
                req,
                from,
                sid,
                cmd,
            }) => self.apply(req, from, sid, cmd),
            Err(e) => tracing::warn!(error = %e, "malformed control message"),
        }
    }

    /// Applies a routed command through the local sideband and answers the sender.
    fn apply(&self, req: String, from: String, sid: SessionId, cmd: Command) {
        let local = self.parts.local.clone();
        let (client, me) = (self.client.clone(), self.me.clone());
        let reply_to = format!("{}:ctl:{from}", self.prefix);
        self.parts.tasks.spawn(async move {
            let error = match local.get(&sid).map(|t| t.clone()) {
                None => Some(NOT_OWNER.to_owned()),
                Some(tx) => {
                    let (rtx, rrx) = oneshot::channel();
                    if tx.send((cmd, rtx)).await.is_err() {
                        Some(NOT_OWNER.to_owned())
                    } else {
                        match rrx.await {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(_) => Some(NOT_OWNER.to_owned()),
                        }
                    }
                }
            };
            let ack = Wire::Ack { req, by: me, error };
            // An ack is three strings.
            let body = serde_json::to_string(&ack).expect("acks serialize");
            let _: Result<i64, _> = client.publish(reply_to, body).await;
        });
    }
}

/// The error an instance answers for a call it does not hold.
const NOT_OWNER: &str = "not_owner";

/// The control bus of one instance.
pub struct Bus {
    client: Client,
    prefix: String,
    me: String,
    pending: Pending,
}

impl Bus {
    /// Subscribes to this instance's channel (and the broadcasts) and serves commands for
    /// the calls in `parts.local`.
    pub async fn start(
        client: Client,
        subscriber: SubscriberClient,
        prefix: &str,
        me: &str,
        parts: BusParts,
    ) -> Result<Self, Error> {
        let channels = Channels {
            own: format!("{prefix}:ctl:{me}"),
            revoked: format!("{prefix}:revoked"),
            handover: format!("{prefix}:handover"),
        };
        let all = channels.all();
        subscriber.subscribe(all.clone()).await?;
        let pending: Pending = Arc::default();
        let bus = Self {
            client: client.clone(),
            prefix: prefix.to_owned(),
            me: me.to_owned(),
            pending: pending.clone(),
        };
        let mut reconnects = subscriber.reconnect_rx();
        let resub = subscriber.clone();
        parts.tasks.spawn(async move {
            while reconnects.recv().await.is_ok() {
                if let Err(e) = resub.subscribe(all.clone()).await {
                    tracing::warn!(error = %e, "re-subscribing the control channel failed");
                }
            }
        });
        let mut messages = subscriber.message_rx();
        let listener = Listener {
            client,
            prefix: prefix.to_owned(),
            me: me.to_owned(),
            pending,
            channels,
            parts,
        };
        let tasks = listener.parts.tasks.clone();
        tasks.spawn(async move {
            let _keep = subscriber;
            while let Ok(msg) = messages.recv().await {
                if let Some(text) = msg.value.as_string() {
                    listener.on_message(&msg.channel, text);
                }
            }
        });
        Ok(bus)
    }

    /// Tells every instance (this one too) to close `sid`'s sockets with 4009.
    pub async fn broadcast_revoked(&self, sid: &SessionId) -> Result<(), Error> {
        let _: i64 = self
            .client
            .publish(format!("{}:revoked", self.prefix), sid.as_str())
            .await?;
        Ok(())
    }

    /// Tells every other instance that this one released its calls (shutting down), so
    /// their janitors adopt them at once.
    pub async fn broadcast_handover(&self) -> Result<(), Error> {
        let _: i64 = self
            .client
            .publish(format!("{}:handover", self.prefix), self.me.as_str())
            .await?;
        Ok(())
    }

    /// Sends `cmd` for `sid` to instance `owner`; returns the instance that applied it.
    pub async fn request(
        &self,
        owner: &str,
        sid: &SessionId,
        cmd: Command,
        timeout: Duration,
    ) -> Result<String, RouteError> {
        let req = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending.insert(req.clone(), tx);
        let wire = Wire::Cmd {
            req: req.clone(),
            from: self.me.clone(),
            sid: sid.clone(),
            cmd,
        };
        let body = serde_json::to_string(&wire).expect("commands serialize");
        let receivers: Result<i64, _> = self
            .client
            .publish(format!("{}:ctl:{owner}", self.prefix), body)
            .await;
        if !matches!(receivers, Ok(n) if n > 0) {
            self.pending.remove(&req);
            return Err(RouteError::Unreachable);
        }
        let out = tokio::time::timeout(timeout, rx).await;
        self.pending.remove(&req);
        match out {
            Ok(Ok(Ok(by))) => Ok(by),
            Ok(Ok(Err(e))) if e == NOT_OWNER => Err(RouteError::Unreachable),
            Ok(Ok(Err(e))) => Err(RouteError::Rejected(e)),
            _ => Err(RouteError::Unreachable),
        }
    }
}
