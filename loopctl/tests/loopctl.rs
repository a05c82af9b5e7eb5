//! Black-box tests of the `loopctl` binary against `FakeLoopd`, a test double of the daemon's
//! socket (the real control server is not ready yet; real-daemon tests go in the workspace
//! `tests/` crate). Every subcommand in human and `--json` form, the exit codes, the protocol
//! checks and the streaming commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Mutex;

use proto::{ErrorCode, ErrorObject, Message, Response, ServerEvent};
use serde_json::{json, Value};
use support::fake_loopd::{answer_with_fixtures, fresh_dir, FakeLoopd, Script};
use support::{fixtures, loopctl, loopctl_at, run, wait};

// ---- one-shot commands, human and JSON -------------------------------------------------------

#[test]
fn status() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["status"]).ok();
    assert!(
        out.stdout.starts_with("loopd 0.1.0 · pid 4242 · up 1h02m"),
        "{}",
        out.stdout
    );
    for want in [
        "95.3%",
        "STALL IN PROGRESS",
        "PHASES (loop 0)",
        "50.0 MiB",
        "THREAD POOL",
    ] {
        assert!(out.stdout.contains(want), "missing {want}:\n{}", out.stdout);
    }
    assert!(
        !out.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let v = loopctl_at(&fake.path, &["status", "--json"]).ok().json();
    assert_eq!(v["pid"], 4242);
    assert_eq!(v["loops"][0]["utilization"]["last_1s"], 0.953);
    assert_eq!(v["loops"][0]["stall_in_progress"]["id"], 3);
    let typed: proto::Status = serde_json::from_value(v).unwrap();
    assert_eq!(
        typed.loops[0].stall_in_progress,
        fixtures::status().loops[0].stall_in_progress
    );
    assert_eq!(typed.services, fixtures::status().services);
}

#[test]
fn handles_pass_filters_to_the_daemon() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(
        &fake.path,
        &[
            "handles",
            "--type",
            "tcp",
            "--active",
            "--sort",
            "bytes-written",
            "--limit",
            "2",
            "--loop",
            "0",
        ],
    )
    .ok();
    assert_eq!(
        fake.params_of("handles"),
        json!({"type": "tcp", "active": true, "sort": "bytes_written", "limit": 2, "loop": 0})
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ID  LOOP  TYPE"), "{}", out.stdout);
    assert!(
        lines[2].contains("10.3 KiB") && lines[2].contains("3.10 MiB"),
        "{}",
        lines[2]
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("4 of 9 handles (snapshot "),
        "{}",
        out.stdout
    );

    let fake = FakeLoopd::start();
    let v = loopctl_at(&fake.path, &["--json", "handles", "--inactive"])
        .ok()
        .json();
    assert_eq!(fake.params_of("handles"), json!({"active": false}));
    assert_eq!(v["total"], 9);
    assert_eq!(v["handles"][1]["id"], 17);
    assert_eq!(
        v["handles"][3]["type"], "pipe",
        "unknown types pass through"
    );
}

#[test]
fn requests() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["requests", "--type", "fs", "--limit", "5"]).ok();
    assert_eq!(
        fake.params_of("requests"),
        json!({"type": "fs", "limit": 5})
    );
    assert!(
        out.stdout.contains("fs read ./index.html"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("12.3ms"), "{}", out.stdout);
    assert!(out.stdout.contains("3 requests"), "{}", out.stdout);

    let v = loopctl_at(&fake.path, &["requests", "--json"]).ok().json();
    assert_eq!(v["requests"][0]["state"], "running");
    assert_eq!(v["requests"].as_array().unwrap().len(), 3);
}

#[test]
fn threadpool() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["threadpool"]).ok();
    assert!(
        out.stdout.contains("loopd-worker-0  busy   work"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("panicked"), "{}", out.stdout);

    let v = loopctl_at(&fake.path, &["threadpool", "--json"])
        .ok()
        .json();
    assert_eq!(v["size"], 2);
    assert_eq!(v["workers"][0]["task_label"], "prime 2305843009213693951");
}

