//! The examples of `loopd/examples/`, run as a user runs them (issue #15): each does what
//! the classic libuv / Node program it ports does, and is observable through loopd's own
//! control socket (`LOOPD_SOCKET`, `LOOPD_STALL_THRESHOLD`, as for the daemon).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{example, wait_for_socket, TempDir};

const DEADLINE: Duration = Duration::from_secs(20);

/// A running example, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &str, args: &[&str], socket: &Path) -> Running {
    Running(
        Command::new(example(name))
            .args(args)
            .env("LOOPD_SOCKET", socket)
            .env("LOOPD_STALL_THRESHOLD", "100ms")
            .env_remove("LOOPD_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Runs an example to its end: its stdout lines.
fn run_to_end(name: &str, args: &[&str]) -> Vec<String> {
    let dir = TempDir::new("example");
    let out = Command::new(example(name))
        .args(args)
        .env("LOOPD_SOCKET", dir.0.join("c.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// The milliseconds of `on_timer [N ms]` lines.
fn timer_marks(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("on_timer [")?
                .strip_suffix(" ms]")?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn timer_sleep_stalls_are_attributed_to_the_timer_while_it_sleeps() {
    let dir = TempDir::new("timer-sleep");
    let socket = dir.0.join("c.sock");
    let args = [
        "--interval-ms",
        "100",
        "--sleep-ms",
        "1500",
        "--sleep-every",
        "2",
    ];
    let _ex = spawn("timer-sleep", &args, &socket);
    let mut ctl = wait_for_socket(&socket);
    let deadline = Instant::now() + DEADLINE;
    let stall = loop {
        let stalls = ctl.call("stalls", json!({}));
        if let Some(s) = stalls["in_progress"].as_array().and_then(|a| a.first()) {
            if s["stack"].as_array().is_some_and(|f| !f.is_empty()) {
                break s.clone();
            }
        }
        assert!(Instant::now() < deadline, "no stall in progress: {stalls}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(stall["in_progress"], true, "{stall}");
    assert_eq!(stall["type"], "timer", "{stall}");
    assert_eq!(stall["label"], "on_timer", "{stall}");
    assert_eq!(stall["phase"], "timers", "{stall}");
    let functions: Vec<&str> = stall["stack"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(
        functions.iter().any(|f| f.contains("sleep")),
        "no sleep in the stack: {functions:?}"
    );
}

#[test]
fn timer_work_keeps_the_timer_on_time_where_timer_sleep_does_not() {
    let args = [
        "--interval-ms",
        "200",
        "--sleep-ms",
        "1000",
        "--sleep-every",
        "2",
        "--ticks",
        "5",
    ];
    let gaps = |marks: &[u64]| marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let sleep = timer_marks(&run_to_end("timer-sleep", &args));
    assert_eq!(sleep.len(), 5, "{sleep:?}");
    assert!(gaps(&sleep) >= 1000, "timer-sleep never blocked: {sleep:?}");
    let work = timer_marks(&run_to_end("timer-work", &args));
    assert_eq!(work.len(), 5, "{work:?}");
    assert!(gaps(&work) < 700, "timer-work was held up: {work:?}");
}

#[test]
fn async_sends_from_a_thread_coalesce() {
    let lines = run_to_end("async-from-thread", &[]);
    let runs = lines
        .iter()
        .filter(|l| l.starts_with("async callback run "))
        .count();
    let last = lines.last().unwrap();
    assert_eq!(
        last,
        &format!("sends: 10, callback runs: {runs}"),
        "{lines:?}"
    );
    assert!((1..=10).contains(&runs), "{lines:?}");
}

#[test]
fn check_runs_before_a_zero_timer_after_an_io_callback() {
    for _ in 0..5 {
        let lines = run_to_end("phase-order", &[]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0] == "from main: timeout then immediate"
                || lines[0] == "from main: immediate then timeout",
            "{lines:?}"
        );
        assert_eq!(lines[1], "from an I/O callback: immediate then timeout");
    }
}

/// Starts a server example and reads the address from its first line.
fn server(name: &str, args: &[&str], dir: &TempDir) -> (Running, SocketAddr) {
    let mut ex = spawn(name, args, &dir.0.join("c.sock"));
    let mut first = String::new();
    BufReader::new(ex.0.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{name} said {first:?}"));
    (ex, addr)
}

#[test]
fn echo_servers_echo() {
    let dir = TempDir::new("echo");
    let (_tcp, addr) = server("tcp-echo", &[], &dir);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"ping over tcp").unwrap();
    let mut back = [0u8; 13];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping over tcp");

    let dir = TempDir::new("echo");
    let (_udp, addr) = server("udp-echo", &[], &dir);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + DEADLINE;
    // UDP may drop: ask again until the echo comes.
    let n = loop {
        u.send_to(b"ping over udp", addr).unwrap();
        if let Ok((n, from)) = u.recv_from(&mut buf) {
            assert_eq!(from, addr);
            break n;
        }
        assert!(Instant::now() < deadline, "no udp echo");
    };
    assert_eq!(&buf[..n], b"ping over udp");
}

#[test]
fn isprime_server_answers_on_the_pool_and_inline() {
    for args in [&[][..], &["--inline"][..]] {
        let dir = TempDir::new("isprime");
        let (_ex, addr) = server("isprime-server", args, &dir);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"97\n91\nx\n").unwrap();
        let mut r = BufReader::new(s);
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(l);
        }
        lines.sort();
        assert_eq!(
            lines,
            [
                "91 is composite\n",
                "97 is prime\n",
                "error: not a number\n"
            ],
            "{args:?}"
        );
    }
}
