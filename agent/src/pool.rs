//! libuv's thread pool as the agent sees it: `uv_queue_work` interposed, so each work item's
//! queue wait and run time are measured on the worker that runs it, and the pool's busy
//! workers and queue depth are counted. libuv's fs and getaddrinfo requests use the same
//! workers but are not interposed: they are not in these figures.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use loopd_engine::instrument::clock::now_ns;
use loopd_engine::instrument::{Histogram, PoolSnapshot, TaskOutcome};
use loopd_engine::{RequestState, RequestType};
use loopd_observe::PoolFeed;

use crate::intercept;
use crate::uv::Ptr;

type WorkCb = unsafe extern "C" fn(Ptr);
type AfterWorkCb = unsafe extern "C" fn(Ptr, c_int);

/// `UV_ECANCELED`: the status of a work item cancelled while queued.
const UV_ECANCELED: c_int = -libc::ECANCELED;
/// libuv's default pool size, and its bound.
const DEFAULT_SIZE: usize = 4;
const MAX_SIZE: usize = 1024;

/// What the pool's workers and the loop thread share. Held only for a map insert or remove:
/// never while running host code or doing I/O.
#[derive(Default)]
struct Shared {
    /// Work callback, queue time and whether a worker took it, of each queued or running
    /// item, by request address.
    work: HashMap<usize, (usize, u64, bool)>,
    queue_wait: Histogram,
    run: Histogram,
}

/// The libuv pool's figures (a [`PoolFeed`] with a fixed size: libuv sizes its pool once,
/// from `UV_THREADPOOL_SIZE`).
#[derive(Default)]
pub struct AgentPool {
    shared: Mutex<Shared>,
    queued: AtomicUsize,
    busy: AtomicUsize,
    done: AtomicU64,
    cancelled: AtomicU64,
}

/// Takes the pool's lock for a `fork` (see `crate::fork`): the child must not inherit it held
/// by a worker it does not have.
pub(crate) fn hold_for_fork() {
    std::mem::forget(pool().shared.lock());
}

/// Releases the lock [`hold_for_fork`] took.
///
/// # Safety
/// Only after [`hold_for_fork`] on this thread (the fork handlers).
pub(crate) unsafe fn release_after_fork() {
    // SAFETY: held by this thread since `hold_for_fork` (the caller's contract).
    unsafe { pool().shared.force_unlock() };
}

/// The process's pool figures.
pub fn pool() -> &'static AgentPool {
    static POOL: OnceLock<AgentPool> = OnceLock::new();
    POOL.get_or_init(AgentPool::default)
}

/// libuv's pool size: `UV_THREADPOOL_SIZE` as libuv reads it (1..=1024, default 4).
fn libuv_pool_size() -> usize {
    std::env::var("UV_THREADPOOL_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DEFAULT_SIZE, |n| n.clamp(1, MAX_SIZE))
}

impl PoolFeed for &'static AgentPool {
    fn snapshot(&self) -> PoolSnapshot {
        let (wait, run) = {
            let s = self.shared.lock();
            (s.queue_wait.clone(), s.run.clone())
        };
        let queued = self.queued.load(Ordering::Relaxed);
        PoolSnapshot {
            size: libuv_pool_size(),
            busy_workers: self.busy.load(Ordering::Relaxed),
            queue_depth: queued,
            queued: vec![(RequestType::Work, queued)],
            queue_wait: vec![(RequestType::Work, wait)],
            run: vec![(RequestType::Work, run)],
            tasks: vec![
                (
                    RequestType::Work,
                    TaskOutcome::Ok,
                    self.done.load(Ordering::Relaxed),
                ),
                (
                    RequestType::Work,
                    TaskOutcome::Cancelled,
                    self.cancelled.load(Ordering::Relaxed),
                ),
            ],
            ..PoolSnapshot::default()
        }
    }

    fn size(&self) -> usize {
        libuv_pool_size()
    }

    fn resizable(&self) -> bool {
        false
    }

    fn set_size(&self, _size: usize) -> Result<usize, String> {
        Err("libuv sizes its thread pool once, from UV_THREADPOOL_SIZE at start: the agent cannot change it".into())
    }
}

