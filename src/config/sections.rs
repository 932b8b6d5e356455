//! The sections of `Config::from_cli`: each reads and checks one group of settings, with
//! errors that name the setting.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use secrecy::SecretString;

use super::values::{duration, http_url, number};
use super::{Cli, ConfigError, DEFAULT_OPENAI_BASE_URL, LogFormat, ModerationModes, bad};

/// `None` for an absent or blank value.
pub(super) fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The comma-separated items of a list setting, trimmed, blanks dropped.
pub(super) fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A whole number of at least `min` (`unit` names it in the error).
pub(super) fn at_least(
    setting: &'static str,
    v: &str,
    min: usize,
    unit: &str,
) -> Result<usize, ConfigError> {
    let n = number::<usize>(setting, v)?;
    if n < min {
        return Err(bad(setting, format!("must be at least {min} {unit}")));
    }
    Ok(n)
}

/// A whole number within `range`.
pub(super) fn in_range<T>(
    setting: &'static str,
    v: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let n = number::<T>(setting, v)?;
    if !range.contains(&n) {
        let message = if range.start().to_string() == "0" {
            format!("must be at most {}", range.end())
        } else {
            format!("must be between {} and {}", range.start(), range.end())
        };
        return Err(bad(setting, message));
    }
    Ok(n)
}

/// A duration of at least one second.
pub(super) fn at_least_a_second(setting: &'static str, v: &str) -> Result<Duration, ConfigError> {
    let d = duration(setting, v)?;
    if d < Duration::from_secs(1) {
        return Err(bad(setting, "must be at least 1s"));
    }
    Ok(d)
}

/// `SWITCHBOARD_HOST` and `SWITCHBOARD_PORT` (or `PORT`, as platforms set it; default 8080).
pub(super) fn listen_addr(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SocketAddr, ConfigError> {
    let host: IpAddr = cli.host.trim().parse().map_err(|_| {
        bad(
            "SWITCHBOARD_HOST",
            format!("{:?} is not an IP address", cli.host),
        )
    })?;
    let (port_setting, port_raw) = match nonempty(cli.port.clone()) {
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
    Ok(SocketAddr::new(host, port))
}

/// `SWITCHBOARD_REDIS_URL` (or `REDIS_URL`): a redis, rediss or cluster URL, or none.
pub(super) fn redis_url(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let url = nonempty(cli.redis_url.clone()).or_else(|| nonempty(env("REDIS_URL")));
    let schemes = [
        "redis://",
        "rediss://",
        "redis-cluster://",
        "rediss-cluster://",
    ];
    if let Some(u) = &url
        && !schemes.iter().any(|s| u.starts_with(s))
    {
        return Err(bad(
            "SWITCHBOARD_REDIS_URL",
            "expected a redis://, rediss:// or redis-cluster:// URL",
        ));
    }
    Ok(url)
}

/// The upstream key (`OPENAI_API_KEY` as a fallback) and base URL.
pub(super) fn upstream_endpoint(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<SecretString>, String), ConfigError> {
    let key = nonempty(cli.openai_api_key.clone())
        .or_else(|| nonempty(env("OPENAI_API_KEY")))
        .map(SecretString::from);
    let base = nonempty(cli.openai_base_url.clone())
        .or_else(|| nonempty(env("OPENAI_BASE_URL")))
        .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
    Ok((key, http_url("SWITCHBOARD_OPENAI_BASE_URL", &base)?))
}

/// Session secret, ephemeral key TTL, session idle TTL and token TTL.
pub(super) fn session_settings(
    cli: &Cli,
) -> Result<(Option<SecretString>, Duration, Duration, Duration), ConfigError> {
    let key_ttl = duration("SWITCHBOARD_KEY_TTL", &cli.key_ttl)?;
    if !(10..=7200).contains(&key_ttl.as_secs()) {
        return Err(bad(
            "SWITCHBOARD_KEY_TTL",
            "must be between 10s and 2h (the upstream's limits)",
        ));
    }
    let secret = nonempty(cli.session_secret.clone());
    if secret.as_ref().is_some_and(|s| s.len() < 32) {
        return Err(bad(
            "SWITCHBOARD_SESSION_SECRET",
            "must be at least 32 bytes long",
        ));
    }
    let session_ttl = at_least_a_second("SWITCHBOARD_SESSION_TTL", &cli.session_ttl)?;
    let token_ttl = at_least_a_second("SWITCHBOARD_TOKEN_TTL", &cli.token_ttl)?;
    Ok((
        secret.map(SecretString::from),
        key_ttl,
        session_ttl,
        token_ttl,
    ))
}

/// The event channel's settings.
pub(super) struct ChannelSettings {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub heartbeat: Duration,
    pub max_frame: usize,
    pub conn_queue: usize,
}

impl ChannelSettings {
    pub(super) fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        Ok(Self {
            history_size: in_range("SWITCHBOARD_HISTORY_SIZE", &cli.history_size, 1..=1_000_000)?,
            history_ttl: at_least_a_second("SWITCHBOARD_HISTORY_TTL", &cli.history_ttl)?,
            heartbeat: at_least_a_second("SWITCHBOARD_HEARTBEAT", &cli.heartbeat)?,
            max_frame: at_least("SWITCHBOARD_MAX_FRAME", &cli.max_frame, 256, "bytes")?,
            conn_queue: in_range("SWITCHBOARD_CONN_QUEUE", &cli.conn_queue, 1..=1_000_000)?,
        })
    }
}

/// Which checks run, whether a failing check refuses, and the deny phrases.
pub(super) fn moderation_settings(
    cli: &Cli,
) -> Result<(ModerationModes, bool, Vec<String>), ConfigError> {
    let modes =
        ModerationModes::parse(&cli.moderation).map_err(|m| bad("SWITCHBOARD_MODERATION", m))?;
    let fail_closed = match cli.moderation_fail.trim() {
        "open" => false,
        "closed" => true,
        other => {
            return Err(bad(
                "SWITCHBOARD_MODERATION_FAIL",
                format!("{other:?}: expected open or closed"),
            ));
        }
    };
    let deny = split_list(&cli.deny_patterns).map(str::to_owned).collect();
    Ok((modes, fail_closed, deny))
}

/// `SWITCHBOARD_CORS_ORIGINS`: `*` or origins like `https://app.example.com`.
pub(super) fn cors_origins(v: &str) -> Result<Vec<String>, ConfigError> {
    split_list(v)
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
        .collect()
}

pub(super) fn log_format(v: &str) -> Result<LogFormat, ConfigError> {
    match v.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(bad(
            "SWITCHBOARD_LOG_FORMAT",
            format!("{other:?}: expected text or json"),
        )),
    }
}

pub(super) fn redis_prefix(v: &str) -> Result<String, ConfigError> {
    let prefix = v.trim().to_owned();
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
    if !ok {
        return Err(bad(
            "SWITCHBOARD_REDIS_PREFIX",
            "use 1-64 characters from [A-Za-z0-9_-:.]",
        ));
    }
    Ok(prefix)
}

pub(super) fn position_check(v: &str) -> Result<Duration, ConfigError> {
    let d = duration("SWITCHBOARD_POSITION_CHECK", v)?;
    if d < Duration::from_millis(100) {
        return Err(bad("SWITCHBOARD_POSITION_CHECK", "must be at least 100ms"));
    }
    Ok(d)
}
