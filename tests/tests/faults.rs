//! Issue 13, items 3 and 4, against the real `loopd` binary: a second daemon on a port that
//! loops share, control accepts out of file descriptors, `trace` clients that never read,
//! SIGHUP of every key, `http` connections reset at once, the thread-pool size rule, control
//! ids and duplicate members, a control path too long, the port-in-use message.
//!
//! Build the binaries first (`cargo build --workspace`). Nothing sleeps for a tuned time:
//! every wait polls with a generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
// `setsockopt(SO_LINGER)` from libc: one small function with its safety argument.
#![allow(unsafe_code)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{binary, connect, metric, read_n, rss_kib, Control, Daemon, Launch, TempDir};

/// Generous: debug builds on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

const SEQ_ONLY: &str = "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n";

// ----- helpers -----

/// Runs loopd to completion with `args` and `env`: (exit code, stderr). A loopd still running
/// after [`DEADLINE`] (it should have refused to start) is killed and the test fails.
fn run_loopd(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(binary("loopd"))
        .args(args)
        .env_remove("LOOPD_CONFIG")
        .env_remove("LOOPD_THREADPOOL_SIZE")
        .env_remove("LOOPD_SOCKET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loopd {args:?} {env:?} was still running after {DEADLINE:?}; it should have refused to start: {}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

/// A config file in `dir`: metrics off, the control socket in `dir`, then `rest`.
fn write_config(dir: &Path, rest: &str) -> String {
    let path = dir.join("loopd.toml");
    std::fs::write(
        &path,
        format!(
            "metrics_addr = \"off\"\ncontrol = \"{}\"\n{rest}",
            dir.join("c.sock").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Polls `f` until it returns `Some`, or fails naming `what`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {status}"))
}

/// Log lines (messages) that contain `text`.
fn log_lines(d: &Daemon, text: &str) -> Vec<String> {
    d.logs()
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .filter(|m| m.contains(text))
        .map(str::to_string)
        .collect()
}

/// Closes `s` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a pointer to a `linger` that lives for the whole call,
    // with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}

// ----- item 3: two daemons share a port -----

#[test]
fn a_second_daemon_fails_on_a_port_whatever_loops_says() {
    let first = Daemon::start_with_args(SEQ_ONLY, &["--loops", "2"]);
    let port = first.addr("seq").port();
    // The first daemon's two loops still share the port: 40 connections reach both.
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect(first.addr("seq"));
            assert_eq!(read_n(&mut s, 1), b"*");
            s
        })
        .collect();
    let mut ctl = Control::connect(&first);
    wait_for("both loops to have accepted connections", || {
        let status = ctl.call("status", json!({}));
        let opened: Vec<u64> = status["loops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["handles"]["tcp"]["opened_total"].as_u64().unwrap())
            .collect();
        // Each loop's listener, plus the connections it accepted.
        (opened.len() == 2 && opened.iter().sum::<u64>() == 42 && opened.iter().all(|&n| n > 1))
            .then_some(())
    });
    drop(clients);

    // A second daemon on the same port fails with one line, as it does with one loop.
    let dir = TempDir::new("second");
    let config = write_config(
        &dir.0,
        &format!("[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:{port}\"\n"),
    );
    let expected = format!(
        "loopd: error: cannot start seq service on 127.0.0.1:{port}: Address already in use (os error 98)"
    );
    for loops in ["2", "3", "1"] {
        let (code, stderr) = run_loopd(&["--config", &config, "--loops", loops], &[]);
        assert_eq!(code, 1, "--loops {loops}: {stderr}");
        assert_eq!(stderr.trim_end(), expected, "--loops {loops}");
    }
}

// ----- item 4: smaller faults -----

#[test]
fn a_control_client_waiting_through_emfile_gets_its_hello_when_fds_free_up() {
    // 64 fds: loopd's own leave a few dozen for connections.
    let d = Daemon::start_with_nofile(SEQ_ONLY, 64);
    let seq = d.addr("seq");
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(seq).unwrap());
    }
    d.wait_log("accept failed", DEADLINE);

    // loopd is out of fds: the control client waits in the backlog.
    let client = UnixStream::connect(&d.control).unwrap();
    d.wait_log("control socket accept failed", DEADLINE);
    drop(held);

    // No other control client connects: the retry alone must let it in.
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut line = String::new();
    let read = BufReader::new(&client).read_line(&mut line);
    assert!(
        matches!(read, Ok(n) if n > 0),
        "no hello within {DEADLINE:?} after fds were freed: {read:?}"
    );
    let hello: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(hello["method"], "hello", "{hello}");
}

#[test]
fn trace_clients_that_never_read_cost_bounded_memory() {
    let d = Daemon::start(SEQ_ONLY);
    let pid = d.pid();
    // Fill the flight recorder (10,000 iterations a loop) with round trips (a round trip
    // takes an iteration or less: a fast peer's next bytes can be read in the same one).
    let mut ctl = Control::connect(&d);
    let mut s = connect(d.addr("seq"));
    assert_eq!(read_n(&mut s, 1), b"*");
    wait_for("11,000 loop iterations", || {
        for _ in 0..2_000 {
            s.write_all(b"^a$").unwrap();
            assert_eq!(read_n(&mut s, 1), b"b");
        }
        let status = ctl.call("status", json!({}));
        (status["loops"][0]["iterations"].as_u64().unwrap() > 11_000).then_some(())
    });
    drop(s);

    // A client that reads gets the whole trace, then its next answer, in order.
    ctl.writer
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":\"t\",\"method\":\"trace\"}\n\
              {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
        )
        .unwrap();
    let mut line = String::new();
    ctl.reader.read_line(&mut line).unwrap();
    let trace_len = line.len();
    let trace: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(trace["id"], "t");
    let events = trace["result"]["traceEvents"].as_array().unwrap().len();
    assert!(
        trace_len > 4 << 20 && events > 50_000,
        "the trace should be megabytes to prove anything: {trace_len} bytes, {events} events"
    );
    assert_eq!(ctl.read_message()["id"], 2, "answers stay in order");
    let baseline = rss_kib(pid);

    // 40 clients ask for it and never read.
    let mut lazy = Vec::new();
    for _ in 0..40 {
        let mut c = UnixStream::connect(&d.control).unwrap();
        c.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"trace\"}\n")
            .unwrap();
        lazy.push(c);
    }
    // 8 are streamed at once (each holding a piece, not the whole trace); the others are
    // refused and counted.
    let limit_kib = 48 * 1024;
    let refused = wait_for("the trace requests to be answered or refused", || {
        let rss = rss_kib(pid);
        assert!(
            rss < baseline + limit_kib,
            "RSS {rss} KiB with 40 trace clients not reading (baseline {baseline} KiB, trace {trace_len} bytes)"
        );
        let (_, body) = d.scrape("/metrics");
        metric(&body, "loopd_control_rejected_total{reason=\"trace_busy\"}").filter(|&n| n >= 32.0)
    });
    assert_eq!(refused, 32.0);
    let during = rss_kib(pid);
    drop(lazy);

    // Closed: memory back near the baseline, and traces are served again.
    let after = wait_for("RSS back near the baseline", || {
        let rss = rss_kib(pid);
        (rss < baseline + 16 * 1024).then_some(rss)
    });
    println!(
        "trace {trace_len} bytes; RSS KiB: baseline {baseline}, 40 lazy trace clients {during}, after {after}"
    );
    // Served again once the daemon has seen the lazy clients go (they may still count as
    // streaming for a moment after RSS fell: busy until then, never longer than the deadline).
    let mut ctl = Control::connect(&d);
    let again = wait_for("a trace served again", || {
        let req = json!({"jsonrpc": "2.0", "id": 9, "method": "trace", "params": {"last_ms": 100}});
        let resp = ctl.raw(req.to_string().as_bytes());
        match resp["error"]["code"].as_i64() {
            Some(-32003) => None,
            _ => Some(resp),
        }
    });
    assert!(again["result"]["traceEvents"].is_array(), "{again}");
}

