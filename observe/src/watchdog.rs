//! The stall watchdog: sees a callback that runs too long *while it still runs*.
//!
//! The `loopd-watchdog` thread reads every loop's current-callback slot every
//! [`POLL_INTERVAL`]. When the same callback invocation (same `dispatch` number) has run past
//! the stall threshold, it opens a stall in the book — attribution (loop, phase, handle or
//! request, type, label) and start time — and samples the loop thread's stack with a signal
//! (`sys::sample_stack`: raw instruction pointers taken in the handler). When
//! the slot shows another invocation (or none), the stall closes with its duration.
//!
//! The `loopd-stalls` thread does the slow parts in order: symbolizes each sample
//! (`backtrace::resolve`, with inlined frames), attaches the stack to the stall, pushes
//! `opened`/`closed` events to subscribers and logs each closed stall at WARN with its top
//! frames. Detection therefore never waits for symbolization: the stall is visible in
//! `status`, `stalls` and the metrics within threshold + one poll interval (+ the sample, well
//! under a millisecond).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use proto::{Frame, StallEventKind};

use super::{ObserveError, Shared};
use crate::sys::{sample_stack, StackSample};
use loopd_engine::instrument::clock::now_ns;

pub use crate::sys::{sample_signal, set_sample_signal};

/// How often the watchdog reads the current-callback slots.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How often it records snapshots for rates.
const RATE_INTERVAL_NS: u64 = 100_000_000;
/// How long a stack sample may take before it is given up.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(200);
/// Frames named in the WARN line of a closed stall.
const LOGGED_FRAMES: usize = 8;

enum Report {
    Opened {
        id: u64,
        sample: Result<StackSample, String>,
    },
    Closed {
        id: u64,
    },
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
    while !stop.load(Ordering::Relaxed) {
        let now = now_ns();
        if now >= next_rates {
            next_rates = now + RATE_INTERVAL_NS;
            for lp in &shared.loops {
                shared.rates.observe(&lp.snapshot());
            }
        }
        let threshold_ns = shared.stall_threshold_ns.load(Ordering::Relaxed);
        for lp in &shared.loops {
            let index = lp.index();
            let cur = lp.current();
            if let Some(open) = shared.stalls.open_dispatch(index) {
                match &cur {
                    Some(c) if c.dispatch == open => continue,
                    _ => {
                        // The stalled callback returned: at the latest when the next one
                        // started, else when we looked.
                        let end = cur.as_ref().map_or(now, |c| c.started_ns.min(now));
                        if let Some(stall) = shared.stalls.close(index, end) {
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
            let id = shared
                .stalls
                .open(index, &cur, threshold_ns.div_ceil(1_000_000));
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
            let sample = match lp.thread() {
                Some(thread) => sample_stack(thread, SAMPLE_TIMEOUT).map_err(|e| e.to_string()),
                None => Err("the loop thread is unknown".to_string()),
            };
            let _ = tx.send(Report::Opened { id, sample });
        }
        std::thread::park_timeout(POLL_INTERVAL);
    }
}

fn report(shared: &Shared, rx: Receiver<Report>) {
    for r in rx {
        match r {
            Report::Opened { id, sample } => {
                let (stack, error) = match sample {
                    Ok(s) => {
                        let frames = symbolize(&s);
                        let error = frames
                            .is_empty()
                            .then(|| "the stack sample has no frames".to_string());
                        (frames, error)
                    }
                    Err(e) => (Vec::new(), Some(e)),
                };
                if let Some(stall) = shared.stalls.set_stack(id, stack, error, now_ns()) {
                    shared.stalls.emit(StallEventKind::Opened, stall);
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
    let mut out = Vec::with_capacity(sample.frames.len());
    for (i, &ip) in sample.frames.iter().enumerate() {
        // `resolve` looks up `addr - 1` (return addresses point after the call); the first
        // frame of an exact sample is the interrupted instruction itself.
        let addr = if i == 0 && sample.exact { ip + 1 } else { ip };
        let before = out.len();
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
        if out.len() == before {
            out.push(Frame {
                function: format!("<unknown {ip:#x}>"),
                file: None,
                line: None,
            });
        }
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
