//! The stall book: the stall in progress on each loop, a ring of recent stalls, counts and
//! duration histograms. Written by the watchdog and its reporter, read by the metrics endpoint
//! and the control server; every lock is held for a few copies only, never by a loop thread.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::{Frame, Stall, StallEvent, StallEventKind};

use loopd_engine::instrument::clock::wall_ms;
use loopd_engine::instrument::{CurrentCallback, Histogram};
use loopd_engine::Target;

/// Closed stalls kept for `stalls` and the trace export.
pub const RECENT_KEPT: usize = 100;

/// Something that wants every stall event (the control server's subscribers).
pub(crate) type StallSink = Arc<dyn Fn(&StallEvent) + Send + Sync>;

/// A stall with the monotonic times the book needs besides its wire form.
#[derive(Clone, Debug)]
pub(crate) struct StallRecord {
    /// Its wire form; `duration_seconds` is refreshed when read while in progress.
    pub stall: Stall,
    /// When the callback started ([`loopd_engine::instrument::clock::now_ns`]).
    pub started_ns: u64,
    /// The callback's dispatch number: the stall lasts while the slot shows it.
    pub dispatch: u64,
}

impl StallRecord {
    fn view(&self, now_ns: u64) -> Stall {
        let mut s = self.stall.clone();
        if s.in_progress {
            s.duration_seconds = seconds(now_ns.saturating_sub(self.started_ns));
        }
        s
    }
}

#[derive(Default)]
struct LoopStalls {
    open: Option<StallRecord>,
    total: u64,
    durations: Histogram,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    loops: BTreeMap<usize, LoopStalls>,
    recent: VecDeque<StallRecord>,
    total: u64,
}

/// Every stall of the process.
#[derive(Default)]
pub(crate) struct StallBook {
    inner: Mutex<Inner>,
    sinks: Mutex<Vec<StallSink>>,
}

