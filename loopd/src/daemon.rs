//! The daemon: N loops (one per thread, `--loops`) hosting the configured services on shared
//! ports (`SO_REUSEPORT`), the observers serving what they record, and signal handling —
//! SIGTERM/SIGINT drain and exit 0, SIGHUP reloads.
//!
//! [`run`] reads as its steps: start the services on loop 0 (which binds the ports), spawn
//! the other loops from loop 0's plans (`loops.rs`), start observing, watch the signals, run,
//! then wait for the other loops. Loop 0 runs on the main thread and owns the signal handles;
//! it tells the other loops what to do through a command queue and an async handle per loop;
//! SIGHUP is `reload.rs`.

mod config_control;
mod loops;
mod reload;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopd_engine::{EngineError, Handle, Loop, LoopOptions, RunMode, Signal, ThreadPool};
use loopd_observe::ServiceRegistry;
use loopd_observe::{Observe, ObserveError, ObserveHandle, ObserveInput, ObserveOptions};

use crate::config::Config;
use crate::service::{Service, ServiceKinds};
use crate::services;
use config_control::DaemonConfig;
use loops::{begin_shutdown, spawn_loop, Command, LoopState, LoopThread, Peer, ServicePlan};
use reload::{reload, Leader};

/// How long in-flight work may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// `/healthz` turns 503 while a stall longer than this is in progress.
pub const HEALTH_THRESHOLD: Duration = Duration::from_secs(1);

/// Applies `log_filter` changes from `config.set`.
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Why the daemon did not start; each message is one line naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The event loop (its poller) could not be created.
    #[error("cannot create the event loop: {0}")]
    Loop(std::io::Error),
    /// A `[[service]]` entry its kind refuses (unknown kind, bad key, a factory that failed).
    #[error("bad config: service {index} ({kind}): {message}")]
    ServiceConfig {
        /// 1-based position in the config.
        index: usize,
        /// The entry's kind.
        kind: String,
        /// What the kind's factory said.
        message: String,
    },
    /// A service did not start (port in use, …).
    #[error(transparent)]
    Service(#[from] services::StartError),
    /// A loop thread could not be started.
    #[error("cannot start a loop thread: {0}")]
    Thread(std::io::Error),
    /// Another loop did not start its services.
    #[error("{0}")]
    LoopStart(String),
    /// A configuration value (file, flag or environment) is refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The metrics endpoint, the control socket or the watchdog did not start.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// The shutdown or reload signals cannot be watched.
    #[error("cannot watch signals: {0}")]
    Signals(EngineError),
}

/// Runs the daemon with the built-in service kinds until a shutdown signal; returns when
/// every loop has closed.
///
/// # Errors
/// Startup failures (ports in use, socket path taken, …), each naming its cause; nothing
/// keeps running after an error.
pub fn run(config: Config, set_log_filter: LogFilterSetter) -> Result<(), DaemonError> {
    run_with_kinds(config, ServiceKinds::builtin(), set_log_filter)
}

/// Builds every entry's service with its kind's factory, before anything is bound.
///
/// # Errors
/// The first entry its kind refuses.
pub fn prepare_services(
    kinds: &ServiceKinds,
    entries: &[crate::config::ServiceConfig],
) -> Result<Vec<Arc<dyn Service>>, DaemonError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            kinds
                .prepare(&entry.kind, &entry.options)
                .and_then(|service| {
                    if entry.bind.is_none() && service.needs_listener() {
                        Err("needs `bind` (the address of its TCP listener)".to_string())
                    } else {
                        Ok(service)
                    }
                })
                .map_err(|message| DaemonError::ServiceConfig {
                    index: i + 1,
                    kind: entry.kind.clone(),
                    message,
                })
        })
        .collect()
}

