//! `loopd-peer SCENARIO [--no-instrument] [--n N] [--inflight K] [--conns C] [--chunk B --file
//! PATH --sum S]`: the loopd side of
//! loopd-bench. Each scenario mirrors its libuv peer in `peers/libuv/` line for line.
//! Prints one JSON result line on stdout; exits 3 for a scenario it does not have.
#![allow(clippy::print_stdout)]

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use loopd::engine::{
    Async, Handle as _, Idle, Loop, LoopOptions, ReadEvent, RunMode, Tcp, ThreadPool, Timer,
};
use serde_json::{json, Value};

/// Exit code for "no such scenario" (the harness shows the peer as n/a).
const EXIT_UNSUPPORTED: u8 = 3;

#[path = "../peer_args.rs"]
mod peer_args;
use peer_args::{sample_sum, Args};

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let scenario = it.next().context("missing SCENARIO")?;
    peer_args::parse_args(scenario, it, true)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "loopd-peer: {e:#}\nusage: loopd-peer SCENARIO [--no-instrument] [--n N] \
                 [--inflight K] [--conns C] [--chunk B --file PATH --sum S]\nscenarios: \
                 timers async1 queue_work echo loop_count fs_read"
            );
            return ExitCode::from(64);
        }
    };
    // Sized as the daemon sizes it (the pool reads no environment): the harness gives every
    // peer the same size through LOOPD_THREADPOOL_SIZE / UV_THREADPOOL_SIZE.
    match loopd::config::threadpool_size_from_env() {
        Ok(Some(n)) => {
            ThreadPool::global().set_size(n);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("loopd-peer: {e}");
            return ExitCode::from(64);
        }
    }
    let result = match args.scenario.as_str() {
        "timers" => timers(&args),
        "async1" => async1(&args),
        "queue_work" => queue_work(&args),
        "echo" => echo(&args),
        "loop_count" => loop_count(&args),
        "fs_read" => fs_read(&args),
        other => {
            eprintln!("loopd-peer: no scenario {other:?}");
            return ExitCode::from(EXIT_UNSUPPORTED);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopd-peer: {}: {e:#}", args.scenario);
            ExitCode::from(2)
        }
    }
}

fn new_loop(args: &Args) -> Result<Loop> {
    Loop::with_options(LoopOptions {
        instrument: args.instrument,
        ..Default::default()
    })
    .context("creating the loop")
}

fn emit(args: &Args, ops: u64, seconds: f64, mut extra: Value) {
    extra["instrument"] = json!(args.instrument);
    let line = json!({
        "scenario": args.scenario,
        "peer": if args.instrument { "loopd-on" } else { "loopd-off" },
        "ops": ops,
        "seconds": seconds,
        "extra": extra,
    });
    println!("{line}");
}

/// libuv's loop_count: an idle handle drives n empty iterations; iterations per second. With
/// instrumentation on, every iteration is timed phase by phase (the point of the scenario).
fn loop_count(args: &Args) -> Result<()> {
    let n = args.n;
    let mut lp = new_loop(args)?;
    let idle = Idle::new(&mut lp);
    let mut ticks = 0u64;
    idle.start(&mut lp, move |lp: &mut Loop, h: Idle| {
        ticks += 1;
        if ticks == n {
            h.stop(lp);
        }
    })?;
    let start = Instant::now();
    lp.run(RunMode::Default);
    let seconds = start.elapsed().as_secs_f64();
    emit(args, n, seconds, json!({ "handle": "idle" }));
    Ok(())
}

thread_local! {
    static TIMER_CB_CALLED: Cell<u64> = const { Cell::new(0) };
    static CLOSE_CB_CALLED: Cell<u64> = const { Cell::new(0) };
}

