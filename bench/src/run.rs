//! Running one peer once, as a child process, and measuring it from outside.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::net::{self, Client};
use crate::scenario::EXIT_UNSUPPORTED;
use crate::sys;

/// One successful run: what the peer said plus what the harness measured.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Operations the peer did (timers, round trips, jobs).
    pub ops: u64,
    /// The peer's own wall seconds for the measured part (no process start-up).
    pub seconds: f64,
    /// Wall seconds from spawn to exit, as the harness saw them.
    pub process_seconds: f64,
    /// CPU seconds in user mode of the whole child.
    pub user_seconds: f64,
    /// CPU seconds in the kernel of the whole child.
    pub sys_seconds: f64,
    /// Peak RSS of the child, KiB.
    pub max_rss_kib: u64,
    /// Anything else the peer reported (phase splits, versions).
    pub extra: Value,
}

impl Measurement {
    /// User + system CPU seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.sys_seconds
    }

    /// Operations per second of the peer's own wall time.
    pub fn ops_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// How one run ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It ran and reported.
    Ok(Measurement),
    /// The peer does not implement this scenario (exit code [`EXIT_UNSUPPORTED`]).
    Unsupported,
    /// It failed; the reason, with the tail of its stderr.
    Failed(String),
}

/// Runs `cmd` to completion (killing it after `timeout`) and checks that its result
/// line is for `scenario`.
pub fn run(mut cmd: Command, scenario: &str, timeout: Duration) -> Outcome {
    match run_inner(&mut cmd, scenario, timeout, None) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

/// A network scenario's client side: which client, and its sizes.
#[derive(Clone, Copy, Debug)]
pub struct NetRun {
    /// The client program.
    pub client: Client,
    /// Round trips (or connections).
    pub n: u64,
    /// Connections the server is told to serve.
    pub conns: u64,
}

/// Runs server `cmd`: reads its port (the first line on stdout), runs the client
/// against it, then waits for the server to exit by itself (it does once it has served
/// `conns` connections) and reads its CPU time. The result is the client's count and
/// timing with the server's CPU, RSS and process time.
pub fn run_net(mut cmd: Command, net: NetRun, timeout: Duration) -> Outcome {
    match run_inner(&mut cmd, "", timeout, Some(net)) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

fn run_inner(
    cmd: &mut Command,
    scenario: &str,
    timeout: Duration,
    net: Option<NetRun>,
) -> Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let pid = child.id();

    // The watchdog kills the child at the deadline unless it has ended by then. The
    // flag is set only once the child has ended but before it is reaped, so the
    // watchdog can never signal a pid that was reaped and reused.
    let ended = Arc::new(Mutex::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let ended = Arc::clone(&ended);
        thread::spawn(move || {
            if done_rx.recv_timeout(timeout).is_err() {
                let ended = ended.lock().unwrap_or_else(PoisonError::into_inner);
                if !*ended {
                    let _ = sys::kill(pid);
                    return true;
                }
            }
            false
        })
    };
    let mut stderr = child.stderr.take();
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let mut stdout = String::new();
    let mut client: Option<Result<net::ClientResult>> = None;
    if let Some(out) = child.stdout.take() {
        let mut out = BufReader::new(out);
        if let Some(net) = net {
            let mut first = String::new();
            out.read_line(&mut first)
                .context("reading the server's port")?;
            let result = first
                .trim()
                .parse::<u16>()
                .with_context(|| format!("the server's first line is not a port: {first:?}"))
                .and_then(|port| {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    net::run(net.client, addr, pid, net.n, net.conns, started + timeout)
                });
            if result.is_err() && !first.is_empty() {
                // The server would wait for connections that never come. It has not
                // been reaped (that happens below), so the pid is still its own.
                let _ = sys::kill(pid);
            }
            client = Some(result);
        }
        out.read_to_string(&mut stdout)
            .context("reading the peer's stdout")?;
    }
    sys::wait_exit(pid).context("waiting for the peer")?;
    *ended.lock().unwrap_or_else(PoisonError::into_inner) = true;
    let usage = sys::wait4(pid).context("reaping the peer")?;
    let process_seconds = started.elapsed().as_secs_f64();
    let _ = done_tx.send(());
    let killed = watchdog.join().unwrap_or(false);
    let stderr = stderr_reader.join().unwrap_or_default();

    if killed {
        bail!("killed after the {timeout:?} time limit{}", tail(&stderr));
    }
    if usage.status.code() == Some(EXIT_UNSUPPORTED) {
        return Ok(Outcome::Unsupported);
    }
    if let Some(Err(e)) = &client {
        bail!("client: {e:#}{}", tail(&stderr));
    }
    if !usage.status.success() {
        bail!("{}{}", usage.status, tail(&stderr));
    }
    if let Some(Ok(c)) = client {
        let mut extra = c.extra;
        if let Some(server) = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            extra["server"] = server;
        }
        return Ok(Outcome::Ok(Measurement {
            ops: c.ops,
            seconds: c.seconds,
            process_seconds,
            user_seconds: usage.user.as_secs_f64(),
            sys_seconds: usage.sys.as_secs_f64(),
            max_rss_kib: usage.max_rss_kib,
            extra,
        }));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("no result line on stdout{}", tail(&stderr)))?;
    let report = parse_report(line)?;
    if report.scenario != scenario {
        bail!(
            "peer reported scenario {:?}, expected {scenario:?}",
            report.scenario
        );
    }
    Ok(Outcome::Ok(Measurement {
        ops: report.ops,
        seconds: report.seconds,
        process_seconds,
        user_seconds: usage.user.as_secs_f64(),
        sys_seconds: usage.sys.as_secs_f64(),
        max_rss_kib: usage.max_rss_kib,
        extra: report.extra,
    }))
}

