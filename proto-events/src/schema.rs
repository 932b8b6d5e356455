//! JSON Schemas and the AsyncAPI document, generated from the types of this crate.
//! The checked-in copies live in `proto-events/schema/`; `tests/schema_fresh.rs` fails when
//! they are stale and rewrites them with `UPDATE_SCHEMAS=1`.

use schemars::{JsonSchema, schema_for};
use serde_json::{Value, json};

use crate::events::*;
use crate::frames::{ClientCommand, CloseCode, CloseNotice, ErrorFrame, Pong, Welcome};
use crate::{Envelope, KNOWN_EVENT_TYPES};

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schema_for!(T)).expect("schemas serialize")
}

/// `(file name, schema)` for every frame and event payload.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("envelope.json", schema::<Envelope>()),
        ("welcome.json", schema::<Welcome>()),
        ("pong.json", schema::<Pong>()),
        ("error-frame.json", schema::<ErrorFrame>()),
        ("client-command.json", schema::<ClientCommand>()),
        ("close-code.json", schema::<CloseCode>()),
        ("sse-close.json", schema::<CloseNotice>()),
        ("data/agent.switch.json", schema::<AgentSwitch>()),
        ("data/tool.result.json", schema::<ToolResult>()),
        (
            "data/moderation.flagged.json",
            schema::<ModerationFlagged>(),
        ),
        ("data/agent.message.json", schema::<AgentMessage>()),
        ("data/call.started.json", schema::<CallStarted>()),
        ("data/call.ended.json", schema::<CallEnded>()),
        ("data/transcript.user.json", schema::<TranscriptUser>()),
        ("data/x.call.error.json", schema::<CallError>()),
        (
            "data/transcript.assistant.json",
            schema::<TranscriptAssistant>(),
        ),
        (
            "data/delegation.started.json",
            schema::<DelegationStarted>(),
        ),
        (
            "data/delegation.completed.json",
            schema::<DelegationCompleted>(),
        ),
    ]
}

/// The AsyncAPI 3.0 document of the channel.
pub fn asyncapi() -> Value {
    let close_codes: Vec<Value> = CloseCode::ALL
        .iter()
        .map(|c| json!({"code": c.code(), "reason": c.reason(), "terminal": c.is_terminal()}))
        .collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard event channel",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Per-session events (agent switches, tool results, ...) pushed to browsers. \
                The first frame is `welcome`; events follow in `seq` order, exactly once. \
                Event types: documented kinds plus custom `x.*`.",
            "x-event-types": KNOWN_EVENT_TYPES,
            "x-close-codes": close_codes,
        },
        "servers": {
            "local": {"host": "127.0.0.1:8080", "protocol": "ws", "pathname": "/api/ws"}
        },
        "channels": {
            "session": {
                "address": "/api/ws?session_id={session_id}&token={token}",
                "parameters": {"session_id": {"description": "Session id from session2"},
                               "token": {"description": "Session token from session2"}},
                "messages": {
                    "welcome": {"payload": schema::<Welcome>()},
                    "event": {"payload": schema::<Envelope>()},
                    "pong": {"payload": schema::<Pong>()},
                    "error": {"payload": schema::<ErrorFrame>()},
                    "ping": {"payload": schema::<ClientCommand>()}
                }
            }
        },
        "operations": {
            "receiveEvents": {"action": "receive", "channel": {"$ref": "#/channels/session"},
                "messages": [{"$ref": "#/channels/session/messages/welcome"},
                             {"$ref": "#/channels/session/messages/event"},
                             {"$ref": "#/channels/session/messages/pong"},
                             {"$ref": "#/channels/session/messages/error"}]},
            "sendCommands": {"action": "send", "channel": {"$ref": "#/channels/session"},
                "messages": [{"$ref": "#/channels/session/messages/ping"}]}
        }
    })
}
