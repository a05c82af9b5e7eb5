//! Loop-local counters and histograms, and their publication as immutable snapshots.
//!
//! The loop updates plain fields (no atomics, no locks) and, at a fixed cadence, publishes a
//! [`LoopSnapshot`] through an `ArcSwap`: readers on other threads load the latest snapshot
//! without ever waiting on the loop thread, so they keep answering while the loop is blocked.

mod histogram;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use histogram::Histogram;

use super::clock::{now_ns, wall_ms};
use super::current::{CallbackSlot, CurrentCallback};
use super::handle::{HandleInfo, TypeCount};
use super::names::PerType;
use super::phase::Phase;
use super::recorder::Recorder;
use super::request::{RequestInfo, RequestState};
use super::sys::{self, ThreadIdentity};
use super::target::{HandleType, RequestType};
use super::Loop;

/// Recent lag maxima kept for sparklines: one per publication.
const LAG_RECENT: usize = 120;
/// Utilization samples kept: one per publication, enough for the 60 s window.
const ELU_SAMPLES: usize = 1200;
/// Up to this many handles, the handle and request lists are refreshed every second
/// without being asked.
const PERIODIC_LISTS_MAX: usize = 10_000;

/// Counters the loop thread updates as it runs.
#[derive(Default)]
pub(crate) struct LoopStats {
    pub iterations: u64,
    pub events: u64,
    pub events_waiting: u64,
    pub idle_ns: u64,
    /// Time blocked in the last poll, subtracted from the poll phase's duration.
    pub last_poll_idle_ns: u64,
    pub phase_ns: [Histogram; Phase::COUNT],
    pub phase_callbacks: [u64; Phase::COUNT],
    pub lag: Histogram,
    pub request_ns: [Histogram; RequestType::COUNT],
    pub panics: u64,
    windows: SnapshotWindows,
    publications: u64,
}

impl LoopStats {
    pub fn record_lag(&mut self, lag_ns: u64) {
        self.lag.record(lag_ns);
        self.windows.note_lag(lag_ns);
    }
}

/// The sliding windows a producer keeps between publications to fill a snapshot's
/// `utilization` and `lag_recent_ns`: an idle-time sample per publication (enough for the
/// 60 s window) and the largest lag of each publication interval.
#[derive(Debug, Default)]
pub struct SnapshotWindows {
    /// (time, idle_ns) at each publication.
    elu: VecDeque<(u64, u64)>,
    lag_window_max: u64,
    lag_recent: VecDeque<u64>,
}

impl SnapshotWindows {
    /// Notes a lag measurement of the current publication interval.
    #[inline]
    pub fn note_lag(&mut self, lag_ns: u64) {
        self.lag_window_max = self.lag_window_max.max(lag_ns);
    }

    /// Closes a publication interval at `now`, when the loop had been idle `idle_total_ns`
    /// since it began; returns the utilization windows as of now.
    pub fn advance(&mut self, now: u64, idle_total_ns: u64) -> Utilization {
        self.elu.push_back((now, idle_total_ns));
        if self.elu.len() > ELU_SAMPLES {
            self.elu.pop_front();
        }
        self.lag_recent.push_back(self.lag_window_max);
        self.lag_window_max = 0;
        if self.lag_recent.len() > LAG_RECENT {
            self.lag_recent.pop_front();
        }
        Utilization {
            last_1s: self.utilization(now, idle_total_ns, 1_000_000_000),
            last_10s: self.utilization(now, idle_total_ns, 10_000_000_000),
            last_60s: self.utilization(now, idle_total_ns, 60_000_000_000),
        }
    }

    /// The largest lag of each recent publication interval, oldest first.
    pub fn lag_recent(&self) -> Vec<u64> {
        self.lag_recent.iter().copied().collect()
    }

    /// Event-loop utilization over the last `window_ns`: 1 − idle/elapsed.
    fn utilization(&self, now: u64, idle_now: u64, window_ns: u64) -> f64 {
        let oldest = self
            .elu
            .iter()
            .find(|(t, _)| now.saturating_sub(*t) <= window_ns)
            .copied();
        let Some((t0, idle0)) = oldest else {
            return 0.0;
        };
        let elapsed = now.saturating_sub(t0);
        if elapsed == 0 {
            return 0.0;
        }
        let idle = idle_now.saturating_sub(idle0).min(elapsed);
        1.0 - idle as f64 / elapsed as f64
    }
}

