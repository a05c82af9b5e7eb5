//! The thread pool: queue_work results, FIFO, saturation, cancel, panics, resize; work
//! classes (the slow limit, checkpoints), cancelling running slow work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use loopd_engine::instrument::TaskOutcome;
use loopd_engine::{EngineError, Loop, LoopOptions, RequestType, RunMode, ThreadPool, WorkError};

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

// ----- work classes (libuv's UV__WORK_SLOW_IO), cancelling running slow work -----

/// Runs the loop one iteration at a time until `done()` or 10 s have passed.
fn run_until(lp: &mut Loop, what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        lp.run(RunMode::Once);
    }
}

fn tasks(pool: &ThreadPool, kind: RequestType, outcome: TaskOutcome) -> u64 {
    pool.snapshot()
        .tasks
        .iter()
        .find(|(k, o, _)| *k == kind && *o == outcome)
        .unwrap()
        .2
}

#[test]
fn slow_work_takes_at_most_half_the_workers_so_fast_work_finds_one() {
    let (mut lp, pool) = loop_with_pool(4);
    let (started_tx, started_rx) = mpsc::channel::<usize>();
    let gates: Vec<_> = (0..4).map(|_| mpsc::channel::<()>()).collect();
    let mut releases = Vec::new();
    let slow_done = Rc::new(RefCell::new(0));
    for (i, (gate_tx, gate_rx)) in gates.into_iter().enumerate() {
        releases.push(gate_tx);
        let started = started_tx.clone();
        let d = slow_done.clone();
        lp.queue_work_slow(
            move |_| {
                started.send(i).unwrap();
                gate_rx.recv().unwrap();
            },
            move |_, r| {
                r.unwrap();
                *d.borrow_mut() += 1;
            },
        );
    }
    // Two workers dequeue tasks 0 and 1 in FIFO order, but either may report first.
    let mut first: Vec<usize> = (0..2).map(|_| started_rx.recv().unwrap()).collect();
    first.sort_unstable();
    assert_eq!(first, [0, 1], "slow work starts in FIFO order");

    // Two workers are free, yet the other two slow tasks wait: the slow limit is 2 of 4.
    let snap = pool.snapshot();
    assert_eq!((snap.slow_busy_workers, snap.slow_limit), (2, 2));
    assert_eq!(snap.queue_depth, 2);
    let queued = |k| snap.queued.iter().find(|(kind, _)| *kind == k).unwrap().1;
    assert_eq!(queued(RequestType::Work), 2);
    assert_eq!(queued(RequestType::Fs), 0);

    // Fast work queued after them does not wait behind them.
    let fast_done = Rc::new(RefCell::new(false));
    let f = fast_done.clone();
    lp.queue_work(|| 7, move |_, r| *f.borrow_mut() = r == Ok(7));
    let path = std::env::temp_dir().join(format!("loopd-pool-class-{}", std::process::id()));
    std::fs::write(&path, b"x").unwrap();
    let stat_done = Rc::new(RefCell::new(false));
    let s = stat_done.clone();
    lp.fs_stat(&path, move |_, r| *s.borrow_mut() = r.is_ok());
    run_until(&mut lp, "fast work while slow work holds its limit", || {
        *fast_done.borrow() && *stat_done.borrow()
    });
    std::fs::remove_file(&path).unwrap();
    assert!(
        started_rx.try_recv().is_err(),
        "no third slow task started meanwhile"
    );
    assert_eq!(pool.snapshot().slow_busy_workers, 2);

    // Each slow task that ends lets the next one start, in order.
    releases[0].send(()).unwrap();
    assert_eq!(started_rx.recv().unwrap(), 2);
    releases[1].send(()).unwrap();
    assert_eq!(started_rx.recv().unwrap(), 3);
    for r in &releases[2..] {
        r.send(()).unwrap();
    }
    lp.run(RunMode::Default);
    assert_eq!(*slow_done.borrow(), 4);
    let snap = pool.snapshot();
    assert_eq!((snap.slow_busy_workers, snap.queue_depth), (0, 0));
}