#[test]
fn stalls_show_stacks() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["stalls", "--limit", "2"]).ok();
    assert_eq!(fake.params_of("stalls"), json!({"limit": 2}));
    assert!(
        out.stdout.contains("stall #3 IN PROGRESS · 500ms so far"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("0  loopd::services::prime::is_prime  loopd/src/services/prime.rs:52"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("stack: stack sampling is not supported"),
        "{}",
        out.stdout
    );

    let out = loopctl_at(&fake.path, &["stalls", "--no-stacks"]).ok();
    assert!(!out.stdout.contains("innermost first"), "{}", out.stdout);
    assert!(!out.stdout.contains("prime.rs:52\n"), "{}", out.stdout);
    // The summary of the samples stays.
    assert!(
        out.stdout.contains("40 samples · hottest: "),
        "{}",
        out.stdout
    );

    let v = loopctl_at(&fake.path, &["stalls", "--json"]).ok().json();
    assert_eq!(v["total"], 4);
    assert_eq!(v["in_progress"][0]["stack"][0]["line"], 52);
    assert_eq!(v["recent"].as_array().unwrap().len(), 2);
}

#[test]
fn config_get_and_set() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["config", "get"]).ok();
    assert!(
        out.stdout
            .contains("log_filter                info,loopd::engine=debug"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("/srv/www"), "{}", out.stdout);
    let v = loopctl_at(&fake.path, &["config", "get", "--json"])
        .ok()
        .json();
    assert_eq!(v["metrics_addr"], "127.0.0.1:9464");

    let out = loopctl_at(&fake.path, &["config", "set", "threadpool_size", "8"]).ok();
    assert!(
        out.stdout.starts_with("set threadpool_size\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("threadpool_size           8"),
        "{}",
        out.stdout
    );
    assert_eq!(fake.params_of("config.set"), json!({"threadpool_size": 8}));

    let fake = FakeLoopd::start();
    let v = loopctl_at(
        &fake.path,
        &["--json", "config", "set", "stall-threshold-ms", "250ms"],
    )
    .ok()
    .json();
    assert_eq!(v["stall_threshold_ms"], 250);
    assert_eq!(
        fake.params_of("config.set"),
        json!({"stall_threshold_ms": 250})
    );

    let fake = FakeLoopd::start();
    loopctl_at(&fake.path, &["config", "set", "log_filter", "debug"]).ok();
    assert_eq!(fake.params_of("config.set"), json!({"log_filter": "debug"}));
}

#[test]
fn ping() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["ping"]).ok();
    assert!(
        out.stdout
            .starts_with("pong from loopd 0.1.0 (pid 4242, protocol 1)"),
        "{}",
        out.stdout
    );
    let v = loopctl_at(&fake.path, &["ping", "--json"]).ok().json();
    assert_eq!(v, json!({"as_of_ms": fixtures::AS_OF_MS}));
}

#[test]
fn trace_writes_a_chrome_trace() {
    let fake = FakeLoopd::start();
    let dir = fresh_dir();
    let file = dir.join("loop.trace.json");
    let out = run(loopctl()
        .arg("--socket")
        .arg(&fake.path)
        .args(["trace", "--last", "2s", "-o"])
        .arg(&file))
    .ok();
    assert_eq!(fake.params_of("trace"), json!({"last_ms": 2000}));
    assert!(out.stdout.contains("3 trace events"), "{}", out.stdout);
    assert!(
        out.stdout.contains("https://ui.perfetto.dev"),
        "{}",
        out.stdout
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, fixtures::trace());

    let file2 = dir.join("again.json");
    let out = run(loopctl()
        .arg("--socket")
        .arg(&fake.path)
        .args(["--json", "trace", "-o"])
        .arg(&file2))
    .ok();
    let v = out.json();
    assert_eq!(v["events"], 3);
    assert_eq!(v["file"], file2.to_str().unwrap());
    assert!(v["bytes"].as_u64().unwrap() > 100);
}

// ---- streams ---------------------------------------------------------------------------------

