//! One attached libuv loop, on its own thread: what libuv's public API lets us measure, kept
//! in loopd's data model and published to a [`LoopObserver`].
//!
//! Handles of our own, all unref'd (they never keep the host's loop alive):
//! - a **prepare** handle: runs right before the poll — an iteration boundary and the
//!   publication point;
//! - a **check** handle, only when callbacks are *not* attributed (the attach call into a
//!   statically linked libuv): runs right after the poll — the end of the poll phase (its
//!   time, minus `uv_metrics_idle_time`'s idle, is the poll phase) and the start of the
//!   unattributed stretch below;
//! - a **lag probe** timer (every 10 ms, as loopd's): actual − scheduled firing time.
//!
//! With attribution (preloaded) every host callback is timed by its trampoline, so the poll
//! phase is the sum of the I/O callbacks of the iteration and a check handle would only add
//! a handle run and two clock reads to each iteration (BENCHMARKS.md, "The agent's cost").
//!
//! The current-callback slot names the stretch between callbacks "not attributed" where a
//! callback the agent does not wrap may run: without attribution, from our check callback to
//! our next prepare callback ("without attribution, an iteration"); with it, from the end of
//! each attributed callback to the next callback or prepare (a host callback registered
//! through a call the agent does not interpose, `uv_spawn`'s exit callback say, is still seen
//! blocking). The poll itself (prepare to the first callback) and the host's own code between
//! `uv_run` calls are never in the slot.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_int;
use std::rc::Rc;
use std::sync::Arc;

use loopd_engine::instrument::clock::{now_ns, wall_ms};
use loopd_engine::instrument::{
    Histogram, LoopObserver, LoopSnapshot, PerType, PhaseSnapshot, RecorderLocal, SlowCallback,
    SnapshotWindows, TypeCount, SLOW_CALLBACK_NS,
};
use loopd_engine::{
    HandleId, HandleInfo, HandleType, Phase, RequestInfo, RequestType, Site, Target,
};

use crate::sites;
use crate::uv::{self, Ptr, Uv};

/// How often the snapshot is published (loopd's cadence).
const PUBLISH_NS: u64 = 100_000_000;
/// The lag probe's interval, milliseconds (loopd's).
const PROBE_MS: u64 = 10;
/// Handle lists are refreshed at most this often unless asked.
const LISTS_NS: u64 = 1_000_000_000;
/// Past this many handles, lists are taken only when asked (uv_walk is O(handles)).
const PERIODIC_LISTS_MAX: usize = 10_000;
/// The label of the stretch outside the poll phase (timers, idle, check and close phases)
/// when no callback is attributed. Short: the slot copies it each time the stretch is entered
/// anew after an attributed callback (two words).
const OUTSIDE_POLL: &str = "not attributed";

/// Whether a handle of `kind` becomes active only through calls the agent interposes
/// (`uv_timer_start`, `uv_idle/prepare/check_start`, `uv_async_init`, `uv_poll_start`);
/// streams also start through `uv_tcp_connect`, `uv_pipe_connect`, `uv_spawn`, … and signal
/// watchers through `uv_signal_start_oneshot`: they do not tell.
fn started_by_us(kind: HandleType) -> bool {
    matches!(
        kind,
        HandleType::Timer
            | HandleType::Idle
            | HandleType::Prepare
            | HandleType::Check
            | HandleType::Async
            | HandleType::Poll
    )
}

/// What we know of a host handle beyond what `uv_walk` tells.
struct Known {
    id: HandleId,
    first_seen_ns: u64,
    /// Seen in the last walk (unseen ones are forgotten).
    seen: bool,
}

