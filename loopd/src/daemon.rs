//! The daemon: N loops (one per thread, `--loops`) hosting the configured services on shared
//! ports (`SO_REUSEPORT`), the observers serving what they record, and signal handling —
//! SIGTERM/SIGINT drain and exit 0, SIGHUP reloads.
//!
//! Loop 0 runs on the main thread and owns the signal handles; it tells the other loops what
//! to do through a command queue and an async handle per loop.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, Key, ServiceConfig};
use crate::engine::{
    Async, AsyncSender, Handle, Loop, LoopObserver, LoopOptions, RunMode, Signal, ThreadPool, Timer,
};
use crate::observe::{
    ConfigControl, Observe, ObserveHandle, ObserveOptions, ServiceCounters, ServiceRegistry,
};
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

impl DaemonConfig {
    /// The log filter in force.
    fn log(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .clone()
    }

    /// Records the log filter now in force (after `set_log_filter` accepted it).
    fn set_log(&self, filter: &str) {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log = filter.to_string();
    }
}

impl ConfigControl for DaemonConfig {
    fn get(&self) -> proto::ConfigResult {
        let c = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let services = c
            .services
            .iter()
            .zip(services::names(&c.services))
            .map(|(s, name)| proto::ServiceConfig {
                name,
                kind: services::proto_kind(s.kind),
                bind: s.bind.to_string(),
                mode: s.mode.map(|m| {
                    match m {
                        crate::config::PrimeMode::Pool => "pool",
                        crate::config::PrimeMode::Inline => "inline",
                    }
                    .to_string()
                }),
                root: s.root.as_ref().map(|r| r.display().to_string()),
            })
            .collect();
        proto::ConfigResult {
            log_filter: c.log.clone(),
            config_file: c.source.as_ref().map(|p| p.display().to_string()),
            services,
            ..Default::default()
        }
    }

    fn set(&self, params: &proto::methods::ConfigSetParams) -> Result<(), String> {
        if let Some(filter) = &params.log_filter {
            (self.set_log_filter)(filter)?;
            self.set_log(filter);
        }
        Ok(())
    }
}

/// A service as every loop starts it: the bound address (port 0 resolved by loop 0) and the
/// counters all instances share.
#[derive(Clone)]
struct ServicePlan {
    config: ServiceConfig,
    bind: std::net::SocketAddr,
    name: String,
    counters: Arc<ServiceCounters>,
}

/// What loop 0 tells the other loops.
enum Command {
    Shutdown,
    Stop(Vec<String>),
    Start(Vec<ServicePlan>),
}

/// How loop 0 reaches another loop.
struct Peer {
    queue: Arc<Mutex<Vec<Command>>>,
    wake: AsyncSender,
}

impl Peer {
    fn send(&self, c: Command) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
        self.wake.send();
    }
}

/// One loop's services and shutdown state.
struct LoopState {
    services: Vec<RunningService>,
    draining: bool,
    /// Several loops share the services' ports (loop 0 leads, the others join).
    shared_by_loops: bool,
}

impl LoopState {
    fn start(&mut self, lp: &mut Loop, plan: &ServicePlan) -> Result<(), services::StartError> {
        let mut config = plan.config.clone();
        config.bind = plan.bind;
        let mut running = services::start_with(
            lp,
            &config,
            plan.name.clone(),
            plan.counters.clone(),
            services::PortUse::Join,
        )?;
        running.config = plan.config.clone();
        self.services.push(running);
        Ok(())
    }

    fn stop(&mut self, lp: &mut Loop, names: &[String]) {
        self.services.retain(|s| {
            let gone = names.contains(&s.name);
            if gone {
                s.listener.close(lp);
            }
            !gone
        });
    }
}

/// Loop 0's extra state: the config, the registry and the other loops.
struct Leader {
    /// The configuration in force (services, and the top-level keys; the live ones may also
    /// have been changed by `config.set`, so their value in force is read where it lives).
    config: Config,
    registry: ServiceRegistry,
    peers: Vec<Peer>,
    /// What `config.get` reports; updated on reload.
    control: Arc<DaemonConfig>,
    pool: Arc<ThreadPool>,
    observe: ObserveHandle,
    /// Reload notes already given (key, the file's value): a key that needs a restart, or
    /// that the command line overrides, is reported once per value, not on every SIGHUP.
    noted: Vec<(Key, String)>,
}

