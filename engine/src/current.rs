//! The "current callback" slot: what the loop thread is running right now, readable from any
//! thread while the callback still runs — the stall watchdog's only input.
//!
//! The loop thread is the only writer; it publishes with a sequence lock, so writing costs a
//! handful of plain stores per callback and readers never block it. The label is copied into a
//! fixed inline buffer (only when the target changes), because a reader must never follow a
//! pointer into memory the loop may free.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::phase::Phase;
use super::Target;

const LABEL_WORDS: usize = 8;
/// Longest label kept in the slot, in bytes; longer labels are cut at a character boundary.
pub const LABEL_MAX: usize = LABEL_WORDS * 8;

/// What a reader sees of the callback running on a loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentCallback {
    /// Increases by one for every callback the loop dispatches: two reads with the same
    /// value saw the same callback invocation.
    pub dispatch: u64,
    /// The phase it runs in.
    pub phase: Phase,
    /// The handle or request whose callback it is.
    pub target: Target,
    /// The target's label (cut to [`LABEL_MAX`] bytes).
    pub label: Option<String>,
    /// When it started, in [`super::clock::now_ns`] time.
    pub started_ns: u64,
}

/// The slot itself; shared through [`super::LoopObserver`].
///
/// One writer: the thread that runs the loop calls [`enter`](Self::enter) before each
/// callback and [`leave`](Self::leave) after it. Any thread may [`read`](Self::read). A
/// second writer cannot make a reader unsafe, only make it see a mix of two callbacks.
#[derive(Default)]
pub struct CallbackSlot {
    seq: AtomicU64,
    running: AtomicBool,
    dispatch: AtomicU64,
    phase: AtomicU8,
    target: AtomicU64,
    target_id: AtomicU64,
    started_ns: AtomicU64,
    label_len: AtomicU8,
    label_present: AtomicBool,
    label: [AtomicU64; LABEL_WORDS],
    /// The id whose label is in `label` (loop thread only).
    label_owner: AtomicU64,
    /// The last id found to have no label (loop thread only): a loop alternating between an
    /// unlabelled target and a labelled one (the agent's host callbacks and its "not
    /// attributed" stretch) neither asks for labels nor copies one again.
    unlabelled: AtomicU64,
}

impl CallbackSlot {
    #[inline]
    fn write_begin(&self) -> u64 {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        s
    }