/// One attached loop's state; lives on the loop's thread.
pub struct LoopAgent {
    pub uv_loop: Ptr,
    uv: &'static Uv,
    pub observer: Arc<LoopObserver>,
    recorder: RecorderLocal,
    windows: SnapshotWindows,
    started_ns: u64,
    iterations: u64,
    events: u64,
    events_waiting: u64,
    idle_base: u64,
    phase_ns: [Histogram; Phase::COUNT],
    phase_callbacks: [u64; Phase::COUNT],
    lag: Histogram,
    probe_due_ns: u64,
    /// When our prepare callback last ran (start of the poll phase) and the idle total then.
    prepare_at: u64,
    idle_at_prepare: u64,
    /// The idle total last read (idle grows only inside a poll that may block).
    idle_last: u64,
    /// Whether the poll after our last prepare callback may block (`uv_backend_timeout` was
    /// not 0): only then can idle time have grown, and only then is it read (libuv's
    /// `uv_metrics_idle_time` takes a mutex).
    may_block: bool,
    /// Between our prepare and our check callbacks (check mode only).
    in_poll: bool,
    /// Callbacks are attributed (the host's registering calls reach the agent): no check
    /// handle; the poll phase is the sum of the I/O callbacks (see the module doc).
    attributed: bool,
    /// This iteration's attributed I/O callbacks: their total time and the first one's start.
    poll_callbacks_ns: u64,
    poll_first_ns: Option<u64>,
    /// The last clock read (a callback's end, the check callback) and whether nothing could
    /// have blocked since (false from the prepare callback — the poll may block — and from
    /// each `uv_run` entry — the host ran in between): one clock read per callback, as in
    /// loopd's engine (see `callback_begins`, `poll_begins`).
    last_clock: u64,
    clock_valid: bool,
    /// An attributed callback ended since the check callback (check mode; always true with
    /// attribution): `last_clock` is then a callback's end, not the check callback's read
    /// with unattributed callbacks run since.
    callback_since_check: bool,
    next_publish_ns: u64,
    lists_at_ns: u64,
    known: crate::intercept::PtrMap<Known>,
    handle_list: Arc<Vec<HandleInfo>>,
    /// The requests in flight at the last walk.
    request_list: Arc<Vec<RequestInfo>>,
    counts: PerType<HandleType, TypeCount>,
    requests_active: PerType<RequestType, u64>,
    requests_started: PerType<RequestType, u64>,
    request_duration: PerType<RequestType, Histogram>,
    /// Our own handles (freed when closed): prepare, check, probe timer.
    own: [Ptr; 3],
    /// The id of our check handle, which names the stretch outside the poll phase.
    outside_id: HandleId,
    /// Depth of attributed callbacks running (a callback may run the loop's code re-entrantly
    /// only through libuv, which does not nest callbacks; kept for safety).
    depth: u32,
}

thread_local! {
    /// The loops attached on this thread, by `uv_loop_t` address.
    static AGENTS: RefCell<Vec<(usize, Rc<RefCell<LoopAgent>>)>> = const { RefCell::new(Vec::new()) };
}

/// The agent of `uv_loop` on this thread, if attached.
pub fn agent_of(uv_loop: Ptr) -> Option<Rc<RefCell<LoopAgent>>> {
    AGENTS
        .try_with(|a| {
            a.try_borrow().ok().and_then(|list| {
                list.iter()
                    .find(|(l, _)| *l == uv_loop as usize)
                    .map(|(_, agent)| agent.clone())
            })
        })
        .ok()
        .flatten()
}

/// `uv_run` is entering `uv_loop`: the host ran its own code since the last clock read.
pub fn loop_entered(uv_loop: Ptr) {
    if let Some(agent) = agent_of(uv_loop) {
        if let Ok(mut a) = agent.try_borrow_mut() {
            a.clock_valid = false;
        }
    }
}