#[test]
fn watch_prints_every_pushed_update() {
    // The fake pushes 3 status updates (plus a stall opening and closing) and then exits.
    let fake = FakeLoopd::with(Script {
        close_after_pushes: true,
        ..Script::default()
    });
    let out = loopctl_at(&fake.path, &["watch", "--interval", "100ms"]);
    assert_eq!(out.code, 3, "the daemon went away: {out:#?}");
    assert!(
        out.stderr.contains("closed the connection"),
        "{}",
        out.stderr
    );
    let updates: Vec<&str> = out.stdout.lines().filter(|l| l.contains("4/4")).collect();
    // The current status first, then the 3 pushes.
    assert_eq!(updates.len(), 4, "{}", out.stdout);
    assert!(
        updates.iter().any(|l| l.starts_with("22:13:22 ")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.starts_with("TIME"), "{}", out.stdout);
    assert!(out.stdout.contains("stall opened: #3"), "{}", out.stdout);
    assert!(out.stdout.contains("stall closed: #3"), "{}", out.stdout);
    assert_eq!(
        fake.params_of("subscribe"),
        json!({"topics": ["status", "stalls"], "interval_ms": 100})
    );
}

#[test]
fn watch_json_is_ndjson_and_stops_after_count() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["watch", "--json", "--count", "4"]).ok();
    let docs: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 4, "{}", out.stdout);
    for (i, d) in docs.iter().enumerate() {
        let s: proto::Status = serde_json::from_value(d.clone()).unwrap();
        assert_eq!(s.as_of_ms, fixtures::AS_OF_MS + 1000 * i as u64);
    }
    assert_eq!(
        fake.params_of("subscribe"),
        json!({"topics": ["status"], "interval_ms": 1000})
    );
}

#[test]
fn record_writes_header_and_notifications() {
    let fake = FakeLoopd::start();
    let dir = fresh_dir();
    let file = dir.join("rec.ndjson");
    let out = run(loopctl()
        .arg("--socket")
        .arg(&fake.path)
        .args(["record", "--duration", "3s", "--interval", "500ms", "-o"])
        .arg(&file))
    .ok();
    assert!(
        out.stdout.contains("recorded 6 notifications"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("loop-top --replay"), "{}", out.stdout);
    assert_eq!(
        fake.params_of("subscribe"),
        json!({"topics": ["status", "handles", "stalls"], "interval_ms": 500})
    );

    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["loopctl_record"], 1);
    assert_eq!(header["interval_ms"], 500);
    assert_eq!(header["topics"], json!(["status", "handles", "stalls"]));
    assert_eq!(header["hello"]["pid"], 4242);
    assert_eq!(header["hello"]["protocol_version"], proto::PROTOCOL_VERSION);
    let started = header["started_at_ms"].as_u64().unwrap();

    let mut methods = Vec::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["received_at_ms"].as_u64().unwrap() >= started);
        // Each line is the notification itself (plus received_at_ms): proto reads it as is.
        let Message::Notification(n) = Message::parse(line).unwrap() else {
            panic!("not a notification: {line}")
        };
        let ev = ServerEvent::from_notification(n).unwrap();
        methods.push(ev.method().to_owned());
    }
    assert_eq!(
        methods,
        ["status", "status", "status", "handles", "stalls", "stalls"]
    );
}

#[test]
fn record_to_stdout() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["record", "-d", "1s", "-o", "-"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 7, "{}", out.stdout);
    assert!(
        out.stderr.contains("recorded 6 notifications"),
        "{}",
        out.stderr
    );
}

// ---- errors and exit codes --------------------------------------------------------------------

