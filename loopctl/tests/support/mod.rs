//! Test helpers: the fixtures, a fake daemon and a runner for the real `loopctl` binary.
#![allow(dead_code)]

pub mod fake_loopd;
pub mod fixtures;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single loopctl run may take before the test fails (generous: CI machines are
/// slow; nothing in these tests waits for a deadline longer than a few seconds).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a loopctl run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }

    /// Asserts success and returns self.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "loopctl failed: {self:#?}");
        assert!(self.stderr.is_empty(), "unexpected stderr: {self:#?}");
        self
    }
}

/// `loopctl` with a clean environment: no socket, colour or runtime-dir settings inherited.
pub fn loopctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopctl"));
    cmd.env_remove("LOOPD_SOCKET")
        .env_remove("NO_COLOR")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion (at most [`RUN_LIMIT`]) and collects its output.
pub fn run(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loopctl");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let status = wait(&mut child);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Waits for `child`, killing it (and failing the test) after [`RUN_LIMIT`].
pub fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("loopctl did not finish within {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `loopctl --socket <socket> ARGS…`.
pub fn loopctl_at(socket: &std::path::Path, args: &[&str]) -> Run {
    run(loopctl().arg("--socket").arg(socket).args(args))
}