pub(crate) fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl StallBook {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `loop_index` known, so its series exist (at zero) before any stall.
    pub fn add_loop(&self, loop_index: usize) {
        self.lock().loops.entry(loop_index).or_default();
    }

    /// Opens a stall for the callback `cur` of loop `loop_index`; returns its id.
    pub fn open(&self, loop_index: usize, cur: &CurrentCallback, threshold_ms: u64) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let (handle_id, request_id) = match cur.target {
            Target::Handle(_, h) => (Some(h.get()), None),
            Target::Request(_, r) => (None, Some(r.get())),
        };
        let record = StallRecord {
            stall: Stall {
                id,
                loop_index: loop_index as u32,
                phase: proto::Phase::from(cur.phase.as_str()),
                handle_id,
                request_id,
                target_type: cur.target.type_name().to_string(),
                label: cur.label.clone(),
                started_at_ms: wall_ms(cur.started_ns),
                duration_seconds: 0.0,
                threshold_ms,
                in_progress: true,
                stack: Vec::new(),
                stack_error: Some("stack sample pending".into()),
            },
            started_ns: cur.started_ns,
            dispatch: cur.dispatch,
        };
        inner.loops.entry(loop_index).or_default().open = Some(record);
        id
    }

    /// The dispatch number of the stall open on `loop_index`, if any.
    pub fn open_dispatch(&self, loop_index: usize) -> Option<u64> {
        self.lock()
            .loops
            .get(&loop_index)
            .and_then(|l| l.open.as_ref())
            .map(|r| r.dispatch)
    }

    /// Closes the stall open on `loop_index`, which ended at `end_ns`; returns it.
    pub fn close(&self, loop_index: usize, end_ns: u64) -> Option<Stall> {
        let mut inner = self.lock();
        let lp = inner.loops.get_mut(&loop_index)?;
        let mut record = lp.open.take()?;
        let took = end_ns.saturating_sub(record.started_ns);
        record.stall.in_progress = false;
        record.stall.duration_seconds = seconds(took);
        lp.total += 1;
        lp.durations.record(took);
        inner.total += 1;
        let stall = record.stall.clone();
        if inner.recent.len() == RECENT_KEPT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(record);
        Some(stall)
    }

    /// Attaches the symbolized stack to stall `id` (open or closed); returns the stall.
    pub fn set_stack(
        &self,
        id: u64,
        stack: Vec<Frame>,
        error: Option<String>,
        now_ns: u64,
    ) -> Option<Stall> {
        let mut inner = self.lock();
        let Inner { loops, recent, .. } = &mut *inner;
        let record = loops
            .values_mut()
            .filter_map(|l| l.open.as_mut())
            .chain(recent.iter_mut().rev())
            .find(|r| r.stall.id == id)?;
        record.stall.stack = stack;
        record.stall.stack_error = error;
        Some(record.view(now_ns))
    }

    /// Stall `id` as it is now.
    pub fn get(&self, id: u64, now_ns: u64) -> Option<Stall> {
        let inner = self.lock();
        inner
            .loops
            .values()
            .filter_map(|l| l.open.as_ref())
            .chain(inner.recent.iter().rev())
            .find(|r| r.stall.id == id)
            .map(|r| r.view(now_ns))
    }

    /// The stalls in progress, by loop.
    pub fn in_progress(&self, now_ns: u64) -> Vec<Stall> {
        self.lock()
            .loops
            .values()
            .filter_map(|l| l.open.as_ref())
            .map(|r| r.view(now_ns))
            .collect()
    }

    /// The stall in progress on `loop_index`.
    pub fn in_progress_on(&self, loop_index: usize, now_ns: u64) -> Option<Stall> {
        self.lock()
            .loops
            .get(&loop_index)
            .and_then(|l| l.open.as_ref())
            .map(|r| r.view(now_ns))
    }

    /// Closed stalls, newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<Stall> {
        self.lock()
            .recent
            .iter()
            .rev()
            .take(limit)
            .map(|r| r.stall.clone())
            .collect()
    }

    /// Stalls (open or closed) that overlap `[since_ns, now]`, oldest first.
    pub fn records_since(&self, since_ns: u64) -> Vec<StallRecord> {
        let inner = self.lock();
        let mut out: Vec<StallRecord> = inner
            .recent
            .iter()
            .filter(|r| r.started_ns + (r.stall.duration_seconds * 1e9) as u64 >= since_ns)
            .cloned()
            .collect();
        out.extend(inner.loops.values().filter_map(|l| l.open.clone()));
        out
    }

    /// Stalls since start on every loop.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Per loop: (stalls since start, their durations, seconds the open stall has lasted).
    pub fn per_loop(&self, now_ns: u64) -> Vec<(usize, u64, Histogram, f64)> {
        self.lock()
            .loops
            .iter()
            .map(|(i, l)| {
                let open = l
                    .open
                    .as_ref()
                    .map_or(0.0, |r| seconds(now_ns.saturating_sub(r.started_ns)));
                (*i, l.total, l.durations.clone(), open)
            })
            .collect()
    }

    /// Stalls on `loop_index` since start.
    pub fn total_on(&self, loop_index: usize) -> u64 {
        self.lock().loops.get(&loop_index).map_or(0, |l| l.total)
    }

    /// Adds a receiver of stall events.
    pub fn add_sink(&self, sink: StallSink) {
        self.sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sink);
    }

    /// Sends an event to every sink.
    pub fn emit(&self, event: StallEventKind, stall: Stall) {
        let event = StallEvent { event, stall };
        let sinks = self
            .sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for sink in sinks {
            sink(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopd_engine::{Handle, HandleId, HandleType, Loop, Phase, Timer};

    /// A real timer's id (only the engine makes ids).
    fn timer_id() -> HandleId {
        let mut lp = Loop::new().unwrap();
        Timer::new(&mut lp).id()
    }

    fn cur(id: HandleId, dispatch: u64, started_ns: u64) -> CurrentCallback {
        CurrentCallback {
            dispatch,
            phase: Phase::Timers,
            target: Target::Handle(HandleType::Timer, id),
            label: Some("t".into()),
            started_ns,
        }
    }

    #[test]
    fn open_then_close() {
        let book = StallBook::default();
        book.add_loop(0);
        let timer = timer_id();
        let id = book.open(0, &cur(timer, 5, 1_000), 100);
        assert_eq!(book.open_dispatch(0), Some(5));
        let open = book.in_progress(1_000 + 250_000_000);
        assert_eq!(open.len(), 1);
        assert!((open[0].duration_seconds - 0.25).abs() < 1e-9);
        assert_eq!(open[0].handle_id, Some(timer.get()));
        let closed = book.close(0, 1_000 + 500_000_000).unwrap();
        assert!(!closed.in_progress);
        assert!((closed.duration_seconds - 0.5).abs() < 1e-9);
        assert_eq!(book.total(), 1);
        assert!(book.in_progress(0).is_empty());
        let s = book.set_stack(id, vec![Frame::default()], None, 0).unwrap();
        assert_eq!(s.stack.len(), 1);
        assert_eq!(book.recent(10)[0].stack.len(), 1);
        let per = book.per_loop(0);
        assert_eq!(per[0].1, 1);
        assert_eq!(per[0].2.count(), 1);
    }

    #[test]
    fn ring_is_bounded() {
        let book = StallBook::default();
        let timer = timer_id();
        for i in 0..(RECENT_KEPT as u64 + 10) {
            book.open(0, &cur(timer, i, i), 100);
            book.close(0, i + 1);
        }
        assert_eq!(book.recent(usize::MAX).len(), RECENT_KEPT);
        assert_eq!(book.total(), RECENT_KEPT as u64 + 10);
        assert_eq!(book.recent(1)[0].id, RECENT_KEPT as u64 + 10);
    }
}
