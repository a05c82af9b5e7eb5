//! Fixed protocol values, shared by the golden-file tests (src/golden_tests.rs) and the fake
//! daemon of the client tests. They exercise every unit (µs … minutes, B … MiB), missing values,
//! unknown enum values and a stall with a stack.
#![allow(dead_code)]

use std::collections::BTreeMap;

use proto::methods::ALL;
use proto::*;

/// When every fixture snapshot was published.
pub const AS_OF_MS: u64 = 1_700_000_001_000;
/// "Now" for rendering: 250 ms after the snapshot.
pub const NOW_MS: u64 = AS_OF_MS + 250;

pub fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        server_version: "0.1.0".into(),
        pid: 4242,
        loops: 1,
        started_at_ms: 1_700_000_000_000,
        methods: ALL.iter().map(|m| m.to_string()).collect(),
        host: proto::Host {
            kind: "loopd".into(),
            program: "loopd".into(),
            ..proto::Host::default()
        },
    }
}

fn lat(p50: f64, p99: f64, max: f64) -> Latency {
    Latency {
        count: 1200,
        sum: p50 * 1200.0,
        mean: (p50 + p99) / 2.0,
        p50,
        p99,
        max,
    }
}

pub fn stall(in_progress: bool) -> Stall {
    Stall {
        id: 3,
        loop_index: 0,
        phase: Phase::Poll,
        handle_id: Some(12),
        request_id: None,
        target_type: "tcp".into(),
        label: Some("prime peer 127.0.0.1:50500".into()),
        started_at_ms: 1_700_000_000_500,
        duration_seconds: if in_progress { 0.5 } else { 2.345 },
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
                function: "loopd::engine::Loop::run".into(),
                file: None,
                line: None,
            },
        ],
        stack_error: None,
        samples: 40,
        samples_dropped: 0,
        hot_frame: Some("loopd::services::prime::is_prime (prime.rs:52)".into()),
        profile: None,
    }
}

pub fn status() -> Status {
    let mut handles = BTreeMap::new();
    handles.insert(
        HandleType::Tcp,
        HandleCounts {
            total: 5,
            active: 4,
            opened_total: 120,
            closed_total: 115,
        },
    );
    handles.insert(
        HandleType::Timer,
        HandleCounts {
            total: 2,
            active: 1,
            opened_total: 2,
            closed_total: 0,
        },
    );
    let mut requests = BTreeMap::new();
    requests.insert(
        RequestType::Fs,
        RequestCounts {
            active: 2,
            completed_total: 310,
            duration: lat(0.000_85, 0.0125, 0.25),
        },
    );
    Status {
        as_of_ms: AS_OF_MS,
        started_at_ms: 1_700_000_000_000 - 3_723_000,
        uptime_seconds: 3724.0,
        server_version: "0.1.0".into(),
        pid: 4242,
        loops: vec![LoopStatus {
            loop_index: 0,
            iterations: 123_456,
            iterations_per_second: 1520.4,
            events: 98_765,
            events_waiting: 0,
            idle_seconds_total: 3000.5,
            utilization: Utilization {
                last_1s: 0.953,
                last_10s: 0.41,
                last_60s: 0.052,
            },
            lag: lat(0.000_012, 0.0021, 0.5),
            lag_recent: vec![0.001, 0.002, 0.5],
            phases: Phase::KNOWN
                .iter()
                .enumerate()
                .map(|(i, p)| PhaseStats {
                    phase: p.clone(),
                    callbacks_total: 10 * i as u64,
                    duration: lat(
                        0.000_001 * (i as f64 + 1.0),
                        0.001 * i as f64,
                        0.1 * i as f64,
                    ),
                })
                .collect(),
            handles,
            requests,
            callback_panics_total: 1,
            stalls_total: 4,
            stall_in_progress: Some(stall(true)),
        }],
        threadpool: ThreadPoolSummary {
            size: 4,
            busy_workers: 4,
            queue_depth: 7,
            tasks_total: 310,
            panics_total: 0,
            queue_wait: lat(0.000_2, 0.03, 1.2),
        },
        services: vec![
            ServiceStatus {
                name: "seq".into(),
                kind: ServiceKind::Seq,
                bind: "127.0.0.1:7070".into(),
                connections: 2,
                connections_total: 40,
                bytes_received_total: 1536,
                bytes_sent_total: 900,
            },
            ServiceStatus {
                name: "http".into(),
                kind: ServiceKind::Http,
                bind: "127.0.0.1:7080".into(),
                connections: 0,
                connections_total: 1000,
                bytes_received_total: 250_000,
                bytes_sent_total: 52_428_800,
            },
        ],
        stalls_total: 4,
        host: proto::Host {
            kind: "loopd".into(),
            program: "loopd".into(),
            ..proto::Host::default()
        },
    }
}

