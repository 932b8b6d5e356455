//! The raw settings as clap reads them from flags and `SWITCHBOARD_*` variables; checked and
//! typed by [`super::Config::from_cli`].

use std::path::PathBuf;

use clap::Parser;

/// Raw command-line and environment input. See the README's configuration table.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// Address to bind.
    #[arg(long, env = "SWITCHBOARD_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind (falls back to `PORT`, then 8080).
    #[arg(long, env = "SWITCHBOARD_PORT")]
    pub port: Option<String>,
    /// Redis URL; unset means embedded mode (falls back to `REDIS_URL`).
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Upstream API key; unset means offline (falls back to `OPENAI_API_KEY`).
    #[arg(long, env = "SWITCHBOARD_OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Upstream base URL including the version path (falls back to `OPENAI_BASE_URL`).
    #[arg(long, env = "SWITCHBOARD_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// Realtime model the ephemeral key is minted for.
    #[arg(
        long,
        env = "SWITCHBOARD_REALTIME_MODEL",
        default_value = "gpt-realtime"
    )]
    pub realtime_model: String,
    /// Transcription model put in every realtime session config.
    #[arg(
        long,
        env = "SWITCHBOARD_TRANSCRIPTION_MODEL",
        default_value = "gpt-4o-mini-transcribe"
    )]
    pub transcription_model: String,
    /// Lifetime of a minted ephemeral key (10s to 2h).
    #[arg(long, env = "SWITCHBOARD_KEY_TTL", default_value = "600s")]
    pub key_ttl: String,
    /// Directory of scenario YAML files that add to or override the built-in ones.
    #[arg(long, env = "SWITCHBOARD_SCENARIOS_DIR")]
    pub scenarios_dir: Option<PathBuf>,
    /// HS256 secret for session tokens (at least 32 bytes); generated when unset in embedded mode.
    #[arg(long, env = "SWITCHBOARD_SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<String>,
    /// Idle lifetime of a session (sliding on activity).
    #[arg(long, env = "SWITCHBOARD_SESSION_TTL", default_value = "1h")]
    pub session_ttl: String,
    /// Lifetime of a session token.
    #[arg(long, env = "SWITCHBOARD_TOKEN_TTL", default_value = "24h")]
    pub token_ttl: String,
    /// Server API keys for server-side endpoints (publish, control), comma-separated so a
    /// key can be rotated without downtime.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Comma-separated CORS origins (`*` for any); empty means same-origin only.
    #[arg(long, env = "SWITCHBOARD_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SWITCHBOARD_BODY_LIMIT", default_value = "1048576")]
    pub body_limit: String,
    /// Timeout of one upstream request.
    #[arg(long, env = "SWITCHBOARD_UPSTREAM_TIMEOUT", default_value = "30s")]
    pub upstream_timeout: String,
    /// Retries of an upstream request after a 429/5xx or a connection error.
    #[arg(long, env = "SWITCHBOARD_UPSTREAM_RETRIES", default_value = "2")]
    pub upstream_retries: String,
    /// Public base URL (e.g. `https://sb.example.com`) used to build event-channel URLs;
    /// derived from the request's Host header when unset.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest `context` accepted by `session2`, in bytes.
    #[arg(long, env = "SWITCHBOARD_CONTEXT_MAX_BYTES", default_value = "16384")]
    pub context_max_bytes: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Events kept per session for replay.
    #[arg(long, env = "SWITCHBOARD_HISTORY_SIZE", default_value = "1000")]
    pub history_size: String,
    /// How long events are kept for replay.
    #[arg(long, env = "SWITCHBOARD_HISTORY_TTL", default_value = "24h")]
    pub history_ttl: String,
    /// Interval of server pings on the event channel; two silent intervals drop a client.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT", default_value = "25s")]
    pub heartbeat: String,
    /// Largest client frame on the WebSocket, in bytes (larger closes with 1009).
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME", default_value = "65536")]
    pub max_frame: String,
    /// Moderation modes, comma-separated: `local`, `upstream`, `brand`.
    #[arg(long, env = "SWITCHBOARD_MODERATION", default_value = "local")]
    pub moderation: String,
    /// What a failed moderation check means: `open` (allow, note the failure) or `closed`.
    #[arg(long, env = "SWITCHBOARD_MODERATION_FAIL", default_value = "open")]
    pub moderation_fail: String,
    /// Comma-separated words or phrases the local check refuses (case-insensitive).
    #[arg(long, env = "SWITCHBOARD_DENY_PATTERNS", default_value = "")]
    pub deny_patterns: String,
    /// Key prefix of everything Switchboard stores in Redis.
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "sb")]
    pub redis_prefix: String,
    /// How often each held session's delivered position is compared with Redis.
    #[arg(long, env = "SWITCHBOARD_POSITION_CHECK", default_value = "5s")]
    pub position_check: String,
    /// Events queued per connection before it is closed as a slow consumer (4008).
    #[arg(long, env = "SWITCHBOARD_CONN_QUEUE", default_value = "512")]
    pub conn_queue: String,
    /// Server-side agents and their memory.
    #[command(flatten)]
    pub agents: super::agents::AgentCli,
    /// Server-side realtime control.
    #[command(flatten)]
    pub realtime: super::realtime::RealtimeCli,
    /// User tokens, anonymous access and rate limits.
    #[command(flatten)]
    pub access: super::access::AccessCli,
    /// Request timeout and graceful shutdown.
    #[command(flatten)]
    pub ops: super::ops::OpsCli,
    /// The conversation record.
    #[command(flatten)]
    pub record: super::record::RecordCli,
}