#[test]
fn no_daemon_exits_3_and_says_what_to_do() {
    let dir = fresh_dir();
    let sock = dir.join("nothing.sock");
    let out = loopctl_at(&sock, &["status"]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "loopctl: no loopd at {}: is it running?",
            sock.display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("start it with `loopd`"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());

    // A stale socket file with nobody listening.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = loopctl_at(&stale, &["ping"]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
}

#[test]
fn socket_from_environment() {
    let fake = FakeLoopd::start();
    let out = run(loopctl().env("LOOPD_SOCKET", &fake.path).arg("ping")).ok();
    assert!(
        out.stdout.contains(&fake.path.display().to_string()),
        "{}",
        out.stdout
    );

    // Default path: $XDG_RUNTIME_DIR/loopd/control.sock.
    let runtime = fresh_dir();
    let fake = FakeLoopd::at(
        runtime.join("loopd").join("control.sock"),
        runtime.clone(),
        Script::default(),
    );
    run(loopctl().env("XDG_RUNTIME_DIR", &runtime).arg("ping")).ok();
    assert_eq!(fake.requests().len(), 1);
    // An empty LOOPD_SOCKET counts as unset.
    run(loopctl()
        .env("LOOPD_SOCKET", "")
        .env("XDG_RUNTIME_DIR", &runtime)
        .arg("ping"))
    .ok();
    assert_eq!(fake.requests().len(), 2);

    let empty = fresh_dir();
    let out = run(loopctl().env("XDG_RUNTIME_DIR", &empty).arg("ping"));
    assert_eq!(out.code, 3);
    let want = empty.join("loopd").join("control.sock");
    assert!(
        out.stderr.contains(&want.display().to_string()),
        "{}",
        out.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = fresh_dir();
    let sock = dir.join("unused.sock");
    for args in [
        &["frobnicate"][..],
        &[],
        &["handles", "--sort", "sideways"],
        &["handles", "--type", "tpc"],
        &["handles", "--limit", "-1"],
        &["--timeout", "soon", "status"],
        &["watch", "--interval", "10ms"],
        &["record"],
        &["config", "set", "colour", "blue"],
        &["config", "set", "threadpool_size", "many"],
        &["config", "set", "threadpool_size", "0"],
        &["completions", "tcsh"],
    ] {
        let out = loopctl_at(&sock, args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // Help is not an error.
    let out = loopctl_at(&sock, &["--help"]).ok();
    assert!(out.stdout.contains("Exit codes:"), "{}", out.stdout);
}

#[test]
fn daemon_error_exits_1() {
    let fake = FakeLoopd::with(Script {
        answer: Box::new(|req| {
            if req.method == "handles" {
                Response::error(
                    Some(req.id.clone()),
                    ErrorObject::new(ErrorCode::BUSY, "too many connections; retry later"),
                )
            } else {
                answer_with_fixtures(req)
            }
        }),
        ..Script::default()
    });
    for json in [false, true] {
        let mut args = vec!["handles"];
        if json {
            args.push("--json");
        }
        let out = loopctl_at(&fake.path, &args);
        assert_eq!(out.code, 1, "{out:#?}");
        assert_eq!(
            out.stderr,
            "loopctl: loopd refused `handles`: too many connections; retry later (code -32003 daemon busy)\n"
        );
        assert!(out.stdout.is_empty());
    }
    // The same daemon answers other methods.
    loopctl_at(&fake.path, &["ping"]).ok();
}

#[test]
fn protocol_version_mismatch_is_explained() {
    let mut hello = serde_json::to_value(fixtures::hello()).unwrap();
    hello["protocol_version"] = json!(99);
    hello["server_version"] = json!("9.0.0");
    let fake = FakeLoopd::with(Script {
        hello: Some(hello),
        ..Script::default()
    });
    let out = loopctl_at(&fake.path, &["status"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("loopd 9.0.0")
            && out.stderr.contains("speaks control protocol version 99")
            && out
                .stderr
                .contains(&format!("speaks version {}", proto::PROTOCOL_VERSION)),
        "{}",
        out.stderr
    );
    assert!(
        fake.requests().is_empty(),
        "nothing is sent to an incompatible daemon"
    );
}

#[test]
fn older_daemon_without_a_method_is_explained() {
    let mut hello = fixtures::hello();
    hello.methods.retain(|m| m != "trace");
    let fake = FakeLoopd::with(Script {
        hello: Some(serde_json::to_value(hello).unwrap()),
        ..Script::default()
    });
    let out = loopctl_at(&fake.path, &["trace", "-o", "/dev/null"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("does not support `trace`"),
        "{}",
        out.stderr
    );
}

#[test]
fn silent_daemon_times_out_with_exit_3() {
    let fake = FakeLoopd::with(Script {
        hello: None,
        ..Script::default()
    });
    let out = loopctl_at(&fake.path, &["--timeout", "1s", "status"]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(
        out.stderr.contains("did not send its hello within 1.00s"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--timeout"), "{}", out.stderr);
}

#[test]
fn broken_pipe_exits_0_quietly() {
    // The daemon answers `handles` only once the reader of loopctl's stdout is gone.
    let (reader_gone, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let fake = FakeLoopd::with(Script {
        answer: Box::new(move |req| {
            if req.method == "handles" {
                gate.lock().unwrap().recv().unwrap();
            }
            answer_with_fixtures(req)
        }),
        ..Script::default()
    });
    let mut child = loopctl()
        .arg("--socket")
        .arg(&fake.path)
        .arg("handles")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head -0`
    reader_gone.send(()).unwrap();
    let status = wait(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn head_reads_first_line() {
    // `loopctl handles | head -1` in a real shell.
    let fake = FakeLoopd::start();
    let mut child = loopctl()
        .arg("--socket")
        .arg(&fake.path)
        .arg("handles")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("ID  LOOP"), "{first}");
    assert_eq!(wait(&mut child).code(), Some(0));
}

// ---- output details ---------------------------------------------------------------------------

#[test]
fn colour_only_when_asked_and_no_color_respected() {
    let fake = FakeLoopd::start();
    let out = loopctl_at(&fake.path, &["--color", "always", "status"]).ok();
    assert!(out.stdout.contains("\x1b[31m"), "{}", out.stdout);
    let out = run(loopctl()
        .env("NO_COLOR", "1")
        .arg("--socket")
        .arg(&fake.path)
        .args(["--color", "auto", "status"]))
    .ok();
    assert!(!out.stdout.contains('\x1b'));
    // JSON is never coloured.
    let out = loopctl_at(&fake.path, &["--color", "always", "--json", "status"]).ok();
    assert!(!out.stdout.contains('\x1b'));
}

#[test]
fn completions_and_man_page() {
    let sock = fresh_dir().join("unused.sock");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = loopctl_at(&sock, &["completions", shell]).ok();
        assert!(out.stdout.contains("loopctl"), "{shell}");
    }
    let out = loopctl_at(&sock, &["completions", "bash"]).ok();
    assert!(out.stdout.contains("threadpool") && out.stdout.contains("--socket"));
    let out = loopctl_at(&sock, &["man"]).ok();
    assert!(
        out.stdout.starts_with(".ie \\n(.g .ds Aq") || out.stdout.contains(".TH loopctl"),
        "{}",
        &out.stdout[..200]
    );
    assert!(out.stdout.contains("status"));
}

// ---- Ctrl-C -----------------------------------------------------------------------------------

/// Starts `loopctl ARGS` against `fake`, reads `lines` lines of its stdout, sends it SIGINT and
/// returns its exit code, everything it printed and its stderr.
fn interrupt_after(fake: &FakeLoopd, args: &[&str], lines: usize) -> (Option<i32>, String, String) {
    let mut child = loopctl()
        .arg("--socket")
        .arg(&fake.path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    for _ in 0..lines {
        assert!(
            stdout.read_line(&mut seen).unwrap() > 0,
            "ended early: {seen}"
        );
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait(&mut child);
    std::io::Read::read_to_string(&mut stdout, &mut seen).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), seen, stderr)
}

#[test]
fn watch_stops_cleanly_on_ctrl_c() {
    let fake = FakeLoopd::start();
    // Header, the current status, the 3 pushes.
    let (code, out, err) = interrupt_after(&fake, &["watch"], 5);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn record_keeps_a_whole_file_on_ctrl_c() {
    let fake = FakeLoopd::start();
    // Header and the 6 pushes.
    let (code, out, err) = interrupt_after(&fake, &["record", "-o", "-"], 7);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("recorded 6 notifications"), "{err}");
    for line in out.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
}
