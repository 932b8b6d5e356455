//! [`AgentMemory`] on Redis, in exactly the Agents SDK `RedisSession` layout:
//! `<prefix>:<A>` (hash: `session_id`, `created_at`, `updated_at`, unix seconds as strings)
//! and `<prefix>:<A>:messages` (list of compact JSON items, oldest first; `RPUSH`, read with
//! `LRANGE -N -1`, `RPOP`). `clear_session` deletes those and the SDK's `<prefix>:<A>:counter`.
//! The lock is `<prefix>:<A>:lock` (`SET NX PX` with a token); appends made under a lock are
//! one Lua script that checks the token first.
//!
//! On a Redis Cluster the session id is hash-tagged, `<prefix>:{<A>}`, so a session's keys
//! share a slot (the scripts touch several). An SDK worker reads the same conversation by
//! opening `RedisSession("{" + A + "}", ...)` on the cluster.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use serde_json::Value;

use super::{AgentMemory, LockToken, MemoryError, new_token};

/// Agent memory in Redis.
pub struct RedisMemory {
    client: Client,
    prefix: String,
    cap: usize,
    ttl: Option<Duration>,
    add: Script,
    unlock: Script,
    extend: Script,
    hash_tag: bool,
}

fn unavailable(e: Error) -> MemoryError {
    metrics::counter!("switchboard_redis_errors_total", "op" => "memory").increment(1);
    MemoryError::Unavailable(e)
}

impl RedisMemory {
    /// Memory under `prefix` (the SDK's default is `agents:session`), keeping at most `cap`
    /// items per session, with an optional TTL on the session's keys.
    pub fn new(client: Client, prefix: &str, cap: usize, ttl: Option<Duration>) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            cap: cap.max(1),
            ttl,
            add: Script::from_lua(include_str!("lua/add_items.lua")),
            unlock: Script::from_lua(include_str!("lua/unlock.lua")),
            extend: Script::from_lua(include_str!("lua/extend_lock.lua")),
            hash_tag: false,
        }
    }

    /// Hash-tags session ids in keys (`<prefix>:{<A>}`), as a Redis Cluster requires.
    pub fn hash_tagged(mut self, on: bool) -> Self {
        self.hash_tag = on;
        self
    }

    fn session_key(&self, s: &str) -> String {
        if self.hash_tag {
            format!("{}:{{{s}}}", self.prefix)
        } else {
            format!("{}:{s}", self.prefix)
        }
    }
}

#[async_trait]
impl AgentMemory for RedisMemory {
    async fn get_items(
        &self,
        session: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, MemoryError> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let start = limit.map_or(0, |n| -(n as i64));
        let raw: Vec<String> = self
            .client
            .lrange(format!("{}:messages", self.session_key(session)), start, -1)
            .await
            .map_err(unavailable)?;
        // Like the SDK, an undecodable entry is skipped rather than failing the read.
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    async fn add_items(
        &self,
        session: &str,
        items: &[Value],
        lock: Option<&LockToken>,
    ) -> Result<(), MemoryError> {
        if items.is_empty() {
            return Ok(());
        }
        let key = self.session_key(session);
        let mut args = vec![
            session.to_owned(),
            crate::clock::unix_now().to_string(),
            self.cap.to_string(),
            self.ttl
                .map(|t| t.as_secs().max(1).to_string())
                .unwrap_or_default(),
            lock.map(|t| t.0.clone()).unwrap_or_default(),
        ];
        args.extend(items.iter().map(Value::to_string));
        let ok: i64 = self
            .add
            .evalsha_with_reload(
                &self.client,
                vec![
                    key.clone(),
                    format!("{key}:messages"),
                    format!("{key}:lock"),
                ],
                args,
            )
            .await
            .map_err(unavailable)?;
        if ok == 1 {
            Ok(())
        } else {
            Err(MemoryError::LockLost)
        }
    }

    async fn pop_item(&self, session: &str) -> Result<Option<Value>, MemoryError> {
        let raw: Option<String> = self
            .client
            .rpop(format!("{}:messages", self.session_key(session)), None)
            .await
            .map_err(unavailable)?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    async fn clear_session(&self, session: &str) -> Result<(), MemoryError> {
        let key = self.session_key(session);
        let _: i64 = self
            .client
            .del(vec![
                key.clone(),
                format!("{key}:messages"),
                format!("{key}:counter"),
            ])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn lock(
        &self,
        session: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockToken, MemoryError> {
        let key = format!("{}:lock", self.session_key(session));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let token = new_token();
            let set: Option<String> = self
                .client
                .set(
                    &key,
                    token.0.as_str(),
                    Some(Expiration::PX(ttl.as_millis().max(1) as i64)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                return Ok(token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MemoryError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn extend_lock(
        &self,
        session: &str,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, MemoryError> {
        let ok: i64 = self
            .extend
            .evalsha_with_reload(
                &self.client,
                vec![format!("{}:lock", self.session_key(session))],
                vec![token.0.clone(), ttl.as_millis().max(1).to_string()],
            )
            .await
            .map_err(unavailable)?;
        Ok(ok == 1)
    }

    async fn unlock(&self, session: &str, token: &LockToken) -> Result<(), MemoryError> {
        let _: i64 = self
            .unlock
            .evalsha_with_reload(
                &self.client,
                vec![format!("{}:lock", self.session_key(session))],
                vec![token.0.clone()],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
