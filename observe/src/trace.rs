//! The flight recorder as Chrome Trace Event JSON (opens in Perfetto and `chrome://tracing`).
//!
//! One track (`tid` = the loop index) per loop. Each recorded iteration is an `iteration`
//! slice holding one slice per phase, named after the phase (`timers`, `pending`, `idle`,
//! `prepare`, `poll`, `check`, `close`; a phase that ran no callback is a zero-length slice
//! where it would have run, so every iteration shows the whole phase diagram), and a
//! `poll wait` slice for the time blocked in the poll. Slow callbacks (≥ 1 ms) are slices
//! inside their phase, named after their handle or request, with the attribution in `args`;
//! stalls are `stall` slices with the sampled stack's top frames. Times are microseconds on
//! the daemon's monotonic clock (`otherData.epoch_unix_ms` maps them to wall time).
//!
//! A trace holds up to [`loopd_engine::instrument::ITERATIONS_KEPT`] iterations per loop (about 100 000
//! events, megabytes of text), so it is written straight to JSON text rather than built as a
//! `serde_json::Value`, and a piece at a time ([`TraceStream`]) as the client reads it.

use std::io::Write;

use serde_json::{json, Value};

use super::stalls::StallRecord;
use super::Shared;
use loopd_engine::instrument::clock::{now_ns, wall_ms};
use loopd_engine::instrument::{IterationRecord, RetainedIterations, SlowCallback};
use loopd_engine::{Phase, Target};

/// Stack frames named in a stall slice's args.
const STALL_FRAMES: usize = 16;

struct TraceWriter {
    out: Vec<u8>,
    pid: u32,
    first: bool,
}

impl TraceWriter {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// A complete ("X") slice; `name` and `cat` must need no JSON escaping.
    fn slice(&mut self, name: &str, cat: &str, tid: usize, start_ns: u64, dur_ns: u64) {
        self.sep();
        let _ = write!(
            self.out,
            "{{\"name\":\"{name}\",\"cat\":\"{cat}\",\"ph\":\"X\",\"ts\":{}.{:03},\"dur\":{}.{:03},\"pid\":{},\"tid\":{tid}}}",
            start_ns / 1000,
            start_ns % 1000,
            dur_ns / 1000,
            dur_ns % 1000,
            self.pid,
        );
    }

    /// Any event, as a JSON value (for the few events with free-form names and args).
    fn value(&mut self, v: &Value) {
        self.sep();
        let _ = serde_json::to_writer(&mut self.out, v);
    }

    fn x_value(
        &self,
        name: String,
        cat: &str,
        tid: usize,
        start_ns: u64,
        dur_ns: u64,
        args: Value,
    ) -> Value {
        json!({
            "name": name,
            "cat": cat,
            "ph": "X",
            "ts": start_ns as f64 / 1e3,
            "dur": dur_ns as f64 / 1e3,
            "pid": self.pid,
            "tid": tid,
            "args": args,
        })
    }

    fn iteration(&mut self, tid: usize, it: &IterationRecord) {
        self.slice(
            "iteration",
            "loop",
            tid,
            it.start_ns,
            it.end_ns.saturating_sub(it.start_ns),
        );
        let mut cursor = it.start_ns;
        for phase in Phase::ALL {
            let (start, dur) = it.phases[phase.index()];
            if phase == Phase::Poll && it.idle_ns > 0 {
                let wait_start = if start != 0 {
                    start.saturating_sub(it.idle_ns)
                } else {
                    cursor
                };
                self.slice("poll wait", "idle", tid, wait_start, it.idle_ns);
                cursor = cursor.max(wait_start + it.idle_ns);
            }
            let (start, dur) = if start == 0 && dur == 0 {
                (cursor, 0)
            } else {
                (start, dur)
            };
            self.slice(phase.as_str(), "phase", tid, start, dur);
            cursor = cursor.max(start + dur);
        }
    }

    fn slow_callback(&mut self, tid: usize, s: &SlowCallback) {
        let (id_key, id) = match s.target {
            Target::Handle(_, h) => ("handle_id", h.get()),
            Target::Request(_, r) => ("request_id", r.get()),
        };
        let name = match &s.label {
            Some(l) => format!("{} {id} ({l})", s.target.type_name()),
            None => format!("{} {id}", s.target.type_name()),
        };
        let mut args = json!({
            "phase": s.phase.as_str(),
            "type": s.target.type_name(),
            "label": s.label.as_deref(),
            "duration_ms": s.duration_ns as f64 / 1e6,
        });
        args[id_key] = Value::from(id);
        let v = self.x_value(name, "slow_callback", tid, s.start_ns, s.duration_ns, args);
        self.value(&v);
    }

