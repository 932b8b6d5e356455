//! Connecting to Redis: the command client and the pub/sub client that the Redis broker and
//! store share, with the settings Switchboard relies on (RESP3, reconnect forever, bounded
//! command time, no replay of a command after a reconnect).

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::RespVersion;

use super::BrokerError;

/// Connection settings shared by the Redis broker and store.
pub struct RedisClients {
    /// Commands.
    pub client: Client,
    /// Pub/sub.
    pub subscriber: SubscriberClient,
    /// Pub/sub for control commands between instances.
    pub control: SubscriberClient,
}

impl RedisClients {
    /// Connects both clients (RESP3, reconnecting forever with backoff, 2 s command timeout,
    /// no automatic replay of a command after a reconnect: a publish must not run twice).
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        let err = |e: Error| BrokerError(e.to_string());
        let mut config = Config::from_url(url).map_err(err)?;
        config.version = RespVersion::RESP3;
        let builder = || {
            let mut b = Builder::from_config(config.clone());
            b.with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(2);
                p.broadcast_channel_capacity = 4096;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
            b
        };
        let client = builder().build().map_err(err)?;
        let subscriber = builder().build_subscriber_client().map_err(err)?;
        let control = builder().build_subscriber_client().map_err(err)?;
        tokio::time::timeout(Duration::from_secs(10), async {
            client.init().await?;
            control.init().await?;
            subscriber.init().await
        })
        .await
        .map_err(|_| {
            BrokerError(format!(
                "could not reach Redis at {} within 10s",
                redact(url)
            ))
        })?
        .map_err(err)?;
        Ok(Self {
            client,
            subscriber,
            control,
        })
    }
}

/// A Redis URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
