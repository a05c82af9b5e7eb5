//! The stall watchdog: sees a callback that runs too long *while it still runs*, and
//! profiles it until it returns.
//!
//! The `loopd-watchdog` thread reads every loop's current-callback slot every
//! [`POLL_INTERVAL`]. When the same callback invocation (same `dispatch` number) has run past
//! the stall threshold, it opens a stall in the book — attribution (loop, phase, handle or
//! request, type, label) and start time — and samples the loop thread's stack with a signal
//! (`sys::sample_stack`: raw instruction pointers taken in the handler), then again every
//! `stall_sample_interval_ms` while the slot still shows that invocation. A sample is kept
//! only if the slot still shows it afterwards, so no sample is from after the stall. Past
//! [`MAX_STALL_SAMPLES`] samples the loop is no longer signalled; each interval is counted as
//! a dropped sample. When the slot shows another invocation (or none), the stall closes with
//! its duration; once the loop's flight recorder holds the stall's iteration, the window
//! around it (2 s before to its end) is copied out and kept with the stall.
//!
//! The `loopd-stalls` thread does the slow parts in order: symbolizes each sample
//! (`backtrace::resolve`, with inlined frames, through a cache by address, so repeated frames
//! cost a lookup), adds it to the stall's profile, pushes `opened`/`closed` events to
//! subscribers and logs each closed stall at WARN with its top frames and hottest frame.
//! Detection therefore never waits for symbolization: the stall is visible in `status`,
//! `stalls` and the metrics within threshold + one poll interval (+ the sample, well under a
//! millisecond).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use proto::methods::MAX_STALL_SAMPLES;
use proto::{Frame, StallEventKind};

use super::{ObserveError, Shared};
use crate::stalls::{StallWindow, WINDOW_BEFORE_NS, WINDOW_ITERATIONS_MAX};
use loopd_engine::instrument::clock::now_ns;
use loopd_engine::instrument::LoopObserver;

pub use crate::sys::{sample_signal, sample_stack, set_sample_signal, SampleError, StackSample};

/// How often the watchdog reads the current-callback slots.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How often it records snapshots for rates.
const RATE_INTERVAL_NS: u64 = 100_000_000;
/// How long a stack sample may take before it is given up.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(200);
/// Frames named in the WARN line of a closed stall.
const LOGGED_FRAMES: usize = 8;
/// How long after a stall closed its window is copied even if the loop recorded no later
/// iteration (a loop that stalled again, or stopped).
const WINDOW_WAIT_NS: u64 = 2_000_000_000;
/// Symbolized addresses kept; the cache starts over past this (a bound, not a tuning).
const SYMBOL_CACHE_MAX: usize = 65_536;

enum Report {
    Sample {
        id: u64,
        at_ns: u64,
        sample: Result<StackSample, String>,
    },
    Closed {
        id: u64,
    },
}

/// The sampling of the stall open on one loop.
struct Sampling {
    id: u64,
    dispatch: u64,
    next_ns: u64,
    /// Samples sent to the reporter (the bound is checked against these).
    sent: u64,
}