/// In a forked child (see [`crate::fork`]), on the thread that forked: each loop attached on
/// it gets a fresh observer (the parent's could be mid-update by a thread the child does not
/// have) and is served anew, with the child's pid.
pub fn adopt_after_fork() {
    crate::serve::forget_parent();
    crate::sites::forget_resolver();
    let agents: Vec<(usize, Rc<RefCell<LoopAgent>>)> = AGENTS
        .try_with(|a| a.try_borrow().map(|l| l.clone()).unwrap_or_default())
        .unwrap_or_default();
    for (uv_loop, agent) in agents {
        let Ok(mut a) = agent.try_borrow_mut() else {
            continue;
        };
        let observer = Arc::new(LoopObserver::new(a.observer.index()));
        observer.note_thread();
        a.observer = observer.clone();
        // Published anew from the next prepare callback on.
        a.next_publish_ns = 0;
        drop(a);
        crate::serve::add(uv_loop, observer);
        tracing::info!(
            "loopd-agent: forked child {}: serving loop {uv_loop:#x}",
            std::process::id()
        );
    }
}

/// `uv_run` returned: the host's own code runs next, not a callback of the loop.
pub fn loop_left(uv_loop: Ptr) {
    if let Some(agent) = agent_of(uv_loop) {
        if let Ok(a) = agent.try_borrow() {
            if a.depth == 0 {
                a.observer.callback_slot().leave();
            }
        }
    }
}

/// Whether `uv_loop` is attached on this thread.
pub fn is_attached(uv_loop: Ptr) -> bool {
    agent_of(uv_loop).is_some()
}

/// Whether `cb` is one of the agent's own handles' callbacks (libuv re-arms our probe timer
/// through `uv_timer_start`: it must not be wrapped as a host callback).
pub fn is_own_callback(cb: usize) -> bool {
    [
        on_prepare as *const () as usize,
        on_check as *const () as usize,
        on_probe as *const () as usize,
    ]
    .contains(&cb)
}

/// Allocates and initializes one of our handles with `init`, or `None`.
fn own_handle(
    uv: &Uv,
    uv_loop: Ptr,
    kind: c_int,
    init: unsafe extern "C" fn(Ptr, Ptr) -> c_int,
) -> Option<Ptr> {
    // SAFETY: uv_handle_size has no preconditions.
    let size = unsafe { (uv.handle_size)(kind) };
    if size == 0 {
        return None;
    }
    // SAFETY: calloc of a non-zero size; checked for null below.
    let h = unsafe { libc::calloc(1, size) };
    if h.is_null() {
        return None;
    }
    // SAFETY: `h` is zeroed memory of the handle's size; `uv_loop` is the live loop.
    if unsafe { init(uv_loop, h) } != 0 {
        // SAFETY: allocated above, never handed to libuv successfully.
        unsafe { libc::free(h) };
        return None;
    }
    // SAFETY: an initialized handle: unref'd so it never keeps the host's loop alive.
    unsafe { (uv.unref)(h) };
    Some(h)
}

unsafe extern "C" fn free_own_handle(h: Ptr) {
    // SAFETY: our handles are calloc'd (own_handle) and this is their close callback, the
    // last time libuv touches them.
    unsafe { libc::free(h) };
}

