//! Per-session ordering of live frames arriving from another process (Redis pub/sub).
//!
//! The hub must see a session's frames in seq order with no gaps. Pub/sub can drop
//! messages (a lagging receiver, a reconnect), so the sequencer tracks the last delivered
//! seq: the next frame is delivered at once, older ones are dropped, and a frame beyond a gap
//! is buffered while the caller fills the gap from the history ([`Step::catch_up`]). A history
//! that was replaced (new epoch) or trimmed past the gap yields [`Step::reset`]: the session's
//! sockets must re-sync (4013). Pure state machine; the Redis broker does the I/O.

use std::collections::BTreeMap;

use super::{Frame, History, Top};

/// Frames buffered at most while a gap is being filled; beyond this they are dropped and
/// re-read from the history.
const MAX_PENDING: usize = 4096;

/// What the caller must do after feeding the sequencer.
#[derive(Debug, Default)]
pub struct Step {
    /// Close the session's sockets with 4013 first.
    pub reset: bool,
    /// Deliver these, in order.
    pub deliver: Vec<Frame>,
    /// Read the history after [`Sequencer::last`] and pass it to [`Sequencer::caught_up`].
    pub catch_up: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Position not known yet: buffer.
    Starting,
    /// Delivering.
    Live,
    /// A gap is being filled: buffer.
    CatchingUp,
}

/// Live-delivery state of one session.
#[derive(Debug)]
pub struct Sequencer {
    mode: Mode,
    epoch: Option<String>,
    last: u64,
    pending: BTreeMap<u64, Frame>,
}

impl Default for Sequencer {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequencer {
    /// A sequencer waiting for [`start`](Self::start).
    pub fn new() -> Self {
        Self {
            mode: Mode::Starting,
            epoch: None,
            last: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The last seq delivered.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The position read right after subscribing.
    pub fn start(&mut self, top: Option<Top>) -> Step {
        if let Some(t) = top {
            self.epoch = Some(t.epoch);
            self.last = t.seq;
        }
        self.mode = Mode::Live;
        self.release()
    }

    /// A live frame.
    pub fn offer(&mut self, frame: Frame) -> Step {
        if frame.seq <= self.last {
            return Step::default();
        }
        if self.mode != Mode::Live {
            self.buffer(frame);
            return Step::default();
        }
        if frame.seq == self.last + 1 {
            self.last = frame.seq;
            let mut step = self.release();
            step.deliver.insert(0, frame);
            return step;
        }
        self.buffer(frame);
        self.mode = Mode::CatchingUp;
        Step {
            catch_up: true,
            ..Step::default()
        }
    }

    /// The history was (re)created with `epoch`.
    pub fn reset(&mut self, epoch: &str) -> Step {
        if self.epoch.as_deref() == Some(epoch) {
            return Step::default();
        }
        let had = self.epoch.replace(epoch.to_owned()).is_some();
        self.last = 0;
        self.pending.clear();
        if self.mode == Mode::CatchingUp {
            self.mode = Mode::Live;
        }
        Step {
            reset: had,
            ..Step::default()
        }
    }

    /// The result of a history read after [`last`](Self::last).
    pub fn caught_up(&mut self, history: Option<History>) -> Step {
        let Some(h) = history else {
            // The history vanished (expired, or Redis came back empty): sockets must re-sync.
            let had = self.epoch.take().is_some();
            self.last = 0;
            self.pending.clear();
            self.mode = Mode::Live;
            return Step {
                reset: had,
                ..Step::default()
            };
        };
        let mut step = Step::default();
        let epoch_changed = self.epoch.as_ref().is_some_and(|e| *e != h.top.epoch);
        if epoch_changed || !h.complete {
            step.reset = true;
            self.epoch = Some(h.top.epoch);
            self.last = h.top.seq;
        } else {
            self.epoch = Some(h.top.epoch);
            for f in h.events {
                if f.seq == self.last + 1 {
                    self.last = f.seq;
                    step.deliver.push(f);
                }
            }
        }
        self.mode = Mode::Live;
        let more = self.release();
        step.deliver.extend(more.deliver);
        step.catch_up = more.catch_up;
        step
    }

    /// Start a catch-up now (after a reconnect or a lagged receiver).
    pub fn force_catch_up(&mut self) -> Step {
        if self.mode != Mode::Live {
            return Step::default();
        }
        self.mode = Mode::CatchingUp;
        Step {
            catch_up: true,
            ..Step::default()
        }
    }

    /// The position check: catch up when the history is ahead or on another epoch.
    pub fn check(&mut self, top: &Top) -> Step {
        // Ahead: a message was lost. Behind what was delivered: Redis lost acknowledged
        // writes (a failover) or a frame raced this read; the catch-up tells them apart
        // (an incomplete history resets the session's sockets).
        let off = top.seq != self.last || self.epoch.as_deref() != Some(top.epoch.as_str());
        if off {
            self.force_catch_up()
        } else {
            Step::default()
        }
    }

    fn buffer(&mut self, frame: Frame) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
        }
        self.pending.insert(frame.seq, frame);
    }

