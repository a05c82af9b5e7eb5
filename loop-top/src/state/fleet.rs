//! The fleet: every endpoint of the runtime directory, from the discovery scans, as one row
//! per loop.
//!
//! An endpoint is a socket and the process answering on it (a daemon restarted on the same
//! `control.sock` is a new endpoint). One that stops answering, or whose socket goes away,
//! stays for [`GONE_KEEP_MS`] as "gone" (drawn grey) with its last data, so a vanished process
//! is seen leaving rather than silently missing; sockets that never answered are listed apart
//! with the reason.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use proto::discovery::{Answer, Scan};
use proto::Stall;

use super::next_version;
use super::table::{Column, Row};

/// How long a vanished endpoint stays in the list, greyed.
pub const GONE_KEEP_MS: u64 = 60_000;

/// Row ids: an endpoint's id times this, plus the loop index.
const LOOPS_PER_ID: u64 = 1 << 16;

/// An endpoint that answered at least once.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Stable while loop-top runs (row ids derive from it).
    pub id: u64,
    /// Its socket.
    pub socket: PathBuf,
    /// Its last answer.
    pub answer: Answer,
    /// Since when (unix ms) it no longer answers, and why.
    pub gone: Option<(u64, String)>,
}

impl Endpoint {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        match self.answer.status.pid {
            0 => self.answer.hello.pid,
            pid => pid,
        }
    }

    /// What serves it (the status's host, else the hello's).
    pub fn host(&self) -> &proto::Host {
        if self.answer.status.host == proto::Host::default() {
            &self.answer.hello.host
        } else {
            &self.answer.status.host
        }
    }

    /// `loopd`, `program` or `agent`.
    pub fn kind(&self) -> &str {
        match self.host().kind.as_str() {
            "" => "loopd",
            k => k,
        }
    }

    /// The program's name: the host's, else the socket's stem without its `-<pid>`.
    pub fn program(&self) -> String {
        let host = self.host();
        if !host.program.is_empty() {
            return host.program.clone();
        }
        if self.kind() == "loopd" {
            return "loopd".to_owned();
        }
        let stem = self
            .socket
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match stem.rsplit_once('-') {
            Some((name, pid)) if pid.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
            _ => stem,
        }
    }
}

/// One loop of one endpoint: a row of the fleet view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetRow {
    /// Stable id (endpoint, loop).
    pub id: u64,
    /// The endpoint's socket (Enter opens it).
    pub socket: PathBuf,
    /// The program.
    pub program: String,
    /// Its process id.
    pub pid: u32,
    /// `loopd`, `program` or `agent`.
    pub kind: String,
    /// The loop's index.
    pub loop_index: u32,
    /// Utilization over the last second.
    pub elu: f64,
    /// Lag p99, seconds.
    pub lag_p99: f64,
    /// Stalls of this loop since start.
    pub stalls_total: u64,
    /// The stall blocking it now.
    pub stall: Option<Stall>,
    /// Open handles.
    pub handles: u64,
    /// Requests in flight.
    pub requests: u64,
    /// The endpoint's pool: busy, size, queued.
    pub pool: (u32, u32, u64),
    /// Since when it is gone (unix ms), and why.
    pub gone: Option<(u64, String)>,
}

impl FleetRow {
    /// The stall ordering key: a stall now first, then by total.
    fn stall_key(&self) -> (bool, u64) {
        (self.stall.is_some(), self.stalls_total)
    }
}

/// Everything discovery found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fleet {
    /// The directory scanned (or the one socket's).
    pub dir: PathBuf,
    /// Endpoints that answered at least once, by socket then pid.
    pub endpoints: Vec<Endpoint>,
    /// One per loop of every endpoint.
    pub rows: Vec<FleetRow>,
    /// Changes whenever `rows` is rebuilt.
    pub version: u64,
    /// Sockets that did not answer and never did: (path, reason).
    pub unreachable: Vec<(PathBuf, String)>,
    /// The directory could not be read.
    pub error: Option<String>,
    /// When the last scan arrived, unix ms (0: none yet).
    pub scanned_at_ms: u64,
    next_id: u64,
}

