//! The event broker: per-session histories with `{epoch, seq}` positions, publish with
//! idempotency, and live delivery to this instance's sockets.
//!
//! A publish assigns the next `seq`, stores the envelope in the session's bounded history
//! and hands it to the instance's [`LiveSink`] (the local hub) for every instance that
//! subscribed to the session. The envelope is serialized exactly once, at publish; history,
//! replay and live delivery all share those bytes ([`Frame`]). `MemoryBroker` serves
//! embedded mode; the Redis broker implements the same contract across instances, and one
//! contract test suite (`tests/api/broker_contract.rs`) runs against both.

pub mod memory;
pub mod redis;
pub mod redis_conn;
pub mod sequencer;

use async_trait::async_trait;
use std::sync::Arc;

use bytes::Bytes;
pub use proto_events::Top;
use proto_events::{Envelope, EventType};
use serde_json::Value;

use crate::domain::SessionId;

/// A broker failure: the backend is unreachable or refused the operation. A failed publish
/// wrote nothing; callers answer `503 broker_unavailable` with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Redis could not be reached or answered with an error.
    #[error("broker unavailable: {0}")]
    Redis(#[from] fred::error::Error),
    /// The session store (the same backend in Redis mode) failed on the publish path.
    #[error("broker unavailable: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The backend answered something this version does not understand.
    #[error("broker unavailable: unexpected answer ({0})")]
    Protocol(&'static str),
    /// Anything else, said in words (a replica wait that timed out, a connection that is down).
    #[error("broker unavailable: {0}")]
    Other(String),
}

/// One serialized event ([`FrameData`]), shared by every receiver: a clone is one reference
/// count, and the frame is one pointer wide. Every socket's queue allocates a block of 32
/// slots up front, so the width of a frame is paid by every idle connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Arc<FrameData>);

/// What a [`Frame`] holds: its `seq` (for ordering and de-duplication without parsing),
/// what metrics and tracing need to know about it ([`FrameMeta`]), and the envelope's JSON.
/// The channel layer turns the bytes into its socket type.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameData {
    /// The envelope's seq.
    pub seq: u64,
    /// The envelope's type, time and trace ids.
    pub meta: FrameMeta,
    /// The envelope as UTF-8 JSON text (reference-counted: cloning shares the bytes).
    pub json: Bytes,
}

impl std::ops::Deref for Frame {
    type Target = FrameData;
    fn deref(&self) -> &FrameData {
        &self.0
    }
}

/// What is known about a frame without reading its JSON again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// The envelope's `type`.
    pub kind: String,
    /// The envelope's `ts`, as unix milliseconds (0 when unknown).
    pub ts_ms: u64,
    /// The publishing span's trace id (hex), when the publish was traced.
    pub trace_id: Option<String>,
    /// The publishing span's id (hex), when the publish was traced.
    pub span_id: Option<String>,
}

impl Frame {
    /// A frame from envelope JSON that arrived as text (a history read, a pub/sub message):
    /// the metadata is read from the envelope's fixed field order (`type` first, `ts` before
    /// `data`, the trace ids last), so no full parse is needed.
    pub fn from_json(seq: u64, json: String) -> Self {
        let meta = FrameMeta::scan(&json);
        Self::new(seq, meta, json)
    }

    /// A frame from envelope JSON that arrived as bytes (a pub/sub message), kept without a
    /// copy; `None` unless the bytes are UTF-8.
    pub fn from_json_bytes(seq: u64, json: Bytes) -> Option<Self> {
        let meta = FrameMeta::scan(std::str::from_utf8(&json).ok()?);
        Some(Self(Arc::new(FrameData { seq, meta, json })))
    }

    fn new(seq: u64, meta: FrameMeta, json: String) -> Self {
        Self(Arc::new(FrameData {
            seq,
            meta,
            json: Bytes::from(json),
        }))
    }

    /// The JSON as text.
    pub fn text(&self) -> &str {
        // Frames are only built from `String`s or from bytes checked to be UTF-8.
        std::str::from_utf8(&self.json).unwrap_or_default()
    }
}

