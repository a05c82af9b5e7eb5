//! Async handles: cross-thread wake-ups that coalesce.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loopd_engine::{Async, Handle, Loop, RunMode, Timer};

#[test]
fn sends_before_the_loop_runs_coalesce_into_one_callback() {
    let mut lp = Loop::new().unwrap();
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let a = Async::new(&mut lp, move |_, _| *c.borrow_mut() += 1);
    let sender = a.sender(&lp).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = sender.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    assert!(s.send());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    lp.run(RunMode::NoWait);
    assert_eq!(*calls.borrow(), 1, "4000 sends, one callback");
    lp.run(RunMode::NoWait);
    assert_eq!(*calls.borrow(), 1, "no send, no callback");
    a.close(&mut lp);
    lp.run(RunMode::Default);
    assert!(!sender.send(), "sending to a closed handle reports it");
}

#[test]
fn no_send_is_lost_under_four_sending_threads() {
    // Each thread bumps a counter, then sends. The callback closes the handle once it has
    // seen every bump: if any wake-up were lost, the loop would never get there and the
    // watchdog timer below fails the test.
    const PER_THREAD: u64 = 20_000;
    let mut lp = Loop::new().unwrap();
    let bumps = Arc::new(AtomicU64::new(0));
    let calls = Rc::new(RefCell::new(0u64));
    let b = bumps.clone();
    let c = calls.clone();
    let guard = Timer::new(&mut lp);
    let a = Async::new(&mut lp, move |lp, a| {
        *c.borrow_mut() += 1;
        if b.load(Ordering::SeqCst) == 4 * PER_THREAD {
            a.close(lp);
            guard.close(lp);
        }
    });
    guard
        .start(&mut lp, Duration::from_secs(60), Duration::ZERO, |_, _| {
            panic!("a wake-up was lost")
        })
        .unwrap();
    guard.unref(&mut lp);
    let sender = a.sender(&lp).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = sender.clone();
            let b = bumps.clone();
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    b.fetch_add(1, Ordering::SeqCst);
                    s.send();
                }
            })
        })
        .collect();
    lp.run(RunMode::Default);
    for t in threads {
        t.join().unwrap();
    }
    let calls = *calls.borrow();
    assert!(calls >= 1);
    assert!(calls <= 4 * PER_THREAD);
    assert_eq!(lp.observer().snapshot().callback_panics, 0);
}

#[test]
fn a_send_during_the_callback_calls_it_again() {
    let mut lp = Loop::new().unwrap();
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let a = Async::new(&mut lp, move |lp, a| {
        *c.borrow_mut() += 1;
        if *c.borrow() < 3 {
            a.send(lp);
        } else {
            a.close(lp);
        }
    });
    a.send(&lp);
    lp.run(RunMode::Default);
    assert_eq!(*calls.borrow(), 3);
}
