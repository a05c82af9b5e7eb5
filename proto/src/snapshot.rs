//! What the daemon returns: snapshots of loops, handles, requests, the thread pool and stalls.
//!
//! Conventions: timestamps are unix milliseconds (`*_ms: u64`), durations are seconds as `f64`
//! (`*_seconds`, the Prometheus convention), every answer carries `as_of_ms` (when its snapshot
//! was published). Every struct defaults missing fields and ignores unknown ones, so a client
//! reads the answers of a newer daemon.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

wire_enum! {
    /// A loop phase, in libuv's order (the `phase` label of the metrics).
    pub enum Phase {
        /// Run expired timers.
        Timers => "timers",
        /// Run deferred I/O callbacks.
        Pending => "pending",
        /// Idle handles.
        Idle => "idle",
        /// Prepare handles.
        Prepare => "prepare",
        /// Block for I/O and run its callbacks.
        Poll => "poll",
        /// Check handles.
        Check => "check",
        /// Close callbacks.
        Close => "close",
    }
}

wire_enum! {
    /// A handle type (the `type` label of the metrics).
    pub enum HandleType {
        /// `uv_timer_t`.
        Timer => "timer",
        /// `uv_idle_t`.
        Idle => "idle",
        /// `uv_prepare_t`.
        Prepare => "prepare",
        /// `uv_check_t`.
        Check => "check",
        /// `uv_async_t`: cross-thread wake-up.
        Async => "async",
        /// TCP listener or stream.
        Tcp => "tcp",
        /// UDP socket.
        Udp => "udp",
        /// Signal watcher.
        Signal => "signal",
        /// Arbitrary file descriptor poller.
        Poll => "poll",
    }
}

wire_enum! {
    /// A request type (the `type` label of the metrics; the thread pool's task `kind`).
    pub enum RequestType {
        /// Stream write.
        Write => "write",
        /// TCP connect.
        Connect => "connect",
        /// Stream shutdown.
        Shutdown => "shutdown",
        /// UDP send.
        UdpSend => "udp_send",
        /// File-system operation (the label says which).
        Fs => "fs",
        /// `queue_work`.
        Work => "work",
        /// Name resolution.
        Getaddrinfo => "getaddrinfo",
    }
}

wire_enum! {
    /// The life stage of a request.
    pub enum RequestState {
        /// Waiting (e.g. in the thread-pool queue).
        Queued => "queued",
        /// Being executed.
        Running => "running",
        /// Finished; its callback is due or done.
        Done => "done",
        /// Cancelled before it ran.
        Cancelled => "cancelled",
    }
}

wire_enum! {
    /// How a thread-pool task ended (the `outcome` label of the metrics).
    pub enum TaskOutcome {
        /// Completed without error.
        Ok => "ok",
        /// Completed with an error.
        Error => "error",
        /// Cancelled while queued.
        Cancelled => "cancelled",
        /// The work function panicked; the worker survived.
        Panicked => "panicked",
    }
}

wire_enum! {
    /// What a thread-pool worker is doing.
    pub enum WorkerState {
        /// Waiting for work.
        Idle => "idle",
        /// Running a task.
        Busy => "busy",
    }
}

wire_enum! {
    /// A built-in service kind (DESIGN §6).
    pub enum ServiceKind {
        /// The sequence protocol.
        Seq => "seq",
        /// The prime checker.
        Prime => "prime",
        /// The static-file HTTP server.
        Http => "http",
    }
}

wire_enum! {
    /// What happened to a stall, in a `stalls` notification.
    pub enum StallEventKind {
        /// The watchdog saw a callback run past the threshold; it is still running.
        Opened => "opened",
        /// The callback returned; the stall has its final duration.
        Closed => "closed",
    }
}

/// What kind of process serves the socket, and what it can observe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    /// `"loopd"` (the daemon), `"program"` (a program built on loopd's library) or `"agent"`
    /// (a libuv program with loopd's agent attached). Empty from older servers: loopd.
    pub kind: String,
    /// The program's file name (`loopd`, `python3.11`, `my-server`).
    pub program: String,
    /// The libuv version observed (agent only), e.g. `1.44.2`.
    pub libuv_version: Option<String>,
    /// What this server can observe (agent only): e.g. `idle_time`, `metrics_info`,
    /// `callback_attribution`, `stack_samples`, `threadpool`.
    pub capabilities: Vec<String>,
}

