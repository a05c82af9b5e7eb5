//! Service kinds: the extension point for putting your own protocol on loopd.
//!
//! A `[[service]]` entry of the config names a kind (`kind = "seq"`), an address (`bind`,
//! left out for a service without a TCP listener) and any keys of the kind's own. A kind is registered by name with a [`ServiceFactory`], which
//! turns the entry's own keys into a [`Service`] — once, on loop 0, before any port is bound,
//! so a bad entry is a one-line error at startup (exit 1) and keeps the running config on
//! SIGHUP. The daemon then binds the port on every loop (`--loops`) and calls
//! [`Service::start`] there with that loop's listener (if it has one) and the counters all
//! loops share. Handles a service hands to [`ServiceContext::keep`] are closed when it stops.
//!
//! The built-in `seq`, `prime` and `http` are registered through exactly this API
//! ([`ServiceKinds::builtin`]).
//!
//! # Examples
//!
//! A line service answering each line in upper case:
//!
//! ```
//! use std::sync::Arc;
//! use loopd::engine::{Handle, ReadEvent};
//! use loopd::service::{Service, ServiceContext, ServiceError, ServiceKinds};
//!
//! struct Upper;
//!
//! impl Service for Upper {
//!     fn start(&self, ctx: ServiceContext<'_>) -> Result<(), ServiceError> {
//!         let counters = ctx.counters.clone();
//!         let listener = ctx.require_listener()?;
//!         listener.listen(ctx.lp, 128, move |lp, server, status| {
//!             if status.is_err() {
//!                 return; // accept failed (out of fds): the engine retries
//!             }
//!             let Ok(client) = server.accept(lp) else { return };
//!             counters.connection_opened();
//!             let counters = counters.clone();
//!             let _ = client.read_start(lp, move |lp, client, ev| match ev {
//!                 ReadEvent::Data(bytes) => {
//!                     counters.add_bytes_received(bytes.len() as u64);
//!                     counters.add_bytes_sent(bytes.len() as u64);
//!                     let _ = client.write(lp, bytes.to_ascii_uppercase(), None);
//!                 }
//!                 ReadEvent::Eof | ReadEvent::Error(_) => {
//!                     counters.connection_closed();
//!                     client.close(lp);
//!                 }
//!             });
//!         })?;
//!         Ok(())
//!     }
//! }
//!
//! let mut kinds = ServiceKinds::builtin();
//! kinds.register("upper", |options| {
//!     if let Some(key) = options.keys().next() {
//!         return Err(format!("unknown key `{key}`"));
//!     }
//!     Ok(Arc::new(Upper))
//! });
//! assert!(kinds.get("upper").is_some());
//! ```
//!
//! A service without a listener (`[[service]] kind = "heartbeat"`, no `bind`): a timer the
//! daemon closes when the service is removed on reload or at shutdown:
//!
//! ```
//! use std::time::Duration;
//! use loopd::engine::{Handle, Timer};
//! use loopd::service::{Service, ServiceContext, ServiceError};
//!
//! struct Heartbeat;
//!
//! impl Service for Heartbeat {
//!     fn needs_listener(&self) -> bool {
//!         false
//!     }
//!
//!     fn start(&self, mut ctx: ServiceContext<'_>) -> Result<(), ServiceError> {
//!         let timer = Timer::new(ctx.lp);
//!         timer.set_label(ctx.lp, "heartbeat");
//!         timer.start(ctx.lp, Duration::ZERO, Duration::from_secs(1), |_, _| {})?;
//!         ctx.keep(&timer);
//!         Ok(())
//!     }
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{EngineError, Handle, HandleRef, Loop, Tcp};
use crate::observe::ServiceCounters;

/// The keys of a `[[service]]` entry other than `kind` and `bind`.
pub type ServiceOptions = toml::Table;

/// One running instance of a service kind, as configured by one `[[service]]` entry. Shared by
/// every loop (hence `Send + Sync`); per-connection state lives in the loop's callbacks.
pub trait Service: Send + Sync {
    /// Starts serving on one loop: usually `ctx.listener` and its `listen(…)`, and any
    /// handles the service needs (timers, UDP sockets, …), each given to
    /// [`ServiceContext::keep`] so that the daemon closes it when the service stops (reload,
    /// shutdown). Called once per loop; handles created here belong to that loop.
    ///
    /// # Errors
    /// What went wrong, for a one-line startup error naming the service.
    fn start(&self, ctx: ServiceContext<'_>) -> Result<(), ServiceError>;

    /// Whether the service needs a TCP listener (`bind` in its entry). A service that is
    /// only timers or UDP says `false`; an entry without `bind` for one that says `true` is
    /// a one-line configuration error naming the service.
    fn needs_listener(&self) -> bool {
        true
    }
}

/// What [`Service::start`] gets on each loop.
pub struct ServiceContext<'a> {
    /// The loop to start on.
    pub lp: &'a mut Loop,
    /// Bound to the entry's `bind` (on every loop the same port), not listening yet; `None`
    /// for an entry without `bind` (a service whose [`Service::needs_listener`] is false).
    pub listener: Option<Tcp>,
    /// Where the service counts connections and bytes (`loopd_service_*{service=…}`, `status`).
    pub counters: &'a Arc<ServiceCounters>,
    /// The service's name (`upper`, then `upper-2`, … for repeated kinds).
    pub name: &'a str,
    /// Handles the daemon closes when the service stops.
    pub(crate) kept: &'a mut Vec<HandleRef>,
}