/// Attaches the agent to `uv_loop` on this thread: our three handles, idle-time metrics.
///
/// # Safety
/// `uv_loop` is an initialized libuv loop run by this thread; call from that thread.
pub unsafe fn attach(
    uv: &'static Uv,
    uv_loop: Ptr,
    index: usize,
) -> Result<Arc<LoopObserver>, String> {
    if let Some(a) = agent_of(uv_loop) {
        return Ok(a.borrow().observer.clone());
    }
    // SAFETY: a live loop (contract). Idle time is measured from here on.
    let rc = unsafe { (uv.loop_configure)(uv_loop, uv::UV_METRICS_IDLE_TIME) };
    if rc != 0 {
        return Err(format!(
            "uv_loop_configure(UV_METRICS_IDLE_TIME) failed ({rc})"
        ));
    }
    let prepare = own_handle(uv, uv_loop, uv::UV_PREPARE, uv.prepare_init);
    let check = own_handle(uv, uv_loop, uv::UV_CHECK, uv.check_init);
    let probe = own_handle(uv, uv_loop, uv::UV_TIMER, uv.timer_init);
    let (Some(prepare), Some(check), Some(probe)) = (prepare, check, probe) else {
        for h in [prepare, check, probe].into_iter().flatten() {
            // SAFETY: initialized handles of ours; freed by their close callback.
            unsafe { (uv.close)(h, Some(free_own_handle)) };
        }
        return Err("cannot create the agent's prepare/check/timer handles".into());
    };
    let now = now_ns();
    let observer = Arc::new(LoopObserver::new(index));
    observer.note_thread();
    let outside_id = HandleId::allocate();
    let mut agent = LoopAgent {
        uv_loop,
        uv,
        observer: observer.clone(),
        recorder: RecorderLocal::default(),
        windows: SnapshotWindows::default(),
        started_ns: now,
        iterations: 0,
        events: 0,
        events_waiting: 0,
        // SAFETY: a live loop.
        idle_base: unsafe { (uv.metrics_idle_time)(uv_loop) },
        phase_ns: std::array::from_fn(|_| Histogram::new()),
        phase_callbacks: [0; Phase::COUNT],
        lag: Histogram::new(),
        probe_due_ns: now + PROBE_MS * 1_000_000,
        prepare_at: now,
        idle_at_prepare: 0,
        idle_last: 0,
        may_block: true,
        in_poll: false,
        attributed: crate::intercept::interposing(),
        poll_callbacks_ns: 0,
        poll_first_ns: None,
        last_clock: now,
        clock_valid: false,
        callback_since_check: false,
        next_publish_ns: now,
        lists_at_ns: 0,
        known: crate::intercept::PtrMap::default(),
        handle_list: Arc::new(Vec::new()),
        request_list: Arc::new(Vec::new()),
        counts: PerType::default(),
        requests_active: PerType::default(),
        requests_started: PerType::default(),
        request_duration: PerType::from_fn(|_| Histogram::new()),
        own: [prepare, check, probe],
        outside_id,
        depth: 0,
    };
    // The stretch outside the poll phase is named after our check handle, which begins it.
    agent.known.insert(
        check as usize,
        Known {
            id: outside_id,
            first_seen_ns: now,
            seen: true,
        },
    );
    let attributed = agent.attributed;
    let cell = Rc::new(RefCell::new(agent));
    for h in [prepare, check, probe] {
        // SAFETY: our own initialized handles: `data` is the first field of every handle,
        // ours to set; it points at the agent while the handle lives (see `with_own`).
        unsafe { *(h as *mut *const RefCell<LoopAgent>) = Rc::as_ptr(&cell) };
    }
    let kept = AGENTS.try_with(|a| match a.try_borrow_mut() {
        Ok(mut list) => {
            list.push((uv_loop as usize, cell));
            true
        }
        Err(_) => false,
    });
    if kept != Ok(true) {
        for h in [prepare, check, probe] {
            // SAFETY: initialized handles of ours, never started; freed by their close callback.
            unsafe { (uv.close)(h, Some(free_own_handle)) };
        }
        return Err("cannot register the loop on this thread".into());
    }
    // SAFETY: our initialized handles, on this loop; the callbacks are ours.
    unsafe {
        (uv.prepare_start)(prepare, on_prepare);
        if !attributed {
            (uv.check_start)(check, on_check);
        }
        (uv.timer_start)(probe, on_probe, PROBE_MS, PROBE_MS);
    }
    Ok(observer)
}

/// Detaches from `uv_loop` (this thread): our handles close, the slot is left.
///
/// # Safety
/// As [`attach`].
pub unsafe fn detach(uv_loop: Ptr) -> Option<Arc<LoopObserver>> {
    let agent = AGENTS
        .try_with(|a| {
            let mut list = a.try_borrow_mut().ok()?;
            let i = list.iter().position(|(l, _)| *l == uv_loop as usize)?;
            Some(list.remove(i).1)
        })
        .ok()
        .flatten()?;
    let agent = agent.borrow();
    for h in agent.own {
        // SAFETY: our handles, initialized and not yet closed; freed by their close callback.
        unsafe { (agent.uv.close)(h, Some(free_own_handle)) };
    }
    agent.observer.callback_slot().leave();
    Some(agent.observer.clone())
}