pub fn handles() -> HandlesResult {
    HandlesResult {
        as_of_ms: AS_OF_MS,
        total: 9,
        handles: vec![
            HandleInfo {
                id: 3,
                loop_index: 0,
                handle_type: HandleType::Tcp,
                label: Some("seq listener 127.0.0.1:7070".into()),
                active: true,
                referenced: true,
                closing: false,
                fd: Some(9),
                created_at_ms: 1_699_999_997_000,
                age_seconds: 3724.0,
                site: "loopd/src/services/seq.rs:31".into(),
                bytes_read: 0,
                bytes_written: 0,
                last_activity_ms: Some(AS_OF_MS - 12_000),
            },
            HandleInfo {
                id: 17,
                loop_index: 0,
                handle_type: HandleType::Tcp,
                label: Some("http peer 127.0.0.1:50412".into()),
                active: true,
                referenced: true,
                closing: true,
                fd: Some(14),
                created_at_ms: AS_OF_MS - 2500,
                age_seconds: 2.5,
                site: "loopd/src/services/http.rs:77".into(),
                bytes_read: 10_500,
                bytes_written: 3_250_000,
                last_activity_ms: Some(AS_OF_MS - 40),
            },
            HandleInfo {
                id: 1,
                loop_index: 0,
                handle_type: HandleType::Timer,
                label: Some("lag probe".into()),
                active: true,
                referenced: false,
                closing: false,
                fd: None,
                created_at_ms: 1_699_999_997_000,
                age_seconds: 0.000_35,
                site: "observe/src/lag.rs:12".into(),
                bytes_read: 0,
                bytes_written: 0,
                last_activity_ms: None,
            },
            HandleInfo {
                id: 25,
                loop_index: 1,
                handle_type: HandleType::from("pipe"),
                label: None,
                active: false,
                referenced: true,
                closing: false,
                fd: Some(21),
                created_at_ms: AS_OF_MS,
                age_seconds: 0.0,
                site: "engine/src/pipe.rs:5".into(),
                bytes_read: 1023,
                bytes_written: 1024,
                last_activity_ms: Some(AS_OF_MS),
            },
        ],
    }
}

pub fn requests() -> RequestsResult {
    RequestsResult {
        as_of_ms: AS_OF_MS,
        total: 3,
        requests: vec![
            RequestInfo {
                id: 900,
                loop_index: 0,
                request_type: RequestType::Fs,
                label: Some("fs read ./index.html".into()),
                state: RequestState::Running,
                handle_id: None,
                created_at_ms: AS_OF_MS - 12,
                age_seconds: 0.0123,
                site: "loopd/src/services/http.rs:140".into(),
            },
            RequestInfo {
                id: 901,
                loop_index: 0,
                request_type: RequestType::Write,
                label: None,
                state: RequestState::Queued,
                handle_id: Some(17),
                created_at_ms: AS_OF_MS - 1,
                age_seconds: 0.000_9,
                site: "loopd/src/services/http.rs:190".into(),
            },
            RequestInfo {
                id: 902,
                loop_index: 0,
                request_type: RequestType::Work,
                label: Some("prime 2305843009213693951".into()),
                state: RequestState::from("paused"),
                handle_id: Some(12),
                created_at_ms: AS_OF_MS - 95_000,
                age_seconds: 95.0,
                site: "loopd/src/services/prime.rs:61".into(),
            },
        ],
    }
}

