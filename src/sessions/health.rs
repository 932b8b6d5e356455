//! Readiness kept by a background check, so `/api/ready` answers at once from memory even
//! while Redis hangs: every [`CHECK_EVERY`] the session store and the broker are pinged, each
//! within [`CHECK_TIMEOUT`]; the last outcome is what readiness reports. A backend that comes
//! back is reported ready within one period. The check holds only a weak reference, so it
//! stops when the application is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

use super::Sessions;

/// How often the backends are pinged.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// The longest one ping may take before its backend counts as unreachable.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// The last readiness outcome: `None` when ready, else what is unreachable.
#[derive(Default)]
pub struct Health(RwLock<Option<&'static str>>);

impl Health {
    /// `Ok(())` when the last check reached every backend, else the one that failed.
    pub fn ready(&self) -> Result<(), &'static str> {
        match *self.0.read() {
            None => Ok(()),
            Some(what) => Err(what),
        }
    }

    /// Pings once and records the outcome.
    pub async fn check(&self, sessions: &Sessions) {
        let store = tokio::time::timeout(CHECK_TIMEOUT, sessions.store.ping()).await;
        let outcome = match store {
            Ok(Ok(())) => match tokio::time::timeout(CHECK_TIMEOUT, sessions.broker.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => failed("broker", &e),
                Err(_) => failed("broker", &"no answer in time"),
            },
            Ok(Err(e)) => failed("session store", &e),
            Err(_) => failed("session store", &"no answer in time"),
        };
        *self.0.write() = outcome;
    }

    /// Checks once now, then every [`CHECK_EVERY`] until `sessions` is dropped.
    pub async fn watch(self: Arc<Self>, sessions: Weak<Sessions>) {
        loop {
            let Some(s) = sessions.upgrade() else { return };
            self.check(&s).await;
            drop(s);
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}

fn failed(what: &'static str, e: &dyn std::fmt::Display) -> Option<&'static str> {
    tracing::debug!(error = %e, "{what} is not ready");
    Some(what)
}
