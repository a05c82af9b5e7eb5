//! The libuv agent (issue #16) inside real libuv programs: C programs from
//! `agent/tests/programs/` built here against Debian's libuv, and Python asyncio on Debian's
//! `python3-uvloop`, each run with `libloopd_agent.so` preloaded (or attached with its one
//! call) and observed through the real `loopctl`, `loop-top` and `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{binary, free_port, wait_for_socket, Control, TempDir};

const DEADLINE: Duration = Duration::from_secs(30);
const THRESHOLD_MS: u64 = 100;

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/programs")
}

fn agent_so() -> PathBuf {
    binary("libloopd_agent.so")
}

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libuv")
        .output()
        .expect("pkg-config is needed (scripts/test.sh installs it)");
    assert!(out.status.success(), "pkg-config libuv: install libuv1-dev");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Builds `agent/tests/programs/NAME.c` into `dir` with `cc`, linked against the shared
/// libuv (or the extra arguments given).
fn build(dir: &Path, name: &str, link: &[String]) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("cc");
    cmd.args(["-g", "-O1", "-fno-omit-frame-pointer", "-rdynamic", "-o"])
        .arg(&out)
        .arg(programs().join(format!("{name}.c")))
        .args(pkg_config(&["--cflags"]))
        .arg(format!("-I{}", programs().join("../../include").display()))
        .args(link);
    let status = cmd
        .status()
        .expect("cc is needed (scripts/test.sh installs gcc)");
    assert!(status.success(), "cc failed for {name}");
    out
}

fn build_shared(dir: &Path, name: &str) -> PathBuf {
    build_shared_with(dir, name, &[])
}

/// [`build_shared`] with more link flags (`-ldl`, `-pthread`).
fn build_shared_with(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut link = pkg_config(&["--libs"]);
    link.extend(extra.iter().map(|f| f.to_string()));
    build(dir, name, &link)
}

