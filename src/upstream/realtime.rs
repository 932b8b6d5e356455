//! Realtime ephemeral keys through the GA endpoint `POST /realtime/client_secrets`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{UpstreamClient, UpstreamError};
use crate::config::Config;

/// A minted ephemeral key.
#[derive(Debug, Clone)]
pub struct MintedKey {
    /// The key (`ek_...`), for the browser only.
    pub value: String,
    /// When it expires (unix seconds).
    pub expires_at: u64,
    /// The effective session config the upstream echoed.
    pub session: Value,
}

/// The realtime session config a key is minted for: model, audio formats, transcription
/// (without it no user transcripts arrive), and optionally an agent's voice and instructions.
pub fn session_config(config: &Config, voice: Option<&str>, instructions: Option<&str>) -> Value {
    let format = json!({"type": "audio/pcm", "rate": 24000});
    let mut output = json!({"format": format});
    if let Some(v) = voice {
        output["voice"] = json!(v);
    }
    let mut session = json!({
        "type": "realtime",
        "model": config.realtime_model,
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": format,
                "transcription": {"model": config.transcription_model},
            },
            "output": output,
        },
    });
    if let Some(i) = instructions {
        session["instructions"] = json!(i);
    }
    session
}

impl UpstreamClient {
    /// Mints an ephemeral key valid for `ttl` for the given session config.
    pub async fn mint_client_secret(
        &self,
        ttl: Duration,
        session: Value,
    ) -> Result<MintedKey, UpstreamError> {
        let body = json!({
            "expires_after": {"anchor": "created_at", "seconds": ttl.as_secs()},
            "session": session,
        });
        let resp = self.post_json("realtime/client_secrets", &body).await?;
        let value = resp
            .get("value")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| UpstreamError::InvalidBody("no `value` in the client secret".into()))?
            .to_owned();
        let expires_at = resp
            .get("expires_at")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                UpstreamError::InvalidBody("no `expires_at` in the client secret".into())
            })?;
        Ok(MintedKey {
            value,
            expires_at,
            session: resp.get("session").cloned().unwrap_or(Value::Null),
        })
    }
}
