//! One pool worker thread (`loopd-worker-N`) and the counters it publishes about itself.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::context::WorkContext;
use super::{
    lock, Completion, Job, JobFn, PoolInner, PoolMetrics, TaskOutcome, WorkClass, WorkError,
};
use crate::clock::now_ns;
use crate::target::{RequestId, RequestType};

/// Counters a worker updates and anyone may read.
pub(crate) struct WorkerStats {
    /// Request id being run, 0 when idle.
    current: AtomicU64,
    kind: AtomicU8,
    busy_since_ns: AtomicU64,
    idle_ns: AtomicU64,
    idle_since_ns: AtomicU64,
    tasks: AtomicU64,
    /// Histograms and outcome counts of this worker's tasks: its own lock, so workers never
    /// contend on a shared one; the snapshot merges them.
    metrics: Mutex<PoolMetrics>,
}

/// One worker as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// Worker index (`loopd-worker-N`).
    pub index: usize,
    /// The task it runs: kind and request id.
    pub current: Option<(RequestType, RequestId)>,
    /// How long it has been running the current task.
    pub busy_for_ns: u64,
    /// Total time spent waiting for work.
    pub idle_ns_total: u64,
    /// Tasks finished.
    pub tasks_done: u64,
}

impl WorkerStats {
    pub fn new() -> Self {
        WorkerStats {
            current: AtomicU64::new(0),
            kind: AtomicU8::new(0),
            busy_since_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(now_ns()),
            tasks: AtomicU64::new(0),
            metrics: Mutex::new(PoolMetrics::default()),
        }
    }

    pub fn merge_into(&self, into: &mut PoolMetrics) {
        into.merge(&lock(&self.metrics));
    }

    fn take_metrics(&self) -> PoolMetrics {
        std::mem::take(&mut *lock(&self.metrics))
    }

    pub fn current_request(&self) -> Option<RequestId> {
        match self.current.load(Ordering::Acquire) {
            0 => None,
            id => Some(RequestId::new(id)),
        }
    }

    /// What the worker shows as running, to put back after it lent itself to other work.
    pub fn save_current(&self) -> (u64, u8, u64) {
        (
            self.current.load(Ordering::Relaxed),
            self.kind.load(Ordering::Relaxed),
            self.busy_since_ns.load(Ordering::Relaxed),
        )
    }

    pub fn restore_current(&self, (id, kind, since): (u64, u8, u64)) {
        self.kind.store(kind, Ordering::Relaxed);
        self.busy_since_ns.store(since, Ordering::Relaxed);
        self.current.store(id, Ordering::Release);
    }

    pub fn snapshot(&self, index: usize, now: u64) -> WorkerSnapshot {
        let id = self.current.load(Ordering::Acquire);
        let kind = RequestType::from_index(self.kind.load(Ordering::Relaxed) as usize)
            .unwrap_or(RequestType::Work);
        let idle_total = self.idle_ns.load(Ordering::Relaxed);
        let (current, busy_for_ns, idle_ns_total) = if id == 0 {
            let idle_since = self.idle_since_ns.load(Ordering::Relaxed);
            (None, 0, idle_total + now.saturating_sub(idle_since))
        } else {
            let since = self.busy_since_ns.load(Ordering::Relaxed);
            (
                Some((kind, RequestId::new(id))),
                now.saturating_sub(since),
                idle_total,
            )
        };
        WorkerSnapshot {
            index,
            current,
            busy_for_ns,
            idle_ns_total,
            tasks_done: self.tasks.load(Ordering::Relaxed),
        }
    }
}

pub(super) fn spawn(
    pool: Arc<PoolInner>,
    index: usize,
    stats: Arc<WorkerStats>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("loopd-worker-{index}"))
        .spawn(move || run(&pool, index, &stats))
        .map(|_| ())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