    #[inline]
    fn write_end(&self, s: u64) {
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Marks a callback as running: `target`'s callback in `phase`, started at `now_ns`
    /// ([`crate::instrument::clock::now_ns`] time). `label` is asked for only when the target
    /// differs from the previous callback's. Loop thread only.
    #[inline]
    pub fn enter<'a>(
        &self,
        phase: Phase,
        target: Target,
        label: impl FnOnce() -> Option<&'a str>,
        now_ns: u64,
    ) {
        let s = self.write_begin();
        // Single writer: a plain increment, not an atomic read-modify-write.
        let n = self.dispatch.load(Ordering::Relaxed);
        self.dispatch.store(n.wrapping_add(1), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.target.store(target.encode_kind(), Ordering::Relaxed);
        self.target_id.store(target.id(), Ordering::Relaxed);
        self.started_ns.store(now_ns, Ordering::Relaxed);
        // The label is looked up and copied only when the target is neither the one whose
        // label is kept nor the last one found without a label.
        let id = target.id();
        if self.label_owner.load(Ordering::Relaxed) == id {
            self.label_present.store(true, Ordering::Relaxed);
        } else if self.unlabelled.load(Ordering::Relaxed) == id {
            self.label_present.store(false, Ordering::Relaxed);
        } else if let Some(label) = label() {
            self.label_owner.store(id, Ordering::Relaxed);
            self.store_label(label);
        } else {
            self.unlabelled.store(id, Ordering::Relaxed);
            self.label_present.store(false, Ordering::Relaxed);
        }
        self.running.store(true, Ordering::Relaxed);
        self.write_end(s);
    }

    /// Marks the callback as finished. Loop thread only.
    ///
    /// One store, outside the sequence lock: it changes nothing but `running`, so a reader
    /// that sees either value of it sees a consistent slot.
    #[inline]
    pub fn leave(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// Forgets the cached label owner, so a label change of the same target is copied anew
    /// (call when a target's label changes). Loop thread only.
    pub fn invalidate_label(&self) {
        self.label_owner.store(0, Ordering::Relaxed);
        self.unlabelled.store(0, Ordering::Relaxed);
    }

    fn store_label(&self, label: &str) {
        let mut end = label.len().min(LABEL_MAX);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = &label.as_bytes()[..end];
        for (w, word) in self.label.iter().enumerate() {
            let mut buf = [0u8; 8];
            let from = (w * 8).min(bytes.len());
            let to = (w * 8 + 8).min(bytes.len());
            buf[..to - from].copy_from_slice(&bytes[from..to]);
            word.store(u64::from_le_bytes(buf), Ordering::Relaxed);
            if to == bytes.len() {
                break;
            }
        }
        self.label_len.store(end as u8, Ordering::Relaxed);
        self.label_present.store(true, Ordering::Relaxed);
    }

    /// The callback running now, or `None` when the loop is between callbacks (polling,
    /// bookkeeping, or not running). Never blocks; retries while the loop is mid-write.
    pub fn read(&self) -> Option<CurrentCallback> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let running = self.running.load(Ordering::Relaxed);
            let dispatch = self.dispatch.load(Ordering::Relaxed);
            let phase = self.phase.load(Ordering::Relaxed);
            let kind = self.target.load(Ordering::Relaxed);
            let id = self.target_id.load(Ordering::Relaxed);
            let started_ns = self.started_ns.load(Ordering::Relaxed);
            let present = self.label_present.load(Ordering::Relaxed);
            let len = self.label_len.load(Ordering::Relaxed) as usize;
            let mut raw = [0u8; LABEL_MAX];
            for (w, word) in self.label.iter().enumerate() {
                raw[w * 8..w * 8 + 8].copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            if !running {
                return None;
            }
            let label =
                present.then(|| String::from_utf8_lossy(&raw[..len.min(LABEL_MAX)]).into_owned());
            return Some(CurrentCallback {
                dispatch,
                phase: Phase::from_index(phase as usize)?,
                target: Target::decode(kind, id)?,
                label,
                started_ns,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HandleId, HandleType};

    #[test]
    fn reads_what_was_entered() {
        let slot = CallbackSlot::default();
        assert_eq!(slot.read(), None);
        let target = Target::Handle(HandleType::Timer, HandleId::new(7));
        slot.enter(Phase::Timers, target, || Some("a timer"), 42);
        let cur = slot.read().expect("running");
        assert_eq!(cur.phase, Phase::Timers);
        assert_eq!(cur.target, target);
        assert_eq!(cur.label.as_deref(), Some("a timer"));
        assert_eq!(cur.started_ns, 42);
        slot.leave();
        assert_eq!(slot.read(), None);
    }

    #[test]
    fn alternating_between_an_unlabelled_and_a_labelled_target_keeps_both_right() {
        let slot = CallbackSlot::default();
        let plain = Target::Handle(HandleType::Idle, HandleId::new(3));
        let named = Target::Handle(HandleType::Check, HandleId::new(4));
        let asked = std::cell::Cell::new(0);
        for _ in 0..3 {
            slot.enter(
                Phase::Idle,
                plain,
                || {
                    asked.set(asked.get() + 1);
                    None
                },
                1,
            );
            assert_eq!(slot.read().expect("running").label, None);
            slot.enter(
                Phase::Idle,
                named,
                || {
                    asked.set(asked.get() + 1);
                    Some("outside")
                },
                2,
            );
            assert_eq!(
                slot.read().expect("running").label.as_deref(),
                Some("outside")
            );
        }
        assert_eq!(asked.get(), 2, "each label is asked for once");
        slot.invalidate_label();
        slot.enter(Phase::Idle, plain, || Some("now named"), 3);
        assert_eq!(
            slot.read().expect("running").label.as_deref(),
            Some("now named")
        );
    }

    #[test]
    fn long_labels_are_cut_at_a_char_boundary() {
        let slot = CallbackSlot::default();
        let label = "é".repeat(40);
        slot.enter(
            Phase::Poll,
            Target::Handle(HandleType::Tcp, HandleId::new(1)),
            || Some(label.as_str()),
            0,
        );
        let cur = slot.read().expect("running");
        let got = cur.label.expect("label");
        assert!(got.len() <= LABEL_MAX);
        assert!(label.starts_with(&got));
        assert_eq!(got.chars().count(), 32);
    }
}
