//! Owned background work. Every long-lived task of an instance is spawned through a [`Tasks`]
//! (a `TaskTracker` and a `CancellationToken` from `tokio-util`): shutdown cancels the token,
//! closes the tracker and waits for the tasks to finish, so nothing runs on after its
//! application, and nothing holds the application's state forever. A leaf: it knows nothing
//! of the crate.
//!
//! Two kinds of task are owned otherwise, by the value they serve: a backend's sweeper or
//! pub/sub listener (the in-memory store and broker, the Redis broker) holds only a `Weak`
//! to its backend and ends when the backend is dropped; a server agent's turn-lock renewal
//! is aborted when its turn ends.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A group of tasks that stop together.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// A group that is also stopped when `parent` is (its token is a child of `parent`'s).
    pub fn child_of(parent: &Tasks) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token: parent.token.child_token(),
        }
    }

    /// Spawns `fut`; it is dropped at its next await once the group is stopped.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = token.cancelled() => {}
                () = fut => {}
            }
        })
    }

    /// Spawns `fut`, which watches [`Tasks::token`] itself to finish its work in order (a
    /// sideband that must release its lease); the group still waits for it.
    pub fn spawn_cooperative<F>(&self, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// The group's cancellation token.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// True once the group was asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Stops the group and waits up to `within` for its tasks to finish; true when they did.
    pub async fn stop(&self, within: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_ends_every_task_and_waits_for_them() {
        let tasks = Tasks::new();
        let child = Tasks::child_of(&tasks);
        tasks.spawn(std::future::pending());
        let token = child.token().clone();
        child.spawn_cooperative(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await; // orderly cleanup
        });
        assert_eq!((tasks.len(), child.len()), (1, 1));
        assert!(tasks.stop(Duration::from_secs(1)).await);
        assert!(child.is_stopping(), "a child group stops with its parent");
        assert!(child.stop(Duration::from_secs(1)).await);
        assert!(tasks.is_empty() && child.is_empty());
    }
}