/// A closed stall whose window is copied once its iteration was recorded.
struct PendingWindow {
    id: u64,
    loop_at: usize,
    from_ns: u64,
    end_ns: u64,
    give_up_ns: u64,
}
/// The watchdog and reporter threads.
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(shared: Arc<Shared>) -> Result<Watchdog, ObserveError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let reporter_shared = shared.clone();
        let reporter = std::thread::Builder::new()
            .name("loopd-stalls".into())
            .spawn(move || report(&reporter_shared, rx))
            .map_err(|source| ObserveError::Thread {
                name: "loopd-stalls",
                source,
            })?;
        let s = stop.clone();
        let watchdog = std::thread::Builder::new()
            .name("loopd-watchdog".into())
            .spawn(move || watch(&shared, &s, tx))
            .map_err(|source| ObserveError::Thread {
                name: "loopd-watchdog",
                source,
            })?;
        Ok(Watchdog {
            stop,
            watchdog: Some(watchdog),
            reporter: Some(reporter),
        })
    }

    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watchdog.take() {
            w.thread().unpark();
            let _ = w.join();
        }
        // The watchdog dropped its sender: the reporter drains and ends.
        if let Some(r) = self.reporter.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn watch(shared: &Shared, stop: &AtomicBool, tx: Sender<Report>) {
    let mut next_rates = 0u64;
    let mut sampling: HashMap<usize, Sampling> = HashMap::new();
    let mut windows: Vec<PendingWindow> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = now_ns();
        if now >= next_rates {
            next_rates = now + RATE_INTERVAL_NS;
            for lp in &shared.loops {
                shared.rates.observe(&lp.snapshot());
            }
        }
        let threshold_ns = shared.stall_threshold_ns.load(Ordering::Relaxed);
        let interval_ns = shared.stall_sample_interval_ns.load(Ordering::Relaxed);
        for (at, lp) in shared.loops.iter().enumerate() {
            let index = lp.index();
            let cur = lp.current();
            if let Some(open) = shared.stalls.open_dispatch(index) {
                match &cur {
                    Some(c) if c.dispatch == open => {
                        if let Some(s) = sampling.get_mut(&index) {
                            if now >= s.next_ns {
                                s.next_ns = now + interval_ns;
                                sample_again(shared, lp, s, &tx);
                            }
                        }
                        continue;
                    }
                    _ => {
                        // The stalled callback returned: at the latest when the next one
                        // started, else when we looked.
                        let end = cur.as_ref().map_or(now, |c| c.started_ns.min(now));
                        sampling.remove(&index);
                        if let Some(stall) = shared.stalls.close(index, end) {
                            let started = end.saturating_sub((stall.duration_seconds * 1e9) as u64);
                            windows.push(PendingWindow {
                                id: stall.id,
                                loop_at: at,
                                from_ns: started.saturating_sub(WINDOW_BEFORE_NS),
                                end_ns: end,
                                give_up_ns: now + WINDOW_WAIT_NS,
                            });
                            let _ = tx.send(Report::Closed { id: stall.id });
                        }
                    }
                }
            }
            let Some(cur) = cur else { continue };
            let ran = now.saturating_sub(cur.started_ns);
            if ran < threshold_ns {
                continue;
            }
            let id = shared.stalls.open(
                index,
                &cur,
                threshold_ns.div_ceil(1_000_000),
                interval_ns / 1_000_000,
            );
            let latency = ran - threshold_ns;
            shared.last_detection_ns.store(latency, Ordering::Relaxed);
            tracing::warn!(
                loop_index = index,
                stall_id = id,
                phase = %cur.phase,
                target = %cur.target,
                label = cur.label.as_deref().unwrap_or(""),
                running_ms = ran / 1_000_000,
                threshold_ms = threshold_ns / 1_000_000,
                detection_latency_ms = latency as f64 / 1e6,
                "loop stalled: a callback is running past the stall threshold"
            );
            // The first sample is kept whatever follows: it is the stall's stack, which
            // shows the blocking callback even if it returns right after.
            let at_ns = now_ns();
            let sample = take_sample(lp);
            let _ = tx.send(Report::Sample { id, at_ns, sample });
            sampling.insert(
                index,
                Sampling {
                    id,
                    dispatch: cur.dispatch,
                    next_ns: now + interval_ns,
                    sent: 1,
                },
            );
        }
        windows.retain(|w| !capture_window(shared, w, now));
        let next_sample = sampling.values().map(|s| s.next_ns).min();
        let wait = next_sample.map_or(POLL_INTERVAL, |t| {
            Duration::from_nanos(t.saturating_sub(now_ns())).min(POLL_INTERVAL)
        });
        std::thread::park_timeout(wait);
    }
}

fn take_sample(lp: &LoopObserver) -> Result<StackSample, String> {
    match lp.thread() {
        Some(thread) => sample_stack(thread, SAMPLE_TIMEOUT).map_err(|e| e.to_string()),
        None => Err("the loop thread is unknown".to_string()),
    }
}