/// The agent's own handles on `uv_loop` (this thread), if attached.
pub fn own_handles(uv_loop: Ptr) -> Option<[usize; 3]> {
    let agent = agent_of(uv_loop)?;
    let a = agent.try_borrow().ok()?;
    Some(a.own.map(|p| p as usize))
}

/// Whether every handle left on `uv_loop` is one of the agent's (this thread).
///
/// # Safety
/// As [`attach`].
pub unsafe fn only_ours_left(uv_loop: Ptr) -> bool {
    let Some(agent) = agent_of(uv_loop) else {
        return false;
    };
    let Ok(a) = agent.try_borrow() else {
        return false;
    };
    struct Count {
        own: [usize; 3],
        others: usize,
    }
    unsafe extern "C" fn visit(h: Ptr, arg: Ptr) {
        // SAFETY: `arg` is the `Count` passed to uv_walk below.
        let c = unsafe { &mut *(arg as *mut Count) };
        if !c.own.contains(&(h as usize)) {
            c.others += 1;
        }
    }
    let mut c = Count {
        own: a.own.map(|p| p as usize),
        others: 0,
    };
    // SAFETY: a live loop on its thread; `visit` only counts.
    unsafe { (a.uv.walk)(uv_loop, visit, (&mut c as *mut Count).cast()) };
    c.others == 0
}

/// Runs `f` on the agent that owns our handle `h`, found through the handle's `data`.
fn with_own(h: Ptr, f: impl FnOnce(&mut LoopAgent)) {
    // SAFETY: `h` is one of our live handles (libuv passes it to its callback); its `data`
    // (the first field of every handle) is the agent's `RefCell`, set at attach and kept
    // alive by `AGENTS` until detach, which closes the handle first (a closing handle's
    // callbacks no longer run).
    let cell = unsafe { *(h as *const *const RefCell<LoopAgent>) };
    if cell.is_null() {
        return;
    }
    // SAFETY: as above: valid while the handle's callbacks can run.
    if let Ok(mut a) = unsafe { &*cell }.try_borrow_mut() {
        f(&mut a);
    }
}

unsafe extern "C" fn on_prepare(h: Ptr) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A fork from inside a callback: the child goes on in this loop.
        if crate::fork::take_pending() {
            adopt_after_fork();
        }
        with_own(h, LoopAgent::poll_begins)
    }));
}

unsafe extern "C" fn on_check(h: Ptr) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with_own(h, LoopAgent::poll_ends)
    }));
}

unsafe extern "C" fn on_probe(h: Ptr) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with_own(h, LoopAgent::probe_fired)
    }));
}

impl LoopAgent {
    fn idle_total(&self) -> u64 {
        // SAFETY: the attached loop is alive while our handles run.
        unsafe { (self.uv.metrics_idle_time)(self.uv_loop) }.saturating_sub(self.idle_base)
    }

