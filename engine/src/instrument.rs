//! What an observer of a loop reads, from another thread: the published snapshot, the
//! current-callback slot, the flight recorder, the loop thread's identity, the thread
//! pool's figures, and the clock they are all timed by. `loopd-observe` reads these; a second
//! producer of loop data fills the same types.
//!
//! A loop hands them out through [`Loop::observer`](crate::Loop::observer) and
//! [`ThreadPool::snapshot`](crate::ThreadPool::snapshot). Using the engine does not need
//! this module. A producer other than the engine (the libuv agent) fills the same types:
//! [`LoopObserver::new`], [`LoopObserver::publish`], [`CallbackSlot::enter`],
//! [`RecorderLocal`], [`SnapshotWindows`] (ARCHITECTURE.md, "How to add a producer of loop
//! data", walks through it).

pub use crate::current::{CallbackSlot, CurrentCallback, LABEL_MAX};
pub use crate::handle::TypeCount;
pub use crate::names::PerType;
pub use crate::pool::{PoolSnapshot, TaskOutcome, WorkerSnapshot, POOL_KINDS};
pub use crate::recorder::{
    IterationRecord, Recorder, RecorderLocal, RetainedIterations, SlowCallback, ITERATIONS_KEPT,
    SLOW_CALLBACK_NS, SLOW_KEPT,
};
pub use crate::stats::{
    Histogram, LoopObserver, LoopSnapshot, PhaseSnapshot, SnapshotWindows, Utilization,
};
pub use crate::sys::ThreadIdentity;

/// The monotonic clock every loop and thread shares: nanoseconds since the process first
/// asked, and their wall-clock time.
pub mod clock {
    pub use crate::clock::{now_ns, wall_ms};
}
