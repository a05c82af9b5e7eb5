//! loopd's event-loop engine: libuv's loop, on `mio`, instrumented from the start.
//!
//! One [`Loop`] per thread. [`Loop::run`] reads like libuv's `uv_run`: each iteration is
//! update time → timers → pending → idle → prepare → poll → check → close, every phase one
//! named call wrapped by `Loop::phase`, which times it. Every callback goes through
//! `Loop::dispatch`, the one choke point that knows the phase and the handle or request,
//! publishes it in the current-callback slot (read by the stall watchdog), catches panics and
//! counts. Stats stay loop-local and are published as immutable snapshots, read through
//! the loop's [`instrument::LoopObserver`]: what an observer needs is in
//! [`instrument`].
#![deny(missing_docs)]

mod async_handle;
mod clock;
mod current;
mod fs;
mod handle;
pub mod instrument;
mod io_request;
mod names;
mod phase;
mod poll_fd;
mod pool;
mod recorder;
mod request;
mod signal;
mod slots;
mod stats;
mod sys;
mod target;
mod tcp;
mod timer;
mod token;
mod udp;
mod wake;
mod watcher;

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use async_handle::{Async, AsyncSender};
pub use fs::{DirEntry, FsFile};
pub use handle::{Handle, HandleInfo, HandleRef};
pub use io_request::DoneCb;
pub use names::Named;
pub use phase::Phase;
pub use poll_fd::{PollEvents, PollFd};
pub use pool::{
    ThreadPool, WorkClass, WorkContext, WorkError, DEFAULT_SIZE as THREADPOOL_DEFAULT_SIZE,
    MAX_SIZE as THREADPOOL_MAX_SIZE,
};
pub use request::{RequestInfo, RequestState};
pub use signal::Signal;
pub use sys::kill;
pub use target::{HandleId, HandleType, RequestId, RequestType, Site, Target};
pub use tcp::{ReadEvent, Tcp};
pub use timer::Timer;
pub use udp::Udp;
pub use watcher::{
    Check, CheckPhase, Idle, IdlePhase, Prepare, PreparePhase, Watcher, WatcherPhase,
};

use handle::{CloseCb, HandleTable, TypeData, CLOSING};
use instrument::LoopObserver;
use pool::{Completion, Job, JobFn, JobOutput};
use recorder::RecorderLocal;
use request::{AfterWork, RequestData, RequestRef, RequestTable};
use stats::LoopStats;
use timer::TimerHeap;
use wake::LoopWake;
use watcher::{WatcherKind, Watchers};

/// Errors of engine operations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The handle is closing or closed.
    #[error("handle is closing or closed")]
    Closed,
    /// The operation does not apply in the handle's state.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// The request is already running (or done) and cannot be cancelled.
    #[error(
        "request is running or done; only queued requests and running slow work can be cancelled"
    )]
    Busy,
    /// An operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// [`Loop::close`] on a loop with live handles or requests (libuv's `UV_EBUSY`): the loop is
/// given back, unchanged.
#[derive(Debug, thiserror::Error)]
#[error("the loop is busy: {handles} handles and {requests} requests live")]
pub struct LoopBusy {
    /// Handles not yet closed (closing ones included: their close callbacks have not run).
    pub handles: usize,
    /// Requests in flight.
    pub requests: usize,
    lp: Box<Loop>,
}

impl LoopBusy {
    /// The loop, to run it until its handles closed and its requests completed.
    pub fn into_loop(self) -> Loop {
        *self.lp
    }
}

/// How [`Loop::run`] runs (libuv's `uv_run_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Until nothing is alive or [`Loop::stop`] is called.
    Default,
    /// One iteration, blocking in the poll if there is nothing to do yet.
    Once,
    /// One iteration without blocking.
    NoWait,
}

/// Options for [`Loop::with_options`].
#[derive(Clone)]
pub struct LoopOptions {
    /// Record stats, publish snapshots, run the lag probe and fill the current-callback slot.
    /// Off only to measure what instrumentation costs.
    pub instrument: bool,
    /// Interval of the lag probe timer.
    pub lag_probe_interval: Duration,
    /// Interval between snapshot publications.
    pub publish_interval: Duration,
    /// The thread pool for `queue_work` and fs requests (default: [`ThreadPool::global`]).
    pub pool: Option<Arc<ThreadPool>>,
    /// The loop's index (the `loop` label); default: the next unused index of the process.
    pub index: Option<usize>,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            instrument: true,
            lag_probe_interval: Duration::from_millis(10),
            publish_interval: Duration::from_millis(100),
            pool: None,
            index: None,
        }
    }
}

