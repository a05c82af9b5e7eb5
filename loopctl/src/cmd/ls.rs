//! `loopctl ls`: every observable loop on this machine, one line per endpoint.
//!
//! The endpoints are the sockets of the runtime directory (`proto::discovery`): the daemon's
//! `control.sock` and each program's `<program>-<pid>.sock`. Each is asked for `hello` and
//! `status` with a short deadline; those that do not answer are listed with the reason (a
//! stale socket is reported, never removed). A line sums an endpoint's loops: ELU and lag are
//! its busiest loop's, handles and requests the sum; `--json` has each loop too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::discovery::{self, Answer, Probe, Scan};
use proto::{LoopStatus, Stall, Status};
use serde::Serialize;

use crate::client::ClientError;
use crate::cmd::status::{alarm_paint, elu_paint, target};
use crate::cmd::Ctx;
use crate::output::{self, Align, Cell, Paint, Style, Table};

/// Where `ls` looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// Every socket of this directory.
    Dir(PathBuf),
    /// This one socket (`--socket`).
    Socket(PathBuf),
}

/// Runs `ls`: exit 0 when at least one endpoint answered, 3 (cannot reach) otherwise.
///
/// # Errors
///
/// [`ClientError::NotRunning`] when no endpoint answered; a broken stdout.
pub fn run(ctx: &Ctx, place: &Where, timeout: Duration) -> anyhow::Result<()> {
    let scan = match place {
        Where::Dir(dir) => discovery::discover(dir, timeout),
        Where::Socket(path) => Scan {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            probes: vec![discovery::probe(path, timeout)],
            ..Scan::default()
        },
    };
    let listing = Listing::from_scan(&scan);
    if ctx.out.json {
        ctx.out.json(&listing)?;
    } else {
        ctx.out.text(&render(&listing, &ctx.out.style))?;
    }
    if listing.endpoints.is_empty() {
        let reason = match (&scan.error, listing.unreachable.len()) {
            (Some(e), _) => e.clone(),
            (None, 0) => {
                "no endpoint sockets there; start loopd, or a program with the agent".to_owned()
            }
            (None, n) => format!("none of its {n} socket(s) answered"),
        };
        return Err(ClientError::NotRunning {
            path: match place {
                Where::Dir(d) => d.clone(),
                Where::Socket(s) => s.clone(),
            },
            reason,
        }
        .into());
    }
    Ok(())
}

/// What `ls --json` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Listing {
    /// The directory looked in.
    pub dir: PathBuf,
    /// Endpoints that answered, in socket-name order.
    pub endpoints: Vec<Endpoint>,
    /// Loops of all of them.
    pub loops: usize,
    /// Sockets that did not answer, with the reason.
    pub unreachable: Vec<Unreachable>,
    /// The directory could not be read.
    pub error: Option<String>,
    /// Sockets not looked at (beyond `proto::discovery::MAX_SOCKETS`).
    pub skipped: usize,
}

/// One endpoint that answered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Endpoint {
    /// Its socket.
    pub socket: PathBuf,
    /// The program (`loopd`, `node`, `my-server`).
    pub program: String,
    /// Its process id.
    pub pid: u32,
    /// `loopd`, `program` (built on loopd's library) or `agent` (a libuv program).
    pub kind: String,
    /// The server's version.
    pub server_version: String,
    /// The libuv version (agent only).
    pub libuv_version: Option<String>,
    /// How many loops.
    pub loops: usize,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Utilization over the last second of its busiest loop, 0..=1.
    pub elu: f64,
    /// Lag p99 of its most lagging loop, seconds.
    pub lag_p99_seconds: f64,
    /// Loops blocked by a stall right now.
    pub stalls_in_progress: usize,
    /// Stalls since start.
    pub stalls_total: u64,
    /// Open handles, all loops.
    pub handles: u64,
    /// Requests in flight, all loops.
    pub requests: u64,
    /// The thread pool.
    pub pool: Pool,
    /// Each loop.
    pub per_loop: Vec<LoopLine>,
}

/// The thread pool in an `ls` line.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Pool {
    /// Workers.
    pub size: u32,
    /// Workers running a task.
    pub busy: u32,
    /// Tasks waiting.
    pub queued: u64,
}

/// One loop of an endpoint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoopLine {
    /// Its index.
    #[serde(rename = "loop")]
    pub loop_index: u32,
    /// Utilization over the last second.
    pub elu: f64,
    /// Lag p99, seconds.
    pub lag_p99_seconds: f64,
    /// Stalls since start.
    pub stalls_total: u64,
    /// Open handles.
    pub handles: u64,
    /// Requests in flight.
    pub requests: u64,
    /// The stall blocking it now, with its attribution.
    pub stall_in_progress: Option<Stall>,
}

/// A socket that did not answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unreachable {
    /// Its path.
    pub socket: PathBuf,
    /// Why, in words.
    pub reason: String,
    /// Nobody listens: a socket left by a process that is gone (not removed by `ls`).
    pub stale: bool,
}

