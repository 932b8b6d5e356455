//! The Realtime client events the sideband sends, and how it reads upstream `error` events.
//! Shapes: reference/upstream.md (GA Realtime protocol).

use proto_events::events::CallError;
use serde_json::{Value, json};

use crate::scenario::view::AgentView;

/// `conversation.item.create` with a `function_call_output` answering `call_id`.
pub fn output_item(call_id: &str, output: &Value) -> Value {
    json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": call_id, "output": output.to_string()}})
}

/// `conversation.item.create` with a system message.
pub fn system_item(text: &str) -> Value {
    json!({"type": "conversation.item.create", "item": {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]}})
}

/// `response.create` with the session's defaults.
pub fn response_create() -> Value {
    json!({"type": "response.create"})
}

/// `session.update` making `view` the agent in charge: its instructions (plus `extra`), its
/// tools and handoff tools, and its voice only when `with_voice` (the API refuses a voice
/// change once the call produced audio).
pub fn session_update(view: AgentView, extra: Option<&str>, with_voice: bool) -> Value {
    let instructions = match extra {
        Some(extra) => format!("{}\n\n{extra}", view.instructions),
        None => view.instructions,
    };
    let mut session = json!({"type": "realtime", "instructions": instructions, "tools": view.tools, "tool_choice": "auto"});
    if with_voice {
        session["audio"] = json!({"output": {"voice": view.voice}});
    }
    json!({"type": "session.update", "session": session})
}

/// Upstream error codes the browser must act on, and whether each ends the call.
const BROWSER_ACTS: &[(&str, bool)] = &[
    ("session_expired", true),
    ("insufficient_quota", true),
    ("rate_limit_exceeded", false),
    ("server_error", false),
];

/// The `x.call.error` to publish for an upstream `error` event, when the browser must act
/// on it (the call expired, quota, rate limits, upstream failure). Errors about the client
/// events Switchboard sent (`invalid_request_error` and the like) are ours to log, not the
/// browser's to handle: `None`.
pub fn browser_error(call_id: &str, ev: &Value) -> Option<CallError> {
    let err = &ev["error"];
    let code = err["code"]
        .as_str()
        .filter(|c| !c.is_empty())
        .or_else(|| err["type"].as_str())?;
    let terminal = BROWSER_ACTS
        .iter()
        .find(|(c, _)| *c == code || err["type"].as_str() == Some(c))
        .map(|(_, t)| *t)?;
    Some(CallError {
        call_id: call_id.to_owned(),
        code: code.to_owned(),
        message: err["message"].as_str().unwrap_or_default().to_owned(),
        terminal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_the_browser_can_act_on_are_surfaced() {
        let expired = json!({"type": "error", "error": {"type": "invalid_request_error", "code": "session_expired", "message": "Your session hit the maximum duration of 60 minutes."}});
        let e = browser_error("rtc_1", &expired).expect("surfaced");
        assert_eq!((e.code.as_str(), e.terminal), ("session_expired", true));
        assert!(e.message.contains("60 minutes"));
        let server = json!({"type": "error", "error": {"type": "server_error", "message": "boom"}});
        let e = browser_error("rtc_1", &server).expect("surfaced");
        assert_eq!((e.code.as_str(), e.terminal), ("server_error", false));
        let ours = json!({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value", "message": "bad tool", "event_id": "e1"}});
        assert_eq!(browser_error("rtc_1", &ours), None);
        assert_eq!(browser_error("rtc_1", &json!({"type": "error"})), None);
    }
}