impl Leader {
    /// SIGHUP, top-level keys. A key the file sets decides, unless the command line or the
    /// environment fixed it (they win at startup, so they win on reload too); a key the file
    /// leaves out keeps its value in force. `threadpool_size`, `stall_threshold_ms` and `log`
    /// are applied live, as `config.set` does; `metrics_addr`, `control` and `loops` need a
    /// restart, which is said (once per new value) only when the file changed them.
    fn reload_settings(&mut self, new: &Config) {
        let pool_now = self.pool.size();
        if self.decides(new, Key::ThreadpoolSize, new.threadpool_size, pool_now) {
            self.pool.set_size(new.threadpool_size);
            tracing::info!(
                from = pool_now,
                to = new.threadpool_size,
                "SIGHUP: threadpool_size changed"
            );
        }
        let stall_now =
            u64::try_from(self.observe.stall_threshold().as_millis()).unwrap_or(u64::MAX);
        let stall_new = new.stall_threshold_ms;
        if self.decides(new, Key::StallThresholdMs, stall_new, stall_now) {
            self.observe
                .set_stall_threshold(Duration::from_millis(stall_new));
            tracing::info!(
                from = stall_now,
                to = stall_new,
                "SIGHUP: stall_threshold_ms changed"
            );
        }
        let log_now = self.control.log();
        if self.decides(new, Key::Log, new.log.clone(), log_now.clone()) {
            match (self.control.set_log_filter)(&new.log) {
                Ok(()) => {
                    self.control.set_log(&new.log);
                    tracing::info!(from = %log_now, to = %new.log, "SIGHUP: log filter changed");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: log filter not changed; keeping `{log_now}`"
                ),
            }
        }
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        let metrics_now = show(self.config.metrics_addr);
        if self.decides(
            new,
            Key::MetricsAddr,
            show(new.metrics_addr),
            metrics_now.clone(),
        ) {
            self.restart_needed(Key::MetricsAddr, show(new.metrics_addr), metrics_now);
        }
        // The default path rule in force is compared by the path it gave.
        let show = |p: Option<&Path>| p.map_or_else(String::new, |p| p.display().to_string());
        let control_now = show(
            self.config
                .control
                .as_deref()
                .or_else(|| self.observe.control_path()),
        );
        let control_new = show(new.control.as_deref());
        if self.decides(new, Key::Control, control_new.clone(), control_now.clone()) {
            self.restart_needed(Key::Control, control_new, control_now);
        }
        let loops_now = self.config.loops;
        if self.decides(new, Key::Loops, new.loops, loops_now) {
            self.restart_needed(Key::Loops, new.loops.to_string(), loops_now.to_string());
        }
    }

    /// Whether the reloaded file changes `key` from `now` to `new` (see
    /// [`Leader::reload_settings`]); says so, once, when the command line overrides it.
    fn decides<T: PartialEq + std::fmt::Display>(
        &mut self,
        new_config: &Config,
        key: Key,
        new: T,
        now: T,
    ) -> bool {
        if !new_config.in_file.contains(key) || new == now {
            self.noted.retain(|(k, _)| *k != key);
            return false;
        }
        if self.config.fixed.contains(key) {
            if self.note(key, new.to_string()) {
                tracing::warn!(
                    "SIGHUP: `{}` in the file ({new}) is overridden by the command line or the \
                     environment; keeping {now}",
                    key.name()
                );
            }
            return false;
        }
        true
    }

    fn restart_needed(&mut self, key: Key, new: String, now: String) {
        if self.note(key, new.clone()) {
            tracing::warn!(
                "SIGHUP: `{}` changes need a restart; keeping {now} (the file says {new})",
                key.name()
            );
        }
    }

    /// Records a note about `key`; false when the same one was given already.
    fn note(&mut self, key: Key, value: String) -> bool {
        if self.noted.iter().any(|(k, v)| *k == key && *v == value) {
            return false;
        }
        self.noted.retain(|(k, _)| *k != key);
        self.noted.push((key, value));
        true
    }
}

