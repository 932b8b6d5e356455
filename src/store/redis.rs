//! [`SessionStore`] on Redis: `sb:{S}:state` (hash), its TTL sliding on every read.
//! Any instance reads what another wrote.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;

use super::{SessionState, SessionStore, StoreError};
use crate::domain::SessionId;

/// Reads the hash and slides its TTL in one step.
const GET_LUA: &str = r#"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return h end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return h
"#;

/// Sets a field only if the session exists (KEYS[1] state; ARGV: field, value or "" to
/// delete, updated_at, ttl ms).
const SET_FIELD_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// Compare-and-set of active_agent (ARGV: from, to, updated_at, ttl ms).
const CAS_LUA: &str = r#"
if redis.call('HGET', KEYS[1], 'active_agent') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'active_agent', ARGV[2], 'updated_at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// Session state in Redis.
pub struct RedisStore {
    client: Client,
    prefix: String,
    ttl: Duration,
    get: Script,
    set_field: Script,
    cas: Script,
}

impl RedisStore {
    /// A store on a connected client; sessions expire after `ttl` without activity.
    pub fn new(client: Client, prefix: &str, ttl: Duration) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            ttl,
            get: Script::from_lua(GET_LUA),
            set_field: Script::from_lua(SET_FIELD_LUA),
            cas: Script::from_lua(CAS_LUA),
        }
    }

    fn key(&self, id: &SessionId) -> String {
        format!("{}:{{{id}}}:state", self.prefix)
    }

    fn revoked_key(&self, id: &SessionId) -> String {
        format!("{}:{{{id}}}:revoked", self.prefix)
    }

    fn value_key(&self, id: &SessionId, key: &str) -> String {
        format!("{}:{{{id}}}:kv:{key}", self.prefix)
    }
}

fn unavailable(e: Error) -> StoreError {
    metrics::counter!("switchboard_redis_errors_total", "op" => "store").increment(1);
    StoreError::Unavailable(e)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, s: &SessionState) -> Result<(), StoreError> {
        let key = self.key(&s.session_id);
        let mut fields: Vec<(&str, String)> = vec![
            ("session_id", s.session_id.to_string()),
            ("scenario_id", s.scenario_id.to_string()),
            ("root_agent", s.root_agent.to_string()),
            ("active_agent", s.active_agent.to_string()),
            ("created_at", s.created_at.clone()),
            ("updated_at", s.updated_at.clone()),
        ];
        if let Some(c) = &s.context {
            fields.push(("context", c.clone()));
        }
        if let Some(u) = &s.user_id {
            fields.push(("user_id", u.clone()));
        }
        // Marks when this dataset began (kept if already set): see `dataset_since`. Its own
        // command, sent alongside the transaction: on a Redis Cluster the marker and the
        // session live in different slots, which one MULTI cannot span.
        let mark = async {
            let _: () = self
                .client
                .set(
                    format!("{}:dataset", self.prefix),
                    crate::clock::unix_now_ms(),
                    None,
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(unavailable)?;
            Ok::<_, StoreError>(())
        };
        let tx = self.client.multi();
        let _: () = tx.del(&key).await.map_err(unavailable)?;
        let _: () = tx.hset(&key, fields).await.map_err(unavailable)?;
        let _: () = tx
            .pexpire(&key, self.ttl.as_millis() as i64, None)
            .await
            .map_err(unavailable)?;
        let (marked, written) = tokio::join!(mark, async {
            let _: () = tx.exec(true).await.map_err(unavailable)?;
            Ok::<_, StoreError>(())
        });
        marked?;
        written?;
        Ok(())
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        let h: HashMap<String, String> = self
            .get
            .evalsha_with_reload(
                &self.client,
                vec![self.key(id)],
                vec![self.ttl.as_millis().to_string()],
            )
            .await
            .map_err(unavailable)?;
        if h.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            h.get(name)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("{name} missing in {}", self.key(id))))
        };
        let parse = |name: &str| -> Result<String, StoreError> { field(name) };
        Ok(Some(SessionState {
            session_id: id.clone(),
            scenario_id: parse("scenario_id")?
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            root_agent: parse("root_agent")?
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            active_agent: parse("active_agent")?
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            created_at: field("created_at")?,
            updated_at: field("updated_at")?,
            context: h.get("context").cloned(),
            user_id: h.get("user_id").cloned(),
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.client.ping(None).await.map_err(unavailable)?;
        Ok(())
    }

    async fn revoke(&self, id: &SessionId, ttl: Duration) -> Result<(), StoreError> {
        let tx = self.client.multi();
        let _: () = tx
            .set(
                self.revoked_key(id),
                1,
                Some(Expiration::PX(ttl.as_millis() as i64)),
                None,
                false,
            )
            .await
            .map_err(unavailable)?;
        let _: () = tx.del(self.key(id)).await.map_err(unavailable)?;
        let _: () = tx.exec(true).await.map_err(unavailable)?;
        Ok(())
    }

    async fn is_revoked(&self, id: &SessionId) -> Result<bool, StoreError> {
        let n: i64 = self
            .client
            .exists(self.revoked_key(id))
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn set_context(&self, id: &SessionId, context: Option<&str>) -> Result<bool, StoreError> {
        let n: i64 = self
            .set_field
            .evalsha_with_reload(
                &self.client,
                vec![self.key(id)],
                vec![
                    "context".to_owned(),
                    context.unwrap_or_default().to_owned(),
                    crate::clock::now_rfc3339(),
                    self.ttl.as_millis().to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn cas_active_agent(
        &self,
        id: &SessionId,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let n: i64 = self
            .cas
            .evalsha_with_reload(
                &self.client,
                vec![self.key(id)],
                vec![
                    from.to_owned(),
                    to.to_owned(),
                    crate::clock::now_rfc3339(),
                    self.ttl.as_millis().to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn put_once(
        &self,
        session: &SessionId,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let k = self.value_key(session, key);
        let expire = Some(Expiration::PX(ttl.as_millis().max(1) as i64));
        let set: Option<String> = self
            .client
            .set(&k, value, expire, Some(SetOptions::NX), false)
            .await
            .map_err(unavailable)?;
        if set.is_some() {
            return Ok(None);
        }
        let existing: Option<String> = self.client.get(&k).await.map_err(unavailable)?;
        Ok(Some(existing.unwrap_or_default()))
    }

    async fn put_value(
        &self,
        session: &SessionId,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let expire = Some(Expiration::PX(ttl.as_millis().max(1) as i64));
        let _: () = self
            .client
            .set(self.value_key(session, key), value, expire, None, false)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_value(&self, session: &SessionId, key: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .client
            .del(self.value_key(session, key))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_value(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.client
            .get(self.value_key(session, key))
            .await
            .map_err(unavailable)
    }

    async fn dataset_since(&self) -> Result<u64, StoreError> {
        let key = format!("{}:dataset", self.prefix);
        let now = crate::clock::unix_now_ms();
        // SET NX GET: keeps the first value, returns it (nil when we just set it).
        let prev: Option<u64> = self
            .client
            .set(&key, now, None, Some(SetOptions::NX), true)
            .await
            .map_err(unavailable)?;
        Ok(prev.unwrap_or(now))
    }
}
