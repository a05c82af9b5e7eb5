//! The workloads loopd hosts (DESIGN §6): `seq`, `prime`, `http`, each a listener on the
//! loop with per-connection state, counted in the [`ServiceRegistry`]; registered as service
//! kinds through the public [`crate::service`] API, and started on each loop from here.

pub mod flow;
pub mod http;
pub mod prime;
pub mod seq;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{PrimeMode, ServiceConfig};
use crate::engine::{Handle, HandleRef, Loop, Tcp};
use crate::observe::{ServiceCounters, ServiceRegistry};
use crate::service::{
    only_keys, string_option, Service, ServiceContext, ServiceError, ServiceKinds,
};

/// Registers `seq`, `prime` and `http` — through the same public API as any other kind.
pub fn register_builtin(kinds: &mut ServiceKinds) {
    kinds.register("seq", |options| {
        only_keys(options, &[])?;
        Ok(Arc::new(seq::Seq))
    });
    kinds.register("prime", |options| {
        only_keys(options, &["mode"])?;
        let mode = match string_option(options, "mode")? {
            None | Some("pool") => PrimeMode::Pool,
            Some("inline") => PrimeMode::Inline,
            Some(other) => return Err(format!("`mode = \"{other}\"`: expected pool or inline")),
        };
        Ok(Arc::new(prime::Prime { mode }))
    });
    kinds.register("http", |options| {
        only_keys(options, &["root"])?;
        let root = PathBuf::from(string_option(options, "root")?.unwrap_or("."));
        Ok(Arc::new(http::Http { root }))
    });
}

/// A service that is serving on one loop.
pub struct RunningService {
    /// Its configuration entry (identity for reloads).
    pub config: ServiceConfig,
    /// What its factory built from the entry (shared by every loop's instance).
    pub service: Arc<dyn Service>,
    /// Its name in metrics and `status` (`seq`, `prime`, `http`, then `seq-2`, …).
    pub name: String,
    /// The address it actually listens on (`None`: a service without a listener).
    pub addr: Option<SocketAddr>,
    /// The listening handle, if it has one.
    pub listener: Option<Tcp>,
    /// Handles the service gave the daemon to close when it stops
    /// ([`crate::service::ServiceContext::keep`]).
    pub kept: Vec<HandleRef>,
    /// Where its connections and bytes are counted (shared by every loop's instance).
    pub counters: Arc<ServiceCounters>,
}

impl RunningService {
    /// Stops it on this loop: no new connections (the listener closes), its kept handles
    /// close; connections already accepted finish on their own.
    pub fn stop(&self, lp: &mut Loop) {
        if let Some(l) = self.listener {
            l.close(lp);
        }
        for h in &self.kept {
            h.close(lp);
        }
    }
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .field("kind", &self.config.kind)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {kind} service {at}: {cause}")]
pub struct StartError {
    kind: String,
    /// `on ADDR`, or `(no listener)`.
    at: String,
    /// In the message (logs show it with `%e`), so not also a `source` that `{:#}` would
    /// print a second time.
    cause: ServiceError,
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

/// The wire name of a service kind (unknown to older clients: kept as a string).
pub fn proto_kind(kind: &str) -> proto::ServiceKind {
    proto::ServiceKind::from(kind)
}

/// Starts one service under `name`, registering its counters; with `shared_by_loops`, as
/// the leader of the loops that will share its port ([`PortUse::Lead`]).
///
/// # Errors
/// The bind or listen failure, naming the service and address.
pub fn start(
    lp: &mut Loop,
    config: &ServiceConfig,
    service: Arc<dyn Service>,
    name: String,
    registry: &ServiceRegistry,
    shared_by_loops: bool,
) -> Result<RunningService, StartError> {
    let counters = registry.register(name.clone(), proto_kind(&config.kind), config.bind);
    let port = if shared_by_loops {
        PortUse::Lead
    } else {
        PortUse::Exclusive
    };
    match start_with(lp, config, service, name.clone(), counters, port) {
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
    service: Arc<dyn Service>,
    name: String,
    counters: Arc<ServiceCounters>,
    port: PortUse,
) -> Result<RunningService, StartError> {
    let fail = |cause| StartError {
        kind: config.kind.clone(),
        at: config
            .bind
            .map_or_else(|| "(no listener)".to_string(), |b| format!("on {b}")),
        cause,
    };
    let listener = config.bind.map(|_| Tcp::new(lp));
    let mut kept = Vec::new();
    let started = bind_listener(lp, listener, config.bind, port)
        .and_then(|()| {
            let ctx = ServiceContext {
                lp: &mut *lp,
                listener,
                counters: &counters,
                name: &name,
                kept: &mut kept,
            };
            crate::panics::catch(|| service.start(ctx)).unwrap_or_else(|panic| {
                Err(ServiceError::Other(format!(
                    "the `{}` service panicked while starting: {panic}",
                    config.kind
                )))
            })
        })
        .and_then(|()| match (listener, port) {
            (Some(l), PortUse::Lead) => l.share_port(lp).map_err(ServiceError::from),
            _ => Ok(()),
        })
        .and_then(|()| match listener {
            Some(l) => l.local_addr(lp).map(Some).map_err(ServiceError::from),
            None => Ok(None),
        });
    let addr = match started {
        Ok(addr) => addr,
        Err(e) => {
            if let Some(l) = listener {
                l.close(lp);
            }
            for h in kept {
                h.close(lp);
            }
            return Err(fail(e));
        }
    };
    match (listener, addr) {
        (Some(l), Some(addr)) => {
            l.set_label(lp, format!("{} listen {addr}", config.kind));
            tracing::info!(service = %name, kind = %config.kind, %addr, loop_index = lp.index(), "service listening");
        }
        _ => {
            tracing::info!(service = %name, kind = %config.kind, loop_index = lp.index(), "service started (no listener)");
        }
    }
    Ok(RunningService {
        config: config.clone(),
        service,
        name,
        addr,
        listener,
        kept,
        counters,
    })
}

/// Binds the listener, if the entry has one.
fn bind_listener(
    lp: &mut Loop,
    listener: Option<Tcp>,
    bind: Option<SocketAddr>,
    port: PortUse,
) -> Result<(), ServiceError> {
    match (listener, bind) {
        (Some(l), Some(addr)) => l
            .bind_with(lp, addr, port == PortUse::Join)
            .map_err(ServiceError::from),
        _ => Ok(()),
    }
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