    /// Our prepare callback: one iteration ends, the poll phase begins.
    fn poll_begins(&mut self) {
        // An attributed callback that ended since the check phase read the clock last; only
        // libuv's own bookkeeping ran since. Otherwise (unattributed callbacks may have run),
        // read it.
        let now = if self.clock_valid && self.callback_since_check {
            self.last_clock
        } else {
            now_ns()
        };
        // The poll may block: the next callback's start needs a fresh read.
        self.clock_valid = false;
        let publishing = now >= self.next_publish_ns || self.observer.details_requested();
        // Idle time grows only inside a poll that may block: read it (one
        // `uv_metrics_idle_time` call, which takes a mutex) only after one, or to publish. In
        // check mode the check callback has read it after the poll.
        if self.attributed && (self.may_block || publishing) {
            self.idle_last = self.idle_total();
        }
        let idle = self.idle_last;
        if self.depth == 0 {
            self.observer.callback_slot().leave();
        }
        if self.attributed {
            self.poll_phase_ends();
        }
        if self.iterations > 0 {
            self.recorder.end_iteration(
                now,
                idle.saturating_sub(self.idle_at_prepare),
                self.observer.recorder(),
            );
        }
        self.iterations += 1;
        self.recorder.begin_iteration(now);
        self.prepare_at = now;
        self.idle_at_prepare = idle;
        self.in_poll = true;
        if let Some(info) = self.uv.metrics_info {
            let mut m = uv::MetricsInfo::default();
            // SAFETY: a live loop and a `uv_metrics_t`-sized out value.
            if unsafe { info(self.uv_loop, &mut m) } == 0 {
                self.events = m.events;
                self.events_waiting = m.events_waiting;
            }
        }
        if publishing {
            self.publish(now, idle);
        }
        // The timeout libuv is about to poll with (our prepare runs before the host's
        // prepare handles started before the attach: one of those could still change it; a
        // missed idle stretch is then read at the next one that may block).
        // SAFETY: a live loop, on its thread.
        self.may_block = unsafe { (self.uv.backend_timeout)(self.uv_loop) } != 0;
    }

    /// With attribution: the I/O callbacks of the iteration that ends are its poll phase.
    fn poll_phase_ends(&mut self) {
        if let Some(first) = self.poll_first_ns.take() {
            let took = std::mem::take(&mut self.poll_callbacks_ns);
            self.phase_ns[Phase::Poll.index()].record(took);
            self.recorder.phase(Phase::Poll.index(), first, took);
        }
    }

    /// Our check callback: the poll phase (and the I/O callbacks in it) ended.
    fn poll_ends(&mut self) {
        let now = now_ns();
        self.last_clock = now;
        self.clock_valid = true;
        self.callback_since_check = false;
        if self.may_block {
            self.idle_last = self.idle_total();
        }
        let idle = self.idle_last;
        let blocked = idle.saturating_sub(self.idle_at_prepare);
        let began = self.prepare_at + blocked;
        let took = now.saturating_sub(began);
        self.phase_ns[Phase::Poll.index()].record(took);
        self.recorder.phase(Phase::Poll.index(), began, took);
        self.in_poll = false;
        if self.depth == 0 {
            self.enter_outside(now);
        }
    }

    fn probe_fired(&mut self) {
        let now = now_ns();
        let lag = now.saturating_sub(self.probe_due_ns);
        self.lag.record(lag);
        self.windows.note_lag(lag);
        self.probe_due_ns = now + PROBE_MS * 1_000_000;
    }

    /// Names the stretch outside the poll phase in the slot (see the module doc).
    fn enter_outside(&self, now: u64) {
        self.observer.callback_slot().enter(
            Phase::Timers,
            Target::Handle(HandleType::Check, self.outside_id),
            || Some(OUTSIDE_POLL),
            now,
        );
    }

    /// An attributed callback of `target` begins (loop thread).
    pub fn callback_begins(&mut self, phase: Phase, target: Target, label: Option<&str>) -> u64 {
        // As loopd's engine does: the previous read stands for the start when nothing could
        // block since (the check callback or the previous callback's end); after the poll
        // began, the first callback reads the clock.
        let now = if self.clock_valid {
            self.last_clock
        } else {
            now_ns()
        };
        self.depth += 1;
        self.observer
            .callback_slot()
            .enter(phase, target, || label, now);
        now
    }

