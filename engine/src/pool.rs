//! The thread pool (libuv's `threadpool.c`): FIFO queues served by named worker threads,
//! shared by every loop of the process.
//!
//! Workers run work with no lock held, record its queue wait and run time, and hand the result
//! to the submitting loop's completion queue, waking it; the after-work callback then runs on
//! the loop thread in the poll phase. A panic in work is caught: the request completes with
//! [`WorkError::Panicked`] and the worker lives on. Cancel succeeds while queued; slow work
//! that is running learns of it at its next checkpoint ([`WorkContext`]).
//!
//! Work comes in two classes ([`WorkClass`], libuv's `UV__WORK_SLOW_IO`): slow work may
//! occupy at most half the workers (rounded up), so fs requests always find one.

mod context;
mod queue;
mod worker;

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use super::clock::now_ns;
use super::request::RequestRef;
use super::stats::Histogram;
use super::target::{RequestId, RequestType};
use super::wake::LoopWake;
use crate::names::named_enum;
pub use context::WorkContext;
pub use queue::slow_limit;
use queue::WorkQueue;
pub use worker::WorkerSnapshot;
use worker::WorkerStats;

/// Default number of workers, as libuv's `UV_THREADPOOL_SIZE`.
pub const DEFAULT_SIZE: usize = 4;
/// Largest allowed pool.
pub const MAX_SIZE: usize = 1024;

/// Why a work request did not produce a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Cancelled while queued, or while running (slow work, at its next checkpoint).
    #[error("cancelled")]
    Cancelled,
    /// The work function panicked (the message is kept).
    #[error("work panicked: {0}")]
    Panicked(String),
    /// The result had an unexpected type (an engine bug).
    #[error("work result of the wrong type")]
    WrongType,
}

named_enum!(
    /// How a pool task ended, for the `tasks_total{kind, outcome}` counter.
    pub enum TaskOutcome {
        /// Returned normally.
        Ok => "ok",
        /// Returned an error (fs and getaddrinfo tasks).
        Error => "error",
        /// Panicked.
        Panic => "panicked",
        /// Cancelled while queued, or stopped early because it was cancelled.
        Cancelled => "cancelled",
    }
);

/// What a task returns: the value for the after-callback and whether it failed.
pub(crate) struct JobOutput {
    pub value: Box<dyn Any + Send>,
    pub failed: bool,
    /// The request was cancelled meanwhile (slow work): nobody wants `value`.
    pub cancelled: bool,
}

