//! The clients against the real daemon: every `loopctl` command (human and `--json`, exit
//! codes), `loop-top --once` live and `--replay` of a fresh recording, and one end-to-end test
//! of the interactive `loop-top` inside a detached tmux session catching a stall banner.
//!
//! Build the binaries first (`cargo build --workspace`; `bash scripts/test.sh` does, and
//! installs tmux). Nothing here sleeps for a tuned time: every wait polls with a generous
//! deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{binary, connect, read_line, read_n, Daemon, TempDir};

/// Generous: debug builds on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Prime; trial division blocks a debug build for the better part of a second (well above the
/// 100 ms stall threshold, short enough to wait for).
const SLOW_PRIME: &str = "100000000000000003";

/// 2^61 − 1: trial division blocks a debug build for seconds (about 3 s here).
const VERY_SLOW_PRIME: &str = "2305843009213693951";

// ----- running the clients -----

/// What a client run left behind.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }
}

/// Runs `bin` with `args` to completion (killed and failed after [`DEADLINE`]).
fn run(bin: &str, args: &[&str]) -> Out {
    let mut child = Command::new(binary(bin))
        .args(args)
        .env_remove("LOOPD_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = reader(child.stdout.take().unwrap());
    let stderr = reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// `loopctl --socket <daemon's> --color never <args>`.
fn loopctl(d: &Daemon, args: &[&str]) -> Out {
    loopctl_at(&d.control, args)
}

fn loopctl_at(socket: &Path, args: &[&str]) -> Out {
    let socket = socket.display().to_string();
    let mut all = vec!["--socket", &socket, "--color", "never"];
    all.extend_from_slice(args);
    run("loopctl", &all)
}

/// `loopctl --json <args>`, successful, parsed.
fn loopctl_json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    loopctl(d, &all).ok().json()
}

/// Polls `probe` until it yields, failing with `what` (and the last value seen) at the deadline.
#[track_caller]
fn poll<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A question to the prime service answered on another thread: the answer arrives on the
/// channel; `local` is the client's address (the daemon labels the connection with it).
struct PrimeQuestion {
    local: SocketAddr,
    answer: mpsc::Receiver<String>,
}

fn ask_prime(addr: SocketAddr, n: &str) -> PrimeQuestion {
    let mut s = connect(addr);
    let local = s.local_addr().unwrap();
    writeln!(s, "{n}").unwrap();
    let (tx, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_line(&mut s));
    });
    PrimeQuestion { local, answer }
}

impl PrimeQuestion {
    fn answered(&self) -> bool {
        matches!(
            self.answer.try_recv(),
            Ok(_) | Err(mpsc::TryRecvError::Disconnected)
        )
    }

    fn wait(&self) -> String {
        self.answer
            .recv_timeout(Duration::from_secs(120))
            .expect("the prime service answers")
    }
}

