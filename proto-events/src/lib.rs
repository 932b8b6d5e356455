//! Wire types of Switchboard's per-session event channel.
//!
//! Everything that travels over `/api/ws` or `/api/sessions/{id}/stream` is defined here,
//! as typed Rust that serializes to the JSON documented in DESIGN.md §4. The server crate
//! never builds channel JSON by hand: it constructs these types and serializes them once.
//!
//! # Layout
//! - [`Envelope`]: one event as delivered to a browser (`type`, `session_id`, `seq`, `epoch`,
//!   `id`, `ts`, `data`, optional `trace_id`).
//! - [`EventType`]: the validated event type (documented kinds plus custom `x.*`).
//! - [`Top`]: a session's history position (`epoch` + last `seq`).
//! - [`frames`]: `welcome`, `pong`, error frames, client commands, close codes.
//! - [`events`]: typed `data` of the documented event kinds.
//! - [`schema`]: JSON Schemas and the AsyncAPI document generated from these types.

pub mod events;
pub mod frames;
pub mod schema;

pub use frames::{ClientCommand, CloseCode, CloseNotice, ErrorFrame, FrameError, Pong, Welcome};

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The event kinds documented in DESIGN.md §4, in the order they appear there.
pub const KNOWN_EVENT_TYPES: &[&str] = &[
    "agent.switch",
    "tool.result",
    "moderation.flagged",
    "agent.message",
    "call.started",
    "call.ended",
    "transcript.user",
    "transcript.assistant",
    "delegation.started",
    "delegation.completed",
];

/// Longest accepted event type, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 64;

/// A validated event type: one of [`KNOWN_EVENT_TYPES`] or a custom `x.<name>`.
///
/// Custom names use `[A-Za-z0-9._-]` after the `x.` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct EventType(String);

/// Why a string is not an [`EventType`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEventType(pub String);

impl fmt::Display for InvalidEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown event type {:?}: use one of {} or a custom \"x.<name>\"",
            self.0,
            KNOWN_EVENT_TYPES.join(", ")
        )
    }
}

impl std::error::Error for InvalidEventType {}

impl EventType {
    /// The type as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for custom `x.*` types.
    pub fn is_custom(&self) -> bool {
        self.0.starts_with("x.")
    }
}

impl EventType {
    /// The type of payload `T` (its [`events::EventData::KIND`]); no parsing at run time.
    pub fn of<T: events::EventData>() -> Self {
        debug_assert!(T::KIND.parse::<EventType>().is_ok());
        Self(T::KIND.to_owned())
    }
}

impl FromStr for EventType {
    type Err = InvalidEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if KNOWN_EVENT_TYPES.contains(&s) {
            return Ok(Self(s.to_owned()));
        }
        let custom_ok = s.len() <= MAX_EVENT_TYPE_LEN
            && s.strip_prefix("x.").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if custom_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidEventType(s.to_owned()))
        }
    }
}

impl TryFrom<String> for EventType {
    type Error = InvalidEventType;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<EventType> for String {
    fn from(value: EventType) -> Self {
        value.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event as delivered to a browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Event type (`agent.switch`, `tool.result`, `x.*`, ...).
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The session the event belongs to.
    pub session_id: String,
    /// Position in the session's history: starts at 1, strictly increasing, no gaps.
    pub seq: u64,
    /// Names one history; changes only when the history was lost.
    pub epoch: String,
    /// UUIDv7 of the event.
    pub id: uuid::Uuid,
    /// When the event was published, RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Event payload; its shape depends on `type`.
    pub data: serde_json::Value,
    /// W3C trace id of the request that caused the event, when traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// W3C span id of the publishing span (with `trace_id`, what a delivery span links to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

/// A session's history position: which history, and the last `seq` in it (0 when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Top {
    /// The history's epoch.
    pub epoch: String,
    /// The last assigned sequence number (0 before the first event).
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_accepts_known_and_custom_kinds() {
        for ok in ["agent.switch", "tool.result", "x.note", "x.a-b_c.d"] {
            assert!(ok.parse::<EventType>().is_ok(), "{ok} should parse");
        }
        for bad in [
            "",
            "x.",
            "agent",
            "x.bad space",
            "X.upper-prefix",
            "welcome",
        ] {
            assert!(bad.parse::<EventType>().is_err(), "{bad} should not parse");
        }
        let long = format!("x.{}", "a".repeat(MAX_EVENT_TYPE_LEN));
        assert!(long.parse::<EventType>().is_err());
    }

    #[test]
    fn envelope_round_trips_with_the_documented_field_names() {
        let env = Envelope {
            kind: "x.note".parse().unwrap(),
            session_id: "s1".into(),
            seq: 3,
            epoch: "e1".into(),
            id: uuid::Uuid::now_v7(),
            ts: "2026-01-01T00:00:00.000Z".into(),
            data: serde_json::json!({"a": 1}),
            trace_id: None,
            span_id: None,
        };
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["type"], "x.note");
        assert!(v.get("trace_id").is_none());
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }
}
