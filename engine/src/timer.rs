//! Timer handles and the loop's timer heap.
//!
//! Timers fire in order of due time, then of start order (libuv's rule). The heap holds
//! `(due, start sequence, slot)`; stopping a timer leaves its entry behind, recognised as stale
//! by its sequence, and the heap is compacted when stale entries outnumber live ones — so
//! start/stop/again are O(log n) without an indexed heap.

use std::panic::Location;
use std::time::Duration;

use super::clock::duration_ns;
use super::handle::{Handle, HandleData, HandleRef};
use super::phase::Phase;
use super::target::HandleType;
use super::{EngineError, Loop};

pub(crate) type TimerCb = Box<dyn FnMut(&mut Loop, Timer)>;

pub(crate) struct TimerData {
    pub cb: Option<TimerCb>,
    pub due_ns: u64,
    pub repeat_ns: u64,
    /// Sequence of the live heap entry (the low 32 bits the heap keeps, never 0); 0 when
    /// the timer is not in the heap. 32 bits keep the slot small.
    pub seq: u32,
    /// Whether `start` was ever called (`again` needs a callback to restart).
    pub started: bool,
    /// The due time in loop milliseconds, for a timeout past what `due_ns` can hold (about
    /// 584 years: `due_ns` saturates and `due_in` reports from this, as libuv's millisecond
    /// clock does — a 0xffffffffffff ms timeout is due in 281474976710655 ms).
    pub far_due_ms: u64,
}

/// A heap entry: 16 bytes, so a million timers' heap stays cache-friendly. Ordered by due
/// time, then start sequence. The sequence is the low 32 bits of the timer's start counter:
/// it identifies the entry together with the slot (a restarted timer gets a new one), and
/// orders equal due times by start except across a wrap every 2^32 starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    due_ns: u64,
    seq: u32,
    slot: u32,
}

/// A 4-ary min-heap: half the depth of a binary heap, and a node's four children are
/// adjacent (64 bytes of entries), so a pop from a million timers touches about half as many
/// cache lines.
#[derive(Default)]
struct QuadHeap {
    v: Vec<Entry>,
}

impl QuadHeap {
    fn len(&self) -> usize {
        self.v.len()
    }

    fn peek(&self) -> Option<&Entry> {
        self.v.first()
    }

    fn push(&mut self, e: Entry) {
        self.v.push(e);
        self.sift_up(self.v.len() - 1);
    }

    fn pop(&mut self) -> Option<Entry> {
        let last = self.v.pop()?;
        if self.v.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.v[0], last);
        self.sift_down(0);
        Some(top)
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.v[i];
        while i > 0 {
            let parent = (i - 1) / 4;
            if self.v[parent] <= e {
                break;
            }
            self.v[i] = self.v[parent];
            i = parent;
        }
        self.v[i] = e;
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.v.len();
        let e = self.v[i];
        loop {
            let first = 4 * i + 1;
            if first >= n {
                break;
            }
            let mut min = first;
            for c in first + 1..(first + 4).min(n) {
                if self.v[c] < self.v[min] {
                    min = c;
                }
            }
            if self.v[min] >= e {
                break;
            }
            self.v[i] = self.v[min];
            i = min;
        }
        self.v[i] = e;
    }

    /// Replaces the contents and restores the heap order in O(n).
    fn rebuild(&mut self, entries: Vec<Entry>) {
        self.v = entries;
        if self.v.len() > 1 {
            for i in (0..=(self.v.len() - 2) / 4).rev() {
                self.sift_down(i);
            }
        }
    }
}

/// The min-heap of started timers.
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: QuadHeap,
    next_seq: u64,
    stale: usize,
    /// Scratch list for the timers phase, kept to avoid an allocation per iteration.
    ready: Vec<Entry>,
}

impl TimerHeap {
    fn push(&mut self, r: HandleRef, due_ns: u64) -> u64 {
        self.next_seq += 1;
        // Never 0 in the low 32 bits: 0 means "not in the heap".
        if self.next_seq as u32 == 0 {
            self.next_seq += 1;
        }
        let seq = self.next_seq;
        self.heap.push(Entry {
            due_ns,
            seq: seq as u32,
            slot: r.slot,
        });
        seq
    }

    fn mark_stale(&mut self) {
        self.stale += 1;
    }
}

/// The timer an entry stands for, if the entry is still its live one.
fn entry_handle(lp: &Loop, e: &Entry) -> Option<HandleRef> {
    let (r, s) = lp.handles.by_slot(e.slot)?;
    let HandleData::Timer(t) = &s.data else {
        return None;
    };
    (t.seq != 0 && t.seq == e.seq).then_some(r)
}