/// The `hello` notification, sent by the server first on every connection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Hello {
    /// The protocol version spoken ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub protocol_version: u32,
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub server_version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// How many loops the daemon runs.
    pub loops: u32,
    /// When the daemon started, unix ms.
    pub started_at_ms: u64,
    /// The methods this server answers, so a client can tell what an older daemon lacks.
    pub methods: Vec<String>,
    /// What serves the socket (the daemon, a program on loopd, a libuv program's agent).
    pub host: Host,
}

/// A latency distribution summarised, in seconds (from an HDR histogram).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Sum of all samples, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub sum: f64,
    /// Mean, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub mean: f64,
    /// Median, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub p50: f64,
    /// 99th percentile, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub p99: f64,
    /// Maximum, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub max: f64,
}

/// Event-loop utilization (1 − idle/elapsed) over sliding windows, each in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Utilization {
    /// Over the last second.
    #[serde(deserialize_with = "null_as_zero")]
    pub last_1s: f64,
    /// Over the last 10 seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub last_10s: f64,
    /// Over the last minute.
    #[serde(deserialize_with = "null_as_zero")]
    pub last_60s: f64,
}

/// Time spent in one phase, per iteration, and the callbacks it ran.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseStats {
    /// The phase.
    pub phase: Phase,
    /// Callbacks run in this phase since start.
    pub callbacks_total: u64,
    /// Per-iteration duration of the phase.
    pub duration: Latency,
}

/// Handles of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HandleCounts {
    /// Open handles (including closing ones).
    pub total: u64,
    /// Active handles.
    pub active: u64,
    /// Opened since start.
    pub opened_total: u64,
    /// Closed since start.
    pub closed_total: u64,
}

/// Requests of one type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestCounts {
    /// In flight now.
    pub active: u64,
    /// Completed since start (any outcome).
    pub completed_total: u64,
    /// From creation to callback.
    pub duration: Latency,
}

/// One loop's state, as published at its last snapshot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopStatus {
    /// The loop's index (the `loop` label of the metrics).
    #[serde(rename = "loop")]
    pub loop_index: u32,
    /// Iterations since start.
    pub iterations: u64,
    /// Iterations per second over the last second.
    #[serde(deserialize_with = "null_as_zero")]
    pub iterations_per_second: f64,
    /// Events processed since start (`uv_metrics_info.events`).
    pub events: u64,
    /// Events waiting when the last poll returned (`events_waiting`).
    pub events_waiting: u64,
    /// Time blocked in poll since start, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub idle_seconds_total: f64,
    /// Event-loop utilization.
    pub utilization: Utilization,
    /// Event-loop lag (probe timer: actual − scheduled).
    pub lag: Latency,
    /// Recent lag: the maximum lag of each of the last publications, oldest first, seconds
    /// (for a sparkline).
    #[serde(deserialize_with = "nulls_as_zero")]
    pub lag_recent: Vec<f64>,
    /// Per-phase statistics, in phase order.
    pub phases: Vec<PhaseStats>,
    /// Handles by type.
    pub handles: BTreeMap<HandleType, HandleCounts>,
    /// Requests by type.
    pub requests: BTreeMap<RequestType, RequestCounts>,
    /// Callbacks that panicked (and whose handle was closed).
    pub callback_panics_total: u64,
    /// Stalls on this loop since start.
    pub stalls_total: u64,
    /// The stall happening right now, if any.
    pub stall_in_progress: Option<Stall>,
}

/// The thread pool in brief (the full picture is [`ThreadPoolStatus`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadPoolSummary {
    /// Workers.
    pub size: u32,
    /// Workers running a task.
    pub busy_workers: u32,
    /// Tasks waiting in the queue.
    pub queue_depth: u64,
    /// Tasks finished since start (any outcome).
    pub tasks_total: u64,
    /// Tasks that panicked since start.
    pub panics_total: u64,
    /// Time tasks waited in the queue.
    pub queue_wait: Latency,
}

