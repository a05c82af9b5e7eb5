//! Fixed data built from proto types, app builders, and golden-file snapshots.

use std::path::PathBuf;

use loop_top::app::{App, AppEvent, Link, View};
use loop_top::conn::ConnEvent;
use loop_top::state::Update;
use proto::{
    Frame, HandleCounts, HandleInfo, HandleType, HandlesResult, Hello, Latency, LoopStatus, Phase,
    PhaseStats, RequestCounts, RequestInfo, RequestState, RequestType, RequestsResult, ServiceKind,
    ServiceStatus, Stall, StallsResult, Status, TaskCount, TaskOutcome, ThreadPoolStatus,
    ThreadPoolSummary, Utilization, WorkerInfo, WorkerState,
};

/// The wall clock of every test, unix ms.
pub const NOW: u64 = 1_700_000_100_000;

pub fn lat(p50: f64, p99: f64, max: f64) -> Latency {
    Latency {
        count: 1000,
        sum: p50 * 1000.0,
        mean: p50,
        p50,
        p99,
        max,
    }
}

pub fn stall(in_progress: bool) -> Stall {
    Stall {
        id: 7,
        loop_index: 0,
        phase: Phase::Poll,
        handle_id: Some(12),
        request_id: None,
        target_type: "tcp".into(),
        label: Some("prime peer 127.0.0.1:50500".into()),
        started_at_ms: NOW - 2_500,
        duration_seconds: if in_progress { 2.4 } else { 3.2 },
        threshold_ms: 100,
        in_progress,
        stack: vec![
            Frame {
                function: "loopd::services::prime::is_prime".into(),
                file: Some("loopd/src/services/prime.rs".into()),
                line: Some(52),
            },
            Frame {
                function: "loopd::services::prime::on_line".into(),
                file: Some("loopd/src/services/prime.rs".into()),
                line: Some(88),
            },
            Frame {
                function: "<unknown>".into(),
                file: None,
                line: None,
            },
        ],
        stack_error: None,
        ..Stall::default()
    }
}

pub fn status(stalled: bool) -> Status {
    let phase_means = [
        (Phase::Timers, 0.0002),
        (Phase::Pending, 0.00001),
        (Phase::Idle, 0.0),
        (Phase::Prepare, 0.00001),
        (Phase::Poll, 0.004),
        (Phase::Check, 0.00002),
        (Phase::Close, 0.00001),
    ];
    let mut lag_recent: Vec<f64> = (0..40).map(|i| 0.001 + f64::from(i % 5) * 0.0005).collect();
    if stalled {
        lag_recent.push(2.4);
    }
    Status {
        as_of_ms: NOW - 300,
        started_at_ms: NOW - 3_725_000,
        uptime_seconds: 3725.0,
        server_version: "0.1.0".into(),
        pid: 4242,
        loops: vec![LoopStatus {
            loop_index: 0,
            iterations: 1_234_567,
            iterations_per_second: if stalled { 0.0 } else { 812.5 },
            events: 98_765,
            events_waiting: if stalled { 4 } else { 0 },
            idle_seconds_total: 3000.0,
            utilization: Utilization {
                last_1s: if stalled { 1.0 } else { 0.27 },
                last_10s: if stalled { 0.42 } else { 0.2 },
                last_60s: 0.1,
            },
            lag: if stalled {
                lat(0.0012, 2.4, 2.4)
            } else {
                lat(0.0012, 0.0041, 0.0065)
            },
            lag_recent,
            phases: phase_means
                .iter()
                .map(|(p, m)| PhaseStats {
                    phase: p.clone(),
                    callbacks_total: 1000,
                    duration: lat(*m, m * 3.0, m * 5.0),
                })
                .collect(),
            handles: [
                (HandleType::Timer, (2, 1)),
                (HandleType::Async, (1, 1)),
                (HandleType::Tcp, (10_003, 10_003)),
                (HandleType::Signal, (2, 2)),
            ]
            .into_iter()
            .map(|(t, (total, active))| {
                (
                    t,
                    HandleCounts {
                        total,
                        active,
                        opened_total: total + 5,
                        closed_total: 5,
                    },
                )
            })
            .collect(),
            requests: [
                (RequestType::Write, (3, 1200)),
                (RequestType::Fs, (1, 80)),
                (RequestType::Work, (2, 57)),
            ]
            .into_iter()
            .map(|(t, (active, done))| {
                (
                    t,
                    RequestCounts {
                        active,
                        completed_total: done,
                        duration: lat(0.001, 0.01, 0.02),
                    },
                )
            })
            .collect(),
            callback_panics_total: 0,
            stalls_total: 3,
            stall_in_progress: stalled.then(|| stall(true)),
        }],
        threadpool: ThreadPoolSummary {
            size: 4,
            busy_workers: 2,
            queue_depth: 5,
            tasks_total: 137,
            panics_total: 1,
            queue_wait: lat(0.0002, 0.031, 0.05),
        },
        services: vec![
            ServiceStatus {
                name: "seq".into(),
                kind: ServiceKind::Seq,
                bind: "127.0.0.1:7070".into(),
                connections: 10_000,
                connections_total: 10_010,
                bytes_received_total: 5_000_000,
                bytes_sent_total: 5_100_000,
            },
            ServiceStatus {
                name: "prime".into(),
                kind: ServiceKind::Prime,
                bind: "127.0.0.1:7071".into(),
                connections: 1,
                connections_total: 4,
                bytes_received_total: 80,
                bytes_sent_total: 40,
            },
        ],
        stalls_total: 3,
        host: proto::Host {
            kind: "loopd".into(),
            program: "loopd".into(),
            ..proto::Host::default()
        },
    }
}