/// A client left running, its stdout lines arriving on a channel; killed on drop.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Streaming {
    fn loopctl(d: &Daemon, args: &[&str]) -> Streaming {
        let mut child = support::spawn_loopctl(&d.control, args);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`.
    #[track_caller]
    fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit: (code, stderr).
    fn wait_exit(&mut self) -> (i32, String) {
        let status = wait_child(&mut self.child, "loopctl");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array in {v}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

// ----- loopctl -----

#[test]
fn loopctl_status_human_and_json() {
    let d = Daemon::start_services("pool");
    let status = poll("loop 0 to have iterated", || {
        let s = loopctl_json(&d, &["status"]);
        if s["loops"][0]["iterations"].as_u64().unwrap_or(0) > 0 {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    let lp = &arr(&status, "loops")[0];
    assert_eq!(lp["loop"], 0);
    assert!(status["as_of_ms"].as_u64().unwrap() > 0);
    assert_eq!(status["pid"], d.pid());
    assert_eq!(status["threadpool"]["size"], 4);
    assert!(lp["utilization"]["last_1s"].is_number(), "{lp}");
    assert!(lp["lag"]["p99"].is_number(), "{lp}");
    let phases: BTreeSet<&str> = arr(lp, "phases")
        .iter()
        .map(|p| str_of(p, "phase"))
        .collect();
    for phase in [
        "timers", "pending", "idle", "prepare", "poll", "check", "close",
    ] {
        assert!(phases.contains(phase), "phase {phase} in {phases:?}");
    }
    assert!(lp["stall_in_progress"].is_null(), "{lp}");
    let services: Vec<&str> = arr(&status, "services")
        .iter()
        .map(|s| str_of(s, "name"))
        .collect();
    assert_eq!(services, ["seq", "prime", "http"]);
    for s in arr(&status, "services") {
        let name = str_of(s, "name");
        if name != "http" {
            // The registry holds the bound address, not `:0` (http registers before binding;
            // see the report).
            assert_eq!(str_of(s, "bind"), d.addr(name).to_string(), "{s}");
        }
    }

    let human = loopctl(&d, &["status"]).ok().stdout;
    assert!(
        human.contains(&format!("pid {}", d.pid())),
        "header names the pid:\n{human}"
    );
    for want in [
        "LOOP",
        "ITER/S",
        "ELU",
        "LAG",
        "PHASES (loop 0)",
        "poll",
        "THREAD POOL",
        "size 4",
        "SERVICES",
        "seq",
        "prime",
        "http",
    ] {
        assert!(human.contains(want), "{want:?} in status:\n{human}");
    }
    let row = human
        .lines()
        .skip_while(|l| !l.starts_with("LOOP"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        row.trim_start().starts_with('0'),
        "a row for loop 0: {row:?}\n{human}"
    );
}

#[test]
fn loopctl_handles_filters_sorts_and_limits() {
    let d = Daemon::start_services("pool");
    let listeners: Vec<String> = ["seq", "prime", "http"]
        .iter()
        .map(|s| format!("{s} listen {}", d.addr(s)))
        .collect();

    let tcp = loopctl_json(&d, &["handles", "--type", "tcp"]);
    let handles = arr(&tcp, "handles");
    assert!(handles.iter().all(|h| h["type"] == "tcp"), "{tcp}");
    let labels: Vec<&str> = handles.iter().map(|h| str_of(h, "label")).collect();
    for l in &listeners {
        assert!(labels.contains(&l.as_str()), "{l:?} in {labels:?}");
    }
    assert_eq!(tcp["total"].as_u64().unwrap() as usize, handles.len());
    for h in handles {
        assert_eq!(h["loop"], 0);
        assert_eq!(h["active"], true, "{h}");
        assert!(h["fd"].as_i64().unwrap() >= 0, "{h}");
        assert!(str_of(h, "site").contains(".rs:"), "{h}");
    }
    let human = loopctl(&d, &["handles", "--type", "tcp"]).ok().stdout;
    for l in &listeners {
        assert!(human.contains(l.as_str()), "{l:?} in:\n{human}");
    }
    assert!(human.starts_with("ID"), "a table with a header:\n{human}");

    // Traffic on a seq connection that stays open: it writes the most.
    let mut seq = connect(d.addr("seq"));
    assert_eq!(read_n(&mut seq, 1), b"*");
    seq.write_all(b"^hello there$").unwrap();
    assert_eq!(read_n(&mut seq, 11), b"ifmmp!uifsf");
    let peer = format!("{}", seq.local_addr().unwrap());
    let top = poll("the seq connection to lead --sort bytes_written", || {
        let v = loopctl_json(&d, &["handles", "--sort", "bytes_written", "--limit", "1"]);
        let first = v["handles"][0].clone();
        if first["bytes_written"].as_u64().unwrap_or(0) >= 12
            && str_of(&first, "label").contains(&peer)
        {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(arr(&top, "handles").len(), 1);
    let total = top["total"].as_u64().unwrap();
    assert!(
        total >= 5,
        "total counts every handle, not the limit: {top}"
    );

    // --sort id: ascending ids; --limit cuts, `total` does not.
    let by_id = loopctl_json(&d, &["handles", "--sort", "id"]);
    let ids: Vec<u64> = arr(&by_id, "handles")
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let limited = loopctl_json(&d, &["handles", "--sort", "age", "--limit", "2"]);
    assert_eq!(arr(&limited, "handles").len(), 2);
    assert_eq!(limited["total"], by_id["total"]);
    let ages: Vec<f64> = arr(&limited, "handles")
        .iter()
        .map(|h| h["age_seconds"].as_f64().unwrap())
        .collect();
    assert!(ages[0] >= ages[1], "oldest first: {ages:?}");
    let human = loopctl(&d, &["handles", "--sort", "age", "--limit", "2"])
        .ok()
        .stdout;
    assert_eq!(
        human
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())
                && !l.contains("handles"))
            .count(),
        2,
        "two rows:\n{human}"
    );
    assert!(
        human.contains(&format!("2 of {} handles", by_id["total"])),
        "footer says N of TOTAL:\n{human}"
    );

    // --active / --inactive split the handles.
    let active = loopctl_json(&d, &["handles", "--active"]);
    assert!(arr(&active, "handles").iter().all(|h| h["active"] == true));
    let inactive = loopctl_json(&d, &["handles", "--inactive"]);
    assert!(arr(&inactive, "handles")
        .iter()
        .all(|h| h["active"] == false));
    drop(seq);
}

#[test]
fn loopctl_requests_and_threadpool_show_work_in_flight() {
    let d = Daemon::start_services("pool");
    let pool = loopctl_json(&d, &["threadpool"]);
    assert_eq!(pool["size"], 4);
    let workers = arr(&pool, "workers");
    assert_eq!(workers.len(), 4);
    assert!(workers.iter().all(|w| w["state"] == "idle"), "{pool}");
    let human = loopctl(&d, &["threadpool"]).ok().stdout;
    assert!(human.contains("size 4"), "{human}");
    for i in 0..4 {
        assert!(human.contains(&format!("loopd-worker-{i}")), "{human}");
    }

    let q = ask_prime(d.addr("prime"), VERY_SLOW_PRIME);
    let reqs = poll("a work request in flight", || {
        let v = loopctl_json(&d, &["requests"]);
        if arr(&v, "requests").iter().any(|r| r["type"] == "work") {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let work = arr(&reqs, "requests")
        .iter()
        .find(|r| r["type"] == "work")
        .unwrap()
        .clone();
    assert!(
        ["queued", "running"].contains(&str_of(&work, "state")),
        "{work}"
    );
    assert_eq!(work["loop"], 0);
    assert!(str_of(&work, "site").contains(".rs:"), "{work}");
    // --type filters on the daemon side.
    let only_work = loopctl_json(&d, &["requests", "--type", "work"]);
    assert!(arr(&only_work, "requests")
        .iter()
        .all(|r| r["type"] == "work"));
    let none = loopctl_json(&d, &["requests", "--type", "getaddrinfo"]);
    assert!(arr(&none, "requests").is_empty(), "{none}");
    let human = loopctl(&d, &["requests", "--type", "work"]).ok().stdout;
    assert!(human.contains("work"), "{human}");
    assert!(human.contains(&format!("{}", work["id"])), "{human}");
    let socket = d.control.display().to_string();
    let frame = run(
        "loop-top",
        &[
            "--once", "--socket", &socket, "--view", "requests", "--size", "120x30",
        ],
    )
    .ok()
    .stdout;
    assert!(
        frame
            .lines()
            .any(|l| l.contains("work") && l.contains(&work["id"].to_string())),
        "the work request in loop-top's Requests view:\n{frame}"
    );

    // The pool shows a busy worker running that request.
    let busy = poll("a busy worker", || {
        let v = loopctl_json(&d, &["threadpool"]);
        if v["busy_workers"].as_u64().unwrap_or(0) >= 1 {
            Ok(v)
        } else if q.answered() {
            Ok(Value::Null)
        } else {
            Err(v.to_string())
        }
    });
    if !busy.is_null() {
        let w = arr(&busy, "workers")
            .iter()
            .find(|w| w["state"] == "busy")
            .unwrap_or_else(|| panic!("a busy worker listed: {busy}"));
        assert_eq!(w["task_kind"], "work", "{w}");
    }

    assert_eq!(q.wait(), "prime");
    poll("the work request to finish", || {
        let v = loopctl_json(&d, &["requests", "--type", "work"]);
        if arr(&v, "requests").is_empty() {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let after = loopctl_json(&d, &["threadpool"]);
    let ok_work: u64 = arr(&after, "tasks")
        .iter()
        .filter(|t| t["kind"] == "work" && t["outcome"] == "ok")
        .map(|t| t["count"].as_u64().unwrap())
        .sum();
    assert!(ok_work >= 1, "{after}");
}

#[test]
fn loopctl_config_set_shows_in_threadpool_and_metrics() {
    let d = Daemon::start_services("pool");
    let before = loopctl_json(&d, &["config", "get"]);
    assert_eq!(before["threadpool_size"], 4);
    assert_eq!(before["stall_threshold_ms"], 100);
    assert_eq!(before["control_path"], d.control.display().to_string());
    assert_eq!(before["metrics_addr"], d.metrics.unwrap().to_string());
    let human = loopctl(&d, &["config", "get"]).ok().stdout;
    assert!(
        human.contains("threadpool_size") && human.contains("settable"),
        "{human}"
    );

    let set = loopctl(&d, &["config", "set", "threadpool_size", "8"]).ok();
    assert!(set.stdout.contains("threadpool_size"), "{set:?}");
    let pool = loopctl_json(&d, &["threadpool"]);
    assert_eq!(pool["size"], 8, "{pool}");
    poll("8 workers listed", || {
        let v = loopctl_json(&d, &["threadpool"]);
        if arr(&v, "workers").len() == 8 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    assert!(loopctl(&d, &["threadpool"]).ok().stdout.contains("size 8"));
    poll("loopd_threadpool_size 8 in /metrics", || {
        let (code, body) = d.scrape("/metrics");
        if code == 200 && body.lines().any(|l| l == "loopd_threadpool_size 8") {
            Ok(())
        } else {
            Err(body
                .lines()
                .filter(|l| l.contains("threadpool_size"))
                .collect())
        }
    });

    let json = loopctl_json(&d, &["config", "set", "stall_threshold_ms", "250ms"]);
    assert_eq!(json["stall_threshold_ms"], 250, "{json}");
    assert_eq!(loopctl_json(&d, &["config", "get"])["threadpool_size"], 8);

    let json = loopctl_json(&d, &["config", "set", "log_filter", "warn,loopd=info"]);
    assert_eq!(json["log_filter"], "warn,loopd=info", "{json}");
}

#[test]
fn loopctl_exit_codes_for_each_failure_kind() {
    // 3: nothing at the path.
    let dir = TempDir::new("clients-nodaemon");
    let missing = dir.0.join("control.sock");
    for args in [&["status"][..], &["ping"], &["--json", "handles"]] {
        let out = loopctl_at(&missing, args);
        assert_eq!(out.code, 3, "{args:?}: {out:?}");
        assert!(out.stderr.contains("is it running?"), "{out:?}");
        assert!(
            out.stderr.contains(&missing.display().to_string()),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    // 3: a stale socket file nobody listens on.
    let stale = dir.0.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = loopctl_at(&stale, &["status"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("connection refused"), "{out:?}");
    assert!(out.stderr.contains("start it with `loopd`"), "{out:?}");

    let d = Daemon::start_services("pool");
    // 2: usage errors, checked before anything is sent.
    for args in [
        &["bogus"][..],
        &["handles", "--sort", "nope"],
        &["handles", "--type", "tcpp"],
        &["handles", "--limit", "-1"],
        &["config", "set", "threadpool_size", "0"],
        &["config", "set", "threadpool_size", "1025"],
        &["config", "set", "stall_threshold_ms", "0"],
        &["config", "set", "no_such_key", "1"],
        &["watch", "--interval", "1ms"],
        &["trace"],
    ] {
        let out = loopctl(&d, args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?} explains: {out:?}");
    }
    // 1: the daemon refuses.
    let out = loopctl(&d, &["config", "set", "log_filter", "foo=[[["]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("loopd refused"), "{out:?}");
    assert!(out.stderr.contains("-32005"), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out:?}");
    let out = loopctl(&d, &["--json", "config", "set", "log_filter", "foo=[[["]);
    assert_eq!(out.code, 1, "{out:?}");
    // Nothing changed.
    assert_eq!(loopctl_json(&d, &["config", "get"])["log_filter"], "info");
    // 1: a local failure (an unwritable output file).
    let out = loopctl(&d, &["trace", "-o", "/nonexistent-dir/x/trace.json"]);
    assert_eq!(out.code, 1, "{out:?}");
    // 0 again: the daemon survived all that.
    assert_eq!(loopctl(&d, &["ping"]).code, 0);

    // 3: the daemon exits under a running `watch`.
    let mut d = d;
    let mut watch = Streaming::loopctl(&d, &["watch", "--interval", "200ms"]);
    watch.wait_line("LOOP");
    d.signal("TERM");
    assert!(d.wait_exit(DEADLINE).success());
    let (code, stderr) = watch.wait_exit();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("closed the connection"), "{stderr}");
}

#[test]
fn loopctl_ping() {
    let d = Daemon::start_services("pool");
    let out = loopctl(&d, &["ping"]).ok();
    assert!(out.stdout.contains("pong"), "{out:?}");
    assert!(out.stdout.contains(&format!("pid {}", d.pid())), "{out:?}");
    assert!(loopctl_json(&d, &["ping"])["as_of_ms"].as_u64().unwrap() > 0);
}

#[test]
fn loopctl_watch_streams_updates() {
    let d = Daemon::start_services("pool");
    let out = loopctl(
        &d,
        &["--json", "watch", "--interval", "200ms", "--count", "5"],
    )
    .ok();
    let docs: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(docs.len(), 5, "{out:?}");
    let stamps: Vec<u64> = docs
        .iter()
        .map(|d| d["as_of_ms"].as_u64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    let distinct: BTreeSet<u64> = stamps.iter().copied().collect();
    assert!(
        distinct.len() >= 3,
        "at least three fresh updates: {stamps:?}"
    );
    assert!(docs.iter().all(|d| d["loops"][0]["loop"] == 0));

    // Human: a header, then one line per update, streamed until --count.
    let out = loopctl(&d, &["watch", "--interval", "200ms", "--count", "4"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].contains("LOOP") && lines[0].contains("ELU"),
        "{out:?}"
    );
    let rows = lines[1..]
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("0"))
        .count();
    assert!(rows >= 3, "at least three update lines for loop 0: {out:?}");
}

/// Reads a recording: every line must parse; returns (header, notifications).
fn read_recording(file: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.ends_with('\n'), "whole lines only:\n{text}");
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let header = lines.remove(0);
    assert_eq!(header["loopctl_record"], 1, "{header}");
    for l in &lines {
        assert_eq!(l["jsonrpc"], "2.0", "{l}");
        assert!(l["received_at_ms"].as_u64().is_some(), "{l}");
    }
    (header, lines)
}

#[test]
fn loopctl_record_3s_then_loop_top_replays_and_seeks() {
    let d = Daemon::start_services("pool");
    let dir = TempDir::new("clients-record");
    let file = dir.0.join("rec.ndjson");
    let file_s = file.display().to_string();
    let summary = loopctl_json(
        &d,
        &[
            "record",
            "-o",
            &file_s,
            "--duration",
            "3s",
            "--interval",
            "500ms",
        ],
    );
    assert_eq!(summary["file"], file_s.as_str(), "{summary}");

    let (header, lines) = read_recording(&file);
    assert_eq!(header["hello"]["pid"], d.pid());
    assert_eq!(header["interval_ms"], 500);
    assert_eq!(header["socket"], d.control.display().to_string());
    assert_eq!(
        summary["notifications"].as_u64().unwrap() as usize,
        lines.len()
    );
    let times: Vec<u64> = lines
        .iter()
        .map(|l| l["received_at_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let span = times.last().unwrap() - times.first().unwrap();
    assert!(span >= 2000, "the recording spans {span} ms: {times:?}");
    let methods: BTreeSet<&str> = lines.iter().map(|l| str_of(l, "method")).collect();
    for m in ["status", "handles"] {
        assert!(methods.contains(m), "{m} in {methods:?}");
    }
    for l in lines.iter().filter(|l| l["method"] == "status") {
        assert_eq!(l["params"]["loops"][0]["loop"], 0, "{l}");
    }

    // Replay: the end (the default for --once), and a seek into it with --at.
    let end = run(
        "loop-top",
        &["--once", "--replay", &file_s, "--size", "120x40"],
    )
    .ok();
    for want in [
        "REPLAY",
        &format!("pid {}", d.pid()),
        "loop 0",
        "ELU",
        "lag",
        "0 stalls",
    ] {
        assert!(end.stdout.contains(want), "{want:?} in:\n{}", end.stdout);
    }
    let at = run(
        "loop-top",
        &[
            "--once", "--replay", &file_s, "--at", "1", "--size", "120x40",
        ],
    )
    .ok();
    assert!(at.stdout.contains("REPLAY"), "{}", at.stdout);
    assert!(at.stdout.contains("loop 0"), "{}", at.stdout);
    assert!(
        at.stdout.contains("0:01"),
        "the play head at 1 s:\n{}",
        at.stdout
    );
    let handles = run(
        "loop-top",
        &[
            "--once", "--replay", &file_s, "--view", "handles", "--size", "160x40",
        ],
    )
    .ok();
    let listen = format!("seq listen {}", d.addr("seq"));
    assert!(handles.stdout.contains(&listen), "{}", handles.stdout);
}

#[test]
fn loopctl_record_holds_a_stall_that_loop_top_replays() {
    let d = Daemon::start_services("inline");
    let dir = TempDir::new("clients-incident");
    let file = dir.0.join("incident.ndjson");
    let file_s = file.display().to_string();
    // Until Ctrl-C (the duration is only a backstop).
    let mut rec = Streaming::loopctl(
        &d,
        &[
            "record",
            "-o",
            &file_s,
            "--duration",
            "10m",
            "--interval",
            "100ms",
        ],
    );
    poll("the recording to start", || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().count() >= 2 {
            Ok(())
        } else {
            Err(text)
        }
    });
    let q = ask_prime(d.addr("prime"), SLOW_PRIME);
    let label = format!("prime peer {}", q.local);
    assert_eq!(q.wait(), "prime");
    // The daemon pushes `stalls` events once the stack is symbolized: wait for the close.
    poll("the stall's close in the recording", || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("\"event\":\"closed\"") {
            Ok(())
        } else {
            Err(format!("{} lines", text.lines().count()))
        }
    });
    let ok = Command::new("kill")
        .args(["-INT", &rec.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT loopctl");
    let (code, stderr) = rec.wait_exit();
    assert_eq!(code, 0, "Ctrl-C ends a recording cleanly: {stderr}");

    let (header, lines) = read_recording(&file);
    let event = |kind: &str| {
        lines
            .iter()
            .find(|l| l["method"] == "stalls" && l["params"]["event"] == kind)
            .unwrap_or_else(|| panic!("a stall {kind} in the recording"))
    };
    for kind in ["opened", "closed"] {
        let stall = &event(kind)["params"]["stall"];
        assert_eq!(str_of(stall, "label"), label, "{stall}");
    }
    let closed = &event("closed")["params"]["stall"];
    assert!(
        closed["duration_seconds"].as_f64().unwrap() >= 0.1,
        "{closed}"
    );
    let frames: Vec<&str> = arr(closed, "stack")
        .iter()
        .map(|f| str_of(f, "function"))
        .collect();
    assert!(
        frames.iter().any(|f| f.contains("is_prime_trial_division")),
        "{frames:?}"
    );
    // Status pushes every 100 ms saw the stall in progress: seek there.
    let during = lines
        .iter()
        .find(|l| {
            l["method"] == "status" && !l["params"]["loops"][0]["stall_in_progress"].is_null()
        })
        .expect("a status push during a stall of at least 100 ms");
    let offset_ms =
        during["received_at_ms"].as_u64().unwrap() - header["started_at_ms"].as_u64().unwrap();
    let at = format!("{:.3}", offset_ms as f64 / 1000.0 + 0.0005);
    let frame = run(
        "loop-top",
        &[
            "--once", "--replay", &file_s, "--at", &at, "--size", "120x40",
        ],
    )
    .ok()
    .stdout;
    assert!(frame.contains("STALL IN PROGRESS"), "at {at} s:\n{frame}");
    assert!(frame.contains(&label), "at {at} s:\n{frame}");

    let end = run(
        "loop-top",
        &["--once", "--replay", &file_s, "--size", "120x40"],
    )
    .ok()
    .stdout;
    assert!(
        !end.contains("STALL IN PROGRESS"),
        "over by the end:\n{end}"
    );
    assert!(end.contains("1 stall"), "the timeline counts it:\n{end}");
    let stalls = run(
        "loop-top",
        &[
            "--once", "--replay", &file_s, "--view", "stalls", "--size", "200x40",
        ],
    )
    .ok()
    .stdout;
    assert!(stalls.contains(&label), "{stalls}");
    assert!(stalls.contains("is_prime_trial_division"), "{stalls}");
}

fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn loopctl_trace_contains_every_phase() {
    let d = Daemon::start_services("pool");
    // A few iterations first, so the flight recorder has something.
    poll("some iterations", || {
        let s = loopctl_json(&d, &["status"]);
        if s["loops"][0]["iterations"].as_u64().unwrap_or(0) >= 5 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let dir = TempDir::new("clients-trace");
    let file = dir.0.join("loop.trace.json");
    let file_s = file.display().to_string();
    let out = loopctl(&d, &["trace", "-o", &file_s]).ok();
    assert!(out.stdout.contains("trace events"), "{out:?}");
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let events = arr(&trace, "traceEvents");
    let phases: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["cat"] == "phase")
        .map(|e| str_of(e, "name"))
        .collect();
    // The loop times every phase of every iteration, handles or not, so all seven are there.
    for phase in [
        "timers", "pending", "idle", "prepare", "poll", "check", "close",
    ] {
        assert!(phases.contains(phase), "{phase} in {phases:?}");
    }
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert!(e["ts"].is_number() && e["dur"].is_number(), "{e}");
        assert_eq!(e["pid"], d.pid(), "{e}");
    }
    assert!(events.iter().any(|e| e["name"] == "iteration"));

    // --json: a summary; -o -: the trace on stdout.
    let file2 = dir.0.join("t2.json");
    let summary = loopctl_json(&d, &["trace", "-o", &file2.display().to_string()]);
    assert_eq!(summary["file"], file2.display().to_string());
    assert!(summary["events"].as_u64().unwrap() > 0, "{summary}");
    let stdout = loopctl(&d, &["trace", "-o", "-", "--last", "1s"]).ok();
    let v = stdout.json();
    assert!(!arr(&v, "traceEvents").is_empty());
}

#[test]
fn loopctl_stalls_attributes_an_inline_prime() {
    let d = Daemon::start_services("inline");
    let before = loopctl_json(&d, &["stalls"]);
    assert_eq!(before["total"], 0, "{before}");
    assert!(arr(&before, "in_progress").is_empty());

    let mut watch = Streaming::loopctl(&d, &["watch", "--interval", "200ms"]);
    watch.wait_line("LOOP");

    // A long stall: seen while in progress.
    let q = ask_prime(d.addr("prime"), VERY_SLOW_PRIME);
    let label = format!("prime peer {}", q.local);
    let live = poll("the stall in progress", || {
        let v = loopctl_json(&d, &["stalls"]);
        if !arr(&v, "in_progress").is_empty() {
            Ok(v)
        } else {
            assert!(
                !q.answered(),
                "the prime was answered before the stall was seen in progress"
            );
            Err(v.to_string())
        }
    });
    let stall = &arr(&live, "in_progress")[0];
    assert_eq!(stall["in_progress"], true);
    assert_eq!(str_of(stall, "label"), label, "{stall}");
    // `status` shows it too (unless it ended meanwhile: it lasts seconds).
    let st = loopctl_json(&d, &["status"]);
    let now = &st["loops"][0]["stall_in_progress"];
    if now.is_null() {
        assert!(q.answered(), "status lost the stall in progress: {st}");
    } else {
        assert_eq!(str_of(now, "label"), label, "{st}");
        let human = loopctl(&d, &["status"]).ok().stdout;
        assert!(
            human.contains("STALL IN PROGRESS") || q.answered(),
            "{human}"
        );
    }
    let human = loopctl(&d, &["stalls"]).ok().stdout;
    assert!(human.contains("IN PROGRESS"), "{human}");
    assert!(human.contains(&label), "{human}");
    assert_eq!(q.wait(), "prime");
    // `watch` says when it opened and closed.
    let opened = watch.wait_line("stall opened:");
    assert!(opened.contains(&label), "{opened}");
    let closed = watch.wait_line("stall closed:");
    assert!(closed.contains(&label), "{closed}");
    drop(watch);

    // A shorter one after it; both are recent once closed, each with its stack.
    let q2 = ask_prime(d.addr("prime"), SLOW_PRIME);
    let label2 = format!("prime peer {}", q2.local);
    assert_eq!(q2.wait(), "prime");
    let done = poll("both stalls closed, with stacks", || {
        let v = loopctl_json(&d, &["stalls"]);
        let recent = arr(&v, "recent");
        let complete = recent.len() >= 2
            && arr(&v, "in_progress").is_empty()
            && recent.iter().all(|s| !arr(s, "stack").is_empty());
        if complete {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    for (label, q) in [(&label, &q), (&label2, &q2)] {
        let s = arr(&done, "recent")
            .iter()
            .find(|s| str_of(s, "label") == label.as_str())
            .unwrap_or_else(|| panic!("a stall of {label} ({}): {done}", q.local));
        assert_eq!(s["in_progress"], false, "{s}");
        assert_eq!(s["loop"], 0);
        assert_eq!(s["type"], "tcp", "{s}");
        assert!(s["handle_id"].as_u64().is_some(), "{s}");
        assert_eq!(s["threshold_ms"], 100);
        assert!(s["duration_seconds"].as_f64().unwrap() >= 0.1, "{s}");
        let frames: Vec<&str> = arr(s, "stack")
            .iter()
            .map(|f| str_of(f, "function"))
            .collect();
        assert!(
            frames.iter().any(|f| f.contains("is_prime_trial_division")),
            "{frames:?}"
        );
        // The handle is the prime connection: the daemon lists it under that label.
        let handle = loopctl_json(&d, &["handles", "--type", "tcp"]);
        let h = arr(&handle, "handles")
            .iter()
            .find(|h| h["id"] == s["handle_id"]);
        if let Some(h) = h {
            assert_eq!(str_of(h, "label"), label.as_str(), "{h}");
        }
    }

    let human = loopctl(&d, &["stalls"]).ok().stdout;
    assert!(human.contains("is_prime_trial_division"), "{human}");
    assert!(human.contains(&label) && human.contains(&label2), "{human}");
    assert!(human.contains("closed"), "{human}");
    let short = loopctl(&d, &["stalls", "--no-stacks", "--limit", "1"])
        .ok()
        .stdout;
    assert!(!short.contains("innermost first"), "{short}");
    assert!(
        short.contains(&label2) && !short.contains(&label),
        "latest only:\n{short}"
    );
    let limited = loopctl_json(&d, &["stalls", "--limit", "1"]);
    assert_eq!(arr(&limited, "recent").len(), 1);
    assert_eq!(limited["total"], 2);
    assert_eq!(loopctl_json(&d, &["status"])["stalls_total"], 2);

    // loop-top's Stalls view lists both, with the top frame.
    let socket = d.control.display().to_string();
    let frame = run(
        "loop-top",
        &[
            "--once", "--socket", &socket, "--view", "stalls", "--size", "200x30",
        ],
    )
    .ok()
    .stdout;
    assert!(frame.contains(&label) && frame.contains(&label2), "{frame}");
    assert!(frame.contains("is_prime_trial_division"), "{frame}");
}

// ----- loop-top -----

#[test]
fn loop_top_once_renders_the_live_overview() {
    let d = Daemon::start_services("pool");
    let socket = d.control.display().to_string();
    let out = run(
        "loop-top",
        &["--once", "--socket", &socket, "--size", "120x40"],
    )
    .ok();
    let frame = &out.stdout;
    for want in [
        "live",
        &format!("pid {}", d.pid()),
        "Overview",
        "loop 0",
        "ELU",
        "lag",
        "p99",
        "iter/s",
        "timers",
        "poll",
        "pool",
        &d.addr("seq").to_string(),
    ] {
        assert!(frame.contains(want), "{want:?} in:\n{frame}");
    }
    assert!(!frame.contains("STALL"), "no stall:\n{frame}");
    assert!(frame.lines().count() <= 40, "fits 40 rows:\n{frame}");

    let handles = run(
        "loop-top",
        &[
            "--once", "--socket", &socket, "--view", "handles", "--size", "160x40",
        ],
    )
    .ok();
    let listen = format!("seq listen {}", d.addr("seq"));
    assert!(handles.stdout.contains(&listen), "{}", handles.stdout);

    let pool = run(
        "loop-top",
        &[
            "--once",
            "--socket",
            &socket,
            "--view",
            "threadpool",
            "--size",
            "120x40",
        ],
    )
    .ok();
    assert!(pool.stdout.contains("Workers  4"), "{}", pool.stdout);
    assert!(pool.stdout.contains("0/4"), "{}", pool.stdout);

    // No daemon: the frame says so, exit 3.
    let dir = TempDir::new("clients-top-nodaemon");
    let missing = dir.0.join("control.sock").display().to_string();
    let out = run(
        "loop-top",
        &["--once", "--socket", &missing, "--size", "100x30"],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.contains("Cannot connect"), "{out:?}");
}

// ----- loop-top in tmux -----

/// A private tmux server (`tmux -L <name>`), killed on drop.
struct Tmux {
    name: String,
    /// The server's socket file (tmux leaves it behind after `kill-server`).
    socket: Option<PathBuf>,
}

impl Tmux {
    fn start(cmd: &str, cols: u16, rows: u16) -> Tmux {
        let ok = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "tmux is not installed: run `bash scripts/test.sh` (it installs tmux), \
             or `apt-get install -y tmux`"
        );
        let mut t = Tmux {
            name: format!("loopd-clients-{}-{}", std::process::id(), rand_suffix()),
            socket: None,
        };
        let (c, r) = (cols.to_string(), rows.to_string());
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "top", "-x", &c, "-y", &r, cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux new-session: {out:?}");
        let path = t
            .cmd()
            .args(["display-message", "-p", "#{socket_path}"])
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&path.stdout).trim().to_string();
        t.socket = (!path.is_empty()).then(|| PathBuf::from(path));
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.name, "-f", "/dev/null"])
            .env_remove("TMUX")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null());
        c
    }

    fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane with its colours (SGR escapes).
    fn capture_escaped(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-e", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send_keys(&self, keys: &str) {
        let _ = self.cmd().args(["send-keys", "-t", "top", keys]).output();
    }

    /// Polls the pane until `pred` holds.
    #[track_caller]
    fn wait_for(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn loop_top_in_tmux_shows_the_stall_banner_live() {
    let d = Daemon::start_services("inline");
    let top = binary("loop-top").display().to_string();
    let socket = d.control.display().to_string();
    // The shell keeps the pane (and loop-top's last words) if loop-top exits early.
    let cmd = format!(
        "{} --socket {} --interval 250ms; echo \"loop-top exited with $?\"; sleep 600",
        shell_quote(&top),
        shell_quote(&socket)
    );
    let tmux = Tmux::start(&cmd, 120, 40);
    let live = tmux.wait_for("loop-top to show the live overview", |s| {
        s.contains("live") && s.contains("loop 0") && s.contains("ELU")
    });
    assert!(!live.contains("STALL"), "no stall yet:\n{live}");
    // A short stall first: the daemon's first stack symbolization loads the debug info (seconds
    // in a debug build); after it, samples of the long stall arrive while it is in progress.
    assert_eq!(ask_prime(d.addr("prime"), SLOW_PRIME).wait(), "prime");
    tmux.wait_for("the short stall to be over", |s| {
        !s.contains("STALL IN PROGRESS")
    });

    let q = ask_prime(d.addr("prime"), VERY_SLOW_PRIME);
    let label = format!("prime peer {}", q.local);
    let screen = tmux.wait_for("the red stall banner", |s| {
        if s.contains("STALL IN PROGRESS") {
            return true;
        }
        assert!(
            !q.answered(),
            "the prime was answered before the banner showed; the pane:\n{s}"
        );
        false
    });
    let banner: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.contains("STALL IN PROGRESS"))
        .take(2)
        .collect();
    let banner = banner.join("\n");
    assert!(banner.contains("blocked"), "{banner}");
    assert!(banner.contains("loop 0"), "{banner}");
    assert!(
        banner.contains(&label),
        "attributed to the connection: {banner}"
    );
    // The banner's second line names the hottest frame of the samples so far (ours, not an
    // inlined `core::` one).
    let screen = tmux.wait_for("the sampled frame in the banner", |s| {
        if s.lines()
            .any(|l| l.contains("   hottest: ") && l.contains("is_prime_trial_division"))
        {
            return true;
        }
        assert!(
            !q.answered(),
            "the stall ended before its stack showed in the banner; the pane:\n{s}"
        );
        false
    });
    assert!(screen.contains("STALL IN PROGRESS"), "{screen}");
    // Red: the banner's background is palette red (or the basic red background).
    let coloured = tmux.capture_escaped();
    if let Some(line) = coloured.lines().find(|l| l.contains("STALL IN PROGRESS")) {
        assert!(
            line.contains("48;5;1m") || line.contains("41m") || line.contains(";41;"),
            "the banner is red: {line:?}"
        );
    } else {
        assert!(q.answered(), "the banner vanished mid-stall:\n{coloured}");
    }
    // The banner's age grows by the clock while the loop is blocked.
    let age = |s: &str| -> Option<String> {
        let line = s.lines().find(|l| l.contains("STALL IN PROGRESS"))?;
        let rest = line.split("blocked ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    };
    let first = age(&screen);
    let _ = tmux.wait_for("the stall's age to grow, or the stall to end", |s| {
        age(s).is_some_and(|a| Some(a) != first) || q.answered()
    });

    assert_eq!(q.wait(), "prime");
    let after = tmux.wait_for("the banner to go once the loop runs again", |s| {
        !s.contains("STALL IN PROGRESS") && s.contains("live")
    });
    assert!(after.contains("loop 0"), "{after}");

    // The daemon restarts on the same socket: loop-top says it lost it, then reconnects.
    let mut d = d;
    d.signal("TERM");
    assert!(d.wait_exit(DEADLINE).success());
    tmux.wait_for("loop-top to show the daemon is gone", |s| {
        s.contains("disconnected")
    });
    let d2 = Daemon::start_with_args(
        "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
        &["--control", &socket],
    );
    let pid2 = format!("pid {}", d2.pid());
    tmux.wait_for("loop-top to reconnect to the new daemon", |s| {
        s.contains("live") && s.contains(&pid2) && !s.contains("disconnected")
    });
    tmux.send_keys("q");
    tmux.wait_for("loop-top to quit on q", |s| {
        s.contains("loop-top exited with 0")
    });
}
