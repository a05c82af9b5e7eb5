//! The real binary: `--once` against no daemon, a fake daemon, and a recording.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Output};

use proto::{encode, Message, Notification, Response};

use crate::support::{self, fixture};

fn loop_top(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loop-top"))
        .args(args)
        .env_remove("LOOPD_SOCKET")
        .output()
        .unwrap()
}

/// Documented behaviour: with no daemon, `--once` prints the "cannot connect" frame to stdout,
/// a one-line error to stderr, and exits 3 (as `loopctl`).
#[test]
fn once_without_a_daemon_says_so_and_exits_3() {
    let out = loop_top(&["--once", "--socket", "/nonexistent", "--size", "80x24"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Cannot connect to loopd at /nonexistent"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 24);
    assert!(
        stderr.contains("loop-top: cannot connect to /nonexistent"),
        "{stderr}"
    );
}

#[test]
fn loopd_socket_env_is_the_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_loop-top"))
        .args(["--once"])
        .env("LOOPD_SOCKET", "/nonexistent/from-env.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/from-env.sock"));
}

#[test]
fn once_replays_a_recording() {
    let path = fixture("stall.ndjson");
    let out = loop_top(&[
        "--once",
        "--replay",
        path.to_str().unwrap(),
        "--at",
        "17",
        "--size",
        "80x24",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("STALL IN PROGRESS"), "{stdout}");
    assert!(stdout.contains("0:17.0 / 0:30.0"), "{stdout}");
}

#[test]
fn bad_usage_and_bad_files() {
    let out = loop_top(&["--interval", "5ms", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    let out = loop_top(&["--once", "--replay", "/nonexistent.ndjson"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read recording"));
}

/// A fake daemon that answers whatever it is asked with fixed data: `--once` prints the
/// overview from it and exits 0. Each step waits on the socket, not on a clock.
#[test]
fn once_against_a_fake_daemon() {
    let dir = std::env::temp_dir().join(format!("loop-top-once-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let hello = Notification::new(
            "hello",
            Some(serde_json::to_value(support::hello()).unwrap()),
        );
        sock.write_all(&encode(&hello).unwrap()).unwrap();
        let reader = BufReader::new(sock.try_clone().unwrap());
        let mut asked = Vec::new();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let Ok(Message::Request(req)) = Message::parse(&line) else {
                continue;
            };
            asked.push(req.method.clone());
            let result = match req.method.as_str() {
                "status" => serde_json::to_value(support::status(true)).unwrap(),
                "stalls" => serde_json::to_value(support::stalls_result(true)).unwrap(),
                "handles" => serde_json::to_value(support::handles(10)).unwrap(),
                _ => serde_json::json!({}),
            };
            sock.write_all(&encode(&Response::ok(req.id, result)).unwrap())
                .unwrap();
        }
        asked
    });
    let out = loop_top(&[
        "--once",
        "--socket",
        path.to_str().unwrap(),
        "--view",
        "handles",
        "--size",
        "100x30",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("● live"), "{stdout}");
    assert!(stdout.contains("STALL IN PROGRESS"), "{stdout}");
    assert!(stdout.contains("seq listener 127.0.0.1:7070"), "{stdout}");
    let asked = server.join().unwrap();
    assert_eq!(asked, vec!["status", "stalls", "handles"]);
    let _ = std::fs::remove_dir_all(&dir);
}
