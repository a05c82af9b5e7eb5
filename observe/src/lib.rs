//! loopd-observe: what event loops record, served: the stall watchdog, the Prometheus endpoint and the control
//! socket. Nothing here runs on a loop thread or waits for one — every answer comes from
//! published snapshots ([`LoopObserver::snapshot`]), the current-callback slots and the
//! watchdog's stall book — so loopd answers while its loop is blocked and shows the stall.
//!
//! Threads started by [`Observe::start`]:
//!
//! | thread | what it does |
//! |---|---|
//! | `loopd-watchdog` | polls every loop's current-callback slot every 5 ms; opens a stall when one callback runs past the threshold, samples the loop thread's stack with a signal, closes the stall when the callback returns |
//! | `loopd-stalls` | symbolizes stack samples, logs closed stalls at WARN, pushes stall events to subscribers |
//! | `loopd-metrics` | the metrics endpoint: `/metrics`, `/healthz`, `/` (an engine `Loop` of its own) |
//! | `loopd-control` | the control socket server (JSON-RPC 2.0, one `mio::Poll`) |
//!
//! `engine` knows nothing of `proto`: [`convert`] translates snapshots into wire types, and
//! the metrics module into Prometheus families.
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use loopd_engine::{Loop, RunMode, ThreadPool};
//! use loopd_observe::{ConfigControl, Observe, ObserveInput, ObserveOptions, ServiceRegistry};
//!
//! struct Config;
//! impl ConfigControl for Config {
//!     fn get(&self) -> proto::ConfigResult {
//!         proto::ConfigResult { log_filter: "info".into(), ..Default::default() }
//!     }
//!     fn set(&self, params: &proto::methods::ConfigSetParams) -> Result<(), String> {
//!         // Apply `params.log_filter` to the tracing reload handle here.
//!         Ok(())
//!     }
//! }
//!
//! let lp = Loop::new()?;
//! let mut observe = Observe::start(ObserveOptions {
//!     metrics_addr: Some("127.0.0.1:9464".parse()?),
//!     control_path: None, // the default path rule: $LOOPD_SOCKET, $XDG_RUNTIME_DIR/loopd/…
//!     input: ObserveInput::from_engine(
//!         vec![lp.observer()],
//!         ThreadPool::global().clone(),
//!         ServiceRegistry::default(),
//!     ),
//!     config: Arc::new(Config),
//!     ..ObserveOptions::default()
//! })?;
//! let (metrics, socket) = (observe.metrics_addr(), observe.control_path());
//! assert!(metrics.is_some() && socket.is_some());
//! // … run the loop …
//! observe.shutdown(); // stops the threads, removes the socket file
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// ARCHITECTURE.md's Rust snippets (the producer walk-through) compile and run.
#[cfg(doctest)]
#[doc = include_str!("../../ARCHITECTURE.md")]
struct ArchitectureDoctests;

pub mod control;
pub mod convert;
pub mod env;
pub mod http1;
mod input;
pub mod metrics;
mod profile;
mod rates;
mod services;
mod stalls;
mod sys;
mod trace;
pub mod watchdog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use input::{ObserveInput, PoolFeed};
pub use services::{ServiceCounters, ServiceEntry, ServiceRegistry};
pub use stalls::RECENT_KEPT as STALLS_KEPT;

use loopd_engine::instrument::clock::now_ns;
use loopd_engine::instrument::LoopObserver;
use rates::Rates;
use stalls::StallBook;

/// Default stall threshold (DESIGN §3).
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(100);
/// Default health threshold: `/healthz` turns 503 while a stall longer than this is in progress.
pub const DEFAULT_HEALTH_THRESHOLD: Duration = Duration::from_secs(1);
/// Default metrics address (DESIGN §4).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// The daemon's side of `config.get` / `config.set`.
///
/// `Observe` applies `threadpool_size` (through the pool) and `stall_threshold_ms` (through
/// the watchdog) itself, and fills in `as_of_ms`, `threadpool_size`, `stall_threshold_ms`,
/// `metrics_addr` and `control_path` of every [`proto::ConfigResult`] it returns; the daemon
/// provides the rest (log filter, config file, services) and applies `log_filter`.
pub trait ConfigControl: Send + Sync {
    /// The configuration in force (the fields `Observe` owns may be left at their defaults).
    fn get(&self) -> proto::ConfigResult;

    /// Applies a change. Called before `Observe` applies its own fields, and only with params
    /// already range-checked by [`proto::MethodCall::parse`]; an `Err` (e.g. a log filter that
    /// does not parse) becomes a `-32005` error and nothing is applied.
    ///
    /// # Errors
    /// A message for the client, naming the bad value.
    fn set(&self, params: &proto::methods::ConfigSetParams) -> Result<(), String>;
}

/// A [`ConfigControl`] with a fixed answer that accepts every change: for tests and tools.
#[derive(Debug, Default)]
pub struct StaticConfig(pub proto::ConfigResult);