impl std::fmt::Debug for LoopOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopOptions")
            .field("instrument", &self.instrument)
            .field("lag_probe_interval", &self.lag_probe_interval)
            .field("publish_interval", &self.publish_interval)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

static NEXT_LOOP_INDEX: AtomicUsize = AtomicUsize::new(0);

/// Size of the loop's read buffer.
const READ_BUF: usize = 64 * 1024;
/// How many times pending callbacks queued by the poll phase run right after it (libuv's 8):
/// enough for writes completed at once, bounded so a callback that keeps queueing cannot
/// starve the loop.
const PENDING_AFTER_POLL: usize = 8;

/// A callback deferred to the pending phase.
pub(crate) struct Pending {
    target: Target,
    slot: u32,
    /// The handle the deferred request belongs to (its close runs the callback first).
    owner: Option<HandleRef>,
    cb: Box<dyn FnOnce(&mut Loop)>,
}

/// An event loop. Not `Send`: it lives and runs on one thread; other threads reach it
/// through [`AsyncSender`], the thread pool and its [`LoopObserver`].
pub struct Loop {
    poll: mio::Poll,
    /// Taken out while the poll phase iterates them (`None` only then).
    events: Option<mio::Events>,
    /// Loop time: read once per iteration (libuv's `loop->time`), nanoseconds.
    now_ns: u64,
    /// The latest clock reading of the instrumentation: start of the next measured interval.
    last_clock: u64,
    started_ns: u64,
    stop_flag: bool,
    pub(crate) handles: HandleTable,
    pub(crate) requests: RequestTable,
    timers: TimerHeap,
    watchers: Watchers,
    pending: Vec<Pending>,
    wake: Arc<LoopWake>,
    wake_asyncs: Vec<HandleRef>,
    wake_completions: Vec<Completion>,
    close_batch: Vec<HandleRef>,
    pool: Arc<ThreadPool>,
    instrument: bool,
    stats: LoopStats,
    pub(crate) observer: Arc<LoopObserver>,
    publish_interval_ns: u64,
    next_publish_ns: u64,
    /// Due time of the timer being fired (for the lag probe).
    firing_due_ns: u64,
    recorder: RecorderLocal,
    /// Handles to serve again in the next poll phase (read bursts cut short, reads resumed).
    io_again: Vec<HandleRef>,
    /// Listeners whose accept failed (EMFILE, …): retried after a short pause.
    io_again_later: Vec<HandleRef>,
    read_buf: Vec<u8>,
    signals: signal::SignalSource,
    /// Work submitted in the current phase, handed to the pool at its end (one lock for all).
    pool_jobs: Vec<pool::Job>,
    /// Whether `pool_jobs` may hold slow work.
    pool_jobs_slow: bool,
    /// Cancel flags of slow work in flight, by request id (apart from the request table, so
    /// other requests pay nothing for them).
    cancel_flags: HashMap<u64, Arc<AtomicBool>>,
    /// Guards against running the loop from inside one of its callbacks.
    running: bool,
    /// The lag probe's timer (instrumented loops): internal, so [`Loop::close`] ignores it.
    lag_probe: Option<HandleRef>,
}

impl std::fmt::Debug for Loop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loop")
            .field("index", &self.observer.index())
            .field("handles", &self.handles.len())
            .field("requests", &self.requests.active_total)
            .finish_non_exhaustive()
    }
}

impl Loop {
    /// A loop with default options (instrumented).
    ///
    /// # Errors
    /// When the OS poller cannot be created.
    pub fn new() -> io::Result<Loop> {
        Loop::with_options(LoopOptions::default())
    }

