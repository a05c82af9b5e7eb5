//! Rates derived from consecutive snapshots (iterations per second), sampled by the watchdog
//! thread so that every reader sees the same numbers without keeping history of its own.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use loopd_engine::instrument::LoopSnapshot;

/// History kept per loop, nanoseconds.
const KEEP_NS: u64 = 3_000_000_000;
/// The window rates are computed over.
const WINDOW_NS: u64 = 1_000_000_000;

/// Recent `(as_of_ns, iterations)` of every loop.
#[derive(Default)]
pub(crate) struct Rates {
    history: Mutex<BTreeMap<usize, VecDeque<(u64, u64)>>>,
}

impl Rates {
    /// Records a snapshot (ignored if already recorded).
    pub fn observe(&self, snap: &LoopSnapshot) {
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let q = h.entry(snap.loop_index).or_default();
        if q.back().is_some_and(|(t, _)| *t >= snap.as_of_ns) {
            return;
        }
        q.push_back((snap.as_of_ns, snap.iterations));
        while q
            .front()
            .is_some_and(|(t, _)| snap.as_of_ns.saturating_sub(*t) > KEEP_NS)
        {
            q.pop_front();
        }
    }

    /// Iterations per second over about the last second before `snap`.
    pub fn iterations_per_second(&self, snap: &LoopSnapshot) -> f64 {
        let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let base = h.get(&snap.loop_index).and_then(|q| {
            // The newest sample at least a window older than `snap`, else the oldest one.
            q.iter()
                .rev()
                .find(|(t, _)| snap.as_of_ns.saturating_sub(*t) >= WINDOW_NS)
                .or_else(|| q.front())
                .copied()
        });
        let (t0, i0) = match base {
            Some((t, i)) if t < snap.as_of_ns => (t, i),
            _ => (snap.started_ns, 0),
        };
        let dt = snap.as_of_ns.saturating_sub(t0);
        if dt == 0 {
            return 0.0;
        }
        snap.iterations.saturating_sub(i0) as f64 * 1e9 / dt as f64
    }
}