impl Fleet {
    /// Takes one scan made at `now_ms`.
    pub fn apply(&mut self, scan: &Scan, now_ms: u64) {
        self.dir = scan.dir.clone();
        self.error = scan.error.clone();
        self.scanned_at_ms = now_ms;
        self.unreachable.clear();
        let mut answered = vec![false; self.endpoints.len()];
        for p in &scan.probes {
            match &p.outcome {
                Ok(a) => {
                    let pid = if a.status.pid != 0 {
                        a.status.pid
                    } else {
                        a.hello.pid
                    };
                    match self
                        .endpoints
                        .iter()
                        .position(|e| e.socket == p.socket && e.pid() == pid)
                    {
                        Some(i) => {
                            let e = &mut self.endpoints[i];
                            e.answer = a.clone();
                            e.gone = None;
                            answered[i] = true;
                        }
                        None => {
                            self.next_id += 1;
                            self.endpoints.push(Endpoint {
                                id: self.next_id,
                                socket: p.socket.clone(),
                                answer: a.clone(),
                                gone: None,
                            });
                            answered.push(true);
                        }
                    }
                }
                Err(u) => {
                    if !self.endpoints.iter().any(|e| e.socket == p.socket) {
                        self.unreachable.push((p.socket.clone(), u.reason.clone()));
                    }
                }
            }
        }
        for (e, seen) in self.endpoints.iter_mut().zip(&answered) {
            if !seen && e.gone.is_none() {
                let reason = scan
                    .probes
                    .iter()
                    .find(|p| p.socket == e.socket)
                    .and_then(|p| p.outcome.as_ref().err())
                    .map_or_else(|| "its socket is gone".to_owned(), |u| u.reason.clone());
                e.gone = Some((now_ms, reason));
            }
        }
        self.endpoints.retain(|e| {
            e.gone
                .as_ref()
                .is_none_or(|(since, _)| now_ms.saturating_sub(*since) < GONE_KEEP_MS)
        });
        self.endpoints
            .sort_by(|a, b| a.socket.cmp(&b.socket).then(a.id.cmp(&b.id)));
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.rows.clear();
        for e in &self.endpoints {
            let s = &e.answer.status;
            let pool = (
                s.threadpool.busy_workers,
                s.threadpool.size,
                s.threadpool.queue_depth,
            );
            for l in &s.loops {
                self.rows.push(FleetRow {
                    id: e.id * LOOPS_PER_ID + u64::from(l.loop_index) % LOOPS_PER_ID,
                    socket: e.socket.clone(),
                    program: e.program(),
                    pid: e.pid(),
                    kind: e.kind().to_owned(),
                    loop_index: l.loop_index,
                    elu: l.utilization.last_1s,
                    lag_p99: l.lag.p99,
                    stalls_total: l.stalls_total,
                    // A gone endpoint's last stall is not a stall now.
                    stall: l.stall_in_progress.clone().filter(|_| e.gone.is_none()),
                    handles: l.handles.values().map(|c| c.total).sum(),
                    requests: l.requests.values().map(|c| c.active).sum(),
                    pool,
                    gone: e.gone.clone(),
                });
            }
        }
        self.version = next_version();
    }

    /// Endpoints answering now.
    pub fn live_endpoints(&self) -> usize {
        self.endpoints.iter().filter(|e| e.gone.is_none()).count()
    }

    /// Loops of the endpoints answering now.
    pub fn live_loops(&self) -> usize {
        self.rows.iter().filter(|r| r.gone.is_none()).count()
    }

    /// Rows blocked by a stall now.
    pub fn stalled(&self) -> impl Iterator<Item = &FleetRow> {
        self.rows.iter().filter(|r| r.stall.is_some())
    }

    /// The endpoint of `socket` answering now, if any.
    pub fn endpoint(&self, socket: &Path) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.socket == socket && e.gone.is_none())
    }
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

