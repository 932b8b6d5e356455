//! Which instance owns a call's sideband: a lease with an owner and a fencing token, plus
//! the index of live calls that every instance's janitor scans for orphans.
//!
//! Redis layout (prefix `sb`): `sb:{S}:call:lease` = `<owner instance>|<fence>` with a short
//! TTL, `sb:{S}:call:fence` (the token counter, so every grant is larger than the last) and
//! the hash `sb:calls` (session id → call id). Embedded mode keeps the same in memory.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use tokio::time::Instant;

use crate::domain::SessionId;
use crate::store::StoreError;

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Owner instance id.
    pub owner: String,
    /// Fencing token: larger for every grant on the session.
    pub fence: u64,
}

/// Leases and the call index.
#[async_trait]
pub trait CallLeases: Send + Sync + 'static {
    /// Records that `sid` has the live call `call_id`.
    async fn register(&self, sid: &SessionId, call_id: &str) -> Result<(), StoreError>;
    /// Forgets `sid`'s call.
    async fn unregister(&self, sid: &SessionId) -> Result<(), StoreError>;
    /// Forgets `sid`'s call only while it is `call_id`: an ending call never forgets a newer
    /// one that started on the session meanwhile.
    async fn forget_call(&self, sid: &SessionId, call_id: &str) -> Result<(), StoreError>;
    /// `sid`'s live call, if any.
    async fn call_of(&self, sid: &SessionId) -> Result<Option<String>, StoreError>;
    /// Every live call.
    async fn calls(&self) -> Result<Vec<(SessionId, String)>, StoreError>;
    /// Takes the lease when nobody holds it.
    async fn acquire(
        &self,
        sid: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;
    /// Extends a held lease; false when it was lost.
    async fn renew(
        &self,
        sid: &SessionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Gives a held lease up.
    async fn release(&self, sid: &SessionId, lease: &Lease) -> Result<(), StoreError>;
    /// The current holder.
    async fn holder(&self, sid: &SessionId) -> Result<Option<Lease>, StoreError>;
}

/// In-process leases (embedded mode).
#[derive(Default)]
pub struct MemoryLeases {
    inner: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    calls: HashMap<SessionId, String>,
    leases: HashMap<SessionId, (Lease, Instant)>,
    fences: HashMap<SessionId, u64>,
}

#[async_trait]
impl CallLeases for MemoryLeases {
    async fn register(&self, sid: &SessionId, call_id: &str) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        g.calls.insert(sid.clone(), call_id.to_owned());
        Ok(())
    }
    async fn unregister(&self, sid: &SessionId) -> Result<(), StoreError> {
        self.inner.lock().calls.remove(sid);
        Ok(())
    }
    async fn forget_call(&self, sid: &SessionId, call_id: &str) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.calls.get(sid).is_some_and(|c| c == call_id) {
            g.calls.remove(sid);
        }
        Ok(())
    }
    async fn call_of(&self, sid: &SessionId) -> Result<Option<String>, StoreError> {
        Ok(self.inner.lock().calls.get(sid).cloned())
    }
    async fn calls(&self) -> Result<Vec<(SessionId, String)>, StoreError> {
        let g = self.inner.lock();
        Ok(g.calls
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect())
    }
    async fn acquire(
        &self,
        sid: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let mut g = self.inner.lock();
        let now = Instant::now();
        if g.leases.get(sid).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let fence = {
            let f = g.fences.entry(sid.clone()).or_default();
            *f += 1;
            *f
        };
        let lease = Lease {
            owner: owner.to_owned(),
            fence,
        };
        g.leases.insert(sid.clone(), (lease.clone(), now + ttl));
        Ok(Some(lease))
    }
    async fn renew(
        &self,
        sid: &SessionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut g = self.inner.lock();
        let now = Instant::now();
        match g.leases.get_mut(sid) {
            Some((l, until)) if l == lease && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn release(&self, sid: &SessionId, lease: &Lease) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.leases.get(sid).is_some_and(|(l, _)| l == lease) {
            g.leases.remove(sid);
        }
        Ok(())
    }
    async fn holder(&self, sid: &SessionId) -> Result<Option<Lease>, StoreError> {
        let g = self.inner.lock();
        let now = Instant::now();
        Ok(g.leases
            .get(sid)
            .filter(|(_, until)| *until > now)
            .map(|(l, _)| l.clone()))
    }
}

