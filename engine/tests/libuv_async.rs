//! libuv's `test/test-async.c` and `test/test-async-null-cb.c` ported: sends from another
//! thread wake the loop and run the async callback (coalesced, never lost after the last
//! send); a closed async handle lets the loop end.
//!
//! `async_null_cb` initialises the handle with a NULL callback; a Rust closure cannot be
//! null, so the port gives it one that does nothing — the point of the test (a send with
//! nothing to call still wakes the loop, which then runs its check handle) is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use loopd_engine::{Async, Check, Handle, Prepare, RunMode};
use support::port_loop;

#[test]
fn r#async() {
    let mut lp = port_loop();
    let async_cb_called = Arc::new(AtomicU32::new(0));
    let prepare_cb_called = Rc::new(Cell::new(0));
    let close_cb_called = Rc::new(Cell::new(0));
    let prepare = Prepare::new(&mut lp);

    let (n, closed) = (async_cb_called.clone(), close_cb_called.clone());
    let handle = Async::new(&mut lp, move |lp, h| {
        if n.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
            let c = closed.clone();
            h.close_then(lp, move |_| c.set(c.get() + 1));
            let c = closed.clone();
            prepare.close_then(lp, move |_| c.set(c.get() + 1));
        }
    });
    let sender = handle
        .sender(&lp)
        .expect("an open async handle has a sender");
    let thread = Rc::new(RefCell::new(None));
    let (p, n, t) = (
        prepare_cb_called.clone(),
        async_cb_called.clone(),
        thread.clone(),
    );
    let mut sender = Some(sender);
    prepare
        .start(&mut lp, move |_, _| {
            p.set(p.get() + 1);
            let (Some(sender), n) = (sender.take(), n.clone()) else {
                return;
            };
            // libuv's thread_cb: send until the callback ran three times.
            *t.borrow_mut() = Some(std::thread::spawn(move || {
                while n.load(Ordering::SeqCst) < 3 {
                    sender.send();
                    std::thread::yield_now();
                }
            }));
        })
        .unwrap();

    assert!(!lp.run(RunMode::Default));
    assert!(prepare_cb_called.get() > 0);
    assert_eq!(async_cb_called.load(Ordering::SeqCst), 3);
    assert_eq!(close_cb_called.get(), 2);
    let thread = thread.borrow_mut().take().expect("the thread was started");
    thread.join().unwrap();
}

#[test]
fn async_null_cb() {
    let mut lp = port_loop();
    let handle = Async::new(&mut lp, |_, _| {});
    let check = Check::new(&mut lp);
    let check_cb_called = Rc::new(Cell::new(0));
    let c = check_cb_called.clone();
    check
        .start(&mut lp, move |lp, check| {
            assert_eq!(c.get(), 0);
            handle.close(lp);
            check.close(lp);
            c.set(c.get() + 1);
        })
        .unwrap();
    let sender = handle.sender(&lp).unwrap();
    let thread = std::thread::spawn(move || {
        sender.send();
    });
    assert!(!lp.run(RunMode::Default));
    thread.join().unwrap();
    assert_eq!(check_cb_called.get(), 1);
}

on_instrumented_loops!(r#async, async_null_cb);