/// A program under test, killed on drop.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn preloaded(program: &Path, args: &[&str], socket: &Path, extra_env: &[(&str, &str)]) -> Host {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("LD_PRELOAD", agent_so())
        .env("LOOPD_SOCKET", socket)
        .env("LOOPD_STALL_THRESHOLD", format!("{THRESHOLD_MS}ms"))
        .env_remove("LOOPD_METRICS_ADDR")
        .env_remove("LOOPD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Host(cmd.spawn().unwrap())
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Loop 0's iterations, from `status`.
fn iterations(status: &Value) -> u64 {
    status["loops"][0]["iterations"].as_u64().unwrap()
}

/// Waits (up to [`DEADLINE`]) until loop 0 at `socket` has iterated past its count now.
fn wait_for_iterations(socket: &Path) {
    let first = iterations(&loopctl_json(socket, &["status"]));
    let deadline = Instant::now() + DEADLINE;
    while iterations(&loopctl_json(socket, &["status"])) <= first {
        assert!(
            Instant::now() < deadline,
            "iterations do not grow at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `stall`'s stack names the function `name`.
fn assert_frame(stall: &Value, name: &str) {
    let frames = functions(stall);
    assert!(
        frames.iter().any(|f| f.contains(name)),
        "no {name} in {frames:?}"
    );
}

/// Asserts that `stall` is the unattributed stretch of an iteration.
fn assert_not_attributed(stall: &Value) {
    assert!(
        stall["label"]
            .as_str()
            .is_some_and(|l| l.contains("not attributed")),
        "{stall}"
    );
}

/// `loopctl --socket SOCKET ARGS… --json`, parsed.
fn loopctl_json(socket: &Path, args: &[&str]) -> Value {
    let out = Command::new(binary("loopctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "loopctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits for a stall in progress whose stack is sampled, asserting it became visible within
/// the threshold + 50 ms: the last look that did not see it was at most that long after the
/// callback began.
fn stall_in_progress(ctl: &mut Control) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last_unseen_ms = 0;
    loop {
        let looked_ms = wall_ms();
        let stalls = ctl.call("stalls", json!({}));
        match stalls["in_progress"].as_array().and_then(|a| a.first()) {
            Some(s) => {
                let started = s["started_at_ms"].as_u64().unwrap();
                if last_unseen_ms > started {
                    assert!(
                        last_unseen_ms - started <= THRESHOLD_MS + 50,
                        "the stall was not visible {} ms after its callback began",
                        last_unseen_ms - started
                    );
                }
                if s["stack"].as_array().is_some_and(|f| !f.is_empty()) {
                    return s.clone();
                }
            }
            None => last_unseen_ms = looked_ms,
        }
        assert!(Instant::now() < deadline, "no stall in progress: {stalls}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn functions(stall: &Value) -> Vec<String> {
    stall["stack"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str().map(String::from))
        .collect()
}

fn scrape(addr: SocketAddr) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok((200, body)) = std::panic::catch_unwind(|| support::http_get(addr, "/metrics")) {
            return body;
        }
        assert!(Instant::now() < deadline, "no /metrics at {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_preloaded_timer_program_shows_its_loop_handles_and_a_stall_while_it_blocks() {
    let dir = TempDir::new("agent-timer");
    let program = build_shared(&dir.0, "timer_sleep");
    let socket = dir.0.join("agent.sock");
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let _host = preloaded(
        &program,
        &[],
        &socket,
        &[
            ("LOOPD_METRICS_ADDR", &metrics),
            ("LOOPD_STALL_SAMPLE_INTERVAL", "20ms"),
        ],
    );
    let mut ctl = wait_for_socket(&socket);

    let host = &ctl.hello["params"]["host"];
    assert_eq!(host["kind"], "agent", "{host}");
    assert_eq!(host["program"], "timer_sleep", "{host}");
    let version = pkg_config(&["--modversion"]).join("");
    assert_eq!(host["libuv_version"], version.as_str(), "{host}");
    let caps: Vec<&str> = host["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(caps.contains(&"callback_attribution"), "{caps:?}");

    // The stall, while the callback still blocks, attributed to the timer, with its stack.
    let stall = stall_in_progress(&mut ctl);
    assert_eq!(stall["in_progress"], true, "{stall}");
    assert_eq!(stall["type"], "timer", "{stall}");
    assert_eq!(stall["phase"], "timers", "{stall}");
    assert_frame(&stall, "block_in_timer_callback");
    assert_frame(&stall, "on_timer");

    // The stall keeps being sampled at the interval asked for: its profile shows the
    // blocking function (the sleep inside it is resolved through the loader).
    let id = stall["id"].clone();
    let deadline = Instant::now() + DEADLINE;
    let profiled = loop {
        let r = ctl.call("stalls", json!({"id": id, "profile": true}));
        let s = r["in_progress"]
            .get(0)
            .or_else(|| r["recent"].get(0))
            .cloned()
            .unwrap();
        if s["samples"].as_u64().unwrap_or(0) >= 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(profiled["profile"]["interval_ms"], 20, "{profiled}");
    let names: Vec<&str> = profiled["profile"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(
        names.iter().any(|f| f.contains("block_in_timer_callback")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|f| f.contains("nanosleep")),
        "the libc frame is named: {names:?}"
    );

    // Through the real loopctl: the attributed handle is the program's timer, and the loop
    // iterates.
    // (The handle list is walked on the loop thread: a loop still blocked serves the last
    // walk, which may predate the timer's first run.)
    let deadline = Instant::now() + DEADLINE;
    let timer = loop {
        let handles = loopctl_json(&socket, &["handles"]);
        let found = handles["handles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == stall["handle_id"])
            .cloned();
        match found {
            Some(t) => break t,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => panic!("handle {} not listed: {handles}", stall["handle_id"]),
        }
    };
    assert_eq!(timer["type"], "timer", "{timer}");
    assert_eq!(timer["active"], true, "{timer}");
    wait_for_iterations(&socket);

    // The metrics endpoint, checked by promtool.
    let page = scrape(metrics.parse().unwrap());
    assert!(page.contains("loopd_loop_iterations_total"), "{page}");
    if let Err(e) = support::promtool_check(&page) {
        panic!("promtool check metrics rejects the agent's /metrics: {e}");
    }

    // loop-top renders the overview of the attached program.
    let top = Command::new(binary("loop-top"))
        .arg("--socket")
        .arg(&socket)
        .arg("--once")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{screen}");
    assert!(screen.contains("timer_sleep (agent, libuv"), "{screen}");
    assert!(screen.contains("timers"), "{screen}");
}

/// Sends `n` to the prime server and reads the answer.
fn ask(stream: &mut BufReader<TcpStream>, n: &str) -> String {
    stream
        .get_mut()
        .write_all(format!("{n}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    line.trim().to_string()
}

fn start_prime_server(
    dir: &Path,
    mode: &[&str],
    extra_env: &[(&str, &str)],
) -> (Host, SocketAddr, PathBuf) {
    let program = build_shared(dir, "prime_server");
    let socket = dir.join("prime.sock");
    let mut args = vec!["0"];
    args.extend_from_slice(mode);
    let mut host = preloaded(&program, &args, &socket, extra_env);
    let mut out = BufReader::new(host.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (host, SocketAddr::from(([127, 0, 0, 1], port)), socket)
}

#[test]
fn an_inline_prime_server_stall_names_the_connection_and_the_blocking_function() {
    let dir = TempDir::new("agent-prime-inline");
    let (_host, addr, socket) = start_prime_server(&dir.0, &["--inline"], &[]);
    let mut ctl = wait_for_socket(&socket);
    let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
    assert_eq!(ask(&mut conn, "91"), "composite");
    // 2^61 - 1: seconds of trial division, inline in the read callback.
    conn.get_mut().write_all(b"2305843009213693951\n").unwrap();
    let stall = stall_in_progress(&mut ctl);
    assert_eq!(stall["type"], "tcp", "{stall}");
    assert_frame(&stall, "is_prime_blocking");
    // Once the answer is out the loop publishes again: the connection is a listed tcp handle
    // (lists are taken on the loop thread, so not while it blocks).
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    assert_eq!(answer.trim(), "prime");
    let handles = loopctl_json(&socket, &["handles"]);
    let conn_handle = handles["handles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == stall["handle_id"])
        .unwrap_or_else(|| panic!("handle {} not listed: {handles}", stall["handle_id"]));
    assert_eq!(conn_handle["type"], "tcp", "{conn_handle}");
    assert!(conn_handle["fd"].as_i64().is_some(), "{conn_handle}");
    // With attribution the poll phase is the sum of the I/O callbacks of each iteration: the
    // seconds-long read callback is in it (its maximum), iterations without one are not.
    let stalled_s = stall["duration_seconds"].as_f64().unwrap_or(0.0);
    let status = loopctl_json(&socket, &["status"]);
    let poll = status["loops"][0]["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["phase"] == "poll"))
        .unwrap_or_else(|| panic!("no poll phase: {status}"))
        .clone();
    assert!(
        poll["duration"]["max"].as_f64().unwrap() >= stalled_s,
        "poll {poll} vs stall {stall}"
    );
    let polls = poll["duration"]["count"].as_u64().unwrap();
    let iterations = iterations(&status);
    assert!(
        polls >= 2 && polls < iterations,
        "{polls} polls of {iterations}: {poll}"
    );
}

#[test]
fn host_code_between_nowait_runs_is_not_a_stall() {
    let dir = TempDir::new("agent-nowait");
    let program = build_shared(&dir.0, "nowait_host");
    let socket = dir.0.join("agent.sock");
    let _host = preloaded(&program, &[], &socket, &[]);
    let _ctl = wait_for_socket(&socket);
    // The host sleeps 300 ms (three times the threshold) between its uv_run calls, right
    // after the timer's attributed callback: five rounds of that, and iterations go on.
    let first = iterations(&loopctl_json(&socket, &["status"]));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = loopctl_json(&socket, &["status"]);
        assert_eq!(status["stalls_total"], 0, "{status}");
        if iterations(&status) >= first + 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "iterations do not grow: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stalls = loopctl_json(&socket, &["stalls"]);
    assert_eq!(stalls["total"], 0, "{stalls}");
    assert_eq!(
        stalls["in_progress"].as_array().map(Vec::len),
        Some(0),
        "{stalls}"
    );
}

/// A forked child of a preloaded program (killed on drop; the test is not its parent).
struct Orphan(i32);

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_forked_child_is_served_on_its_own_socket_and_its_exit_leaves_the_parents() {
    let dir = TempDir::new("agent-fork");
    let program = build_shared(&dir.0, "fork_child");
    let socket = dir.0.join("agent.sock");
    let exit_file = dir.0.join("child-exit");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut host = preloaded(
        &program,
        &[exit_file.to_str().unwrap()],
        &socket,
        &[("LOOPD_METRICS_ADDR", &metrics)],
    );
    let mut stdout = BufReader::new(host.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let child_pid: i32 = line
        .strip_prefix("forked ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let _child = Orphan(child_pid);

    // The child: its own socket beside the parent's ($LOOPD_SOCKET with its pid), its own
    // process in hello, and its timer's stall seen while it blocks, with the stack.
    let child_socket = dir.0.join(format!("agent-{child_pid}.sock"));
    let mut child_ctl = wait_for_socket(&child_socket);
    assert_eq!(
        child_ctl.hello["params"]["pid"], child_pid,
        "{}",
        child_ctl.hello
    );
    let stall = stall_in_progress(&mut child_ctl);
    assert_eq!(stall["type"], "timer", "{stall}");
    assert_frame(&stall, "block_in_timer_callback");

    // The parent: still served where it was, its own pid, no stall of the child's, and its
    // metrics endpoint (the child has none: the address is the parent's).
    let parent = loopctl_json(&socket, &["status"]);
    assert_eq!(parent["pid"], host.0.id(), "{parent}");
    assert_eq!(parent["stalls_total"], 0, "{parent}");
    let page = scrape(metrics.parse().unwrap());
    assert!(page.contains("loopd_loop_iterations_total"), "{page}");

    // The child exits through exit(): its socket goes, the parent's stays and answers.
    std::fs::write(&exit_file, b"").unwrap();
    let deadline = Instant::now() + DEADLINE;
    while child_socket.exists() {
        assert!(Instant::now() < deadline, "the child's socket outlives it");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        socket.exists(),
        "the child's exit removed the parent's socket"
    );
    wait_for_iterations(&socket);
    drop(host);
}

#[test]
fn a_program_whose_calls_bypass_the_agent_still_has_its_stalls_seen() {
    let dir = TempDir::new("agent-bypass");
    let program = build_shared_with(&dir.0, "bypass_timer", &["-ldl"]);
    let socket = dir.0.join("agent.sock");
    let mut host = preloaded(&program, &[], &socket, &[]);
    let mut ctl = wait_for_socket(&socket);
    // Its timer never went through the agent's uv_timer_start: the agent finds the active
    // timer it does not know at its first walk and measures the loop per iteration, so the
    // blocking callback is still a stall while it blocks, "not attributed".
    let stall = stall_in_progress(&mut ctl);
    assert_not_attributed(&stall);
    drop(ctl);
    let _ = host.0.kill();
    let _ = host.0.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut host.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("do not reach the agent"))
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn a_prime_server_on_the_thread_pool_does_not_stall_and_its_pool_is_measured() {
    let dir = TempDir::new("agent-prime-pool");
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let (_host, addr, socket) =
        start_prime_server(&dir.0, &[], &[("LOOPD_METRICS_ADDR", &metrics)]);
    let _ctl = wait_for_socket(&socket);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
                for _ in 0..50 {
                    // About a millisecond of trial division each, on the pool.
                    assert_eq!(ask(&mut conn, "999999999989"), "prime");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let status = loopctl_json(&socket, &["status"]);
    assert_eq!(status["stalls_total"], 0, "{status}");

    // A large prime keeps a worker busy for seconds: its request is listed, running, while
    // it is; then no longer.
    let slow = std::thread::spawn(move || {
        let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
        ask(&mut conn, "2305843009213693951")
    });
    let deadline = Instant::now() + DEADLINE;
    let listed = loop {
        let r = loopctl_json(&socket, &["requests"]);
        let running = r["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["type"] == "work" && q["state"] == "running")
            .cloned();
        if let Some(q) = running {
            break q;
        }
        assert!(Instant::now() < deadline, "no running work request: {r}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(listed["age_seconds"].as_f64().unwrap() >= 0.0, "{listed}");
    assert_eq!(slow.join().unwrap(), "prime");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = loopctl_json(&socket, &["requests"]);
        if !r["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == listed["id"])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the finished request is still listed: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let deadline = Instant::now() + DEADLINE;
    loop {
        let page = scrape(metrics.parse().unwrap());
        let count = |name: &str| support::metric(&page, name).unwrap_or(0.0);
        let waited = count("loopd_threadpool_queue_wait_seconds_count{kind=\"work\"}");
        let ran = count("loopd_threadpool_run_seconds_count{kind=\"work\"}");
        if waited >= 200.0 && ran >= 200.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pool figures: wait {waited}, run {ran}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn python_asyncio_on_uvloop_shows_a_sleep_in_a_callback_as_a_stall_of_its_timer() {
    let python = Path::new("/usr/bin/python3");
    let ok = Command::new(python)
        .args(["-c", "import uvloop"])
        .status()
        .expect("/usr/bin/python3 is needed");
    assert!(
        ok.success(),
        "python3-uvloop is needed (scripts/test.sh installs it)"
    );
    let dir = TempDir::new("agent-uvloop");
    let socket = dir.0.join("uvloop.sock");
    let script = programs().join("uvloop_sleep.py");
    let _host = preloaded(python, &[script.to_str().unwrap()], &socket, &[]);
    let mut ctl = wait_for_socket(&socket);
    assert_eq!(ctl.hello["params"]["host"]["kind"], "agent");
    let stall = stall_in_progress(&mut ctl);
    assert_eq!(stall["type"], "timer", "{stall}");
    assert_frame(&stall, "sleep");
    // uvloop's call_later timers are one-shot handles, closed once they fire: the stall names
    // one of the program's timers, never one of the agent's own.
    let handles = loopctl_json(&socket, &["handles"]);
    assert!(
        !handles["handles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["id"] == stall["handle_id"] && h["label"] == "loopd agent probe"),
        "the stall is attributed to the agent's own handle: {stall}"
    );
}

#[test]
fn the_attach_call_in_a_statically_linked_program_sees_stalls_without_attribution() {
    let dir = TempDir::new("agent-static");
    let so_dir = agent_so().parent().unwrap().to_path_buf();
    let libuv_a = pkg_config(&["--variable=libdir"]).join("") + "/libuv_a.a";
    let program = build(
        &dir.0,
        "static_attach",
        &[
            libuv_a,
            format!("-L{}", so_dir.display()),
            "-lloopd_agent".into(),
            format!("-Wl,-rpath,{}", so_dir.display()),
            "-lpthread".into(),
            "-ldl".into(),
        ],
    );
    let socket = dir.0.join("static.sock");
    let _host = Host(
        Command::new(&program)
            .env("LOOPD_SOCKET", &socket)
            .env("LOOPD_STALL_THRESHOLD", format!("{THRESHOLD_MS}ms"))
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ctl = wait_for_socket(&socket);
    let caps = ctl.hello["params"]["host"]["capabilities"].clone();
    assert!(
        !caps
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "callback_attribution"),
        "{caps}"
    );
    let stall = stall_in_progress(&mut ctl);
    assert_not_attributed(&stall);
    assert_frame(&stall, "block_in_timer_callback");
}

/// Runs `program` with the agent preloaded to its end (or `timeout`): exit code, stdout and
/// stderr.
fn run_preloaded(
    program: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(program);
    cmd.env("LD_PRELOAD", agent_so())
        .env_remove("LOOPD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().unwrap();
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn preloading_into_a_program_without_libuv_changes_nothing() {
    let dir = TempDir::new("agent-nouv");
    let program = build(&dir.0, "no_libuv", &[]);
    let (code, out, err) = run_preloaded(&program, &[], DEADLINE);
    assert_eq!(code, Some(3));
    assert_eq!(out, "no libuv here\n");
    assert_eq!(err, "");
}

/// The timer program, preloaded for `run_for` with `env`: its stdout and stderr.
fn timer_program_with(env: &[(&str, &str)], run_for: Duration) -> (String, String) {
    let dir = TempDir::new("agent-bad");
    let program = build_shared(&dir.0, "timer_sleep");
    let (code, out, err) = run_preloaded(&program, env, run_for);
    assert_eq!(code, None, "the program should still run: {out}{err}");
    (out, err)
}

#[test]
fn a_libuv_without_idle_time_metrics_gets_one_line_and_the_program_runs_on() {
    let dir = TempDir::new("agent-nometrics");
    let socket = dir.0.join("x.sock");
    let (out, err) = timer_program_with(
        &[
            ("LOOPD_AGENT_HIDE_SYMBOLS", "uv_metrics_idle_time"),
            ("LOOPD_SOCKET", socket.to_str().unwrap()),
        ],
        Duration::from_millis(1500),
    );
    assert!(out.contains("on_timer 3\n"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("uv_metrics_idle_time"), "{err}");
    assert!(!socket.exists());
}

#[test]
fn a_control_socket_path_that_cannot_be_used_gets_one_line_and_the_program_runs_on() {
    let (out, err) = timer_program_with(
        &[("LOOPD_SOCKET", "/proc/nonexistent/agent.sock")],
        Duration::from_millis(1500),
    );
    assert!(out.contains("on_timer 3\n"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/proc/nonexistent/agent.sock"), "{err}");
}

#[test]
fn a_bad_sampling_interval_gets_one_line_naming_it_and_the_program_runs_on() {
    let (out, err) = timer_program_with(
        &[("LOOPD_STALL_SAMPLE_INTERVAL", "0")],
        Duration::from_millis(1500),
    );
    assert!(out.contains("on_timer 3\n"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("LOOPD_STALL_SAMPLE_INTERVAL"), "{err}");
}

/// Discovery (issue #18) with the defaults: a daemon without `--control` and a preloaded
/// program without `LOOPD_SOCKET`, both under one `$XDG_RUNTIME_DIR`, are the two endpoints
/// `loopctl ls` finds there with no flag, each with its kind and program.
#[test]
fn loopctl_ls_finds_a_daemon_and_a_preloaded_program_in_the_default_runtime_directory() {
    let daemon = support::Daemon::launch(
        "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
        support::Launch {
            default_control: true,
            ..support::Launch::default()
        },
    );
    let runtime = daemon.dir.0.clone();
    let program = build_shared(&runtime, "timer_sleep");
    let host = Host(
        Command::new(&program)
            .env("LD_PRELOAD", agent_so())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("LOOPD_SOCKET")
            .env_remove("LOOPD_METRICS_ADDR")
            .env_remove("LOOPD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent_socket = runtime
        .join("loopd")
        .join(format!("timer_sleep-{}.sock", host.0.id()));
    let _ = wait_for_socket(&agent_socket);

    let ls = || {
        let out = Command::new(binary("loopctl"))
            .args(["ls", "--json"])
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("LOOPD_SOCKET")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "loopctl ls: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let listing = ls();
    let endpoints = listing["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2, "{listing:#}");
    let by_kind = |kind: &str| {
        endpoints
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} endpoint: {listing:#}"))
    };
    let agent = by_kind("agent");
    assert_eq!(agent["program"], "timer_sleep", "{agent}");
    assert_eq!(agent["pid"], host.0.id(), "{agent}");
    assert_eq!(agent["loops"], 1, "{agent}");
    let loopd = by_kind("loopd");
    assert_eq!(loopd["pid"], daemon.pid(), "{loopd}");
    assert_eq!(listing["unreachable"].as_array().unwrap().len(), 0);

    // Killed (no atexit: its socket file stays): its line goes, the socket is reported stale.
    drop(host);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let listing = ls();
        let kinds: Vec<&Value> = listing["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["kind"])
            .collect();
        let stale = listing["unreachable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["stale"] == true && u["socket"] == agent_socket.display().to_string());
        if kinds == [&json!("loopd")] && stale {
            break;
        }
        assert!(Instant::now() < deadline, "{listing:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two loops in two threads: both attached, each its own `loop` index; the stall of the busy
/// one is attributed to that loop only; the trace has a track per loop.
#[test]
fn two_loops_in_two_threads_are_two_loops_with_their_own_stalls_and_tracks() {
    let dir = TempDir::new("agent-two-loops");
    let program = build_shared_with(&dir.0, "two_loops", &["-pthread"]);
    let socket = dir.0.join("agent.sock");
    let _host = preloaded(&program, &[], &socket, &[]);
    let mut ctl = wait_for_socket(&socket);

    // Both loops attached and iterating.
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        let s = ctl.call("status", json!({}));
        let loops = s["loops"].as_array().map_or(0, Vec::len);
        if loops == 2
            && s["loops"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["iterations"].as_u64().unwrap_or(0) > 0)
        {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut indexes: Vec<u64> = status["loops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["loop"].as_u64().unwrap())
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 2, "distinct loop labels: {status}");

    // The busy loop stalls; the stall names that loop, and the quiet one keeps iterating.
    let stall = stall_in_progress(&mut ctl);
    assert_eq!(stall["type"], "timer", "{stall}");
    let stalled = stall["loop"].as_u64().unwrap();
    let quiet = *indexes.iter().find(|&&i| i != stalled).unwrap();
    let iterations_of = |s: &Value, index: u64| {
        s["loops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["loop"] == index)
            .and_then(|l| l["iterations"].as_u64())
            .unwrap()
    };
    let before = iterations_of(&ctl.call("status", json!({})), quiet);
    let deadline = Instant::now() + DEADLINE;
    while iterations_of(&ctl.call("status", json!({})), quiet) <= before {
        assert!(Instant::now() < deadline, "the quiet loop stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = ctl.call("status", json!({}));
    let quiet_status = status["loops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["loop"] == quiet)
        .unwrap();
    assert!(
        quiet_status["stall_in_progress"].is_null(),
        "{quiet_status}"
    );

    // The trace: a named track per loop, iterations on both.
    let file = dir.0.join("trace.json");
    let out = Command::new(binary("loopctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["trace", "--last", "2s", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    for index in &indexes {
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "thread_name" && e["tid"] == *index),
            "no track for loop {index}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "iteration" && e["tid"] == *index),
            "no iterations of loop {index}"
        );
    }
}