#[test]
fn one_worker_runs_both_classes_in_submission_order() {
    let (mut lp, _pool) = loop_with_pool(1);
    let (tx, rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let t = tx.clone();
    lp.queue_work_slow(
        move |_| {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
            t.send("slow 1").unwrap();
        },
        |_, r| r.unwrap(),
    );
    started_rx.recv().unwrap();
    for name in ["fast 1", "slow 2", "fast 2", "slow 3"] {
        let t = tx.clone();
        let work = move || t.send(name).unwrap();
        if name.starts_with("slow") {
            lp.queue_work_slow(move |_| work(), |_, r| r.unwrap());
        } else {
            lp.queue_work(work, |_, r| r.unwrap());
        }
    }
    gate_tx.send(()).unwrap();
    lp.run(RunMode::Default);
    let order: Vec<&str> = rx.try_iter().collect();
    assert_eq!(order, ["slow 1", "fast 1", "slow 2", "fast 2", "slow 3"]);
}

#[test]
fn slow_work_lets_waiting_fast_work_run_at_its_checkpoints() {
    // One worker, held by slow work that only ends once the fast work has run: without
    // checkpoints lending the worker, this never finishes.
    let (mut lp, pool) = loop_with_pool(1);
    let fast_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let seen = fast_ran.clone();
    let slow_result = Rc::new(RefCell::new(None));
    let sr = slow_result.clone();
    lp.queue_work_slow(
        move |ctx| {
            started_tx.send(()).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !seen.load(std::sync::atomic::Ordering::SeqCst) {
                if std::time::Instant::now() > deadline {
                    return false;
                }
                ctx.checkpoint().unwrap();
                std::hint::spin_loop();
            }
            true
        },
        move |_, r| *sr.borrow_mut() = Some(r),
    );
    started_rx.recv().unwrap();
    let fast_thread = Rc::new(RefCell::new(None));
    let ft = fast_thread.clone();
    let flag = fast_ran.clone();
    lp.queue_work(
        move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::current().name().map(str::to_string)
        },
        move |_, r| *ft.borrow_mut() = Some(r.unwrap()),
    );
    lp.run(RunMode::Default);
    assert_eq!(*slow_result.borrow(), Some(Ok(true)));
    assert_eq!(
        *fast_thread.borrow(),
        Some(Some("loopd-worker-0".to_string()))
    );
    assert_eq!(tasks(&pool, RequestType::Work, TaskOutcome::Ok), 2);
}

#[test]
fn cancel_stops_running_slow_work_at_its_next_checkpoint() {
    let (mut lp, pool) = loop_with_pool(1);
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let result = Rc::new(RefCell::new(None));
    let r2 = result.clone();
    let running = lp.queue_work_slow(
        move |ctx| {
            started_tx.send(()).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if ctx.checkpoint().is_err() {
                    return "stopped";
                }
                std::hint::spin_loop();
            }
            "ran to the end"
        },
        move |_, r| *r2.borrow_mut() = Some(r),
    );
    started_rx.recv().unwrap();
    let began = std::time::Instant::now();
    running.cancel(&mut lp).unwrap();
    // A second cancel while it winds down is harmless.
    running.cancel(&mut lp).unwrap();
    lp.run(RunMode::Default);
    assert!(began.elapsed() < Duration::from_secs(5), "stopped early");
    assert_eq!(*result.borrow(), Some(Err(WorkError::Cancelled)));
    assert_eq!(tasks(&pool, RequestType::Work, TaskOutcome::Cancelled), 1);
    assert_eq!(tasks(&pool, RequestType::Work, TaskOutcome::Ok), 0);
    let snap = pool.snapshot();
    assert_eq!((snap.busy_workers, snap.slow_busy_workers), (0, 0));
    assert!(matches!(running.cancel(&mut lp), Err(EngineError::Busy)));

    // Queued slow work is cancelled like any queued work, and the worker serves on.
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    lp.queue_work_slow(
        move |_| {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
        },
        |_, r| r.unwrap(),
    );
    let queued_result = Rc::new(RefCell::new(None));
    let q = queued_result.clone();
    let queued = lp.queue_work_slow(|_| 1, move |_, r| *q.borrow_mut() = Some(r));
    started_rx.recv().unwrap();
    queued.cancel(&mut lp).unwrap();
    gate_tx.send(()).unwrap();
    lp.run(RunMode::Default);
    assert_eq!(*queued_result.borrow(), Some(Err(WorkError::Cancelled)));
    assert_eq!(tasks(&pool, RequestType::Work, TaskOutcome::Cancelled), 2);
}