/// libuv's million_timers: n timers, timeout 1 ms for the first 1000, 2 ms for the next
/// 1000, ...; run until all fired; close all; run until all closed. The callbacks
/// capture nothing (counters are thread-locals, like the C statics), so no closure
/// allocates.
fn timers(args: &Args) -> Result<()> {
    let n = args.n;
    let mut lp = new_loop(args)?;
    let mut timers: Vec<Timer> = Vec::with_capacity(usize::try_from(n)?);
    let mut timeout = 0;

    let before_all = Instant::now();
    for i in 0..n {
        if i % 1000 == 0 {
            timeout += 1;
        }
        let t = Timer::new(&mut lp);
        t.start(
            &mut lp,
            Duration::from_millis(timeout),
            Duration::ZERO,
            |_: &mut Loop, _: Timer| TIMER_CB_CALLED.with(|c| c.set(c.get() + 1)),
        )?;
        timers.push(t);
    }
    let before_run = Instant::now();
    lp.run(RunMode::Default);
    let after_run = Instant::now();
    for t in &timers {
        t.close_then(&mut lp, |_: &mut Loop| {
            CLOSE_CB_CALLED.with(|c| c.set(c.get() + 1))
        });
    }
    lp.run(RunMode::Default);
    let after_all = Instant::now();

    let fired = TIMER_CB_CALLED.with(Cell::get);
    let closed = CLOSE_CB_CALLED.with(Cell::get);
    ensure!(fired == n, "{fired} of {n} timers fired");
    ensure!(closed == n, "{closed} of {n} timers closed");
    emit(
        args,
        n,
        (after_all - before_all).as_secs_f64(),
        json!({
            "init_seconds": (before_run - before_all).as_secs_f64(),
            "dispatch_seconds": (after_run - before_run).as_secs_f64(),
            "cleanup_seconds": (after_all - after_run).as_secs_f64(),
        }),
    );
    Ok(())
}

/// libuv's async1: a ping-pong of async sends between this thread's loop and a loop on a
/// second thread, n round trips. The worker sends first; each callback sends to the
/// other side and closes its handle after n sends.
fn async1(args: &Args) -> Result<()> {
    let n = args.n;
    let instrument = args.instrument;
    let mut lp = new_loop(args)?;

    // The main handle's callback needs the worker's sender, which exists only once the
    // worker thread has made its loop.
    let to_worker: Rc<std::cell::OnceCell<loopd::engine::AsyncSender>> = Rc::default();
    let main_seen = Rc::new(Cell::new(0u64));
    let main_async = Async::new(&mut lp, {
        let to_worker = Rc::clone(&to_worker);
        let main_seen = Rc::clone(&main_seen);
        let mut main_sent = 0u64;
        move |lp: &mut Loop, a: Async| {
            if let Some(w) = to_worker.get() {
                w.send();
            }
            main_sent += 1;
            main_seen.set(main_seen.get() + 1);
            if main_sent >= n {
                a.close(lp);
            }
        }
    });
    let to_main = main_async
        .sender(&lp)
        .context("the main async handle has no sender")?;

    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("async1-worker".to_owned())
        .spawn(move || -> Result<(u64, u64)> {
            let mut wl = Loop::with_options(LoopOptions {
                instrument,
                ..Default::default()
            })
            .context("creating the worker loop")?;
            let first_ping = to_main.clone();
            let seen = Rc::new(Cell::new(0u64));
            let sent = Rc::new(Cell::new(0u64));
            let worker_async = Async::new(&mut wl, {
                let (seen, sent) = (Rc::clone(&seen), Rc::clone(&sent));
                move |wl: &mut Loop, a: Async| {
                    to_main.send();
                    sent.set(sent.get() + 1);
                    seen.set(seen.get() + 1);
                    if sent.get() >= n {
                        a.close(wl);
                    }
                }
            });
            let sender = worker_async
                .sender(&wl)
                .context("the worker async handle has no sender")?;
            tx.send(sender).ok().context("the main thread is gone")?;
            // As in C: the worker sends first, then runs its loop.
            first_ping.send();
            wl.run(RunMode::Default);
            Ok((seen.get(), sent.get()))
        })
        .context("spawning the worker thread")?;
    let w = rx
        .recv()
        .context("the worker thread ended before it was ready")?;
    let _ = to_worker.set(w);

    let start = Instant::now();
    lp.run(RunMode::Default);
    let (worker_seen, worker_sent) = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the worker thread panicked"))??;
    let seconds = start.elapsed().as_secs_f64();

    ensure!(worker_sent == n, "worker sent {worker_sent} of {n}");
    ensure!(worker_seen == n, "worker saw {worker_seen} of {n}");
    ensure!(main_seen.get() == n, "main saw {} of {n}", main_seen.get());
    emit(args, n, seconds, json!({}));
    Ok(())
}

static RNG: AtomicU32 = AtomicU32::new(0);