/// A running service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceStatus {
    /// Its name (the `service` label of the metrics).
    pub name: String,
    /// Its kind.
    pub kind: ServiceKind,
    /// The address actually bound (port 0 resolved).
    pub bind: String,
    /// Open connections.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Bytes received since start.
    pub bytes_received_total: u64,
    /// Bytes sent since start.
    pub bytes_sent_total: u64,
}

/// The `status` result and `status` notification: the whole daemon at a glance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// When this snapshot was published, unix ms.
    pub as_of_ms: u64,
    /// When the daemon started, unix ms.
    pub started_at_ms: u64,
    /// Seconds since start.
    #[serde(deserialize_with = "null_as_zero")]
    pub uptime_seconds: f64,
    /// The daemon's version.
    pub server_version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Every loop.
    pub loops: Vec<LoopStatus>,
    /// The thread pool.
    pub threadpool: ThreadPoolSummary,
    /// The services.
    pub services: Vec<ServiceStatus>,
    /// Stalls on all loops since start.
    pub stalls_total: u64,
    /// What serves the socket (as in `hello`).
    pub host: Host,
}

/// One handle (a row of `loopctl handles`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HandleInfo {
    /// Stable id, never reused in a process.
    pub id: u64,
    /// The loop owning it.
    #[serde(rename = "loop")]
    pub loop_index: u32,
    /// Its type.
    #[serde(rename = "type")]
    pub handle_type: HandleType,
    /// A human label, e.g. `seq peer 127.0.0.1:50412`.
    pub label: Option<String>,
    /// Active (started).
    pub active: bool,
    /// Ref'd (keeps the loop alive while active).
    #[serde(rename = "ref")]
    pub referenced: bool,
    /// Closing (close called, close callback pending).
    pub closing: bool,
    /// The file descriptor, for handles that have one.
    pub fd: Option<i32>,
    /// Creation time, unix ms.
    pub created_at_ms: u64,
    /// Seconds since creation.
    #[serde(deserialize_with = "null_as_zero")]
    pub age_seconds: f64,
    /// Where it was created, `file:line`.
    pub site: String,
    /// Bytes read (streams, UDP).
    pub bytes_read: u64,
    /// Bytes written (streams, UDP).
    pub bytes_written: u64,
    /// Last callback or I/O, unix ms.
    pub last_activity_ms: Option<u64>,
}

/// The `handles` result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HandlesResult {
    /// When the snapshot was published, unix ms.
    pub as_of_ms: u64,
    /// Handles matching the filters, before `limit`.
    pub total: u64,
    /// The handles, sorted and limited as asked.
    pub handles: Vec<HandleInfo>,
}

/// One in-flight request (a row of `loopctl requests`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestInfo {
    /// Stable id, never reused in a process.
    pub id: u64,
    /// The loop owning it.
    #[serde(rename = "loop")]
    pub loop_index: u32,
    /// Its type.
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// A human label, e.g. `fs read ./index.html`.
    pub label: Option<String>,
    /// Its state.
    pub state: RequestState,
    /// The handle it belongs to (a write's stream), if any.
    pub handle_id: Option<u64>,
    /// Creation time, unix ms.
    pub created_at_ms: u64,
    /// Seconds since creation.
    #[serde(deserialize_with = "null_as_zero")]
    pub age_seconds: f64,
    /// Where it was created, `file:line`.
    pub site: String,
}

/// The `requests` result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestsResult {
    /// When the snapshot was published, unix ms.
    pub as_of_ms: u64,
    /// Requests matching the filters, before `limit`.
    pub total: u64,
    /// The requests, oldest first.
    pub requests: Vec<RequestInfo>,
}

/// Tasks of one kind with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskCount {
    /// The task kind.
    pub kind: RequestType,
    /// How they ended.
    pub outcome: TaskOutcome,
    /// How many, since start.
    pub count: u64,
}

