//! Typed settings, read from the command line and the environment, validated before the
//! port is bound.
//!
//! Every setting has a `--flag` and a `SWITCHBOARD_*` environment variable (clap). A few
//! well-known variables are honoured as fallbacks when the `SWITCHBOARD_*` one is unset:
//! `PORT`, `REDIS_URL`, `OPENAI_API_KEY`, `OPENAI_BASE_URL`. [`Cli`] is the raw input;
//! [`Config`] is the checked result the rest of the crate uses. Tests build a [`Config`]
//! directly (`Config::default()`), so the developer's shell never leaks into them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser as _;
use secrecy::{ExposeSecret, SecretString};

/// Default upstream base URL (includes the API version path).
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

pub use cli::Cli;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Redis URL; `None` is embedded mode.
    pub redis_url: Option<String>,
    /// Upstream key; `None` is offline.
    pub openai_api_key: Option<SecretString>,
    /// Upstream base URL without a trailing slash.
    pub openai_base_url: String,
    /// Realtime model for minted keys.
    pub realtime_model: String,
    /// Transcription model in realtime session configs.
    pub transcription_model: String,
    /// Ephemeral key lifetime.
    pub key_ttl: Duration,
    /// Extra scenario directory.
    pub scenarios_dir: Option<PathBuf>,
    /// Session-token secret; `None` in embedded mode means "generate one".
    pub session_secret: Option<SecretString>,
    /// Idle session lifetime.
    pub session_ttl: Duration,
    /// Session token lifetime.
    pub token_ttl: Duration,
    /// Server API keys (several at once, so a key rotates without downtime).
    pub api_keys: Vec<SecretString>,
    /// Allowed CORS origins (`*` allowed); empty is same-origin only.
    pub cors_origins: Vec<String>,
    /// Request body limit in bytes.
    pub body_limit: usize,
    /// Upstream request timeout.
    pub upstream_timeout: Duration,
    /// Upstream retries after 429/5xx/connection errors.
    pub upstream_retries: u32,
    /// Public base URL without a trailing slash.
    pub public_url: Option<String>,
    /// `session2` context cap in bytes.
    pub context_max_bytes: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Events kept per session.
    pub history_size: usize,
    /// Event retention.
    pub history_ttl: Duration,
    /// Server ping interval on the event channel.
    pub heartbeat: Duration,
    /// Largest client frame, bytes.
    pub max_frame: usize,
    /// Per-connection queue length.
    pub conn_queue: usize,
    /// Moderation modes.
    pub moderation: ModerationModes,
    /// Fail closed (refuse) when a moderation check fails.
    pub moderation_fail_closed: bool,
    /// Words or phrases the local check refuses.
    pub deny_patterns: Vec<String>,
    /// Redis key prefix.
    pub redis_prefix: String,
    /// Position-check interval (Redis mode).
    pub position_check: Duration,
    /// Server-side agents and their memory.
    pub agents: AgentSettings,
    /// Server-side realtime control (calls and the sideband).
    pub realtime: RealtimeSettings,
    /// User tokens, anonymous access and rate limits.
    pub access: AccessSettings,
    /// Request timeout and graceful shutdown.
    pub ops: OpsSettings,
    /// The conversation record.
    pub record: RecordSettings,
}

impl Default for Config {
    /// The defaults of the configuration table, bound to 127.0.0.1:8080, offline, embedded.
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            redis_url: None,
            openai_api_key: None,
            openai_base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            realtime_model: "gpt-realtime".to_owned(),
            transcription_model: "gpt-4o-mini-transcribe".to_owned(),
            key_ttl: Duration::from_secs(600),
            scenarios_dir: None,
            session_secret: None,
            session_ttl: Duration::from_secs(3600),
            token_ttl: Duration::from_secs(86_400),
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            body_limit: 1024 * 1024,
            upstream_timeout: Duration::from_secs(30),
            upstream_retries: 2,
            public_url: None,
            context_max_bytes: 16 * 1024,
            log_format: LogFormat::Text,
            history_size: 1000,
            history_ttl: Duration::from_secs(86_400),
            heartbeat: Duration::from_secs(25),
            max_frame: 64 * 1024,
            conn_queue: 512,
            moderation: ModerationModes::default(),
            moderation_fail_closed: false,
            deny_patterns: Vec::new(),
            redis_prefix: "sb".to_owned(),
            position_check: Duration::from_secs(5),
            agents: AgentSettings::default(),
            realtime: RealtimeSettings::default(),
            access: AccessSettings::defaults(),
            ops: OpsSettings::default(),
            record: RecordSettings::default(),
        }
    }
}

