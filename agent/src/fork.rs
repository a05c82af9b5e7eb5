//! `fork(2)` in a host the agent runs in. The child has one thread, the one that forked: none
//! of the agent's threads (server, watchdog, symbolizer) and none of the loops other threads
//! ran. So that the child is observable as its own process and nothing of the parent's gets
//! in its way:
//! - around the fork (`pthread_atfork`) the agent holds the locks the loop thread takes
//!   (the registry of loops, the socket path, the pool's table), so the child never inherits
//!   one held by a thread it does not have;
//! - the child's first `uv_run` or prepare callback of an attached loop ([`take_pending`])
//!   gives each loop of its thread a fresh observer (the parent's may be mid-update by a
//!   thread that is gone) and serves them anew: a control socket with the child's pid,
//!   `<program>-<pid>.sock`, and no metrics endpoint (its address is the parent's);
//! - the parent's socket file is the parent's: the child's exit leaves it alone.
//!
//! `posix_spawn`, `vfork` and `system` do not run fork handlers: nothing happens there.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::{pool, serve};

/// A fork happened and the child has not been served yet.
static PENDING: AtomicBool = AtomicBool::new(false);
/// This process is the child of a fork of a process the agent ran in.
static IN_CHILD: AtomicBool = AtomicBool::new(false);

/// Registers the fork handlers (once per process).
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: plain `extern "C" fn()` handlers of this library, which is never unloaded.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if rc != 0 {
            tracing::warn!(
                "loopd-agent: cannot watch for fork ({rc}); a forked child is not observed"
            );
        }
    });
}

/// Whether this process is a forked child (its control socket and metrics differ).
pub fn in_child() -> bool {
    IN_CHILD.load(Ordering::Relaxed)
}

/// Whether the child still has to be served; true once, on the first call after a fork.
#[inline]
pub fn take_pending() -> bool {
    PENDING.load(Ordering::Relaxed) && PENDING.swap(false, Ordering::AcqRel)
}

extern "C" fn prepare() {
    let _ = std::panic::catch_unwind(|| {
        serve::hold_for_fork();
        pool::hold_for_fork();
    });
}

extern "C" fn parent() {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `prepare` took these locks on this very thread just before the fork.
        unsafe {
            pool::release_after_fork();
            serve::release_after_fork();
        }
    });
}

extern "C" fn child() {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as in `parent`; the child's only thread is the one that took them.
        unsafe {
            pool::release_after_fork();
            serve::release_after_fork();
        }
        IN_CHILD.store(true, Ordering::Relaxed);
        PENDING.store(true, Ordering::Release);
    });
}