/// One thread-pool worker (`loopd-worker-N`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerInfo {
    /// N in `loopd-worker-N`.
    pub index: u32,
    /// Idle or busy.
    pub state: WorkerState,
    /// The kind of the task it runs, when busy.
    pub task_kind: Option<RequestType>,
    /// The request it runs, when busy.
    pub request_id: Option<u64>,
    /// The running task's label, when busy.
    pub task_label: Option<String>,
    /// How long the current task has run, seconds, when busy.
    pub busy_for_seconds: Option<f64>,
    /// Time spent idle since the worker started, seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub idle_seconds_total: f64,
    /// Tasks finished by this worker.
    pub tasks_done: u64,
}

/// The `threadpool` result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadPoolStatus {
    /// When the snapshot was published, unix ms.
    pub as_of_ms: u64,
    /// Workers.
    pub size: u32,
    /// Workers running a task.
    pub busy_workers: u32,
    /// Tasks waiting in the queue.
    pub queue_depth: u64,
    /// Tasks waiting in the queue, by kind (they sum to `queue_depth`).
    pub queued_by_kind: BTreeMap<RequestType, u64>,
    /// Workers running slow work (CPU-bound work such as `prime` in pool mode, getaddrinfo).
    pub slow_busy_workers: u32,
    /// Most workers slow work may occupy at once, `(size + 1) / 2`: the others stay free
    /// for fs requests. 0 from a daemon that has no such limit.
    pub slow_limit: u32,
    /// Time tasks waited in the queue.
    pub queue_wait: Latency,
    /// Time tasks ran.
    pub run: Latency,
    /// Finished tasks by kind and outcome.
    pub tasks: Vec<TaskCount>,
    /// Tasks that panicked since start.
    pub panics_total: u64,
    /// Every worker, by index.
    pub workers: Vec<WorkerInfo>,
}

/// One frame of a sampled stack, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Frame {
    /// The symbol, demangled (`"<unknown>"` when it could not be resolved).
    pub function: String,
    /// Source file, when known.
    pub file: Option<String>,
    /// Source line, when known.
    pub line: Option<u32>,
}

/// A callback that ran (or is running) longer than the stall threshold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stall {
    /// Stall id, increasing.
    pub id: u64,
    /// The blocked loop.
    #[serde(rename = "loop")]
    pub loop_index: u32,
    /// The phase the callback ran in.
    pub phase: Phase,
    /// The handle whose callback stalled, if it was a handle's.
    pub handle_id: Option<u64>,
    /// The request whose callback stalled, if it was a request's.
    pub request_id: Option<u64>,
    /// The handle or request type (`"timer"`, `"tcp"`, `"work"`, …).
    #[serde(rename = "type")]
    pub target_type: String,
    /// The handle's or request's label.
    pub label: Option<String>,
    /// When the callback started, unix ms.
    pub started_at_ms: u64,
    /// How long it has run so far (in progress) or ran (closed), seconds.
    #[serde(deserialize_with = "null_as_zero")]
    pub duration_seconds: f64,
    /// The threshold that was crossed, ms.
    pub threshold_ms: u64,
    /// Whether the callback is still running.
    pub in_progress: bool,
    /// The loop thread's stack sampled while it was blocked, innermost frame first.
    pub stack: Vec<Frame>,
    /// Why `stack` is empty, when sampling failed or is unsupported.
    pub stack_error: Option<String>,
    /// Stack samples taken while it blocked (every `stall_sample_interval_ms`), kept in
    /// its profile.
    pub samples: u64,
    /// Samples not kept: past the per-stall bound, or the loop did not answer.
    pub samples_dropped: u64,
    /// The frame most samples were in (self time), so far: the line to read first.
    pub hot_frame: Option<String>,
    /// The samples as a profile: in `stalls` results asked `profile: true`, for the stalls
    /// whose profile is still kept (the last [`STALL_PROFILES_KEPT`] closed ones and those in
    /// progress).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<StallProfile>,
}

