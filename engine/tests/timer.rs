//! Timer handles: ordering, repeat, again, stop inside callbacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use loopd_engine::{Handle, Loop, RunMode, Timer};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn equal_timeouts_fire_in_start_order_and_shorter_first() {
    let mut lp = Loop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for (name, timeout) in [("late", 20), ("a", 5), ("b", 5), ("c", 5), ("first", 0)] {
        let t = Timer::new(&mut lp);
        let o = order.clone();
        t.start(&mut lp, ms(timeout), Duration::ZERO, move |_, _| {
            o.borrow_mut().push(name)
        })
        .unwrap();
    }
    lp.run(RunMode::Default);
    assert_eq!(*order.borrow(), vec!["first", "a", "b", "c", "late"]);
}

#[test]
fn timers_never_fire_early() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    let start = lp.now();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    t.start(&mut lp, ms(25), Duration::ZERO, move |lp, _| {
        *s.borrow_mut() = Some(lp.now())
    })
    .unwrap();
    lp.run(RunMode::Default);
    let fired_at = seen.borrow().expect("fired");
    assert!(fired_at - start >= ms(25));
}

#[test]
fn repeat_fires_until_stopped_and_again_restarts() {
    let mut lp = Loop::new().unwrap();
    let count = Rc::new(RefCell::new(0));
    let t = Timer::new(&mut lp);
    let c = count.clone();
    t.start(&mut lp, ms(1), ms(2), move |lp, t| {
        *c.borrow_mut() += 1;
        if *c.borrow() == 4 {
            t.stop(lp);
        }
    })
    .unwrap();
    assert_eq!(t.repeat(&lp), ms(2));
    lp.run(RunMode::Default);
    assert_eq!(*count.borrow(), 4);
    assert!(!t.is_active(&lp));

    // again(): restarts with the repeat as timeout, keeping the callback.
    t.again(&mut lp).unwrap();
    assert!(t.is_active(&lp));
    assert!(t.due_in(&lp) <= ms(2));
    let c = count.clone();
    t.start(&mut lp, ms(1), ms(1), move |lp, t| {
        *c.borrow_mut() += 1;
        t.set_repeat(lp, Duration::ZERO);
    })
    .unwrap();
    lp.run(RunMode::Default);
    assert_eq!(*count.borrow(), 6, "fires once more after set_repeat(0)");
}

#[test]
fn again_without_start_is_an_error_and_without_repeat_a_no_op() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    assert!(t.again(&mut lp).is_err());
    t.start(&mut lp, ms(50), Duration::ZERO, |_, _| {}).unwrap();
    t.stop(&mut lp);
    t.again(&mut lp).unwrap();
    assert!(!t.is_active(&lp), "again without repeat does not restart");
}

#[test]
fn a_timer_stopped_by_an_earlier_callback_of_the_same_batch_does_not_fire() {
    let mut lp = Loop::new().unwrap();
    let fired = Rc::new(RefCell::new(Vec::new()));
    let second = Timer::new(&mut lp);
    let first = Timer::new(&mut lp);
    let f = fired.clone();
    first
        .start(&mut lp, ms(5), Duration::ZERO, move |lp, _| {
            f.borrow_mut().push("first");
            second.stop(lp);
        })
        .unwrap();
    let f = fired.clone();
    second
        .start(&mut lp, ms(5), Duration::ZERO, move |_, _| {
            f.borrow_mut().push("second")
        })
        .unwrap();
    lp.run(RunMode::Default);
    assert_eq!(*fired.borrow(), vec!["first"]);
}

#[test]
fn a_zero_timer_started_in_a_callback_waits_for_the_next_iteration() {
    let mut lp = Loop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let outer = Timer::new(&mut lp);
    let inner = Timer::new(&mut lp);
    let l = log.clone();
    outer
        .start(&mut lp, Duration::ZERO, Duration::ZERO, move |lp, _| {
            l.borrow_mut().push("outer");
            let l2 = l.clone();
            inner
                .start(lp, Duration::ZERO, Duration::ZERO, move |_, _| {
                    l2.borrow_mut().push("inner")
                })
                .unwrap();
        })
        .unwrap();
    lp.run(RunMode::NoWait);
    assert_eq!(*log.borrow(), vec!["outer"]);
    lp.run(RunMode::NoWait);
    assert_eq!(*log.borrow(), vec!["outer", "inner"]);
}

#[test]
fn restarting_many_times_keeps_one_live_entry() {
    // The idle-timeout pattern: restart a timer on every event; it must fire once, late.
    let mut lp = Loop::new().unwrap();
    let fired = Rc::new(RefCell::new(0));
    let t = Timer::new(&mut lp);
    for _ in 0..10_000 {
        let f = fired.clone();
        t.start(&mut lp, ms(1), Duration::ZERO, move |_, _| {
            *f.borrow_mut() += 1
        })
        .unwrap();
    }
    lp.run(RunMode::Default);
    assert_eq!(*fired.borrow(), 1);
}