    fn stall(&mut self, r: &StallRecord, now: u64) {
        let s = &r.stall;
        let dur = if s.in_progress {
            now.saturating_sub(r.started_ns)
        } else {
            (s.duration_seconds * 1e9) as u64
        };
        let stack: Vec<String> = s
            .stack
            .iter()
            .take(STALL_FRAMES)
            .map(|f| match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
                _ => f.function.clone(),
            })
            .collect();
        let args = json!({
            "id": s.id,
            "phase": s.phase.as_str(),
            "type": s.target_type,
            "handle_id": s.handle_id,
            "request_id": s.request_id,
            "label": s.label,
            "threshold_ms": s.threshold_ms,
            "in_progress": s.in_progress,
            "stack": stack,
            "stack_error": s.stack_error,
        });
        let v = self.x_value(
            format!("stall {}", s.id),
            "stall",
            s.loop_index as usize,
            r.started_ns,
            dur,
            args,
        );
        self.value(&v);
    }
}

/// One loop's records, as they were when the trace was asked for.
struct LoopRecords {
    tid: usize,
    iterations: RetainedIterations,
    slow: Vec<SlowCallback>,
}

/// Where a [`TraceStream`] is.
#[derive(Clone, Copy, Debug)]
enum Pos {
    Start,
    /// Loop `.0`'s metadata events (or, past the last loop, on to the stalls).
    LoopStart(usize),
    Iterations {
        lp: usize,
        chunk: usize,
        at: usize,
    },
    Slow {
        lp: usize,
        at: usize,
    },
    Stalls(usize),
    Samples(usize),
    End,
    Done,
}

/// The trace of the last `last_ms` milliseconds (everything recorded when `None`) as JSON
/// text, `{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}` between a
/// prefix and a suffix (the JSON-RPC envelope), written piece by piece as the reader takes
/// it: a trace is megabytes, and a client that does not read must not make loopd hold it.
///
/// It shows the records of the moment it was created: the recorder's iteration chunks are
/// shared, not copied; slow callbacks and stalls (short rings) are copied.
pub(crate) struct TraceStream {
    w: TraceWriter,
    now: u64,
    since: u64,
    prefix: Vec<u8>,
    suffix: &'static [u8],
    loops: Vec<LoopRecords>,
    stalls: Vec<StallRecord>,
    /// Events after the stalls: a stall trace's sampled stacks.
    samples: Vec<Value>,
    /// A stall trace's window, for `otherData`.
    window: Option<Value>,
    pos: Pos,
}

impl TraceStream {
    pub(crate) fn new(
        shared: &Shared,
        last_ms: Option<u64>,
        prefix: Vec<u8>,
        suffix: &'static [u8],
    ) -> TraceStream {
        let now = now_ns();
        let since = last_ms.map_or(0, |ms| now.saturating_sub(ms.saturating_mul(1_000_000)));
        let loops = shared
            .loops
            .iter()
            .map(|lp| LoopRecords {
                tid: lp.index(),
                iterations: lp.recorder().retained_iterations(),
                slow: lp.recorder().slow_callbacks_since(since),
            })
            .collect();
        TraceStream {
            w: TraceWriter {
                out: Vec::new(),
                pid: std::process::id(),
                first: true,
            },
            now,
            since,
            prefix,
            suffix,
            loops,
            stalls: shared.stalls.records_since(since),
            samples: Vec::new(),
            window: None,
            pos: Pos::Start,
        }
    }

    /// The trace of stall `id`'s flight-recorder window: its loop's iterations and slow
    /// callbacks from 2 s before it opened to its end, the stall, and its samples as nested
    /// slices on the loop's track (a flame chart in time order). `None` when no window is
    /// kept for it.
    pub(crate) fn for_stall(
        shared: &Shared,
        id: u64,
        prefix: Vec<u8>,
        suffix: &'static [u8],
    ) -> Option<TraceStream> {
        let view = shared.stalls.window(id)?;
        let tid = view.record.stall.loop_index as usize;
        let pid = std::process::id();
        let samples = view
            .profile
            .as_ref()
            .map(|p| sample_slices(p, &view.record, pid))
            .unwrap_or_default();
        Some(TraceStream {
            w: TraceWriter {
                out: Vec::new(),
                pid,
                first: true,
            },
            now: now_ns(),
            since: view.window.from_ns,
            prefix,
            suffix,
            loops: vec![LoopRecords {
                tid,
                iterations: view.window.iterations.clone().into(),
                slow: view.window.slow.clone(),
            }],
            window: Some(json!({
                "stall": id,
                "from_unix_ms": wall_ms(view.window.from_ns),
                "iterations": view.window.iterations.len(),
                "iterations_cut": view.window.iterations_cut,
                "samples": view.profile.as_ref().map_or(0, |p| p.samples.len()),
            })),
            stalls: vec![view.record],
            samples,
            pos: Pos::Start,
        })
    }

    /// Appends at least `want` bytes of the trace to `out` (less at the end); true once the
    /// whole trace, suffix included, has been written.
    pub(crate) fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool {
        std::mem::swap(&mut self.w.out, out);
        let stop = self.w.out.len().saturating_add(want);
        while self.w.out.len() < stop && !matches!(self.pos, Pos::Done) {
            self.pos = self.step();
        }
        std::mem::swap(&mut self.w.out, out);
        matches!(self.pos, Pos::Done)
    }

