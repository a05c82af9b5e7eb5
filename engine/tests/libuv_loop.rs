//! libuv's `test/test-active.c`, `test/test-run-nowait.c`, `test/test-idle.c`
//! (`idle_starvation`; `idle_check` is in `libuv_port.rs`), `test/test-loop-close.c` and
//! `test/test-loop-handles.c` ported: handle activity and closing states, a NoWait run that
//! fires nothing early, idle handles that do not starve timers, `Loop::close` (libuv's
//! `uv_loop_close`) refusing a busy loop, and the prepare / check / idle choreography of
//! `loop_handles`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use loopd_engine::{Check, Handle, Idle, Loop, Prepare, RunMode, Timer};
use support::port_loop;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn counter() -> Rc<Cell<u32>> {
    Rc::new(Cell::new(0))
}

fn bump(c: &Rc<Cell<u32>>) -> impl FnOnce(&mut Loop) + 'static {
    let c = c.clone();
    move |_| c.set(c.get() + 1)
}

#[test]
fn active() {
    let mut lp = port_loop();
    let close_cb_called = counter();
    let timer = Timer::new(&mut lp);
    let timer_cb = |_: &mut Loop, _: Timer| panic!("timer_cb should not have been called");
    assert!(!timer.is_active(&lp));
    assert!(!timer.is_closing(&lp));
    timer
        .start(&mut lp, ms(1000), Duration::ZERO, timer_cb)
        .unwrap();
    assert!(timer.is_active(&lp));
    assert!(!timer.is_closing(&lp));
    timer.stop(&mut lp);
    assert!(!timer.is_active(&lp));
    assert!(!timer.is_closing(&lp));
    timer
        .start(&mut lp, ms(1000), Duration::ZERO, timer_cb)
        .unwrap();
    assert!(timer.is_active(&lp));
    assert!(!timer.is_closing(&lp));
    timer.close_then(&mut lp, bump(&close_cb_called));
    assert!(!timer.is_active(&lp));
    assert!(timer.is_closing(&lp));
    assert!(!lp.run(RunMode::Default));
    assert_eq!(close_cb_called.get(), 1);
}

#[test]
fn run_nowait() {
    let mut lp = port_loop();
    let timer_called = counter();
    let timer = Timer::new(&mut lp);
    let t = timer_called.clone();
    timer
        .start(&mut lp, ms(100), ms(100), move |_, _| t.set(1))
        .unwrap();
    assert!(lp.run(RunMode::NoWait));
    assert_eq!(timer_called.get(), 0);
}

#[test]
fn idle_starvation() {
    let mut lp = port_loop();
    let (idle_cb_called, check_cb_called) = (counter(), counter());
    let (timer_cb_called, close_cb_called) = (counter(), counter());
    let idle = Idle::new(&mut lp);
    let c = idle_cb_called.clone();
    idle.start(&mut lp, move |_, _| c.set(c.get() + 1)).unwrap();
    let check = Check::new(&mut lp);
    let c = check_cb_called.clone();
    check
        .start(&mut lp, move |_, _| c.set(c.get() + 1))
        .unwrap();
    let timer = Timer::new(&mut lp);
    let (t, closed) = (timer_cb_called.clone(), close_cb_called.clone());
    timer
        .start(&mut lp, ms(50), Duration::ZERO, move |lp, timer| {
            idle.close_then(lp, bump(&closed));
            check.close_then(lp, bump(&closed));
            timer.close_then(lp, bump(&closed));
            t.set(t.get() + 1);
        })
        .unwrap();
    assert!(!lp.run(RunMode::Default));
    assert!(idle_cb_called.get() > 0);
    assert!(check_cb_called.get() > 0);
    assert_eq!(timer_cb_called.get(), 1);
    assert_eq!(close_cb_called.get(), 3);
}

#[test]
fn loop_close() {
    let mut lp = port_loop();
    let timer = Timer::new(&mut lp);
    timer
        .start(&mut lp, ms(100), ms(100), |lp, _| lp.stop())
        .unwrap();
    let busy = lp.close().expect_err("an active timer makes the loop busy");
    assert_eq!((busy.handles, busy.requests), (1, 0));
    let mut lp = busy.into_loop();
    lp.run(RunMode::Default);
    timer.close(&mut lp);
    assert!(!lp.run(RunMode::Default));
    lp.close().expect("nothing lives");
}

/// libuv cannot clean up after this test (a loop with queued work cannot be closed); in
/// Rust the loop is dropped: the work's after-callback is dropped with it, never run.
#[test]
fn loop_instant_close() {
    let mut lp = port_loop();
    let after = counter();
    let a = after.clone();
    lp.queue_work(|| {}, move |_, _| a.set(a.get() + 1));
    drop(lp);
    assert_eq!(after.get(), 0);
    assert_eq!(
        Rc::strong_count(&after),
        1,
        "the after-callback was dropped"
    );
}

const IDLE_COUNT: usize = 7;
const ITERATIONS: u32 = 21;

/// The state of `loop_handles`, shared by its callbacks.
#[derive(Default)]
struct LoopHandles {
    loop_iteration: u32,
    prepare_1_cb_called: u32,
    prepare_1_close_cb_called: u32,
    prepare_2_cb_called: u32,
    prepare_2_close_cb_called: u32,
    check_cb_called: u32,
    check_close_cb_called: u32,
    idle_1_cb_called: u32,
    idle_1_close_cb_called: u32,
    idles_1_active: i32,
    idle_2_close_cb_called: u32,
    idle_2_cb_started: u32,
    idle_2_is_active: bool,
    idle_2: Option<Idle>,
    idle_2_cb_called: u32,
}

