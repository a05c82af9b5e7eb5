//! Engine snapshots → `proto` wire types: what every control-socket answer is made of.
//!
//! Conventions (proto README): timestamps are unix ms, durations f64 seconds, every answer
//! carries the `as_of_ms` of the snapshot it shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::methods::{HandleSort, HandlesParams, RequestsParams, StallsParams};
use proto::{
    ConfigResult, HandleCounts, HandlesResult, Hello, Latency, LoopStatus, PhaseStats,
    RequestCounts, RequestsResult, ServiceStatus, StallsResult, Status, TaskCount,
    ThreadPoolStatus, ThreadPoolSummary, WorkerInfo,
};

use super::stalls::seconds;
use super::Shared;
use loopd_engine::instrument::clock::{now_ns, wall_ms};
use loopd_engine::instrument::{Histogram, LoopObserver, LoopSnapshot, PoolSnapshot, TaskOutcome};
use loopd_engine::{self as engine, RequestState, RequestType};

/// The daemon's version, as in `hello` and `status`.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A histogram of nanoseconds as a latency summary in seconds.
pub fn latency(h: &Histogram) -> Latency {
    Latency {
        count: h.count(),
        sum: seconds(h.sum()),
        mean: seconds(h.mean()),
        p50: seconds(h.quantile(0.5)),
        p99: seconds(h.quantile(0.99)),
        max: seconds(h.max()),
    }
}

/// A handle type's wire name.
pub fn handle_type(t: engine::HandleType) -> proto::HandleType {
    proto::HandleType::from(t.as_str())
}

/// A request type's wire name.
pub fn request_type(t: RequestType) -> proto::RequestType {
    proto::RequestType::from(t.as_str())
}

/// A task outcome's wire name (`panic` is `panicked` on the wire).
pub fn task_outcome(o: TaskOutcome) -> proto::TaskOutcome {
    match o {
        TaskOutcome::Ok => proto::TaskOutcome::Ok,
        TaskOutcome::Error => proto::TaskOutcome::Error,
        TaskOutcome::Panic => proto::TaskOutcome::Panicked,
        TaskOutcome::Cancelled => proto::TaskOutcome::Cancelled,
    }
}

fn request_state(s: RequestState) -> proto::RequestState {
    proto::RequestState::from(s.as_str())
}

fn pid() -> u32 {
    std::process::id()
}

/// The `hello` notification.
pub(crate) fn hello(shared: &Shared) -> Hello {
    Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        server_version: SERVER_VERSION.to_string(),
        pid: pid(),
        loops: shared.loops.len() as u32,
        started_at_ms: wall_ms(shared.started_ns),
        methods: proto::methods::ALL.iter().map(|m| m.to_string()).collect(),
        host: shared.host.clone(),
    }
}

/// Utilization over the last second, live while a callback blocks the loop: the snapshot
/// stops updating then, but a loop running one callback for over a second is fully busy.
pub(crate) fn utilization_1s(lp: &LoopObserver, snap: &LoopSnapshot, now: u64) -> f64 {
    match lp.current() {
        Some(c) if now.saturating_sub(c.started_ns) >= 1_000_000_000 => 1.0,
        _ => snap.utilization.last_1s,
    }
}

