//! The loop's iteration: phase order, run modes, stop, alive/ref/unref, close order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use loopd_engine::{Async, Check, Handle, Idle, Loop, Prepare, RunMode, Timer};
use support::{log, plain_loop, push};

#[test]
fn phases_run_in_libuv_order() {
    let mut lp = Loop::new().unwrap();
    let l = log();

    let t = Timer::new(&mut lp);
    let lt = l.clone();
    t.start(&mut lp, Duration::ZERO, Duration::ZERO, move |_, _| {
        push(&lt, "timers")
    })
    .unwrap();

    let idle = Idle::new(&mut lp);
    let li = l.clone();
    idle.start(&mut lp, move |lp, h| {
        push(&li, "idle");
        h.stop(lp);
    })
    .unwrap();

    let prep = Prepare::new(&mut lp);
    let lpr = l.clone();
    prep.start(&mut lp, move |lp, h| {
        push(&lpr, "prepare");
        h.stop(lp);
    })
    .unwrap();

    let la = l.clone();
    let a = Async::new(&mut lp, move |lp, a| {
        push(&la, "poll");
        a.close(lp);
    });
    assert!(a.send(&lp));

    let victim = Timer::new(&mut lp);
    let check = Check::new(&mut lp);
    let lc = l.clone();
    check
        .start(&mut lp, move |lp, h| {
            push(&lc, "check");
            let lcl = lc.clone();
            victim.close_then(lp, move |_| push(&lcl, "close"));
            h.stop(lp);
        })
        .unwrap();

    assert!(!lp.run(RunMode::Default), "nothing is alive afterwards");
    assert_eq!(
        *l.borrow(),
        vec!["timers", "idle", "prepare", "poll", "check", "close"]
    );
}

#[test]
fn nowait_returns_at_once_with_a_pending_timer() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    t.start(&mut lp, Duration::from_secs(30), Duration::ZERO, |_, _| {})
        .unwrap();
    let started = Instant::now();
    assert!(lp.run(RunMode::NoWait), "the timer keeps the loop alive");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(t.is_active(&lp));
}

#[test]
fn once_blocks_for_the_timer_and_fires_it() {
    let mut lp = plain_loop();
    let fired = Rc::new(RefCell::new(0));
    let t = Timer::new(&mut lp);
    let f = fired.clone();
    t.start(
        &mut lp,
        Duration::from_millis(30),
        Duration::ZERO,
        move |_, _| *f.borrow_mut() += 1,
    )
    .unwrap();
    let started = Instant::now();
    let alive = lp.run(RunMode::Once);
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        *fired.borrow(),
        1,
        "Once fires the timer its poll waited for"
    );
    assert!(!alive);
}

#[test]
fn default_runs_until_nothing_is_alive() {
    let mut lp = Loop::new().unwrap();
    let count = Rc::new(RefCell::new(0));
    let t = Timer::new(&mut lp);
    let c = count.clone();
    t.start(
        &mut lp,
        Duration::from_millis(1),
        Duration::from_millis(1),
        move |lp, t| {
            *c.borrow_mut() += 1;
            if *c.borrow() == 5 {
                t.stop(lp);
            }
        },
    )
    .unwrap();
    assert!(!lp.run(RunMode::Default));
    assert_eq!(*count.borrow(), 5);
}

#[test]
fn stop_returns_early_and_the_loop_can_resume() {
    let mut lp = Loop::new().unwrap();
    let count = Rc::new(RefCell::new(0));
    let t = Timer::new(&mut lp);
    let c = count.clone();
    t.start(
        &mut lp,
        Duration::ZERO,
        Duration::from_millis(1),
        move |lp, t| {
            *c.borrow_mut() += 1;
            match *c.borrow() {
                3 => lp.stop(),
                6 => t.close(lp),
                _ => {}
            }
        },
    )
    .unwrap();
    assert!(lp.run(RunMode::Default), "stopped while the timer is alive");
    assert_eq!(*count.borrow(), 3);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(*count.borrow(), 6);
}

#[test]
fn unrefd_handles_do_not_keep_the_loop_alive() {
    let mut lp = Loop::new().unwrap();
    let fired = Rc::new(RefCell::new(false));
    let t = Timer::new(&mut lp);
    let f = fired.clone();
    t.start(
        &mut lp,
        Duration::from_secs(30),
        Duration::ZERO,
        move |_, _| *f.borrow_mut() = true,
    )
    .unwrap();
    t.unref(&mut lp);
    assert!(!t.has_ref(&lp));
    assert!(!lp.alive());
    let started = Instant::now();
    assert!(!lp.run(RunMode::Default));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!*fired.borrow());

    // ref again: alive; an unref'd idle handle runs while a ref'd timer keeps the loop up.
    t.ref_(&mut lp);
    assert!(lp.alive());
    t.stop(&mut lp);
    assert!(!lp.alive());

    let idle_runs = Rc::new(RefCell::new(0u32));
    let idle = Idle::new(&mut lp);
    let ir = idle_runs.clone();
    idle.start(&mut lp, move |_, _| *ir.borrow_mut() += 1)
        .unwrap();
    idle.unref(&mut lp);
    let short = Timer::new(&mut lp);
    short
        .start(
            &mut lp,
            Duration::from_millis(20),
            Duration::ZERO,
            |_, _| {},
        )
        .unwrap();
    assert!(!lp.run(RunMode::Default));
    assert!(*idle_runs.borrow() > 0, "the unref'd idle handle ran");
    assert!(idle.is_active(&lp), "and is still active");
}

#[test]
fn close_callbacks_run_in_the_close_phase_latest_first() {
    let mut lp = Loop::new().unwrap();
    let l = log();
    let handles = [
        Timer::new(&mut lp),
        Timer::new(&mut lp),
        Timer::new(&mut lp),
    ];
    for (h, name) in handles.iter().zip(["a", "b", "c"]) {
        let l2 = l.clone();
        h.close_then(&mut lp, move |_| push(&l2, name));
        assert!(h.is_closing(&lp));
    }
    assert!(lp.alive(), "closing handles keep the loop alive");
    assert!(
        l.borrow().is_empty(),
        "close callbacks wait for the close phase"
    );
    assert!(!lp.run(RunMode::Default));
    assert_eq!(
        *l.borrow(),
        vec!["c", "b", "a"],
        "libuv runs close callbacks LIFO"
    );
    let mut left = 0;
    lp.walk(|h| {
        if h.label.as_deref() != Some("loopd lag probe") {
            left += 1
        }
    });
    assert_eq!(left, 0, "closed handles are freed");
}

#[test]
fn closing_twice_is_harmless_and_a_closed_handle_cannot_start() {
    let mut lp = Loop::new().unwrap();
    let count = Rc::new(RefCell::new(0));
    let t = Timer::new(&mut lp);
    let c = count.clone();
    t.close_then(&mut lp, move |_| *c.borrow_mut() += 1);
    t.close(&mut lp);
    assert!(t
        .start(&mut lp, Duration::ZERO, Duration::ZERO, |_, _| {})
        .is_err());
    lp.run(RunMode::Default);
    assert_eq!(*count.borrow(), 1);
    assert!(t
        .start(&mut lp, Duration::ZERO, Duration::ZERO, |_, _| {})
        .is_err());
}
