//! libuv's `test/test-threadpool.c` and `test/test-threadpool-cancel.c` ported: work runs
//! once and its after-callback once; queued work, fs and getaddrinfo requests can be
//! cancelled (their callbacks then get `Cancelled` / `ECANCELED`), running work cannot
//! (`Busy`, libuv's `UV_EBUSY`).
//!
//! No equivalent here:
//! - `threadpool_queue_work_einval` (a NULL work callback): a Rust closure cannot be null.
//! - `threadpool_cancel_getnameinfo`, `threadpool_cancel_random`: the engine has no
//!   `uv_getnameinfo` or `uv_random`.
//! - libuv's `known_broken` fs requests (io_uring ones cannot be cancelled on Linux): the
//!   engine's fs requests all go through the pool, so every one of them can be cancelled.
//!
//! `saturate_threadpool` is libuv's: a pool of 4 whose workers all block until
//! `unblock_threadpool`; requests queued after them wait, so they can be cancelled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use loopd_engine::{
    EngineError, FsFile, Handle, Loop, RunMode, ThreadPool, Timer, WorkError, WorkRequest,
};
use support::port_loop_with_pool;

const POOL_SIZE: usize = 4;

/// libuv's `saturate_threadpool`: a loop on a pool of 4 whose workers each run a task that
/// waits for its gate; dropping the returned gates is `unblock_threadpool`.
fn saturated_loop() -> (Loop, Vec<mpsc::Sender<()>>) {
    let mut lp = port_loop_with_pool(Arc::new(ThreadPool::new(POOL_SIZE)));
    let (started_tx, started_rx) = mpsc::channel();
    let mut gates = Vec::new();
    for _ in 0..POOL_SIZE {
        let (gate, wait) = mpsc::channel::<()>();
        gates.push(gate);
        let started = started_tx.clone();
        lp.queue_work(
            move || {
                started.send(()).unwrap();
                let _ = wait.recv();
            },
            |_, r| assert_eq!(r, Ok(())),
        );
    }
    // Hand the tasks to the pool and wait until every worker holds one.
    assert!(lp.run(RunMode::NoWait));
    for _ in 0..POOL_SIZE {
        started_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a worker started its pause task");
    }
    (lp, gates)
}

/// libuv's `timer_cb`: after 10 ms, cancels every request (each must succeed), closes the
/// timer and unblocks the pool.
fn cancel_from_a_timer(
    lp: &mut Loop,
    reqs: Vec<WorkRequest>,
    gates: Vec<mpsc::Sender<()>>,
) -> Rc<Cell<u32>> {
    let timer_cb_called = Rc::new(Cell::new(0));
    let t = timer_cb_called.clone();
    let timer = Timer::new(lp);
    let mut gates = Some(gates);
    timer
        .start(
            lp,
            Duration::from_millis(10),
            Duration::ZERO,
            move |lp, h| {
                for req in &reqs {
                    req.cancel(lp).expect("a queued request can be cancelled");
                }
                h.close(lp);
                drop(gates.take());
                t.set(t.get() + 1);
            },
        )
        .unwrap();
    timer_cb_called
}

fn is_cancelled<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::ECANCELED))
}

