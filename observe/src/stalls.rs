//! The stall book: the stall in progress on each loop, a ring of recent stalls, counts and
//! duration histograms. Written by the watchdog and its reporter, read by the metrics endpoint
//! and the control server; every lock is held for a few copies only, never by a loop thread.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::methods::MAX_STALL_SAMPLES;
use proto::{Frame, Stall, StallEvent, StallEventKind, StallProfile, STALL_PROFILES_KEPT};

use crate::profile::ProfileBuilder;
use loopd_engine::instrument::clock::wall_ms;
use loopd_engine::instrument::{CurrentCallback, Histogram, IterationRecord, SlowCallback};
use loopd_engine::Target;

/// Closed stalls kept for `stalls` and the trace export.
pub const RECENT_KEPT: usize = 100;

/// The flight recorder around one stall, copied out of the loop's ring when the stall's
/// iteration was recorded: what the loop did from [`WINDOW_BEFORE_NS`] before the stall
/// opened to the end of its iteration.
#[derive(Debug, Default)]
pub(crate) struct StallWindow {
    /// Where the window begins.
    pub from_ns: u64,
    /// The iterations, oldest first (at most [`WINDOW_ITERATIONS_MAX`], the latest).
    pub iterations: Vec<IterationRecord>,
    /// Iterations of the window left out by that bound.
    pub iterations_cut: usize,
    /// Slow callbacks of the window.
    pub slow: Vec<SlowCallback>,
}

/// Most samples of profiles in one `stalls` listing (`stalls {id}` answers any one).
pub const LISTING_PROFILE_SAMPLES: usize = 4_000;

/// How much of the loop's history before a stall its window keeps.
pub const WINDOW_BEFORE_NS: u64 = 2_000_000_000;
/// Most iterations in a window: a busy loop runs 10⁵ or more in 2 s; the latest are the
/// ones that tell what led to the stall, and 16 windows stay under 10 MB.
pub const WINDOW_ITERATIONS_MAX: usize = 4_096;

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
    /// The sampling interval when it opened, ms.
    pub interval_ms: u64,
    /// Its samples, while open and for the last [`STALL_PROFILES_KEPT`] closed stalls.
    pub profile: Option<ProfileBuilder>,
    /// Its flight-recorder window, once recorded (the last [`STALL_PROFILES_KEPT`]).
    pub window: Option<Arc<StallWindow>>,
}

impl StallRecord {
    fn view(&self, now_ns: u64) -> Stall {
        let mut s = self.stall.clone();
        if s.in_progress {
            s.duration_seconds = seconds(now_ns.saturating_sub(self.started_ns));
        }
        s
    }

    fn view_with_profile(&self, now_ns: u64) -> Stall {
        let mut s = self.view(now_ns);
        s.profile = self.profile.as_ref().map(|p| p.to_wire(self.interval_ms));
        s
    }

    /// A copy without the profile and window (the trace's list of stalls).
    fn summary(&self) -> StallRecord {
        StallRecord {
            stall: self.stall.clone(),
            started_ns: self.started_ns,
            dispatch: self.dispatch,
            interval_ms: self.interval_ms,
            profile: None,
            window: None,
        }
    }
}

#[derive(Default)]
struct LoopStalls {
    open: Option<StallRecord>,
    total: u64,
    durations: Histogram,
    samples_total: u64,
    samples_dropped_total: u64,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    loops: BTreeMap<usize, LoopStalls>,
    recent: VecDeque<StallRecord>,
    total: u64,
    profiles_evicted: u64,
}

impl Inner {
    fn find_mut(&mut self, id: u64) -> Option<&mut StallRecord> {
        let Inner { loops, recent, .. } = self;
        loops
            .values_mut()
            .filter_map(|l| l.open.as_mut())
            .chain(recent.iter_mut().rev())
            .find(|r| r.stall.id == id)
    }

    fn find(&self, id: u64) -> Option<&StallRecord> {
        self.loops
            .values()
            .filter_map(|l| l.open.as_ref())
            .chain(self.recent.iter().rev())
            .find(|r| r.stall.id == id)
    }
}

/// What a sample added to a stall: whether it was its first (the stall's `stack`), and the
/// stall as it is now.
pub(crate) struct SampleAdded {
    pub first: bool,
    pub stall: Stall,
}

/// A stall's flight-recorder window with what the trace shows of it.
pub(crate) struct WindowView {
    pub record: StallRecord,
    pub window: Arc<StallWindow>,
    pub profile: Option<StallProfile>,
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

