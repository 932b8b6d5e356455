//! Operational settings: request timeouts, graceful shutdown and publish durability
//! and group commit (`SWITCHBOARD_REQUEST_TIMEOUT`, `SWITCHBOARD_SHUTDOWN_TIMEOUT`,
//! `SWITCHBOARD_REDIS_MIN_REPLICAS`, `SWITCHBOARD_REDIS_PUBLISH_BATCH`).

use std::time::Duration;

use clap::Args;

use super::{ConfigError, bad, duration};

/// Publishes per Redis call at most, unless set (`SWITCHBOARD_REDIS_PUBLISH_BATCH`).
pub const DEFAULT_PUBLISH_BATCH: usize = 32;

/// Raw operational settings, flattened into the command line.
#[derive(Debug, Args)]
pub struct OpsCli {
    /// Longest a request may take to produce its response (WebSocket and SSE streams are
    /// not cut: only their opening is timed).
    #[arg(long, env = "SWITCHBOARD_REQUEST_TIMEOUT", default_value = "120s")]
    pub request_timeout: String,
    /// On SIGTERM: how long to close sockets (1012) and drain in-flight requests before
    /// exiting anyway.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", default_value = "20s")]
    pub shutdown_timeout: String,
    /// Replicas that must hold a published event before the publish is answered (Redis
    /// `WAIT`, 500 ms; a shortfall is a 503 the publisher retries). 0 answers at once.
    #[arg(long, env = "SWITCHBOARD_REDIS_MIN_REPLICAS", default_value = "0")]
    pub redis_min_replicas: String,
    /// Most publishes that share one Redis call (group commit: publishes waiting while
    /// earlier calls run leave together). 1 gives each publish its own call. A Redis
    /// Cluster always uses one call per publish.
    #[arg(long, env = "SWITCHBOARD_REDIS_PUBLISH_BATCH", default_value = "32")]
    pub redis_publish_batch: String,
}

/// Checked operational settings.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// Request timeout.
    pub request_timeout: Duration,
    /// Graceful-shutdown budget.
    pub shutdown_timeout: Duration,
    /// Replicas that must acknowledge a publish.
    pub redis_min_replicas: u32,
    /// Most publishes per Redis call.
    pub redis_publish_batch: usize,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(20),
            redis_min_replicas: 0,
            redis_publish_batch: DEFAULT_PUBLISH_BATCH,
        }
    }
}

impl OpsSettings {
    /// Validates the raw settings.
    pub fn from_cli(cli: &OpsCli) -> Result<Self, ConfigError> {
        let request_timeout = duration("SWITCHBOARD_REQUEST_TIMEOUT", &cli.request_timeout)?;
        if request_timeout < Duration::from_secs(1) {
            return Err(bad("SWITCHBOARD_REQUEST_TIMEOUT", "must be at least 1s"));
        }
        let shutdown_timeout = duration("SWITCHBOARD_SHUTDOWN_TIMEOUT", &cli.shutdown_timeout)?;
        if shutdown_timeout < Duration::from_secs(1) {
            return Err(bad("SWITCHBOARD_SHUTDOWN_TIMEOUT", "must be at least 1s"));
        }
        let redis_min_replicas = cli
            .redis_min_replicas
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 16)
            .ok_or_else(|| {
                bad(
                    "SWITCHBOARD_REDIS_MIN_REPLICAS",
                    "use a number from 0 to 16",
                )
            })?;
        let redis_publish_batch = cli
            .redis_publish_batch
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| {
                bad(
                    "SWITCHBOARD_REDIS_PUBLISH_BATCH",
                    "use a number from 1 to 256",
                )
            })?;
        Ok(Self {
            request_timeout,
            shutdown_timeout,
            redis_min_replicas,
            redis_publish_batch,
        })
    }
}
