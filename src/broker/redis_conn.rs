//! Connecting to Redis: the command client and the pub/sub client that the Redis broker and
//! store share, with the settings Switchboard relies on (RESP3, reconnect forever, bounded
//! command time, no replay of a command after a reconnect).
//!
//! A `redis-cluster://` (or `rediss-cluster://`) URL names a Redis Cluster: seed nodes as
//! `redis-cluster://h1:7000,h2:7001` or fred's `redis-cluster://h1:7000?node=h2:7001`; the
//! rest of the topology is discovered. [`RedisClients::cluster`] then tells the broker to use
//! sharded pub/sub and the memory to hash-tag its keys.

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
    /// The URL names a Redis Cluster.
    pub cluster: bool,
    /// Replicas that must acknowledge a publish before it is answered (0: none); set from
    /// `SWITCHBOARD_REDIS_MIN_REPLICAS` after connecting.
    pub min_replicas: u32,
    /// Most publishes one Redis call carries (group commit; 1: each its own call); set from
    /// `SWITCHBOARD_REDIS_PUBLISH_BATCH` after connecting. A Redis Cluster ignores it.
    pub publish_batch: usize,
}

impl RedisClients {
    /// Connects both clients (RESP3, reconnecting forever with backoff, 2 s command timeout,
    /// no automatic replay of a command after a reconnect: a publish must not run twice).
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        let err = BrokerError::Redis;
        let mut config = Config::from_url(&cluster_url(url)).map_err(err)?;
        config.version = RespVersion::RESP3;
        let cluster = config.server.is_clustered();
        let builder = || {
            let mut b = Builder::from_config(config.clone());
            b.with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
                // Each command leaves at once (no Nagle wait behind the previous one).
                c.tcp.nodelay = Some(true);
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
            BrokerError::Other(format!(
                "could not reach Redis at {} within 10s",
                redact(url)
            ))
        })?
        .map_err(err)?;
        Ok(Self {
            client,
            subscriber,
            control,
            cluster,
            min_replicas: 0,
            publish_batch: crate::config::DEFAULT_PUBLISH_BATCH,
        })
    }
}

/// Rewrites the comma form of a cluster URL (`redis-cluster://[auth@]h1:p1,h2:p2[/db][?q]`)
/// into fred's (`redis-cluster://[auth@]h1:p1?node=h2:p2`); other URLs are unchanged.
pub fn cluster_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if !scheme.ends_with("-cluster") {
        return url.to_owned();
    }
    let (auth, hosts_and_more) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let end = hosts_and_more
        .find(['/', '?'])
        .unwrap_or(hosts_and_more.len());
    let (hosts, more) = hosts_and_more.split_at(end);
    let mut hosts = hosts.split(',').filter(|h| !h.is_empty());
    let Some(first) = hosts.next() else {
        return url.to_owned();
    };
    let extra: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    if extra.is_empty() {
        return url.to_owned();
    }
    let (path, query) = match more.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (more, None),
    };
    let mut params = extra;
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        params.push(q.to_owned());
    }
    format!("{scheme}://{auth}{first}{path}?{}", params.join("&"))
}

/// A Redis URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_url;

    #[test]
    fn the_comma_form_of_a_cluster_url_becomes_fred_nodes() {
        assert_eq!(
            cluster_url("redis-cluster://h1:7000,h2:7001,h3:7002"),
            "redis-cluster://h1:7000?node=h2:7001&node=h3:7002"
        );
        assert_eq!(
            cluster_url("rediss-cluster://u:p@h1:7000,h2:7001?foo=1"),
            "rediss-cluster://u:p@h1:7000?node=h2:7001&foo=1"
        );
        for same in [
            "redis-cluster://h1:7000",
            "redis-cluster://h1:7000?node=h2:7001",
            "redis://h:6379/0",
        ] {
            assert_eq!(cluster_url(same), same);
        }
    }
}