/// libuv's work function: one step of a linear congruential generator (racy across
/// workers on purpose, as in C: the value does not matter).
fn work() -> u32 {
    let g = RNG
        .load(Ordering::Relaxed)
        .wrapping_mul(214_013)
        .wrapping_add(2_531_011);
    RNG.store(g, Ordering::Relaxed);
    g
}

thread_local! {
    static STARTED: Cell<u64> = const { Cell::new(0) };
    static COMPLETED: Cell<u64> = const { Cell::new(0) };
    static FAILED: Cell<u64> = const { Cell::new(0) };
    static TOTAL: Cell<u64> = const { Cell::new(0) };
}

fn queue_one(lp: &mut Loop) {
    STARTED.with(|s| s.set(s.get() + 1));
    lp.queue_work(work, after_work);
}

fn after_work(lp: &mut Loop, r: Result<u32, loopd::engine::WorkError>) {
    if r.is_err() {
        FAILED.with(|f| f.set(f.get() + 1));
    }
    COMPLETED.with(|c| c.set(c.get() + 1));
    if STARTED.with(Cell::get) < TOTAL.with(Cell::get) {
        queue_one(lp);
    }
}

/// Thread-pool jobs: `inflight` queued at the start, each after-work queues the next
/// until n have completed (inflight 1: round-trip latency; 1000: throughput).
fn queue_work(args: &Args) -> Result<()> {
    let n = args.n;
    let inflight = args.inflight.min(n);
    let mut lp = new_loop(args)?;
    TOTAL.with(|t| t.set(n));

    let start = Instant::now();
    for _ in 0..inflight {
        queue_one(&mut lp);
    }
    lp.run(RunMode::Default);
    let seconds = start.elapsed().as_secs_f64();

    let completed = COMPLETED.with(Cell::get);
    let failed = FAILED.with(Cell::get);
    ensure!(completed == n, "{completed} of {n} jobs completed");
    ensure!(failed == 0, "{failed} jobs failed");
    emit(
        args,
        n,
        seconds,
        json!({
            "inflight": inflight,
            "threadpool_size": ThreadPool::global().size(),
        }),
    );
    Ok(())
}

thread_local! {
    static ACCEPTED: Cell<u64> = const { Cell::new(0) };
    static CONNS_CLOSED: Cell<u64> = const { Cell::new(0) };
    static CONNS_WANTED: Cell<u64> = const { Cell::new(0) };
}

