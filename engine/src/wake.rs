//! The cross-thread door into a loop: one `mio::Waker` shared by async handles and
//! thread-pool completions, with a flag so that many wake-ups before the loop runs cost one
//! `eventfd` write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::handle::HandleRef;
use super::pool::Completion;

pub(crate) struct LoopWake {
    waker: mio::Waker,
    woken: AtomicBool,
    asyncs: Mutex<Vec<HandleRef>>,
    completions: Mutex<Vec<Completion>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoopWake {
    pub fn new(waker: mio::Waker) -> Self {
        LoopWake {
            waker,
            woken: AtomicBool::new(false),
            asyncs: Mutex::new(Vec::new()),
            completions: Mutex::new(Vec::new()),
        }
    }

    /// Wakes the loop's poll unless a wake-up is already on its way.
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "cannot wake the loop");
            }
        }
    }

    pub fn post_async(&self, r: HandleRef) {
        lock(&self.asyncs).push(r);
        self.wake();
    }

    pub fn post_completion(&self, c: Completion) {
        lock(&self.completions).push(c);
        self.wake();
    }

    /// Loop thread, on the waker's event: re-arms the wake flag *before* taking the queues, so
    /// a post racing with this either lands in this batch or wakes the loop again.
    pub fn take(&self, asyncs: &mut Vec<HandleRef>, completions: &mut Vec<Completion>) {
        self.woken.store(false, Ordering::Release);
        std::mem::swap(&mut *lock(&self.asyncs), asyncs);
        std::mem::swap(&mut *lock(&self.completions), completions);
    }
}
