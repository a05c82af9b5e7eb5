//! [`Daemon::builder`]: loopd as a library — register your own service kinds, take the
//! configuration from loopd's flags or from code, and run with everything the `loopd` binary
//! has (metrics endpoint, control socket, stall watchdog, flight recorder, signals, reload,
//! `--loops`).

use std::sync::Arc;

use crate::config::Config;
use crate::daemon::{self, DaemonError, LogFilterSetter};
use crate::service::{Service, ServiceKinds, ServiceOptions};

/// The daemon, as a library.
///
/// # Examples
///
/// A `main` that adds a service kind `upper` to loopd's own (see [`crate::service`] for the
/// `Upper` service itself) and takes loopd's flags, environment variables and config file:
///
/// ```no_run
/// # use std::sync::Arc;
/// # use loopd::service::{Service, ServiceContext, ServiceError};
/// # struct Upper;
/// # impl Service for Upper {
/// #     fn start(&self, _ctx: ServiceContext<'_>) -> Result<(), ServiceError> { Ok(()) }
/// # }
/// fn main() -> std::process::ExitCode {
///     loopd::Daemon::builder()
///         .service("upper", |_options| Ok(Arc::new(Upper)))
///         .main()
/// }
/// ```
#[derive(Debug)]
pub struct Daemon;

impl Daemon {
    /// A builder with the built-in service kinds (`seq`, `prime`, `http`).
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            kinds: ServiceKinds::builtin(),
        }
    }
}

/// Registers service kinds, then runs (see [`Daemon`]).
#[derive(Debug)]
pub struct DaemonBuilder {
    kinds: ServiceKinds,
}

impl DaemonBuilder {
    /// Registers the service kind `name` (`[[service]] kind = "NAME"` in the config); the
    /// factory gets the entry's own keys (all but `kind` and `bind`) and returns the service,
    /// or a message naming the bad key.
    pub fn service(
        mut self,
        name: impl Into<String>,
        factory: impl Fn(&ServiceOptions) -> Result<Arc<dyn Service>, String> + Send + Sync + 'static,
    ) -> DaemonBuilder {
        self.kinds.register(name, factory);
        self
    }

    /// The kinds registered so far.
    pub fn kinds(&self) -> &ServiceKinds {
        &self.kinds
    }

    /// Runs with `config` built in code (no flags read; logging is the caller's). Returns when
    /// a shutdown signal has drained every loop.
    ///
    /// # Errors
    /// Startup failures, each one line naming its cause.
    pub fn run(self, config: Config, set_log_filter: LogFilterSetter) -> Result<(), DaemonError> {
        daemon::run_with_kinds(config, self.kinds, set_log_filter)
    }

    /// What the `loopd` binary's `main` is: loopd's flags, environment variables and config
    /// file, logging set up, the daemon run; exit code 0 after a clean shutdown, 1 with one
    /// line on stderr otherwise (2 for `--help`-style usage errors is clap's own).
    #[cfg(feature = "cli")]
    pub fn main(self) -> std::process::ExitCode {
        crate::cli::main_with_kinds(self.kinds)
    }
}

pub use crate::observe::env::{METRICS_ADDR_ENV, STALL_THRESHOLD_ENV};

/// Starts the observability side for loops a program runs itself: the control socket
/// (`$LOOPD_SOCKET`, else `<program>-<pid>.sock` beside the daemon's `control.sock`), the
/// stall watchdog (`$LOOPD_STALL_THRESHOLD`, default 100 ms) and, when `$LOOPD_METRICS_ADDR`
/// is set, the metrics endpoint — so `loopctl`, `loop-top` and Prometheus see them as they see
/// the daemon. Keep the returned handle: dropping it (or `shutdown()`) stops observing and
/// removes the socket.
///
/// # Examples
///
/// ```no_run
/// use loopd::engine::{Loop, RunMode};
///
/// let mut lp = Loop::new()?;
/// let _observed = loopd::observe_loops(&[&lp])?;
/// // … start timers, listeners …
/// lp.run(RunMode::Default);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A bad environment value, a metrics address or socket path that cannot be used, a thread
/// that cannot be started.
pub fn observe_loops(
    loops: &[&crate::engine::Loop],
) -> Result<crate::observe::ObserveHandle, DaemonError> {
    use crate::config::ConfigError;
    use crate::observe::{Observe, ObserveInput, ServiceRegistry};

    let mut options = crate::observe::env::program_options("program")
        .map_err(|e| ConfigError::Environment(e.to_string()))?;
    let pool = loops.first().map_or_else(
        || crate::engine::ThreadPool::global().clone(),
        |lp| lp.pool().clone(),
    );
    options.input = ObserveInput::from_engine(
        loops.iter().map(|lp| lp.observer()).collect(),
        pool,
        ServiceRegistry::default(),
    );
    let handle = Observe::start(options)?;
    if let Some(path) = handle.control_path() {
        tracing::info!(path = %path.display(), "control socket listening");
    }
    if let Some(addr) = handle.metrics_addr() {
        tracing::info!(%addr, "metrics endpoint listening");
    }
    Ok(handle)
}