/// Event-loop utilization (ELU = 1 − idle/elapsed) over sliding windows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Utilization {
    /// Over the last second.
    pub last_1s: f64,
    /// Over the last 10 seconds.
    pub last_10s: f64,
    /// Over the last 60 seconds.
    pub last_60s: f64,
}

/// One phase's numbers in a snapshot.
#[derive(Clone, Debug)]
pub struct PhaseSnapshot {
    /// The phase.
    pub phase: Phase,
    /// Callbacks run in it since the loop began.
    pub callbacks: u64,
    /// Its duration in every iteration where it ran a callback (poll: every iteration,
    /// excluding the time blocked waiting, which is idle time).
    pub duration: Histogram,
}

/// Everything a loop publishes; immutable once published.
#[derive(Clone, Debug)]
pub struct LoopSnapshot {
    /// Which loop (the `loop` label).
    pub loop_index: usize,
    /// When it was taken ([`super::clock::now_ns`]).
    pub as_of_ns: u64,
    /// When it was taken, Unix milliseconds.
    pub as_of_wall_ms: u64,
    /// When the loop was created ([`super::clock::now_ns`]).
    pub started_ns: u64,
    /// Iterations run.
    pub iterations: u64,
    /// I/O events processed.
    pub events: u64,
    /// Events returned by the last poll: the backlog the loop processed in its last iteration.
    pub events_waiting: u64,
    /// Time blocked in poll, nanoseconds.
    pub idle_ns_total: u64,
    /// Utilization windows.
    pub utilization: Utilization,
    /// Per-phase numbers, in phase order.
    pub phases: Vec<PhaseSnapshot>,
    /// Event-loop lag (actual − scheduled time of the probe timer).
    pub lag: Histogram,
    /// Largest lag seen in each recent publication interval, oldest first.
    pub lag_recent_ns: Vec<u64>,
    /// Handle counts by type (`handles[HandleType::Tcp]`).
    pub handles: PerType<HandleType, TypeCount>,
    /// Handles opened since the loop began, by type.
    pub handles_opened: PerType<HandleType, u64>,
    /// Handles closed since the loop began, by type.
    pub handles_closed: PerType<HandleType, u64>,
    /// Requests in flight, by type.
    pub requests_active: PerType<RequestType, u64>,
    /// Requests started, by type.
    pub requests_started: PerType<RequestType, u64>,
    /// Request durations (creation to completion), by type.
    pub request_duration: PerType<RequestType, Histogram>,
    /// Panics caught in callbacks.
    pub callback_panics: u64,
    /// Every handle, refreshed at most once a second unless asked for
    /// ([`LoopObserver::request_details`]).
    pub handle_list: Arc<Vec<HandleInfo>>,
    /// Every request in flight, refreshed with `handle_list`.
    pub request_list: Arc<Vec<RequestInfo>>,
    /// When the lists were taken.
    pub lists_as_of_ns: u64,
}

impl LoopSnapshot {
    /// The snapshot of a loop that has not run yet: no iterations, every phase and type at
    /// zero, started `now`. A producer starts from it and fills what it measured.
    pub fn new(loop_index: usize, now: u64) -> Self {
        LoopSnapshot {
            loop_index,
            as_of_ns: now,
            as_of_wall_ms: wall_ms(now),
            started_ns: now,
            iterations: 0,
            events: 0,
            events_waiting: 0,
            idle_ns_total: 0,
            utilization: Utilization::default(),
            phases: Phase::ALL
                .iter()
                .map(|p| PhaseSnapshot {
                    phase: *p,
                    callbacks: 0,
                    duration: Histogram::new(),
                })
                .collect(),
            lag: Histogram::new(),
            lag_recent_ns: Vec::new(),
            handles: PerType::default(),
            handles_opened: PerType::default(),
            handles_closed: PerType::default(),
            requests_active: PerType::default(),
            requests_started: PerType::default(),
            request_duration: PerType::from_fn(|_| Histogram::new()),
            callback_panics: 0,
            handle_list: Arc::new(Vec::new()),
            request_list: Arc::new(Vec::new()),
            lists_as_of_ns: now,
        }
    }
}