    /// A loop with `options`.
    ///
    /// # Errors
    /// When the OS poller cannot be created.
    pub fn with_options(options: LoopOptions) -> io::Result<Loop> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), token::WAKER)?;
        let index = options
            .index
            .unwrap_or_else(|| NEXT_LOOP_INDEX.fetch_add(1, Ordering::Relaxed));
        let now = clock::now_ns();
        let mut lp = Loop {
            poll,
            events: Some(mio::Events::with_capacity(1024)),
            now_ns: now,
            last_clock: now,
            started_ns: now,
            stop_flag: false,
            handles: HandleTable::default(),
            requests: RequestTable::default(),
            timers: TimerHeap::default(),
            watchers: Watchers::default(),
            pending: Vec::new(),
            wake: Arc::new(LoopWake::new(waker)),
            wake_asyncs: Vec::new(),
            wake_completions: Vec::new(),
            close_batch: Vec::new(),
            pool: options.pool.unwrap_or_else(|| ThreadPool::global().clone()),
            instrument: options.instrument,
            stats: LoopStats::default(),
            observer: Arc::new(LoopObserver::new(index)),
            publish_interval_ns: clock::duration_ns(options.publish_interval).max(1),
            next_publish_ns: now,
            firing_due_ns: 0,
            recorder: RecorderLocal::default(),
            io_again: Vec::new(),
            io_again_later: Vec::new(),
            read_buf: vec![0; READ_BUF],
            signals: signal::SignalSource::default(),
            pool_jobs: Vec::new(),
            pool_jobs_slow: false,
            cancel_flags: HashMap::new(),
            running: false,
            lag_probe: None,
        };
        if lp.instrument {
            lp.start_lag_probe(options.lag_probe_interval);
        }
        Ok(lp)
    }

    /// The internal, unref'd probe timer behind the lag histogram (like Node's
    /// `monitorEventLoopDelay`): lag = when it ran − when it was due.
    fn start_lag_probe(&mut self, interval: Duration) {
        let probe = Timer::new(self);
        probe.set_label(self, "loopd lag probe");
        let interval = interval.max(Duration::from_millis(1));
        let started = probe.start(self, interval, interval, |lp, _| {
            let lag = lp.now_ns.saturating_sub(lp.firing_due_ns);
            lp.stats.record_lag(lag);
        });
        debug_assert!(started.is_ok());
        probe.unref(self);
        self.lag_probe = Some(probe.raw());
    }

    /// Closes the loop (libuv's `uv_loop_close`): only once every handle's close callback
    /// ran and no request is in flight; otherwise the loop comes back in [`LoopBusy`]
    /// (libuv's `UV_EBUSY`), unchanged. Dropping a busy loop instead is safe too: its
    /// handles are dropped without their close callbacks, work the pool has not started is
    /// dropped, and results of running work are discarded.
    ///
    /// # Errors
    /// [`LoopBusy`] while handles or requests live; the instrumented loop's own lag probe
    /// does not count.
    pub fn close(self) -> Result<(), LoopBusy> {
        let probe = self
            .lag_probe
            .filter(|p| self.handles.get(*p).is_some())
            .map_or(0, |_| 1);
        let handles = self.handles.len() - probe;
        let requests = self.requests.active_total;
        if handles > 0 || requests > 0 {
            return Err(LoopBusy {
                handles,
                requests,
                lp: Box::new(self),
            });
        }
        Ok(())
    }

    /// Runs the loop (libuv's `uv_run`). Returns whether the loop is still alive (something
    /// would keep it running).
    pub fn run(&mut self, mode: RunMode) -> bool {
        if self.running {
            tracing::error!("Loop::run called from inside a callback of the same loop; ignored");
            return self.alive();
        }
        self.running = true;
        if self.instrument {
            self.observer.note_thread();
        }
        let mut alive = self.alive();
        if !alive {
            self.update_time();
        }
        // libuv (≥ 1.45): a Default run fires the timers already due once before its first
        // iteration; from then on timers run once per iteration, at its end, after the poll
        // that waited for them.
        if mode == RunMode::Default && alive && !self.stop_flag {
            self.update_time();
            if self.timers_due() {
                self.phase(Phase::Timers, Loop::run_timers);
            }
        } else if self.instrument {
            // Once and NoWait keep the loop time as the last run left it (libuv), but the
            // phase timings start from now, not from the end of the last run.
            self.last_clock = clock::now_ns();
        }
        while alive && !self.stop_flag {
            if self.instrument {
                // The clock was read after the last callback or poll, and nothing but
                // bookkeeping ran since: that reading is when this iteration begins.
                self.recorder.begin_iteration(self.last_clock);
            }
            // Whether the poll may block is decided before pending and idle callbacks run
            // (libuv PR 3590): an idle handle that stops itself must not let a Once run
            // block forever.
            let can_sleep = self.pending.is_empty() && !self.watchers.any_active(WatcherKind::Idle);
            // A phase with nothing to run is skipped before any bookkeeping: an empty phase
            // costs one comparison, timed or not.
            if !self.pending.is_empty() {
                self.phase(Phase::Pending, Loop::run_pending);
            }
            if self.watchers.any_active(WatcherKind::Idle) {
                self.phase(Phase::Idle, |lp| {
                    lp.run_watchers(WatcherKind::Idle, Phase::Idle)
                });
            }
            if self.watchers.any_active(WatcherKind::Prepare) {
                self.phase(Phase::Prepare, |lp| {
                    lp.run_watchers(WatcherKind::Prepare, Phase::Prepare)
                });
            }
            let timeout = if (mode == RunMode::Once && can_sleep) || mode == RunMode::Default {
                self.backend_timeout()
            } else {
                Some(0)
            };
            self.phase(Phase::Poll, |lp| lp.poll_io(timeout));
            // Completions the poll's callbacks queued (a write done at once) run right after
            // it, a bounded number of times so they cannot starve the loop (libuv PR 3598).
            for _ in 0..PENDING_AFTER_POLL {
                if self.pending.is_empty() {
                    break;
                }
                self.phase(Phase::Pending, Loop::run_pending);
            }
            if self.watchers.any_active(WatcherKind::Check) {
                self.phase(Phase::Check, |lp| {
                    lp.run_watchers(WatcherKind::Check, Phase::Check)
                });
            }
            if !self.handles.closing.is_empty() {
                self.phase(Phase::Close, Loop::run_closing);
            }
            if self.instrument {
                // Read after the last callback: the time now.
                self.now_ns = self.last_clock;
            } else {
                self.update_time();
            }
            if self.timers_due() {
                self.phase(Phase::Timers, Loop::run_timers);
            }
            self.end_iteration();
            alive = self.alive();
            if mode != RunMode::Default {
                break;
            }
        }
        self.stop_flag = false;
        self.running = false;
        if self.instrument {
            self.publish();
        }
        alive
    }

    /// Makes [`Loop::run`] return after the current iteration (libuv's `uv_stop`).
    pub fn stop(&mut self) {
        self.stop_flag = true;
    }

    /// Whether anything keeps the loop alive: an active and referenced handle, a request in
    /// flight, a pending callback or a closing handle.
    pub fn alive(&self) -> bool {
        self.handles.active_refd > 0
            || self.requests.active_total > 0
            || !self.pending.is_empty()
            || !self.handles.closing.is_empty()
    }

    /// How long the poll may block, as libuv's `uv_backend_timeout`: zero when stopping, when
    /// nothing is active, with active idle handles, pending callbacks or closing handles;
    /// else until the nearest timer; else forever (`None`). Nanoseconds.
    pub fn backend_timeout(&mut self) -> Option<u64> {
        if self.stop_flag
            || (self.handles.active_refd == 0 && self.requests.active_total == 0)
            || self.watchers.any_active(WatcherKind::Idle)
            || !self.pending.is_empty()
            || !self.handles.closing.is_empty()
            || !self.io_again.is_empty()
        {
            return Some(0);
        }
        let timer = self.next_timer_in();
        if self.io_again_later.is_empty() {
            timer
        } else {
            const RETRY_NS: u64 = 10_000_000;
            Some(timer.map_or(RETRY_NS, |t| t.min(RETRY_NS)))
        }
    }

    /// Loop time: when the current iteration started.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns)
    }

    /// Reads the clock into the loop time (libuv's `uv_update_time`).
    pub fn update_time(&mut self) {
        self.now_ns = clock::now_ns();
        self.last_clock = self.now_ns;
    }

    /// Requests in flight (work, fs, writes, …).
    pub fn requests_in_flight(&self) -> usize {
        self.requests.active_total
    }

    /// The loop's index (the `loop` label of its metrics).
    pub fn index(&self) -> usize {
        self.observer.index()
    }

    /// The thread-safe view of this loop: snapshots and the current callback.
    pub fn observer(&self) -> Arc<LoopObserver> {
        self.observer.clone()
    }

    /// The thread pool this loop queues work on.
    pub fn pool(&self) -> &Arc<ThreadPool> {
        &self.pool
    }

    /// Whether the loop records stats.
    pub fn is_instrumented(&self) -> bool {
        self.instrument
    }

    /// Publishes a snapshot, handle and request lists included, now instead of at the next
    /// cadence point.
    pub fn publish_now(&mut self) {
        if self.instrument {
            self.observer.request_details();
            self.publish();
        }
    }

    /// Closes every handle (the `uv_walk` + `uv_close` shutdown idiom); the loop then ends
    /// once their close callbacks ran and requests in flight completed.
    pub fn close_all(&mut self) {
        let all: Vec<HandleRef> = self.handles.iter().map(|(r, _)| r).collect();
        for r in all {
            self.close_handle(r, None);
        }
    }

    /// Calls `f` with every handle, closing ones included (libuv's `uv_walk`).
    pub fn walk(&self, mut f: impl FnMut(HandleInfo)) {
        for (_, slot) in self.handles.iter() {
            f(HandleInfo::of(slot));
        }
    }

    /// Calls `f` with every request in flight.
    pub fn walk_requests(&self, mut f: impl FnMut(RequestInfo)) {
        for slot in self.requests.iter() {
            f(RequestInfo::of(slot));
        }
    }

    /// Runs `work` on the thread pool, then `after` on this loop with its result
    /// (libuv's `uv_queue_work`). A panic in `work` arrives as [`WorkError::Panicked`].
    /// For work that may run long, use [`Loop::queue_work_slow`].
    #[track_caller]
    pub fn queue_work<T: Send + 'static>(
        &mut self,
        work: impl FnOnce() -> T + Send + 'static,
        after: impl FnOnce(&mut Loop, Result<T, WorkError>) + 'static,
    ) -> WorkRequest {
        let site = Location::caller();
        let run = JobFn::Fast(Box::new(move || JobOutput {
            value: Box::new(work()),
            failed: false,
            cancelled: false,
        }));
        let r = self.submit_to_pool(RequestType::Work, site, run, typed_after(after), None);
        WorkRequest(r)
    }

    /// Runs CPU-bound or otherwise long `work` on the thread pool as [`WorkClass::Slow`]:
    /// it shares at most half the workers (rounded up) with other slow work, so fs requests
    /// always find a worker. `work` gets a [`WorkContext`]: calling its
    /// [`checkpoint`](WorkContext::checkpoint) every millisecond or so lets waiting fast work
    /// run first and tells when [`WorkRequest::cancel`] asked it to stop, even while running.
    #[track_caller]
    pub fn queue_work_slow<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&WorkContext<'_>) -> T + Send + 'static,
        after: impl FnOnce(&mut Loop, Result<T, WorkError>) + 'static,
    ) -> WorkRequest {
        let site = Location::caller();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let run = JobFn::Slow(Box::new(move |ctx: &WorkContext<'_>| {
            let value = Box::new(work(&ctx.with_cancel(&flag)));
            JobOutput {
                value,
                failed: false,
                cancelled: flag.load(Ordering::Relaxed),
            }
        }));
        let r = self.submit_to_pool(
            RequestType::Work,
            site,
            run,
            typed_after(after),
            Some(cancel),
        );
        WorkRequest(r)
    }

    pub(crate) fn submit_to_pool(
        &mut self,
        kind: RequestType,
        site: &'static Location<'static>,
        run: JobFn,
        after: AfterWork,
        cancel: Option<Arc<AtomicBool>>,
    ) -> RequestRef {
        let r = self.requests.insert(
            kind,
            RequestData::Pool { after: Some(after) },
            site,
            self.now_ns,
        );
        if let Some(flag) = cancel {
            self.cancel_flags.insert(r.id, flag);
        }
        self.pool_jobs_slow |= matches!(run, JobFn::Slow(_));
        self.pool_jobs.push(Job {
            req: r,
            kind,
            enqueued_ns: clock::now_ns(),
            run,
            reply: self.wake.clone(),
        });
        if !self.running {
            // Queued from outside `run`: no phase end will come to hand it over.
            self.flush_pool_jobs();
        }
        r
    }

    /// Hands the work submitted in this phase to the pool and wakes the idle workers it
    /// needs.
    #[inline]
    fn flush_pool_jobs(&mut self) {
        if !self.pool_jobs.is_empty() {
            let any_slow = std::mem::take(&mut self.pool_jobs_slow);
            let wakes = self.pool.submit(&mut self.pool_jobs, any_slow);
            self.pool.wake_workers(wakes);
        }
    }

    /// Wraps one phase: times it when it ran callbacks (the poll phase always, minus the time
    /// blocked waiting). Reuses the clock readings taken after each callback, so an empty
    /// phase costs no clock read.
    #[inline]
    fn phase<R>(&mut self, phase: Phase, run: impl FnOnce(&mut Loop) -> R) -> R {
        if !self.instrument {
            let r = run(self);
            self.flush_pool_jobs();
            return r;
        }
        let start = self.last_clock;
        let callbacks_before = self.stats.phase_callbacks[phase.index()];
        let r = run(self);
        let ran = if phase == Phase::Poll {
            let began = start + self.stats.last_poll_idle_ns;
            Some((began, self.last_clock.saturating_sub(began)))
        } else if self.stats.phase_callbacks[phase.index()] != callbacks_before {
            Some((start, self.last_clock.saturating_sub(start)))
        } else {
            None
        };
        if let Some((began, took)) = ran {
            self.stats.phase_ns[phase.index()].record(took);
            self.recorder.phase(phase.index(), began, took);
        }
        self.flush_pool_jobs();
        r
    }

    /// The one choke point every callback goes through: publishes what runs in the
    /// current-callback slot, catches a panic (closing the handle), counts and times it.
    pub(crate) fn dispatch(
        &mut self,
        phase: Phase,
        target: Target,
        slot: u32,
        f: impl FnOnce(&mut Loop),
    ) {
        if self.instrument {
            let (handles, requests) = (&self.handles, &self.requests);
            let label = move || match target {
                Target::Handle(_, id) => handles
                    .get(HandleRef { slot, id: id.get() })
                    .and_then(|s| s.label.as_deref()),
                Target::Request(_, id) => requests.label(slot, id.get()),
            };
            self.observer
                .current
                .enter(phase, target, label, self.last_clock);
        }
        let started = self.last_clock;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(self)));
        if self.instrument {
            self.observer.current.leave();
            self.stats.phase_callbacks[phase.index()] += 1;
            let end = clock::now_ns();
            self.last_clock = end;
            if end - started >= recorder::SLOW_CALLBACK_NS {
                self.record_slow(phase, target, slot, started, end - started);
            }
        }
        if let Err(payload) = outcome {
            self.callback_panicked(phase, target, slot, payload.as_ref());
        }
    }

    /// Runs a handle's callback, kept in its data as the field `cb_of` picks: takes it out
    /// (so the callback may use the loop freely, even give the handle a new callback), runs
    /// it through [`Loop::dispatch`], and puts it back unless the callback installed a new
    /// one or the handle is gone. Every handle callback of every type runs through here.
    #[inline]
    pub(crate) fn run_handle_callback<D: TypeData, C>(
        &mut self,
        phase: Phase,
        r: HandleRef,
        cb_of: impl Fn(&mut D) -> &mut Option<C>,
        call: impl FnOnce(&mut Loop, &mut C),
    ) {
        let Some(slot) = self.handles.get_mut(r) else {
            return;
        };
        let kind = slot.kind;
        let Some(mut cb) = D::of_mut(&mut slot.data).and_then(|d| cb_of(d).take()) else {
            return;
        };
        let target = Target::Handle(kind, r.id());
        self.dispatch(phase, target, r.slot, |lp| call(lp, &mut cb));
        if let Some(field) = self.handles.data_mut::<D>(r).map(cb_of) {
            if field.is_none() {
                *field = Some(cb);
            }
        }
    }

    #[cold]
    fn record_slow(
        &mut self,
        phase: Phase,
        target: Target,
        slot: u32,
        start_ns: u64,
        duration_ns: u64,
    ) {
        let label = match target {
            Target::Handle(_, id) => self
                .handles
                .get(HandleRef { slot, id: id.get() })
                .and_then(|s| s.label.clone()),
            Target::Request(..) => None,
        };
        self.recorder.slow_callback(recorder::SlowCallback {
            start_ns,
            duration_ns,
            phase,
            target,
            label,
        });
    }

    #[cold]
    fn callback_panicked(
        &mut self,
        phase: Phase,
        target: Target,
        slot: u32,
        payload: &(dyn Any + Send),
    ) {
        self.stats.panics += 1;
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        tracing::error!(
            loop_index = self.index(),
            phase = %phase,
            target = %target,
            panic = %msg,
            "callback panicked; its handle is closed and the loop goes on"
        );
        if let Target::Handle(_, id) = target {
            self.close_handle(HandleRef { slot, id: id.get() }, None);
        }
    }

    /// Pending phase: runs the callbacks deferred by the previous iteration. Callbacks queued
    /// now wait for the next pending phase. Returns whether any ran.
    fn run_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let batch = std::mem::take(&mut self.pending);
        for p in batch {
            self.dispatch(Phase::Pending, p.target, p.slot, p.cb);
        }
        true
    }

    /// Queues `cb` for the next pending phase.
    pub(crate) fn defer(
        &mut self,
        target: Target,
        slot: u32,
        owner: Option<HandleRef>,
        cb: Box<dyn FnOnce(&mut Loop)>,
    ) {
        self.pending.push(Pending {
            target,
            slot,
            owner,
            cb,
        });
    }

    /// Close phase, before `r`'s close callback: the deferred callbacks of its requests
    /// (writes done at once) run now, as libuv runs a closing stream's completed writes
    /// before its close callback.
    fn run_deferred_of(&mut self, r: HandleRef) {
        if !self.pending.iter().any(|p| p.owner == Some(r)) {
            return;
        }
        let (mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.owner == Some(r));
        self.pending = rest;
        for p in mine {
            self.dispatch(Phase::Close, p.target, p.slot, p.cb);
        }
    }

    /// Poll phase: waits for I/O up to `timeout_ns` (forever when `None`), then runs the
    /// callbacks of what became ready.
    fn poll_io(&mut self, timeout_ns: Option<u64>) {
        self.flush_pool_jobs();
        let timeout = timeout_ns.map(Duration::from_nanos);
        let Some(mut events) = self.events.take() else {
            return;
        };
        if let Err(e) = self.poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "poll failed");
            }
        }
        // The loop time moves on when the poll returns (libuv's `uv__io_poll`): a timer
        // started by a callback of this iteration counts from now, not from before the wait.
        if self.instrument {
            let after = clock::now_ns();
            let idle = after.saturating_sub(self.last_clock);
            self.stats.idle_ns += idle;
            self.stats.last_poll_idle_ns = idle;
            self.last_clock = after;
            self.now_ns = after;
        } else if timeout_ns != Some(0) {
            // (A poll that could not wait moved the time by one system call: not worth a
            // clock read on the uninstrumented loop's hot path; the end of the iteration
            // reads it before the timers.)
            self.update_time();
        }
        // Handles queued to be served again before this poll; those queued while serving
        // events now wait for the next poll phase.
        let again = (!self.io_again.is_empty() || !self.io_again_later.is_empty())
            .then(|| self.take_again());
        let mut n = 0u64;
        for event in events.iter() {
            n += 1;
            match event.token() {
                token::WAKER => self.run_wakeups(),
                token::SIGNAL => self.run_signals(),
                token => {
                    let Some(r) = self.handle_for_token(token) else {
                        continue;
                    };
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    let writable =
                        event.is_writable() || event.is_write_closed() || event.is_error();
                    self.io_event(r, readable, writable);
                }
            }
        }
        if let Some(again) = again {
            self.serve_again(again);
        }
        self.stats.events += n;
        self.stats.events_waiting = n;
        self.events = Some(events);
    }

    /// Takes the handles queued to be served again (read bursts cut short, resumed reads,
    /// accepts to retry).
    fn take_again(&mut self) -> Vec<HandleRef> {
        let mut again = std::mem::take(&mut self.io_again);
        again.append(&mut self.io_again_later);
        again
    }

    /// Serves what [`Loop::take_again`] took, then keeps its buffer for reuse.
    fn serve_again(&mut self, mut again: Vec<HandleRef>) {
        for r in again.drain(..) {
            self.io_event(r, true, false);
        }
        if self.io_again.is_empty() {
            self.io_again = again;
        }
    }

    /// The live handle a readiness event is for; `None` for a closed handle's (its slot may
    /// hold another handle by now).
    #[inline]
    fn handle_for_token(&self, t: mio::Token) -> Option<HandleRef> {
        let (r, s) = self.handles.by_slot(token::slot_of(t))?;
        token::matches(t, s.id).then_some(r)
    }

    /// Thread-pool completions, then async handles.
    fn run_wakeups(&mut self) {
        let mut asyncs = std::mem::take(&mut self.wake_asyncs);
        let mut completions = std::mem::take(&mut self.wake_completions);
        self.wake.take(&mut asyncs, &mut completions);
        for c in completions.drain(..) {
            self.complete_pool_request(c);
        }
        self.run_asyncs(&asyncs);
        asyncs.clear();
        self.wake_asyncs = asyncs;
        self.wake_completions = completions;
    }

    fn complete_pool_request(&mut self, c: Completion) {
        // Slow work's cancel flag: set after the work had finished, the caller still gets
        // what it asked for.
        let cancelled_late = !self.cancel_flags.is_empty()
            && self
                .cancel_flags
                .remove(&c.req.id)
                .is_some_and(|f| f.load(Ordering::Relaxed));
        let Some(slot) = self.requests.get_mut(c.req) else {
            return;
        };
        slot.state = RequestState::Done;
        let kind = slot.kind;
        let created = slot.created_ns;
        let after = match &mut slot.data {
            RequestData::Pool { after } => after.take(),
            RequestData::Io => None,
        };
        if self.instrument {
            self.stats.request_ns[kind.index()].record(self.last_clock.saturating_sub(created));
        }
        if let Some(after) = after {
            let target = Target::Request(kind, c.req.id());
            let result = match c.result {
                Ok(_) if cancelled_late => Err(WorkError::Cancelled),
                result => result,
            };
            self.dispatch(Phase::Poll, target, c.req.slot, move |lp| after(lp, result));
        }
        self.requests.remove(c.req);
    }

    /// Close phase: frees the handles closed since the last close phase and runs their close
    /// callbacks, most recently closed first (as libuv does).
    fn run_closing(&mut self) {
        if self.handles.closing.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.close_batch);
        std::mem::swap(&mut batch, &mut self.handles.closing);
        for &r in batch.iter().rev() {
            if !self.pending.is_empty() {
                self.run_deferred_of(r);
            }
            self.run_cancelled(r);
            let Some(slot) = self.handles.get_mut(r) else {
                continue;
            };
            let kind = slot.kind;
            if let Some(cb) = slot.close_cb.take() {
                self.dispatch(Phase::Close, Target::Handle(kind, r.id()), r.slot, cb);
            }
            self.handles.remove(r);
        }
        batch.clear();
        self.close_batch = batch;
    }

    /// Starts closing a handle: stops it now; the close phase frees it and runs `cb`.
    pub(crate) fn close_handle(&mut self, r: HandleRef, cb: Option<CloseCb>) {
        let Some(slot) = self.handles.get_mut(r) else {
            return;
        };
        if slot.flags & CLOSING != 0 {
            return;
        }
        slot.flags |= CLOSING;
        slot.close_cb = cb;
        let kind = slot.kind;
        self.stop_for_close(r, kind);
        self.handles.closing.push(r);
    }

    fn end_iteration(&mut self) {
        self.stats.iterations += 1;
        if !self.instrument {
            return;
        }
        self.recorder.end_iteration(
            self.last_clock,
            self.stats.last_poll_idle_ns,
            &self.observer.recorder,
        );
        if self.last_clock >= self.next_publish_ns || self.observer.details_requested() {
            self.next_publish_ns = self.last_clock + self.publish_interval_ns;
            self.publish();
        }
    }
}

