//! [`RecordBuffer`] on Redis: an accepted entry is in Redis before the path that produced it
//! answers, so an instance killed with `SIGKILL` or a database that is down loses nothing.
//!
//! Keys (hash-tagged by session, so each script touches one Redis Cluster slot):
//! `{prefix}:{S}:rec:seq` (the session's counter), `{prefix}:{S}:rec:buf` (sorted set of
//! `seq:json` by `seq`, no TTL: it empties when flushed), `{prefix}:{S}:rec:erased` (a
//! tombstone), and `{prefix}:rec:dirty` (sorted set of sessions with buffered entries, scored
//! by when a flusher may next take them; a claim pushes the score out by its lease).

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;

use super::{Entry, RecordBuffer, RecordError};

const APPEND_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, seq .. ':' .. ARGV[1])
return seq
"#;

const MARK_LUA: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;

const CLAIM_LUA: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"#;

const PENDING_LUA: &str = r#"
return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
"#;

const TRIM_LUA: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"#;

const UNMARK_LUA: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"#;

const ERASE_LUA: &str = r#"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
return 1
"#;

/// How long a session's counter and erasure tombstone outlive its last entry.
const KEEP: Duration = Duration::from_secs(30 * 86_400);

/// Buffered entries in Redis.
pub struct RedisBuffer {
    client: Client,
    prefix: String,
    append: Script,
    mark: Script,
    claim: Script,
    pending: Script,
    trim: Script,
    unmark: Script,
    erase: Script,
}

impl RedisBuffer {
    /// A buffer on `client` under `prefix`.
    pub fn new(client: Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            append: Script::from_lua(APPEND_LUA),
            mark: Script::from_lua(MARK_LUA),
            claim: Script::from_lua(CLAIM_LUA),
            pending: Script::from_lua(PENDING_LUA),
            trim: Script::from_lua(TRIM_LUA),
            unmark: Script::from_lua(UNMARK_LUA),
            erase: Script::from_lua(ERASE_LUA),
        }
    }

    fn key(&self, session: &str, what: &str) -> String {
        format!("{}:{{{session}}}:rec:{what}", self.prefix)
    }

    fn dirty(&self) -> String {
        format!("{}:rec:dirty", self.prefix)
    }

    async fn mark(&self, session: &str) -> Result<(), RecordError> {
        let _: i64 = self
            .mark
            .evalsha_with_reload(
                &self.client,
                vec![self.dirty()],
                vec![crate::clock::unix_now_ms().to_string(), session.to_owned()],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl RecordBuffer for RedisBuffer {
    async fn append(&self, mut entry: Entry) -> Result<Option<u64>, RecordError> {
        let sid = entry.session_id.clone();
        entry.seq = 0;
        let json = serde_json::to_string(&entry).expect("entries serialize");
        let keys = vec![
            self.key(&sid, "seq"),
            self.key(&sid, "buf"),
            self.key(&sid, "erased"),
        ];
        let seq: i64 = self
            .append
            .evalsha_with_reload(&self.client, keys, vec![json, KEEP.as_millis().to_string()])
            .await?;
        if seq < 0 {
            return Ok(None);
        }
        // Its own command: on a Redis Cluster the dirty set is in another slot.
        self.mark(&sid).await?;
        Ok(Some(seq as u64))
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<String>, RecordError> {
        let now = crate::clock::unix_now_ms();
        let ids: Vec<String> = self
            .claim
            .evalsha_with_reload(
                &self.client,
                vec![self.dirty()],
                vec![
                    now.to_string(),
                    limit.to_string(),
                    (now + lease.as_millis() as u64).to_string(),
                ],
            )
            .await?;
        Ok(ids)
    }

    async fn pending(&self, session: &str, limit: usize) -> Result<Vec<Entry>, RecordError> {
        let raw: Vec<String> = self
            .pending
            .evalsha_with_reload(
                &self.client,
                vec![self.key(session, "buf")],
                vec![limit.to_string()],
            )
            .await?;
        let mut out = Vec::with_capacity(raw.len());
        for m in raw {
            let Some((seq, json)) = m.split_once(':') else {
                continue;
            };
            match (seq.parse::<u64>(), serde_json::from_str::<Entry>(json)) {
                (Ok(seq), Ok(mut e)) => {
                    e.seq = seq;
                    out.push(e);
                }
                _ => tracing::warn!(session_id = session, "skipping an undecodable record entry"),
            }
        }
        Ok(out)
    }

    async fn ack(&self, session: &str, seq: u64) -> Result<(), RecordError> {
        let buf = self.key(session, "buf");
        let _: i64 = self
            .trim
            .evalsha_with_reload(&self.client, vec![buf.clone()], vec![seq.to_string()])
            .await?;
        // Unmark, then look again: an append that lands in between marks the session after
        // the unmark, or is seen by the second look.
        let _: i64 = self
            .unmark
            .evalsha_with_reload(&self.client, vec![self.dirty()], vec![session.to_owned()])
            .await?;
        let left: i64 = self
            .trim
            .evalsha_with_reload(&self.client, vec![buf], vec!["-inf".to_owned()])
            .await?;
        if left > 0 {
            self.mark(session).await?;
        }
        Ok(())
    }

    async fn erase(&self, session: &str) -> Result<(), RecordError> {
        let keys = vec![
            self.key(session, "seq"),
            self.key(session, "buf"),
            self.key(session, "erased"),
        ];
        let _: i64 = self
            .erase
            .evalsha_with_reload(&self.client, keys, vec![KEEP.as_millis().to_string()])
            .await?;
        let _: i64 = self
            .unmark
            .evalsha_with_reload(&self.client, vec![self.dirty()], vec![session.to_owned()])
            .await?;
        Ok(())
    }
}