pub fn hello() -> Hello {
    Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        server_version: "0.1.0".into(),
        pid: 4242,
        loops: 1,
        started_at_ms: NOW - 3_725_000,
        methods: vec!["status".into()],
        host: proto::Host {
            kind: "loopd".into(),
            program: "loopd".into(),
            ..proto::Host::default()
        },
    }
}

/// `n` handles: a few listeners and timers, then tcp peers.
pub fn handles(n: u64) -> HandlesResult {
    let mut v = Vec::new();
    for id in 1..=n {
        let (t, label, fd, site) = match id {
            1 => (
                HandleType::Timer,
                "lag probe".to_owned(),
                None,
                "observe/src/lib.rs:77",
            ),
            2 => (
                HandleType::Async,
                "stop".to_owned(),
                None,
                "loopd/src/daemon.rs:40",
            ),
            3 => (
                HandleType::Tcp,
                "seq listener 127.0.0.1:7070".to_owned(),
                Some(9),
                "loopd/src/services/seq.rs:31",
            ),
            4 => (
                HandleType::Signal,
                "SIGTERM".to_owned(),
                None,
                "loopd/src/daemon.rs:52",
            ),
            _ => (
                HandleType::Tcp,
                format!("seq peer 127.0.0.1:{}", 40_000 + id),
                Some(i32::try_from(10 + id).unwrap()),
                "loopd/src/services/seq.rs:48",
            ),
        };
        v.push(HandleInfo {
            id,
            loop_index: 0,
            handle_type: t,
            label: Some(label),
            active: id != 2,
            referenced: id != 1,
            closing: id == 6,
            fd,
            created_at_ms: NOW - 3_600_000 + id * 100,
            age_seconds: (3_600_000.0 - id as f64 * 100.0) / 1000.0,
            site: site.into(),
            bytes_read: id * 37 % 5000,
            bytes_written: id * 53 % 7000,
            last_activity_ms: Some(NOW - (id * 1000) % 60_000),
        });
    }
    HandlesResult {
        as_of_ms: NOW - 300,
        total: n,
        handles: v,
    }
}

