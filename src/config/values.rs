//! Parsing of single setting values (numbers, durations, URLs), with errors that name the
//! setting.

use std::time::Duration;

use super::{ConfigError, bad};

pub(super) fn required(setting: &'static str, v: String) -> Result<String, ConfigError> {
    let v = v.trim().to_owned();
    if v.is_empty() {
        Err(bad(setting, "must not be empty"))
    } else {
        Ok(v)
    }
}

pub(super) fn number<T: std::str::FromStr>(
    setting: &'static str,
    v: &str,
) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| bad(setting, format!("{v:?} is not a whole number in range")))
}

/// Accepts `30s`, `500ms`, `1h 30m` (humantime) or a bare number of seconds.
pub(super) fn duration(setting: &'static str, v: &str) -> Result<Duration, ConfigError> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|_| {
        bad(
            setting,
            format!("{v:?} is not a duration (e.g. 30s, 500ms, 1h)"),
        )
    })
}

pub(super) fn http_url(setting: &'static str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim().trim_end_matches('/');
    let uri: http::Uri = v
        .parse()
        .map_err(|_| bad(setting, format!("{v:?} is not a URL")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(v.to_owned()),
        _ => Err(bad(setting, format!("{v:?} is not an http(s) URL"))),
    }
}