/// Closed stalls whose profile and flight-recorder window are kept (older ones keep their
/// summary: `samples`, `hot_frame`, `stack`).
pub const STALL_PROFILES_KEPT: usize = 16;

/// What the sampled loop thread was doing during a stall: the distinct stacks, the samples
/// in time order. Folded stacks, top-frame tables, flame graphs and speedscope files are
/// all views of it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StallProfile {
    /// The sampling interval in force, ms.
    pub interval_ms: u64,
    /// Every distinct frame, referred to by index from `stacks`.
    pub frames: Vec<Frame>,
    /// Every distinct stack, innermost frame first, as indices into `frames`.
    pub stacks: Vec<Vec<u32>>,
    /// The samples in the order taken.
    pub samples: Vec<ProfileSample>,
}

/// One stack sample of a [`StallProfile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileSample {
    /// When it was taken, µs after the stalled callback started.
    pub at_us: u64,
    /// Its stack, an index into `stacks`.
    pub stack: u32,
}

impl StallProfile {
    /// The stacks with how many samples each, root first, as Brendan Gregg's folded format
    /// reads them (`main;run;parse 12`): one line per distinct stack. Stacks whose indices
    /// do not resolve (a malformed profile) are skipped.
    pub fn folded(&self) -> Vec<(Vec<&str>, u64)> {
        let mut counts = vec![0u64; self.stacks.len()];
        for s in &self.samples {
            if let Some(c) = counts.get_mut(s.stack as usize) {
                *c += 1;
            }
        }
        self.stacks
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .filter_map(|(stack, n)| {
                let names: Option<Vec<&str>> = stack
                    .iter()
                    .rev()
                    .map(|&f| self.frames.get(f as usize).map(|f| f.function.as_str()))
                    .collect();
                names.map(|names| (names, n))
            })
            .collect()
    }

    /// Per function: samples in which it is the innermost frame (self) and in which it
    /// appears at all (total, counted once per sample even when recursive), sorted by self
    /// then total, descending.
    pub fn top_functions(&self) -> Vec<FunctionSamples> {
        let mut by_name: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for (stack, n) in self.folded() {
            if let Some(leaf) = stack.last() {
                by_name.entry(leaf).or_default().0 += n;
            }
            let mut seen: Vec<&str> = Vec::with_capacity(stack.len());
            for f in stack {
                if !seen.contains(&f) {
                    seen.push(f);
                    by_name.entry(f).or_default().1 += n;
                }
            }
        }
        let mut out: Vec<FunctionSamples> = by_name
            .into_iter()
            .map(
                |(function, (self_samples, total_samples))| FunctionSamples {
                    function: function.to_string(),
                    self_samples,
                    total_samples,
                },
            )
            .collect();
        out.sort_by(|a, b| {
            (b.self_samples, b.total_samples, &a.function).cmp(&(
                a.self_samples,
                a.total_samples,
                &b.function,
            ))
        });
        out
    }
}

/// A function's share of a [`StallProfile`]'s samples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionSamples {
    /// The function, demangled.
    pub function: String,
    /// Samples in which it was the innermost frame.
    pub self_samples: u64,
    /// Samples in which it was on the stack.
    pub total_samples: u64,
}

/// The `stalls` result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StallsResult {
    /// When the snapshot was published, unix ms.
    pub as_of_ms: u64,
    /// Stalls in progress now, at most one per loop.
    pub in_progress: Vec<Stall>,
    /// Recently closed stalls, newest first, at most `limit`.
    pub recent: Vec<Stall>,
    /// Stalls since start, on all loops.
    pub total: u64,
}

/// The params of a `stalls` notification.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StallEvent {
    /// Opened or closed.
    pub event: StallEventKind,
    /// The stall as of this event.
    pub stall: Stall,
}

/// The params of a `dropped` notification: pushes this subscriber missed because it read too
/// slowly. Sent before the next push that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropped {
    /// Notifications dropped since the previous `dropped` notification.
    pub count: u64,
    /// Notifications dropped since this connection subscribed.
    pub total: u64,
}