type Shared = Rc<RefCell<LoopHandles>>;

fn idle_2_cb(s: &Shared) -> impl FnMut(&mut Loop, Idle) + 'static {
    let s = s.clone();
    move |lp, h| {
        s.borrow_mut().idle_2_cb_called += 1;
        let s = s.clone();
        h.close_then(lp, move |_| {
            let mut st = s.borrow_mut();
            assert!(st.idle_2_is_active);
            st.idle_2_close_cb_called += 1;
            st.idle_2_is_active = false;
        });
    }
}

fn idle_1_cb(s: &Shared) -> impl FnMut(&mut Loop, Idle) + 'static {
    let s = s.clone();
    move |lp, h| {
        assert!(s.borrow().idles_1_active > 0);
        let closing = s.borrow().idle_2.is_some_and(|i| i.is_closing(lp));
        if !s.borrow().idle_2_is_active && !closing {
            let idle_2 = Idle::new(lp);
            idle_2.start(lp, idle_2_cb(&s)).unwrap();
            let mut st = s.borrow_mut();
            st.idle_2 = Some(idle_2);
            st.idle_2_is_active = true;
            st.idle_2_cb_started += 1;
        }
        let mut st = s.borrow_mut();
        st.idle_1_cb_called += 1;
        if st.idle_1_cb_called.is_multiple_of(5) {
            h.stop(lp);
            st.idles_1_active -= 1;
        }
    }
}

#[test]
fn loop_handles() {
    let mut lp = port_loop();
    let s: Shared = Rc::default();
    let prepare_1 = Prepare::new(&mut lp);
    let prepare_2 = Prepare::new(&mut lp);
    let check = Check::new(&mut lp);
    let idle_1: Vec<Idle> = (0..IDLE_COUNT).map(|_| Idle::new(&mut lp)).collect();

    let st = s.clone();
    prepare_1
        .start(&mut lp, move |lp, _| {
            if st.borrow().loop_iteration.is_multiple_of(2) {
                let st = st.clone();
                prepare_2
                    .start(lp, move |lp, h| {
                        // Started by prepare_1 in an even iteration, it runs from the
                        // next one on: a started watcher is not queued until then.
                        let mut st = st.borrow_mut();
                        assert_ne!(st.loop_iteration % 2, 0);
                        h.stop(lp);
                        st.prepare_2_cb_called += 1;
                    })
                    .unwrap();
            }
            let mut st = st.borrow_mut();
            st.prepare_1_cb_called += 1;
            st.loop_iteration += 1;
        })
        .unwrap();

    let st = s.clone();
    check
        .start(&mut lp, move |lp, h| {
            let iteration = st.borrow().loop_iteration;
            if iteration < ITERATIONS {
                for idle in idle_1.iter().take(1 + iteration as usize % IDLE_COUNT) {
                    idle.start(lp, idle_1_cb(&st)).unwrap();
                    st.borrow_mut().idles_1_active += 1;
                }
            } else {
                let c = st.clone();
                prepare_1.close_then(lp, move |_| c.borrow_mut().prepare_1_close_cb_called += 1);
                let c = st.clone();
                h.close_then(lp, move |_| c.borrow_mut().check_close_cb_called += 1);
                let c = st.clone();
                prepare_2.close_then(lp, move |_| c.borrow_mut().prepare_2_close_cb_called += 1);
                for idle in &idle_1 {
                    let c = st.clone();
                    idle.close_then(lp, move |_| c.borrow_mut().idle_1_close_cb_called += 1);
                }
                let idle_2 = st.borrow().idle_2;
                if let (true, Some(idle_2)) = (st.borrow().idle_2_is_active, idle_2) {
                    let c = st.clone();
                    idle_2.close_then(lp, move |_| {
                        let mut c = c.borrow_mut();
                        c.idle_2_close_cb_called += 1;
                        c.idle_2_is_active = false;
                    });
                }
            }
            st.borrow_mut().check_cb_called += 1;
        })
        .unwrap();

    // Keeps the loop polling, unref'd: it must not keep the loop alive.
    let timer = Timer::new(&mut lp);
    timer.start(&mut lp, ms(100), ms(100), |_, _| {}).unwrap();
    timer.unref(&mut lp);

    assert!(!lp.run(RunMode::Default));
    let st = s.borrow();
    assert_eq!(st.loop_iteration, ITERATIONS);
    assert_eq!(st.prepare_1_cb_called, ITERATIONS);
    assert_eq!(st.prepare_1_close_cb_called, 1);
    assert_eq!(st.prepare_2_cb_called, ITERATIONS / 2);
    assert_eq!(st.prepare_2_close_cb_called, 1);
    assert_eq!(st.check_cb_called, ITERATIONS);
    assert_eq!(st.check_close_cb_called, 1);
    assert_eq!(st.idle_1_close_cb_called, IDLE_COUNT as u32);
    assert_eq!(st.idle_2_close_cb_called, st.idle_2_cb_started);
    assert!(!st.idle_2_is_active);
}

on_instrumented_loops!(
    active,
    run_nowait,
    idle_starvation,
    loop_close,
    loop_instant_close,
    loop_handles,
);
