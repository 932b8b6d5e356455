//! The flusher: moves buffered entries into the database in batches, off every request's
//! path. Each instance runs one; they share the work through the buffer's claims. A batch
//! leaves the buffer only after the database committed it, and a failed write (the database
//! refuses connections, or hangs past the statement timeout) is retried with backoff up to
//! 5 s, so an outage delays the record but loses nothing. The same loop applies retention.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{RecordBuffer, RecordError, RecordStore};

/// Sessions claimed per pass.
const SESSIONS_PER_PASS: usize = 32;
/// Entries written per statement batch.
const BATCH: usize = 256;
/// How long a claimed session is left to its flusher.
const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// Longest pause between retries while the database is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Moves entries from a buffer to a store.
pub struct Flusher {
    /// Where accepted entries wait.
    pub buffer: Arc<dyn RecordBuffer>,
    /// The database.
    pub store: Arc<dyn RecordStore>,
    /// Pause between passes while all is well.
    pub every: Duration,
    /// Delete records idle for longer than this.
    pub retention: Option<Duration>,
}

impl Flusher {
    /// One pass: claims sessions and writes what they buffer. Returns the entries written.
    pub async fn pass(&self) -> Result<usize, RecordError> {
        let sessions = self.buffer.claim(SESSIONS_PER_PASS, CLAIM_LEASE).await?;
        let mut written = 0;
        let mut failed = None;
        for sid in sessions {
            if failed.is_some() {
                // Give the claim back so the next pass (here or elsewhere) retries it.
                let _ = self.buffer.ack(&sid, 0).await;
                continue;
            }
            match self.session(&sid).await {
                Ok(n) => written += n,
                Err(e) => {
                    let _ = self.buffer.ack(&sid, 0).await;
                    failed = Some(e);
                }
            }
        }
        metrics::counter!("switchboard_record_flushed_total").increment(written as u64);
        match failed {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    async fn session(&self, sid: &str) -> Result<usize, RecordError> {
        let mut written = 0;
        loop {
            let batch = self.buffer.pending(sid, BATCH).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                self.buffer.ack(sid, 0).await?;
                return Ok(written);
            };
            self.store.write(&batch).await?;
            self.buffer.ack(sid, last).await?;
            written += batch.len();
            if batch.len() < BATCH {
                return Ok(written);
            }
        }
    }

    /// Deletes records idle past the retention period; returns how many sessions.
    pub async fn expire(&self) -> Result<u64, RecordError> {
        let Some(keep) = self.retention else {
            return Ok(0);
        };
        let before = crate::clock::unix_now_ms() as i64 - keep.as_millis() as i64;
        self.store.expire(before).await
    }

    /// Runs passes until `this` is dropped or `stop` is cancelled (then one last pass).
    pub async fn run(this: Weak<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut pause = this.upgrade().map(|f| f.every).unwrap_or_default();
        let mut last_expiry: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {
                    if let Some(f) = this.upgrade() {
                        let _ = f.pass().await;
                    }
                    return;
                }
            }
            let Some(f) = this.upgrade() else { return };
            match f.pass().await {
                Ok(_) => pause = f.every,
                Err(e) => {
                    metrics::counter!("switchboard_record_flush_errors_total").increment(1);
                    pause = (pause * 2).clamp(f.every, MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?pause, "writing the conversation record failed; entries stay buffered");
                }
            }
            if last_expiry.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
                last_expiry = Some(tokio::time::Instant::now());
                match f.expire().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "deleted records past their retention"),
                    Err(e) => tracing::warn!(error = %e, "applying record retention failed"),
                }
            }
        }
    }
}