/// A configured service, as in the config file's `[[service]]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    /// Its name (the `service` label of the metrics).
    pub name: String,
    /// Its kind.
    pub kind: ServiceKind,
    /// The configured bind address (may have port 0).
    pub bind: String,
    /// `pool` or `inline` (prime only).
    pub mode: Option<String>,
    /// The served directory (http only).
    pub root: Option<String>,
}

/// The `config.get` and `config.set` result: the configuration in force.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigResult {
    /// When this was read, unix ms.
    pub as_of_ms: u64,
    /// Thread-pool workers (settable).
    pub threadpool_size: u32,
    /// Stall threshold, ms (settable).
    pub stall_threshold_ms: u64,
    /// How often a stalled loop's stack is sampled, ms (settable).
    pub stall_sample_interval_ms: u64,
    /// The tracing filter, e.g. `info,loopd::engine=debug` (settable).
    pub log_filter: String,
    /// The metrics endpoint address.
    pub metrics_addr: String,
    /// The control socket path.
    pub control_path: String,
    /// The config file read, if any.
    pub config_file: Option<String>,
    /// The configured services.
    pub services: Vec<ServiceConfig>,
}

/// Reads an `f64` that may be `null`: `serde_json` writes non-finite floats (a NaN from a
/// division by zero) as `null`; one such value must not make a whole snapshot unreadable.
fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(0.0))
}

