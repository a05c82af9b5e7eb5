//! Panics in user code that loopd catches and reports itself (a service factory, a service's
//! `start`): [`catch`] turns one into an error carrying its message, and the panic hook the
//! `loopd` binary installs ([`install_hook`]) stays quiet for those — the error names the
//! service in one line — and logs every other panic as one `tracing` line (no backtrace on
//! stderr; callback panics are caught and logged by the engine too).

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// Set while [`catch`] runs user code on this thread.
    static REPORTED_BY_CALLER: Cell<bool> = const { Cell::new(false) };
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
pub fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Runs `f`; a panic in it becomes `Err(its message)`, reported by the caller (the hook
/// stays quiet).
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let outer = REPORTED_BY_CALLER.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    REPORTED_BY_CALLER.with(|q| q.set(outer));
    result.map_err(|payload| message(payload.as_ref()).to_string())
}

/// Installs the process's panic hook: one `tracing` error line per panic (where and what),
/// none for panics [`catch`] reports.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        if REPORTED_BY_CALLER.with(Cell::get) {
            return;
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            %location,
            "panic: {}",
            message(info.payload())
        );
    }));
}
