//! Settings of server-side realtime control: the sideband URL, the call lease, control
//! timeouts and how moderation steers a call (`SWITCHBOARD_REALTIME_WS_URL`,
//! `SWITCHBOARD_CALL_*`, `SWITCHBOARD_CONTROL_TIMEOUT`, `SWITCHBOARD_MODERATION_STEER`).

use std::time::Duration;

use clap::Args;

use super::{ConfigError, bad, duration};

/// Raw realtime-control settings, flattened into the command line.
#[derive(Debug, Args)]
pub struct RealtimeCli {
    /// Realtime WebSocket URL the sideband attaches to (falls back to
    /// `OPENAI_REALTIME_WS_URL`).
    #[arg(long, env = "SWITCHBOARD_REALTIME_WS_URL")]
    pub realtime_ws_url: Option<String>,
    /// Lease of a call's sideband: renewed every third of it; a dead owner's calls are
    /// adopted within twice it.
    #[arg(long, env = "SWITCHBOARD_CALL_LEASE_TTL", default_value = "5s")]
    pub call_lease_ttl: String,
    /// How long a control command waits for the call's owner to apply it.
    #[arg(long, env = "SWITCHBOARD_CONTROL_TIMEOUT", default_value = "5s")]
    pub control_timeout: String,
    /// How a flagged assistant answer is steered back: `item` (a corrective system item
    /// and a new response) or `cancel` (cancel the response while it is still speaking,
    /// then the same corrective item).
    #[arg(long, env = "SWITCHBOARD_MODERATION_STEER", default_value = "item")]
    pub moderation_steer: String,
    /// GPT-Live sideband base URL (`/{id}/attach` is appended).
    #[arg(long, env = "OPENAI_LIVE_WS_URL", default_value = DEFAULT_LIVE_WS_URL)]
    pub live_ws_url: String,
    /// The GPT-Live model of Live calls.
    #[arg(long, env = "SWITCHBOARD_LIVE_MODEL", default_value = "gpt-live-1.1")]
    pub live_model: String,
    /// The voice APIs a call may ask for with `?api=` (comma-separated).
    #[arg(long, env = "SWITCHBOARD_VOICE_APIS", default_value = "realtime,live")]
    pub voice_apis: String,
}

/// OpenAI's two voice APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoiceApi {
    /// The Realtime API (`/v1/realtime/calls`).
    #[default]
    Realtime,
    /// GPT-Live (`/v1/live/sessions`).
    Live,
}

impl VoiceApi {
    /// `realtime` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Realtime => "realtime",
            Self::Live => "live",
        }
    }

    /// Parses `realtime` or `live`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "realtime" => Some(Self::Realtime),
            "live" => Some(Self::Live),
            _ => None,
        }
    }

    /// The API of an upstream call id: Live session ids start with `live_`.
    pub fn of_call_id(call_id: &str) -> Self {
        if call_id.starts_with("live_") {
            Self::Live
        } else {
            Self::Realtime
        }
    }
}

/// How a flagged answer is steered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Corrective system item + `response.create`.
    Item,
    /// `response.cancel` first when a response is in progress.
    Cancel,
}

/// Checked realtime-control settings.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// Sideband WebSocket base URL (`?call_id=` is appended).
    pub ws_url: String,
    /// Call lease TTL.
    pub lease_ttl: Duration,
    /// Control acknowledgement timeout.
    pub control_timeout: Duration,
    /// Moderation steering.
    pub steer: Steer,
    /// GPT-Live sideband base URL (`/{id}/attach` is appended).
    pub live_ws_url: String,
    /// The GPT-Live model.
    pub live_model: String,
    /// The voice APIs a call may ask for.
    pub voice_apis: Vec<VoiceApi>,
}

/// The public GPT-Live sessions endpoint, as a WebSocket base.
pub const DEFAULT_LIVE_WS_URL: &str = "wss://api.openai.com/v1/live/sessions";

/// The public Realtime WebSocket endpoint.
pub const DEFAULT_REALTIME_WS_URL: &str = "wss://api.openai.com/v1/realtime";

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            ws_url: DEFAULT_REALTIME_WS_URL.to_owned(),
            lease_ttl: Duration::from_secs(5),
            control_timeout: Duration::from_secs(5),
            steer: Steer::Item,
            live_ws_url: DEFAULT_LIVE_WS_URL.to_owned(),
            live_model: "gpt-live-1.1".to_owned(),
            voice_apis: vec![VoiceApi::Realtime, VoiceApi::Live],
        }
    }
}

impl RealtimeSettings {
    /// Validates the raw settings; `env` looks up the unprefixed fallback.
    pub fn from_cli(
        cli: &RealtimeCli,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let ws_url = cli
            .realtime_ws_url
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env("OPENAI_REALTIME_WS_URL").filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_REALTIME_WS_URL.to_owned());
        let ws_url = ws_base("SWITCHBOARD_REALTIME_WS_URL", &ws_url)?;
        let live_ws_url = ws_base("OPENAI_LIVE_WS_URL", &cli.live_ws_url)?;
        let live_model = cli.live_model.trim().to_owned();
        if live_model.is_empty() {
            return Err(bad("SWITCHBOARD_LIVE_MODEL", "must not be empty"));
        }
        let voice_apis = voice_apis(&cli.voice_apis)?;
        let lease_ttl = duration("SWITCHBOARD_CALL_LEASE_TTL", &cli.call_lease_ttl)?;
        if lease_ttl < Duration::from_millis(600) {
            return Err(bad("SWITCHBOARD_CALL_LEASE_TTL", "must be at least 600ms"));
        }
        let control_timeout = duration("SWITCHBOARD_CONTROL_TIMEOUT", &cli.control_timeout)?;
        if control_timeout < Duration::from_millis(100) {
            return Err(bad("SWITCHBOARD_CONTROL_TIMEOUT", "must be at least 100ms"));
        }
        let steer = match cli.moderation_steer.trim() {
            "item" => Steer::Item,
            "cancel" => Steer::Cancel,
            other => {
                return Err(bad(
                    "SWITCHBOARD_MODERATION_STEER",
                    format!("{other:?}: expected item or cancel"),
                ));
            }
        };
        Ok(Self {
            ws_url,
            lease_ttl,
            control_timeout,
            steer,
            live_ws_url,
            live_model,
            voice_apis,
        })
    }
}

/// A ws:// or wss:// base URL without its trailing slash.
fn ws_base(setting: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/').to_owned();
    let ok = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("ws" | "wss")) && u.host().is_some());
    if !ok {
        return Err(bad(
            setting,
            format!("{url:?} is not a ws:// or wss:// URL"),
        ));
    }
    Ok(url)
}

/// `realtime,live`: at least one, each known.
fn voice_apis(raw: &str) -> Result<Vec<VoiceApi>, ConfigError> {
    let mut apis = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let api = VoiceApi::parse(part).ok_or_else(|| {
            bad(
                "SWITCHBOARD_VOICE_APIS",
                format!("{part:?}: expected realtime or live"),
            )
        })?;
        if !apis.contains(&api) {
            apis.push(api);
        }
    }
    if apis.is_empty() {
        return Err(bad(
            "SWITCHBOARD_VOICE_APIS",
            "name at least one of realtime, live",
        ));
    }
    Ok(apis)
}
