//! The loops of a daemon: loop 0 on the main thread leads; loops 1.. run on threads of their
//! own, each serving its own listeners on the ports loop 0 bound, and obey loop 0's commands
//! (shutdown, services stopped or started on reload) through a queue and an async handle.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use loopd_engine::instrument::LoopObserver;
use loopd_engine::{Async, AsyncSender, Handle, Loop, LoopOptions, RunMode, Timer};
use loopd_observe::{ServiceCounters, ServiceRegistry};

use super::{DaemonError, SHUTDOWN_GRACE};
use crate::config::ServiceConfig;
use crate::service::Service;
use crate::services::{self, RunningService};

/// A service as every loop starts it: the bound address (port 0 resolved by loop 0) and the
/// counters all instances share.
#[derive(Clone)]
pub(super) struct ServicePlan {
    config: ServiceConfig,
    service: Arc<dyn Service>,
    bind: Option<std::net::SocketAddr>,
    name: String,
    counters: Arc<ServiceCounters>,
}

/// What loop 0 tells the other loops.
pub(super) enum Command {
    Shutdown,
    Stop(Vec<String>),
    Start(Vec<ServicePlan>),
}

/// How loop 0 reaches another loop.
pub(super) struct Peer {
    queue: Arc<Mutex<Vec<Command>>>,
    wake: AsyncSender,
}

impl Peer {
    pub(super) fn send(&self, c: Command) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
        self.wake.send();
    }
}

/// One loop's services and shutdown state.
pub(super) struct LoopState {
    pub(super) services: Vec<RunningService>,
    pub(super) draining: bool,
    /// Several loops share the services' ports (loop 0 leads, the others join).
    pub(super) shared_by_loops: bool,
}

impl LoopState {
    /// Loop 0 starts a service (binding its port; a port 0 is resolved here) and returns the
    /// plan the other loops start it from ([`LoopState::join`]).
    pub(super) fn lead(
        &mut self,
        lp: &mut Loop,
        config: &ServiceConfig,
        service: Arc<dyn Service>,
        name: String,
        registry: &ServiceRegistry,
    ) -> Result<ServicePlan, services::StartError> {
        let running = services::start(
            lp,
            config,
            service.clone(),
            name,
            registry,
            self.shared_by_loops,
        )?;
        let plan = ServicePlan {
            config: config.clone(),
            service,
            bind: running.addr,
            name: running.name.clone(),
            counters: running.counters.clone(),
        };
        self.services.push(running);
        Ok(plan)
    }

    /// Another loop starts a service as loop 0 planned it, on the port loop 0 holds.
    pub(super) fn join(
        &mut self,
        lp: &mut Loop,
        plan: &ServicePlan,
    ) -> Result<(), services::StartError> {
        let mut config = plan.config.clone();
        config.bind = plan.bind;
        let mut running = services::start_with(
            lp,
            &config,
            plan.service.clone(),
            plan.name.clone(),
            plan.counters.clone(),
            services::PortUse::Join,
        )?;
        running.config = plan.config.clone();
        self.services.push(running);
        Ok(())
    }

    pub(super) fn stop(&mut self, lp: &mut Loop, names: &[String]) {
        self.services.retain(|s| {
            let gone = names.contains(&s.name);
            if gone {
                s.stop(lp);
            }
            !gone
        });
    }
}

pub(super) type LoopThread = std::thread::JoinHandle<()>;

/// Starts loop `index` on its own thread with `plans`; returns once its services listen.
pub(super) fn spawn_loop(
    index: usize,
    plans: Vec<ServicePlan>,
    shared_by_loops: bool,
) -> Result<(Arc<LoopObserver>, Peer, LoopThread), DaemonError> {
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
                if let Err(e) = state.borrow_mut().join(&mut lp, plan) {
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
        .map_err(DaemonError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok((observer, peer))) => Ok((observer, peer, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(DaemonError::LoopStart(e))
        }
        Err(_) => {
            let _ = thread.join();
            Err(DaemonError::LoopStart(format!(
                "loop {index} failed to start"
            )))
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
                if let Err(e) = st.join(lp, plan) {
                    tracing::error!(loop_index = lp.index(), error = %e, "SIGHUP: service not started on this loop");
                }
            }
        }
    }
}

/// Stop accepting, let in-flight work finish (bounded), close everything. A second call
/// (second signal) closes everything at once.
pub(super) fn begin_shutdown(lp: &mut Loop, state: &Rc<RefCell<LoopState>>) {
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
        s.stop(lp);
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
