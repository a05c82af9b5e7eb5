//! Replaying a `loopctl record` file: the reader and the play head.
//!
//! The file is NDJSON, as `loopctl record` writes it (see `loopctl/README.md`):
//!
//! - a header object with a `loopctl_record` key (the format version, 1): `{"loopctl_record": 1,
//!   "started_at_ms": …, "hello": {…}, …}` (every field optional; `hello` is applied at the
//!   start; a newer format version is refused by [`Recording::open`]);
//! - one line per received notification: the JSON-RPC notification as the daemon pushed it plus
//!   `received_at_ms` (receive time, unix ms): `{"received_at_ms": …, "jsonrpc": "2.0",
//!   "method": "status"|"handles"|"stalls"|"dropped"|…, "params": {…}}`.
//!
//! Also accepted: `t_ms` instead of `received_at_ms`; the notification nested under
//! `notification` or `message`; a line without a time (it takes the time of the line before);
//! method results recorded the same way (`requests`, `threadpool`, a `stalls` result — told
//! apart from the `stalls` notification by its shape).
//!
//! Anything else (blank lines, bad JSON, unknown methods, params of the wrong shape) is
//! skipped and counted, with the first reason kept for the status line.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use proto::PROTOCOL_VERSION;
use serde_json::Value;

use super::{Model, Update};

/// The `loopctl_record` format version this reader knows.
pub const FORMAT_VERSION: u64 = 1;

/// One recorded update and when it was received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Receive time, unix ms.
    pub t_ms: u64,
    /// The update.
    pub update: Update,
}

/// Where a stall happened on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallMark {
    /// The stall's id.
    pub id: u64,
    /// First seen in progress, unix ms (receive time).
    pub start_ms: u64,
    /// Last seen in progress or closed, unix ms (receive time).
    pub end_ms: u64,
}

/// A parsed recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    /// The updates, in receive order.
    pub events: Vec<Recorded>,
    /// Lines skipped (blank lines are not counted).
    pub skipped: usize,
    /// Why the first skipped line was skipped, with its line number.
    pub first_skip: Option<String>,
    /// The `loopctl_record` format version of the header, if there was a header.
    pub format_version: Option<u64>,
    /// Start of the timeline, unix ms: the header's `started_at_ms`, else the first event.
    pub start_ms: u64,
    /// End of the timeline, unix ms: the last event.
    pub end_ms: u64,
    /// Stalls on the timeline, by start.
    pub stall_marks: Vec<StallMark>,
    /// For each event, the next event replacing the same snapshot (to skip it when seeking).
    next_same: Vec<Option<usize>>,
}

