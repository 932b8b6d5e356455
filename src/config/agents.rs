//! Settings of the server-side agents and their memory (`SWITCHBOARD_MEMORY_*`,
//! `SWITCHBOARD_AGENT_*`).

use std::time::Duration;

use clap::Args;

use super::{ConfigError, bad, duration, number};

/// Raw agent settings, flattened into the command line.
#[derive(Debug, Args)]
pub struct AgentCli {
    /// Key prefix of agent memory in Redis; the Agents SDK `RedisSession` default is
    /// `agents:session`, so a Python worker with default settings shares it.
    #[arg(
        long,
        env = "SWITCHBOARD_MEMORY_PREFIX",
        default_value = "agents:session"
    )]
    pub memory_prefix: String,
    /// Most items kept per agent session (the oldest are trimmed).
    #[arg(long, env = "SWITCHBOARD_MEMORY_MAX_ITEMS", default_value = "1000")]
    pub memory_max_items: String,
    /// How long an idle agent session is kept (sliding).
    #[arg(long, env = "SWITCHBOARD_MEMORY_TTL", default_value = "7d")]
    pub memory_ttl: String,
    /// Expiry of an agent session's turn lock; renewed while the turn runs, so it only
    /// matters when the holder dies.
    #[arg(long, env = "SWITCHBOARD_AGENT_LOCK_TTL", default_value = "15s")]
    pub agent_lock_ttl: String,
    /// How long a message waits behind a running turn on the same agent session before
    /// answering 409 `agent_session_busy`.
    #[arg(long, env = "SWITCHBOARD_AGENT_QUEUE_WAIT", default_value = "60s")]
    pub agent_queue_wait: String,
    /// Default most model round trips per turn.
    #[arg(long, env = "SWITCHBOARD_AGENT_MAX_ITERATIONS", default_value = "6")]
    pub agent_max_iterations: String,
}

/// Checked agent settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Key prefix of agent memory.
    pub memory_prefix: String,
    /// Most items per agent session.
    pub memory_max_items: usize,
    /// Sliding expiry of an agent session.
    pub memory_ttl: Duration,
    /// Turn-lock expiry.
    pub lock_ttl: Duration,
    /// Longest wait for the turn lock.
    pub queue_wait: Duration,
    /// Default most model round trips per turn.
    pub max_iterations: usize,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            memory_prefix: "agents:session".to_owned(),
            memory_max_items: 1000,
            memory_ttl: Duration::from_secs(7 * 86_400),
            lock_ttl: Duration::from_secs(15),
            queue_wait: Duration::from_secs(60),
            max_iterations: 6,
        }
    }
}

/// Most model round trips any turn may make.
pub const MAX_ITERATIONS: usize = 20;

impl AgentSettings {
    /// Validates the raw settings.
    pub fn from_cli(cli: &AgentCli) -> Result<Self, ConfigError> {
        let memory_prefix = cli.memory_prefix.trim().to_owned();
        let prefix_ok = !memory_prefix.is_empty()
            && memory_prefix.len() <= 64
            && memory_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
        if !prefix_ok {
            return Err(bad(
                "SWITCHBOARD_MEMORY_PREFIX",
                "use 1-64 characters from [A-Za-z0-9_-:.]",
            ));
        }
        let memory_max_items =
            number::<usize>("SWITCHBOARD_MEMORY_MAX_ITEMS", &cli.memory_max_items)?;
        if !(2..=100_000).contains(&memory_max_items) {
            return Err(bad(
                "SWITCHBOARD_MEMORY_MAX_ITEMS",
                "must be between 2 and 100000",
            ));
        }
        let memory_ttl = duration("SWITCHBOARD_MEMORY_TTL", &cli.memory_ttl)?;
        let lock_ttl = duration("SWITCHBOARD_AGENT_LOCK_TTL", &cli.agent_lock_ttl)?;
        let queue_wait = duration("SWITCHBOARD_AGENT_QUEUE_WAIT", &cli.agent_queue_wait)?;
        for (name, d, min) in [
            (
                "SWITCHBOARD_MEMORY_TTL",
                memory_ttl,
                Duration::from_secs(60),
            ),
            (
                "SWITCHBOARD_AGENT_LOCK_TTL",
                lock_ttl,
                Duration::from_secs(1),
            ),
        ] {
            if d < min {
                return Err(bad(
                    name,
                    format!("must be at least {}", humantime::format_duration(min)),
                ));
            }
        }
        let max_iterations = number::<usize>(
            "SWITCHBOARD_AGENT_MAX_ITERATIONS",
            &cli.agent_max_iterations,
        )?;
        if !(1..=MAX_ITERATIONS).contains(&max_iterations) {
            return Err(bad(
                "SWITCHBOARD_AGENT_MAX_ITERATIONS",
                format!("must be between 1 and {MAX_ITERATIONS}"),
            ));
        }
        Ok(Self {
            memory_prefix,
            memory_max_items,
            memory_ttl,
            lock_ttl,
            queue_wait,
            max_iterations,
        })
    }
}