/// The part of a loop other threads may hold: its latest snapshot and its current-callback
/// slot. Obtained with [`Loop::observer`]; `Send + Sync`.
///
/// Its reading side ([`snapshot`](Self::snapshot), [`current`](Self::current),
/// [`recorder`](Self::recorder), [`thread`](Self::thread)) is what observers use. Its
/// producing side ([`new`](Self::new), [`publish`](Self::publish),
/// [`callback_slot`](Self::callback_slot), [`note_thread`](Self::note_thread),
/// [`take_details_request`](Self::take_details_request)) is what a loop fills it with: the
/// engine's own [`Loop`], or another producer that watches a loop it does not run (the libuv
/// agent).
pub struct LoopObserver {
    index: usize,
    snapshot: ArcSwap<LoopSnapshot>,
    pub(crate) current: CallbackSlot,
    pub(crate) recorder: Recorder,
    want_details: AtomicBool,
    thread_pthread: AtomicU64,
    thread_tid: AtomicI32,
}

impl std::fmt::Debug for LoopObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopObserver")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl LoopObserver {
    /// An observer of loop `index` (its `loop` label) with an empty snapshot, for a producer
    /// to fill. [`Loop::observer`] hands out the engine's own.
    pub fn new(index: usize) -> Self {
        LoopObserver {
            index,
            snapshot: ArcSwap::from_pointee(LoopSnapshot::new(index, now_ns())),
            current: CallbackSlot::default(),
            recorder: Recorder::default(),
            want_details: AtomicBool::new(false),
            thread_pthread: AtomicU64::new(0),
            thread_tid: AtomicI32::new(0),
        }
    }

    /// Remembers the calling thread as the loop's: stack samples of a stall are taken from
    /// it. Call from the thread that runs the loop, each time it starts running it.
    pub fn note_thread(&self) {
        let me = sys::current_pthread() as u64;
        if self.thread_pthread.load(Ordering::Relaxed) != me {
            let id = sys::current_thread();
            self.thread_tid.store(id.tid, Ordering::Relaxed);
            self.thread_pthread.store(me, Ordering::Release);
        }
    }

    /// The thread that last ran the loop, `None` before the first `run`.
    pub fn thread(&self) -> Option<ThreadIdentity> {
        match self.thread_pthread.load(Ordering::Acquire) {
            0 => None,
            p => Some(ThreadIdentity {
                pthread: p as libc::pthread_t,
                tid: self.thread_tid.load(Ordering::Relaxed),
            }),
        }
    }

    /// Publishes `snapshot` as the loop's latest: readers see it from their next load. Call
    /// from the producer at a steady cadence (the engine: every 100 ms).
    pub fn publish(&self, snapshot: LoopSnapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The current-callback slot, for its one writer: the thread that runs the loop enters
    /// it before each callback and leaves it after ([`CallbackSlot::enter`]).
    pub fn callback_slot(&self) -> &CallbackSlot {
        &self.current
    }

    /// Whether someone asked for fresh handle and request lists since the last call
    /// ([`LoopObserver::request_details`]); clears the request. The producer then takes its
    /// lists for its next publication.
    pub fn take_details_request(&self) -> bool {
        self.want_details.swap(false, Ordering::Relaxed)
    }

    /// Whether fresh lists were asked for, without clearing the request (a producer's cheap
    /// per-iteration check; [`take_details_request`](Self::take_details_request) clears it).
    pub fn details_requested(&self) -> bool {
        self.want_details.load(Ordering::Relaxed)
    }

    /// The flight recorder: recent iterations and slow callbacks.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The loop's index (the `loop` label).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The latest published snapshot. Never waits for the loop.
    pub fn snapshot(&self) -> Arc<LoopSnapshot> {
        self.snapshot.load_full()
    }

    /// The callback running on the loop right now, if any. Never waits for the loop.
    pub fn current(&self) -> Option<CurrentCallback> {
        self.current.read()
    }

    /// Asks the loop to refresh the handle and request lists at the end of its current
    /// iteration (they are otherwise refreshed once a second while there are at most
    /// 10,000 handles).
    pub fn request_details(&self) {
        self.want_details.store(true, Ordering::Relaxed);
    }

    /// A snapshot whose handle and request lists were taken after this call, waiting at most
    /// `max_wait` for the loop to publish one; when the loop is blocked (or not running), the
    /// latest snapshot instead — its `lists_as_of_ns` tells how old its lists are.
    pub fn fresh_snapshot(&self, max_wait: std::time::Duration) -> Arc<LoopSnapshot> {
        let asked = now_ns();
        self.request_details();
        let deadline = std::time::Instant::now() + max_wait;
        loop {
            let snap = self.snapshot();
            if snap.lists_as_of_ns >= asked || std::time::Instant::now() >= deadline {
                return snap;
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }
}

impl Loop {
    /// Builds and publishes a snapshot (loop thread; called at the publication cadence).
    /// Never inlined: profiles tell its cost, which follows wall time, apart from the work's.
    #[inline(never)]
    pub(crate) fn publish(&mut self) {
        let now = now_ns();
        let st = &mut self.stats;
        st.publications += 1;
        let utilization = st.windows.advance(now, st.idle_ns);
        let previous = self.observer.snapshot.load();
        // Lists cost O(handles): refreshed when someone asked, and once a second only while
        // they are small enough for that to be free.
        let details_due = self.observer.take_details_request()
            || (self.handles.len() <= PERIODIC_LISTS_MAX
                && (st.publications <= 1
                    || now.saturating_sub(previous.lists_as_of_ns) >= 1_000_000_000));
        let (handle_list, request_list, lists_as_of_ns) = if details_due {
            let running = if self.requests.active_total > 0 {
                self.pool.running_requests()
            } else {
                Vec::new()
            };
            let handles = self
                .handles
                .iter()
                .map(|(_, s)| HandleInfo::of(s))
                .collect();
            let requests = self
                .requests
                .iter()
                .map(|s| {
                    let mut info = RequestInfo::of(s);
                    if info.state == RequestState::Queued && running.contains(&info.id) {
                        info.state = RequestState::Running;
                    }
                    info
                })
                .collect();
            (Arc::new(handles), Arc::new(requests), now)
        } else {
            (
                previous.handle_list.clone(),
                previous.request_list.clone(),
                previous.lists_as_of_ns,
            )
        };
        let st = &self.stats;
        let snapshot = LoopSnapshot {
            loop_index: self.observer.index(),
            as_of_ns: now,
            as_of_wall_ms: wall_ms(now),
            started_ns: self.started_ns,
            iterations: st.iterations,
            events: st.events,
            events_waiting: st.events_waiting,
            idle_ns_total: st.idle_ns,
            utilization,
            phases: Phase::ALL
                .iter()
                .map(|p| PhaseSnapshot {
                    phase: *p,
                    callbacks: st.phase_callbacks[p.index()],
                    duration: st.phase_ns[p.index()].clone(),
                })
                .collect(),
            lag: st.lag.clone(),
            lag_recent_ns: st.windows.lag_recent(),
            handles: PerType::from_fn(|t: HandleType| self.handles.counts[t.index()]),
            handles_opened: PerType::from_fn(|t: HandleType| self.handles.opened[t.index()]),
            handles_closed: PerType::from_fn(|t: HandleType| self.handles.closed[t.index()]),
            requests_active: PerType::from_fn(|t: RequestType| self.requests.active[t.index()]),
            requests_started: PerType::from_fn(|t: RequestType| self.requests.started[t.index()]),
            request_duration: PerType::from_fn(|t: RequestType| st.request_ns[t.index()].clone()),
            callback_panics: st.panics,
            handle_list,
            request_list,
            lists_as_of_ns,
        };
        self.observer.publish(snapshot);
        self.recorder.flush(&self.observer.recorder);
    }
}
