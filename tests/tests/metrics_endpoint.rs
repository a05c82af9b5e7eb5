//! The metrics endpoint against hostile clients, with the real binary (issue #13 §1). Each test
//! is a fault that took the old endpoint (`tiny_http`) or the whole daemon down:
//!
//! - a huge `Content-Length` aborted loopd (SIGABRT) or panicked the endpoint's workers;
//! - a header line without an end grew memory without bound;
//! - a client that pipelines and never reads, or announces a body it never sends, made
//!   `/metrics` and `/healthz` time out for everyone;
//! - a thread per connection, and an accept thread that died on EMFILE;
//! - SIGTERM waited for such clients to close.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{connect, http_get, read_n, rss_kib, Daemon};

const DEADLINE: Duration = Duration::from_secs(10);

fn seq_only() -> &'static str {
    "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n"
}

/// Sends `request` on a new connection and reads the status line's code (0 if none came).
fn status_of(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = connect(addr);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(request).unwrap();
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// The value of `loopd_metrics_rejected_total{reason="…"}`.
fn rejected(d: &Daemon, reason: &str) -> u64 {
    let (status, page) = d.scrape("/metrics");
    assert_eq!(status, 200);
    let key = format!("loopd_metrics_rejected_total{{reason=\"{reason}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the page"))
}

/// A scrape of `path` that must complete, with its time.
fn timed_scrape(addr: SocketAddr, path: &str) -> Duration {
    let t0 = Instant::now();
    let (status, _) = http_get(addr, path);
    assert_eq!(status, 200, "GET {path}");
    t0.elapsed()
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// Regression: `Content-Length: 99999999999` aborted loopd (exit 134); `18446744073709551615`
/// panicked a worker each time ("capacity overflow") until the endpoint refused everyone.
/// A body is never read now: 413, closed, counted.
#[test]
fn a_huge_content_length_is_answered_413_and_loopd_lives() {
    let mut d = Daemon::start(seq_only());
    let addr = d.metrics.unwrap();
    let lengths = [
        "99999999999",
        "30000000000",
        "9223372036854775807",
        "18446744073709551615",
    ];
    for _round in 0..2 {
        for n in lengths {
            let request =
                format!("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
            assert_eq!(
                status_of(addr, request.as_bytes()),
                413,
                "Content-Length {n}"
            );
        }
    }
    // A length past u64 is malformed (400), never a number wrapped or clamped.
    let request = b"GET /metrics HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    assert_eq!(status_of(addr, request), 400);
    assert!(d.is_alive());
    assert_eq!(rejected(&d, "body"), 8);
    assert_eq!(rejected(&d, "malformed"), 1);
    assert_eq!(timed_scrape(addr, "/healthz").as_secs(), 0);
}

/// Regression: a header line that never ends grew RSS byte for byte (256 MiB sent: +258 MiB).
/// The head is cut at 16 KiB (431); what follows is drained, never kept.
#[test]
fn a_head_that_never_ends_is_cut_at_16_kib_and_memory_stays_flat() {
    let d = Daemon::start(seq_only());
    let addr = d.metrics.unwrap();
    let before = rss_kib(d.pid());
    let mut s = connect(addr);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        let _ = writer.write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ");
        let mut sent = 0usize;
        // Until 64 MiB or the server closes (it drains for a while, then closes).
        while sent < 64 << 20 && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 431");
    let sent = sender.join().unwrap();
    let after = rss_kib(d.pid());
    println!("sent {} MiB; RSS {before} -> {after} KiB", sent >> 20);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(rejected(&d, "head_too_large"), 1);
}

/// Regression: one connection pipelining GETs that never reads, or two that announce a body
/// and never send it, made `/metrics` and `/healthz` time out for everyone.
#[test]
fn clients_that_never_read_or_never_send_delay_no_one() {
    let d = Daemon::start(seq_only());
    let addr = d.metrics.unwrap();
    let mut pipeliner = TcpStream::connect(addr).unwrap();
    let many = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(500);
    pipeliner.set_nonblocking(true).unwrap();
    // As much as the kernel takes; never read.
    let _ = pipeliner.write(many.as_bytes());
    let bodies: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nContent-Length: 2000\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let path = if i % 2 == 0 { "/metrics" } else { "/healthz" };
        worst = worst.max(timed_scrape(addr, path));
    }
    println!("slowest of 20 scrapes beside the hostile clients: {worst:?}");
    assert!(worst < Duration::from_secs(2), "a scrape took {worst:?}");
    drop((pipeliner, bodies, slow));
}

/// Regression: tiny_http read each connection on a thread of its own (unbounded) and lost its
/// accept thread on the first EMFILE. Connections now cost no thread, and the endpoint keeps
/// accepting once file descriptors are free again.
#[test]
fn connections_cost_no_thread_and_accept_survives_running_out_of_fds() {
    let d = Daemon::start_with_nofile(seq_only(), 64);
    let (metrics, seq) = (d.metrics.unwrap(), d.addr("seq"));
    let threads = thread_count(d.pid());
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    assert_eq!(timed_scrape(metrics, "/healthz").as_secs(), 0);
    assert_eq!(thread_count(d.pid()), threads, "threads per connection");
    drop(idle);

    // Use up loopd's descriptors with connections to the endpoint itself (64 fds: fewer than
    // the endpoint's connection cap fit), the last one asking for /healthz: it waits in the
    // backlog while accept fails, and is answered once some of the others close.
    let mut hog: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    let mut scrape = connect(metrics);
    scrape.set_read_timeout(Some(DEADLINE)).unwrap();
    scrape.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    hog.truncate(40);
    let mut answer = String::new();
    scrape.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(hog);
    assert!(rejected(&d, "accept_failed") >= 1);
    // seq serves again too.
    let mut s = connect(seq);
    assert_eq!(read_n(&mut s, 1), b"*");
}

/// A flood of connections that send half a head cannot lock a scraper out: at the connection
/// cap the one waiting longest is closed to make room.
#[test]
fn a_slowloris_flood_cannot_lock_out_a_scraper() {
    let d = Daemon::start(seq_only());
    let addr = d.metrics.unwrap();
    let held: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    assert!(timed_scrape(addr, "/metrics") < Duration::from_secs(2));
    assert!(rejected(&d, "evicted") >= 150 - 64);
    drop(held);
}

/// Regression: while a client held a connection, SIGTERM never finished (loopd exited only
/// once the client closed).
#[test]
fn sigterm_finishes_whatever_the_metrics_clients_do() {
    let mut d = Daemon::start(seq_only());
    let addr = d.metrics.unwrap();
    let mut pipeliner = TcpStream::connect(addr).unwrap();
    pipeliner.set_nonblocking(true).unwrap();
    let _ = pipeliner.write("GET /metrics HTTP/1.1\r\n\r\n".repeat(500).as_bytes());
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost").unwrap();
    let mut body = TcpStream::connect(addr).unwrap();
    body.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
        .unwrap();
    // Every client is connected and seen before the signal.
    assert!(timed_scrape(addr, "/healthz") < Duration::from_secs(2));
    let t0 = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(8));
    println!(
        "exited {status} in {:?} with hostile clients attached",
        t0.elapsed()
    );
    assert!(status.success(), "{status}");
    drop((pipeliner, half, body));
}
