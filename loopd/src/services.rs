//! The workloads loopd hosts (DESIGN §6): `seq`, `prime`, `http`, each a listener on the
//! loop with per-connection state, counted in the [`ServiceRegistry`].

pub mod flow;
pub mod http;
pub mod prime;
pub mod seq;

use std::net::SocketAddr;

use crate::config::{ServiceConfig, ServiceKind};
use crate::engine::{EngineError, Handle, Loop, Tcp};
use crate::observe::ServiceRegistry;

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
}

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {kind} service on {bind}: {source}")]
pub struct StartError {
    kind: &'static str,
    bind: SocketAddr,
    #[source]
    source: EngineError,
}

fn proto_kind(kind: ServiceKind) -> proto::ServiceKind {
    match kind {
        ServiceKind::Seq => proto::ServiceKind::Seq,
        ServiceKind::Prime => proto::ServiceKind::Prime,
        ServiceKind::Http => proto::ServiceKind::Http,
    }
}

/// Starts one service under `name`.
///
/// # Errors
/// The bind or listen failure, naming the service and address.
pub fn start(
    lp: &mut Loop,
    config: &ServiceConfig,
    name: String,
    registry: &ServiceRegistry,
) -> Result<RunningService, StartError> {
    let fail = |source| StartError {
        kind: config.kind.as_str(),
        bind: config.bind,
        source,
    };
    let listener = match config.kind {
        ServiceKind::Http => {
            let counters = registry.register(name.clone(), proto_kind(config.kind), config.bind);
            let root = config
                .root
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("."));
            http::start(lp, config.bind, http::HttpOptions { root, counters }).map_err(fail)?
        }
        ServiceKind::Seq | ServiceKind::Prime => {
            let listener = Tcp::new(lp);
            let bound = listener
                .bind(lp, config.bind)
                .and_then(|()| listener.local_addr(lp));
            let addr = match bound {
                Ok(a) => a,
                Err(e) => {
                    listener.close(lp);
                    return Err(fail(e));
                }
            };
            let counters = registry.register(name.clone(), proto_kind(config.kind), addr);
            let started = match config.kind {
                ServiceKind::Seq => seq::start(lp, listener, counters),
                _ => prime::start(lp, listener, config.mode.unwrap_or_default(), counters),
            };
            if let Err(e) = started {
                listener.close(lp);
                registry.unregister(&name);
                return Err(fail(e));
            }
            listener
        }
    };
    let addr = listener.local_addr(lp).unwrap_or(config.bind);
    listener.set_label(lp, format!("{} listen {addr}", config.kind.as_str()));
    tracing::info!(service = %name, kind = config.kind.as_str(), %addr, "service listening");
    Ok(RunningService {
        config: config.clone(),
        name,
        addr,
        listener,
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