impl ServiceContext<'_> {
    /// Hands `handle` (a timer, a UDP socket, …) to the daemon: it is closed when the
    /// service stops — removed from the config on reload, or at shutdown — as the listener
    /// is. Connections accepted from the listener are the service's to close.
    pub fn keep(&mut self, handle: &impl Handle) {
        self.kept.push(handle.raw());
    }

    /// The listener, or a clear error for a service that needs one and has none.
    ///
    /// # Errors
    /// The entry has no `bind`.
    pub fn require_listener(&self) -> Result<Tcp, ServiceError> {
        self.listener.ok_or_else(|| {
            ServiceError::Other(format!(
                "service {} needs `bind` (a TCP listener)",
                self.name
            ))
        })
    }
}

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An engine call failed (listen, bind, …).
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

/// Turns an entry's own keys into its [`Service`]; an `Err` is a message naming the bad key.
pub type ServiceFactory =
    Arc<dyn Fn(&ServiceOptions) -> Result<Arc<dyn Service>, String> + Send + Sync>;

/// The service kinds a daemon knows, by name.
#[derive(Clone, Default)]
pub struct ServiceKinds {
    kinds: BTreeMap<String, ServiceFactory>,
}

impl std::fmt::Debug for ServiceKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl ServiceKinds {
    /// The built-in kinds: `seq`, `prime`, `http`.
    pub fn builtin() -> ServiceKinds {
        let mut kinds = ServiceKinds::default();
        crate::services::register_builtin(&mut kinds);
        kinds
    }

    /// Registers (or replaces) the kind `name`.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&ServiceOptions) -> Result<Arc<dyn Service>, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.kinds.insert(name.into(), Arc::new(factory));
        self
    }

    /// The factory of `name`.
    pub fn get(&self, name: &str) -> Option<&ServiceFactory> {
        self.kinds.get(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Builds the service of one entry: unknown kind, bad keys or a panicking factory are an
    /// error in words.
    ///
    /// # Errors
    /// The message for the one-line startup error.
    pub fn prepare(
        &self,
        kind: &str,
        options: &ServiceOptions,
    ) -> Result<Arc<dyn Service>, String> {
        let Some(factory) = self.get(kind) else {
            let known: Vec<&str> = self.names().collect();
            return Err(format!(
                "unknown service kind `{kind}` (known: {})",
                known.join(", ")
            ));
        };
        crate::panics::catch(|| factory(options))
            .unwrap_or_else(|panic| Err(format!("the `{kind}` factory panicked: {panic}")))
    }
}

/// Reads an optional string key of a service's options.
///
/// # Errors
/// The key is there but not a string.
pub fn string_option<'a>(
    options: &'a ServiceOptions,
    key: &str,
) -> Result<Option<&'a str>, String> {
    match options.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "`{key}` must be a string, not {}",
            other.type_str()
        )),
    }
}

/// Refuses keys other than `allowed` (a typo never silently does nothing).
///
/// # Errors
/// The first unknown key, with the allowed ones.
pub fn only_keys(options: &ServiceOptions, allowed: &[&str]) -> Result<(), String> {
    match options.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if allowed.is_empty() => Err(format!("unknown key `{k}` (this kind takes none)")),
        Some(k) => Err(format!(
            "unknown key `{k}` (allowed: {})",
            allowed.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> ServiceOptions {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn the_builtin_kinds_check_their_keys() {
        let kinds = ServiceKinds::builtin();
        assert_eq!(kinds.names().collect::<Vec<_>>(), ["http", "prime", "seq"]);
        let err = |kind: &str, options: &str| match kinds.prepare(kind, &table(options)) {
            Ok(_) => String::new(),
            Err(e) => e,
        };
        let e = err("ftp", "");
        assert!(
            e.contains("unknown service kind `ftp`") && e.contains("seq"),
            "{e}"
        );
        let e = err("seq", "mode = \"pool\"");
        assert!(e.contains("unknown key `mode`"), "{e}");
        let e = err("prime", "mode = \"fast\"");
        assert!(e.contains("pool or inline"), "{e}");
        let e = err("http", "root = 5");
        assert!(e.contains("`root` must be a string"), "{e}");
        assert_eq!(err("prime", "mode = \"inline\""), "");
        assert_eq!(err("http", "root = \"/srv\""), "");
    }

    #[test]
    fn a_panicking_factory_is_an_error_naming_the_kind() {
        let mut kinds = ServiceKinds::default();
        kinds.register("boom", |_| panic!("a bug in the factory"));
        let e = kinds.prepare("boom", &table("")).err().unwrap_or_default();
        assert!(e.contains("`boom` factory panicked"), "{e}");
    }
}
