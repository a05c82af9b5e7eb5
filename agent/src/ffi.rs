//! The agent's C entry points: the `uv_run` interposer and `loopd_agent_attach` /
//! `loopd_agent_detach` (declared in `agent/include/loopd_agent.h`). Each catches panics.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::uv::{self, Ptr};
use crate::{loop_agent, real, serve};

thread_local! {
    /// Loops this thread failed to attach (not retried on every `uv_run`).
    static FAILED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Attaches `uv_loop` on this thread if it is not yet; `Err` with a one-line reason.
fn attach_here(uv_loop: Ptr) -> Result<(), String> {
    if loop_agent::is_attached(uv_loop) {
        return Ok(());
    }
    if FAILED.with(|f| f.borrow().contains(&(uv_loop as usize))) {
        return Err("already refused".into());
    }
    serve::init_logging();
    crate::fork::install();
    let result = uv::get().map_err(String::from).and_then(|uv| {
        let index = serve::next_index();
        // SAFETY: `uv_loop` is the initialized loop this thread is about to run (uv_run's or
        // loopd_agent_attach's contract).
        let observer = unsafe { loop_agent::attach(uv, uv_loop, index) }?;
        serve::add(uv_loop as usize, observer);
        tracing::info!(
            "loopd-agent: attached to loop {uv_loop:p} (loop {index}, libuv {})",
            uv.version()
        );
        Ok(())
    });
    if let Err(e) = &result {
        FAILED.with(|f| f.borrow_mut().push(uv_loop as usize));
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("loopd-agent: not attaching: {e}");
        }
    }
    result
}

/// Interposes `uv_run`: attaches the loop the first time it runs, then runs libuv's.
///
/// # Safety
/// As libuv's `uv_run`.
#[no_mangle]
pub unsafe extern "C" fn uv_run(uv_loop: Ptr, mode: c_int) -> c_int {
    type Real = unsafe extern "C" fn(Ptr, c_int) -> c_int;
    let Some(real) = real!("uv_run", Real) else {
        return 0;
    };
    if !uv_loop.is_null() {
        let _ = std::panic::catch_unwind(|| {
            if crate::fork::take_pending() {
                loop_agent::adopt_after_fork();
            }
            let _ = attach_here(uv_loop);
            loop_agent::loop_entered(uv_loop);
        });
    }
    // SAFETY: forwarding the host's call.
    let rc = unsafe { real(uv_loop, mode) };
    if !uv_loop.is_null() {
        let _ = std::panic::catch_unwind(|| loop_agent::loop_left(uv_loop));
    }
    rc
}

/// Attaches the agent to `uv_loop`: call on the thread that runs it, before or between
/// `uv_run` calls. 0 on success (or already attached), -1 otherwise (the reason is logged on
/// stderr once).
///
/// # Safety
/// `uv_loop` is an initialized `uv_loop_t *`.
#[no_mangle]
pub unsafe extern "C" fn loopd_agent_attach(uv_loop: Ptr) -> c_int {
    if uv_loop.is_null() {
        return -1;
    }
    match std::panic::catch_unwind(|| attach_here(uv_loop)) {
        Ok(Ok(())) => 0,
        _ => -1,
    }
}

/// Detaches the agent from `uv_loop` (on its thread): its handles close, it leaves the
/// control socket and metrics. 0 on success, -1 if it was not attached here.
///
/// # Safety
/// As [`loopd_agent_attach`]; the loop must run (or be run) for the agent's handles to close.
#[no_mangle]
pub unsafe extern "C" fn loopd_agent_detach(uv_loop: Ptr) -> c_int {
    let detached = std::panic::catch_unwind(|| {
        // SAFETY: per this function's contract.
        let observer = unsafe { loop_agent::detach(uv_loop) }?;
        serve::remove(uv_loop as usize);
        Some(observer)
    });
    match detached {
        Ok(Some(_)) => 0,
        _ => -1,
    }
}

/// `UV_RUN_NOWAIT`.
const UV_RUN_NOWAIT: c_int = 2;

/// Interposes `uv_loop_close`: the agent's own handles would make it fail with `UV_EBUSY`, so
/// the agent detaches first and, when its handles are all that is left, runs one
/// non-blocking iteration for their close callbacks — the host sees the result it would have
/// had without the agent.
///
/// # Safety
/// As libuv's `uv_loop_close`.
#[no_mangle]
pub unsafe extern "C" fn uv_loop_close(uv_loop: Ptr) -> c_int {
    type Close = unsafe extern "C" fn(Ptr) -> c_int;
    type Run = unsafe extern "C" fn(Ptr, c_int) -> c_int;
    let Some(close) = real!("uv_loop_close", Close) else {
        return -libc::ENOSYS;
    };
    let _ = std::panic::catch_unwind(|| {
        if !loop_agent::is_attached(uv_loop) {
            return;
        }
        // SAFETY: uv_loop_close's contract: a live loop, on its thread.
        let alone = unsafe { loop_agent::only_ours_left(uv_loop) };
        // SAFETY: as above.
        if unsafe { loop_agent::detach(uv_loop) }.is_some() {
            serve::remove(uv_loop as usize);
        }
        if alone {
            if let Some(run) = real!("uv_run", Run) {
                // SAFETY: runs our closing handles' close callbacks; nothing else is left.
                unsafe { run(uv_loop, UV_RUN_NOWAIT) };
            }
        }
    });
    // SAFETY: forwarding the host's call.
    unsafe { close(uv_loop) }
}
