//! Idle, prepare and check handles: once per iteration in their phase, newest first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use loopd_engine::{Check, Handle, Idle, Loop, Prepare, RunMode, Timer};
use support::{log, plain_loop, push};

#[test]
fn idle_handles_keep_the_poll_from_blocking() {
    let mut lp = plain_loop();
    let t = Timer::new(&mut lp);
    t.start(&mut lp, Duration::from_secs(60), Duration::ZERO, |_, _| {})
        .unwrap();
    let idle = Idle::new(&mut lp);
    let runs = Rc::new(RefCell::new(0u32));
    let r = runs.clone();
    idle.start(&mut lp, move |lp, _| {
        *r.borrow_mut() += 1;
        if *r.borrow() == 1000 {
            lp.stop();
        }
    })
    .unwrap();
    assert_eq!(lp.backend_timeout(), Some(0));
    let started = Instant::now();
    assert!(lp.run(RunMode::Default));
    assert_eq!(*runs.borrow(), 1000);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "1000 iterations did not wait for the 60 s timer"
    );
    idle.stop(&mut lp);
    let timeout = lp.backend_timeout().expect("a timer is due");
    assert!(
        timeout > 50_000_000_000,
        "blocks until the timer: {timeout} ns"
    );
}

#[test]
fn watchers_run_newest_first_and_newcomers_wait_a_turn() {
    let mut lp = Loop::new().unwrap();
    let l = log();
    let a = Check::new(&mut lp);
    let b = Check::new(&mut lp);
    let late = Check::new(&mut lp);
    let la = l.clone();
    a.start(&mut lp, move |lp, h| {
        push(&la, "a");
        h.stop(lp);
    })
    .unwrap();
    let lb = l.clone();
    b.start(&mut lp, move |lp, h| {
        push(&lb, "b");
        let ll = lb.clone();
        late.start(lp, move |lp, h| {
            push(&ll, "late");
            h.stop(lp);
        })
        .unwrap();
        h.stop(lp);
    })
    .unwrap();
    // Keep one more iteration coming.
    let t = Timer::new(&mut lp);
    t.start(&mut lp, Duration::from_millis(5), Duration::ZERO, |_, _| {})
        .unwrap();
    lp.run(RunMode::Once);
    assert_eq!(*l.borrow(), vec!["b", "a"]);
    lp.run(RunMode::Default);
    assert_eq!(*l.borrow(), vec!["b", "a", "late"]);
}

#[test]
fn a_watcher_stopped_earlier_in_its_pass_does_not_run() {
    let mut lp = plain_loop();
    let l = log();
    let older = Prepare::new(&mut lp);
    let newer = Prepare::new(&mut lp);
    let lo = l.clone();
    older
        .start(&mut lp, move |lp, h| {
            push(&lo, "older");
            h.stop(lp);
        })
        .unwrap();
    let ln = l.clone();
    newer
        .start(&mut lp, move |lp, h| {
            push(&ln, "newer");
            // Runs first (newest first) and stops the other before its turn.
            older.stop(lp);
            h.stop(lp);
        })
        .unwrap();
    lp.run(RunMode::NoWait);
    assert_eq!(*l.borrow(), vec!["newer"]);
    assert!(!older.is_active(&lp));
}
