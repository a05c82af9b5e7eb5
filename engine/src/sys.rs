//! The engine's only contact with raw OS interfaces beyond `mio`: the identity of the thread
//! that runs a loop (so an observer can signal it for a stack sample), and `kill`. Every `unsafe` block
//! of the crate lives in this module.
#![allow(unsafe_code)]

/// Identifies an OS thread so that another thread can signal it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadIdentity {
    /// `pthread_t` of the thread (for `pthread_kill`).
    pub pthread: libc::pthread_t,
    /// Kernel thread id (as in `/proc/<pid>/task/<tid>`).
    pub tid: i32,
}

/// The calling thread's identity.
pub fn current_thread() -> ThreadIdentity {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    let pthread = unsafe { libc::pthread_self() };
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    ThreadIdentity { pthread, tid }
}

/// The calling thread's `pthread_t` (cheap: no system call).
pub fn current_pthread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() }
}

/// Sends `signum` to process `pid` (libuv's `uv_kill`).
///
/// # Errors
/// The OS error (`ESRCH`: no such process, `EPERM`, `EINVAL`: not a signal).
pub fn kill(pid: i32, signum: i32) -> std::io::Result<()> {
    // SAFETY: kill only sends a signal; a bad pid or signal is an error return, not UB.
    if unsafe { libc::kill(pid, signum) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
