//! `tokio-peer SCENARIO [--n N] [--inflight K] [--conns C] [--chunk B --file PATH --sum S]`:
//! the tokio side of loopd-bench, on tokio's **current-thread** runtime (one thread runs
//! every task, like one libuv loop; `enable_all`: the epoll driver and the timer wheel).
//! Each scenario mirrors its libuv peer in `peers/libuv/` as closely as tokio allows:
//!
//! - `timers`: n spawned tasks, each `sleep_until(start + timeout)` with libuv's timeouts
//!   (1 ms for the first 1000, 2 ms for the next 1000, ...); `init` spawns them, `dispatch`
//!   runs until the last has fired, `cleanup` awaits every `JoinHandle` (which frees the
//!   tasks, the counterpart of closing the timers).
//! - `async1`: ping-pong between two current-thread runtimes on two threads through a
//!   `tokio::sync::Notify` each way — a wake-up without payload that stores one permit
//!   when nobody waits, the closest thing to `uv_async_send`.
//! - `queue_work`: `spawn_blocking` round trips, `inflight` tasks each awaiting one job at
//!   a time until n jobs have started; the blocking pool is capped at the pool size the
//!   harness gives every peer (`LOOPD_THREADPOOL_SIZE`, then `UV_THREADPOOL_SIZE`, else 4).
//! - `echo`: one task per connection: `readable`, then `try_read_buf` into a 64 KiB buffer
//!   allocated per read (libuv's echo server mallocs one per read too), `write_all` back.
//! - `fs_read`: `tokio::fs::File` and `AsyncReadExt::read` into a 64 KiB buffer (each read
//!   is one `spawn_blocking` hop plus a copy out of tokio's own buffer).
//! - `loop_count`: tokio has no idle handle (no hook that runs once per loop iteration), so
//!   there is no equivalent: exits 3, shown as n/a.
//!
//! Prints one JSON result line on stdout (`echo`: the port first, then `{"accepted":C}`);
//! exits 3 for a scenario it does not have.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Notify;

/// Exit code for "no such scenario" (the harness shows the peer as n/a).
const EXIT_UNSUPPORTED: u8 = 3;

/// The scenarios this peer has.
const SCENARIOS: &[&str] = &["timers", "async1", "queue_work", "echo", "fs_read"];

#[path = "../peer_args.rs"]
mod peer_args;
use peer_args::{sample_sum, Args};

fn parse_args(scenario: String, it: impl Iterator<Item = String>) -> Result<Args> {
    peer_args::parse_args(scenario, it, false)
}

fn main() -> ExitCode {
    let mut it = std::env::args().skip(1);
    let scenario = it.next().unwrap_or_default();
    if !SCENARIOS.contains(&scenario.as_str()) {
        eprintln!(
            "tokio-peer: no scenario {scenario:?} (scenarios: {}; loop_count has no tokio \
             equivalent: no idle handle)",
            SCENARIOS.join(" ")
        );
        return ExitCode::from(EXIT_UNSUPPORTED);
    }
    let args = match parse_args(scenario, it) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "tokio-peer: {e:#}\nusage: tokio-peer SCENARIO [--n N] [--inflight K] \
                 [--conns C] [--chunk B --file PATH --sum S]\nscenarios: {}",
                SCENARIOS.join(" ")
            );
            return ExitCode::from(64);
        }
    };
    let result = match args.scenario.as_str() {
        "timers" => timers(&args),
        "async1" => async1(&args),
        "queue_work" => queue_work(&args),
        "echo" => echo(&args),
        _ => fs_read(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio-peer: {}: {e:#}", args.scenario);
            ExitCode::from(2)
        }
    }
}