impl FrameMeta {
    /// Reads the metadata of a serialized [`Envelope`] (see [`Frame::from_json`]).
    pub fn scan(json: &str) -> Self {
        let field = |pattern: &str| {
            json.split_once(pattern)
                .and_then(|(_, rest)| rest.split('"').next())
        };
        let kind = json
            .strip_prefix("{\"type\":\"")
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("unknown")
            .to_owned();
        // `ts` precedes `data`, so a payload field named `ts` cannot be read first.
        let ts_ms = field("\"ts\":\"")
            .and_then(|ts| humantime::parse_rfc3339(ts).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        // The trace ids are serialized after `data`: read them from the end.
        let tail_field = |pattern: &str| {
            json.rsplit_once(pattern)
                .and_then(|(_, rest)| rest.split('"').next())
                .filter(|v| v.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_owned)
        };
        let (trace_id, span_id) = match tail_field("\"span_id\":\"") {
            Some(span) => (tail_field("\"trace_id\":\""), Some(span)),
            None => (None, None),
        };
        Self {
            kind,
            ts_ms,
            trace_id,
            span_id,
        }
    }
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Event type.
    pub kind: EventType,
    /// Payload.
    pub data: Value,
    /// A retry with the same key (within the idempotency window) returns the first
    /// publish's result and publishes nothing.
    pub idempotency_key: Option<String>,
    /// Trace id of the causing request, copied into the envelope.
    pub trace_id: Option<String>,
}

/// What [`Broker::publish_if_live`] did.
#[derive(Debug)]
pub enum Checked {
    /// The publish ran (`Ok(None)`: the session is not live, nothing was published).
    Done(Result<Option<Published>, BrokerError>),
    /// This backend does not check sessions; the event, unpublished.
    Unsupported(Publish),
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Assigned seq.
    pub seq: u64,
    /// History epoch.
    pub epoch: String,
    /// Event id (UUIDv7).
    pub id: uuid::Uuid,
    /// True when an earlier publish with the same idempotency key was returned instead.
    pub duplicate: bool,
}

/// A read of a session's history.
#[derive(Debug, Clone)]
pub struct History {
    /// Position at the time of the read.
    pub top: Top,
    /// The retained events with `seq > after`, ascending.
    pub events: Vec<Frame>,
    /// True when `events` holds *every* event after `after` up to `top.seq` (nothing was
    /// trimmed away and `after <= top.seq`).
    pub complete: bool,
}

/// Where live events go on this instance (the local hub).
pub trait LiveSink: Send + Sync + 'static {
    /// Delivers one event of `session` to local receivers. Must not block.
    fn deliver(&self, session: &SessionId, frame: Frame);

    /// The session's history was (re)created with a new epoch: receivers still on the old
    /// one must re-sync (close 4013). Called before any event of the new epoch is delivered.
    fn history_reset(&self, session: &SessionId);
}