impl Row for FleetRow {
    const COLUMNS: &'static [Column] = &[
        Column::new("PROGRAM", 10),
        Column::new("PID", 7),
        Column::new("KIND", 7),
        Column::new("LOOP", 4),
        Column::desc("ELU", 4),
        Column::desc("LAG p99", 7),
        Column::desc("STALLS", 6),
        Column::desc("HNDL", 5),
        Column::desc("REQS", 4),
        Column::desc("POOL", 7),
        Column::new("NOW", 0),
    ];

    fn id(&self) -> u64 {
        self.id
    }

    fn compare(&self, o: &Self, col: usize) -> Ordering {
        match col {
            0 => self.program.cmp(&o.program),
            1 => self.pid.cmp(&o.pid),
            2 => self.kind.cmp(&o.kind),
            3 => self.loop_index.cmp(&o.loop_index),
            4 => self.elu.total_cmp(&o.elu),
            5 => self.lag_p99.total_cmp(&o.lag_p99),
            6 => self.stall_key().cmp(&o.stall_key()),
            7 => self.handles.cmp(&o.handles),
            8 => self.requests.cmp(&o.requests),
            9 => (self.pool.0, self.pool.2).cmp(&(o.pool.0, o.pool.2)),
            10 => (self.stall.is_some(), self.gone.is_some())
                .cmp(&(o.stall.is_some(), o.gone.is_some())),
            _ => Ordering::Equal,
        }
    }

    fn matches(&self, n: &str) -> bool {
        contains(&self.program, n)
            || contains(&self.kind, n)
            || self.pid.to_string() == n
            || contains(&self.socket.to_string_lossy(), n)
            || self
                .stall
                .as_ref()
                .and_then(|s| s.label.as_deref())
                .is_some_and(|l| contains(l, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::discovery::{Probe, Unreachable};
    use proto::{Hello, LoopStatus, Status};

    fn answer(pid: u32, loops: u32) -> Answer {
        Answer {
            hello: Hello {
                pid,
                ..Hello::default()
            },
            status: Status {
                pid,
                loops: (0..loops)
                    .map(|i| LoopStatus {
                        loop_index: i,
                        ..LoopStatus::default()
                    })
                    .collect(),
                ..Status::default()
            },
        }
    }

    fn scan(probes: Vec<(&str, Result<Answer, &str>)>) -> Scan {
        Scan {
            dir: "/d".into(),
            probes: probes
                .into_iter()
                .map(|(s, o)| Probe {
                    socket: PathBuf::from(format!("/d/{s}")),
                    outcome: o.map_err(|r| Unreachable {
                        reason: r.into(),
                        stale: true,
                    }),
                })
                .collect(),
            ..Scan::default()
        }
    }

    #[test]
    fn endpoints_appear_vanish_grey_and_leave() {
        let mut f = Fleet::default();
        f.apply(
            &scan(vec![
                ("a.sock", Ok(answer(1, 2))),
                ("b.sock", Ok(answer(2, 1))),
                ("old.sock", Err("refused")),
            ]),
            1000,
        );
        assert_eq!(f.rows.len(), 3);
        assert_eq!(f.unreachable.len(), 1);
        let a0 = f.rows[0].id;
        // b goes away (socket removed); a new endpoint c appears.
        f.apply(
            &scan(vec![
                ("a.sock", Ok(answer(1, 2))),
                ("c-9.sock", Ok(answer(9, 1))),
            ]),
            2000,
        );
        assert_eq!(f.rows.len(), 4, "b is still listed, grey");
        assert_eq!(f.rows[0].id, a0, "ids are stable");
        let b = f.rows.iter().find(|r| r.pid == 2).unwrap();
        assert_eq!(b.gone, Some((2000, "its socket is gone".into())));
        assert_eq!(f.live_endpoints(), 2);
        assert_eq!(f.live_loops(), 3);
        assert!(f.unreachable.is_empty());
        // A gone endpoint is dropped after GONE_KEEP_MS.
        f.apply(
            &scan(vec![("a.sock", Ok(answer(1, 2)))]),
            2000 + GONE_KEEP_MS,
        );
        assert!(f.rows.iter().all(|r| r.pid != 2));
        assert_eq!(f.rows.iter().filter(|r| r.gone.is_some()).count(), 1, "c");
    }

    #[test]
    fn a_restarted_daemon_on_the_same_socket_is_a_new_endpoint() {
        let mut f = Fleet::default();
        f.apply(&scan(vec![("control.sock", Ok(answer(1, 1)))]), 1000);
        f.apply(&scan(vec![("control.sock", Ok(answer(5, 1)))]), 2000);
        assert_eq!(f.rows.len(), 2);
        assert!(f.rows.iter().any(|r| r.pid == 1 && r.gone.is_some()));
        assert!(f.rows.iter().any(|r| r.pid == 5 && r.gone.is_none()));
    }
}
