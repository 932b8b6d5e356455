//! Recovery and the history/live seam, as pure functions (property-tested).
//!
//! A connection joins the hub (live events start queueing) *before* it reads the history.
//! [`plan`] decides from that read whether the client's `since`+`epoch` can be honoured in
//! full (never a partial replay); [`Seam`] then admits each event exactly once in seq order,
//! dropping live copies of events already replayed and flagging a gap instead of skipping it.

use crate::broker::{Frame, History};

/// What to do right after `welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Whether the client's position was honoured.
    pub recovered: bool,
    /// Events to replay, ascending (empty unless recovered).
    pub replay: Vec<Frame>,
    /// The seq the client has after the replay; live events start after it.
    pub start_after: u64,
}

/// Decides recovery. `since`/`epoch` are the client's claimed position.
pub fn plan(since: Option<u64>, epoch: Option<&str>, history: &History) -> Plan {
    let top = history.top.seq;
    if let (Some(since), Some(epoch)) = (since, epoch)
        && epoch == history.top.epoch
        && since <= top
        && history.complete
    {
        let replay: Vec<Frame> = history
            .events
            .iter()
            .filter(|f| f.seq > since && f.seq <= top)
            .cloned()
            .collect();
        return Plan {
            recovered: true,
            replay,
            start_after: since,
        };
    }
    Plan {
        recovered: false,
        replay: Vec::new(),
        start_after: top,
    }
}

/// The verdict on one event at the seam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The next event: send it.
    Deliver,
    /// Already sent: drop it.
    Duplicate,
    /// Events are missing before this one: the client must re-sync (close 4013).
    Gap,
}

/// Tracks the last seq sent to one client.
#[derive(Debug, Clone, Copy)]
pub struct Seam {
    last: u64,
}

impl Seam {
    /// A seam after `last` (the replay's end, or the top at connect).
    pub fn new(last: u64) -> Self {
        Self { last }
    }

    /// The last seq sent.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Judges the next event and advances on `Deliver`.
    pub fn admit(&mut self, seq: u64) -> Admit {
        if seq <= self.last {
            Admit::Duplicate
        } else if seq == self.last + 1 {
            self.last = seq;
            Admit::Deliver
        } else {
            Admit::Gap
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::broker::Top;

    fn frames(range: std::ops::RangeInclusive<u64>) -> Vec<Frame> {
        range
            .map(|seq| Frame::from_json(seq, seq.to_string()))
            .collect()
    }

    fn history(top: u64, oldest: u64, epoch: &str, after: u64) -> History {
        let events: Vec<Frame> = frames(oldest.max(after + 1)..=top);
        let complete = after <= top && events.len() as u64 == top - after;
        History {
            top: Top {
                epoch: epoch.into(),
                seq: top,
            },
            events,
            complete,
        }
    }

    /// Runs a whole connection: plan, replay, then live events that overlap the history.
    fn run(since: Option<u64>, epoch: &str, h: &History, live: &[u64]) -> (Plan, Vec<u64>, bool) {
        let p = plan(since, Some(epoch), h);
        let mut out: Vec<u64> = p.replay.iter().map(|f| f.seq).collect();
        let mut seam = Seam::new(p.replay.last().map_or(p.start_after, |f| f.seq));
        let mut gap = false;
        for &seq in live {
            match seam.admit(seq) {
                Admit::Deliver => out.push(seq),
                Admit::Duplicate => {}
                Admit::Gap => {
                    gap = true;
                    break;
                }
            }
        }
        (p, out, gap)
    }

    proptest! {
        #[test]
        fn recovery_is_all_or_nothing_and_exactly_once(
            top in 0u64..60,
            keep in 1u64..40,
            since in 0u64..70,
            same_epoch in any::<bool>(),
            extra in 0u64..20,
            overlap in 0u64..10,
        ) {
            let oldest = top.saturating_sub(keep) + 1;
            let h = history(top, oldest, "e1", since);
            // Live events queued since joining: some already in the history, then new ones.
            let live: Vec<u64> = (top.saturating_sub(overlap).max(1)..=top + extra).collect();
            let epoch = if same_epoch { "e1" } else { "e0" };
            let (p, out, gap) = run(Some(since), epoch, &h, &live);
            prop_assert!(!gap);
            let recoverable = same_epoch && since <= top && since + 1 >= oldest;
            prop_assert_eq!(p.recovered, recoverable);
            let first = if recoverable { since + 1 } else { top + 1 };
            let want: Vec<u64> = (first..=top + extra).collect();
            prop_assert_eq!(out, want);
        }

        #[test]
        fn a_missing_live_event_is_a_gap_never_a_skip(top in 0u64..30, missing in 1u64..5) {
            let h = history(top, 1, "e", 0);
            let live = vec![top + 1 + missing];
            let (_, out, gap) = run(None, "e", &h, &live);
            prop_assert!(gap);
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn no_since_means_no_replay() {
        let h = history(5, 1, "e", 5);
        let p = plan(None, None, &h);
        assert!(!p.recovered);
        assert_eq!(p.start_after, 5);
    }
}