impl Recording {
    /// Reads a recording file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or holds no usable line at all.
    pub fn open(path: &Path) -> anyhow::Result<Recording> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read recording {}", path.display()))?;
        let rec = Recording::parse(&text);
        if let Some(v) = rec.format_version.filter(|v| *v > FORMAT_VERSION) {
            anyhow::bail!(
                "{} is a loopctl recording of format {v}; this loop-top reads format {FORMAT_VERSION}",
                path.display()
            );
        }
        if rec.events.is_empty() {
            anyhow::bail!(
                "{} holds no recorded notifications ({} line(s) skipped{})",
                path.display(),
                rec.skipped,
                rec.first_skip
                    .as_deref()
                    .map(|s| format!("; first: {s}"))
                    .unwrap_or_default()
            );
        }
        Ok(rec)
    }

    /// Parses the text of a recording, skipping and counting what it does not understand.
    pub fn parse(text: &str) -> Recording {
        let mut rec = Recording::default();
        let mut header_start: Option<u64> = None;
        let mut last_t: Option<u64> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut skip = |why: String| {
                rec.skipped += 1;
                if rec.first_skip.is_none() {
                    rec.first_skip = Some(format!("line {}: {why}", n + 1));
                }
            };
            let obj = match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(o)) => o,
                Ok(_) => {
                    skip("not a JSON object".into());
                    continue;
                }
                Err(e) => {
                    skip(format!("not JSON ({e})"));
                    continue;
                }
            };
            if let Some(v) = obj.get("loopctl_record") {
                rec.format_version = v.as_u64().or(Some(0));
                header_start = obj.get("started_at_ms").and_then(Value::as_u64);
                if let Some(hello) = obj.get("hello") {
                    match Update::from_method("hello", hello.clone()) {
                        Ok(Some(u)) => rec.events.push(Recorded {
                            t_ms: header_start.unwrap_or(0),
                            update: u,
                        }),
                        _ => skip("header `hello` is not a hello".into()),
                    }
                }
                continue;
            }
            let t = ["received_at_ms", "t_ms"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_u64))
                .or(last_t);
            let inner = ["notification", "message"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_object))
                .unwrap_or(&obj);
            let Some(method) = inner.get("method").and_then(Value::as_str) else {
                skip("no `method`".into());
                continue;
            };
            let Some(t) = t.or(header_start) else {
                skip("no `t_ms`".into());
                continue;
            };
            let params = inner
                .get("params")
                .cloned()
                .filter(|p| !p.is_null())
                .unwrap_or_else(|| Value::Object(Default::default()));
            match Update::from_method(method, params) {
                Ok(Some(update)) => {
                    last_t = Some(t);
                    rec.events.push(Recorded { t_ms: t, update });
                }
                Ok(None) => skip(format!("unknown method `{method}`")),
                Err(e) => skip(format!("`{method}` params: {e}")),
            }
        }
        // Receive times only grow, but do not trust that; keep equal times in file order.
        rec.events.sort_by_key(|e| e.t_ms);
        rec.start_ms = header_start
            .or(rec.events.first().map(|e| e.t_ms))
            .unwrap_or(0)
            .min(rec.events.first().map_or(u64::MAX, |e| e.t_ms));
        rec.end_ms = rec.events.last().map_or(rec.start_ms, |e| e.t_ms);
        rec.index();
        rec
    }

    fn index(&mut self) {
        let mut next_same = vec![None; self.events.len()];
        let mut later = BTreeMap::new();
        for (i, e) in self.events.iter().enumerate().rev() {
            if let Some(kind) = e.update.snapshot_kind() {
                next_same[i] = later.insert(kind, i);
            }
        }
        self.next_same = next_same;

        let mut marks: BTreeMap<u64, StallMark> = BTreeMap::new();
        let mut see = |id: u64, t: u64| {
            let m = marks.entry(id).or_insert(StallMark {
                id,
                start_ms: t,
                end_ms: t,
            });
            m.start_ms = m.start_ms.min(t);
            m.end_ms = m.end_ms.max(t);
        };
        for e in &self.events {
            match &e.update {
                // Opened or closed, the stall spans this moment.
                Update::Stall(ev) => see(ev.stall.id, e.t_ms),
                Update::Status(st) => {
                    for s in st.loops.iter().filter_map(|l| l.stall_in_progress.as_ref()) {
                        see(s.id, e.t_ms);
                    }
                }
                Update::Stalls(r) => {
                    for s in &r.in_progress {
                        see(s.id, e.t_ms);
                    }
                }
                _ => {}
            }
        }
        let mut marks: Vec<StallMark> = marks.into_values().collect();
        marks.sort_by_key(|m| (m.start_ms, m.id));
        self.stall_marks = marks;
    }

    /// Length of the timeline, ms.
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// How many events were received at or before `t_ms`.
    pub fn position_at(&self, t_ms: u64) -> usize {
        self.events.partition_point(|e| e.t_ms <= t_ms)
    }

    /// Applies events `from..to` to `model`, skipping snapshots that a later one in the range
    /// replaces.
    pub fn apply_range(&self, model: &mut Model, from: usize, to: usize) {
        let to = to.min(self.events.len());
        for i in from..to {
            if self.next_same[i].is_some_and(|j| j < to) {
                continue;
            }
            model.apply(self.events[i].update.clone());
        }
    }

    /// Whether the recording's hello speaks a protocol this version does not know.
    pub fn protocol_mismatch(&self) -> Option<u32> {
        self.events.iter().find_map(|e| match &e.update {
            Update::Hello(h) if h.protocol_version != PROTOCOL_VERSION => Some(h.protocol_version),
            _ => None,
        })
    }
}