impl ConfigControl for StaticConfig {
    fn get(&self) -> proto::ConfigResult {
        self.0.clone()
    }

    fn set(&self, _params: &proto::methods::ConfigSetParams) -> Result<(), String> {
        Ok(())
    }
}

/// What [`Observe::start`] serves and how.
pub struct ObserveOptions {
    /// Where `/metrics` listens (port 0 picks one); `None`: no metrics endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// The control socket path; `None`: [`control::default_socket_path`].
    pub control_path: Option<PathBuf>,
    /// With `control_path: None`, the socket's name in the default directory:
    /// `<name>.sock` instead of the daemon's `control.sock` (a program that is not the daemon:
    /// [`control::program_socket_path`]).
    pub control_name: Option<String>,
    /// Whether to serve the control socket at all.
    pub control: bool,
    /// A callback running longer than this is a stall (settable live with `config.set`).
    pub stall_threshold: Duration,
    /// While a stall lasts, the loop thread's stack is sampled this often (settable live).
    pub stall_sample_interval: Duration,
    /// `/healthz` answers 503 while a stall longer than this is in progress.
    pub health_threshold: Duration,
    /// What to serve: the loops, the thread pool and the services ([`ObserveInput`]).
    pub input: ObserveInput,
    /// The daemon's configuration hook.
    pub config: Arc<dyn ConfigControl>,
    /// What serves the socket, for `hello` and `status` (default: the daemon, `loopd`).
    pub host: proto::Host,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            metrics_addr: DEFAULT_METRICS_ADDR.parse().ok(),
            control_path: None,
            control_name: None,
            control: true,
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            stall_sample_interval: Duration::from_millis(
                proto::methods::DEFAULT_STALL_SAMPLE_INTERVAL_MS,
            ),
            health_threshold: DEFAULT_HEALTH_THRESHOLD,
            input: ObserveInput::default(),
            config: Arc::new(StaticConfig::default()),
            host: proto::Host {
                kind: "loopd".into(),
                program: env::program_file_name(),
                ..proto::Host::default()
            },
        }
    }
}

impl std::fmt::Debug for ObserveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveOptions")
            .field("metrics_addr", &self.metrics_addr)
            .field("control_path", &self.control_path)
            .field("control_name", &self.control_name)
            .field("control", &self.control)
            .field("stall_threshold", &self.stall_threshold)
            .field("stall_sample_interval", &self.stall_sample_interval)
            .field("health_threshold", &self.health_threshold)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

/// Why [`Observe::start`] failed; each message is one line naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The metrics address could not be bound (in use, not local, …).
    #[error("cannot listen for metrics on {addr}: {reason}")]
    MetricsBind {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// Another loopd answers on the control socket.
    #[error("another loopd is running on {0} (its control socket answers)")]
    AlreadyRunning(PathBuf),
    /// The control socket could not be set up.
    #[error("cannot use control socket {path}: {cause}")]
    ControlSocket {
        /// The socket path.
        path: PathBuf,
        /// What went wrong (in the message, so not also a `source` that `{:#}` would repeat).
        cause: std::io::Error,
    },
    /// No control socket path could be determined.
    #[error("no control socket path: {0}")]
    NoControlPath(String),
    /// A thread could not be started.
    #[error("cannot start thread {name}")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// What went wrong: the error's `source`, so `{:#}` prints it once.
        source: std::io::Error,
    },
}

/// State every observe thread shares.
pub(crate) struct Shared {
    pub loops: Vec<Arc<LoopObserver>>,
    pub pool: Arc<dyn PoolFeed>,
    pub services: ServiceRegistry,
    pub config: Arc<dyn ConfigControl>,
    pub host: proto::Host,
    pub stalls: StallBook,
    pub rates: Rates,
    /// Stall threshold, nanoseconds (live-settable).
    pub stall_threshold_ns: AtomicU64,
    /// Stall sampling interval, nanoseconds (live-settable).
    pub stall_sample_interval_ns: AtomicU64,
    pub health_threshold_ns: u64,
    /// When observation started ([`now_ns`]); reported as the daemon's start.
    pub started_ns: u64,
    pub metrics_addr: OnceLock<SocketAddr>,
    pub control_path: OnceLock<PathBuf>,
    /// Detection latency of the last stall opened: how long past the threshold it was seen.
    pub last_detection_ns: AtomicU64,
    /// What the metrics endpoint shed, by reason.
    pub metrics_shed: Arc<metrics::server::ShedCounters>,
    /// Control clients turned away, by reason.
    pub control_rejected: control::Rejected,
}

impl Shared {
    pub fn stall_threshold_ms(&self) -> u64 {
        self.stall_threshold_ns.load(Ordering::Relaxed) / 1_000_000
    }

    pub fn stall_sample_interval_ms(&self) -> u64 {
        self.stall_sample_interval_ns.load(Ordering::Relaxed) / 1_000_000
    }
}

/// The entry point the daemon calls.
#[derive(Debug)]
pub struct Observe;

