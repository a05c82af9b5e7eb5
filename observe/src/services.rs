//! The services the daemon hosts, and the counters they keep for the metrics and `status`.
//!
//! A service registers once and gets an [`Arc<ServiceCounters>`]; its callbacks (on the loop
//! thread) bump relaxed atomics — a few nanoseconds, no lock — and the observers read them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::ServiceKind;

/// Counters of one service. Updated by the service's callbacks with relaxed atomics.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    connections: AtomicU64,
    connections_total: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

impl ServiceCounters {
    /// A connection was accepted (the open-connections gauge goes up).
    #[inline]
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed (the gauge goes down; never below zero).
    #[inline]
    pub fn connection_closed(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// `n` bytes were received from peers.
    #[inline]
    pub fn add_bytes_received(&self, n: u64) {
        self.bytes_received.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes were sent to peers.
    #[inline]
    pub fn add_bytes_sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Open connections now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections accepted since the service started.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    /// Bytes received since the service started.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    /// Bytes sent since the service started.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
}

/// One registered service, as listed by [`ServiceRegistry::list`].
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    /// Its name (the `service` label of the metrics).
    pub name: String,
    /// Its kind.
    pub kind: ServiceKind,
    /// The address it actually bound.
    pub bind: Option<SocketAddr>,
    /// Its counters.
    pub counters: Arc<ServiceCounters>,
}

/// The running services. Cheap to clone (shared inside).
///
/// # Examples
///
/// ```
/// use loopd_observe::ServiceRegistry;
/// let services = ServiceRegistry::default();
/// let seq = services.register("seq", "seq", "127.0.0.1:7070".parse().ok());
/// seq.connection_opened();
/// seq.add_bytes_received(3);
/// assert_eq!(services.list()[0].counters.connections(), 1);
/// services.unregister("seq");
/// assert!(services.list().is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServiceRegistry {
    inner: Arc<Mutex<Vec<ServiceEntry>>>,
}

impl ServiceRegistry {
    fn lock(&self) -> MutexGuard<'_, Vec<ServiceEntry>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a service (replacing one of the same name) and returns its counters.
    pub fn register(
        &self,
        name: impl Into<String>,
        kind: impl Into<ServiceKind>,
        bind: Option<SocketAddr>,
    ) -> Arc<ServiceCounters> {
        let name = name.into();
        let counters = Arc::new(ServiceCounters::default());
        let entry = ServiceEntry {
            name: name.clone(),
            kind: kind.into(),
            bind,
            counters: counters.clone(),
        };
        let mut list = self.lock();
        match list.iter_mut().find(|e| e.name == name) {
            Some(e) => *e = entry,
            None => list.push(entry),
        }
        counters
    }

    /// Records the address a service actually bound (a port 0 resolved at bind time).
    pub fn set_bind(&self, name: &str, bind: Option<SocketAddr>) {
        if let Some(e) = self.lock().iter_mut().find(|e| e.name == name) {
            e.bind = bind;
        }
    }

    /// Removes a service; its metrics disappear from the next scrape.
    pub fn unregister(&self, name: &str) {
        self.lock().retain(|e| e.name != name);
    }

    /// Every registered service, in registration order.
    pub fn list(&self) -> Vec<ServiceEntry> {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_registration() {
        let reg = ServiceRegistry::default();
        let a = reg.register("a", ServiceKind::Seq, "127.0.0.1:1".parse().ok());
        a.connection_opened();
        a.connection_opened();
        a.connection_closed();
        a.connection_closed();
        a.connection_closed();
        a.add_bytes_sent(5);
        let list = reg.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].counters.connections(), 0);
        assert_eq!(list[0].counters.connections_total(), 2);
        assert_eq!(list[0].counters.bytes_sent(), 5);
        reg.register("a", "http", "127.0.0.1:2".parse().ok());
        assert_eq!(reg.list().len(), 1);
        assert_eq!(reg.list()[0].kind, ServiceKind::Http);
    }
}