    /// The attributed callback that began at `started` returned.
    pub fn callback_ends(&mut self, phase: Phase, target: Target, started: u64) {
        let now = now_ns();
        self.last_clock = now;
        self.clock_valid = true;
        self.callback_since_check = true;
        self.depth = self.depth.saturating_sub(1);
        let took = now.saturating_sub(started);
        self.phase_callbacks[phase.index()] += 1;
        if phase != Phase::Poll {
            self.phase_ns[phase.index()].record(took);
        } else if self.attributed {
            self.poll_callbacks_ns += took;
            self.poll_first_ns.get_or_insert(started);
        }
        if took >= SLOW_CALLBACK_NS {
            self.recorder.slow_callback(SlowCallback {
                start_ns: started,
                duration_ns: took,
                phase,
                target,
                label: None,
            });
        }
        if self.depth == 0 {
            if self.in_poll && !self.attributed {
                self.observer.callback_slot().leave();
            } else {
                self.enter_outside(now);
            }
        }
    }

    /// The handle at `h` is gone (its close callback ran).
    pub fn forget_handle(&mut self, h: Ptr) {
        self.known.remove(&(h as usize));
    }

    /// A request of `kind` started.
    pub fn request_started(&mut self, kind: RequestType) {
        self.requests_active[kind] += 1;
        self.requests_started[kind] += 1;
    }

    /// A request of `kind` that started at `started_ns` completed.
    pub fn request_done(&mut self, kind: RequestType, started_ns: u64) {
        self.requests_active[kind] = self.requests_active[kind].saturating_sub(1);
        self.request_duration[kind].record(now_ns().saturating_sub(started_ns));
    }

    /// Walks the loop's handles (loop thread): counts by type and, when due, the list.
    fn walk(&mut self, now: u64) {
        struct Walk {
            uv: &'static Uv,
            seen: Vec<(usize, HandleType, bool, bool, bool, Option<i32>)>,
        }
        unsafe extern "C" fn visit(h: Ptr, arg: Ptr) {
            // SAFETY: `arg` is the `Walk` passed to uv_walk below, alive for its duration.
            let w = unsafe { &mut *(arg as *mut Walk) };
            // SAFETY: libuv hands uv_walk's callback live handles of the loop.
            let (t, active, closing, has_ref) = unsafe {
                (
                    uv::type_of(w.uv, h),
                    (w.uv.is_active)(h) != 0,
                    (w.uv.is_closing)(h) != 0,
                    (w.uv.has_ref)(h) != 0,
                )
            };
            let Some(kind) = uv::handle_type(t) else {
                return;
            };
            let mut fd: c_int = -1;
            // SAFETY: as above; `fd` is a valid out value (uv_fileno fails for handles
            // without a descriptor, leaving it).
            let fd = (unsafe { (w.uv.fileno)(h, &mut fd) } == 0 && fd >= 0).then_some(fd);
            w.seen
                .push((h as usize, kind, active, closing, has_ref, fd));
        }
        let mut w = Walk {
            uv: self.uv,
            seen: Vec::with_capacity(self.known.len() + 8),
        };
        // SAFETY: a live loop, on its thread; `visit` only reads handle state into `w`.
        unsafe { (self.uv.walk)(self.uv_loop, visit, (&mut w as *mut Walk).cast()) };
        for k in self.known.values_mut() {
            k.seen = false;
        }
        let mut counts: PerType<HandleType, TypeCount> = PerType::default();
        let mut list = Vec::with_capacity(w.seen.len());
        let own = self.own.map(|p| p as usize);
        let mut bypassed = false;
        for (h, kind, active, closing, has_ref, fd) in w.seen {
            counts[kind].total += 1;
            counts[kind].active += u64::from(active);
            let registered = crate::intercept::registered(h as Ptr);
            bypassed |= active && registered.is_none() && !own.contains(&h) && started_by_us(kind);
            let k = self.known.entry(h).or_insert_with(|| match registered {
                Some((id, first_seen_ns, _)) => Known {
                    id,
                    first_seen_ns,
                    seen: true,
                },
                None => Known {
                    id: HandleId::allocate(),
                    first_seen_ns: now,
                    seen: true,
                },
            });
            k.seen = true;
            let mine = own.contains(&h);
            let label = mine.then(|| Arc::<str>::from("loopd agent probe"));
            list.push(HandleInfo {
                id: k.id,
                kind,
                label,
                site: match (mine, registered.and_then(|(_, _, site)| site)) {
                    (true, _) => Site::Symbol(Arc::from("loopd-agent")),
                    (false, Some(addr)) => Site::Symbol(sites::symbol(addr)),
                    // Started before the agent was preloaded, or never through an
                    // interposed call (the attach call without preloading).
                    (false, None) => Site::Symbol(Arc::from("?")),
                },
                created_ns: k.first_seen_ns,
                active,
                has_ref,
                closing,
                fd,
                bytes_read: 0,
                bytes_written: 0,
                last_activity_ns: 0,
            });
        }
        self.known.retain(|_, k| k.seen);
        if bypassed && self.attributed {
            self.stop_attributing();
        }
        self.counts = counts;
        self.handle_list = Arc::new(list);
        self.request_list = Arc::new(crate::intercept::requests_of(self.uv_loop));
        self.lists_at_ns = now;
    }