/// One more sample of the stall `s`, kept only if the loop is still in that callback after
/// it; past the bound, only counted.
fn sample_again(shared: &Shared, lp: &LoopObserver, s: &mut Sampling, tx: &Sender<Report>) {
    if s.sent >= MAX_STALL_SAMPLES || !shared.stalls.wants_samples(s.id) {
        shared.stalls.drop_sample(s.id);
        return;
    }
    let at_ns = now_ns();
    let sample = take_sample(lp);
    let still = lp.current().is_some_and(|c| c.dispatch == s.dispatch);
    if !still {
        // The callback returned meanwhile: the sample may show the loop elsewhere.
        return;
    }
    match sample {
        Ok(sample) => {
            s.sent += 1;
            let _ = tx.send(Report::Sample {
                id: s.id,
                at_ns,
                sample: Ok(sample),
            });
        }
        Err(e) => {
            tracing::debug!(stall_id = s.id, error = %e, "stall sample failed");
            shared.stalls.drop_sample(s.id);
        }
    }
}

/// Copies the window of a closed stall once its loop recorded an iteration that ended after
/// the stall (or gave up waiting); true when done.
fn capture_window(shared: &Shared, w: &PendingWindow, now: u64) -> bool {
    let Some(lp) = shared.loops.get(w.loop_at) else {
        return true;
    };
    let retained = lp.recorder().retained_iterations();
    let last_end = (0..)
        .map_while(|i| retained.chunk(i))
        .filter_map(|c| c.last())
        .map(|r| r.end_ns)
        .max()
        .unwrap_or(0);
    if last_end < w.end_ns && now < w.give_up_ns {
        return false;
    }
    let mut iterations: Vec<_> = (0..)
        .map_while(|i| retained.chunk(i))
        .flat_map(|c| c.iter())
        .filter(|r| r.end_ns >= w.from_ns && r.start_ns <= w.end_ns)
        .copied()
        .collect();
    let iterations_cut = iterations.len().saturating_sub(WINDOW_ITERATIONS_MAX);
    iterations.drain(..iterations_cut);
    let slow = lp
        .recorder()
        .slow_callbacks_since(w.from_ns)
        .into_iter()
        .filter(|s| s.start_ns <= w.end_ns)
        .collect();
    shared.stalls.set_window(
        w.id,
        StallWindow {
            from_ns: w.from_ns,
            iterations,
            iterations_cut,
            slow,
        },
    );
    true
}

/// Symbolized frames by address (and whether it is an exact first frame).
pub type SymbolCache = HashMap<(usize, bool), Vec<Frame>>;

fn report(shared: &Shared, rx: Receiver<Report>) {
    let mut cache = SymbolCache::new();
    for r in rx {
        match r {
            Report::Sample { id, at_ns, sample } => {
                let (stack, error) = match sample {
                    Ok(s) => {
                        if cache.len() > SYMBOL_CACHE_MAX {
                            cache.clear();
                        }
                        let frames = symbolize_cached(&s, &mut cache);
                        let error = frames
                            .is_empty()
                            .then(|| "the stack sample has no frames".to_string());
                        (frames, error)
                    }
                    Err(e) => (Vec::new(), Some(e)),
                };
                if let Some(added) = shared.stalls.add_sample(id, at_ns, stack, error, now_ns()) {
                    if added.first {
                        shared.stalls.emit(StallEventKind::Opened, added.stall);
                    }
                }
            }
            Report::Closed { id } => {
                let Some(stall) = shared.stalls.get(id, now_ns()) else {
                    continue;
                };
                let top = stall
                    .stack
                    .iter()
                    .take(LOGGED_FRAMES)
                    .map(describe_frame)
                    .collect::<Vec<_>>()
                    .join(" <- ");
                tracing::warn!(
                    loop_index = stall.loop_index,
                    stall_id = stall.id,
                    phase = %stall.phase,
                    target_type = %stall.target_type,
                    handle_id = ?stall.handle_id,
                    request_id = ?stall.request_id,
                    label = stall.label.as_deref().unwrap_or(""),
                    duration_ms = stall.duration_seconds * 1e3,
                    threshold_ms = stall.threshold_ms,
                    samples = stall.samples,
                    samples_dropped = stall.samples_dropped,
                    hot_frame = stall.hot_frame.as_deref().unwrap_or(""),
                    stack = %top,
                    stack_error = stall.stack_error.as_deref().unwrap_or(""),
                    "loop stall ended"
                );
                shared.stalls.emit(StallEventKind::Closed, stall);
            }
        }
    }
}