#[test]
fn sighup_applies_live_keys_and_names_restart_keys_once() {
    let toml = "threadpool_size = 2\nstall_threshold_ms = 100\nlog = \"info\"\n[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n";
    let d = Daemon::launch(
        toml,
        Launch {
            args: &["--loops", "2"],
            log_from_file: true,
            ..Launch::default()
        },
    );
    let mut ctl = Control::connect(&d);
    let c = ctl.call("config.get", json!({}));
    assert_eq!(
        (
            &c["threadpool_size"],
            &c["stall_threshold_ms"],
            &c["log_filter"]
        ),
        (&json!(2), &json!(100), &json!("info"))
    );

    // The file changes the live keys and `metrics_addr`; it says nothing of `loops` (given
    // on the command line), so that is no change.
    let path = d.dir.0.join("loopd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("threadpool_size = 2", "threadpool_size = 3")
        .replace("stall_threshold_ms = 100", "stall_threshold_ms = 250")
        .replace("log = \"info\"", "log = \"info,loopd=debug\"")
        .replace(
            "metrics_addr = \"127.0.0.1:0\"",
            "metrics_addr = \"127.0.0.1:1\"",
        );
    std::fs::write(&path, text).unwrap();
    for round in 1..=2 {
        d.signal("HUP");
        wait_for("the reload", || {
            (log_lines(&d, "config reloaded").len() == round).then_some(())
        });
        let c = ctl.call("config.get", json!({}));
        assert_eq!(c["threadpool_size"], 3, "{c}");
        assert_eq!(c["stall_threshold_ms"], 250, "{c}");
        assert_eq!(c["log_filter"], "info,loopd=debug", "{c}");
        let status = ctl.call("threadpool", json!({}));
        assert_eq!(status["size"], 3);
    }
    // The restart key is named once (not on every SIGHUP), `loops` never.
    let restart = log_lines(&d, "need a restart");
    assert_eq!(restart.len(), 1, "{restart:?}");
    assert!(restart[0].contains("`metrics_addr`"), "{restart:?}");
    assert!(log_lines(&d, "`loops`").is_empty(), "{:?}", d.logs());
    // The new log filter is in force: a control client's connection is logged at DEBUG.
    drop(Control::connect(&d));
    d.wait_log("control client connected", DEADLINE);
}

#[test]
fn http_counts_connections_reset_before_it_serves_them() {
    let d = Daemon::start(
        "[[service]]\nkind = \"http\"\nbind = \"127.0.0.1:0\"\nroot = \"@DIR@/www\"\n",
    );
    let http = d.addr("http");
    let mut ctl = Control::connect(&d);
    // Stopped, loopd cannot accept: the kernel completes the 200 connections, which are
    // reset before loopd gets to them.
    d.signal("STOP");
    for _ in 0..200 {
        reset(TcpStream::connect(http).unwrap());
    }
    d.signal("CONT");
    let (total, open) = wait_for("200 http connections counted and closed", || {
        let status = ctl.call("status", json!({}));
        let s = service(&status, "http");
        let total = s["connections_total"].as_u64().unwrap();
        let open = s["connections"].as_u64().unwrap();
        (total >= 200 && open == 0).then_some((total, open))
    });
    assert_eq!((total, open), (200, 0));
}

#[test]
fn the_threadpool_size_has_one_rule_for_flag_env_and_file() {
    let dir = TempDir::new("pool");
    let config = write_config(&dir.0, SEQ_ONLY);
    for bad in ["0", "99999", "-1", "four"] {
        let (code, stderr) = run_loopd(&["--config", &config], &[("LOOPD_THREADPOOL_SIZE", bad)]);
        assert_eq!(code, 1, "LOOPD_THREADPOOL_SIZE={bad}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("loopd: error: LOOPD_THREADPOOL_SIZE=")
                && stderr.contains("1..=1024"),
            "{stderr}"
        );
    }
    for bad in ["0", "99999"] {
        let (code, stderr) = run_loopd(&["--config", &config, "--threadpool-size", bad], &[]);
        assert_eq!(code, 1, "--threadpool-size {bad}: {stderr}");
        assert!(stderr.contains("out of range 1..=1024"), "{stderr}");
    }
    let file = write_config(&dir.0, &format!("threadpool_size = 0\n{SEQ_ONLY}"));
    let (code, stderr) = run_loopd(&["--config", &file], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("threadpool_size = 0 is out of range 1..=1024"),
        "{stderr}"
    );

    // In range, the variable sets the size (over the file, under the flag).
    let toml = format!("threadpool_size = 3\n{SEQ_ONLY}");
    for (args, want) in [(&[][..], 7), (&["--threadpool-size", "5"][..], 5)] {
        let d = Daemon::launch(
            &toml,
            Launch {
                args,
                env: &[("LOOPD_THREADPOOL_SIZE", "7")],
                ..Launch::default()
            },
        );
        let c = Control::connect(&d).call("config.get", json!({}));
        assert_eq!(c["threadpool_size"], want, "{args:?}: {c}");
    }
}

#[test]
fn control_ids_span_i64_and_u64_and_a_member_twice_is_refused() {
    let d = Daemon::start(SEQ_ONLY);
    let mut ctl = Control::connect(&d);
    let size = ctl.call("config.get", json!({}))["threadpool_size"].clone();
    for id in ["18446744073709551615", "-9223372036854775808", "\"x\""] {
        let r =
            ctl.raw(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}").as_bytes());
        assert_eq!(r["id"].to_string(), id, "{r}");
        assert!(r["result"]["as_of_ms"].is_u64(), "{r}");
    }
    for id in ["18446744073709551616", "-9223372036854775809", "1.5"] {
        let r =
            ctl.raw(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}").as_bytes());
        assert_eq!(r["error"]["code"], -32600, "{id}: {r}");
        assert_eq!(r["id"], Value::Null);
    }
    let r = ctl.raw(
        br#"{"jsonrpc":"2.0","id":9,"method":"ping","method":"config.set","params":{"threadpool_size":1}}"#,
    );
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert_eq!(r["id"], 9);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`method` appears twice"),
        "{r}"
    );
    let r = ctl.raw(br#"{"jsonrpc":"2.0","id":10,"method":"config.set","params":{"threadpool_size":1,"threadpool_size":2}}"#);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    // Neither ran.
    assert_eq!(ctl.call("config.get", json!({}))["threadpool_size"], size);
}

#[test]
fn a_control_path_too_long_is_refused_before_creating_its_directory() {
    let dir = TempDir::new("long");
    let config = write_config(&dir.0, SEQ_ONLY);
    let sub = dir.0.join("d".repeat(110));
    let socket = sub.join("c.sock");
    let (code, stderr) = run_loopd(
        &["--config", &config, "--control", socket.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("loopd: error: cannot use control socket ")
            && last.ends_with("a Unix socket path may have at most 107"),
        "{stderr}"
    );
    assert!(!sub.exists(), "{} was created", sub.display());
}

#[test]
fn a_taken_port_is_named_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new("taken");
    let config = write_config(
        &dir.0,
        &format!("[[service]]\nkind = \"http\"\nbind = \"127.0.0.1:{port}\"\n"),
    );
    let (code, stderr) = run_loopd(&["--config", &config], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "loopd: error: cannot start http service on 127.0.0.1:{port}: Address already in use (os error 98)\n"
        )
    );
}
