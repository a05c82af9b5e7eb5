//! loopd's command line: flags, environment, logging — what the `loopd` binary does, for any
//! program built with [`crate::Daemon::builder`] (feature `cli`, on by default).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter};

use crate::config::{parse_metrics_addr, parse_millis, threadpool_size_from_env, Config, Key};
use crate::service::ServiceKinds;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// loopd — an observable event-loop daemon.
///
/// With no arguments it serves the sequence protocol on 127.0.0.1:7070, the primality
/// service on 127.0.0.1:7071 and static files of the current directory on 127.0.0.1:7080,
/// metrics on http://127.0.0.1:9464/metrics and the control socket for `loopctl` and
/// `loop-top`. SIGTERM/SIGINT drain and exit; SIGHUP reloads the config file.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML config file ([[service]] entries replace the default services).
    #[arg(long, env = "LOOPD_CONFIG")]
    config: Option<PathBuf>,
    /// Metrics endpoint address (`off` disables it). Default 127.0.0.1:9464.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Control socket path. Default: $LOOPD_SOCKET, else $XDG_RUNTIME_DIR/loopd/control.sock,
    /// else /tmp/loopd-<uid>/control.sock.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Thread-pool size, 1..=1024 (default $LOOPD_THREADPOOL_SIZE, else the config file's
    /// `threadpool_size`, else 4).
    #[arg(long)]
    threadpool_size: Option<usize>,
    /// Event loops, one thread each, sharing the services' ports (default 1).
    #[arg(long)]
    loops: Option<usize>,
    /// Stall threshold: a callback running longer is reported, e.g. `100ms`, `1s`, `250`.
    #[arg(long, value_parser = parse_millis)]
    stall_threshold: Option<u64>,
    /// Log filter (env-filter syntax, e.g. `info,loopd=debug`). Default $LOOPD_LOG, else
    /// $RUST_LOG, else `info`.
    #[arg(long)]
    log: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// The file over the defaults, then the environment and the flags over the file (they stay
/// in force across reloads: [`Config::fixed`]).
fn build_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(addr) = &cli.metrics_addr {
        config.metrics_addr = parse_metrics_addr(addr)?;
        config.fixed.insert(Key::MetricsAddr);
    }
    if let Some(path) = &cli.control {
        config.control = Some(path.clone());
        config.fixed.insert(Key::Control);
    }
    let threadpool_size = match cli.threadpool_size {
        Some(n) => Some(n),
        None => threadpool_size_from_env()?,
    };
    if let Some(n) = threadpool_size {
        config.threadpool_size = n;
        config.fixed.insert(Key::ThreadpoolSize);
    }
    if let Some(n) = cli.loops {
        config.loops = n;
        config.fixed.insert(Key::Loops);
    }
    if let Some(ms) = cli.stall_threshold {
        config.stall_threshold_ms = ms;
        config.fixed.insert(Key::StallThresholdMs);
    }
    if let Some(log) = cli
        .log
        .clone()
        .or_else(|| std::env::var("LOOPD_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok())
    {
        config.log = log;
        config.fixed.insert(Key::Log);
    }
    config.validate()?;
    Ok(config)
}

fn run(kinds: ServiceKinds) -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: print and leave successfully.
            e.exit()
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            anyhow::bail!("{first} (see `loopd --help`)");
        }
    };
    let config = build_config(&cli)?;
    let filter = EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("bad log filter `{}`: {e}", config.log))?;
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::registry().with(filter).with(fmt).init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(fmt.json())
            .init(),
    }
    crate::panics::install_hook();
    let set_filter: crate::daemon::LogFilterSetter = Box::new(move |spec: &str| {
        let f = EnvFilter::try_new(spec).map_err(|e| format!("bad log filter `{spec}`: {e}"))?;
        handle.reload(f).map_err(|e| e.to_string())?;
        tracing::info!(filter = spec, "log filter changed");
        Ok(())
    });
    Ok(crate::daemon::run_with_kinds(config, kinds, set_filter)?)
}

/// Parses the process's flags and environment as `loopd` does, sets up logging, runs the daemon
/// with `kinds`; exit code 0 after a clean shutdown, 1 with one line on stderr otherwise.
pub fn main_with_kinds(kinds: ServiceKinds) -> ExitCode {
    match run(kinds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the cause; the chain joined, no backtrace.
            eprintln!("loopd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