/// [`run`] with the service kinds in `kinds` (the built-ins and a user's own).
///
/// # Errors
/// As [`run`], and entries their kind refuses.
pub fn run_with_kinds(
    config: Config,
    kinds: ServiceKinds,
    set_log_filter: LogFilterSetter,
) -> Result<(), DaemonError> {
    let prepared = prepare_services(&kinds, &config.services)?;
    let pool = ThreadPool::global().clone();
    pool.set_size(config.threadpool_size);
    let loops = config.loops.max(1);
    let mut lp = Loop::with_options(LoopOptions {
        index: Some(0),
        ..LoopOptions::default()
    })
    .map_err(DaemonError::Loop)?;
    let registry = ServiceRegistry::default();

    // Loop 0 binds first, so a port 0 is resolved once and shared by every loop.
    let mut state0 = LoopState {
        services: Vec::new(),
        draining: false,
        shared_by_loops: loops > 1,
    };
    let mut plans = Vec::new();
    let names = services::names(&config.services);
    for ((svc, service), name) in config.services.iter().zip(prepared).zip(names) {
        plans.push(state0.lead(&mut lp, svc, service, name, &registry)?);
    }
    let (observers, peers, threads) = spawn_other_loops(&mut lp, loops, &plans)?;

    let control = Arc::new(DaemonConfig {
        current: Mutex::new(config.clone()),
        set_log_filter,
    });
    let observe = Observe::start(ObserveOptions {
        metrics_addr: config.metrics_addr,
        control_path: config.control.clone(),
        control_name: None,
        control: true,
        stall_threshold: Duration::from_millis(config.stall_threshold_ms),
        stall_sample_interval: Duration::from_millis(config.stall_sample_interval_ms),
        health_threshold: HEALTH_THRESHOLD,
        input: ObserveInput::from_engine(observers, pool.clone(), registry.clone()),
        config: control.clone(),
        ..ObserveOptions::default()
    });
    let observe = match observe {
        Ok(o) => o,
        Err(e) => {
            stop_other_loops(&peers, threads);
            return Err(e.into());
        }
    };
    log_listeners(&observe, &state0);

    let state = Rc::new(RefCell::new(state0));
    let leader = Rc::new(RefCell::new(Leader {
        config,
        kinds,
        registry,
        peers,
        control,
        pool,
        observe,
        noted: Vec::new(),
    }));
    if let Err(e) = watch_signals(&mut lp, &state, &leader) {
        stop_other_loops(&leader.borrow().peers, threads);
        return Err(e);
    }

    tracing::info!(pid = std::process::id(), loops, "loopd running");
    lp.run(RunMode::Default);
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a loop thread panicked");
        }
    }
    leader.borrow_mut().observe.shutdown();
    tracing::info!("loopd stopped");
    Ok(())
}

type OtherLoops = (
    Vec<Arc<loopd_engine::instrument::LoopObserver>>,
    Vec<Peer>,
    Vec<LoopThread>,
);

/// Loops 1.. on their own threads, from loop 0's plans; with loop 0's observer first. On an
/// error the loops already started are stopped and loop 0's services closed.
fn spawn_other_loops(
    lp: &mut Loop,
    loops: usize,
    plans: &[ServicePlan],
) -> Result<OtherLoops, DaemonError> {
    let (mut observers, mut peers, mut threads) = (vec![lp.observer()], Vec::new(), Vec::new());
    for index in 1..loops {
        match spawn_loop(index, plans.to_vec(), true) {
            Ok((observer, peer, thread)) => {
                observers.push(observer);
                peers.push(peer);
                threads.push(thread);
            }
            Err(e) => {
                stop_other_loops(&peers, threads);
                return Err(e);
            }
        }
    }
    Ok((observers, peers, threads))
}

fn stop_other_loops(peers: &[Peer], threads: Vec<LoopThread>) {
    for p in peers {
        p.send(Command::Shutdown);
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Where everything listens, at INFO; a non-loopback address at WARN.
fn log_listeners(observe: &ObserveHandle, state0: &LoopState) {
    if let Some(addr) = observe.metrics_addr() {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics endpoint bound to a non-loopback address");
        }
        tracing::info!(%addr, "metrics endpoint listening");
    }
    if let Some(path) = observe.control_path() {
        tracing::info!(path = %path.display(), "control socket listening");
    }
    for s in &state0.services {
        if let Some(addr) = s.addr.filter(|a| !a.ip().is_loopback()) {
            tracing::warn!(service = %s.name, %addr, "service bound to a non-loopback address");
        }
    }
}

/// SIGTERM/SIGINT drain every loop; SIGHUP reloads. The handles are unref'd: they do not keep
/// loop 0 alive on their own.
fn watch_signals(
    lp: &mut Loop,
    state: &Rc<RefCell<LoopState>>,
    leader: &Rc<RefCell<Leader>>,
) -> Result<(), DaemonError> {
    for signum in [libc::SIGTERM, libc::SIGINT] {
        let sig = Signal::new(lp);
        let (st, ld) = (state.clone(), leader.clone());
        sig.start(lp, signum, move |lp, _, signum| {
            tracing::info!(signum, "shutdown signal");
            for p in &ld.borrow().peers {
                p.send(Command::Shutdown);
            }
            begin_shutdown(lp, &st);
        })
        .map_err(DaemonError::Signals)?;
        sig.unref(lp);
    }
    let hup = Signal::new(lp);
    let (st, ld) = (state.clone(), leader.clone());
    hup.start(lp, libc::SIGHUP, move |lp, _, _| reload(lp, &st, &ld))
        .map_err(DaemonError::Signals)?;
    hup.unref(lp);
    Ok(())
}