/// The thread-pool size the harness gives every peer.
fn threadpool_size() -> usize {
    ["LOOPD_THREADPOOL_SIZE", "UV_THREADPOOL_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4)
}

/// A current-thread runtime with the I/O and time drivers, its blocking pool capped at
/// the harness's thread-pool size.
fn runtime() -> Result<Runtime> {
    Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(threadpool_size())
        .build()
        .context("building the tokio runtime")
}

fn emit(args: &Args, ops: u64, seconds: f64, mut extra: Value) {
    extra["runtime"] = json!("current_thread");
    let line = json!({
        "scenario": args.scenario,
        "peer": "tokio",
        "ops": ops,
        "seconds": seconds,
        "extra": extra,
    });
    println!("{line}");
}

static TIMERS_FIRED: AtomicU64 = AtomicU64::new(0);
static ALL_FIRED: Notify = Notify::const_new();

/// libuv's million_timers with tasks: n tasks, each sleeping until `start + timeout`
/// (timeout 1 ms for the first 1000, 2 ms for the next 1000, ...; one `start`, like
/// libuv's cached loop time). The last one to fire wakes the main task.
fn timers(args: &Args) -> Result<()> {
    let n = args.n;
    let rt = runtime()?;
    let capacity = usize::try_from(n)?;

    let before_all = Instant::now();
    // Spawned from inside the runtime (from outside, every spawn would take the lock of
    // its shared queue); they first run in the next `block_on`.
    let handles = rt.block_on(async move {
        let mut handles = Vec::with_capacity(capacity);
        let mut timeout = 0;
        let base = tokio::time::Instant::now();
        for i in 0..n {
            if i % 1000 == 0 {
                timeout += 1;
            }
            let deadline = base + Duration::from_millis(timeout);
            handles.push(tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                if TIMERS_FIRED.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    ALL_FIRED.notify_one();
                }
            }));
        }
        handles
    });
    let before_run = Instant::now();
    rt.block_on(async {
        while TIMERS_FIRED.load(Ordering::Relaxed) < n {
            ALL_FIRED.notified().await;
        }
    });
    let after_run = Instant::now();
    let joined = rt.block_on(async move {
        let mut joined = 0u64;
        for h in handles {
            if h.await.is_ok() {
                joined += 1;
            }
        }
        joined
    });
    let after_all = Instant::now();

    let fired = TIMERS_FIRED.load(Ordering::Relaxed);
    ensure!(fired == n, "{fired} of {n} timers fired");
    ensure!(joined == n, "{joined} of {n} timer tasks joined");
    emit(
        args,
        n,
        (after_all - before_all).as_secs_f64(),
        json!({
            "init_seconds": (before_run - before_all).as_secs_f64(),
            "dispatch_seconds": (after_run - before_run).as_secs_f64(),
            "cleanup_seconds": (after_all - after_run).as_secs_f64(),
            "timer": "spawned task + sleep_until",
        }),
    );
    Ok(())
}

/// libuv's async1: a ping-pong of wake-ups between this thread's runtime and a runtime on
/// a second thread, n round trips. As in C the worker sends first; each side answers
/// every wake-up it sees, n times.
fn async1(args: &Args) -> Result<()> {
    let n = args.n;
    let main_rt = runtime()?;
    let worker_rt = runtime()?;
    let to_main = Arc::new(Notify::new());
    let to_worker = Arc::new(Notify::new());

    let worker = std::thread::Builder::new()
        .name("async1-worker".to_owned())
        .spawn({
            let (to_main, to_worker) = (Arc::clone(&to_main), Arc::clone(&to_worker));
            move || {
                worker_rt.block_on(async move {
                    let (mut seen, mut sent) = (0u64, 0u64);
                    to_main.notify_one();
                    while sent < n {
                        to_worker.notified().await;
                        seen += 1;
                        to_main.notify_one();
                        sent += 1;
                    }
                    (seen, sent)
                })
            }
        })
        .context("spawning the worker thread")?;

    let start = Instant::now();
    let (main_seen, main_sent) = main_rt.block_on(async move {
        let (mut seen, mut sent) = (0u64, 0u64);
        while sent < n {
            to_main.notified().await;
            seen += 1;
            to_worker.notify_one();
            sent += 1;
        }
        (seen, sent)
    });
    let (worker_seen, worker_sent) = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the worker thread panicked"))?;
    let seconds = start.elapsed().as_secs_f64();

    ensure!(worker_sent == n, "worker sent {worker_sent} of {n}");
    ensure!(worker_seen == n, "worker saw {worker_seen} of {n}");
    ensure!(
        main_sent == n && main_seen == n,
        "main saw {main_seen} of {n}"
    );
    emit(args, n, seconds, json!({ "wakeup": "tokio::sync::Notify" }));
    Ok(())
}

static RNG: AtomicU32 = AtomicU32::new(0);
static JOBS_STARTED: AtomicU64 = AtomicU64::new(0);
static JOBS_COMPLETED: AtomicU64 = AtomicU64::new(0);

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

