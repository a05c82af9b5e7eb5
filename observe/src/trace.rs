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
            pos: Pos::Start,
        }
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
                None => Pos::End,
                Some(r) => {
                    self.w.stall(r, self.now);
                    Pos::Stalls(i + 1)
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