fn entry_is_live(lp: &Loop, e: &Entry) -> bool {
    entry_handle(lp, e).is_some()
}

impl Loop {
    /// Drops stale entries from the top of the heap and, when they are the majority, from all
    /// of it.
    fn timers_clean(&mut self) {
        while let Some(top) = self.timers.heap.peek() {
            if entry_is_live(self, top) {
                break;
            }
            self.timers.heap.pop();
            self.timers.stale = self.timers.stale.saturating_sub(1);
        }
        if self.timers.stale > 1024 && self.timers.stale > self.timers.heap.len() / 2 {
            let entries = std::mem::take(&mut self.timers.heap.v);
            let live: Vec<_> = entries
                .into_iter()
                .filter(|e| entry_is_live(self, e))
                .collect();
            self.timers.heap.rebuild(live);
            self.timers.stale = 0;
        }
    }

    /// Nanoseconds until the nearest timer is due (0 if overdue), `None` without timers.
    pub(crate) fn next_timer_in(&mut self) -> Option<u64> {
        self.timers_clean();
        self.timers
            .heap
            .peek()
            .map(|e| e.due_ns.saturating_sub(self.now_ns))
    }

    /// Whether the timers phase has anything to look at: a heap entry due by the loop time
    /// (possibly a stale one of a stopped timer, which the phase then drops).
    #[inline]
    pub(crate) fn timers_due(&self) -> bool {
        self.timers
            .heap
            .peek()
            .is_some_and(|top| top.due_ns <= self.now_ns)
    }

    /// The timers phase: collect every expired timer first, then fire them in (due, start)
    /// order; a timer started by a callback waits for the next iteration.
    pub(crate) fn run_timers(&mut self) {
        let mut ready = std::mem::take(&mut self.timers.ready);
        while let Some(top) = self.timers.heap.peek() {
            if top.due_ns > self.now_ns {
                break;
            }
            let e = *top;
            self.timers.heap.pop();
            if entry_is_live(self, &e) {
                ready.push(e);
            } else {
                self.timers.stale = self.timers.stale.saturating_sub(1);
            }
        }
        for e in ready.drain(..) {
            // An earlier callback may have stopped or restarted this timer.
            if let Some(r) = entry_handle(self, &e) {
                self.timer_fire(r, e.due_ns);
            }
        }
        self.timers.ready = ready;
    }

    fn timer_fire(&mut self, r: HandleRef, due_ns: u64) {
        let now = self.now_ns;
        let Some(t) = self.handles.data_mut::<TimerData>(r) else {
            return;
        };
        // Rescheduled before the callback runs, so that the callback may stop or restart it.
        if t.repeat_ns > 0 {
            let due = now.saturating_add(t.repeat_ns);
            t.due_ns = due;
            t.seq = self.timers.push(r, due) as u32;
        } else {
            t.seq = 0;
            self.handles.set_active(r, false);
        }
        self.firing_due_ns = due_ns;
        let timer = Timer(r);
        self.run_handle_callback(
            Phase::Timers,
            r,
            |t: &mut TimerData| &mut t.cb,
            |lp, f| f(lp, timer),
        );
    }

    pub(crate) fn timer_stop(&mut self, r: HandleRef) {
        let Some(t) = self.handles.data_mut::<TimerData>(r) else {
            return;
        };
        if t.seq != 0 {
            t.seq = 0;
            self.timers.mark_stale();
        }
        self.handles.set_active(r, false);
    }
}

/// A timer handle (libuv's `uv_timer_t`): runs a callback after a timeout, optionally
/// repeating.
///
/// # Examples
/// ```
/// use loopd_engine::{Loop, RunMode, Timer};
/// use std::time::Duration;
///
/// let mut lp = Loop::new()?;
/// let t = Timer::new(&mut lp);
/// t.start(&mut lp, Duration::from_millis(1), Duration::ZERO, |_lp, _t| println!("fired"));
/// lp.run(RunMode::Default);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timer(HandleRef);

impl Handle for Timer {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

impl Timer {
    /// Creates a stopped timer.
    #[track_caller]
    pub fn new(lp: &mut Loop) -> Timer {
        let site = Location::caller();
        let data = HandleData::Timer(TimerData {
            cb: None,
            due_ns: 0,
            repeat_ns: 0,
            seq: 0,
            started: false,
            far_due_ms: 0,
        });
        Timer(lp.handles.insert(HandleType::Timer, data, site, lp.now_ns))
    }