pub fn threadpool() -> ThreadPoolStatus {
    ThreadPoolStatus {
        as_of_ms: AS_OF_MS,
        size: 2,
        busy_workers: 1,
        queue_depth: 3,
        queued_by_kind: [(RequestType::Work, 2), (RequestType::Fs, 1)]
            .into_iter()
            .collect(),
        slow_busy_workers: 1,
        slow_limit: 1,
        queue_wait: lat(0.000_2, 0.03, 1.2),
        run: lat(0.004, 2.5, 61.0),
        tasks: vec![
            TaskCount {
                kind: RequestType::Fs,
                outcome: TaskOutcome::Ok,
                count: 300,
            },
            TaskCount {
                kind: RequestType::Work,
                outcome: TaskOutcome::Panicked,
                count: 1,
            },
            TaskCount {
                kind: RequestType::Work,
                outcome: TaskOutcome::Cancelled,
                count: 2,
            },
        ],
        panics_total: 1,
        workers: vec![
            WorkerInfo {
                index: 0,
                state: WorkerState::Busy,
                task_kind: Some(RequestType::Work),
                request_id: Some(902),
                task_label: Some("prime 2305843009213693951".into()),
                busy_for_seconds: Some(95.0),
                idle_seconds_total: 12.5,
                tasks_done: 150,
            },
            WorkerInfo {
                index: 1,
                state: WorkerState::Idle,
                task_kind: None,
                request_id: None,
                task_label: None,
                busy_for_seconds: None,
                idle_seconds_total: 3600.0,
                tasks_done: 153,
            },
        ],
    }
}

pub fn stalls() -> StallsResult {
    let mut old = stall(false);
    old.id = 2;
    old.phase = Phase::Timers;
    old.handle_id = None;
    old.request_id = Some(77);
    old.target_type = "work".into();
    old.label = None;
    old.stack = vec![];
    old.stack_error = Some("stack sampling is not supported on this platform".into());
    StallsResult {
        as_of_ms: AS_OF_MS,
        in_progress: vec![stall(true)],
        recent: vec![stall(false), old],
        total: 4,
    }
}

pub fn config() -> ConfigResult {
    ConfigResult {
        as_of_ms: AS_OF_MS,
        threadpool_size: 4,
        stall_threshold_ms: 100,
        stall_sample_interval_ms: 10,
        log_filter: "info,loopd::engine=debug".into(),
        metrics_addr: "127.0.0.1:9464".into(),
        control_path: "/run/user/1000/loopd/control.sock".into(),
        config_file: None,
        services: vec![
            ServiceConfig {
                name: "prime".into(),
                kind: ServiceKind::Prime,
                bind: "127.0.0.1:7071".into(),
                mode: Some("inline".into()),
                root: None,
            },
            ServiceConfig {
                name: "http".into(),
                kind: ServiceKind::Http,
                bind: "127.0.0.1:0".into(),
                mode: None,
                root: Some("/srv/www".into()),
            },
        ],
    }
}

/// A small Chrome trace (object form).
pub fn trace() -> serde_json::Value {
    serde_json::json!({
        "traceEvents": [
            {"name": "poll", "ph": "X", "ts": 0, "dur": 1000, "pid": 4242, "tid": 1},
            {"name": "timers", "ph": "X", "ts": 1000, "dur": 50, "pid": 4242, "tid": 1},
            {"name": "stall", "ph": "i", "ts": 1100, "pid": 4242, "tid": 1, "s": "t"}
        ],
        "displayTimeUnit": "ms"
    })
}
