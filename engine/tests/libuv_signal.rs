//! libuv's `test/test-signal.c` ported (`we_get_signal`, `we_get_signals`), plus the one-shot
//! start of newer libuv (`uv_signal_start_oneshot`) and `kill` (`uv_kill`). Each test uses
//! its own signals: the tests of this file share one process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use loopd_engine::{Handle, Loop, RunMode, Signal, Timer};
use support::port_loop;

const NSIGNALS: u32 = 10;

/// A timer raising `signum` every 5 ms, closed after `NSIGNALS`.
fn start_timer(lp: &mut Loop, signum: i32) -> Rc<Cell<u32>> {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let t = Timer::new(lp);
    t.start(
        lp,
        Duration::from_millis(5),
        Duration::from_millis(5),
        move |lp, t| {
            loopd_engine::kill(std::process::id() as i32, signum).unwrap();
            c.set(c.get() + 1);
            if c.get() == NSIGNALS {
                t.close(lp);
            }
        },
    )
    .unwrap();
    calls
}

#[derive(Clone, Copy, PartialEq)]
enum Then {
    Close,
    Stop,
}

/// A signal handle counting `signum`, stopped or closed after `NSIGNALS`.
fn start_watcher(lp: &mut Loop, signum: i32, then: Then) -> (Signal, Rc<Cell<u32>>) {
    let calls = Rc::new(Cell::new(0));
    let h = Signal::new(lp);
    watch(lp, h, signum, then, &calls);
    (h, calls)
}

fn watch(lp: &mut Loop, h: Signal, signum: i32, then: Then, calls: &Rc<Cell<u32>>) {
    let c = calls.clone();
    h.start(lp, signum, move |lp, h, got| {
        assert_eq!(got, signum);
        c.set(c.get() + 1);
        if c.get() == NSIGNALS {
            match then {
                Then::Stop => h.stop(lp),
                Then::Close => h.close(lp),
            }
        }
    })
    .unwrap();
}

#[test]
fn we_get_signal() {
    let mut lp = port_loop();
    let tc = start_timer(&mut lp, libc::SIGCHLD);
    let (sc_handle, sc) = start_watcher(&mut lp, libc::SIGCHLD, Then::Stop);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(tc.get(), NSIGNALS);
    assert_eq!(sc.get(), NSIGNALS);

    // Stopped: the next signals are not counted.
    let tc = start_timer(&mut lp, libc::SIGCHLD);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(tc.get(), NSIGNALS);
    assert_eq!(sc.get(), NSIGNALS);

    sc.set(0);
    watch(&mut lp, sc_handle, libc::SIGCHLD, Then::Close, &sc);
    let tc = start_timer(&mut lp, libc::SIGCHLD);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(tc.get(), NSIGNALS);
    assert_eq!(sc.get(), NSIGNALS);
}

#[test]
fn we_get_signals() {
    let mut lp = port_loop();
    let sc: Vec<_> = [libc::SIGUSR1, libc::SIGUSR1, libc::SIGUSR2, libc::SIGUSR2]
        .into_iter()
        .map(|s| start_watcher(&mut lp, s, Then::Close).1)
        .collect();
    let tc = [
        start_timer(&mut lp, libc::SIGUSR1),
        start_timer(&mut lp, libc::SIGUSR2),
    ];
    assert!(!lp.run(RunMode::Default));
    for c in &sc {
        assert_eq!(c.get(), NSIGNALS);
    }
    for c in &tc {
        assert_eq!(c.get(), NSIGNALS);
    }
}

/// `uv_signal_start_oneshot`: the handle stops at its first delivery.
#[test]
fn signal_oneshot() {
    let mut lp = port_loop();
    let h = Signal::new(&mut lp);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    h.start_oneshot(&mut lp, libc::SIGWINCH, move |lp, h, _| {
        assert!(!h.is_active(lp), "stopped as its callback begins");
        c.set(c.get() + 1);
    })
    .unwrap();
    let tc = start_timer(&mut lp, libc::SIGWINCH);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(tc.get(), NSIGNALS);
    assert_eq!(calls.get(), 1);
    h.close(&mut lp);
    lp.run(RunMode::Default);
}

/// `uv_kill` with a bad signal or a process that does not exist is an error.
#[test]
fn kill_errors() {
    assert!(loopd_engine::kill(std::process::id() as i32, 4096).is_err());
    assert!(loopd_engine::kill(i32::MAX, libc::SIGTERM).is_err());
}

on_instrumented_loops!(we_get_signal, we_get_signals, signal_oneshot, kill_errors);