pub fn requests() -> RequestsResult {
    let r = |id, t: RequestType, state: RequestState, label: &str, handle, age| RequestInfo {
        id,
        loop_index: 0,
        request_type: t,
        label: Some(label.into()),
        state,
        handle_id: handle,
        created_at_ms: NOW - 1000,
        age_seconds: age,
        site: "loopd/src/services/http.rs:120".into(),
    };
    RequestsResult {
        as_of_ms: NOW - 300,
        total: 4,
        requests: vec![
            r(
                501,
                RequestType::Fs,
                RequestState::Running,
                "fs read ./index.html",
                None,
                0.012,
            ),
            r(
                502,
                RequestType::Write,
                RequestState::Queued,
                "write 4096 bytes",
                Some(12),
                0.002,
            ),
            r(
                503,
                RequestType::Work,
                RequestState::Running,
                "prime 2305843009213693951",
                None,
                4.2,
            ),
            r(
                504,
                RequestType::Work,
                RequestState::Queued,
                "prime 1000003",
                None,
                0.5,
            ),
        ],
    }
}

pub fn threadpool() -> ThreadPoolStatus {
    let w = |index, busy: Option<(RequestType, u64, &str, f64)>| WorkerInfo {
        index,
        state: if busy.is_some() {
            WorkerState::Busy
        } else {
            WorkerState::Idle
        },
        task_kind: busy.as_ref().map(|b| b.0.clone()),
        request_id: busy.as_ref().map(|b| b.1),
        task_label: busy.as_ref().map(|b| b.2.to_owned()),
        busy_for_seconds: busy.as_ref().map(|b| b.3),
        idle_seconds_total: 100.0 + f64::from(index),
        tasks_done: 30 + u64::from(index),
    };
    ThreadPoolStatus {
        as_of_ms: NOW - 300,
        size: 4,
        busy_workers: 2,
        queue_depth: 5,
        queued_by_kind: [(RequestType::Work, 4), (RequestType::Fs, 1)]
            .into_iter()
            .collect(),
        slow_busy_workers: 2,
        slow_limit: 2,
        queue_wait: lat(0.0002, 0.031, 0.05),
        run: lat(0.002, 1.5, 4.2),
        tasks: vec![
            TaskCount {
                kind: RequestType::Work,
                outcome: TaskOutcome::Ok,
                count: 55,
            },
            TaskCount {
                kind: RequestType::Work,
                outcome: TaskOutcome::Panicked,
                count: 1,
            },
            TaskCount {
                kind: RequestType::Fs,
                outcome: TaskOutcome::Ok,
                count: 80,
            },
        ],
        panics_total: 1,
        workers: vec![
            w(
                0,
                Some((RequestType::Work, 503, "prime 2305843009213693951", 4.2)),
            ),
            w(
                1,
                Some((RequestType::Fs, 501, "fs read ./index.html", 0.012)),
            ),
            w(2, None),
            w(3, None),
        ],
    }
}

pub fn stalls_result(stalled: bool) -> StallsResult {
    let old = |id, dur, phase: Phase, target: &str, handle, req| Stall {
        id,
        phase,
        handle_id: handle,
        request_id: req,
        target_type: target.into(),
        label: Some(format!("{target} callback")),
        started_at_ms: NOW - 60_000 * id,
        duration_seconds: dur,
        threshold_ms: 100,
        in_progress: false,
        stack: vec![Frame {
            function: "loopd::services::http::render".into(),
            file: Some("loopd/src/services/http.rs".into()),
            line: Some(200),
        }],
        ..Stall::default()
    };
    StallsResult {
        as_of_ms: NOW - 300,
        in_progress: if stalled { vec![stall(true)] } else { vec![] },
        recent: vec![
            old(6, 0.35, Phase::Timers, "timer", Some(1), None),
            old(5, 1.2, Phase::Poll, "work", None, Some(77)),
        ],
        total: 6,
    }
}