/// Thread-pool jobs: `inflight` tasks, each running one `spawn_blocking` job at a time
/// and starting the next when it completes, until n have been started (inflight 1:
/// round-trip latency; 1000: throughput).
fn queue_work(args: &Args) -> Result<()> {
    let n = args.n;
    let inflight = args.inflight.min(n);
    let rt = runtime()?;

    let start = Instant::now();
    let failed = rt.block_on(async move {
        let mut lanes = Vec::with_capacity(usize::try_from(inflight).unwrap_or(0));
        for _ in 0..inflight {
            lanes.push(tokio::spawn(async move {
                let mut failed = 0u64;
                while JOBS_STARTED.fetch_add(1, Ordering::Relaxed) < n {
                    if tokio::task::spawn_blocking(work).await.is_err() {
                        failed += 1;
                    }
                    JOBS_COMPLETED.fetch_add(1, Ordering::Relaxed);
                }
                failed
            }));
        }
        let mut failed = 0u64;
        for lane in lanes {
            failed += lane.await.unwrap_or(1);
        }
        failed
    });
    let seconds = start.elapsed().as_secs_f64();

    let completed = JOBS_COMPLETED.load(Ordering::Relaxed);
    ensure!(completed == n, "{completed} of {n} jobs completed");
    ensure!(failed == 0, "{failed} jobs failed");
    emit(
        args,
        n,
        seconds,
        json!({ "inflight": inflight, "threadpool_size": threadpool_size() }),
    );
    Ok(())
}

static CONNS_CLOSED: AtomicU64 = AtomicU64::new(0);
static ALL_CLOSED: Notify = Notify::const_new();

/// The server side of the network scenarios, the same echo server as
/// `peers/libuv/echo.c`: a listener on 127.0.0.1:0 whose port is the first line on
/// stdout; one task per connection echoes what it reads and ends on EOF or error. After
/// `conns` accepts the listener is dropped (closed), and the runtime returns when every
/// connection has closed.
fn echo(args: &Args) -> Result<()> {
    let wanted = args.conns;
    let rt = runtime()?;
    let accepted = rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding 127.0.0.1:0")?;
        println!("{}", listener.local_addr()?.port());
        let mut accepted = 0u64;
        while accepted < wanted {
            let (stream, _) = listener.accept().await.context("accepting")?;
            accepted += 1;
            tokio::spawn(async move {
                serve(stream).await;
                if CONNS_CLOSED.fetch_add(1, Ordering::Relaxed) + 1 == wanted {
                    ALL_CLOSED.notify_one();
                }
            });
        }
        drop(listener);
        while CONNS_CLOSED.load(Ordering::Relaxed) < wanted {
            ALL_CLOSED.notified().await;
        }
        anyhow::Ok(accepted)
    })?;
    let closed = CONNS_CLOSED.load(Ordering::Relaxed);
    ensure!(
        accepted == wanted && closed == wanted,
        "accepted {accepted}, closed {closed} of {wanted} connections"
    );
    println!("{}", json!({ "accepted": accepted }));
    Ok(())
}

/// One connection: echo until EOF or an error, then drop (close) the socket. Shaped like
/// libuv's echo server: a 64 KiB buffer is allocated only once the socket is readable
/// (`readable` + `try_read_buf` into uninitialized capacity, like `alloc_cb` + `read`) and
/// freed once its echo is written, so an idle connection holds no buffer.
async fn serve(mut stream: TcpStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if stream.write_all(&buf).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Sequential file read through tokio's async fs: open, `read` into one 64 KiB buffer
/// until EOF (one read in flight at a time, each a `spawn_blocking` hop), close (drop:
/// tokio has no async close). Checks the byte count (n chunks) and the checksum.
fn fs_read(args: &Args) -> Result<()> {
    let path = args.file.clone().context("--file is required")?;
    let want_sum = args.sum.context("--sum is required")?;
    let chunk = usize::try_from(args.chunk)?;
    let want_bytes = args.n * args.chunk;
    let rt = runtime()?;

    let start = Instant::now();
    let (bytes, sum, reads) = rt.block_on(async move {
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let mut buf = vec![0u8; chunk];
        let (mut bytes, mut sum, mut reads) = (0u64, 0u64, 0u64);
        loop {
            let k = file.read(&mut buf).await.context("reading")?;
            reads += 1;
            if k == 0 {
                break;
            }
            sum = sum.wrapping_add(sample_sum(bytes, &buf[..k]));
            bytes += k as u64;
        }
        drop(file);
        anyhow::Ok((bytes, sum, reads))
    })?;
    let seconds = start.elapsed().as_secs_f64();

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
            "threadpool_size": threadpool_size(),
        }),
    );
    Ok(())
}
