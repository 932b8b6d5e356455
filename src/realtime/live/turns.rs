//! Turns from GPT-Live's transcript fragments: a turn is the fragments one side spoke
//! without a silence longer than [`super::TURN_GAP_MS`] between them.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::TURN_GAP_MS;

/// One transcript fragment.
#[derive(Debug, Clone)]
pub(super) struct Fragment {
    pub(super) text: String,
    pub(super) start_ms: u64,
    pub(super) end_ms: u64,
    pub(super) seen: Instant,
}

/// The fragments of the turn being spoken.
#[derive(Debug, Default)]
pub(super) struct Turn(pub(super) Vec<Fragment>);

impl Turn {
    pub(super) fn text(&self) -> String {
        self.0
            .iter()
            .map(|f| f.text.as_str())
            .collect::<String>()
            .trim()
            .to_owned()
    }

    /// True when `next` starts after a silence longer than the turn gap.
    pub(super) fn gap_before(&self, start_ms: u64) -> bool {
        self.0
            .last()
            .is_some_and(|l| start_ms.saturating_sub(l.end_ms) > TURN_GAP_MS)
    }

    pub(super) fn quiet_for(&self, d: Duration) -> bool {
        self.0.last().is_some_and(|l| l.seen.elapsed() >= d)
    }
}

/// The user's current turn, shared with the delegations that wait for it.
#[derive(Default)]
pub(super) struct UserTurn {
    pub(super) turn: Mutex<Turn>,
    pub(super) arrived: Notify,
    /// `start_ms` of the latest user fragment (to tell a late answer).
    pub(super) latest_start: AtomicU64,
}