/// The play head over a [`Recording`].
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The recording.
    pub rec: Recording,
    /// Events applied to the model (a prefix of `rec.events`).
    pub pos: usize,
    /// Where the play head is, unix ms on the recording's clock.
    pub cursor_ms: u64,
    /// Playing (advancing with ticks) or paused.
    pub playing: bool,
}

/// How far `[` and `]` seek, ms.
pub const SEEK_MS: u64 = 10_000;

impl Replay {
    /// A play head at the start of `rec`, paused, with `model` reset to the start.
    pub fn new(rec: Recording, model: &mut Model) -> Replay {
        let mut r = Replay {
            cursor_ms: rec.start_ms,
            rec,
            pos: 0,
            playing: false,
        };
        r.seek_to(model, r.rec.start_ms);
        r
    }

    /// Moves the play head to `t_ms` (clamped to the timeline) and brings `model` there.
    pub fn seek_to(&mut self, model: &mut Model, t_ms: u64) {
        let t = t_ms.clamp(self.rec.start_ms, self.rec.end_ms);
        let pos = self.rec.position_at(t);
        self.goto_pos(model, pos);
        self.cursor_ms = t;
    }

    /// Moves by `delta_ms` (negative: back).
    pub fn seek_by(&mut self, model: &mut Model, delta_ms: i64) {
        let t = self.cursor_ms.saturating_add_signed(delta_ms);
        self.seek_to(model, t);
    }

    /// Applies exactly the next event (pauses).
    pub fn step_forward(&mut self, model: &mut Model) {
        self.playing = false;
        if let Some(e) = self.rec.events.get(self.pos) {
            let t = e.t_ms;
            self.goto_pos(model, self.pos + 1);
            self.cursor_ms = t;
        }
    }

    /// Un-applies the last applied event (pauses).
    pub fn step_back(&mut self, model: &mut Model) {
        self.playing = false;
        if self.pos > 0 {
            let pos = self.pos - 1;
            self.goto_pos(model, pos);
            self.cursor_ms = match pos {
                0 => self.rec.start_ms,
                p => self.rec.events[p - 1].t_ms,
            };
        }
    }

    /// Jumps to the start of the next stall after the play head (or the previous one before it,
    /// `forward = false`), pausing there.
    pub fn jump_stall(&mut self, model: &mut Model, forward: bool) -> bool {
        let cur = self.cursor_ms;
        let mark = if forward {
            self.rec.stall_marks.iter().find(|m| m.start_ms > cur)
        } else {
            self.rec.stall_marks.iter().rev().find(|m| m.start_ms < cur)
        };
        match mark.map(|m| m.start_ms) {
            Some(t) => {
                self.playing = false;
                self.seek_to(model, t);
                true
            }
            None => false,
        }
    }

    /// Advances a playing head by `elapsed_ms` of wall time; stops at the end.
    pub fn advance(&mut self, model: &mut Model, elapsed_ms: u64) {
        if !self.playing {
            return;
        }
        let t = self.cursor_ms.saturating_add(elapsed_ms);
        self.seek_to(model, t);
        if self.cursor_ms >= self.rec.end_ms {
            self.playing = false;
        }
    }

    /// Starts or pauses playing; playing at the end starts over.
    pub fn toggle(&mut self, model: &mut Model) {
        if !self.playing && self.cursor_ms >= self.rec.end_ms {
            self.seek_to(model, self.rec.start_ms);
        }
        self.playing = !self.playing;
    }