/// The after-work callback of a `T`-returning job, as the request table keeps it.
fn typed_after<T: Send + 'static>(
    after: impl FnOnce(&mut Loop, Result<T, WorkError>) + 'static,
) -> AfterWork {
    Box::new(move |lp, result| {
        let typed = result.and_then(|v| {
            v.downcast::<T>()
                .map(|b| *b)
                .map_err(|_| WorkError::WrongType)
        });
        after(lp, typed);
    })
}

/// A request on the thread pool: work (libuv's `uv_work_t`), an fs request (`uv_fs_t`) or a
/// name lookup (`uv_getaddrinfo_t`); [`cancel`](WorkRequest::cancel) is libuv's `uv_cancel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkRequest(RequestRef);

impl WorkRequest {
    /// The request's stable id.
    pub fn id(&self) -> RequestId {
        self.0.id()
    }

    /// Cancels the work: if no worker has taken it yet, it never runs; slow work that is
    /// running ([`Loop::queue_work_slow`]) sees it at its next
    /// [`checkpoint`](WorkContext::checkpoint). Either way its after-callback then runs with
    /// [`WorkError::Cancelled`] (fs and getaddrinfo callbacks: an `ECANCELED` error) in a
    /// later poll phase.
    ///
    /// # Errors
    /// [`EngineError::Busy`] when it is done, or running and not slow work (libuv's
    /// `uv_cancel` cannot stop running work either).
    pub fn cancel(&self, lp: &mut Loop) -> Result<(), EngineError> {
        match lp.requests.get(self.0) {
            Some(slot) if slot.state != RequestState::Done => {}
            _ => return Err(EngineError::Busy),
        }
        let flag = lp.cancel_flags.get(&self.0.id).cloned();
        // Submitted in this phase and not handed to the pool yet.
        let local = lp.pool_jobs.iter().position(|j| j.req == self.0);
        let job = match local {
            Some(i) => {
                let job = lp.pool_jobs.remove(i);
                lp.pool.count_cancelled(job.kind);
                Some(job)
            }
            None => lp.pool.cancel(self.0),
        };
        match (job, flag) {
            (Some(job), _) => {
                job.reply.post_completion(Completion {
                    req: self.0,
                    result: Err(WorkError::Cancelled),
                });
                Ok(())
            }
            // Running (or finished, its completion on the way): the flag tells the work and,
            // when the completion arrives, turns its result into `Cancelled`.
            (None, Some(flag)) => {
                flag.store(true, Ordering::Relaxed);
                Ok(())
            }
            (None, None) => Err(EngineError::Busy),
        }
    }

    /// Sets the label shown in request listings and stall reports.
    pub fn set_label(&self, lp: &mut Loop, label: impl Into<Arc<str>>) {
        if let Some(slot) = lp.requests.get_mut(self.0) {
            slot.label = Some(label.into());
            lp.observer.current.invalidate_label();
        }
    }
}