/// `loopd`, `program` or `agent` (older servers send no kind: they are loopd).
pub fn kind_of(host: &proto::Host) -> &str {
    if host.kind.is_empty() {
        "loopd"
    } else {
        &host.kind
    }
}

/// The program's name: the host's, else the socket's stem without its `-<pid>`.
pub fn program_of(host: &proto::Host, socket: &Path) -> String {
    if !host.program.is_empty() {
        return host.program.clone();
    }
    if kind_of(host) == "loopd" {
        return "loopd".to_owned();
    }
    let stem = socket
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, pid)) if pid.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => stem,
    }
}

fn loop_line(l: &LoopStatus) -> LoopLine {
    LoopLine {
        loop_index: l.loop_index,
        elu: l.utilization.last_1s,
        lag_p99_seconds: l.lag.p99,
        stalls_total: l.stalls_total,
        handles: l.handles.values().map(|c| c.total).sum(),
        requests: l.requests.values().map(|c| c.active).sum(),
        stall_in_progress: l.stall_in_progress.clone(),
    }
}

fn endpoint(socket: &Path, a: &Answer) -> Endpoint {
    let s: &Status = &a.status;
    let per_loop: Vec<LoopLine> = s.loops.iter().map(loop_line).collect();
    let max = |f: fn(&LoopLine) -> f64| per_loop.iter().map(f).fold(0.0, f64::max);
    let host = if s.host == proto::Host::default() {
        &a.hello.host
    } else {
        &s.host
    };
    Endpoint {
        socket: socket.to_owned(),
        program: program_of(host, socket),
        pid: if s.pid != 0 { s.pid } else { a.hello.pid },
        kind: kind_of(host).to_owned(),
        server_version: s.server_version.clone(),
        libuv_version: host.libuv_version.clone(),
        loops: per_loop.len(),
        uptime_seconds: s.uptime_seconds,
        elu: max(|l| l.elu),
        lag_p99_seconds: max(|l| l.lag_p99_seconds),
        stalls_in_progress: per_loop
            .iter()
            .filter(|l| l.stall_in_progress.is_some())
            .count(),
        stalls_total: s.stalls_total,
        handles: per_loop.iter().map(|l| l.handles).sum(),
        requests: per_loop.iter().map(|l| l.requests).sum(),
        pool: Pool {
            size: s.threadpool.size,
            busy: s.threadpool.busy_workers,
            queued: s.threadpool.queue_depth,
        },
        per_loop,
    }
}

impl Listing {
    /// The listing of a scan.
    pub fn from_scan(scan: &Scan) -> Listing {
        let mut endpoints = Vec::new();
        let mut unreachable = Vec::new();
        for Probe { socket, outcome } in &scan.probes {
            match outcome {
                Ok(a) => endpoints.push(endpoint(socket, a)),
                Err(u) => unreachable.push(Unreachable {
                    socket: socket.clone(),
                    reason: u.reason.clone(),
                    stale: u.stale,
                }),
            }
        }
        Listing {
            dir: scan.dir.clone(),
            loops: endpoints.iter().map(|e| e.loops).sum(),
            endpoints,
            unreachable,
            error: scan.error.clone(),
            skipped: scan.skipped,
        }
    }
}

fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// `ls` as text.
pub fn render(l: &Listing, style: &Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} · {} · {} in {}",
        style.paint(Paint::Bold, &plural(l.endpoints.len(), "endpoint")),
        plural(l.loops, "loop"),
        plural(l.unreachable.len(), "unreachable socket"),
        l.dir.display()
    );
    if let Some(e) = &l.error {
        let _ = writeln!(out, "{}", style.paint(Paint::Yellow, e));
    }
    if !l.endpoints.is_empty() {
        out.push('\n');
        let mut t = Table::new(&[
            ("PROGRAM", Align::Left),
            ("PID", Align::Right),
            ("KIND", Align::Left),
            ("LOOPS", Align::Right),
            ("UPTIME", Align::Right),
            ("ELU", Align::Right),
            ("LAG p99", Align::Right),
            ("STALLS now/total", Align::Right),
            ("HANDLES", Align::Right),
            ("REQS", Align::Right),
            ("POOL busy/size", Align::Right),
            ("QUEUED", Align::Right),
            ("SOCKET", Align::Left),
        ]);
        for e in &l.endpoints {
            // A stall is counted in the total once it closes; the one running now is in it.
            let total = e.stalls_total.max(e.stalls_in_progress as u64);
            let stalls = format!("{}/{total}", e.stalls_in_progress);
            t.row(vec![
                Cell::new(e.program.clone(), Paint::Cyan),
                e.pid.to_string().into(),
                e.kind.clone().into(),
                e.loops.to_string().into(),
                output::duration(e.uptime_seconds).into(),
                Cell::new(output::percent(e.elu), elu_paint(e.elu)),
                output::duration(e.lag_p99_seconds).into(),
                Cell::new(stalls, alarm_paint(e.stalls_in_progress as u64)),
                e.handles.to_string().into(),
                e.requests.to_string().into(),
                format!("{}/{}", e.pool.busy, e.pool.size).into(),
                e.pool.queued.to_string().into(),
                Cell::new(file_name(&e.socket), Paint::Dim),
            ]);
        }
        out.push_str(&t.render(style));
    }
    for e in &l.endpoints {
        for lp in &e.per_loop {
            if let Some(s) = &lp.stall_in_progress {
                let _ = writeln!(
                    out,
                    "\n{}  {} pid {} loop {} · blocked {} so far in {} · {}",
                    style.paint(Paint::Red, "STALL IN PROGRESS"),
                    e.program,
                    e.pid,
                    s.loop_index,
                    output::duration(s.duration_seconds),
                    s.phase,
                    target(s)
                );
            }
        }
    }
    if !l.unreachable.is_empty() {
        out.push('\n');
        out.push_str(&output::title(style, "UNREACHABLE"));
        for u in &l.unreachable {
            let _ = writeln!(
                out,
                "  {}  {}",
                file_name(&u.socket),
                style.paint(Paint::Yellow, &u.reason)
            );
        }
    }
    if l.skipped > 0 {
        let _ = writeln!(out, "\n{} more sockets not looked at", l.skipped);
    }
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::discovery::Unreachable as Gone;
    use proto::{HandleCounts, HandleType, Hello, Host, ThreadPoolSummary, Utilization};

    fn answer(pid: u32, loops: u32, kind: &str, program: &str) -> Answer {
        let host = Host {
            kind: kind.into(),
            program: program.into(),
            ..Host::default()
        };
        let l = |i: u32| LoopStatus {
            loop_index: i,
            utilization: Utilization {
                last_1s: 0.1 * f64::from(i + 1),
                ..Utilization::default()
            },
            handles: [(
                HandleType::Tcp,
                HandleCounts {
                    total: 3,
                    ..HandleCounts::default()
                },
            )]
            .into_iter()
            .collect(),
            stall_in_progress: (i == 1).then(|| Stall {
                loop_index: 1,
                target_type: "tcp".into(),
                handle_id: Some(9),
                label: Some("prime peer 127.0.0.1:4000".into()),
                in_progress: true,
                duration_seconds: 1.5,
                ..Stall::default()
            }),
            ..LoopStatus::default()
        };
        Answer {
            hello: Hello {
                pid,
                host: host.clone(),
                ..Hello::default()
            },
            status: Status {
                pid,
                uptime_seconds: 65.0,
                stalls_total: 2,
                loops: (0..loops).map(l).collect(),
                threadpool: ThreadPoolSummary {
                    size: 4,
                    busy_workers: 1,
                    queue_depth: 2,
                    ..ThreadPoolSummary::default()
                },
                host,
                ..Status::default()
            },
        }
    }

    #[test]
    fn a_line_per_endpoint_and_the_unreachable_with_their_reason() {
        let scan = Scan {
            dir: "/run/user/1000/loopd".into(),
            probes: vec![
                Probe {
                    socket: "/run/user/1000/loopd/control.sock".into(),
                    outcome: Ok(answer(10, 2, "loopd", "loopd")),
                },
                Probe {
                    socket: "/run/user/1000/loopd/node-22.sock".into(),
                    outcome: Ok(answer(22, 1, "agent", "")),
                },
                Probe {
                    socket: "/run/user/1000/loopd/old-3.sock".into(),
                    outcome: Err(Gone {
                        reason: "connection refused".into(),
                        stale: true,
                    }),
                },
            ],
            ..Scan::default()
        };
        let l = Listing::from_scan(&scan);
        assert_eq!(l.endpoints.len(), 2);
        assert_eq!(l.loops, 3);
        assert_eq!(l.endpoints[0].handles, 6);
        assert_eq!(l.endpoints[0].stalls_in_progress, 1);
        assert!((l.endpoints[0].elu - 0.2).abs() < 1e-9, "the busiest loop");
        assert_eq!(l.endpoints[1].program, "node", "from the socket's name");
        assert_eq!(l.endpoints[1].kind, "agent");
        let text = render(&l, &Style::default());
        assert!(
            text.starts_with(
                "2 endpoints · 3 loops · 1 unreachable socket in /run/user/1000/loopd"
            ),
            "{text}"
        );
        assert!(
            text.contains("STALL IN PROGRESS  loopd pid 10 loop 1"),
            "{text}"
        );
        assert!(text.contains("\"prime peer 127.0.0.1:4000\""), "{text}");
        assert!(text.contains("old-3.sock  connection refused"), "{text}");
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["endpoints"][1]["pool"]["queued"], 2);
        assert_eq!(json["endpoints"][0]["per_loop"][1]["loop"], 1);
        assert_eq!(json["unreachable"][0]["stale"], true);
    }
}
