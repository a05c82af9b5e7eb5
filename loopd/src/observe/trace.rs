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
//! A trace holds up to [`crate::engine::ITERATIONS_KEPT`] iterations (about 100 000 events),
//! so it is written straight to JSON text rather than built as a `serde_json::Value`.

use std::io::Write;

use serde_json::{json, Value};

use super::stalls::StallRecord;
use super::Shared;
use crate::engine::clock::{now_ns, wall_ms};
use crate::engine::{IterationRecord, Phase, SlowCallback, Target};

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
            Target::Handle(_, h) => ("handle_id", h.0),
            Target::Request(_, r) => ("request_id", r.0),
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

/// The trace of the last `last_ms` milliseconds (everything recorded when `None`), as JSON
/// text: `{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`.
pub(crate) fn trace(shared: &Shared, last_ms: Option<u64>) -> Vec<u8> {
    let now = now_ns();
    let since = last_ms.map_or(0, |ms| now.saturating_sub(ms.saturating_mul(1_000_000)));
    let pid = std::process::id();
    let mut w = TraceWriter {
        out: Vec::with_capacity(64 * 1024),
        pid,
        first: true,
    };
    w.out.extend_from_slice(b"{\"traceEvents\":[");
    w.value(&json!({
        "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
        "args": {"name": format!("loopd {pid}")}
    }));
    for lp in &shared.loops {
        let tid = lp.index();
        w.value(&json!({
            "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
            "args": {"name": format!("loop {tid}")}
        }));
        w.value(&json!({
            "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
            "args": {"sort_index": tid}
        }));
        for it in lp.recorder().iterations_since(since) {
            w.iteration(tid, &it);
        }
        for s in lp.recorder().slow_callbacks_since(since) {
            w.slow_callback(tid, &s);
        }
    }
    for r in shared.stalls.records_since(since) {
        w.stall(&r, now);
    }
    w.out
        .extend_from_slice(b"],\"displayTimeUnit\":\"ms\",\"otherData\":");
    let _ = serde_json::to_writer(
        &mut w.out,
        &json!({
            "server_version": super::convert::SERVER_VERSION,
            "pid": pid,
            "as_of_ms": wall_ms(now),
            "clock": "ts is microseconds since the daemon's monotonic clock epoch",
            "epoch_unix_ms": wall_ms(0),
        }),
    );
    w.out.push(b'}');
    w.out
}
