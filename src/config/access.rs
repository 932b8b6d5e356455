//! Who may call what: user tokens from the host app (`SWITCHBOARD_USER_JWT_*`,
//! `SWITCHBOARD_USER_JWKS_URL`), anonymous access (`SWITCHBOARD_ALLOW_ANONYMOUS`), and the
//! rate limits of the model-backed endpoints (`SWITCHBOARD_RATE_LIMIT_*`,
//! `SWITCHBOARD_CLIENT_IP_HEADER`).

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use super::{ConfigError, bad, duration, http_url};

/// Raw access settings, flattened into the command line.
#[derive(Debug, Args)]
pub struct AccessCli {
    /// HS256 secret of the host app's user tokens (e.g. Supabase's JWT secret).
    #[arg(long, env = "SWITCHBOARD_USER_JWT_SECRET", hide_env_values = true)]
    pub user_jwt_secret: Option<String>,
    /// JWKS URL of the host app's identity provider (RS256/ES256 user tokens).
    #[arg(long, env = "SWITCHBOARD_USER_JWKS_URL")]
    pub user_jwks_url: Option<String>,
    /// Expected `iss` of user tokens (unchecked when empty).
    #[arg(long, env = "SWITCHBOARD_USER_JWT_ISSUER", default_value = "")]
    pub user_jwt_issuer: String,
    /// Expected `aud` of user tokens (unchecked when empty).
    #[arg(long, env = "SWITCHBOARD_USER_JWT_AUDIENCE", default_value = "")]
    pub user_jwt_audience: String,
    /// Claim listing the scenarios a user may start (an array or a comma-separated string);
    /// a token without it may start any scenario. Empty: no restriction.
    #[arg(long, env = "SWITCHBOARD_USER_SCENARIOS_CLAIM", default_value = "")]
    pub user_scenarios_claim: String,
    /// Shortest time between two JWKS fetches caused by an unknown `kid`.
    #[arg(long, env = "SWITCHBOARD_USER_JWKS_MIN_REFRESH", default_value = "10s")]
    pub user_jwks_min_refresh: String,
    /// Accept model-backed calls without credentials (default: true in embedded mode,
    /// false in Redis mode).
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS")]
    pub allow_anonymous: Option<String>,
    /// Model-backed requests per client IP, e.g. `120/min` (`off` disables).
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_IP", default_value = "120/min")]
    pub rate_limit_ip: String,
    /// Model-backed requests per user (`sub` of a user token) or per session token.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_USER", default_value = "60/min")]
    pub rate_limit_user: String,
    /// Header carrying the client IP set by a trusted proxy (e.g. `Fly-Client-IP`); empty
    /// uses the peer address.
    #[arg(long, env = "SWITCHBOARD_CLIENT_IP_HEADER", default_value = "")]
    pub client_ip_header: String,
}

/// A rate: `count` requests per `per`, with bursts up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (also the burst).
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

/// Checked access settings.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// HS256 secret of user tokens.
    pub user_jwt_secret: Option<SecretString>,
    /// JWKS URL for RS256/ES256 user tokens.
    pub user_jwks_url: Option<String>,
    /// Expected issuer.
    pub user_jwt_issuer: Option<String>,
    /// Expected audience.
    pub user_jwt_audience: Option<String>,
    /// Claim restricting the scenarios a user may start.
    pub user_scenarios_claim: Option<String>,
    /// Shortest time between unknown-`kid` JWKS fetches.
    pub jwks_min_refresh: Duration,
    /// `None`: the mode's default (embedded yes, Redis no).
    pub allow_anonymous: Option<bool>,
    /// Per-IP limit; `None` is unlimited.
    pub rate_ip: Option<Rate>,
    /// Per-user / per-session limit; `None` is unlimited.
    pub rate_user: Option<Rate>,
    /// Trusted client-IP header (lowercase).
    pub client_ip_header: Option<String>,
}

impl AccessSettings {
    /// The configuration table's defaults.
    pub fn defaults() -> Self {
        Self {
            jwks_min_refresh: Duration::from_secs(10),
            rate_ip: rate("SWITCHBOARD_RATE_LIMIT_IP", "120/min").expect("valid default"),
            rate_user: rate("SWITCHBOARD_RATE_LIMIT_USER", "60/min").expect("valid default"),
            ..Self::default()
        }
    }

    /// True when user tokens can be verified.
    pub fn user_tokens(&self) -> bool {
        self.user_jwt_secret.is_some() || self.user_jwks_url.is_some()
    }

    /// Validates the raw settings.
    pub fn from_cli(cli: &AccessCli) -> Result<Self, ConfigError> {
        let nonempty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let user_jwt_secret = cli.user_jwt_secret.as_deref().and_then(nonempty);
        if let Some(s) = &user_jwt_secret
            && s.len() < 32
        {
            return Err(bad(
                "SWITCHBOARD_USER_JWT_SECRET",
                "must be at least 32 bytes",
            ));
        }
        let user_jwks_url = match cli.user_jwks_url.as_deref().and_then(nonempty) {
            Some(u) => Some(http_url("SWITCHBOARD_USER_JWKS_URL", &u)?),
            None => None,
        };
        let allow_anonymous = match cli.allow_anonymous.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("true" | "1" | "yes" | "on") => Some(true),
            Some("false" | "0" | "no" | "off") => Some(false),
            Some(other) => {
                return Err(bad(
                    "SWITCHBOARD_ALLOW_ANONYMOUS",
                    format!("{other:?}: expected true or false"),
                ));
            }
        };
        let jwks_min_refresh = duration(
            "SWITCHBOARD_USER_JWKS_MIN_REFRESH",
            &cli.user_jwks_min_refresh,
        )?;
        Ok(Self {
            user_jwt_secret: user_jwt_secret.map(SecretString::from),
            user_jwks_url,
            user_jwt_issuer: nonempty(&cli.user_jwt_issuer),
            user_jwt_audience: nonempty(&cli.user_jwt_audience),
            user_scenarios_claim: nonempty(&cli.user_scenarios_claim),
            jwks_min_refresh,
            allow_anonymous,
            rate_ip: rate("SWITCHBOARD_RATE_LIMIT_IP", &cli.rate_limit_ip)?,
            rate_user: rate("SWITCHBOARD_RATE_LIMIT_USER", &cli.rate_limit_user)?,
            client_ip_header: nonempty(&cli.client_ip_header).map(|h| h.to_ascii_lowercase()),
        })
    }
}

/// Parses `120/min`, `10/s`, `1000/h`; `off` or `0` is no limit.
pub fn rate(setting: &'static str, v: &str) -> Result<Option<Rate>, ConfigError> {
    let v = v.trim();
    if matches!(v, "off" | "0" | "") {
        return Ok(None);
    }
    let err = || {
        bad(
            setting,
            format!("{v:?}: expected <count>/<s|min|h>, e.g. 120/min, or off"),
        )
    };
    let (count, unit) = v.split_once('/').ok_or_else(err)?;
    let count: u32 = count.trim().parse().map_err(|_| err())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(err()),
    };
    Ok(NonZeroU32::new(count).map(|count| Rate { count, per }))
}