    /// Writes what is at the current position; returns the next one.
    fn step(&mut self) -> Pos {
        let pid = self.w.pid;
        match self.pos {
            Pos::Start => {
                self.w.out.extend_from_slice(&self.prefix);
                self.w.out.extend_from_slice(b"{\"traceEvents\":[");
                self.w.value(&json!({
                    "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                    "args": {"name": format!("loopd {pid}")}
                }));
                Pos::LoopStart(0)
            }
            Pos::LoopStart(lp) => {
                let Some(l) = self.loops.get(lp) else {
                    return Pos::Stalls(0);
                };
                let tid = l.tid;
                self.w.value(&json!({
                    "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                    "args": {"name": format!("loop {tid}")}
                }));
                self.w.value(&json!({
                    "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                    "args": {"sort_index": tid}
                }));
                Pos::Iterations {
                    lp,
                    chunk: 0,
                    at: 0,
                }
            }
            Pos::Iterations { lp, chunk, at } => {
                let l = &self.loops[lp];
                match l.iterations.chunk(chunk) {
                    None => Pos::Slow { lp, at: 0 },
                    Some(c) => match c.get(at) {
                        None => Pos::Iterations {
                            lp,
                            chunk: chunk + 1,
                            at: 0,
                        },
                        Some(it) => {
                            if it.end_ns >= self.since {
                                self.w.iteration(l.tid, it);
                            }
                            Pos::Iterations {
                                lp,
                                chunk,
                                at: at + 1,
                            }
                        }
                    },
                }
            }
            Pos::Slow { lp, at } => {
                let l = &self.loops[lp];
                match l.slow.get(at) {
                    None => Pos::LoopStart(lp + 1),
                    Some(s) => {
                        self.w.slow_callback(l.tid, s);
                        Pos::Slow { lp, at: at + 1 }
                    }
                }
            }
            Pos::Stalls(i) => match self.stalls.get(i) {
                None => Pos::Samples(0),
                Some(r) => {
                    self.w.stall(r, self.now);
                    Pos::Stalls(i + 1)
                }
            },
            Pos::Samples(i) => match self.samples.get(i) {
                None => Pos::End,
                Some(v) => {
                    self.w.sep();
                    let _ = serde_json::to_writer(&mut self.w.out, v);
                    Pos::Samples(i + 1)
                }
            },
            Pos::End => {
                self.w
                    .out
                    .extend_from_slice(b"],\"displayTimeUnit\":\"ms\",\"otherData\":");
                let _ = serde_json::to_writer(
                    &mut self.w.out,
                    &json!({
                        "server_version": super::convert::SERVER_VERSION,
                        "pid": pid,
                        "as_of_ms": wall_ms(self.now),
                        "clock": "ts is microseconds since the daemon's monotonic clock epoch",
                        "epoch_unix_ms": wall_ms(0),
                        "stall_window": self.window,
                    }),
                );
                self.w.out.push(b'}');
                self.w.out.extend_from_slice(self.suffix);
                Pos::Done
            }
            Pos::Done => Pos::Done,
        }
    }
}

/// A stall's samples as nested slices on its loop's track: each sample's stack holds from
/// when it was taken to the next sample (the last one: one interval, within the stall);
/// consecutive samples sharing frames from the root share those frames' slices.
fn sample_slices(profile: &proto::StallProfile, stall: &StallRecord, pid: u32) -> Vec<Value> {
    let tid = stall.stall.loop_index as usize;
    let stall_end = stall.started_ns + (stall.stall.duration_seconds * 1e9) as u64;
    let at = |us: u64| (stall.started_ns + us * 1_000).min(stall_end);
    let mut out = Vec::new();
    // Open slices, root first: (frame index, start).
    let mut open: Vec<(u32, u64)> = Vec::new();
    let close_from = |open: &mut Vec<(u32, u64)>, depth: usize, end: u64, out: &mut Vec<Value>| {
        while open.len() > depth {
            let Some((frame, start)) = open.pop() else {
                break;
            };
            let f = profile.frames.get(frame as usize);
            out.push(json!({
                "name": f.map_or("?", |f| f.function.as_str()),
                "cat": "sample",
                "ph": "X",
                "ts": start as f64 / 1e3,
                "dur": end.saturating_sub(start) as f64 / 1e3,
                "pid": pid,
                "tid": tid,
                "args": {
                    "file": f.and_then(|f| f.file.as_deref()),
                    "line": f.and_then(|f| f.line),
                    "depth": open.len(),
                },
            }));
        }
    };
    let mut last = stall.started_ns;
    for s in &profile.samples {
        let Some(stack) = profile.stacks.get(s.stack as usize) else {
            continue;
        };
        let t = at(s.at_us);
        let root_first: Vec<u32> = stack.iter().rev().copied().collect();
        let common = open
            .iter()
            .zip(&root_first)
            .take_while(|((f, _), g)| f == *g)
            .count();
        close_from(&mut open, common, t, &mut out);
        open.extend(root_first[common..].iter().map(|&f| (f, t)));
        last = t;
    }
    let end = (last + profile.interval_ms * 1_000_000).min(stall_end);
    close_from(&mut open, 0, end, &mut out);
    out
}