/// A setting that failed validation; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    /// The environment variable (and flag) at fault.
    pub setting: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn bad(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

impl Config {
    /// Parses the process's command line and environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_cli(Cli::parse(), &|name| std::env::var(name).ok())
    }

    /// Validates raw input; `env` looks up the unprefixed fallback variables.
    pub fn from_cli(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (openai_api_key, openai_base_url) = upstream_endpoint(&cli, env)?;
        let (session_secret, key_ttl, session_ttl, token_ttl) = session_settings(&cli)?;
        let channel = ChannelSettings::from_cli(&cli)?;
        // A connected client keeps its session alive once per heartbeat; a session that can
        // expire between two heartbeats would close every socket with 4004.
        if session_ttl < channel.heartbeat * 2 {
            return Err(bad(
                "SWITCHBOARD_SESSION_TTL",
                format!(
                    "must be at least twice SWITCHBOARD_HEARTBEAT ({}), or connected clients lose their session between heartbeats",
                    humantime::format_duration(channel.heartbeat)
                ),
            ));
        }
        let upstream_timeout = duration("SWITCHBOARD_UPSTREAM_TIMEOUT", &cli.upstream_timeout)?;
        if upstream_timeout.is_zero() {
            return Err(bad("SWITCHBOARD_UPSTREAM_TIMEOUT", "must be more than 0"));
        }
        let (moderation, moderation_fail_closed, deny_patterns) = moderation_settings(&cli)?;
        let config = Self {
            bind: listen_addr(&cli, env)?,
            redis_url: redis_url(&cli, env)?,
            openai_api_key,
            openai_base_url,
            realtime_model: required("SWITCHBOARD_REALTIME_MODEL", cli.realtime_model.clone())?,
            transcription_model: required(
                "SWITCHBOARD_TRANSCRIPTION_MODEL",
                cli.transcription_model.clone(),
            )?,
            key_ttl,
            scenarios_dir: cli.scenarios_dir.clone(),
            session_secret,
            session_ttl,
            token_ttl,
            api_keys: split_list(cli.api_key.as_deref().unwrap_or_default())
                .map(|k| SecretString::from(k.to_owned()))
                .collect(),
            cors_origins: cors_origins(&cli.cors_origins)?,
            body_limit: at_least("SWITCHBOARD_BODY_LIMIT", &cli.body_limit, 1024, "bytes")?,
            upstream_timeout,
            upstream_retries: in_range(
                "SWITCHBOARD_UPSTREAM_RETRIES",
                &cli.upstream_retries,
                0..=10,
            )?,
            public_url: nonempty(cli.public_url.clone())
                .map(|u| http_url("SWITCHBOARD_PUBLIC_URL", &u))
                .transpose()?,
            context_max_bytes: number("SWITCHBOARD_CONTEXT_MAX_BYTES", &cli.context_max_bytes)?,
            log_format: log_format(&cli.log_format)?,
            history_size: channel.history_size,
            history_ttl: channel.history_ttl,
            heartbeat: channel.heartbeat,
            max_frame: channel.max_frame,
            conn_queue: channel.conn_queue,
            moderation,
            moderation_fail_closed,
            deny_patterns,
            redis_prefix: redis_prefix(&cli.redis_prefix)?,
            position_check: position_check(&cli.position_check)?,
            agents: AgentSettings::from_cli(&cli.agents)?,
            realtime: RealtimeSettings::from_cli(&cli.realtime, env)?,
            access: AccessSettings::from_cli(&cli.access)?,
            ops: OpsSettings::from_cli(&cli.ops)?,
            record: RecordSettings::from_cli(&cli.record)?,
        };
        config.check_mode()?;
        Ok(config)
    }

    /// Cross-setting rules that depend on the runtime mode.
    pub fn check_mode(&self) -> Result<(), ConfigError> {
        if self.redis_url.is_some() && self.session_secret.is_none() {
            return Err(bad(
                "SWITCHBOARD_SESSION_SECRET",
                "is required in Redis mode (every instance must sign tokens with the same secret)",
            ));
        }
        if let Some(dir) = &self.scenarios_dir
            && !dir.is_dir()
        {
            return Err(bad(
                "SWITCHBOARD_SCENARIOS_DIR",
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(())
    }

    /// `"redis"` or `"embedded"`.
    pub fn mode(&self) -> &'static str {
        if self.redis_url.is_some() {
            "redis"
        } else {
            "embedded"
        }
    }

    /// Whether model-backed endpoints accept calls without credentials.
    pub fn allow_anonymous(&self) -> bool {
        self.access
            .allow_anonymous
            .unwrap_or(self.redis_url.is_none())
    }

    /// True when an upstream key is configured.
    pub fn upstream_configured(&self) -> bool {
        self.openai_api_key
            .as_ref()
            .is_some_and(|k| !k.expose_secret().is_empty())
    }
}

mod access;
mod agents;
mod sections;
use sections::{
    ChannelSettings, at_least, cors_origins, in_range, listen_addr, log_format,
    moderation_settings, nonempty, position_check, redis_prefix, redis_url, session_settings,
    split_list, upstream_endpoint,
};
mod cli;
mod moderation;
mod ops;
mod record;
mod values;
use values::{duration, http_url, number, required};
mod realtime;
pub use access::{AccessSettings, Rate, rate as parse_rate};
pub use agents::{AgentSettings, MAX_ITERATIONS};
pub use moderation::ModerationModes;
pub use ops::{DEFAULT_PUBLISH_BATCH, OpsSettings};
pub use realtime::{RealtimeSettings, Steer, VoiceApi};
pub use record::{RecordDatabase, RecordSettings};
#[cfg(test)]
mod tests;