fn run(pool: &PoolInner, index: usize, stats: &WorkerStats) {
    let mut st = lock(&pool.state);
    // This worker just freed a slow slot: if it takes other work, a slow job may need
    // another worker.
    let mut freed_slow = false;
    loop {
        if index >= st.target || st.shutdown {
            if let Some(slot) = st.workers.get_mut(index) {
                *slot = None;
            }
            drop(st);
            pool.absorb(&stats.take_metrics());
            return;
        }
        let size = st.target;
        let Some(job) = st.queue.pop(size) else {
            freed_slow = false;
            st.idle += 1;
            st = pool
                .work_ready
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.idle -= 1;
            st.signalled = st.signalled.saturating_sub(1).min(st.idle);
            continue;
        };
        if freed_slow || st.queue.slow_running_now() {
            // Only with slow work about: fast-only load skips this.
            st.queue.publish_fast_waiting(&pool.fast_waiting);
            if freed_slow && st.queue.slow_startable_now(size) && st.idle > st.signalled {
                st.signalled += 1;
                pool.work_ready.notify_one();
            }
        }
        drop(st);

        let slow = job.class() == WorkClass::Slow;
        let start = now_ns();
        let idle_since = stats.idle_since_ns.load(Ordering::Relaxed);
        stats
            .idle_ns
            .fetch_add(start.saturating_sub(idle_since), Ordering::Relaxed);
        pool.busy.fetch_add(1, Ordering::Relaxed);
        execute(pool, index, stats, job, start, |end| {
            pool.busy.fetch_sub(1, Ordering::Relaxed);
            stats.current.store(0, Ordering::Release);
            stats.idle_since_ns.store(end, Ordering::Relaxed);
            if slow {
                // Before the loop hears of it, so what it then reads of the pool adds up.
                lock(&pool.state).queue.finish_slow();
            }
        });
        freed_slow = slow;
        st = lock(&pool.state);
    }
}

/// Runs one job on this worker from `start` (a clock reading the caller has anyway),
/// records it, calls `before_post` with the end time, then hands the result to the job's
/// loop. Slow work gets a [`WorkContext`] through which it may lend the worker to waiting
/// fast work at its checkpoints.
#[inline]
pub(super) fn execute(
    pool: &PoolInner,
    index: usize,
    stats: &WorkerStats,
    job: Job,
    start: u64,
    before_post: impl FnOnce(u64),
) {
    stats.kind.store(job.kind.index() as u8, Ordering::Relaxed);
    stats.busy_since_ns.store(start, Ordering::Relaxed);
    stats.current.store(job.req.id, Ordering::Release);

    let lent_ns = Cell::new(0);
    let outcome = match job.run {
        JobFn::Fast(run) => catch_unwind(AssertUnwindSafe(run)),
        JobFn::Slow(run) => {
            let ctx = WorkContext::new(pool, index, stats, &lent_ns);
            catch_unwind(AssertUnwindSafe(|| run(&ctx)))
        }
    };

    let end = now_ns();
    stats.tasks.fetch_add(1, Ordering::Relaxed);
    let (result, task_outcome) = match outcome {
        Err(p) => {
            pool.panics.fetch_add(1, Ordering::Relaxed);
            let msg = panic_message(&*p);
            tracing::error!(worker = index, panic = %msg, "thread-pool work panicked; the request completes with an error");
            (Err(WorkError::Panicked(msg)), TaskOutcome::Panic)
        }
        // Nobody wants the value of cancelled work, whether it stopped early or not.
        Ok(out) if out.cancelled => (Err(WorkError::Cancelled), TaskOutcome::Cancelled),
        Ok(out) if out.failed => (Ok(out.value), TaskOutcome::Error),
        Ok(out) => (Ok(out.value), TaskOutcome::Ok),
    };
    lock(&stats.metrics).record(
        job.kind,
        start.saturating_sub(job.enqueued_ns),
        end.saturating_sub(start) - lent_ns.get(),
        task_outcome,
    );
    before_post(end);
    job.reply.post_completion(Completion {
        req: job.req,
        result,
    });
}
