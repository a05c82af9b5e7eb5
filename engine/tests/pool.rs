//! The thread pool: queue_work results, FIFO, saturation, cancel, panics, resize.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use loopd_engine::{
    EngineError, Loop, LoopOptions, RequestType, RunMode, TaskOutcome, ThreadPool, WorkError,
};

fn loop_with_pool(size: usize) -> (Loop, Arc<ThreadPool>) {
    let pool = Arc::new(ThreadPool::new(size));
    let lp = Loop::with_options(LoopOptions {
        pool: Some(pool.clone()),
        ..LoopOptions::default()
    })
    .unwrap();
    (lp, pool)
}

fn results_with_pool(size: usize) {
    let (mut lp, _pool) = loop_with_pool(size);
    let results = Rc::new(RefCell::new(Vec::new()));
    for i in 0..200u64 {
        let r = results.clone();
        lp.queue_work(
            move || i * i,
            move |_, v| r.borrow_mut().push((i, v.unwrap())),
        );
    }
    assert!(lp.alive(), "requests in flight keep the loop alive");
    lp.run(RunMode::Default);
    let mut got = results.borrow().clone();
    assert_eq!(got.len(), 200);
    got.sort();
    for (i, v) in got {
        assert_eq!(v, i * i);
    }
}

#[test]
fn queue_work_returns_every_result_with_one_worker() {
    results_with_pool(1);
}

#[test]
fn queue_work_returns_every_result_with_four_workers() {
    results_with_pool(4);
}

#[test]
fn four_workers_run_four_tasks_at_once() {
    let (mut lp, _pool) = loop_with_pool(4);
    let barrier = Arc::new(Barrier::new(4));
    let done = Rc::new(RefCell::new(0));
    for _ in 0..4 {
        let b = barrier.clone();
        let d = done.clone();
        // Each task waits for the other three: only finishes if four run concurrently.
        lp.queue_work(
            move || {
                b.wait();
            },
            move |_, r| {
                r.unwrap();
                *d.borrow_mut() += 1
            },
        );
    }
    lp.run(RunMode::Default);
    assert_eq!(*done.borrow(), 4);
}

#[test]
fn one_worker_runs_tasks_in_fifo_order() {
    let (mut lp, _pool) = loop_with_pool(1);
    let (tx, rx) = mpsc::channel();
    for i in 0..50 {
        let tx = tx.clone();
        lp.queue_work(move || tx.send(i).unwrap(), |_, r| r.unwrap());
    }
    lp.run(RunMode::Default);
    let order: Vec<i32> = rx.try_iter().collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
}

#[test]
fn saturation_shows_queue_depth_and_wait_time() {
    let (mut lp, pool) = loop_with_pool(1);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    lp.queue_work(
        move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
        },
        |_, r| r.unwrap(),
    );
    for _ in 0..4 {
        lp.queue_work(|| (), |_, r| r.unwrap());
    }
    started_rx.recv().unwrap();
    let snap = pool.snapshot();
    assert_eq!(snap.size, 1);
    assert_eq!(snap.busy_workers, 1);
    assert_eq!(snap.queue_depth, 4);
    assert_eq!(snap.workers.len(), 1);
    assert!(
        snap.workers[0].current.is_some(),
        "the worker shows its task"
    );
    // Requests in flight are listed as queued or running.
    lp.publish_now();
    let listed = lp.observer().snapshot().request_list.clone();
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed
            .iter()
            .filter(|r| r.state == loopd_engine::RequestState::Running)
            .count(),
        1
    );

    std::thread::sleep(Duration::from_millis(30));
    gate_tx.send(()).unwrap();
    lp.run(RunMode::Default);
    let snap = pool.snapshot();
    assert_eq!(snap.queue_depth, 0);
    assert_eq!(snap.busy_workers, 0);
    let (_, wait) = snap
        .queue_wait
        .iter()
        .find(|(k, _)| *k == RequestType::Work)
        .unwrap();
    assert_eq!(wait.count(), 5);
    assert!(
        wait.max() >= 20_000_000,
        "queued tasks waited behind the gate: max {} ns",
        wait.max()
    );
    let ok = snap
        .tasks
        .iter()
        .find(|(k, o, _)| *k == RequestType::Work && *o == TaskOutcome::Ok)
        .unwrap()
        .2;
    assert_eq!(ok, 5);
}

#[test]
fn cancel_works_only_while_queued() {
    let (mut lp, pool) = loop_with_pool(1);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let o = outcomes.clone();
    let running = lp.queue_work(
        move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
            1
        },
        move |_, r| o.borrow_mut().push(("running", r)),
    );
    let o = outcomes.clone();
    let queued = lp.queue_work(|| 2, move |_, r| o.borrow_mut().push(("queued", r)));
    started_rx.recv().unwrap();

    assert!(matches!(running.cancel(&mut lp), Err(EngineError::Busy)));
    queued.cancel(&mut lp).unwrap();
    assert!(
        outcomes.borrow().is_empty(),
        "after-work runs in the loop, later"
    );
    gate_tx.send(()).unwrap();
    lp.run(RunMode::Default);

    let got = outcomes.borrow();
    assert!(got.contains(&("queued", Err(WorkError::Cancelled))));
    assert!(got.contains(&("running", Ok(1))));
    let cancelled = pool
        .snapshot()
        .tasks
        .iter()
        .find(|(k, o, _)| *k == RequestType::Work && *o == TaskOutcome::Cancelled)
        .unwrap()
        .2;
    assert_eq!(cancelled, 1);
    assert!(matches!(queued.cancel(&mut lp), Err(EngineError::Busy)));
}

#[test]
fn a_panic_in_work_completes_with_an_error_and_the_worker_lives_on() {
    let (mut lp, pool) = loop_with_pool(1);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let o = outcomes.clone();
    lp.queue_work(
        || -> u32 { panic!("work exploded") },
        move |_, r| o.borrow_mut().push(r),
    );
    let o = outcomes.clone();
    lp.queue_work(|| 7u32, move |_, r| o.borrow_mut().push(r));
    lp.run(RunMode::Default);
    let got = outcomes.borrow();
    assert_eq!(
        got[0],
        Err(WorkError::Panicked("work exploded".to_string()))
    );
    assert_eq!(got[1], Ok(7), "the same single worker ran the next task");
    let snap = pool.snapshot();
    assert_eq!(snap.panics, 1);
    assert_eq!(snap.workers.len(), 1);
}

#[test]
fn resizing_changes_the_worker_count() {
    let (mut lp, pool) = loop_with_pool(2);
    lp.queue_work(|| (), |_, r| r.unwrap());
    lp.run(RunMode::Default);
    assert_eq!(pool.snapshot().workers.len(), 2);
    assert_eq!(pool.set_size(6), 6);
    assert_eq!(pool.snapshot().workers.len(), 6);
    assert_eq!(pool.set_size(0), 1, "clamped to at least one");
    assert_eq!(pool.set_size(5000), 1024, "clamped to at most 1024");
    pool.set_size(1);
    // Surplus workers exit once they notice; the pool keeps serving meanwhile.
    let barrier_done = Rc::new(RefCell::new(false));
    let d = barrier_done.clone();
    lp.queue_work(|| 5, move |_, r| *d.borrow_mut() = r == Ok(5));
    lp.run(RunMode::Default);
    assert!(*barrier_done.borrow());
    for _ in 0..500 {
        if pool.snapshot().workers.len() == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("surplus workers did not exit");
}