/// Leases in Redis.
pub struct RedisLeases {
    client: Client,
    prefix: String,
    acquire: Script,
    renew: Script,
    forget: Script,
}

fn unavailable(e: Error) -> StoreError {
    metrics::counter!("switchboard_redis_errors_total", "op" => "lease").increment(1);
    StoreError::Unavailable(e)
}

impl RedisLeases {
    /// Leases under `prefix` (the deployment's Redis prefix).
    pub fn new(client: Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            acquire: Script::from_lua(include_str!("lua/acquire.lua")),
            renew: Script::from_lua(include_str!("lua/renew.lua")),
            forget: Script::from_lua(
                "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
                 return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
            ),
        }
    }
    fn lease_key(&self, sid: &SessionId) -> String {
        format!("{}:{{{sid}}}:call:lease", self.prefix)
    }
    fn index(&self) -> String {
        format!("{}:calls", self.prefix)
    }
    async fn renew_or_release(
        &self,
        sid: &SessionId,
        lease: &Lease,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let ok: i64 = self
            .renew
            .evalsha_with_reload(
                &self.client,
                vec![self.lease_key(sid)],
                vec![
                    format!("{}|{}", lease.owner, lease.fence),
                    ttl.map(|t| t.as_millis().max(1).to_string())
                        .unwrap_or_default(),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(ok == 1)
    }
}

#[async_trait]
impl CallLeases for RedisLeases {
    async fn register(&self, sid: &SessionId, call_id: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .client
            .hset(self.index(), (sid.as_str(), call_id))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
    async fn unregister(&self, sid: &SessionId) -> Result<(), StoreError> {
        let _: i64 = self
            .client
            .hdel(self.index(), sid.as_str())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
    async fn forget_call(&self, sid: &SessionId, call_id: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .forget
            .evalsha_with_reload(
                &self.client,
                vec![self.index()],
                vec![sid.to_string(), call_id.to_owned()],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }
    async fn call_of(&self, sid: &SessionId) -> Result<Option<String>, StoreError> {
        self.client
            .hget(self.index(), sid.as_str())
            .await
            .map_err(unavailable)
    }
    async fn calls(&self) -> Result<Vec<(SessionId, String)>, StoreError> {
        let all: HashMap<String, String> = self
            .client
            .hgetall(self.index())
            .await
            .map_err(unavailable)?;
        Ok(all
            .into_iter()
            .filter_map(|(s, c)| Some((s.parse().ok()?, c)))
            .collect())
    }
    async fn acquire(
        &self,
        sid: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let fence: Option<u64> = self
            .acquire
            .evalsha_with_reload(
                &self.client,
                vec![
                    self.lease_key(sid),
                    format!("{}:{{{sid}}}:call:fence", self.prefix),
                ],
                vec![owner.to_owned(), ttl.as_millis().max(1).to_string()],
            )
            .await
            .map_err(unavailable)?;
        Ok(fence.map(|fence| Lease {
            owner: owner.to_owned(),
            fence,
        }))
    }
    async fn renew(
        &self,
        sid: &SessionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.renew_or_release(sid, lease, Some(ttl)).await
    }
    async fn release(&self, sid: &SessionId, lease: &Lease) -> Result<(), StoreError> {
        self.renew_or_release(sid, lease, None).await.map(|_| ())
    }
    async fn holder(&self, sid: &SessionId) -> Result<Option<Lease>, StoreError> {
        let v: Option<String> = self
            .client
            .get(self.lease_key(sid))
            .await
            .map_err(unavailable)?;
        Ok(v.and_then(|v| {
            let (owner, fence) = v.rsplit_once('|')?;
            Some(Lease {
                owner: owner.to_owned(),
                fence: fence.parse().ok()?,
            })
        }))
    }
}
