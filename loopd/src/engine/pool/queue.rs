//! The pool's two FIFOs, one per [`WorkClass`] (libuv's `wq` and `slow_io_pending_wq` in
//! `threadpool.c`): fast work may take every worker; slow work at most
//! [`slow_limit`] of them at once, so fast work (fs requests) always finds one. Between the
//! classes, submission order holds as long as slow work may run; past the limit, fast work
//! goes ahead and slow work waits for a slow slot.

use std::collections::VecDeque;

use super::{Job, WorkClass};
use crate::engine::request::RequestRef;
use crate::engine::target::RequestType;

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
    /// Submission order across both queues.
    next_seq: u64,
    /// Queued jobs by request type.
    by_kind: [usize; RequestType::COUNT],
}

impl WorkQueue {
    /// Queues a job at the end of its class.
    #[inline]
    pub fn push(&mut self, mut job: Job) {
        job.seq = self.next_seq;
        self.next_seq += 1;
        self.by_kind[job.kind.index()] += 1;
        match job.class {
            WorkClass::Fast => self.fast.push_back(job),
            WorkClass::Slow => self.slow.push_back(job),
        }
    }

    /// The next job a worker of a pool of `size` may run: the oldest of both classes while
    /// a slow slot is free, else the oldest fast job. A slow job taken counts as running
    /// until [`WorkQueue::finish_slow`].
    #[inline]
    pub fn pop(&mut self, size: usize) -> Option<Job> {
        let slow_free = self.slow_running < slow_limit(size);
        let take_slow = match (self.fast.front(), self.slow.front()) {
            (Some(f), Some(s)) => slow_free && s.seq < f.seq,
            (Some(_), None) => false,
            (None, Some(_)) => slow_free,
            (None, None) => return None,
        };
        let job = if take_slow {
            self.slow_running += 1;
            self.slow.pop_front()
        } else {
            self.fast.pop_front()
        }?;
        self.by_kind[job.kind.index()] -= 1;
        Some(job)
    }

    /// The oldest fast job, for slow work that lets it go first (at its checkpoint).
    pub fn pop_fast(&mut self) -> Option<Job> {
        let job = self.fast.pop_front()?;
        self.by_kind[job.kind.index()] -= 1;
        Some(job)
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
        let job = take(&mut self.fast).or_else(|| take(&mut self.slow))?;
        self.by_kind[job.kind.index()] -= 1;
        Some(job)
    }

    /// How many of `slow_jobs` just queued can start at once in a pool of `size` (the rest
    /// wait for a slow slot, so waking a worker for them would be wasted).
    pub fn slow_startable(&self, size: usize, slow_jobs: usize) -> usize {
        let claimed = self.slow_running + self.slow.len().saturating_sub(slow_jobs);
        slow_jobs.min(slow_limit(size).saturating_sub(claimed))
    }

    /// Whether a queued slow job may start now.
    pub fn slow_startable_now(&self, size: usize) -> bool {
        !self.slow.is_empty() && self.slow_running < slow_limit(size)
    }

    /// Queued jobs, both classes.
    pub fn len(&self) -> usize {
        self.fast.len() + self.slow.len()
    }

    /// Queued fast jobs.
    #[inline]
    pub fn fast_len(&self) -> usize {
        self.fast.len()
    }

    /// Workers running slow work.
    pub fn slow_running(&self) -> usize {
        self.slow_running
    }

    /// Queued jobs of request type `kind`.
    pub fn queued(&self, kind: RequestType) -> usize {
        self.by_kind[kind.index()]
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
