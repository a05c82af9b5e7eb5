//! The daemon: one loop hosting the configured services, the observers serving what it
//! records, and signal handling — SIGTERM/SIGINT drain and exit 0, SIGHUP reloads.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::engine::{Handle, Loop, RunMode, Signal, ThreadPool, Timer};
use crate::observe::ServiceRegistry;
use crate::observe::{ConfigControl, Observe, ObserveOptions};
use crate::services::{self, RunningService};

/// How long in-flight work may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// `/healthz` turns 503 while a stall longer than this is in progress.
pub const HEALTH_THRESHOLD: Duration = Duration::from_secs(1);

/// Applies `log_filter` changes from `config.set`.
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The daemon's side of `config.get` / `config.set`.
struct DaemonConfig {
    current: Mutex<Config>,
    set_log_filter: LogFilterSetter,
}

impl ConfigControl for DaemonConfig {
    fn get(&self) -> proto::ConfigResult {
        let c = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        proto::ConfigResult {
            log_filter: c.log.clone(),
            ..Default::default()
        }
    }

    fn set(&self, params: &proto::methods::ConfigSetParams) -> Result<(), String> {
        if let Some(filter) = &params.log_filter {
            (self.set_log_filter)(filter)?;
            self.current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .log = filter.clone();
        }
        Ok(())
    }
}

struct State {
    config: Config,
    services: Vec<RunningService>,
    registry: ServiceRegistry,
    draining: bool,
}

/// Runs the daemon until a shutdown signal; returns when everything is closed.
///
/// # Errors
/// Startup failures (ports in use, socket path taken, …), each naming its cause.
pub fn run(config: Config, set_log_filter: LogFilterSetter) -> anyhow::Result<()> {
    let pool = ThreadPool::global().clone();
    pool.set_size(config.threadpool_size);
    let mut lp = Loop::new().context("cannot create the event loop")?;
    let registry = ServiceRegistry::default();

    let mut running = Vec::new();
    let names = services::names(&config.services);
    for (svc, name) in config.services.iter().zip(names) {
        running.push(services::start(&mut lp, svc, name, &registry)?);
    }

    let control = Arc::new(DaemonConfig {
        current: Mutex::new(config.clone()),
        set_log_filter,
    });
    let mut observe = Observe::start(ObserveOptions {
        metrics_addr: config.metrics_addr,
        control_path: config.control.clone(),
        control: true,
        stall_threshold: Duration::from_millis(config.stall_threshold_ms),
        health_threshold: HEALTH_THRESHOLD,
        loops: vec![lp.observer()],
        pool: pool.clone(),
        services: registry.clone(),
        config: control,
    })?;
    if let Some(addr) = observe.metrics_addr() {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics endpoint bound to a non-loopback address");
        }
        tracing::info!(%addr, "metrics endpoint listening");
    }
    if let Some(path) = observe.control_path() {
        tracing::info!(path = %path.display(), "control socket listening");
    }
    for s in &running {
        if !s.addr.ip().is_loopback() {
            tracing::warn!(service = %s.name, addr = %s.addr, "service bound to a non-loopback address");
        }
    }

    let state = Rc::new(RefCell::new(State {
        config,
        services: running,
        registry,
        draining: false,
    }));
    let mut signals = Vec::new();
    for signum in [libc::SIGTERM, libc::SIGINT] {
        let sig = Signal::new(&mut lp);
        let st = state.clone();
        sig.start(&mut lp, signum, move |lp, _, signum| {
            begin_shutdown(lp, &st, signum)
        })
        .context("cannot watch shutdown signals")?;
        sig.unref(&mut lp);
        signals.push(sig);
    }
    let hup = Signal::new(&mut lp);
    let st = state.clone();
    hup.start(&mut lp, libc::SIGHUP, move |lp, _, _| reload(lp, &st))
        .context("cannot watch SIGHUP")?;
    hup.unref(&mut lp);

    tracing::info!(pid = std::process::id(), "loopd running");
    lp.run(RunMode::Default);
    observe.shutdown();
    tracing::info!("loopd stopped");
    Ok(())
}

/// SIGTERM/SIGINT: stop accepting, let in-flight work finish (bounded), close everything.
/// A second signal closes everything at once.
fn begin_shutdown(lp: &mut Loop, state: &Rc<RefCell<State>>, signum: i32) {
    let mut st = state.borrow_mut();
    if st.draining {
        tracing::warn!(signum, "second shutdown signal: closing everything now");
        lp.close_all();
        return;
    }
    st.draining = true;
    tracing::info!(
        signum,
        "shutting down: no new connections; finishing in-flight work"
    );
    for s in &st.services {
        s.listener.close(lp);
    }
    drop(st);
    let deadline = lp.now() + SHUTDOWN_GRACE;
    let check = Timer::new(lp);
    check.set_label(lp, "shutdown drain check");
    let started = check.start(
        lp,
        Duration::ZERO,
        Duration::from_millis(20),
        move |lp, _| {
            if lp.requests_in_flight() == 0 {
                tracing::info!("in-flight work finished; closing connections");
                lp.close_all();
            } else if lp.now() >= deadline {
                tracing::warn!(
                    in_flight = lp.requests_in_flight(),
                    "shutdown grace of {SHUTDOWN_GRACE:?} expired; cutting in-flight work"
                );
                lp.close_all();
            }
        },
    );
    if started.is_err() {
        lp.close_all();
    }
}

/// SIGHUP: re-reads the config file; services added or removed, the others untouched.
fn reload(lp: &mut Loop, state: &Rc<RefCell<State>>) {
    let mut st = state.borrow_mut();
    if st.draining {
        return;
    }
    let Some(path) = st.config.source.clone() else {
        tracing::info!("SIGHUP: no config file to reload (started without --config)");
        return;
    };
    let new = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: config not reloaded; keeping the running one");
            return;
        }
    };
    let registry = st.registry.clone();
    let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut st.services)
        .into_iter()
        .partition(|s| new.services.contains(&s.config));
    for s in gone {
        tracing::info!(service = %s.name, addr = %s.addr, "SIGHUP: service removed");
        s.listener.close(lp);
        registry.unregister(&s.name);
    }
    st.services = keep;
    let names = services::names(&new.services);
    for (svc, name) in new.services.iter().zip(names) {
        if st.services.iter().any(|s| &s.config == svc) {
            continue;
        }
        let name = if st.services.iter().any(|s| s.name == name) {
            format!("{name}@{}", svc.bind)
        } else {
            name
        };
        match services::start(lp, svc, name, &registry) {
            Ok(s) => st.services.push(s),
            Err(e) => tracing::error!(error = %e, "SIGHUP: service not started"),
        }
    }
    st.config = new;
    tracing::info!(services = st.services.len(), "SIGHUP: config reloaded");
}
