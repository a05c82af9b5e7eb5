//! The workloads loopd hosts (DESIGN §6): `seq`, `prime`, `http`, each a listener on the
//! loop with per-connection state, counted in the [`ServiceRegistry`].

pub mod flow;
pub mod http;
pub mod prime;
pub mod seq;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{ServiceConfig, ServiceKind};
use crate::engine::{EngineError, Handle, Loop, Tcp};
use crate::observe::{ServiceCounters, ServiceRegistry};

/// A service that is serving.
#[derive(Debug)]
pub struct RunningService {
    /// Its configuration entry (identity for reloads).
    pub config: ServiceConfig,
    /// Its name in metrics and `status` (`seq`, `prime`, `http`, then `seq-2`, …).
    pub name: String,
    /// The address it actually listens on.
    pub addr: SocketAddr,
    /// The listening handle.
    pub listener: Tcp,
    /// Where its connections and bytes are counted (shared by every loop's instance).
    pub counters: Arc<ServiceCounters>,
}

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {kind} service on {bind}: {cause}")]
pub struct StartError {
    kind: &'static str,
    bind: SocketAddr,
    /// In the message (logs show it with `%e`), so not also a `source` that `{:#}` would
    /// print a second time.
    cause: EngineError,
}

/// How a service's listener takes its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortUse {
    /// One loop: the port is this listener's alone.
    Exclusive,
    /// The first of several loops: binds alone (so a port another process holds fails as it
    /// does with one loop, even when that process shares it with `SO_REUSEPORT`), then lets
    /// the other loops join ([`Tcp::share_port`]).
    Lead,
    /// Another loop joining the port its leader holds (`SO_REUSEPORT`).
    Join,
}

/// The wire name of a service kind.
pub fn proto_kind(kind: ServiceKind) -> proto::ServiceKind {
    match kind {
        ServiceKind::Seq => proto::ServiceKind::Seq,
        ServiceKind::Prime => proto::ServiceKind::Prime,
        ServiceKind::Http => proto::ServiceKind::Http,
    }
}

/// Starts one service under `name`, registering its counters; with `shared_by_loops`, as
/// the leader of the loops that will share its port ([`PortUse::Lead`]).
///
/// # Errors
/// The bind or listen failure, naming the service and address.
pub fn start(
    lp: &mut Loop,
    config: &ServiceConfig,
    name: String,
    registry: &ServiceRegistry,
    shared_by_loops: bool,
) -> Result<RunningService, StartError> {
    let counters = registry.register(name.clone(), proto_kind(config.kind), config.bind);
    let port = if shared_by_loops {
        PortUse::Lead
    } else {
        PortUse::Exclusive
    };
    match start_with(lp, config, name.clone(), counters, port) {
        Ok(running) => {
            registry.set_bind(&name, running.addr);
            Ok(running)
        }
        Err(e) => {
            registry.unregister(&name);
            Err(e)
        }
    }
}

/// Starts an instance of a service that counts into `counters`, taking its port as `port`
/// says (another loop's instance joins the port with [`PortUse::Join`]).
///
/// # Errors
/// The bind or listen failure, naming the service and address.
pub fn start_with(
    lp: &mut Loop,
    config: &ServiceConfig,
    name: String,
    counters: Arc<ServiceCounters>,
    port: PortUse,
) -> Result<RunningService, StartError> {
    let fail = |cause| StartError {
        kind: config.kind.as_str(),
        bind: config.bind,
        cause,
    };
    let listener = Tcp::new(lp);
    let started = listener
        .bind_with(lp, config.bind, port == PortUse::Join)
        .and_then(|()| match config.kind {
            ServiceKind::Seq => seq::start(lp, listener, counters.clone()),
            ServiceKind::Prime => prime::start(
                lp,
                listener,
                config.mode.unwrap_or_default(),
                counters.clone(),
            ),
            ServiceKind::Http => http::serve(
                lp,
                listener,
                http::HttpOptions {
                    root: config
                        .root
                        .clone()
                        .unwrap_or_else(|| std::path::PathBuf::from(".")),
                    counters: counters.clone(),
                },
            ),
        })
        .and_then(|()| match port {
            PortUse::Lead => listener.share_port(lp),
            PortUse::Exclusive | PortUse::Join => Ok(()),
        })
        .and_then(|()| listener.local_addr(lp));
    let addr = match started {
        Ok(addr) => addr,
        Err(e) => {
            listener.close(lp);
            return Err(fail(e));
        }
    };
    listener.set_label(lp, format!("{} listen {addr}", config.kind.as_str()));
    tracing::info!(service = %name, kind = config.kind.as_str(), %addr, loop_index = lp.index(), "service listening");
    Ok(RunningService {
        config: config.clone(),
        name,
        addr,
        listener,
        counters,
    })
}

/// Names for a list of services: the kind, then `kind-2`, `kind-3` for repeats.
pub fn names(configs: &[ServiceConfig]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in configs {
        let base = c.kind.as_str();
        let n = out
            .iter()
            .filter(|x| *x == base || x.starts_with(&format!("{base}-")))
            .count();
        out.push(if n == 0 {
            base.to_string()
        } else {
            format!("{base}-{}", n + 1)
        });
    }
    out
}

/// Logs a failed accept at most once a second per service kind, with how many were
/// suppressed: out of file descriptors (EMFILE), the loop retries every 10 ms, and every
/// failing retry would otherwise be a WARN line.
pub(crate) fn warn_accept_failed(kind: &'static str, e: &std::io::Error) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Vec<(&'static str, u64, u64)>> = const { RefCell::new(Vec::new()) };
    }
    let now = crate::engine::instrument::clock::now_ns();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let entry = match last.iter().position(|(k, _, _)| *k == kind) {
            Some(i) => &mut last[i],
            None => {
                last.push((kind, 0, 0));
                let i = last.len() - 1;
                &mut last[i]
            }
        };
        if entry.1 == 0 || now.saturating_sub(entry.1) >= 1_000_000_000 {
            tracing::warn!(service = kind, error = %e, suppressed = entry.2, "accept failed");
            entry.1 = now.max(1);
            entry.2 = 0;
        } else {
            entry.2 += 1;
        }
    });
}
