//! Every metric of DESIGN §4, built fresh from the snapshots at each scrape as Prometheus
//! `MetricFamily` values, so the counts are ours (no second bookkeeping), and every label set
//! that exists from startup (phases, handle and request types, pool kinds × outcomes, stalls at
//! zero) is always present — dashboards never see "no data".

use prometheus::proto::{self as pb, MetricFamily, MetricType};

use super::super::convert::{task_outcome, utilization_1s};
use super::super::Shared;
use super::server::Shed;
use loopd_engine::instrument::clock::now_ns;
use loopd_engine::instrument::Histogram;
use loopd_engine::{HandleType, Phase, RequestType};

/// Histogram bucket bounds: powers of two of nanoseconds, 2^10 ns (≈1 µs) to 2^35 ns (≈34 s),
/// exact edges of our [`Histogram`].
pub const BUCKET_POWERS: std::ops::RangeInclusive<u32> = 10..=35;

/// A family being filled.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        Family(f)
    }

    fn metric(labels: &[(&str, &str)]) -> pb::Metric {
        let mut m = pb::Metric::default();
        for (k, v) in labels {
            let mut l = pb::LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            m.mut_label().push(l);
        }
        m
    }

    fn value(&mut self, labels: &[(&str, &str)], v: f64) {
        let mut m = Family::metric(labels);
        match self.0.get_field_type() {
            MetricType::COUNTER => {
                let mut c = pb::Counter::default();
                c.set_value(v);
                m.set_counter(c);
            }
            _ => {
                let mut g = pb::Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
        }
        self.0.mut_metric().push(m);
    }

    fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let mut m = Family::metric(labels);
        let mut ph = pb::Histogram::default();
        ph.set_sample_count(h.count());
        ph.set_sample_sum(h.sum() as f64 / 1e9);
        for p in BUCKET_POWERS {
            let bound = 1u64 << p;
            let mut b = pb::Bucket::default();
            b.set_upper_bound(bound as f64 / 1e9);
            b.set_cumulative_count(h.cumulative_le(bound));
            ph.mut_bucket().push(b);
        }
        m.set_histogram(ph);
        self.0.mut_metric().push(m);
    }
}

fn counter(name: &str, help: &str) -> Family {
    Family::new(name, help, MetricType::COUNTER)
}

fn gauge(name: &str, help: &str) -> Family {
    Family::new(name, help, MetricType::GAUGE)
}

fn histogram(name: &str, help: &str) -> Family {
    Family::new(name, help, MetricType::HISTOGRAM)
}

