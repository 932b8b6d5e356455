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
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let host: IpAddr = cli.host.trim().parse().map_err(|_| {
            bad(
                "SWITCHBOARD_HOST",
                format!("{:?} is not an IP address", cli.host),
            )
        })?;
        let (port_setting, port_raw) = match nonempty(cli.port) {
            Some(p) => ("SWITCHBOARD_PORT", Some(p)),
            None => ("PORT", nonempty(env("PORT"))),
        };
        let port = match port_raw {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .map_err(|_| bad(port_setting, format!("{p:?} is not a port number")))?,
            None => 8080,
        };
        let redis_url = nonempty(cli.redis_url).or_else(|| nonempty(env("REDIS_URL")));
        if let Some(url) = &redis_url {
            let ok = [
                "redis://",
                "rediss://",
                "redis-cluster://",
                "rediss-cluster://",
            ]
            .iter()
            .any(|s| url.starts_with(s));
            if !ok {
                return Err(bad(
                    "SWITCHBOARD_REDIS_URL",
                    "expected a redis://, rediss:// or redis-cluster:// URL",
                ));
            }
        }
        let openai_api_key = nonempty(cli.openai_api_key)
            .or_else(|| nonempty(env("OPENAI_API_KEY")))
            .map(SecretString::from);
        let base = nonempty(cli.openai_base_url)
            .or_else(|| nonempty(env("OPENAI_BASE_URL")))
            .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
        let openai_base_url = http_url("SWITCHBOARD_OPENAI_BASE_URL", &base)?;
        let key_ttl = duration("SWITCHBOARD_KEY_TTL", &cli.key_ttl)?;
        if !(10..=7200).contains(&key_ttl.as_secs()) {
            return Err(bad(
                "SWITCHBOARD_KEY_TTL",
                "must be between 10s and 2h (the upstream's limits)",
            ));
        }
        let session_secret = nonempty(cli.session_secret);
        if let Some(s) = &session_secret
            && s.len() < 32
        {
            return Err(bad(
                "SWITCHBOARD_SESSION_SECRET",
                "must be at least 32 bytes long",
            ));
        }
        let session_ttl = duration("SWITCHBOARD_SESSION_TTL", &cli.session_ttl)?;
        let token_ttl = duration("SWITCHBOARD_TOKEN_TTL", &cli.token_ttl)?;
        for (name, d) in [
            ("SWITCHBOARD_SESSION_TTL", session_ttl),
            ("SWITCHBOARD_TOKEN_TTL", token_ttl),
        ] {
            if d < Duration::from_secs(1) {
                return Err(bad(name, "must be at least 1s"));
            }
        }
        let body_limit = number::<usize>("SWITCHBOARD_BODY_LIMIT", &cli.body_limit)?;
        if body_limit < 1024 {
            return Err(bad("SWITCHBOARD_BODY_LIMIT", "must be at least 1024 bytes"));
        }
        let upstream_timeout = duration("SWITCHBOARD_UPSTREAM_TIMEOUT", &cli.upstream_timeout)?;
        if upstream_timeout.is_zero() {
            return Err(bad("SWITCHBOARD_UPSTREAM_TIMEOUT", "must be more than 0"));
        }
        let upstream_retries =
            number::<u32>("SWITCHBOARD_UPSTREAM_RETRIES", &cli.upstream_retries)?;
        if upstream_retries > 10 {
            return Err(bad("SWITCHBOARD_UPSTREAM_RETRIES", "must be at most 10"));
        }
        let public_url = nonempty(cli.public_url)
            .map(|u| http_url("SWITCHBOARD_PUBLIC_URL", &u))
            .transpose()?;
        let context_max_bytes =
            number::<usize>("SWITCHBOARD_CONTEXT_MAX_BYTES", &cli.context_max_bytes)?;
        let log_format = match cli.log_format.trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "SWITCHBOARD_LOG_FORMAT",
                    format!("{other:?}: expected text or json"),
                ));
            }
        };
        let cors_origins = cli
            .cors_origins
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|o| {
                if o == "*" || o.parse::<http::HeaderValue>().is_ok() && o.contains("://") {
                    Ok(o.trim_end_matches('/').to_owned())
                } else {
                    Err(bad(
                        "SWITCHBOARD_CORS_ORIGINS",
                        format!("{o:?} is not an origin like https://app.example.com"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let history_size = number::<usize>("SWITCHBOARD_HISTORY_SIZE", &cli.history_size)?;
        if !(1..=1_000_000).contains(&history_size) {
            return Err(bad(
                "SWITCHBOARD_HISTORY_SIZE",
                "must be between 1 and 1000000",
            ));
        }
        let history_ttl = duration("SWITCHBOARD_HISTORY_TTL", &cli.history_ttl)?;
        let heartbeat = duration("SWITCHBOARD_HEARTBEAT", &cli.heartbeat)?;
        for (name, d) in [
            ("SWITCHBOARD_HISTORY_TTL", history_ttl),
            ("SWITCHBOARD_HEARTBEAT", heartbeat),
        ] {
            if d < Duration::from_secs(1) {
                return Err(bad(name, "must be at least 1s"));
            }
        }
        // A connected client keeps its session alive once per heartbeat; a session that can
        // expire between two heartbeats would close every socket with 4004.
        if session_ttl < heartbeat * 2 {
            return Err(bad(
                "SWITCHBOARD_SESSION_TTL",
                format!(
                    "must be at least twice SWITCHBOARD_HEARTBEAT ({}), or connected clients lose their session between heartbeats",
                    humantime::format_duration(heartbeat)
                ),
            ));
        }
        let max_frame = number::<usize>("SWITCHBOARD_MAX_FRAME", &cli.max_frame)?;
        if max_frame < 256 {
            return Err(bad("SWITCHBOARD_MAX_FRAME", "must be at least 256 bytes"));
        }
        let conn_queue = number::<usize>("SWITCHBOARD_CONN_QUEUE", &cli.conn_queue)?;
        if !(1..=1_000_000).contains(&conn_queue) {
            return Err(bad(
                "SWITCHBOARD_CONN_QUEUE",
                "must be between 1 and 1000000",
            ));
        }
        let moderation = ModerationModes::parse(&cli.moderation)
            .map_err(|m| bad("SWITCHBOARD_MODERATION", m))?;
        let moderation_fail_closed = match cli.moderation_fail.trim() {
            "open" => false,
            "closed" => true,
            other => {
                return Err(bad(
                    "SWITCHBOARD_MODERATION_FAIL",
                    format!("{other:?}: expected open or closed"),
                ));
            }
        };
        let deny_patterns: Vec<String> = cli
            .deny_patterns
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let redis_prefix = cli.redis_prefix.trim().to_owned();
        let prefix_ok = !redis_prefix.is_empty()
            && redis_prefix.len() <= 64
            && redis_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
        if !prefix_ok {
            return Err(bad(
                "SWITCHBOARD_REDIS_PREFIX",
                "use 1-64 characters from [A-Za-z0-9_-:.]",
            ));
        }
        let position_check = duration("SWITCHBOARD_POSITION_CHECK", &cli.position_check)?;
        if position_check < Duration::from_millis(100) {
            return Err(bad("SWITCHBOARD_POSITION_CHECK", "must be at least 100ms"));
        }
        let config = Self {
            bind: SocketAddr::new(host, port),
            redis_url,
            openai_api_key,
            openai_base_url,
            realtime_model: required("SWITCHBOARD_REALTIME_MODEL", cli.realtime_model)?,
            transcription_model: required(
                "SWITCHBOARD_TRANSCRIPTION_MODEL",
                cli.transcription_model,
            )?,
            key_ttl,
            scenarios_dir: cli.scenarios_dir,
            session_secret: session_secret.map(SecretString::from),
            session_ttl,
            token_ttl,
            api_keys: cli
                .api_key
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| SecretString::from(k.to_owned()))
                .collect(),
            cors_origins,
            body_limit,
            upstream_timeout,
            upstream_retries,
            public_url,
            context_max_bytes,
            log_format,
            history_size,
            history_ttl,
            heartbeat,
            max_frame,
            conn_queue,
            moderation,
            moderation_fail_closed,
            deny_patterns,
            redis_prefix,
            position_check,
            agents: AgentSettings::from_cli(&cli.agents)?,
            realtime: RealtimeSettings::from_cli(&cli.realtime, env)?,
            access: AccessSettings::from_cli(&cli.access)?,
            ops: OpsSettings::from_cli(&cli.ops)?,
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
mod cli;
mod moderation;
mod ops;
mod values;
use values::{duration, http_url, number, required};
mod realtime;
pub use access::{AccessSettings, Rate, rate as parse_rate};
pub use agents::{AgentSettings, MAX_ITERATIONS};
pub use moderation::ModerationModes;
pub use ops::OpsSettings;
pub use realtime::{RealtimeSettings, Steer};
#[cfg(test)]
mod tests;