/// [`null_as_zero`] for every element of a list.
fn nulls_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|v| v.unwrap_or(0.0))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;
    use std::fmt::Debug;

    fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
        let text = serde_json::to_string(v).unwrap();
        let back: T = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, v, "{text}");
        // Missing fields default: `{}` parses as Default.
        let _: T = serde_json::from_str("{}").unwrap();
    }

    pub(crate) fn stall() -> Stall {
        Stall {
            id: 3,
            loop_index: 0,
            phase: Phase::Timers,
            handle_id: Some(17),
            request_id: None,
            target_type: "timer".into(),
            label: Some("prime inline".into()),
            started_at_ms: 1_700_000_000_000,
            duration_seconds: 2.5,
            threshold_ms: 100,
            in_progress: true,
            stack: vec![
                Frame {
                    function: "loopd::services::prime::is_prime".into(),
                    file: Some("prime.rs".into()),
                    line: Some(40),
                },
                Frame {
                    function: "<unknown>".into(),
                    file: None,
                    line: None,
                },
            ],
            stack_error: None,
            samples: 2,
            samples_dropped: 1,
            hot_frame: Some("loopd::services::prime::is_prime (prime.rs:40)".into()),
            profile: Some(StallProfile {
                interval_ms: 10,
                frames: vec![Frame {
                    function: "is_prime".into(),
                    file: None,
                    line: None,
                }],
                stacks: vec![vec![0]],
                samples: vec![
                    ProfileSample { at_us: 0, stack: 0 },
                    ProfileSample {
                        at_us: 10_000,
                        stack: 0,
                    },
                ],
            }),
        }
    }

    pub(crate) fn status() -> Status {
        let lat = Latency {
            count: 10,
            sum: 0.5,
            mean: 0.05,
            p50: 0.01,
            p99: 0.2,
            max: 0.3,
        };
        Status {
            as_of_ms: 1_700_000_001_000,
            started_at_ms: 1_700_000_000_000,
            uptime_seconds: 1.0,
            server_version: "0.1.0".into(),
            pid: 42,
            loops: vec![LoopStatus {
                loop_index: 0,
                iterations: 100,
                iterations_per_second: 99.5,
                events: 50,
                events_waiting: 1,
                idle_seconds_total: 0.75,
                utilization: Utilization {
                    last_1s: 0.25,
                    last_10s: 0.1,
                    last_60s: 0.05,
                },
                lag: lat,
                lag_recent: vec![0.001, 0.002, 2.5],
                phases: Phase::KNOWN
                    .iter()
                    .map(|p| PhaseStats {
                        phase: p.clone(),
                        callbacks_total: 3,
                        duration: lat,
                    })
                    .collect(),
                handles: [
                    (
                        HandleType::Tcp,
                        HandleCounts {
                            total: 3,
                            active: 2,
                            opened_total: 9,
                            closed_total: 6,
                        },
                    ),
                    (HandleType::from("pipe"), HandleCounts::default()),
                ]
                .into_iter()
                .collect(),
                requests: [(
                    RequestType::Write,
                    RequestCounts {
                        active: 1,
                        completed_total: 4,
                        duration: lat,
                    },
                )]
                .into_iter()
                .collect(),
                callback_panics_total: 1,
                stalls_total: 2,
                stall_in_progress: Some(stall()),
            }],
            threadpool: ThreadPoolSummary {
                size: 4,
                busy_workers: 1,
                queue_depth: 2,
                tasks_total: 7,
                panics_total: 0,
                queue_wait: lat,
            },
            services: vec![ServiceStatus {
                name: "prime".into(),
                kind: ServiceKind::Prime,
                bind: "127.0.0.1:7071".into(),
                connections: 1,
                connections_total: 5,
                bytes_received_total: 100,
                bytes_sent_total: 60,
            }],
            stalls_total: 2,
            host: Host {
                kind: "loopd".into(),
                program: "loopd".into(),
                ..Host::default()
            },
        }
    }

    #[test]
    fn roundtrip_every_type() {
        roundtrip(&Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            server_version: "0.1.0".into(),
            pid: 1,
            loops: 2,
            started_at_ms: 5,
            methods: vec!["ping".into()],
            host: Host::default(),
        });
        roundtrip(&status());
        roundtrip(&Status::default());
        roundtrip(&HandlesResult {
            as_of_ms: 1,
            total: 2,
            handles: vec![
                HandleInfo {
                    id: 7,
                    loop_index: 1,
                    handle_type: HandleType::Tcp,
                    label: Some("seq peer 127.0.0.1:50412".into()),
                    active: true,
                    referenced: true,
                    closing: false,
                    fd: Some(9),
                    created_at_ms: 3,
                    age_seconds: 1.5,
                    site: "loopd/src/services/seq.rs:40".into(),
                    bytes_read: 10,
                    bytes_written: 11,
                    last_activity_ms: Some(4),
                },
                HandleInfo::default(),
            ],
        });
        roundtrip(&RequestsResult {
            as_of_ms: 1,
            total: 1,
            requests: vec![RequestInfo {
                id: 9,
                loop_index: 0,
                request_type: RequestType::Fs,
                label: Some("fs read ./index.html".into()),
                state: RequestState::Running,
                handle_id: None,
                created_at_ms: 2,
                age_seconds: 0.25,
                site: "x.rs:1".into(),
            }],
        });
        roundtrip(&ThreadPoolStatus {
            as_of_ms: 1,
            size: 2,
            busy_workers: 1,
            queue_depth: 3,
            queued_by_kind: BTreeMap::from([(RequestType::Work, 2), (RequestType::Fs, 1)]),
            slow_busy_workers: 1,
            slow_limit: 1,
            queue_wait: Latency::default(),
            run: Latency {
                count: 1,
                sum: 1.0,
                mean: 1.0,
                p50: 1.0,
                p99: 1.0,
                max: 1.0,
            },
            tasks: vec![TaskCount {
                kind: RequestType::Work,
                outcome: TaskOutcome::Panicked,
                count: 1,
            }],
            panics_total: 1,
            workers: vec![
                WorkerInfo {
                    index: 0,
                    state: WorkerState::Busy,
                    task_kind: Some(RequestType::Work),
                    request_id: Some(5),
                    task_label: Some("prime 2305843009213693951".into()),
                    busy_for_seconds: Some(1.25),
                    idle_seconds_total: 3.0,
                    tasks_done: 8,
                },
                WorkerInfo::default(),
            ],
        });
        roundtrip(&StallsResult {
            as_of_ms: 1,
            in_progress: vec![stall()],
            recent: vec![stall(), Stall::default()],
            total: 2,
        });
        roundtrip(&StallEvent {
            event: StallEventKind::Closed,
            stall: stall(),
        });
        roundtrip(&Dropped {
            count: 3,
            total: 10,
        });
        roundtrip(&ConfigResult {
            as_of_ms: 1,
            threadpool_size: 4,
            stall_threshold_ms: 100,
            stall_sample_interval_ms: 10,
            log_filter: "info".into(),
            metrics_addr: "127.0.0.1:9464".into(),
            control_path: "/run/user/1000/loopd/control.sock".into(),
            config_file: None,
            services: vec![ServiceConfig {
                name: "prime".into(),
                kind: ServiceKind::Prime,
                bind: "127.0.0.1:0".into(),
                mode: Some("inline".into()),
                root: None,
            }],
        });
    }

    #[test]
    fn wire_names() {
        let v = serde_json::to_value(HandleInfo {
            handle_type: HandleType::Async,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v["type"], "async");
        assert_eq!(v["loop"], 0);
        assert_eq!(v["ref"], false);
        let v = serde_json::to_value(status()).unwrap();
        assert_eq!(v["loops"][0]["handles"]["tcp"]["active"], 2);
        assert_eq!(v["loops"][0]["phases"][4]["phase"], "poll");
        assert_eq!(v["loops"][0]["requests"]["write"]["active"], 1);
        assert_eq!(RequestType::UdpSend.to_string(), "udp_send");
        assert_eq!(RequestType::NAMES.len(), RequestType::KNOWN.len());
        for (k, n) in Phase::KNOWN.iter().zip(Phase::NAMES) {
            assert_eq!(k.as_str(), *n);
            assert_eq!(&Phase::from(*n), k);
        }
    }

    #[test]
    fn forward_compatible() {
        // Unknown fields anywhere are ignored; unknown enum values survive as Other.
        let text = json!({
            "as_of_ms": 5,
            "total": 1,
            "new_top_level": {"x": 1},
            "handles": [{
                "id": 1, "loop": 0, "type": "pipe", "active": true, "ref": false,
                "closing": false, "site": "a.rs:1", "color": "blue"
            }]
        })
        .to_string();
        let r: HandlesResult = serde_json::from_str(&text).unwrap();
        assert_eq!(r.handles[0].handle_type, HandleType::Other("pipe".into()));
        assert!(!r.handles[0].handle_type.is_known());
        assert_eq!(r.handles[0].site, "a.rs:1");
        let again = serde_json::to_value(&r).unwrap();
        assert_eq!(again["handles"][0]["type"], "pipe");

        let s: Stall = serde_json::from_value(json!({"phase": "gc", "in_progress": true})).unwrap();
        assert_eq!(s.phase, Phase::Other("gc".into()));
        let w: WorkerInfo = serde_json::from_value(json!({"state": "parked"})).unwrap();
        assert_eq!(w.state, WorkerState::Other("parked".into()));
        let r: RequestInfo = serde_json::from_value(json!({"state": "paused"})).unwrap();
        assert_eq!(r.state.as_str(), "paused");
        let st: LoopStatus =
            serde_json::from_value(json!({"handles": {"pipe": {"total": 1, "weird": 2}}})).unwrap();
        assert_eq!(st.handles[&HandleType::from("pipe")].total, 1);
    }

    #[test]
    fn non_finite_floats_do_not_break_parsing() {
        let mut s = status();
        s.loops[0].utilization.last_1s = f64::NAN;
        s.loops[0].lag_recent.push(f64::INFINITY);
        s.loops[0].lag.mean = f64::NAN;
        let text = serde_json::to_string(&s).unwrap();
        let back: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back.loops[0].utilization.last_1s, 0.0);
        assert_eq!(back.loops[0].lag.mean, 0.0);
        assert_eq!(back.loops[0].lag_recent.last(), Some(&0.0));
        assert_eq!(back.loops[0].lag.p99, s.loops[0].lag.p99);
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_value::<HandleInfo>(json!({"id": "seven"})).is_err());
        assert!(serde_json::from_value::<HandleInfo>(json!({"type": 3})).is_err());
        assert!(serde_json::from_value::<Status>(json!({"loops": {}})).is_err());
    }
}
