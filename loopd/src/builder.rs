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