/// The server side of the network scenarios (pingpong, pingpong100, pound, pump,
/// idle_memory), the same echo server as `peers/libuv/echo.c`: a listener on 127.0.0.1:0
/// whose port is the first line on stdout; each connection echoes what it reads
/// (`read_start` → `write_slice(data, None)`: no allocation when the socket takes it all;
/// a remainder the socket refuses is queued in order) and closes on EOF or error. Under
/// bulk load (`pump`) the daemon's backpressure applies: when the write queue would pass
/// [`HIGH_WATER`], that write gets a callback and reads stop until it has gone out. After
/// `conns` accepts the listener closes, and the loop returns when every connection has
/// closed. The client in the harness measures; the harness reads this process's CPU time.
fn echo(args: &Args) -> Result<()> {
    let mut lp = new_loop(args)?;
    CONNS_WANTED.with(|c| c.set(args.conns));
    let server = Tcp::new(&mut lp);
    server.bind(&mut lp, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    server.listen(&mut lp, 1024, on_connection)?;
    let port = server.local_addr(&lp)?.port();
    println!("{port}");
    lp.run(RunMode::Default);
    let (accepted, closed) = (ACCEPTED.with(Cell::get), CONNS_CLOSED.with(Cell::get));
    ensure!(
        accepted == args.conns && closed == args.conns,
        "accepted {accepted}, closed {closed} of {} connections",
        args.conns
    );
    println!("{}", json!({ "accepted": accepted }));
    Ok(())
}

fn on_connection(lp: &mut Loop, server: Tcp, status: std::io::Result<()>) {
    if status.is_err() {
        return;
    }
    let Ok(client) = server.accept(lp) else {
        return;
    };
    let accepted = ACCEPTED.with(|a| {
        a.set(a.get() + 1);
        a.get()
    });
    if accepted == CONNS_WANTED.with(Cell::get) {
        server.close(lp);
    }
    if client.read_start(lp, on_read).is_err() {
        close_conn(lp, client);
    }
}

/// Queued output above which an echo connection stops reading until it has drained: the
/// daemon's services' mark (`loopd::services::flow`).
const HIGH_WATER: usize = loopd::services::flow::HIGH_WATER;

fn on_read(lp: &mut Loop, client: Tcp, ev: ReadEvent<'_>) {
    match ev {
        ReadEvent::Data(d) => {
            let over = client.write_queue_size(lp) + d.len() > HIGH_WATER;
            let resume: Option<loopd::engine::DoneCb> = if over {
                // Resumes even after a failed write: the read side then sees the error.
                Some(Box::new(move |lp: &mut Loop, _| {
                    let _ = client.read_resume(lp);
                }))
            } else {
                None
            };
            if client.write_slice(lp, d, resume).is_err() {
                close_conn(lp, client);
            } else if over {
                client.read_stop(lp);
            }
        }
        ReadEvent::Eof | ReadEvent::Error(_) => close_conn(lp, client),
    }
}

fn close_conn(lp: &mut Loop, client: Tcp) {
    client.close_then(lp, |_: &mut Loop| CONNS_CLOSED.with(|c| c.set(c.get() + 1)));
}

thread_local! {
    static FS_BYTES: Cell<u64> = const { Cell::new(0) };
    static FS_SUM: Cell<u64> = const { Cell::new(0) };
    static FS_READS: Cell<u64> = const { Cell::new(0) };
    static FS_CLOSED: Cell<bool> = const { Cell::new(false) };
    static FS_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn fs_failed(what: &str, e: &std::io::Error) {
    FS_ERROR.with(|f| *f.borrow_mut() = Some(format!("{what}: {e}")));
}

/// Sequential file read through the engine's fs requests, like `peers/libuv/fs_read.c`:
/// `fs_open`, then `fs_read_into` of one chunk at a time at the running offset into one
/// buffer (each read on the thread pool), until a read comes back empty, then `fs_close`. Checks the byte count (n chunks) and the checksum.
fn fs_read(args: &Args) -> Result<()> {
    let path = args.file.clone().context("--file is required")?;
    let want_sum = args.sum.context("--sum is required")?;
    let chunk = usize::try_from(args.chunk)?;
    let want_bytes = args.n * args.chunk;
    let mut lp = new_loop(args)?;

    let start = Instant::now();
    lp.fs_open(path, move |lp: &mut Loop, r| match r {
        Ok(file) => read_chunk(lp, file, 0, vec![0; chunk]),
        Err(e) => fs_failed("open", &e),
    });
    lp.run(RunMode::Default);
    let seconds = start.elapsed().as_secs_f64();

    if let Some(e) = FS_ERROR.with(|f| f.borrow_mut().take()) {
        bail!("{e}");
    }
    let (bytes, sum, reads) = (
        FS_BYTES.with(Cell::get),
        FS_SUM.with(Cell::get),
        FS_READS.with(Cell::get),
    );
    ensure!(FS_CLOSED.with(Cell::get), "the file was not closed");
    ensure!(bytes == want_bytes, "read {bytes} of {want_bytes} bytes");
    ensure!(sum == want_sum, "checksum {sum}, expected {want_sum}");
    emit(
        args,
        args.n,
        seconds,
        json!({
            "bytes": bytes,
            "reads": reads,
            "chunk": chunk,
            "threadpool_size": ThreadPool::global().size(),
        }),
    );
    Ok(())
}

/// Reads the chunk at `offset` into `buf` (one buffer for the whole file, as the libuv peer
/// does), then the next.
fn read_chunk(lp: &mut Loop, file: loopd::engine::FsFile, offset: u64, buf: Vec<u8>) {
    let f = std::sync::Arc::clone(&file);
    lp.fs_read_into(&f, offset, buf, move |lp: &mut Loop, r, buf| match r {
        Ok(n) => {
            FS_READS.with(|c| c.set(c.get() + 1));
            if n == 0 {
                lp.fs_close(file, |_: &mut Loop, r| match r {
                    Ok(()) => FS_CLOSED.with(|c| c.set(true)),
                    Err(e) => fs_failed("close", &e),
                });
                return;
            }
            FS_SUM.with(|s| s.set(s.get().wrapping_add(sample_sum(offset, &buf[..n]))));
            FS_BYTES.with(|b| b.set(b.get() + n as u64));
            read_chunk(lp, file, offset + n as u64, buf);
        }
        Err(e) => fs_failed("read", &e),
    });
}