/// One loop's status from its snapshot.
pub(crate) fn loop_status(
    shared: &Shared,
    lp: &LoopObserver,
    snap: &LoopSnapshot,
    now: u64,
) -> LoopStatus {
    let handles = engine::HandleType::ALL
        .iter()
        .map(|&t| {
            (
                handle_type(t),
                HandleCounts {
                    total: snap.handles[t].total,
                    active: snap.handles[t].active,
                    opened_total: snap.handles_opened[t],
                    closed_total: snap.handles_closed[t],
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let requests = RequestType::ALL
        .iter()
        .map(|&t| {
            (
                request_type(t),
                RequestCounts {
                    active: snap.requests_active[t],
                    completed_total: snap.requests_started[t]
                        .saturating_sub(snap.requests_active[t]),
                    duration: latency(&snap.request_duration[t]),
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    LoopStatus {
        loop_index: snap.loop_index as u32,
        iterations: snap.iterations,
        iterations_per_second: shared.rates.iterations_per_second(snap),
        events: snap.events,
        events_waiting: snap.events_waiting,
        idle_seconds_total: seconds(snap.idle_ns_total),
        utilization: proto::Utilization {
            last_1s: utilization_1s(lp, snap, now),
            last_10s: snap.utilization.last_10s,
            last_60s: snap.utilization.last_60s,
        },
        lag: latency(&snap.lag),
        lag_recent: snap.lag_recent_ns.iter().map(|n| seconds(*n)).collect(),
        phases: snap
            .phases
            .iter()
            .map(|p| PhaseStats {
                phase: proto::Phase::from(p.phase.as_str()),
                callbacks_total: p.callbacks,
                duration: latency(&p.duration),
            })
            .collect(),
        handles,
        requests,
        callback_panics_total: snap.callback_panics,
        stalls_total: shared.stalls.total_on(snap.loop_index),
        stall_in_progress: shared.stalls.in_progress_on(snap.loop_index, now),
    }
}

fn pool_summary(p: &PoolSnapshot) -> ThreadPoolSummary {
    let mut wait = Histogram::new();
    for (_, h) in &p.queue_wait {
        wait.merge(h);
    }
    ThreadPoolSummary {
        size: p.size as u32,
        busy_workers: p.busy_workers as u32,
        queue_depth: p.queue_depth as u64,
        tasks_total: p.tasks.iter().map(|(_, _, n)| n).sum(),
        panics_total: p.panics,
        queue_wait: latency(&wait),
    }
}

/// The `status` result (and notification).
pub(crate) fn status(shared: &Shared) -> Status {
    let now = now_ns();
    let snaps: Vec<_> = shared.loops.iter().map(|l| l.snapshot()).collect();
    let as_of_ms = snaps
        .iter()
        .map(|s| s.as_of_wall_ms)
        .min()
        .unwrap_or_else(|| wall_ms(now));
    Status {
        as_of_ms,
        started_at_ms: wall_ms(shared.started_ns),
        uptime_seconds: seconds(now.saturating_sub(shared.started_ns)),
        server_version: SERVER_VERSION.to_string(),
        pid: pid(),
        loops: shared
            .loops
            .iter()
            .zip(&snaps)
            .map(|(lp, s)| loop_status(shared, lp, s, now))
            .collect(),
        threadpool: pool_summary(&shared.pool.snapshot()),
        services: services(shared),
        stalls_total: shared.stalls.total(),
        host: shared.host.clone(),
    }
}

/// The registered services and their counters.
pub(crate) fn services(shared: &Shared) -> Vec<ServiceStatus> {
    shared
        .services
        .list()
        .into_iter()
        .map(|s| ServiceStatus {
            name: s.name,
            kind: s.kind,
            bind: s.bind.map(|b| b.to_string()).unwrap_or_default(),
            connections: s.counters.connections(),
            connections_total: s.counters.connections_total(),
            bytes_received_total: s.counters.bytes_received(),
            bytes_sent_total: s.counters.bytes_sent(),
        })
        .collect()
}

fn handle_info(h: &engine::HandleInfo, loop_index: usize, now: u64) -> proto::HandleInfo {
    proto::HandleInfo {
        id: h.id.get(),
        loop_index: loop_index as u32,
        handle_type: handle_type(h.kind),
        label: h.label.as_deref().map(str::to_string),
        active: h.active,
        referenced: h.has_ref,
        closing: h.closing,
        fd: h.fd,
        created_at_ms: wall_ms(h.created_ns),
        age_seconds: seconds(now.saturating_sub(h.created_ns)),
        site: h.site.to_string(),
        bytes_read: h.bytes_read,
        bytes_written: h.bytes_written,
        last_activity_ms: (h.last_activity_ns != 0).then(|| wall_ms(h.last_activity_ns)),
    }
}

/// The `handles` result: filtered, sorted, limited; `total` counts every match.
/// The published snapshots of the loops a `handles`/`requests` call asks about (all, or the
/// one `loop_index` names), and the oldest time their lists are as of (`now` when none).
/// Every loop is asked for fresher lists at its next publication; the answer is what is
/// published now.
fn listed_snapshots(
    shared: &Shared,
    loop_index: Option<u32>,
    now: u64,
) -> (Vec<(usize, Arc<LoopSnapshot>)>, u64) {
    let mut as_of_ns = None::<u64>;
    let mut snaps = Vec::new();
    for lp in &shared.loops {
        lp.request_details();
        if loop_index.is_some_and(|want| want as usize != lp.index()) {
            continue;
        }
        let snap = lp.snapshot();
        as_of_ns = Some(as_of_ns.map_or(snap.lists_as_of_ns, |t| t.min(snap.lists_as_of_ns)));
        snaps.push((lp.index(), snap));
    }
    (snaps, as_of_ns.unwrap_or(now))
}

pub(crate) fn handles(shared: &Shared, params: &HandlesParams) -> HandlesResult {
    let now = now_ns();
    let (snaps, as_of_ns) = listed_snapshots(shared, params.loop_index, now);
    let mut rows: Vec<(u64, proto::HandleInfo)> = Vec::new();
    for (index, snap) in &snaps {
        for h in snap.handle_list.iter() {
            if params
                .handle_type
                .as_ref()
                .is_some_and(|t| t.as_str() != h.kind.as_str())
            {
                continue;
            }
            if params.active.is_some_and(|a| a != h.active) {
                continue;
            }
            rows.push((h.created_ns, handle_info(h, *index, now)));
        }
    }
    let total = rows.len() as u64;
    match params.sort.unwrap_or_default() {
        HandleSort::Id => rows.sort_by_key(|(_, h)| h.id),
        HandleSort::Age => rows.sort_by_key(|(created, h)| (*created, h.id)),
        HandleSort::Type => rows.sort_by(|(_, a), (_, b)| {
            (a.handle_type.as_str(), a.id).cmp(&(b.handle_type.as_str(), b.id))
        }),
        HandleSort::BytesRead => rows.sort_by_key(|(_, h)| (std::cmp::Reverse(h.bytes_read), h.id)),
        HandleSort::BytesWritten => {
            rows.sort_by_key(|(_, h)| (std::cmp::Reverse(h.bytes_written), h.id))
        }
        HandleSort::LastActivity => {
            rows.sort_by_key(|(_, h)| (std::cmp::Reverse(h.last_activity_ms), h.id))
        }
    }
    if let Some(limit) = params.limit {
        rows.truncate(limit as usize);
    }
    HandlesResult {
        as_of_ms: wall_ms(as_of_ns),
        total,
        handles: rows.into_iter().map(|(_, h)| h).collect(),
    }
}

/// The `requests` result: filtered, oldest first, limited; `total` counts every match.
pub(crate) fn requests(shared: &Shared, params: &RequestsParams) -> RequestsResult {
    let now = now_ns();
    let (snaps, as_of_ns) = listed_snapshots(shared, params.loop_index, now);
    let mut rows = Vec::new();
    for (index, snap) in &snaps {
        for r in snap.request_list.iter() {
            if params
                .request_type
                .as_ref()
                .is_some_and(|t| t.as_str() != r.kind.as_str())
            {
                continue;
            }
            rows.push((
                r.created_ns,
                proto::RequestInfo {
                    id: r.id.get(),
                    loop_index: *index as u32,
                    request_type: request_type(r.kind),
                    label: r.label.as_deref().map(str::to_string),
                    state: request_state(r.state),
                    handle_id: None,
                    created_at_ms: wall_ms(r.created_ns),
                    age_seconds: seconds(now.saturating_sub(r.created_ns)),
                    site: r.site.to_string(),
                },
            ));
        }
    }
    let total = rows.len() as u64;
    rows.sort_by_key(|(created, r)| (*created, r.id));
    if let Some(limit) = params.limit {
        rows.truncate(limit as usize);
    }
    RequestsResult {
        as_of_ms: wall_ms(as_of_ns),
        total,
        requests: rows.into_iter().map(|(_, r)| r).collect(),
    }
}

/// The `threadpool` result (read live from the pool).
pub(crate) fn threadpool(shared: &Shared) -> ThreadPoolStatus {
    let now = now_ns();
    let p = shared.pool.snapshot();
    let mut wait = Histogram::new();
    let mut run = Histogram::new();
    for (_, h) in &p.queue_wait {
        wait.merge(h);
    }
    for (_, h) in &p.run {
        run.merge(h);
    }
    // Labels of running tasks, from the loops' request lists.
    let label_of = |id: u64| {
        shared.loops.iter().find_map(|lp| {
            lp.snapshot()
                .request_list
                .iter()
                .find(|r| r.id.get() == id)
                .and_then(|r| r.label.as_deref().map(str::to_string))
        })
    };
    ThreadPoolStatus {
        as_of_ms: wall_ms(now),
        size: p.size as u32,
        busy_workers: p.busy_workers as u32,
        queue_depth: p.queue_depth as u64,
        queued_by_kind: p
            .queued
            .iter()
            .map(|(k, n)| (request_type(*k), *n as u64))
            .collect(),
        slow_busy_workers: p.slow_busy_workers as u32,
        slow_limit: p.slow_limit as u32,
        queue_wait: latency(&wait),
        run: latency(&run),
        tasks: p
            .tasks
            .iter()
            .map(|(k, o, n)| TaskCount {
                kind: request_type(*k),
                outcome: task_outcome(*o),
                count: *n,
            })
            .collect(),
        panics_total: p.panics,
        workers: p
            .workers
            .iter()
            .map(|w| WorkerInfo {
                index: w.index as u32,
                state: if w.current.is_some() {
                    proto::WorkerState::Busy
                } else {
                    proto::WorkerState::Idle
                },
                task_kind: w.current.map(|(k, _)| request_type(k)),
                request_id: w.current.map(|(_, id)| id.get()),
                task_label: w.current.and_then(|(_, id)| label_of(id.get())),
                busy_for_seconds: w.current.map(|_| seconds(w.busy_for_ns)),
                idle_seconds_total: seconds(w.idle_ns_total),
                tasks_done: w.tasks_done,
            })
            .collect(),
    }
}

/// The `stalls` result.
/// The `stalls` result; `None` when `params.id` names no kept stall.
pub(crate) fn stalls(shared: &Shared, params: &StallsParams) -> Option<StallsResult> {
    let now = now_ns();
    let (in_progress, recent) = match params.id {
        Some(id) => {
            let stall = if params.profile {
                shared.stalls.get_with_profile(id, now)
            } else {
                shared.stalls.get(id, now)
            }?;
            if stall.in_progress {
                (vec![stall], Vec::new())
            } else {
                (Vec::new(), vec![stall])
            }
        }
        None => shared.stalls.listing(
            params.limit.map_or(usize::MAX, |l| l as usize),
            params.profile,
            now,
        ),
    };
    Some(StallsResult {
        as_of_ms: wall_ms(now),
        in_progress,
        recent,
        total: shared.stalls.total(),
    })
}

/// The `config.get` result: the daemon's answer with the fields `Observe` owns filled in.
pub(crate) fn config(shared: &Shared) -> ConfigResult {
    let mut c = shared.config.get();
    c.as_of_ms = wall_ms(now_ns());
    c.threadpool_size = shared.pool.size() as u32;
    c.stall_threshold_ms = shared.stall_threshold_ms();
    c.stall_sample_interval_ms = shared.stall_sample_interval_ms();
    if let Some(a) = shared.metrics_addr.get() {
        c.metrics_addr = a.to_string();
    }
    if let Some(p) = shared.control_path.get() {
        c.control_path = p.display().to_string();
    }
    c
}
