//! Publishing on Redis: a publish's script arguments, its call (batched with others, or
//! its own), its outcome, and the wait for replicas.

use fred::prelude::*;

use super::batch;
use super::{IDEMPOTENCY_MS, REPLICA_WAIT_MS, RedisBroker, unavailable};
use crate::broker::{BrokerError, Publish, Published, encode, new_epoch};
use crate::domain::SessionId;

impl RedisBroker {
    /// Blocks until `min_replicas` replicas of the session's primary acknowledged every
    /// write sent on the connection so far (this publish included); an error otherwise, so
    /// the publisher retries with its idempotency key instead of trusting a write that a
    /// failover could drop.
    async fn wait_for_replicas(&self, session: &SessionId) -> Result<(), BrokerError> {
        let (meta, _, _) = self.keys(session);
        let slot = fred::util::redis_keyslot(meta.as_bytes());
        let options = fred::types::config::Options {
            cluster_hash: Some(fred::types::ClusterHash::Custom(slot)),
            ..Default::default()
        };
        let acked: i64 = self
            .client
            .with_options(&options)
            .wait(i64::from(self.min_replicas), REPLICA_WAIT_MS)
            .await
            .map_err(unavailable)?;
        if acked < i64::from(self.min_replicas) {
            metrics::counter!("switchboard_redis_errors_total", "op" => "replica_wait")
                .increment(1);
            return Err(BrokerError::Other(format!(
                "only {acked} of {} replicas acknowledged the publish within {REPLICA_WAIT_MS} ms",
                self.min_replicas
            )));
        }
        Ok(())
    }

    /// The publish script; with `state_ttl` (ms), only while the session's state exists.
    pub(super) async fn append_checked(
        &self,
        session: &SessionId,
        mut event: Publish,
        state_ttl: Option<u64>,
    ) -> Result<Option<Published>, BrokerError> {
        // Serialize once with placeholders; the script splices in the seq and epoch.
        let data = std::mem::take(&mut event.data);
        let (id, frame) = encode(session, 0, "", &event.kind, data, event.trace_id);
        let marker = "\"seq\":0,\"epoch\":\"\"";
        let at = frame
            .text()
            .find(marker)
            .ok_or(BrokerError::Protocol("envelope layout changed"))?;
        let head = frame.json.slice(..at + "\"seq\":".len());
        let tail = frame.json.slice(at + marker.len()..);
        let shortest = state_ttl.map_or(self.ttl_ms(), |t| t.min(self.ttl_ms()));
        let (refresh, slack) = self.refresh.due(session, shortest);
        let job = batch::Job {
            tag: format!("{}:{{{session}}}", self.prefix),
            ttl: self.ttl_ms() + slack,
            state_ttl: state_ttl.map_or(0, |t| t + slack),
            refresh,
            idem: event.idempotency_key.take(),
            head,
            tail,
            id,
        };
        let outcome = match &self.batcher {
            Some(batcher) => batcher.run(job).await?,
            None => self.publish_one(job).await?,
        };
        let (fresh, result) = match outcome {
            batch::Outcome::NotLive => return Ok(None),
            batch::Outcome::Fresh(r) => (true, r),
            batch::Outcome::Duplicate(r) => (false, r),
        };
        let mut parts = result.splitn(3, ' ');
        let (Some(seq), Some(epoch), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BrokerError::Protocol("publish result"));
        };
        if self.min_replicas > 0 {
            self.wait_for_replicas(session).await?;
        }
        if fresh {
            crate::metrics::published(event.kind.as_str());
        }
        Ok(Some(Published {
            seq: seq.parse().map_err(|_| BrokerError::Protocol("seq"))?,
            epoch: epoch.to_owned(),
            id: id.parse().map_err(|_| BrokerError::Protocol("event id"))?,
            duplicate: !fresh,
        }))
    }

    /// One publish in a call of its own, keys declared (a Redis Cluster, or batching off).
    async fn publish_one(&self, job: batch::Job) -> Result<batch::Outcome, BrokerError> {
        let tag = &job.tag;
        let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
        let r: Vec<Value> = self
            .publish
            .evalsha_with_reload(
                &self.client,
                vec![
                    format!("{tag}:meta"),
                    format!("{tag}:events"),
                    format!("{tag}:idem:{}", job.idem.as_deref().unwrap_or_default()),
                    format!("{tag}:state"),
                ],
                vec![
                    tag.clone(),
                    self.history_size.to_string(),
                    job.ttl.to_string(),
                    new_epoch(),
                    text(&job.head),
                    text(&job.tail),
                    job.id.to_string(),
                    if job.idem.is_some() { "1" } else { "0" }.to_owned(),
                    IDEMPOTENCY_MS.to_string(),
                    self.publish_command().to_owned(),
                    job.state_ttl.to_string(),
                    if job.refresh { "1" } else { "0" }.to_owned(),
                ],
            )
            .await
            .map_err(unavailable)?;
        match r.as_slice() {
            [flag, _] if flag.as_i64() == Some(-1) => Ok(batch::Outcome::NotLive),
            [flag, result] => {
                let result = result.as_string().unwrap_or_default();
                if flag.as_i64() == Some(1) || flag.as_string().as_deref() == Some("1") {
                    Ok(batch::Outcome::Fresh(result))
                } else {
                    Ok(batch::Outcome::Duplicate(result))
                }
            }
            _ => Err(BrokerError::Protocol("publish reply")),
        }
    }
}