    /// Milliseconds from the start of the recording to the play head.
    pub fn offset_ms(&self) -> u64 {
        self.cursor_ms.saturating_sub(self.rec.start_ms)
    }

    fn goto_pos(&mut self, model: &mut Model, pos: usize) {
        let pos = pos.min(self.rec.events.len());
        if pos < self.pos {
            *model = Model::default();
            self.rec.apply_range(model, 0, pos);
        } else {
            self.rec.apply_range(model, self.pos, pos);
        }
        self.pos = pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{"loopctl_record":1,"started_at_ms":1000,"hello":{"protocol_version":1,"pid":7}}
{"t_ms":1100,"method":"status","params":{"as_of_ms":1090,"stalls_total":0}}
garbage
{"t_ms":1200,"method":"stalls","params":{"event":"opened","stall":{"id":1,"loop":0,"in_progress":true,"started_at_ms":1150}}}

{"t_ms":1300,"method":"future_topic","params":{}}
{"t_ms":1400,"method":"stalls","params":{"event":"closed","stall":{"id":1,"loop":0,"in_progress":false,"started_at_ms":1150,"duration_seconds":0.25}}}
{"t_ms":1500,"notification":{"jsonrpc":"2.0","method":"status","params":{"as_of_ms":1490,"stalls_total":1}}}
{"jsonrpc":"2.0","method":"dropped","params":{"count":2,"total":2}}
"#;

    #[test]
    fn reads_tolerantly() {
        let rec = Recording::parse(TEXT);
        assert_eq!(rec.events.len(), 6, "{rec:#?}");
        assert_eq!(rec.skipped, 2);
        assert!(rec.first_skip.as_deref().unwrap().starts_with("line 3:"));
        assert_eq!(rec.start_ms, 1000);
        assert_eq!(rec.end_ms, 1500);
        assert_eq!(
            rec.events[5].t_ms, 1500,
            "bare line takes the previous time"
        );
        assert_eq!(
            rec.stall_marks,
            vec![StallMark {
                id: 1,
                start_ms: 1200,
                end_ms: 1400
            }]
        );
        assert_eq!(rec.format_version, Some(1));
    }

    #[test]
    fn seek_back_and_forth() {
        let rec = Recording::parse(TEXT);
        let mut m = Model::default();
        let mut r = Replay::new(rec, &mut m);
        assert_eq!(m.hello.as_ref().unwrap().pid, 7);
        r.seek_to(&mut m, 1250);
        assert_eq!(m.stalls_in_progress().count(), 1);
        r.seek_to(&mut m, 1450);
        assert_eq!(m.stalls_in_progress().count(), 0);
        r.seek_to(&mut m, 1250);
        assert_eq!(m.stalls_in_progress().count(), 1, "rebuilt going back");
        r.step_forward(&mut m);
        assert_eq!(r.cursor_ms, 1400);
        assert_eq!(m.stalls_in_progress().count(), 0);
        r.step_back(&mut m);
        assert_eq!(m.stalls_in_progress().count(), 1);
        r.seek_to(&mut m, 0);
        assert!(r.jump_stall(&mut m, true));
        assert_eq!(r.cursor_ms, 1200);
        assert_eq!(m.stalls_in_progress().count(), 1);
        r.seek_to(&mut m, u64::MAX);
        assert_eq!(m.dropped_total, 2);
        assert_eq!(m.status.as_ref().unwrap().stalls_total, 1);
    }

    #[test]
    fn playing_stops_at_end() {
        let mut m = Model::default();
        let mut r = Replay::new(Recording::parse(TEXT), &mut m);
        r.toggle(&mut m);
        r.advance(&mut m, 250);
        assert_eq!(r.offset_ms(), 250);
        assert!(r.playing);
        r.advance(&mut m, 10_000);
        assert!(!r.playing);
        assert_eq!(r.cursor_ms, 1500);
    }
}
