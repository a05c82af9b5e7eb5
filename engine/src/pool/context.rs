//! What slow work sees of the pool while it runs ([`WorkContext`]): whether its request was
//! cancelled, and a checkpoint at which fast work waiting for a worker goes first.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use super::worker::{self, WorkerStats};
use super::{lock, PoolInner, WorkError};
use crate::clock::now_ns;

/// Handed to work queued with [`Loop::queue_work_slow`](crate::Loop::queue_work_slow)
/// on the worker that runs it.
///
/// Long work calls [`WorkContext::checkpoint`] every millisecond or so. That is how it
/// learns that its request was cancelled (its client went away), and how fast work (fs
/// requests) gets a worker even when slow work holds every one of them (a pool of one):
/// the checkpoint runs the fast work waiting on this thread, then returns.
///
/// # Examples
///
/// ```no_run
/// # use loopd_engine::{Loop, WorkError};
/// # let mut lp = Loop::new().unwrap();
/// lp.queue_work_slow(
///     |ctx| {
///         let mut sum = 0u64;
///         for i in 0..1_000_000_000u64 {
///             if i % 65_536 == 0 && ctx.checkpoint().is_err() {
///                 return None; // cancelled: the after-callback gets WorkError::Cancelled
///             }
///             sum = sum.wrapping_add(i);
///         }
///         Some(sum)
///     },
///     |_lp, result: Result<Option<u64>, WorkError>| println!("{result:?}"),
/// );
/// ```
pub struct WorkContext<'a> {
    pool: &'a PoolInner,
    /// The worker running the work (index and counters), lent to fast work at checkpoints.
    /// Fast work gets no context, so lending never nests.
    index: usize,
    stats: &'a WorkerStats,
    cancel: Option<&'a AtomicBool>,
    /// Time spent running other work at checkpoints (not this work's run time).
    lent_ns: &'a Cell<u64>,
}

impl<'a> WorkContext<'a> {
    pub(super) fn new(
        pool: &'a PoolInner,
        index: usize,
        stats: &'a WorkerStats,
        lent_ns: &'a Cell<u64>,
    ) -> Self {
        WorkContext {
            pool,
            index,
            stats,
            cancel: None,
            lent_ns,
        }
    }

    /// The same context, watching `flag` for a cancel.
    pub(crate) fn with_cancel<'b>(&'b self, flag: &'b AtomicBool) -> WorkContext<'b> {
        WorkContext {
            cancel: Some(flag),
            ..*self
        }
    }

    /// Whether the request was cancelled ([`WorkRequest::cancel`](crate::WorkRequest::cancel)):
    /// the work should return soon; whatever it returns is dropped and the after-callback
    /// gets [`WorkError::Cancelled`]. One atomic load.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Call every millisecond or so of work: first runs the fast work waiting for a worker
    /// (on this thread), then tells whether to go on. Costs two atomic loads when nothing
    /// waits.
    ///
    /// # Errors
    /// [`WorkError::Cancelled`] once the request was cancelled: stop and return.
    #[inline]
    pub fn checkpoint(&self) -> Result<(), WorkError> {
        if self.is_cancelled() {
            return Err(WorkError::Cancelled);
        }
        if self.pool.fast_waiting.load(Ordering::Relaxed) > 0 {
            self.run_waiting_fast_work();
        }
        if self.is_cancelled() {
            return Err(WorkError::Cancelled);
        }
        Ok(())
    }

    #[cold]
    fn run_waiting_fast_work(&self) {
        let (index, stats) = (self.index, self.stats);
        let start = now_ns();
        let mut now = start;
        loop {
            let job = {
                let mut st = lock(&self.pool.state);
                let job = st.queue.pop_fast();
                st.queue.publish_fast_waiting(&self.pool.fast_waiting);
                job
            };
            let Some(job) = job else { break };
            let ours = stats.save_current();
            worker::execute(self.pool, index, stats, job, now, |end| {
                stats.restore_current(ours);
                now = end;
            });
        }
        self.lent_ns.set(self.lent_ns.get() + (now - start));
    }
}
