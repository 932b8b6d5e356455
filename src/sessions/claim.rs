//! Idempotency claims in a session's scope: the first caller with a key runs the work and
//! stores its answer; a caller with the same key gets that answer instead of running it
//! again (waiting while the first still runs). Works across instances: the claim is the
//! store's atomic `put_once`. A first attempt that fails releases its key, so a retry runs.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::SessionId;
use crate::store::{SessionStore, StoreError};

/// The value a claimed key holds until its answer is stored.
const PENDING: &str = "pending";

/// How often a waiting caller looks for the first caller's answer.
const POLL: Duration = Duration::from_millis(50);

/// Why a claim could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The first call with this key is still running after the wait.
    #[error("a call with this key is still running")]
    InProgress,
    /// The stored answer cannot be read.
    #[error("a stored answer is unreadable")]
    Unreadable(#[source] serde_json::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One key in one session's scope.
#[derive(Clone, Copy)]
pub struct Claim<'a> {
    /// Where claims live.
    pub store: &'a dyn SessionStore,
    /// The session.
    pub session: &'a SessionId,
    /// The key (namespaced by the caller, e.g. `tool:<correlation id>`).
    pub key: &'a str,
    /// How long the claim and its answer are kept.
    pub ttl: Duration,
}

impl Claim<'_> {
    /// Claims the key. `Ok(None)`: this caller holds it and must [`Claim::answer`] or
    /// [`Claim::release`]. `Ok(Some(first))`: an earlier caller's answer (waited for up to
    /// `wait` while it was still running).
    pub async fn claim_or_wait<T: DeserializeOwned>(
        &self,
        wait: Duration,
    ) -> Result<Option<T>, ClaimError> {
        let Some(mut existing) = self
            .store
            .put_once(self.session, self.key, PENDING, self.ttl)
            .await?
        else {
            return Ok(None);
        };
        let deadline = Instant::now() + wait;
        loop {
            if existing.is_empty() {
                // The first attempt failed and released the key: this caller runs it.
                if self.first().await? {
                    return Ok(None);
                }
            } else if existing != PENDING {
                return serde_json::from_str(&existing)
                    .map(Some)
                    .map_err(ClaimError::Unreadable);
            }
            if Instant::now() > deadline {
                return Err(ClaimError::InProgress);
            }
            tokio::time::sleep(POLL).await;
            existing = self
                .store
                .get_value(self.session, self.key)
                .await?
                .unwrap_or_default();
        }
    }

    /// Claims the key for an answer-once action (no answer is kept): true for the one
    /// caller that got it, false for every later one.
    pub async fn first(&self) -> Result<bool, StoreError> {
        Ok(self
            .store
            .put_once(self.session, self.key, PENDING, self.ttl)
            .await?
            .is_none())
    }

    /// Stores the claimed key's answer for later callers.
    pub async fn answer<T: Serialize>(&self, answer: &T) -> Result<(), StoreError> {
        // Answers are the API's own response types.
        let raw = serde_json::to_string(answer).expect("answers serialize");
        self.store
            .put_value(self.session, self.key, &raw, self.ttl)
            .await
    }

    /// Gives the key up (the claimed work failed without effect): a retry runs it.
    pub async fn release(&self) -> Result<(), StoreError> {
        self.store.delete_value(self.session, self.key).await
    }
}

/// What [`once`] returned: this caller's fresh answer, or the first caller's.
#[derive(Debug, Clone, PartialEq)]
pub enum Once<T> {
    /// This caller ran the work (or there was no key).
    Fresh(T),
    /// An earlier caller with the same key ran it; this is its answer.
    Repeat(T),
}

/// Why [`once`] failed: the claim, or the work itself.
#[derive(Debug)]
pub enum OnceError<E> {
    /// The claim could not be settled (still running after the wait, unreadable, store).
    Claim(ClaimError),
    /// The work failed; its key was released so a retry runs it.
    Work(E),
}

/// Runs `work` at most once per claimed key: a later caller with the same key gets the
/// first answer (waiting up to `wait`). Without a claim the work just runs. Work that fails
/// releases its key.
pub async fn once<T, E, F, Fut>(
    claim: Option<Claim<'_>>,
    wait: Duration,
    work: F,
) -> Result<Once<T>, OnceError<E>>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let Some(c) = claim else {
        return work().await.map(Once::Fresh).map_err(OnceError::Work);
    };
    if let Some(first) = c.claim_or_wait(wait).await.map_err(OnceError::Claim)? {
        return Ok(Once::Repeat(first));
    }
    match work().await {
        Ok(answer) => {
            let stored = c.answer(&answer).await;
            stored.map_err(|e| OnceError::Claim(e.into()))?;
            Ok(Once::Fresh(answer))
        }
        Err(e) => {
            let released = c.release().await;
            released.map_err(|e| OnceError::Claim(e.into()))?;
            Err(OnceError::Work(e))
        }
    }
}