    /// Delivers buffered frames that are now next in line; asks for a catch-up if a gap
    /// remains before the rest.
    fn release(&mut self) -> Step {
        let mut step = Step::default();
        while let Some((&seq, _)) = self.pending.first_key_value() {
            let frame = self.pending.pop_first().expect("checked").1;
            if seq <= self.last {
                continue;
            }
            if seq == self.last + 1 {
                self.last = seq;
                step.deliver.push(frame);
            } else {
                self.pending.insert(seq, frame);
                self.mode = Mode::CatchingUp;
                step.catch_up = true;
                break;
            }
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64) -> Frame {
        Frame::from_json(seq, seq.to_string())
    }

    fn seqs(step: &Step) -> Vec<u64> {
        step.deliver.iter().map(|f| f.seq).collect()
    }

    fn top(epoch: &str, seq: u64) -> Top {
        Top {
            epoch: epoch.into(),
            seq,
        }
    }

    fn history(
        epoch: &str,
        top_seq: u64,
        events: std::ops::RangeInclusive<u64>,
        complete: bool,
    ) -> History {
        History {
            top: top(epoch, top_seq),
            events: events.map(f).collect(),
            complete,
        }
    }

    #[test]
    fn frames_before_start_are_buffered_then_released_in_order() {
        let mut s = Sequencer::new();
        assert!(seqs(&s.offer(f(6))).is_empty());
        assert!(seqs(&s.offer(f(5))).is_empty());
        let step = s.start(Some(top("e", 4)));
        assert_eq!(seqs(&step), [5, 6]);
        assert_eq!(seqs(&s.offer(f(6))), Vec::<u64>::new(), "duplicate dropped");
        assert_eq!(seqs(&s.offer(f(7))), [7]);
    }

    #[test]
    fn a_gap_is_filled_from_history_before_later_frames() {
        let mut s = Sequencer::new();
        s.start(Some(top("e", 0)));
        assert_eq!(seqs(&s.offer(f(1))), [1]);
        let step = s.offer(f(4));
        assert!(step.catch_up && step.deliver.is_empty());
        assert!(
            s.offer(f(5)).deliver.is_empty(),
            "buffered while catching up"
        );
        let step = s.caught_up(Some(history("e", 5, 2..=5, true)));
        assert!(!step.reset && !step.catch_up);
        assert_eq!(seqs(&step), [2, 3, 4, 5]);
        assert_eq!(seqs(&s.offer(f(6))), [6]);
    }

    #[test]
    fn a_trimmed_gap_or_a_new_epoch_resets() {
        let mut s = Sequencer::new();
        s.start(Some(top("e", 10)));
        s.offer(f(20));
        let step = s.caught_up(Some(history("e", 20, 15..=20, false)));
        assert!(step.reset);
        assert_eq!(s.last(), 20);
        let step = s.check(&top("e2", 3));
        assert!(step.catch_up);
        let step = s.caught_up(Some(history("e2", 3, 1..=3, true)));
        assert!(step.reset && step.deliver.is_empty());
        assert_eq!(seqs(&s.offer(f(4))), [4]);
    }

    #[test]
    fn reset_message_switches_epoch_and_restarts_numbering() {
        let mut s = Sequencer::new();
        s.start(Some(top("e", 7)));
        assert!(
            s.reset("e").deliver.is_empty() && !s.reset("e").reset,
            "same epoch: nothing"
        );
        assert!(s.reset("e2").reset);
        assert_eq!(seqs(&s.offer(f(1))), [1]);
    }

    #[test]
    fn position_check_notices_a_silent_loss() {
        let mut s = Sequencer::new();
        s.start(Some(top("e", 3)));
        assert!(!s.check(&top("e", 3)).catch_up);
        assert!(s.check(&top("e", 5)).catch_up);
        assert!(!s.force_catch_up().catch_up, "one catch-up at a time");
        assert_eq!(
            seqs(&s.caught_up(Some(history("e", 5, 4..=5, true)))),
            [4, 5]
        );
    }

    #[test]
    fn a_history_that_went_backwards_resets_instead_of_reusing_seqs() {
        // Delivered up to 5; a failover lost 4 and 5, so Redis now says 3.
        let mut s = Sequencer::new();
        s.start(Some(top("e", 3)));
        assert_eq!(seqs(&s.offer(f(4))), [4]);
        assert_eq!(seqs(&s.offer(f(5))), [5]);
        assert!(s.check(&top("e", 3)).catch_up);
        let step = s.caught_up(Some(history("e", 3, 1..=3, false)));
        assert!(step.reset && step.deliver.is_empty());
        // Numbering continues from what Redis holds: the next publish (seq 4) is delivered.
        assert_eq!(seqs(&s.offer(f(4))), [4]);
    }
}