/// A job's work: fast work runs as it is; slow work gets a [`WorkContext`].
pub(crate) enum JobFn {
    Fast(Box<dyn FnOnce() -> JobOutput + Send>),
    Slow(Box<dyn FnOnce(&WorkContext<'_>) -> JobOutput + Send>),
}

named_enum!(
    /// Which workers may run a task (libuv's work kinds).
    pub enum WorkClass {
        /// Short work (fs requests, [`Loop::queue_work`](super::Loop::queue_work)): may take
        /// every worker.
        Fast => "fast",
        /// Work that may hold a worker for long (CPU-bound
        /// [`Loop::queue_work_slow`](super::Loop::queue_work_slow), getaddrinfo): at most
        /// half the workers (rounded up) at once, so fast work always finds one (libuv's
        /// `UV__WORK_SLOW_IO`).
        Slow => "slow",
    }
);

pub(crate) struct Job {
    pub req: RequestRef,
    pub kind: RequestType,
    /// Submission time: the order between the classes.
    pub enqueued_ns: u64,
    pub run: JobFn,
    pub reply: Arc<LoopWake>,
}

impl Job {
    /// Which workers may run it.
    #[inline]
    pub fn class(&self) -> WorkClass {
        match self.run {
            JobFn::Fast(_) => WorkClass::Fast,
            JobFn::Slow(_) => WorkClass::Slow,
        }
    }
}

/// A finished task on its way back to its loop.
pub(crate) struct Completion {
    pub req: RequestRef,
    pub result: Result<Box<dyn Any + Send>, WorkError>,
}

#[derive(Clone, Default)]
pub(crate) struct PoolMetrics {
    queue_wait: [Histogram; RequestType::COUNT],
    run: [Histogram; RequestType::COUNT],
    tasks: [[u64; TaskOutcome::COUNT]; RequestType::COUNT],
}

struct PoolState {
    queue: WorkQueue,
    target: usize,
    started: bool,
    shutdown: bool,
    /// Per worker index: its stats while a thread serves that index.
    workers: Vec<Option<Arc<WorkerStats>>>,
    /// Workers waiting for work, and how many of them were signalled and have not woken yet:
    /// a submit signals only when some idle worker is still unsignalled, because every
    /// signal is a system call (glibc's condvar does the same bookkeeping internally).
    idle: usize,
    signalled: usize,
}

pub(crate) struct PoolInner {
    state: Mutex<PoolState>,
    work_ready: Condvar,
    /// Fast jobs queued (a copy kept under the lock while slow work runs), read without it
    /// at slow work's checkpoints.
    fast_waiting: AtomicUsize,
    busy: AtomicUsize,
    panics: AtomicU64,
    metrics: Mutex<PoolMetrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread pool. Most code uses [`ThreadPool::global`].
pub struct ThreadPool {
    inner: Arc<PoolInner>,
}

/// What the pool looks like right now (see [`ThreadPool::snapshot`]). `Default` is an empty
/// pool of size 0, for a producer to fill with what it sees.
#[derive(Clone, Debug, Default)]
pub struct PoolSnapshot {
    /// Configured number of workers.
    pub size: usize,
    /// Workers running a task.
    pub busy_workers: usize,
    /// Tasks waiting for a worker.
    pub queue_depth: usize,
    /// Tasks waiting, by kind (they sum to `queue_depth`).
    pub queued: Vec<(RequestType, usize)>,
    /// Workers running slow work ([`WorkClass::Slow`]).
    pub slow_busy_workers: usize,
    /// How many workers slow work may occupy at once (half the size, rounded up).
    pub slow_limit: usize,
    /// Queue wait by task kind (index by [`RequestType::index`]).
    pub queue_wait: Vec<(RequestType, Histogram)>,
    /// Run time by task kind.
    pub run: Vec<(RequestType, Histogram)>,
    /// Tasks by kind and outcome.
    pub tasks: Vec<(RequestType, TaskOutcome, u64)>,
    /// Panics caught in work.
    pub panics: u64,
    /// One entry per worker.
    pub workers: Vec<WorkerSnapshot>,
}

/// The kinds of task the pool runs.
pub const POOL_KINDS: [RequestType; 3] =
    [RequestType::Work, RequestType::Fs, RequestType::Getaddrinfo];

impl ThreadPool {
    /// The process-wide pool, [`DEFAULT_SIZE`] workers until its owner sets the size (the
    /// daemon from `--threadpool-size` / `LOOPD_THREADPOOL_SIZE`; the pool reads no
    /// environment). Its threads start when the first task is queued.
    pub fn global() -> &'static Arc<ThreadPool> {
        static GLOBAL: OnceLock<Arc<ThreadPool>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(ThreadPool::new(DEFAULT_SIZE)))
    }

    /// A pool of `size` workers (clamped to 1..=1024), started on first use.
    pub fn new(size: usize) -> ThreadPool {
        ThreadPool {
            inner: Arc::new(PoolInner {
                state: Mutex::new(PoolState {
                    queue: WorkQueue::default(),
                    target: size.clamp(1, MAX_SIZE),
                    started: false,
                    shutdown: false,
                    workers: Vec::new(),
                    idle: 0,
                    signalled: 0,
                }),
                work_ready: Condvar::new(),
                fast_waiting: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                panics: AtomicU64::new(0),
                metrics: Mutex::new(PoolMetrics::default()),
            }),
        }
    }

    /// The configured size.
    pub fn size(&self) -> usize {
        lock(&self.inner.state).target
    }

    /// Resizes the pool (clamped to 1..=1024) and returns the new size. Extra workers finish
    /// their current task and exit; new ones start at once if the pool has started.
    pub fn set_size(&self, size: usize) -> usize {
        let size = size.clamp(1, MAX_SIZE);
        let mut st = lock(&self.inner.state);
        st.target = size;
        if st.started {
            self.spawn_missing(&mut st);
        }
        drop(st);
        self.inner.work_ready.notify_all();
        size
    }

    fn spawn_missing(&self, st: &mut PoolState) {
        let target = st.target;
        if st.workers.len() < target {
            st.workers.resize(target, None);
        }
        for index in 0..target {
            if st.workers[index].is_some() {
                continue;
            }
            let stats = Arc::new(WorkerStats::new());
            match worker::spawn(self.inner.clone(), index, stats.clone()) {
                Ok(()) => st.workers[index] = Some(stats),
                Err(e) => tracing::error!(worker = index, error = %e, "cannot start pool worker"),
            }
        }
    }

    /// Queues the jobs (in order, draining `jobs`) under one lock. Returns how many idle
    /// workers the caller must wake with [`ThreadPool::wake_workers`]: the loop hands its
    /// submissions over at the end of each phase, so a burst of submissions costs one lock
    /// and a few signals instead of a lock and a signal per job. `any_slow`: whether `jobs`
    /// may hold slow work (when not, they are queued in one move).
    #[must_use]
    pub(crate) fn submit(&self, jobs: &mut Vec<Job>, any_slow: bool) -> usize {
        let mut st = lock(&self.inner.state);
        if !st.started {
            st.started = true;
            self.spawn_missing(&mut st);
        }
        let n = jobs.len();
        let slow = st.queue.push_all(jobs, any_slow);
        st.queue.publish_fast_waiting(&self.inner.fast_waiting);
        // Slow jobs past the slow limit wait for a slow slot: no worker to wake for them.
        let startable = n - slow + st.queue.slow_startable(st.target, slow);
        let wakes = st.idle.saturating_sub(st.signalled).min(startable);
        st.signalled += wakes;
        wakes
    }

    /// Wakes `n` idle workers (each wake is a system call).
    pub(crate) fn wake_workers(&self, n: usize) {
        for _ in 0..n {
            self.inner.work_ready.notify_one();
        }
    }

    /// Removes a still-queued task; `None` if a worker already took it.
    pub(crate) fn cancel(&self, req: RequestRef) -> Option<Job> {
        let mut st = lock(&self.inner.state);
        let job = st.queue.remove(req)?;
        st.queue.publish_fast_waiting(&self.inner.fast_waiting);
        drop(st);
        self.count_cancelled(job.kind);
        Some(job)
    }

    /// Counts a task cancelled before it reached the queue (still in its loop's hands).
    pub(crate) fn count_cancelled(&self, kind: RequestType) {
        lock(&self.inner.metrics).tasks[kind.index()][TaskOutcome::Cancelled.index()] += 1;
    }

    /// The request a worker is running right now, if any (for request listings).
    pub(crate) fn running_requests(&self) -> Vec<RequestId> {
        let st = lock(&self.inner.state);
        st.workers
            .iter()
            .flatten()
            .filter_map(|w| w.current_request())
            .collect()
    }

    /// Size, load, histograms and per-worker state, read without involving any loop.
    pub fn snapshot(&self) -> PoolSnapshot {
        let (size, queue_depth, queued, slow_busy_workers, workers, live) = {
            let st = lock(&self.inner.state);
            let now = now_ns();
            let workers = st
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| w.snapshot(i, now)))
                .collect();
            let live: Vec<_> = st.workers.iter().flatten().cloned().collect();
            let queued = POOL_KINDS
                .iter()
                .map(|k| (*k, st.queue.queued(*k)))
                .collect();
            let slow = st.queue.slow_running();
            (st.target, st.queue.len(), queued, slow, workers, live)
        };
        let mut m = lock(&self.inner.metrics).clone();
        for w in &live {
            w.merge_into(&mut m);
        }
        let queue_wait = POOL_KINDS
            .iter()
            .map(|k| (*k, m.queue_wait[k.index()].clone()))
            .collect();
        let run = POOL_KINDS
            .iter()
            .map(|k| (*k, m.run[k.index()].clone()))
            .collect();
        let tasks = POOL_KINDS
            .iter()
            .flat_map(|k| {
                TaskOutcome::ALL
                    .iter()
                    .map(move |o| (*k, *o, m.tasks[k.index()][o.index()]))
            })
            .collect();
        PoolSnapshot {
            size,
            busy_workers: self.inner.busy.load(Ordering::Relaxed),
            queue_depth,
            queued,
            slow_busy_workers,
            slow_limit: slow_limit(size),
            queue_wait,
            run,
            tasks,
            panics: self.inner.panics.load(Ordering::Relaxed),
            workers,
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        lock(&self.inner.state).shutdown = true;
        self.inner.work_ready.notify_all();
    }
}

impl PoolInner {
    /// Keeps the counts of a worker that exits.
    fn absorb(&self, m: &PoolMetrics) {
        lock(&self.metrics).merge(m);
    }
}

impl PoolMetrics {
    pub(crate) fn merge(&mut self, other: &PoolMetrics) {
        for k in 0..RequestType::COUNT {
            self.queue_wait[k].merge(&other.queue_wait[k]);
            self.run[k].merge(&other.run[k]);
            for o in 0..TaskOutcome::COUNT {
                self.tasks[k][o] += other.tasks[k][o];
            }
        }
    }

    pub(crate) fn record(
        &mut self,
        kind: RequestType,
        wait_ns: u64,
        run_ns: u64,
        outcome: TaskOutcome,
    ) {
        let m = self;
        m.queue_wait[kind.index()].record(wait_ns);
        m.run[kind.index()].record(run_ns);
        m.tasks[kind.index()][outcome.index()] += 1;
    }
}