/// The result line a peer prints.
#[derive(Debug, PartialEq)]
struct Report {
    scenario: String,
    ops: u64,
    seconds: f64,
    extra: Value,
}

fn parse_report(line: &str) -> Result<Report> {
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("result line is not JSON: {line:?}"))?;
    let field = |name: &str| {
        v.get(name)
            .with_context(|| format!("result line has no {name:?}: {line:?}"))
    };
    let scenario = field("scenario")?
        .as_str()
        .context("\"scenario\" is not a string")?
        .to_owned();
    let ops = field("ops")?
        .as_u64()
        .context("\"ops\" is not an unsigned integer")?;
    let seconds = field("seconds")?
        .as_f64()
        .context("\"seconds\" is not a number")?;
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("\"seconds\" must be positive, got {seconds}");
    }
    let extra = v.get("extra").cloned().unwrap_or(Value::Null);
    Ok(Report {
        scenario,
        ops,
        seconds,
        extra,
    })
}

fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let from = lines.len().saturating_sub(5);
    format!("; stderr: {}", lines[from..].join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_result_line() {
        let r = parse_report(
            r#"{"scenario":"timers","peer":"libuv","ops":10,"seconds":0.5,"extra":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(r.scenario, "timers");
        assert_eq!(r.ops, 10);
        assert_eq!(r.seconds, 0.5);
        assert_eq!(r.extra["a"], 1);
    }

    #[test]
    fn rejects_bad_result_lines() {
        assert!(parse_report("hello").is_err());
        assert!(parse_report(r#"{"scenario":"x","ops":1}"#).is_err());
        assert!(parse_report(r#"{"scenario":"x","ops":1,"seconds":0}"#).is_err());
    }

    #[test]
    fn runs_a_child_and_measures_it() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"echo '{"scenario":"s","peer":"p","ops":3,"seconds":0.25}'"#,
        ]);
        let Outcome::Ok(m) = run(cmd, "s", Duration::from_secs(10)) else {
            panic!("run failed")
        };
        assert_eq!(m.ops, 3);
        assert_eq!(m.ops_per_second(), 12.0);
        assert!(m.process_seconds > 0.0);
    }

    #[test]
    fn reports_unsupported_failed_and_timed_out_runs() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        assert!(matches!(
            run(cmd, "s", Duration::from_secs(10)),
            Outcome::Unsupported
        ));

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 1"]);
        let Outcome::Failed(why) = run(cmd, "s", Duration::from_secs(10)) else {
            panic!("should fail")
        };
        assert!(why.contains("boom"), "{why}");

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let Outcome::Failed(why) = run(cmd, "s", Duration::from_millis(100)) else {
            panic!("should time out")
        };
        assert!(why.contains("time limit"), "{why}");
    }
}
