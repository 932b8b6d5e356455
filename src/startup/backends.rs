//! The backends of one instance, chosen once at startup: in process memory (embedded
//! mode) or on Redis (one Redis or a Redis Cluster), behind the same traits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dashmap::DashMap;
use tokio::sync::{Notify, mpsc};

use crate::broker::Broker;
use crate::broker::memory::MemoryBroker;
use crate::broker::redis::{RedisBroker, RedisClients, redact};
use crate::config::Config;
use crate::domain::SessionId;
use crate::memory::AgentMemory;
use crate::memory::local::InMemory;
use crate::memory::redis::RedisMemory;
use crate::realtime::Calls;
use crate::realtime::bus::{Bus, BusParts};
use crate::realtime::lease::{MemoryLeases, RedisLeases};
use crate::realtime::sideband::Envelope;
use crate::store::SessionStore;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::tasks::Tasks;
use crate::ws::hub::Hub;

/// What the backends are built from.
pub(super) struct Shared<'a> {
    pub config: &'a Config,
    pub hub: &'a Arc<Hub>,
    pub instance_id: &'a str,
    pub local_calls: Arc<DashMap<SessionId, mpsc::Sender<Envelope>>>,
    pub tasks: &'a Tasks,
    pub adopt_now: &'a Arc<Notify>,
}

/// The chosen backends.
pub(super) struct Backends {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn SessionStore>,
    pub memory: Arc<dyn AgentMemory>,
    pub calls: Calls,
    /// Where accepted record entries wait for the database.
    pub record_buffer: Arc<dyn crate::record::RecordBuffer>,
}

/// Embedded mode without a Redis URL, Redis mode with one.
pub(super) async fn connect(s: Shared<'_>) -> anyhow::Result<Backends> {
    let config = s.config;
    match &config.redis_url {
        None => Ok(embedded(s)),
        Some(url) => redis(url, s).await,
    }
}

/// Embedded mode: everything in process memory.
pub(super) fn embedded(s: Shared<'_>) -> Backends {
    let (config, agents) = (s.config, &s.config.agents);
    Backends {
        broker: MemoryBroker::new(s.hub.clone(), config.history_size, config.history_ttl),
        store: MemoryStore::new(config.session_ttl),
        memory: Arc::new(InMemory::new(agents.memory_max_items).with_ttl(agents.memory_ttl)),
        calls: Calls::new(Arc::new(MemoryLeases::default()), s.local_calls, None),
        record_buffer: Arc::new(crate::record::buffer::MemoryBuffer::default()),
    }
}

/// Redis mode: state, histories, memory and leases on Redis; the control bus on its pub/sub.
pub(super) async fn redis(url: &str, s: Shared<'_>) -> anyhow::Result<Backends> {
    let (config, agents) = (s.config, &s.config.agents);
    let mut clients = RedisClients::connect(url)
        .await
        .with_context(|| format!("connecting to Redis at {}", redact(url)))?;
    clients.min_replicas = config.ops.redis_min_replicas;
    clients.publish_batch = config.ops.redis_publish_batch;
    if clients.cluster {
        tracing::info!("Redis Cluster: sharded pub/sub, hash-tagged memory keys");
    }
    let broker = RedisBroker::new(
        &clients,
        &config.redis_prefix,
        s.hub.clone(),
        config.history_size,
        config.history_ttl,
    );
    spawn_position_check(s.tasks, &broker, config.position_check);
    let store = RedisStore::new(
        clients.client.clone(),
        &config.redis_prefix,
        config.session_ttl,
    );
    let memory = RedisMemory::new(
        clients.client.clone(),
        &agents.memory_prefix,
        agents.memory_max_items,
        Some(agents.memory_ttl),
    )
    .hash_tagged(clients.cluster);
    let parts = BusParts {
        local: s.local_calls.clone(),
        hub: s.hub.clone(),
        adopt_now: s.adopt_now.clone(),
        tasks: s.tasks.clone(),
    };
    let bus = Bus::start(
        clients.client.clone(),
        clients.control.clone(),
        &config.redis_prefix,
        s.instance_id,
        parts,
    )
    .await
    .context("subscribing the control channel")?;
    let leases = RedisLeases::new(clients.client.clone(), &config.redis_prefix);
    Ok(Backends {
        broker,
        store: Arc::new(store),
        memory: Arc::new(memory),
        calls: Calls::new(Arc::new(leases), s.local_calls, Some(bus)),
        record_buffer: Arc::new(crate::record::redis::RedisBuffer::new(
            clients.client.clone(),
            &config.redis_prefix,
        )),
    })
}

/// Runs the Redis broker's position check every `every` while the broker lives.
pub(super) fn spawn_position_check(
    tasks: &crate::tasks::Tasks,
    broker: &Arc<RedisBroker>,
    every: Duration,
) {
    let weak = Arc::downgrade(broker);
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(b) = weak.upgrade() else { break };
            b.check_positions().await;
        }
    });
}

/// The conversation record: its database (migrated), the price table, and the flusher that
/// moves `buffer`'s entries into the database. `None` when `SWITCHBOARD_RECORD=off`.
pub(super) async fn recorder(
    config: &Config,
    buffer: Arc<dyn crate::record::RecordBuffer>,
    tasks: &Tasks,
) -> anyhow::Result<Option<Arc<crate::sessions::record::Recorder>>> {
    use crate::config::RecordDatabase;
    let rs = &config.record;
    if rs.database == RecordDatabase::Off {
        return Ok(None);
    }
    let prices = crate::record::price::PriceTable::load(rs.prices.as_deref())?;
    let what = match &rs.database {
        RecordDatabase::Postgres(u) => format!("Postgres at {}", redact(u)),
        RecordDatabase::Sqlite(p) => format!("SQLite {p}"),
        RecordDatabase::Off => unreachable!(),
    };
    let store = crate::record::sql::SqlRecord::connect(&rs.database)
        .await
        .with_context(|| format!("opening the conversation record ({what})"))?;
    let store: Arc<dyn crate::record::RecordStore> = Arc::new(store);
    let flusher = Arc::new(crate::record::flush::Flusher {
        buffer: buffer.clone(),
        store: store.clone(),
        every: rs.flush_every,
        retention: rs.retention,
    });
    // The flusher holds itself weakly; the task keeps the one strong reference.
    let weak = Arc::downgrade(&flusher);
    let stop = tasks.token().clone();
    tasks.spawn(async move {
        let _keep = flusher;
        crate::record::flush::Flusher::run(weak, stop).await;
    });
    tracing::info!(store = %what, "conversation record on");
    Ok(Some(Arc::new(crate::sessions::record::Recorder {
        buffer,
        store,
        prices,
        redact: rs.redact,
        seed_tokens: rs.seed_tokens,
    })))
}