/// A live app, connected, with status (stalled or not), in `view`, at `w`×`h`.
pub fn live_app(stalled: bool, view: View, w: u16, h: u16) -> App {
    let mut app = App::live(
        PathBuf::from("/run/user/1000/loopd/control.sock"),
        1000,
        NOW,
    );
    app.update(AppEvent::Resize {
        width: w,
        height: h,
    });
    app.update(AppEvent::Conn(ConnEvent::Connected));
    for u in [
        Update::Hello(hello()),
        Update::Status(Box::new(status(stalled))),
        Update::Stalls(stalls_result(stalled)),
        Update::Handles(handles(40)),
        Update::Requests(requests()),
        Update::ThreadPool(Box::new(threadpool())),
    ] {
        app.update(AppEvent::Conn(ConnEvent::Update(u)));
    }
    app.view = view;
    app.set_link(Link::Connected {
        since_ms: NOW - 5000,
    });
    app
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Renders `app` and compares with `tests/snapshots/<name>.txt`; `UPDATE_SNAPSHOTS=1` rewrites.
pub fn snapshot(name: &str, app: &App, w: u16, h: u16) -> String {
    let lines = loop_top::ui::render_lines(app, w, h).unwrap();
    assert_eq!(lines.len(), usize::from(h));
    let text = lines.join("\n") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
        return text;
    }
    match std::fs::read_to_string(&path) {
        Ok(want) => {
            if want != text {
                panic!(
                    "snapshot {name} differs (UPDATE_SNAPSHOTS=1 to accept)\n--- want\n{want}\n--- got\n{text}"
                );
            }
        }
        Err(_) => {
            std::fs::write(&path, &text).unwrap();
            panic!("snapshot {name} was missing and has been written; check it and re-run\n{text}");
        }
    }
    text
}

/// A discovery scan of `/run/user/1000/loopd`: loopd (stalled or not, 1 loop), loopd with 2
/// loops, an agent in node, and a stale socket.
pub fn fleet_scan(stalled: bool) -> proto::discovery::Scan {
    use proto::discovery::{Answer, Probe, Scan, Unreachable};
    let dir = PathBuf::from("/run/user/1000/loopd");
    let with = |pid: u32, loops: u32, elu: f64, host: proto::Host, stalled: bool| {
        let mut s = status(stalled);
        s.pid = pid;
        s.host = host.clone();
        let one = s.loops[0].clone();
        s.loops = (0..loops)
            .map(|i| {
                let mut l = one.clone();
                l.loop_index = i;
                l.utilization.last_1s = if stalled {
                    1.0
                } else {
                    elu + 0.1 * f64::from(i)
                };
                if let Some(st) = &mut l.stall_in_progress {
                    st.loop_index = i;
                }
                l
            })
            .collect();
        let mut h = hello();
        h.pid = pid;
        h.loops = loops;
        h.host = host;
        Answer {
            hello: h,
            status: s,
        }
    };
    let loopd = proto::Host {
        kind: "loopd".into(),
        program: "loopd".into(),
        ..proto::Host::default()
    };
    let agent = proto::Host {
        kind: "agent".into(),
        program: "node".into(),
        libuv_version: Some("1.44.2".into()),
        capabilities: vec![],
    };
    Scan {
        dir: dir.clone(),
        probes: vec![
            Probe {
                socket: dir.join("control.sock"),
                outcome: Ok(with(4242, 1, 0.27, loopd, stalled)),
            },
            Probe {
                socket: dir.join("edge-proxy-5100.sock"),
                outcome: Ok(with(
                    5100,
                    2,
                    0.55,
                    proto::Host {
                        kind: "program".into(),
                        program: "edge-proxy".into(),
                        ..proto::Host::default()
                    },
                    false,
                )),
            },
            Probe {
                socket: dir.join("node-7311.sock"),
                outcome: Ok(with(7311, 1, 0.93, agent, false)),
            },
            Probe {
                socket: dir.join("old-99.sock"),
                outcome: Err(Unreachable {
                    reason: "connection refused: nobody listens (a stale socket; left in place)"
                        .into(),
                    stale: true,
                }),
            },
        ],
        ..Scan::default()
    }
}

/// A live app in the fleet view with [`fleet_scan`], at `w`×`h`.
pub fn fleet_app(stalled: bool, w: u16, h: u16) -> App {
    let mut app = App::live(
        PathBuf::from("/run/user/1000/loopd/control.sock"),
        1000,
        NOW,
    );
    app.update(AppEvent::Resize {
        width: w,
        height: h,
    });
    app.enable_fleet();
    app.update(AppEvent::Fleet(fleet_scan(stalled)));
    app.view = View::Fleet;
    app
}