#[test]
fn threadpool_queue_work_simple() {
    let mut lp = port_loop_with_pool(Arc::new(ThreadPool::new(POOL_SIZE)));
    let work_cb_count = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let after_work_cb_count = Rc::new(Cell::new(0));
    let (w, a) = (work_cb_count.clone(), after_work_cb_count.clone());
    lp.queue_work(
        move || {
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            'd'
        },
        move |_, r| {
            assert_eq!(r, Ok('d'));
            a.set(a.get() + 1);
        },
    );
    assert!(!lp.run(RunMode::Default));
    assert_eq!(work_cb_count.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(after_work_cb_count.get(), 1);
}

#[test]
fn threadpool_cancel_getaddrinfo() {
    let (mut lp, gates) = saturated_loop();
    let called = Rc::new(Cell::new(0));
    let mut reqs = Vec::new();
    for host in ["fail", "fail.invalid", "fail", "fail"] {
        let c = called.clone();
        reqs.push(lp.getaddrinfo(host, 0, move |_, r| {
            assert!(is_cancelled(&r), "{r:?}");
            c.set(c.get() + 1);
        }));
    }
    let timer_cb_called = cancel_from_a_timer(&mut lp, reqs, gates);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(timer_cb_called.get(), 1);
    assert_eq!(called.get(), 4);
}

#[test]
fn threadpool_cancel_work() {
    let (mut lp, gates) = saturated_loop();
    let done2_cb_called = Rc::new(Cell::new(0));
    let mut reqs = Vec::new();
    for _ in 0..16 {
        let d = done2_cb_called.clone();
        reqs.push(lp.queue_work(
            || panic!("work2_cb called"),
            move |_, r: Result<(), WorkError>| {
                assert_eq!(r, Err(WorkError::Cancelled));
                d.set(d.get() + 1);
            },
        ));
    }
    let timer_cb_called = cancel_from_a_timer(&mut lp, reqs, gates);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(timer_cb_called.get(), 1);
    assert_eq!(done2_cb_called.get(), 16);
}

/// The fs requests the engine has, each on a path or descriptor that would fail or do
/// nothing harmful if it ran: none runs, each is called back with `ECANCELED`.
#[test]
fn threadpool_cancel_fs() {
    let (mut lp, gates) = saturated_loop();
    let fs_cb_called = Rc::new(Cell::new(0));
    let file: FsFile = Arc::new(std::fs::File::open("/dev/null").unwrap());
    let mut reqs = Vec::new();
    macro_rules! cb {
        () => {{
            let c = fs_cb_called.clone();
            move |_: &mut Loop, r| {
                assert!(is_cancelled(&r), "{r:?}");
                c.set(c.get() + 1);
            }
        }};
    }
    reqs.push(lp.fs_open("/", cb!()));
    reqs.push(lp.fs_open_with("/", std::fs::OpenOptions::new(), cb!()));
    reqs.push(lp.fs_read(&file, 0, 0, cb!()));
    let c = fs_cb_called.clone();
    reqs.push(lp.fs_read_into(&file, 0, Vec::new(), move |_, r, _| {
        assert!(is_cancelled(&r), "{r:?}");
        c.set(c.get() + 1);
    }));
    reqs.push(lp.fs_write(&file, 0, Vec::new(), cb!()));
    reqs.push(lp.fs_close(file.clone(), cb!()));
    reqs.push(lp.fs_stat("/", cb!()));
    reqs.push(lp.fs_realpath("/", cb!()));
    reqs.push(lp.fs_readdir("/", cb!()));
    let n = reqs.len();
    let timer_cb_called = cancel_from_a_timer(&mut lp, reqs, gates);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(fs_cb_called.get(), n);
    assert_eq!(timer_cb_called.get(), 1);
}

#[test]
fn threadpool_cancel_single() {
    let (mut lp, gates) = saturated_loop();
    let done_cb_called = Rc::new(Cell::new(0));
    let d = done_cb_called.clone();
    let req = lp.queue_work(
        || std::process::abort(),
        move |_, r: Result<(), WorkError>| {
            assert_eq!(r, Err(WorkError::Cancelled));
            d.set(d.get() + 1);
        },
    );
    req.cancel(&mut lp).unwrap();
    assert_eq!(done_cb_called.get(), 0);
    drop(gates);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(done_cb_called.get(), 1);
}

#[test]
fn threadpool_cancel_when_busy() {
    let mut lp = port_loop_with_pool(Arc::new(ThreadPool::new(POOL_SIZE)));
    let (sem_post, sem_wait) = mpsc::channel();
    let done_cb_called = Rc::new(Cell::new(0));
    let d = done_cb_called.clone();
    let (release, busy) = mpsc::channel::<()>();
    let req = lp.queue_work(
        move || {
            sem_post.send(()).unwrap();
            // libuv sleeps 10 ms, assuming uv_cancel takes less; a gate needs no guess.
            let _ = busy.recv();
        },
        move |_, r| {
            assert_eq!(r, Ok(()));
            d.set(d.get() + 1);
        },
    );
    // Hand it to the pool without waiting for it.
    assert!(lp.run(RunMode::NoWait));
    sem_wait.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(req.cancel(&mut lp), Err(EngineError::Busy)));
    drop(release);
    assert!(!lp.run(RunMode::Default));
    assert_eq!(done_cb_called.get(), 1);
}

on_instrumented_loops!(
    threadpool_queue_work_simple,
    threadpool_cancel_getaddrinfo,
    threadpool_cancel_work,
    threadpool_cancel_fs,
    threadpool_cancel_single,
    threadpool_cancel_when_busy,
);