    /// Starts the timer: `cb` runs `timeout` after the loop's current time, then every
    /// `repeat` if it is not zero. Restarts a running timer.
    ///
    /// # Errors
    /// [`EngineError::Closed`] if the handle is closing or closed.
    pub fn start(
        &self,
        lp: &mut Loop,
        timeout: Duration,
        repeat: Duration,
        cb: impl FnMut(&mut Loop, Timer) + 'static,
    ) -> Result<(), EngineError> {
        self.start_ns(lp, duration_ns(timeout), duration_ns(repeat), Box::new(cb))?;
        if lp.now_ns.checked_add(duration_ns(timeout)).is_none()
            || timeout.as_nanos() > u128::from(u64::MAX)
        {
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            if let Some(t) = lp.handles.data_mut::<TimerData>(self.0) {
                t.far_due_ms = (lp.now_ns / 1_000_000).saturating_add(timeout_ms);
            }
        }
        Ok(())
    }

    fn start_ns(
        &self,
        lp: &mut Loop,
        timeout: u64,
        repeat: u64,
        cb: TimerCb,
    ) -> Result<(), EngineError> {
        if self.is_closing(lp) {
            return Err(EngineError::Closed);
        }
        lp.timer_stop(self.0);
        let due = lp.now_ns.saturating_add(timeout);
        let seq = lp.timers.push(self.0, due) as u32;
        if let Some(t) = lp.handles.data_mut::<TimerData>(self.0) {
            t.cb = Some(cb);
            t.due_ns = due;
            t.repeat_ns = repeat;
            t.seq = seq;
            t.started = true;
            t.far_due_ms = 0;
        }
        lp.handles.set_active(self.0, true);
        Ok(())
    }

    /// Stops the timer; its callback will not run until it is started again.
    pub fn stop(&self, lp: &mut Loop) {
        lp.timer_stop(self.0);
    }

    /// Restarts a repeating timer with its repeat as the timeout (libuv's `uv_timer_again`);
    /// does nothing for a timer without repeat.
    ///
    /// # Errors
    /// [`EngineError::InvalidState`] if the timer was never started (it has no callback).
    pub fn again(&self, lp: &mut Loop) -> Result<(), EngineError> {
        let Some(&TimerData {
            repeat_ns: repeat,
            started,
            ..
        }) = lp.handles.data::<TimerData>(self.0)
        else {
            return Err(EngineError::Closed);
        };
        if !started {
            return Err(EngineError::InvalidState("timer was never started"));
        }
        if repeat == 0 {
            return Ok(());
        }
        lp.timer_stop(self.0);
        let due = lp.now_ns.saturating_add(repeat);
        let seq = lp.timers.push(self.0, due) as u32;
        if let Some(t) = lp.handles.data_mut::<TimerData>(self.0) {
            t.due_ns = due;
            t.seq = seq;
        }
        lp.handles.set_active(self.0, true);
        Ok(())
    }

    /// Sets the repeat interval used from the next expiry on (zero: no repeat).
    pub fn set_repeat(&self, lp: &mut Loop, repeat: Duration) {
        if let Some(t) = lp.handles.data_mut::<TimerData>(self.0) {
            t.repeat_ns = duration_ns(repeat);
        }
    }

    /// The repeat interval.
    pub fn repeat(&self, lp: &Loop) -> Duration {
        lp.handles
            .data::<TimerData>(self.0)
            .map_or(Duration::ZERO, |t| Duration::from_nanos(t.repeat_ns))
    }

    /// Time until the timer is due (zero if overdue or stopped).
    pub fn due_in(&self, lp: &Loop) -> Duration {
        match lp.handles.data::<TimerData>(self.0) {
            Some(t) if t.seq != 0 && t.due_ns == u64::MAX && t.far_due_ms != 0 => {
                Duration::from_millis(t.far_due_ms.saturating_sub(lp.now_ns / 1_000_000))
            }
            Some(t) if t.seq != 0 => Duration::from_nanos(t.due_ns.saturating_sub(lp.now_ns)),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod heap_tests {
    use super::{Entry, QuadHeap};

    #[test]
    fn pops_in_order_after_pushes_and_rebuilds() {
        let mut x = 12345u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut h = QuadHeap::default();
        let mut all = Vec::new();
        for i in 0..5000u32 {
            let e = Entry {
                due_ns: next() % 1000,
                seq: i,
                slot: i,
            };
            all.push(e);
            h.push(e);
        }
        let mut rebuilt = QuadHeap::default();
        rebuilt.rebuild(all.clone());
        all.sort();
        for want in &all {
            assert_eq!(h.pop().as_ref(), Some(want));
            assert_eq!(rebuilt.pop().as_ref(), Some(want));
        }
        assert!(h.pop().is_none());
        assert_eq!(h.len(), 0);
    }
}
