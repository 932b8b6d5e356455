//! The OpenAI-compatible HTTP client: realtime keys, responses (plain and streamed).
//!
//! Every call has a timeout and is retried a bounded number of times, with full-jitter
//! exponential backoff, after a connection error or a 429/5xx answer (honouring a short
//! `Retry-After`). A timeout is not retried: the upstream may still be working on it, and
//! a model call costs money. Errors carry the upstream's own message with the API key
//! scrubbed out; the edge answers [`UpstreamError`] as `502 upstream_error` / `504 upstream_timeout`.
//! The key lives in a `SecretString` and is only exposed to build the `Authorization` header.

pub mod live;
pub mod realtime;
pub mod responses;

use std::time::Duration;

use rand::Rng;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::config::Config;

/// Longest upstream message passed on to a client.
const MAX_MESSAGE: usize = 500;
/// Longest `Retry-After` we wait for between attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An upstream call that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within the timeout.
    #[error("upstream timed out after {0:?}")]
    Timeout(Duration),
    /// The upstream answered with an error status.
    #[error("upstream answered {status}: {message}")]
    Status {
        /// The upstream's status code.
        status: u16,
        /// The upstream's message (key scrubbed).
        message: String,
    },
    /// Connection or protocol failure.
    #[error("upstream unreachable: {0}")]
    Transport(String),
    /// The upstream answered 2xx with a body we cannot use.
    #[error("upstream answered with an unexpected body: {0}")]
    InvalidBody(String),
}

/// A request body.
#[derive(Clone, Copy)]
enum Body<'a> {
    Json(&'a Value),
    Call { sdp: &'a str, session: &'a Value },
}

impl<'a> From<&'a Value> for Body<'a> {
    fn from(v: &'a Value) -> Self {
        Body::Json(v)
    }
}

/// OpenAI-compatible client. Cloning shares the connection pools.
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base_url: String,
    key: SecretString,
    retries: u32,
    timeout: Duration,
}

impl UpstreamClient {
    /// A client for the configured upstream, or `None` when offline (no key).
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(key) = config.openai_api_key.clone() else {
            return Ok(None);
        };
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(config.upstream_timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Some(Self {
            http: builder().timeout(config.upstream_timeout).build()?,
            // Streams may run long; only the wait between chunks is bounded.
            stream_http: builder().read_timeout(config.upstream_timeout).build()?,
            base_url: config.openai_base_url.clone(),
            key,
            retries: config.upstream_retries,
            timeout: config.upstream_timeout,
        }))
    }

    /// POSTs JSON to `path` (relative to the base URL) and returns the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, UpstreamError> {
        let resp = self.send(&self.http, path, body).await?;
        let bytes = resp.bytes().await.map_err(|e| self.map_reqwest(e))?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::InvalidBody(e.to_string()))
    }

    /// POSTs JSON to `path` and returns the successful response unread, for streaming.
    pub async fn post_stream(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.send(&self.stream_http, path, body).await
    }

    /// Creates a realtime call (`POST /realtime/calls`, multipart `sdp` + `session`);
    /// returns the upstream's `Location` and the answer SDP.
    pub async fn create_call(
        &self,
        sdp: &str,
        session: &Value,
    ) -> Result<(String, String), UpstreamError> {
        let resp = self
            .send(&self.http, "realtime/calls", Body::Call { sdp, session })
            .await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = resp.text().await.map_err(|e| self.map_reqwest(e))?;
        Ok((location, answer))
    }

    #[tracing::instrument(name = "upstream", level = "debug", skip_all,
        fields(otel.kind = "client", endpoint = endpoint_label(path), model, http.response.status_code, retries))]
    async fn send(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: impl Into<Body<'_>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let body = body.into();
        if let Body::Json(v) = &body
            && let Some(m) = v.get("model").and_then(|m| m.as_str())
        {
            tracing::Span::current().record("model", m);
        }
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.key.expose_secret()))
            .map_err(|_| UpstreamError::Transport("the API key is not a valid header".into()))?;
        auth.set_sensitive(true);
        let mut attempt = 0;
        let endpoint = endpoint_label(path);
        loop {
            let (err, retry_after) = match self.attempt(client, &url, &auth, &body, endpoint).await
            {
                Ok(resp) => {
                    let span = tracing::Span::current();
                    span.record("http.response.status_code", resp.status().as_u16());
                    span.record("retries", attempt);
                    return Ok(resp);
                }
                Err(failed) => failed,
            };
            let retryable = match &err {
                UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
                UpstreamError::Transport(_) => true,
                _ => false,
            };
            tracing::Span::current().record("retries", attempt);
            if let UpstreamError::Status { status, .. } = &err {
                tracing::Span::current().record("http.response.status_code", status);
            }
            if !retryable || attempt >= self.retries {
                tracing::warn!(path, attempt, error = %err, "upstream call failed");
                return Err(err);
            }
            let backoff = retry_after
                .filter(|d| *d <= MAX_RETRY_AFTER)
                .unwrap_or_else(|| full_jitter(attempt));
            tracing::info!(path, attempt, ?backoff, error = %err, "retrying upstream call");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// One request, counted and timed: the response when it succeeded, else the error and
    /// the server's `Retry-After` (capped at 60 s) when it sent one.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &str,
        auth: &HeaderValue,
        body: &Body<'_>,
        endpoint: &'static str,
    ) -> Result<reqwest::Response, (UpstreamError, Option<Duration>)> {
        let started = std::time::Instant::now();
        let rb = client.post(url).header(AUTHORIZATION, auth.clone());
        let rb = match body {
            Body::Json(v) => rb.json(v),
            Body::Call { sdp, session } => rb.multipart(
                reqwest::multipart::Form::new()
                    .text("sdp", (*sdp).to_owned())
                    .text("session", session.to_string()),
            ),
        };
        let result = rb.send().await;
        let outcome = match &result {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "transport".to_owned(),
        };
        metrics::counter!("switchboard_upstream_requests_total", "endpoint" => endpoint, "status" => outcome).increment(1);
        metrics::histogram!("switchboard_upstream_request_duration_seconds", "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(resp) if resp.status().is_success() => Ok(resp),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)));
                let text = resp.text().await.unwrap_or_default();
                let message = self.scrub(&upstream_message(&text));
                Err((UpstreamError::Status { status, message }, retry_after))
            }
            Err(e) => Err((self.map_reqwest(e), None)),
        }
    }

    fn map_reqwest(&self, e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout(self.timeout)
        } else {
            // reqwest errors carry the URL, never headers, so no key can leak here.
            UpstreamError::Transport(self.scrub(&e.without_url().to_string()))
        }
    }

    /// Removes the key (and anything shaped like an OpenAI key) from upstream text.
    fn scrub(&self, text: &str) -> String {
        let key = self.key.expose_secret();
        let text = if key.len() >= 8 {
            text.replace(key, "[redacted]")
        } else {
            text.to_owned()
        };
        scrub_key_like(&text)
    }
}