/// Every loopd metric family, from the latest snapshots.
pub(crate) fn collect(shared: &Shared) -> Vec<MetricFamily> {
    let now = now_ns();
    let mut iterations = counter("loopd_loop_iterations_total", "Loop iterations run.");
    let mut events = counter(
        "loopd_loop_events_total",
        "I/O events processed by the loop (uv_metrics_info events).",
    );
    let mut waiting = gauge(
        "loopd_loop_events_waiting",
        "Events returned by the loop's last poll (uv_metrics_info events_waiting).",
    );
    let mut idle = counter(
        "loopd_loop_idle_seconds_total",
        "Time the loop spent blocked in poll waiting for events.",
    );
    let mut utilization = gauge(
        "loopd_loop_utilization",
        "Event-loop utilization (1 - idle/elapsed) over the last second, 0..1.",
    );
    let mut lag = histogram(
        "loopd_loop_lag_seconds",
        "Event-loop lag: how late the internal probe timer ran (actual - scheduled time).",
    );
    let mut phase_duration = histogram(
        "loopd_phase_duration_seconds",
        "Duration of each loop phase per iteration in which it ran callbacks (poll: excluding the time blocked waiting).",
    );
    let mut phase_callbacks = counter(
        "loopd_phase_callbacks_total",
        "Callbacks run, by loop phase.",
    );
    let mut handles = gauge(
        "loopd_handles",
        "Handles that exist (including closing ones), by type.",
    );
    let mut active_handles = gauge("loopd_active_handles", "Active handles, by type.");
    let mut opened = counter("loopd_handles_opened_total", "Handles opened, by type.");
    let mut closed = counter("loopd_handles_closed_total", "Handles closed, by type.");
    let mut active_requests = gauge("loopd_active_requests", "Requests in flight, by type.");
    let mut request_duration = histogram(
        "loopd_request_duration_seconds",
        "Request duration from creation to completion, by type.",
    );
    let mut panics = counter(
        "loopd_callback_panics_total",
        "Loop callbacks that panicked (their handle was closed, the loop went on).",
    );
    let mut stalls_total = counter(
        "loopd_stalls_total",
        "Stalls: single callbacks that ran longer than the stall threshold.",
    );
    let mut stall_duration = histogram(
        "loopd_stall_duration_seconds",
        "Duration of closed stalls (the whole callback).",
    );
    let mut stall_in_progress = gauge(
        "loopd_stall_in_progress_seconds",
        "How long the callback stalling the loop right now has run; 0 when none.",
    );
    let mut stall_samples = counter(
        "loopd_stall_samples_total",
        "Stack samples of stalled loop threads kept in stall profiles.",
    );
    let mut stall_samples_dropped = counter(
        "loopd_stall_samples_dropped_total",
        "Stack samples of stalled loops not kept: past the per-stall bound, or not answered.",
    );
    let mut stall_profiles_evicted = counter(
        "loopd_stall_profiles_evicted_total",
        "Stall profiles and flight-recorder windows dropped to keep the last 16.",
    );
    stall_profiles_evicted.value(&[], shared.stalls.profiles_evicted() as f64);

    for lp in &shared.loops {
        let snap = lp.snapshot();
        let l = snap.loop_index.to_string();
        let lb: &[(&str, &str)] = &[("loop", &l)];
        iterations.value(lb, snap.iterations as f64);
        events.value(lb, snap.events as f64);
        waiting.value(lb, snap.events_waiting as f64);
        idle.value(lb, snap.idle_ns_total as f64 / 1e9);
        utilization.value(lb, utilization_1s(lp, &snap, now));
        lag.histogram(lb, &snap.lag);
        panics.value(lb, snap.callback_panics as f64);
        for p in &snap.phases {
            let labels = [("loop", l.as_str()), ("phase", p.phase.as_str())];
            phase_duration.histogram(&labels, &p.duration);
            phase_callbacks.value(&labels, p.callbacks as f64);
        }
        debug_assert_eq!(snap.phases.len(), Phase::ALL.len());
        for t in HandleType::ALL {
            let labels = [("loop", l.as_str()), ("type", t.as_str())];
            handles.value(&labels, snap.handles[t].total as f64);
            active_handles.value(&labels, snap.handles[t].active as f64);
            opened.value(&labels, snap.handles_opened[t] as f64);
            closed.value(&labels, snap.handles_closed[t] as f64);
        }
        for t in RequestType::ALL {
            let labels = [("loop", l.as_str()), ("type", t.as_str())];
            active_requests.value(&labels, snap.requests_active[t] as f64);
            request_duration.histogram(&labels, &snap.request_duration[t]);
        }
    }
    for (index, total, durations, open_s) in shared.stalls.per_loop(now) {
        let l = index.to_string();
        let lb: &[(&str, &str)] = &[("loop", &l)];
        stalls_total.value(lb, total as f64);
        stall_duration.histogram(lb, &durations);
        stall_in_progress.value(lb, open_s);
    }
    for (index, kept, dropped) in shared.stalls.samples_per_loop() {
        let l = index.to_string();
        let lb: &[(&str, &str)] = &[("loop", &l)];
        stall_samples.value(lb, kept as f64);
        stall_samples_dropped.value(lb, dropped as f64);
    }

    let pool = shared.pool.snapshot();
    let mut pool_size = gauge("loopd_threadpool_size", "Thread-pool workers configured.");
    pool_size.value(&[], pool.size as f64);
    let mut busy = gauge(
        "loopd_threadpool_busy_workers",
        "Thread-pool workers running a task.",
    );
    busy.value(&[], pool.busy_workers as f64);
    let mut depth = gauge(
        "loopd_threadpool_queue_depth",
        "Tasks waiting in the thread-pool queue.",
    );
    depth.value(&[], pool.queue_depth as f64);
    let mut depth_by_kind = gauge(
        "loopd_threadpool_queue_depth_by_kind",
        "Tasks waiting in the thread-pool queue, by kind (they sum to loopd_threadpool_queue_depth).",
    );
    for (k, n) in &pool.queued {
        depth_by_kind.value(&[("kind", k.as_str())], *n as f64);
    }
    let mut slow_workers = gauge(
        "loopd_threadpool_slow_workers",
        "Thread-pool workers running slow work (prime in pool mode, getaddrinfo).",
    );
    slow_workers.value(&[], pool.slow_busy_workers as f64);
    let mut slow_limit = gauge(
        "loopd_threadpool_slow_limit",
        "Most workers slow work may occupy at once, (size + 1) / 2: the others stay free for fs requests.",
    );
    slow_limit.value(&[], pool.slow_limit as f64);
    let mut queue_wait = histogram(
        "loopd_threadpool_queue_wait_seconds",
        "Time tasks waited in the thread-pool queue, by kind.",
    );
    for (k, h) in &pool.queue_wait {
        queue_wait.histogram(&[("kind", k.as_str())], h);
    }
    let mut run = histogram(
        "loopd_threadpool_run_seconds",
        "Time tasks ran on a thread-pool worker, by kind.",
    );
    for (k, h) in &pool.run {
        run.histogram(&[("kind", k.as_str())], h);
    }
    let mut tasks = counter(
        "loopd_threadpool_tasks_total",
        "Thread-pool tasks finished, by kind and outcome.",
    );
    for (k, o, n) in &pool.tasks {
        tasks.value(
            &[("kind", k.as_str()), ("outcome", task_outcome(*o).as_str())],
            *n as f64,
        );
    }

    let mut connections = gauge("loopd_service_connections", "Open connections, by service.");
    let mut received = counter(
        "loopd_service_bytes_received_total",
        "Bytes received from peers, by service.",
    );
    let mut sent = counter(
        "loopd_service_bytes_sent_total",
        "Bytes sent to peers, by service.",
    );
    for s in shared.services.list() {
        let lb: &[(&str, &str)] = &[("service", &s.name)];
        connections.value(lb, s.counters.connections() as f64);
        received.value(lb, s.counters.bytes_received() as f64);
        sent.value(lb, s.counters.bytes_sent() as f64);
    }

    let mut shed = counter(
        "loopd_metrics_rejected_total",
        "Requests and connections the metrics endpoint refused or closed, by reason.",
    );
    for reason in Shed::ALL {
        shed.value(
            &[("reason", reason.as_str())],
            shared.metrics_shed.get(reason) as f64,
        );
    }
    let mut control_rejected = counter(
        "loopd_control_rejected_total",
        "Control-socket clients and requests turned away, by reason (other_user, connection_limit, trace_busy).",
    );
    for (reason, n) in shared.control_rejected.by_reason() {
        control_rejected.value(&[("reason", reason)], n as f64);
    }

    [
        iterations,
        events,
        waiting,
        idle,
        utilization,
        lag,
        phase_duration,
        phase_callbacks,
        handles,
        active_handles,
        opened,
        closed,
        active_requests,
        request_duration,
        pool_size,
        busy,
        depth,
        depth_by_kind,
        slow_workers,
        slow_limit,
        queue_wait,
        run,
        tasks,
        stalls_total,
        stall_duration,
        stall_in_progress,
        stall_samples,
        stall_samples_dropped,
        stall_profiles_evicted,
        panics,
        connections,
        received,
        sent,
        shed,
        control_rejected,
    ]
    .into_iter()
    .map(|f| f.0)
    // The text encoder refuses a family without samples (no loops, no services).
    .filter(|f| !f.get_metric().is_empty())
    .collect()
}