    /// Opens a stall for the callback `cur` of loop `loop_index`, to be sampled every
    /// `interval_ms`; returns its id.
    pub fn open(
        &self,
        loop_index: usize,
        cur: &CurrentCallback,
        threshold_ms: u64,
        interval_ms: u64,
    ) -> u64 {
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
                ..Stall::default()
            },
            started_ns: cur.started_ns,
            dispatch: cur.dispatch,
            interval_ms,
            profile: Some(ProfileBuilder::new(MAX_STALL_SAMPLES as usize)),
            window: None,
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
        // Profiles and windows of older stalls go: memory stays bounded.
        let n = inner.recent.len();
        if n > STALL_PROFILES_KEPT {
            let old = &mut inner.recent[n - STALL_PROFILES_KEPT - 1];
            let had = old.profile.take().is_some() | old.window.take().is_some();
            if had {
                inner.profiles_evicted += 1;
            }
        }
        Some(stall)
    }

    /// Adds a symbolized sample of stall `id` taken `at_ns`: the first one (or a failed
    /// first one: `error`) becomes the stall's `stack`; each one with frames goes into its
    /// profile while there is room, else is counted dropped.
    pub fn add_sample(
        &self,
        id: u64,
        at_ns: u64,
        frames: Vec<Frame>,
        error: Option<String>,
        now_ns: u64,
    ) -> Option<SampleAdded> {
        let mut inner = self.lock();
        let record = inner.find_mut(id)?;
        let loop_index = record.stall.loop_index as usize;
        let first = record.stall.stack.is_empty()
            && record.stall.stack_error.as_deref() == Some("stack sample pending");
        let at_us = at_ns.saturating_sub(record.started_ns) / 1_000;
        let kept = match record.profile.as_mut() {
            Some(p) if !frames.is_empty() => p.add(at_us, &frames),
            _ => false,
        };
        if kept {
            record.stall.samples += 1;
            record.stall.hot_frame = record.profile.as_ref().and_then(|p| p.hot_frame());
        } else {
            record.stall.samples_dropped += 1;
        }
        if first {
            record.stall.stack = frames;
            record.stall.stack_error = error;
        }
        let stall = record.view(now_ns);
        if let Some(l) = inner.loops.get_mut(&loop_index) {
            if kept {
                l.samples_total += 1;
            } else {
                l.samples_dropped_total += 1;
            }
        }
        Some(SampleAdded { first, stall })
    }

    /// Counts a sample of stall `id` that was not taken (the bound was reached, or the loop
    /// did not answer); whether the stall's profile is full.
    pub fn drop_sample(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let Some(record) = inner.find_mut(id) else {
            return true;
        };
        record.stall.samples_dropped += 1;
        let full = record.profile.as_ref().is_none_or(ProfileBuilder::is_full);
        let loop_index = record.stall.loop_index as usize;
        if let Some(l) = inner.loops.get_mut(&loop_index) {
            l.samples_dropped_total += 1;
        }
        full
    }

    /// Whether stall `id`'s profile has room for another sample.
    pub fn wants_samples(&self, id: u64) -> bool {
        self.lock()
            .find(id)
            .and_then(|r| r.profile.as_ref())
            .is_some_and(|p| !p.is_full())
    }

    /// Keeps `window` with stall `id` (if its profile is still kept: a window is kept for
    /// exactly the stalls whose profile is).
    pub fn set_window(&self, id: u64, window: StallWindow) {
        let mut inner = self.lock();
        if let Some(r) = inner.find_mut(id) {
            if r.profile.is_some() {
                r.window = Some(Arc::new(window));
            }
        }
    }

    /// Stall `id`'s window, for `trace --stall`.
    pub fn window(&self, id: u64) -> Option<WindowView> {
        let inner = self.lock();
        let r = inner.find(id)?;
        Some(WindowView {
            record: r.summary(),
            window: r.window.clone()?,
            profile: r.profile.as_ref().map(|p| p.to_wire(r.interval_ms)),
        })
    }

    /// Profiles and windows dropped to keep the last [`STALL_PROFILES_KEPT`].
    pub fn profiles_evicted(&self) -> u64 {
        self.lock().profiles_evicted
    }

    /// Stall `id` as it is now (with its profile if asked and kept).
    pub fn get(&self, id: u64, now_ns: u64) -> Option<Stall> {
        self.lock().find(id).map(|r| r.view(now_ns))
    }

    /// Stall `id` with its profile, if kept.
    pub fn get_with_profile(&self, id: u64, now_ns: u64) -> Option<Stall> {
        self.lock().find(id).map(|r| r.view_with_profile(now_ns))
    }

    /// Stalls in progress and recent ones (newest first, at most `limit`), with profiles
    /// when `profile` — those in progress first, then the newest, until
    /// [`LISTING_PROFILE_SAMPLES`] samples are in the answer (one answer stays a few MB at
    /// most; a client asks for the others by id).
    pub fn listing(&self, limit: usize, profile: bool, now_ns: u64) -> (Vec<Stall>, Vec<Stall>) {
        let inner = self.lock();
        let mut budget = if profile { LISTING_PROFILE_SAMPLES } else { 0 };
        let mut view = |r: &StallRecord| {
            let n = r.profile.as_ref().map_or(0, ProfileBuilder::samples);
            if n > 0 && n <= budget {
                budget -= n;
                r.view_with_profile(now_ns)
            } else {
                r.view(now_ns)
            }
        };
        let open = inner
            .loops
            .values()
            .filter_map(|l| l.open.as_ref())
            .map(&mut view)
            .collect();
        let recent = inner
            .recent
            .iter()
            .rev()
            .take(limit)
            .map(&mut view)
            .collect();
        (open, recent)
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
    #[cfg(test)]
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
            .map(StallRecord::summary)
            .collect();
        out.extend(
            inner
                .loops
                .values()
                .filter_map(|l| l.open.as_ref().map(StallRecord::summary)),
        );
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

    /// Per loop: (samples kept, samples dropped) since start.
    pub fn samples_per_loop(&self) -> Vec<(usize, u64, u64)> {
        self.lock()
            .loops
            .iter()
            .map(|(i, l)| (*i, l.samples_total, l.samples_dropped_total))
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
        let id = book.open(0, &cur(timer, 5, 1_000), 100, 10);
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
        let added = book
            .add_sample(id, 1_000, vec![Frame::default()], None, 0)
            .unwrap();
        assert!(added.first);
        assert_eq!(added.stall.stack.len(), 1);
        assert_eq!(added.stall.samples, 1);
        assert_eq!(book.recent(10)[0].stack.len(), 1);
        let per = book.per_loop(0);
        assert_eq!(per[0].1, 1);
        assert_eq!(per[0].2.count(), 1);
    }

    #[test]
    fn a_listing_carries_profiles_up_to_its_sample_budget_and_old_profiles_are_evicted() {
        let book = StallBook::default();
        book.add_loop(0);
        let timer = timer_id();
        let frame = Frame {
            function: "f".into(),
            file: None,
            line: None,
        };
        let n = STALL_PROFILES_KEPT as u64 + 2;
        for i in 0..n {
            let id = book.open(0, &cur(timer, i, i * 10), 100, 10);
            for k in 0..MAX_STALL_SAMPLES {
                book.add_sample(id, i * 10 + k, vec![frame.clone()], None, 0);
            }
            assert!(!book.wants_samples(id), "the bound is reached");
            assert!(book.drop_sample(id));
            book.close(0, i * 10 + 5);
        }
        let (_, recent) = book.listing(usize::MAX, true, 0);
        let with: Vec<u64> = recent
            .iter()
            .filter(|s| s.profile.is_some())
            .map(|s| s.id)
            .collect();
        let fit = LISTING_PROFILE_SAMPLES / MAX_STALL_SAMPLES as usize;
        assert_eq!(with, (n - fit as u64 + 1..=n).rev().collect::<Vec<_>>());
        assert_eq!(recent[0].samples, MAX_STALL_SAMPLES);
        assert_eq!(recent[0].samples_dropped, 1);
        // The oldest two lost their profiles (16 are kept), counted.
        assert_eq!(book.profiles_evicted(), 2);
        assert!(book.get_with_profile(1, 0).unwrap().profile.is_none());
        assert!(book.get_with_profile(n, 0).unwrap().profile.is_some());
    }

    #[test]
    fn ring_is_bounded() {
        let book = StallBook::default();
        let timer = timer_id();
        for i in 0..(RECENT_KEPT as u64 + 10) {
            book.open(0, &cur(timer, i, i), 100, 10);
            book.close(0, i + 1);
        }
        assert_eq!(book.recent(usize::MAX).len(), RECENT_KEPT);
        assert_eq!(book.total(), RECENT_KEPT as u64 + 10);
        assert_eq!(book.recent(1)[0].id, RECENT_KEPT as u64 + 10);
    }
}