/// Runs the daemon until a shutdown signal; returns when every loop has closed.
///
/// # Errors
/// Startup failures (ports in use, socket path taken, …), each naming its cause.
pub fn run(config: Config, set_log_filter: LogFilterSetter) -> anyhow::Result<()> {
    let pool = ThreadPool::global().clone();
    pool.set_size(config.threadpool_size);
    let loops = config.loops.max(1);
    let shared_by_loops = loops > 1;
    let mut lp = Loop::with_options(LoopOptions {
        index: Some(0),
        ..LoopOptions::default()
    })
    .context("cannot create the event loop")?;
    let registry = ServiceRegistry::default();

    // Loop 0 binds first, so a port 0 is resolved once and shared by every loop.
    let mut state0 = LoopState {
        services: Vec::new(),
        draining: false,
        shared_by_loops,
    };
    let mut plans = Vec::new();
    let names = services::names(&config.services);
    for (svc, name) in config.services.iter().zip(names) {
        let running = services::start(&mut lp, svc, name, &registry, shared_by_loops)?;
        plans.push(ServicePlan {
            config: svc.clone(),
            bind: running.addr,
            name: running.name.clone(),
            counters: running.counters.clone(),
        });
        state0.services.push(running);
    }

    let mut observers = vec![lp.observer()];
    let mut peers = Vec::new();
    let mut threads = Vec::new();
    for index in 1..loops {
        match spawn_loop(index, plans.clone(), shared_by_loops) {
            Ok((observer, peer, thread)) => {
                observers.push(observer);
                peers.push(peer);
                threads.push(thread);
            }
            Err(e) => {
                for p in &peers {
                    p.send(Command::Shutdown);
                }
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }

    let control = Arc::new(DaemonConfig {
        current: Mutex::new(config.clone()),
        set_log_filter,
    });
    let observe = Observe::start(ObserveOptions {
        metrics_addr: config.metrics_addr,
        control_path: config.control.clone(),
        control: true,
        stall_threshold: Duration::from_millis(config.stall_threshold_ms),
        health_threshold: HEALTH_THRESHOLD,
        loops: observers,
        pool: pool.clone(),
        services: registry.clone(),
        config: control.clone(),
    });
    let observe = match observe {
        Ok(o) => o,
        Err(e) => {
            for p in &peers {
                p.send(Command::Shutdown);
            }
            return Err(e.into());
        }
    };
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
        if !s.addr.ip().is_loopback() {
            tracing::warn!(service = %s.name, addr = %s.addr, "service bound to a non-loopback address");
        }
    }

    let state = Rc::new(RefCell::new(state0));
    let leader = Rc::new(RefCell::new(Leader {
        config,
        registry,
        peers,
        control,
        pool,
        observe,
        noted: Vec::new(),
    }));
    for signum in [libc::SIGTERM, libc::SIGINT] {
        let sig = Signal::new(&mut lp);
        let (st, ld) = (state.clone(), leader.clone());
        sig.start(&mut lp, signum, move |lp, _, signum| {
            tracing::info!(signum, "shutdown signal");
            for p in &ld.borrow().peers {
                p.send(Command::Shutdown);
            }
            begin_shutdown(lp, &st);
        })
        .context("cannot watch shutdown signals")?;
        sig.unref(&mut lp);
    }
    let hup = Signal::new(&mut lp);
    let (st, ld) = (state.clone(), leader.clone());
    hup.start(&mut lp, libc::SIGHUP, move |lp, _, _| reload(lp, &st, &ld))
        .context("cannot watch SIGHUP")?;
    hup.unref(&mut lp);

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

type LoopThread = std::thread::JoinHandle<()>;

/// Starts loop `index` on its own thread with `plans`; returns once its services listen.
fn spawn_loop(
    index: usize,
    plans: Vec<ServicePlan>,
    shared_by_loops: bool,
) -> anyhow::Result<(Arc<LoopObserver>, Peer, LoopThread)> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(Arc<LoopObserver>, Peer), String>>();
    let thread = std::thread::Builder::new()
        .name(format!("loopd-loop-{index}"))
        .spawn(move || {
            let mut lp = match Loop::with_options(LoopOptions {
                index: Some(index),
                ..LoopOptions::default()
            }) {
                Ok(lp) => lp,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot create loop {index}: {e}")));
                    return;
                }
            };
            let state = Rc::new(RefCell::new(LoopState {
                services: Vec::new(),
                draining: false,
                shared_by_loops,
            }));
            for plan in &plans {
                if let Err(e) = state.borrow_mut().start(&mut lp, plan) {
                    let _ = ready_tx.send(Err(format!("loop {index}: {e}")));
                    lp.close_all();
                    lp.run(RunMode::Default);
                    return;
                }
            }
            let queue = Arc::new(Mutex::new(Vec::new()));
            let q = queue.clone();
            let st = state.clone();
            let commands = Async::new(&mut lp, move |lp, _| {
                let batch = std::mem::take(&mut *q.lock().unwrap_or_else(PoisonError::into_inner));
                for c in batch {
                    apply(lp, &st, c);
                }
            });
            commands.set_label(&mut lp, "loopd commands");
            let Some(wake) = commands.sender(&lp) else {
                return;
            };
            if ready_tx
                .send(Ok((lp.observer(), Peer { queue, wake })))
                .is_err()
            {
                return;
            }
            lp.run(RunMode::Default);
        })
        .context("cannot start a loop thread")?;
    match ready_rx.recv() {
        Ok(Ok((observer, peer))) => Ok((observer, peer, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(anyhow::anyhow!(e))
        }
        Err(_) => {
            let _ = thread.join();
            Err(anyhow::anyhow!("loop {index} failed to start"))
        }
    }
}

/// A command from loop 0, on another loop.
fn apply(lp: &mut Loop, state: &Rc<RefCell<LoopState>>, c: Command) {
    match c {
        Command::Shutdown => begin_shutdown(lp, state),
        Command::Stop(names) => state.borrow_mut().stop(lp, &names),
        Command::Start(plans) => {
            let mut st = state.borrow_mut();
            for plan in &plans {
                if let Err(e) = st.start(lp, plan) {
                    tracing::error!(loop_index = lp.index(), error = %e, "SIGHUP: service not started on this loop");
                }
            }
        }
    }
}

/// Stop accepting, let in-flight work finish (bounded), close everything. A second call
/// (second signal) closes everything at once.
fn begin_shutdown(lp: &mut Loop, state: &Rc<RefCell<LoopState>>) {
    let mut st = state.borrow_mut();
    if st.draining {
        tracing::warn!(
            loop_index = lp.index(),
            "second shutdown signal: closing everything now"
        );
        lp.close_all();
        return;
    }
    st.draining = true;
    tracing::info!(
        loop_index = lp.index(),
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
                tracing::info!(
                    loop_index = lp.index(),
                    "in-flight work finished; closing connections"
                );
                lp.close_all();
            } else if lp.now() >= deadline {
                tracing::warn!(
                    loop_index = lp.index(),
                    in_flight = lp.requests_in_flight(),
                    "shutdown grace of {SHUTDOWN_GRACE:?} expired; cutting in-flight work"
                );
                lp.close_all();
                // Work already running on the pool cannot be interrupted and would keep the
                // loop alive past the grace (for as long as it computes, and then for every
                // queued task): end the loop after this iteration's close phase instead.
                // Their after-work callbacks never run; the process exits.
                lp.stop();
            }
        },
    );
    if started.is_err() {
        lp.close_all();
    }
}