impl Observe {
    /// Starts the watchdog, the metrics endpoint and the control server.
    ///
    /// # Errors
    /// A metrics address that cannot be bound, a control socket path that cannot be used or
    /// where another loopd answers, or a thread that cannot be started. Nothing keeps running
    /// after an error.
    pub fn start(options: ObserveOptions) -> Result<ObserveHandle, ObserveError> {
        let shared = Arc::new(Shared {
            loops: options.input.loops,
            pool: options.input.pool,
            services: options.input.services,
            config: options.config,
            host: options.host,
            stalls: StallBook::default(),
            rates: Rates::default(),
            stall_threshold_ns: AtomicU64::new(duration_ns(options.stall_threshold).max(1)),
            stall_sample_interval_ns: AtomicU64::new(sample_interval_ns(
                options.stall_sample_interval,
            )),
            health_threshold_ns: duration_ns(options.health_threshold),
            started_ns: now_ns(),
            metrics_addr: OnceLock::new(),
            control_path: OnceLock::new(),
            last_detection_ns: AtomicU64::new(u64::MAX),
            metrics_shed: Arc::default(),
            control_rejected: control::Rejected::default(),
        });
        for lp in &shared.loops {
            shared.stalls.add_loop(lp.index());
        }
        let mut handle = ObserveHandle {
            shared: shared.clone(),
            watchdog: None,
            metrics: None,
            control: None,
        };
        if let Some(addr) = options.metrics_addr {
            handle.metrics = Some(metrics::MetricsServer::start(shared.clone(), addr)?);
        }
        if options.control {
            handle.control = Some(control::ControlServer::start(
                shared.clone(),
                options.control_path,
                options.control_name.as_deref(),
            )?);
        }
        handle.watchdog = Some(watchdog::Watchdog::start(shared)?);
        Ok(handle)
    }
}

/// The running observers. Dropping it shuts them down (as [`ObserveHandle::shutdown`]).
pub struct ObserveHandle {
    shared: Arc<Shared>,
    watchdog: Option<watchdog::Watchdog>,
    metrics: Option<metrics::MetricsServer>,
    control: Option<control::ControlServer>,
}

impl std::fmt::Debug for ObserveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveHandle")
            .field("metrics_addr", &self.metrics_addr())
            .field("control_path", &self.control_path())
            .finish_non_exhaustive()
    }
}

impl ObserveHandle {
    /// The address `/metrics` is bound to (port 0 resolved), if serving.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.shared.metrics_addr.get().copied()
    }

    /// The control socket path, if serving.
    pub fn control_path(&self) -> Option<&std::path::Path> {
        self.shared.control_path.get().map(PathBuf::as_path)
    }

    /// The stall threshold in force.
    pub fn stall_threshold(&self) -> Duration {
        Duration::from_nanos(self.shared.stall_threshold_ns.load(Ordering::Relaxed))
    }

    /// Changes the stall threshold (as `config.set stall_threshold_ms` does), e.g. on reload.
    pub fn set_stall_threshold(&self, threshold: Duration) {
        self.shared
            .stall_threshold_ns
            .store(duration_ns(threshold).max(1), Ordering::Relaxed);
    }

    /// The stall sampling interval in force.
    pub fn stall_sample_interval(&self) -> Duration {
        Duration::from_nanos(self.shared.stall_sample_interval_ns.load(Ordering::Relaxed))
    }

    /// Changes the stall sampling interval (as `config.set stall_sample_interval_ms` does),
    /// clamped to 1 ms..=1 s.
    pub fn set_stall_sample_interval(&self, interval: Duration) {
        self.shared
            .stall_sample_interval_ns
            .store(sample_interval_ns(interval), Ordering::Relaxed);
    }

    /// How long past the threshold the watchdog saw the last stall it opened (its detection
    /// latency); `None` before the first stall.
    pub fn last_stall_detection_latency(&self) -> Option<Duration> {
        match self.shared.last_detection_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The stalls in progress and the recent ones, as the `stalls` method answers.
    pub fn stalls(&self) -> proto::StallsResult {
        convert::stalls(&self.shared, &proto::methods::StallsParams::default()).unwrap_or_default()
    }

    /// The daemon at a glance, as the `status` method answers.
    pub fn status(&self) -> proto::Status {
        convert::status(&self.shared)
    }

    /// Stops every thread and removes the control socket file. Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        if let Some(m) = self.metrics.take() {
            m.shutdown();
        }
        if let Some(w) = self.watchdog.take() {
            w.shutdown();
        }
    }
}

impl Drop for ObserveHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A sampling interval in nanoseconds, within 1 ms..=[`proto::methods::MAX_STALL_SAMPLE_INTERVAL_MS`].
fn sample_interval_ns(d: Duration) -> u64 {
    duration_ns(d).clamp(
        1_000_000,
        proto::methods::MAX_STALL_SAMPLE_INTERVAL_MS * 1_000_000,
    )
}
