//! Frames other than event envelopes: the `welcome` frame, `pong`, error frames, client
//! commands, and the close codes of the channel.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest client frame accepted by default, in bytes (DESIGN.md §4: 64 KiB).
pub const DEFAULT_MAX_CLIENT_FRAME: usize = 64 * 1024;

/// First frame of every connection (WebSocket frame, or SSE `event: welcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename = "welcome")]
pub struct Welcome {
    /// The session.
    pub session_id: String,
    /// Current history epoch.
    pub epoch: String,
    /// Top seq at connect time: events after it arrive live.
    pub seq: u64,
    /// True when `since`+`epoch` were given and every missed event is replayed next.
    pub recovered: bool,
    /// How many events are replayed right after this frame.
    pub replayed: u64,
    /// The instance serving this connection.
    pub instance_id: String,
    /// The server pings this often (seconds); a client silent for two periods is dropped.
    pub heartbeat_s: u64,
}

/// Answer to a client `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename = "pong")]
pub struct Pong {
    /// Echo of the ping's `id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Sent for a client frame that could not be understood; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename = "error")]
pub struct ErrorFrame {
    /// Stable code: `malformed_frame`, `unknown_command`, `binary_not_supported`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// SSE's stand-in for a close frame: sent as `event: close` right before the stream ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CloseNotice {
    /// The close code a WebSocket would have received.
    pub code: u16,
    /// Short reason.
    pub reason: String,
}

impl From<CloseCode> for CloseNotice {
    fn from(c: CloseCode) -> Self {
        Self {
            code: c.code(),
            reason: c.reason().to_owned(),
        }
    }
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientCommand {
    /// Liveness check; answered with [`Pong`] carrying the same `id`.
    Ping {
        /// Optional correlation id, echoed in the pong.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON, not an object, or a known command with bad fields.
    Malformed(String),
    /// A JSON object whose `type` is not a command.
    UnknownCommand(String),
}

impl FrameError {
    /// The error frame to send back.
    pub fn to_frame(&self) -> ErrorFrame {
        match self {
            FrameError::Malformed(m) => ErrorFrame {
                code: "malformed_frame".into(),
                message: m.clone(),
            },
            FrameError::UnknownCommand(t) => ErrorFrame {
                code: "unknown_command".into(),
                message: format!("unknown command type {t:?}; the only command is \"ping\""),
            },
        }
    }
}

impl ClientCommand {
    /// Parses one client text frame. Never panics, whatever the input.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| FrameError::Malformed(format!("not JSON: {e}")))?;
        let Some(obj) = value.as_object() else {
            return Err(FrameError::Malformed(
                "a frame must be a JSON object".into(),
            ));
        };
        let kind = match obj.get("type") {
            Some(serde_json::Value::String(t)) => t.clone(),
            _ => {
                return Err(FrameError::Malformed(
                    "a frame needs a string \"type\"".into(),
                ));
            }
        };
        if kind != "ping" {
            let shown: String = kind.chars().take(64).collect();
            return Err(FrameError::UnknownCommand(shown));
        }
        serde_json::from_value(value).map_err(|e| FrameError::Malformed(e.to_string()))
    }
}

/// Close codes of the channel (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(into = "u16", try_from = "u16")]
pub enum CloseCode {
    /// 1009: a client frame was larger than the limit.
    MessageTooBig,
    /// 1012: the server is restarting; reconnect with `since`/`epoch`.
    ServiceRestart,
    /// 4001: missing, invalid or foreign token. Terminal.
    Unauthorized,
    /// 4004: the session does not exist. Terminal.
    UnknownSession,
    /// 4008: the client did not keep up; reconnect with `since`/`epoch` to recover.
    SlowConsumer,
    /// 4009: the session or its token expired. Terminal.
    SessionExpired,
    /// 4013: the history was lost or a gap was detected; re-sync, then reconnect.
    HistoryLost,
    /// 1013: a backend (session store, broker) is unavailable; reconnect with backoff.
    TryAgainLater,
}

impl CloseCode {
    /// Every code, for documentation and schemas.
    pub const ALL: [CloseCode; 8] = [
        CloseCode::MessageTooBig,
        CloseCode::ServiceRestart,
        CloseCode::Unauthorized,
        CloseCode::UnknownSession,
        CloseCode::SlowConsumer,
        CloseCode::SessionExpired,
        CloseCode::HistoryLost,
        CloseCode::TryAgainLater,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::MessageTooBig => 1009,
            CloseCode::ServiceRestart => 1012,
            CloseCode::Unauthorized => 4001,
            CloseCode::UnknownSession => 4004,
            CloseCode::SlowConsumer => 4008,
            CloseCode::SessionExpired => 4009,
            CloseCode::HistoryLost => 4013,
            CloseCode::TryAgainLater => 1013,
        }
    }

    /// Short reason sent with the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::MessageTooBig => "frame too large",
            CloseCode::ServiceRestart => "server restarting",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::UnknownSession => "unknown session",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::SessionExpired => "session expired",
            CloseCode::HistoryLost => "history lost",
            CloseCode::TryAgainLater => "try again later",
        }
    }

    /// Terminal codes mean "do not reconnect".
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CloseCode::Unauthorized | CloseCode::UnknownSession | CloseCode::SessionExpired
        )
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.code()
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        CloseCode::ALL
            .into_iter()
            .find(|c| c.code() == v)
            .ok_or_else(|| format!("{v} is not a Switchboard close code"))
    }
}
