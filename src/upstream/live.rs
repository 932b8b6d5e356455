//! GPT-Live sessions (`POST /live/sessions`): the strict session config and the WebRTC
//! create. Live takes JSON `{session, transport: {type: "webrtc", sdp}}` and answers `201`
//! JSON `{session: {id}, transport: {sdp}}`; the id is read from that body, never from a
//! `Location` header (Live may send none). Only fields Live accepts are ever sent: it rejects
//! unknown ones (Realtime's `type`, `tools`, `voice`, `output_modalities`...).

use serde_json::{Value, json};

use super::{UpstreamClient, UpstreamError};

/// What a Live session is created with.
#[derive(Debug, Clone)]
pub struct LiveSessionSpec<'a> {
    /// `gpt-live-1.1` or another Live model.
    pub model: &'a str,
    /// The voice layer's standing prompt.
    pub instructions: &'a str,
    /// A built-in voice name.
    pub voice: &'a str,
    /// `None` for client delegation; the `responses` settings for Responses delegation.
    pub responses: Option<Value>,
}

/// The `session` object of a create: model, instructions, `audio.output.voice`, delegation.
pub fn live_session_config(spec: &LiveSessionSpec<'_>) -> Value {
    let delegation = match &spec.responses {
        None => json!({"type": "client"}),
        Some(r) => json!({"type": "responses", "responses": r}),
    };
    json!({
        "model": spec.model,
        "instructions": spec.instructions,
        "audio": {"output": {"voice": spec.voice}},
        "delegation": delegation,
    })
}

/// `delegation.responses` settings for an agent: the backend model, its instructions and
/// function tools (for `session.update` and the create).
pub fn responses_delegation(model: &str, instructions: &str, tools: &[Value]) -> Value {
    json!({
        "model": model,
        "instructions": instructions,
        "tools": tools,
        "tool_choice": "auto",
    })
}

/// A created Live session.
#[derive(Debug, Clone)]
pub struct CreatedLive {
    /// The session id (`live_...`), kept whole.
    pub id: String,
    /// The SDP answer for the browser.
    pub answer: String,
}

impl UpstreamClient {
    /// Creates a WebRTC Live session for the browser's `offer`.
    pub async fn create_live_session(
        &self,
        offer: &str,
        session: &Value,
    ) -> Result<CreatedLive, UpstreamError> {
        let body = json!({
            "session": session,
            "transport": {"type": "webrtc", "sdp": offer},
        });
        let resp = self.post_json("live/sessions", &body).await?;
        let id = resp["session"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let usable = !id.is_empty()
            && id.len() <= 160
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !usable {
            return Err(UpstreamError::InvalidBody(format!(
                "no usable session id in the Live answer ({:?})",
                resp["session"]["id"]
            )));
        }
        let answer = resp["transport"]["sdp"].as_str().unwrap_or_default();
        if !answer.trim_start().starts_with("v=") {
            return Err(UpstreamError::InvalidBody(
                "the Live answer carries no SDP".into(),
            ));
        }
        Ok(CreatedLive {
            id,
            answer: answer.to_owned(),
        })
    }
}
