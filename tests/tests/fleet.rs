//! Every loop on the machine in one view (issue #18): three real daemons (one with
//! `--loops 2`) with their sockets in one runtime directory, plus a stale socket, seen by
//! `loopctl ls` and `loop-top --once --fleet`.
//!
//! Build the binaries first (`cargo build --workspace`). Every wait polls with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{binary, connect, read_line, Daemon, Launch, TempDir};

/// Generous: debug builds on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// 2^61 − 1: trial division blocks a debug build's loop for seconds.
const VERY_SLOW_PRIME: &str = "2305843009213693951";

const PRIME_INLINE: &str =
    "[[service]]\nkind = \"prime\"\nbind = \"127.0.0.1:0\"\nmode = \"inline\"\n";
const SEQ: &str = "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n";

/// Runs `bin args…` to completion: (exit code, stdout, stderr).
fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(binary(bin))
        .args(args)
        .env_remove("LOOPD_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

/// `loopctl ls --json --dir DIR`, parsed; it must exit 0.
fn ls(dir: &Path) -> Value {
    let dir = dir.display().to_string();
    let (code, out, err) = run("loopctl", &["ls", "--json", "--dir", &dir]);
    assert_eq!(code, 0, "loopctl ls: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn pids(listing: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = listing["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

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

/// A daemon whose control socket is `dir/name`.
fn daemon_in(dir: &Path, name: &str, services: &str, extra: &[&str]) -> Daemon {
    let socket = dir.join(name).display().to_string();
    let mut args = vec!["--control", socket.as_str()];
    args.extend_from_slice(extra);
    Daemon::launch(
        services,
        Launch {
            args: &args,
            ..Launch::default()
        },
    )
}

#[test]
fn ls_and_the_fleet_view_see_every_daemon_of_the_runtime_directory() {
    let rt = TempDir::new("fleet-rt");
    let blocked = daemon_in(&rt.0, "control.sock", PRIME_INLINE, &[]);
    let mut quiet = daemon_in(&rt.0, "quiet-1.sock", SEQ, &[]);
    let wide = daemon_in(&rt.0, "wide-2.sock", SEQ, &["--loops", "2"]);
    // A socket nobody listens on: a process that died without removing it.
    drop(UnixListener::bind(rt.0.join("dead-9.sock")).unwrap());
    // Not a socket: not an endpoint, not reported.
    std::fs::write(rt.0.join("notes.txt"), "x").unwrap();

    let listing = ls(&rt.0);
    let mut want = vec![
        u64::from(blocked.pid()),
        u64::from(quiet.pid()),
        u64::from(wide.pid()),
    ];
    want.sort_unstable();
    assert_eq!(pids(&listing), want, "{listing:#}");
    assert_eq!(listing["loops"], 4, "{listing:#}");
    let wide_line = listing["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pid"] == wide.pid())
        .unwrap();
    assert_eq!(wide_line["loops"], 2);
    assert_eq!(wide_line["kind"], "loopd");
    assert_eq!(wide_line["program"], "loopd");
    assert_eq!(wide_line["per_loop"].as_array().unwrap().len(), 2);
    let unreachable = listing["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{listing:#}");
    assert!(unreachable[0]["socket"]
        .as_str()
        .unwrap()
        .ends_with("dead-9.sock"));
    assert_eq!(unreachable[0]["stale"], true);
    assert!(
        rt.0.join("dead-9.sock").exists(),
        "ls never removes a socket"
    );
    // The human table: one line per endpoint, the stale one with its reason.
    let dir = rt.0.display().to_string();
    let (code, text, _) = run("loopctl", &["ls", "--dir", &dir]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with("3 endpoints · 4 loops · 1 unreachable socket"),
        "{text}"
    );
    assert!(text.contains("dead-9.sock  connection refused"), "{text}");

    // Block one daemon's loop: its row is red with the attribution, the others are not.
    let mut s = connect(blocked.addr("prime"));
    let label = format!("prime peer {}", s.local_addr().unwrap());
    writeln!(s, "{VERY_SLOW_PRIME}").unwrap();
    let (tx, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_line(&mut s));
    });
    let frame = poll("the stalled row in the fleet view", || {
        let (code, out, err) = run(
            "loop-top",
            &["--once", "--fleet", "--dir", &dir, "--size", "200x40"],
        );
        if code != 0 {
            return Err(format!("exit {code}: {err}"));
        }
        let stalled = out.lines().any(|l| {
            l.contains(&blocked.pid().to_string()) && l.contains("STALL") && l.contains(&label)
        });
        if stalled {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(
        frame.contains(&format!(
            "STALL IN PROGRESS  loopd pid {} loop 0",
            blocked.pid()
        )),
        "{frame}"
    );
    for other in [quiet.pid(), wide.pid()] {
        let rows: Vec<&str> = frame
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(other.to_string().as_str()))
            .collect();
        assert!(!rows.is_empty(), "{other}: {frame}");
        for row in rows {
            assert!(!row.contains("STALL"), "{row}");
            assert!(
                row.contains(".sock"),
                "a normal row names its socket: {row}"
            );
        }
    }
    assert!(
        frame.contains("3 endpoints · 4 loops · 1 unreachable"),
        "{frame}"
    );
    assert_eq!(
        answer.recv_timeout(Duration::from_secs(120)).unwrap(),
        "prime"
    );

    // Kill one (SIGKILL: its socket stays behind): the next ls no longer lists it, and
    // reports its socket as stale.
    quiet.signal("KILL");
    quiet.wait_exit(DEADLINE);
    let listing = ls(&rt.0);
    let mut want = vec![u64::from(blocked.pid()), u64::from(wide.pid())];
    want.sort_unstable();
    assert_eq!(pids(&listing), want, "{listing:#}");
    assert_eq!(listing["loops"], 3);
    let stale: Vec<&str> = listing["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["stale"] == true)
        .map(|u| u["socket"].as_str().unwrap())
        .collect();
    assert_eq!(stale.len(), 2, "{listing:#}");
    assert!(
        stale.iter().any(|s| s.ends_with("quiet-1.sock")),
        "{stale:?}"
    );
}

#[test]
fn ls_exits_3_when_nothing_answers_and_socket_narrows_it_to_one() {
    let rt = TempDir::new("fleet-empty");
    let dir = rt.0.display().to_string();
    let (code, out, err) = run("loopctl", &["ls", "--dir", &dir]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("no endpoint sockets there"), "{err}");
    drop(UnixListener::bind(rt.0.join("dead.sock")).unwrap());
    let (code, out, err) = run("loopctl", &["ls", "--json", "--dir", &dir]);
    assert_eq!(code, 3, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unreachable"][0]["stale"], true, "{v}");

    let d = daemon_in(&rt.0, "one.sock", SEQ, &[]);
    let one = rt.0.join("one.sock").display().to_string();
    let (code, out, _) = run("loopctl", &["--socket", &one, "ls", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pids(&v), vec![u64::from(d.pid())]);
    assert_eq!(
        v["unreachable"].as_array().unwrap().len(),
        0,
        "only --socket: {v}"
    );
}
