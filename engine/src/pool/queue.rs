//! The pool's two FIFOs, one per [`WorkClass`] (libuv's `wq` and `slow_io_pending_wq` in
//! `threadpool.c`): fast work may take every worker; slow work at most
//! [`slow_limit`] of them at once, so fast work (fs requests) always finds one. Between the
//! classes, submission order holds as long as slow work may run; past the limit, fast work
//! goes ahead and slow work waits for a slow slot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Job, WorkClass};
use crate::request::RequestRef;
use crate::target::RequestType;

/// How many workers slow work may occupy at once in a pool of `size`: half, rounded up
/// (libuv's `slow_work_thread_threshold`). A pool of one runs slow work when no fast work
/// waits; slow work lets waiting fast work run at its checkpoints (see `WorkContext`).
pub fn slow_limit(size: usize) -> usize {
    size.div_ceil(2)
}

/// Queued jobs of both classes, and the slow ones running.
#[derive(Default)]
pub(crate) struct WorkQueue {
    fast: VecDeque<Job>,
    slow: VecDeque<Job>,
    /// Workers running slow work (libuv's `slow_io_work_running`).
    slow_running: usize,
}

impl WorkQueue {
    /// Queues jobs, in order, at the end of their classes (draining `jobs`); returns how
    /// many of them are slow. `any_slow: false` promises there is none.
    #[inline]
    pub fn push_all(&mut self, jobs: &mut Vec<Job>, any_slow: bool) -> usize {
        if !any_slow {
            self.fast.extend(jobs.drain(..));
            return 0;
        }
        let mut slow = 0;
        for job in jobs.drain(..) {
            match job.class() {
                WorkClass::Fast => self.fast.push_back(job),
                WorkClass::Slow => {
                    slow += 1;
                    self.slow.push_back(job);
                }
            }
        }
        slow
    }

    /// The next job a worker of a pool of `size` may run: the oldest of both classes
    /// (by submission time) while a slow slot is free, else the oldest fast job. A slow job
    /// taken counts as running until [`WorkQueue::finish_slow`].
    #[inline]
    pub fn pop(&mut self, size: usize) -> Option<Job> {
        let Some(slow) = self.slow.front() else {
            return self.fast.pop_front();
        };
        let slow_free = self.slow_running < slow_limit(size);
        let take_slow = slow_free
            && self
                .fast
                .front()
                .is_none_or(|fast| slow.enqueued_ns <= fast.enqueued_ns);
        if take_slow {
            self.slow_running += 1;
            self.slow.pop_front()
        } else {
            self.fast.pop_front()
        }
    }

    /// The oldest fast job, for slow work that lets it go first (at its checkpoint).
    pub fn pop_fast(&mut self) -> Option<Job> {
        self.fast.pop_front()
    }

    /// A slow job finished: its slot is free again.
    pub fn finish_slow(&mut self) {
        debug_assert!(self.slow_running > 0);
        self.slow_running = self.slow_running.saturating_sub(1);
    }

    /// Removes a queued job (cancel); `None` if no worker waits to take it any more.
    pub fn remove(&mut self, req: RequestRef) -> Option<Job> {
        let take = |q: &mut VecDeque<Job>| {
            let pos = q.iter().position(|j| j.req == req)?;
            q.remove(pos)
        };
        take(&mut self.fast).or_else(|| take(&mut self.slow))
    }

    /// How many of the last `slow_jobs` queued can start at once in a pool of `size` (the
    /// rest wait for a slow slot, so waking a worker for them would be wasted).
    pub fn slow_startable(&self, size: usize, slow_jobs: usize) -> usize {
        let claimed = self.slow_running + self.slow.len().saturating_sub(slow_jobs);
        slow_jobs.min(slow_limit(size).saturating_sub(claimed))
    }

    /// Whether a queued slow job may start now.
    pub fn slow_startable_now(&self, size: usize) -> bool {
        !self.slow.is_empty() && self.slow_running < slow_limit(size)
    }

    /// Tells slow work's checkpoints how many fast jobs wait: only while slow work runs
    /// (nobody reads it otherwise), so fast-only load pays nothing for it.
    #[inline]
    pub fn publish_fast_waiting(&self, to: &AtomicUsize) {
        if self.slow_running > 0 {
            to.store(self.fast.len(), Ordering::Relaxed);
        }
    }

    /// Whether slow work runs now.
    #[inline]
    pub fn slow_running_now(&self) -> bool {
        self.slow_running > 0
    }

    /// Queued jobs, both classes.
    pub fn len(&self) -> usize {
        self.fast.len() + self.slow.len()
    }

    /// Workers running slow work.
    pub fn slow_running(&self) -> usize {
        self.slow_running
    }

    /// Queued jobs of request type `kind` (counted when asked: snapshots are rare, queueing
    /// is not).
    pub fn queued(&self, kind: RequestType) -> usize {
        self.fast
            .iter()
            .chain(&self.slow)
            .filter(|j| j.kind == kind)
            .count()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn slow_work_gets_half_the_workers_rounded_up() {
        let limits: Vec<usize> = (1..=6).map(slow_limit).collect();
        assert_eq!(limits, [1, 1, 2, 2, 3, 3]);
    }
}