    /// An active handle of a type only our interposed calls start, unknown to them: the
    /// program's libuv calls do not reach the agent for this loop (a library bound to its own
    /// libuv, calls through pointers from `dlsym` on libuv's handle, `-Bsymbolic`), although
    /// `uv_timer_start` resolves to ours. Callbacks would never be attributed, so the loop is
    /// measured as with the attach call: the check handle brackets the poll, and the stretch
    /// outside it is the "not attributed" entry a stall is seen in.
    fn stop_attributing(&mut self) {
        let check = self.own[1];
        // SAFETY: our initialized check handle, on this loop; the callback is ours.
        if unsafe { (self.uv.check_start)(check, on_check) } != 0 {
            return;
        }
        self.attributed = false;
        self.poll_first_ns = None;
        self.poll_callbacks_ns = 0;
        tracing::warn!(
            "loopd-agent: loop {}: the program's libuv calls do not reach the agent; its callbacks are not attributed (stalls are seen per iteration)",
            self.observer.index()
        );
    }

    /// Builds and publishes the snapshot (loop thread, at most every 100 ms). Never inlined:
    /// its cost follows wall time, and the bench's callgrind count leaves it out by name.
    #[inline(never)]
    fn publish(&mut self, now: u64, idle: u64) {
        self.next_publish_ns = now + PUBLISH_NS;
        let asked = self.observer.take_details_request();
        if asked
            || (self.known.len() <= PERIODIC_LISTS_MAX
                && now.saturating_sub(self.lists_at_ns) >= LISTS_NS)
        {
            self.walk(now);
        }
        let utilization = self.windows.advance(now, idle);
        let snapshot = LoopSnapshot {
            as_of_ns: now,
            as_of_wall_ms: wall_ms(now),
            started_ns: self.started_ns,
            iterations: self.iterations,
            events: self.events,
            events_waiting: self.events_waiting,
            idle_ns_total: idle,
            utilization,
            phases: Phase::ALL
                .iter()
                .map(|p| PhaseSnapshot {
                    phase: *p,
                    callbacks: self.phase_callbacks[p.index()],
                    duration: self.phase_ns[p.index()].clone(),
                })
                .collect(),
            lag: self.lag.clone(),
            lag_recent_ns: self.windows.lag_recent(),
            handles: self.counts.clone(),
            requests_active: self.requests_active.clone(),
            requests_started: self.requests_started.clone(),
            request_duration: self.request_duration.clone(),
            handle_list: self.handle_list.clone(),
            request_list: self.request_list.clone(),
            lists_as_of_ns: self.lists_at_ns,
            ..LoopSnapshot::new(self.observer.index(), now)
        };
        self.observer.publish(snapshot);
        self.recorder.flush(self.observer.recorder());
    }
}
