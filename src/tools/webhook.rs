//! Webhook tools: the host app's own business logic (database writes, drafts, lookups)
//! behind an HTTP endpoint declared in a scenario file, plugged in without a rebuild.
//!
//! The request is `POST` (or `PUT`) JSON `{tool, arguments, session_id, correlation_id}`
//! with the declared headers (values from environment variables, read at startup) and, when
//! `hmac_secret_env` is set, `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>`
//! so the receiver can check it came from us. A 2xx JSON answer is the tool's output (a
//! non-JSON answer becomes `{"text": ...}`); a timeout or a non-2xx answer is a failed
//! result with a clear error.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Tool, ToolContext, ToolError};
use crate::scenario::model::HttpToolFile;

/// Signature header name.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// A tool served by the host app.
pub struct WebhookTool {
    name: String,
    url: String,
    put: bool,
    timeout: Duration,
    headers: Vec<(String, String)>,
    hmac_key: Option<Vec<u8>>,
    http: reqwest::Client,
}

impl WebhookTool {
    /// From a validated declaration (its environment variables were checked at load).
    pub fn new(name: &str, h: &HttpToolFile) -> Self {
        let timeout = Duration::from_millis(h.timeout_ms.unwrap_or(10_000));
        Self {
            name: name.to_owned(),
            url: h.url.clone(),
            put: h.method.as_deref() == Some("PUT"),
            timeout,
            headers: h
                .headers
                .iter()
                .map(|(k, var)| (k.clone(), std::env::var(var).unwrap_or_default()))
                .collect(),
            hmac_key: h
                .hmac_secret_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok())
                .map(String::into_bytes),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a plain reqwest client builds"),
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(key, body).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Tool for WebhookTool {
    async fn call(&self, ctx: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        let body = serde_json::to_vec(&json!({
            "tool": self.name,
            "arguments": args,
            "session_id": ctx.session_id.map(|s| s.to_string()),
            "correlation_id": ctx.correlation_id,
        }))
        .expect("JSON values serialize");
        let mut req = if self.put {
            self.http.put(&self.url)
        } else {
            self.http.post(&self.url)
        }
        .header("content-type", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(key) = &self.hmac_key {
            req = req.header(SIGNATURE_HEADER, signature(key, &body));
        }
        let resp = req.body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                ToolError::Failed(format!(
                    "the webhook did not answer within {:?}",
                    self.timeout
                ))
            } else {
                ToolError::Failed(format!(
                    "the webhook could not be reached: {}",
                    e.without_url()
                ))
            }
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ToolError::Failed(format!("reading the webhook's answer failed: {e}")))?;
        if !status.is_success() {
            let shown: String = text.chars().take(300).collect();
            return Err(ToolError::Failed(format!(
                "the webhook answered {}: {shown}",
                status.as_u16()
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or_else(|_| json!({"text": text})))
    }
}