/// For each of `reqs`, whether that work request waits in libuv's queue (`Queued`) or a
/// worker runs it (`Running`); `None` when it is not work queued through us. One lock for the
/// whole list.
pub(crate) fn work_states(reqs: &[usize]) -> Vec<Option<RequestState>> {
    let s = pool().shared.lock();
    reqs.iter()
        .map(|req| {
            s.work.get(req).map(|&(_, _, started)| {
                if started {
                    RequestState::Running
                } else {
                    RequestState::Queued
                }
            })
        })
        .collect()
}

unsafe extern "C" fn work_tramp(req: Ptr) {
    let p = pool();
    let start = now_ns();
    let entry = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut s = p.shared.lock();
        let entry = s.work.get_mut(&(req as usize))?;
        entry.2 = true;
        let (cb, queued_ns, _) = *entry;
        s.queue_wait.record(start.saturating_sub(queued_ns));
        Some(cb)
    }))
    .ok()
    .flatten();
    let Some(cb) = entry else {
        return;
    };
    p.queued.fetch_sub(1, Ordering::Relaxed);
    p.busy.fetch_add(1, Ordering::Relaxed);
    if cb != 0 {
        // SAFETY: stored from the host's non-null `uv_work_cb`.
        let f = unsafe { std::mem::transmute::<usize, WorkCb>(cb) };
        // SAFETY: the host's work callback with its request, on a libuv worker as libuv does.
        unsafe { f(req) };
    }
    p.busy.fetch_sub(1, Ordering::Relaxed);
    let took = now_ns().saturating_sub(start);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.shared.lock().run.record(took)
    }));
}

unsafe extern "C" fn after_work_tramp(req: Ptr, status: c_int) {
    let p = pool();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.shared.lock().work.remove(&(req as usize))
    }));
    if status == UV_ECANCELED {
        // libuv cancels only queued work: its work callback never ran.
        p.cancelled.fetch_add(1, Ordering::Relaxed);
        p.queued.fetch_sub(1, Ordering::Relaxed);
    } else {
        p.done.fetch_add(1, Ordering::Relaxed);
    }
    let _ = std::panic::catch_unwind(|| intercept::complete(req, status));
}

/// Interposes `uv_queue_work`: queue wait and run time measured, busy workers and queue
/// depth counted, the after-work callback attributed to the request.
///
/// # Safety
/// As libuv's `uv_queue_work`.
#[no_mangle]
pub unsafe extern "C" fn uv_queue_work(
    l: Ptr,
    req: Ptr,
    work: Option<WorkCb>,
    after: Option<AfterWorkCb>,
) -> c_int {
    type Real = unsafe extern "C" fn(Ptr, Ptr, Option<WorkCb>, Option<AfterWorkCb>) -> c_int;
    let Some(real) = crate::real!("uv_queue_work", Real) else {
        return -libc::ENOSYS;
    };
    let Some(work_cb) = work.filter(|_| intercept::wrapping()) else {
        // SAFETY: forwarding the host's call untouched.
        return unsafe { real(l, req, work, after) };
    };
    let p = pool();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.shared
            .lock()
            .work
            .insert(req as usize, (work_cb as usize, now_ns(), false));
        intercept::track_request(req, RequestType::Work, l, after.map_or(0, |a| a as usize));
    }));
    p.queued.fetch_add(1, Ordering::Relaxed);
    // SAFETY: forwarding the host's call with our trampolines.
    let rc = unsafe {
        real(
            l,
            req,
            Some(work_tramp as WorkCb),
            Some(after_work_tramp as AfterWorkCb),
        )
    };
    if rc != 0 {
        p.queued.fetch_sub(1, Ordering::Relaxed);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.shared.lock().work.remove(&(req as usize));
            intercept::untrack_request(req);
        }));
    }
    rc
}