/// Full-jitter exponential backoff: uniform in `[0, 250ms * 2^attempt]`, capped at 4 s.
fn full_jitter(attempt: u32) -> Duration {
    let cap = (250u64 << attempt.min(4)).min(4000);
    Duration::from_millis(rand::rng().random_range(0..=cap))
}

/// The upstream's `error.message`, or the start of the body.
fn upstream_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error").filter(|e| e.is_string()))
                .or_else(|| v.get("message"))
        })
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.trim().to_owned());
    let msg = if msg.is_empty() {
        "(no message)".to_owned()
    } else {
        msg
    };
    msg.chars().take(MAX_MESSAGE).collect()
}

/// Masks tokens that look like OpenAI keys (`sk-...`, `ek_...`), which upstream error
/// messages sometimes quote in part.
fn scrub_key_like(text: &str) -> String {
    static KEY_LIKE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:sk-|ek_)[A-Za-z0-9_*-]*").expect("a valid pattern")
    });
    KEY_LIKE.replace_all(text, "[redacted]").into_owned()
}

/// A bounded label for an upstream path (call ids folded into `{id}`).
fn endpoint_label(path: &str) -> &'static str {
    match path.trim_start_matches('/') {
        "responses" => "responses",
        "moderations" => "moderations",
        "realtime/client_secrets" => "realtime/client_secrets",
        "realtime/calls" => "realtime/calls",
        "live/sessions" => "live/sessions",
        p if p.starts_with("realtime/calls/") && p.ends_with("/hangup") => {
            "realtime/calls/{id}/hangup"
        }
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_from_the_error_object_and_keys_are_masked() {
        assert_eq!(
            upstream_message(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(upstream_message("plain failure"), "plain failure");
        assert_eq!(upstream_message(""), "(no message)");
        assert_eq!(
            scrub_key_like("Incorrect API key provided: sk-proj-ab**cd. Check it."),
            "Incorrect API key provided: [redacted]. Check it."
        );
        assert_eq!(scrub_key_like("no keys here"), "no keys here");
        // Every key is masked, whichever kind comes first.
        assert_eq!(
            scrub_key_like("minted ek_live_123 for sk-proj-456 and ek_2"),
            "minted [redacted] for [redacted] and [redacted]"
        );
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..20 {
            assert!(full_jitter(attempt) <= Duration::from_secs(4));
        }
    }
}