/// Per-session event histories and live delivery.
///
/// Ordering: for one session, publishes are totally ordered by `seq` (1, 2, 3, ... with no
/// gaps within an epoch), and the sink sees a session's events in `seq` order.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Creates the session's history if missing and returns its position. Idempotent:
    /// opening an existing history returns its current top unchanged.
    async fn open(&self, session: &SessionId) -> Result<Top, BrokerError>;

    /// Publishes an event: assigns the next `seq` (creating the history if missing), stores
    /// it, and delivers it live. When it returns `Ok`, the event is in the history. On `Err`
    /// nothing was stored or delivered. With an idempotency key seen within the last
    /// 5 minutes, returns the first result with `duplicate: true` and publishes nothing.
    ///
    /// Provided: runs [`Broker::append`] inside a `broker.publish` span when the caller is
    /// in a sampled trace (and no span at all otherwise; see `telemetry::publish_span`).
    async fn publish(&self, session: &SessionId, event: Publish) -> Result<Published, BrokerError> {
        use tracing::Instrument;
        let span = crate::telemetry::publish_span(session, event.kind.as_str());
        self.append(session, event).instrument(span).await
    }

    /// What [`Broker::publish`] does, without the span: each backend implements this.
    async fn append(&self, session: &SessionId, event: Publish) -> Result<Published, BrokerError>;

    /// [`Broker::publish`] only while the session is live, checked (and its idle TTL slid to
    /// `session_ttl`) in the same step as the publish: `Done(Ok(None))` when it is not, and
    /// then nothing was published. A backend that cannot check sessions itself hands the
    /// event back (`Unsupported`) and the caller reads the store first; the Redis broker can,
    /// since the session's state shares its slot, which saves a round trip per publish.
    async fn publish_if_live(
        &self,
        _session: &SessionId,
        event: Publish,
        _session_ttl: std::time::Duration,
    ) -> Checked {
        Checked::Unsupported(event)
    }

    /// The retained events after `after`, and whether they are complete. `Ok(None)` when the
    /// session has no history (never opened, or expired).
    async fn history(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<Option<History>, BrokerError>;

    /// The current position, `None` without a history.
    async fn top(&self, session: &SessionId) -> Result<Option<Top>, BrokerError>;

    /// Starts live delivery of `session` to this instance's sink. When it returns, every
    /// later publish (from any instance) reaches the sink. Calls are counted per session.
    async fn subscribe(&self, session: &SessionId) -> Result<(), BrokerError>;

    /// Stops live delivery of `session` to this instance.
    async fn unsubscribe(&self, session: &SessionId) -> Result<(), BrokerError>;

    /// Checks the backend answers (readiness).
    async fn ping(&self) -> Result<(), BrokerError>;

    /// Deletes the session's history (a revoked session). Its sockets are closed by the
    /// caller first.
    async fn delete(&self, session: &SessionId) -> Result<(), BrokerError>;
}

/// A fresh epoch: an opaque, unique string.
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Builds and serializes an envelope (the one place channel JSON is produced). It takes
/// the payload (`data`, moved into the envelope) and the trace id; the caller keeps the
/// rest of the event.
pub fn encode(
    session: &SessionId,
    seq: u64,
    epoch: &str,
    kind: &EventType,
    data: Value,
    trace_id: Option<String>,
) -> (uuid::Uuid, Frame) {
    let id = uuid::Uuid::now_v7();
    let now = std::time::SystemTime::now();
    let mut env = Envelope {
        kind: kind.clone(),
        session_id: session.to_string(),
        seq,
        epoch: epoch.to_owned(),
        id,
        ts: humantime::format_rfc3339_millis(now).to_string(),
        data,
        trace_id: None,
        span_id: None,
    };
    if let Some((trace, span)) = crate::telemetry::current_ids() {
        env.trace_id = Some(trace_id.unwrap_or(trace));
        env.span_id = Some(span);
    } else {
        env.trace_id = trace_id;
    }
    let json = serde_json::to_string(&env).expect("an envelope always serializes");
    let meta = FrameMeta {
        kind: env.kind.as_str().to_owned(),
        ts_ms: now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        trace_id: env.trace_id,
        span_id: env.span_id,
    };
    (id, Frame::new(seq, meta, json))
}

#[cfg(test)]
mod tests {
    /// Each socket's queue allocates 32 frame slots when it opens: a frame stays one pointer
    /// wide so an idle connection does not pay for a wide one (BENCHMARKS.md, issue 21).
    #[test]
    fn a_frame_from_bytes_reads_the_same_as_from_text_and_refuses_what_is_not_utf8() {
        let json = r#"{"type":"x.a","session_id":"s","seq":3,"epoch":"e","id":"i","ts":"2026-12-04T21:00:00.123Z","data":{"k":"é"}}"#;
        let text = super::Frame::from_json(3, json.to_owned());
        let bytes = super::Frame::from_json_bytes(3, bytes::Bytes::from(json)).unwrap();
        assert_eq!(bytes.text(), json);
        assert_eq!(bytes.meta, text.meta);
        assert_eq!(bytes.meta.kind, "x.a");
        assert!(bytes.meta.ts_ms > 0);
        let broken = bytes::Bytes::from_static(b"{\"type\":\"x.a\",\"data\":\"\xff\"}");
        assert!(super::Frame::from_json_bytes(1, broken).is_none());
    }

    #[test]
    fn a_frame_is_one_pointer_wide() {
        assert_eq!(
            std::mem::size_of::<super::Frame>(),
            std::mem::size_of::<usize>()
        );
    }
}
