//! The conversation record's settings (`DATABASE_URL`, `SWITCHBOARD_RECORD_*`): where it is
//! stored, how long it is kept, whether text is scrubbed first, the price table, and how much
//! of it a new call is seeded with.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{ConfigError, bad, duration, nonempty};

/// Raw record settings, flattened into the command line.
#[derive(Debug, Args)]
pub struct RecordCli {
    /// Postgres URL for the conversation record (`postgres://…`). Unset: SQLite in
    /// `SWITCHBOARD_RECORD_SQLITE`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// SQLite file of the record when `DATABASE_URL` is unset.
    #[arg(
        long,
        env = "SWITCHBOARD_RECORD_SQLITE",
        default_value = "switchboard.db"
    )]
    pub record_sqlite: String,
    /// `on` keeps the conversation record; `off` keeps none.
    #[arg(long, env = "SWITCHBOARD_RECORD", default_value = "on")]
    pub record: String,
    /// Records older than this many days are deleted (0 keeps them forever).
    #[arg(long, env = "SWITCHBOARD_RECORD_RETENTION_DAYS", default_value = "0")]
    pub record_retention_days: String,
    /// `on` scrubs personal data (the moderation PII scrubber) from text before it is stored.
    #[arg(long, env = "SWITCHBOARD_RECORD_REDACT", default_value = "off")]
    pub record_redact: String,
    /// A JSON price table replacing or adding to the built-in one.
    #[arg(long, env = "SWITCHBOARD_PRICES")]
    pub prices: Option<PathBuf>,
    /// Tokens of earlier turns a new call on the same session is seeded with (0: none).
    #[arg(long, env = "SWITCHBOARD_RECORD_SEED_TOKENS", default_value = "2000")]
    pub record_seed_tokens: String,
    /// How often buffered record items are written to the database.
    #[arg(long, env = "SWITCHBOARD_RECORD_FLUSH", default_value = "200ms")]
    pub record_flush: String,
}

/// Where the record lives.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordDatabase {
    /// No record is kept.
    Off,
    /// A SQLite database (a file path, or `:memory:`).
    Sqlite(String),
    /// A Postgres URL.
    Postgres(String),
}

impl RecordDatabase {
    /// The sqlx connection URL.
    pub fn url(&self) -> Option<String> {
        match self {
            Self::Off => None,
            Self::Sqlite(p) if p == ":memory:" => Some("sqlite::memory:".into()),
            Self::Sqlite(p) => Some(format!("sqlite://{p}?mode=rwc")),
            Self::Postgres(u) => Some(u.clone()),
        }
    }
}

/// Checked record settings.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    /// The database.
    pub database: RecordDatabase,
    /// Keep records this long; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// Scrub personal data before storing.
    pub redact: bool,
    /// Extra price-table file.
    pub prices: Option<PathBuf>,
    /// Seed budget in tokens.
    pub seed_tokens: usize,
    /// Flush interval.
    pub flush_every: Duration,
}

impl Default for RecordSettings {
    /// An in-memory SQLite record: the library default, so that embedders and tests that
    /// build a `Config` by hand share no file. The command line defaults to `switchboard.db`.
    fn default() -> Self {
        Self {
            database: RecordDatabase::Sqlite(":memory:".into()),
            retention: None,
            redact: false,
            prices: None,
            seed_tokens: 2000,
            flush_every: Duration::from_millis(200),
        }
    }
}

fn on_off(setting: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(bad(setting, "use on or off")),
    }
}

impl RecordSettings {
    /// Validates the raw settings.
    pub fn from_cli(cli: &RecordCli) -> Result<Self, ConfigError> {
        let database = if !on_off("SWITCHBOARD_RECORD", &cli.record)? {
            RecordDatabase::Off
        } else if let Some(url) = nonempty(cli.database_url.clone()) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(bad(
                    "DATABASE_URL",
                    "must be a postgres:// URL (unset it to use SQLite)",
                ));
            }
            RecordDatabase::Postgres(url)
        } else {
            let path = cli.record_sqlite.trim();
            if path.is_empty() {
                return Err(bad("SWITCHBOARD_RECORD_SQLITE", "must name a file"));
            }
            RecordDatabase::Sqlite(path.to_owned())
        };
        let days: u32 = cli.record_retention_days.trim().parse().map_err(|_| {
            bad(
                "SWITCHBOARD_RECORD_RETENTION_DAYS",
                "use a whole number of days (0 keeps records forever)",
            )
        })?;
        let seed_tokens: usize = cli.record_seed_tokens.trim().parse().map_err(|_| {
            bad(
                "SWITCHBOARD_RECORD_SEED_TOKENS",
                "use a whole number of tokens",
            )
        })?;
        let flush_every = duration("SWITCHBOARD_RECORD_FLUSH", &cli.record_flush)?;
        if flush_every < Duration::from_millis(10) || flush_every > Duration::from_secs(60) {
            return Err(bad("SWITCHBOARD_RECORD_FLUSH", "use 10ms to 60s"));
        }
        if let Some(p) = &cli.prices
            && !p.is_file()
        {
            return Err(bad(
                "SWITCHBOARD_PRICES",
                format!("{} is not a file", p.display()),
            ));
        }
        Ok(Self {
            database,
            retention: (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400)),
            redact: on_off("SWITCHBOARD_RECORD_REDACT", &cli.record_redact)?,
            prices: cli.prices.clone(),
            seed_tokens,
            flush_every,
        })
    }
}