/// SIGHUP: re-reads the config file; services added or removed on every loop, the others
/// untouched.
fn reload(lp: &mut Loop, state: &Rc<RefCell<LoopState>>, leader: &Rc<RefCell<Leader>>) {
    let mut st = state.borrow_mut();
    if st.draining {
        return;
    }
    let mut ld = leader.borrow_mut();
    let Some(path) = ld.config.source.clone() else {
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
    ld.reload_settings(&new);
    let registry = ld.registry.clone();
    let gone: Vec<String> = st
        .services
        .iter()
        .filter(|s| !new.services.contains(&s.config))
        .map(|s| s.name.clone())
        .collect();
    for s in st.services.iter().filter(|s| gone.contains(&s.name)) {
        tracing::info!(service = %s.name, addr = %s.addr, "SIGHUP: service removed");
        registry.unregister(&s.name);
    }
    st.stop(lp, &gone);
    let mut added = Vec::new();
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
        match services::start(lp, svc, name, &registry, st.shared_by_loops) {
            Ok(s) => {
                added.push(ServicePlan {
                    config: svc.clone(),
                    bind: s.addr,
                    name: s.name.clone(),
                    counters: s.counters.clone(),
                });
                st.services.push(s);
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: service not started"),
        }
    }
    for p in &ld.peers {
        if !gone.is_empty() {
            p.send(Command::Stop(gone.clone()));
        }
        if !added.is_empty() {
            p.send(Command::Start(added.clone()));
        }
    }
    // In force now: the new services; the top-level keys as `reload_settings` left them
    // (the live ones are read from the pool, the watchdog and the log filter).
    ld.config.services = new.services;
    ld.config.in_file = new.in_file;
    {
        let mut shown = ld
            .control
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shown.services = ld.config.services.clone();
        shown.source = ld.config.source.clone();
    }
    tracing::info!(services = st.services.len(), "SIGHUP: config reloaded");
}
