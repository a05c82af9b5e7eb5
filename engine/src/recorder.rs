//! The flight recorder: the loop's last iterations (per-phase start and duration) and its
//! slow callbacks, kept for a trace export that opens in Perfetto.
//!
//! The loop fills records in a loop-local chunk and hands whole chunks over (one lock per
//! chunk or per publication, never per iteration), so recording costs a few stores per
//! iteration. Readers copy the retained chunks; they never wait for the loop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::phase::Phase;
use super::target::Target;

/// Iterations per hand-over chunk.
const CHUNK: usize = 256;
/// Iterations retained (at least).
pub const ITERATIONS_KEPT: usize = 10_000;
/// Slow callbacks retained.
pub const SLOW_KEPT: usize = 2_000;
/// A callback at least this long is recorded as slow, with its attribution.
pub const SLOW_CALLBACK_NS: u64 = 1_000_000;

/// One loop iteration as recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterationRecord {
    /// When the iteration began ([`super::clock::now_ns`]).
    pub start_ns: u64,
    /// When it ended.
    pub end_ns: u64,
    /// Time blocked in the poll.
    pub idle_ns: u64,
    /// Per phase (index by [`Phase::index`]): start and duration; duration 0 when the phase
    /// ran no callback (the poll phase always has one: its processing, idle excluded).
    pub phases: [(u64, u64); Phase::COUNT],
}

/// A callback that ran at least [`SLOW_CALLBACK_NS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowCallback {
    /// When it started.
    pub start_ns: u64,
    /// How long it ran.
    pub duration_ns: u64,
    /// Its phase.
    pub phase: Phase,
    /// Its handle or request.
    pub target: Target,
    /// The target's label.
    pub label: Option<Arc<str>>,
}

#[derive(Default)]
struct Shared {
    chunks: VecDeque<Arc<Vec<IterationRecord>>>,
    kept: usize,
    slow: VecDeque<SlowCallback>,
}

/// The shared side of the recorder (inside [`super::LoopObserver`]).
#[derive(Default)]
pub struct Recorder {
    shared: Mutex<Shared>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The iterations retained at one moment, shared with the recorder rather than copied (see
/// [`Recorder::retained_iterations`]): a reader that takes its time (a trace streamed to a
/// slow client) holds references, not a copy of the ring.
#[derive(Clone, Debug, Default)]
pub struct RetainedIterations {
    chunks: Vec<Arc<Vec<IterationRecord>>>,
}

/// Iterations kept elsewhere (a stall's window), read the same way as the ring's.
impl From<Vec<IterationRecord>> for RetainedIterations {
    fn from(records: Vec<IterationRecord>) -> Self {
        RetainedIterations {
            chunks: vec![Arc::new(records)],
        }
    }
}

impl RetainedIterations {
    /// The `i`-th run of consecutive iterations (oldest first); `None` past the last.
    pub fn chunk(&self, i: usize) -> Option<&[IterationRecord]> {
        self.chunks.get(i).map(|c| c.as_slice())
    }

    /// Every iteration, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &IterationRecord> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl Recorder {
    /// The retained iterations, shared (one lock, no copy of the records).
    pub fn retained_iterations(&self) -> RetainedIterations {
        RetainedIterations {
            chunks: lock(&self.shared).chunks.iter().cloned().collect(),
        }
    }

    /// Recorded iterations that ended at or after `since_ns`, oldest first.
    pub fn iterations_since(&self, since_ns: u64) -> Vec<IterationRecord> {
        let chunks: Vec<_> = lock(&self.shared).chunks.iter().cloned().collect();
        chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter(|r| r.end_ns >= since_ns)
            .copied()
            .collect()
    }

    /// Recorded slow callbacks that started at or after `since_ns`, oldest first.
    pub fn slow_callbacks_since(&self, since_ns: u64) -> Vec<SlowCallback> {
        lock(&self.shared)
            .slow
            .iter()
            .filter(|s| s.start_ns + s.duration_ns >= since_ns)
            .cloned()
            .collect()
    }

    fn hand_over(&self, chunk: Vec<IterationRecord>, slow: &mut Vec<SlowCallback>) {
        let mut sh = lock(&self.shared);
        if !chunk.is_empty() {
            sh.kept += chunk.len();
            sh.chunks.push_back(Arc::new(chunk));
            while let Some(front) = sh.chunks.front() {
                if sh.kept - front.len() < ITERATIONS_KEPT {
                    break;
                }
                sh.kept -= front.len();
                sh.chunks.pop_front();
            }
        }
        for s in slow.drain(..) {
            if sh.slow.len() == SLOW_KEPT {
                sh.slow.pop_front();
            }
            sh.slow.push_back(s);
        }
    }
}

/// The producer's side of the recorder, owned by the thread that runs the loop: the chunk
/// being filled, whose last record is the iteration being recorded (written in place: no
/// per-iteration copies). [`flush`](Self::flush) hands it to the shared [`Recorder`] (the
/// engine flushes at every publication).
#[derive(Debug, Default)]
pub struct RecorderLocal {
    chunk: Vec<IterationRecord>,
    slow: Vec<SlowCallback>,
}

impl RecorderLocal {
    /// Starts the record of a new iteration.
    #[inline]
    pub fn begin_iteration(&mut self, start_ns: u64) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(CHUNK);
        }
        self.chunk.push(IterationRecord {
            start_ns,
            ..IterationRecord::default()
        });
    }

    /// Notes a phase of the current iteration.
    #[inline]
    pub fn phase(&mut self, index: usize, began: u64, took: u64) {
        if let Some(r) = self.chunk.last_mut() {
            r.phases[index] = (began, took);
        }
    }

    /// Completes the current iteration's record.
    #[inline]
    pub fn end_iteration(&mut self, end_ns: u64, idle_ns: u64, shared: &Recorder) {
        if let Some(r) = self.chunk.last_mut() {
            r.end_ns = end_ns;
            r.idle_ns = idle_ns;
        }
        if self.chunk.len() >= CHUNK {
            self.flush(shared);
        }
    }

    /// Notes a callback that ran at least [`SLOW_CALLBACK_NS`] (kept up to [`SLOW_KEPT`]
    /// per flush).
    #[cold]
    pub fn slow_callback(&mut self, s: SlowCallback) {
        if self.slow.len() < SLOW_KEPT {
            self.slow.push(s);
        }
    }

    /// Hands the partial chunk over (at every publication, so readers lag ≤ one cadence).
    pub fn flush(&mut self, shared: &Recorder) {
        let chunk = std::mem::take(&mut self.chunk);
        shared.hand_over(chunk, &mut self.slow);
    }
}