fn describe_frame(f: &Frame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let short = file.rsplit('/').next().unwrap_or(file);
            format!("{} ({short}:{line})", f.function)
        }
        _ => f.function.clone(),
    }
}

/// Names of the frames that belong to the sampling itself, cut when the handler could not
/// find the interrupted frame.
fn is_sampler_frame(function: &str) -> bool {
    function.starts_with("backtrace::")
        || function.contains("stack_sample::")
        || function.contains("__restore_rt")
        || function.contains("_Unwind_Backtrace")
}

/// Frames of the plumbing between a loop and the callback it runs — Rust's `catch_unwind`
/// machinery and the agent's trampolines — that say nothing about what blocks: left out of
/// stacks (unless innermost: then they are what runs).
fn is_plumbing_frame(function: &str) -> bool {
    const PLUMBING: [&str; 7] = [
        "loopd_agent::intercept::",
        "loopd_agent::pool::",
        "std::panicking::",
        "std::panic::catch_unwind",
        "core::ops::function::FnOnce::call_once",
        "<core::panic::unwind_safe::AssertUnwindSafe",
        "__rust_try",
    ];
    PLUMBING.iter().any(|p| function.starts_with(p))
}

/// Resolves raw instruction pointers to functions, files and lines, innermost first; an
/// address with inlined calls yields one frame per inlined function.
pub fn symbolize(sample: &StackSample) -> Vec<Frame> {
    symbolize_cached(sample, &mut SymbolCache::new())
}

/// The frames at one address (one per inlined function).
fn resolve(ip: usize, exact_first: bool) -> Vec<Frame> {
    // `resolve` looks up `addr - 1` (return addresses point after the call); the first
    // frame of an exact sample is the interrupted instruction itself.
    let addr = if exact_first { ip + 1 } else { ip };
    let mut out = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |sym| {
        out.push(Frame {
            function: sym
                .name()
                .map(|n| format!("{n:#}"))
                .unwrap_or_else(|| format!("<unknown {ip:#x}>")),
            file: sym.filename().map(|p| p.display().to_string()),
            line: sym.lineno(),
        });
    });
    if out.is_empty() {
        out.push(Frame {
            function: crate::sys::loader_symbol(ip).unwrap_or_else(|| format!("<unknown {ip:#x}>")),
            file: None,
            line: None,
        });
    }
    out
}

/// [`symbolize`] with resolved addresses looked up in (and added to) `cache`.
pub fn symbolize_cached(sample: &StackSample, cache: &mut SymbolCache) -> Vec<Frame> {
    let mut out = Vec::with_capacity(sample.frames.len());
    for (i, &ip) in sample.frames.iter().enumerate() {
        if ip == 0 {
            // The unwinder's end-of-stack marker, not a frame.
            continue;
        }
        let key = (ip, i == 0 && sample.exact);
        let frames = cache.entry(key).or_insert_with(|| resolve(key.0, key.1));
        out.extend(frames.iter().cloned());
    }
    if !sample.exact {
        if let Some(last) = out.iter().rposition(|f| is_sampler_frame(&f.function)) {
            out.drain(..=last);
        }
    }
    let mut i = 0;
    out.retain(|f| {
        i += 1;
        i == 1 || !is_plumbing_frame(&f.function)
    });
    out
}
