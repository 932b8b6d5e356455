//! Which publishes slide a session's TTLs. A publish refreshes its session's TTLs (history,
//! and the session's state) only when it is the session's first on this instance in the
//! current window; the others skip those `PEXPIRE`s and only check that the session exists.
//! The TTLs a refresh sets carry one window of slack, so every key still lives at least its
//! full TTL after the session's last event.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::domain::SessionId;

/// The longest refresh window; shorter when a TTL is under ten windows.
const WINDOW: Duration = Duration::from_secs(1);

/// The sessions refreshed in the current window.
pub(super) struct Refreshes(parking_lot::Mutex<Window>);

struct Window {
    since: Instant,
    seen: HashSet<SessionId>,
}

impl Default for Refreshes {
    fn default() -> Self {
        Self(parking_lot::Mutex::new(Window {
            since: Instant::now(),
            seen: HashSet::new(),
        }))
    }
}

impl Refreshes {
    /// Whether a publish to `session` refreshes its TTLs, and the window (ms) the TTLs then
    /// carry as slack. `shortest_ttl_ms` is the shortest TTL the publish would slide.
    pub(super) fn due(&self, session: &SessionId, shortest_ttl_ms: u64) -> (bool, u64) {
        let window = (WINDOW.as_millis() as u64).min(shortest_ttl_ms / 10);
        if window == 0 {
            return (true, 0);
        }
        let mut w = self.0.lock();
        if w.since.elapsed() >= Duration::from_millis(window) {
            w.seen.clear();
            w.since = Instant::now();
        }
        if w.seen.contains(session) {
            return (false, window);
        }
        w.seen.insert(session.clone());
        (true, window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_publish_of_a_window_refreshes_and_the_next_ones_do_not() {
        let r = Refreshes::default();
        let (a, b): (SessionId, SessionId) = (
            "11111111-1111-4111-8111-111111111111".parse().unwrap(),
            "22222222-2222-4222-8222-222222222222".parse().unwrap(),
        );
        assert_eq!(r.due(&a, 60_000), (true, 1000));
        assert_eq!(r.due(&a, 60_000), (false, 1000));
        assert_eq!(r.due(&b, 60_000), (true, 1000), "each session has its own");
        // A short TTL gets a window of a tenth of it; one under 10 ms always refreshes.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.due(&a, 500), (true, 50), "a new window began");
        assert_eq!(r.due(&a, 5), (true, 0));
    }
}
