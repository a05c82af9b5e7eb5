//! SIGHUP: the config file read again and applied — services added or removed on every loop,
//! the live keys (`threadpool_size`, `stall_threshold_ms`, `log`) applied, the keys that need a
//! restart (`metrics_addr`, `control`, `loops`) said so once.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use loopd_engine::{Loop, ThreadPool};
use loopd_observe::{ObserveHandle, ServiceRegistry};

use super::config_control::DaemonConfig;
use super::loops::{Command, LoopState, Peer};
use crate::config::{Config, Key};
use crate::service::ServiceKinds;
use crate::services;

/// Loop 0's extra state: the config, the registry and the other loops.
pub(super) struct Leader {
    /// The configuration in force (services, and the top-level keys; the live ones may also
    /// have been changed by `config.set`, so their value in force is read where it lives).
    pub(super) config: Config,
    /// The service kinds known (built-ins and the user's own), for the reloaded entries.
    pub(super) kinds: ServiceKinds,
    pub(super) registry: ServiceRegistry,
    pub(super) peers: Vec<Peer>,
    /// What `config.get` reports; updated on reload.
    pub(super) control: Arc<DaemonConfig>,
    pub(super) pool: Arc<ThreadPool>,
    pub(super) observe: ObserveHandle,
    /// Reload notes already given (key, the file's value): a key that needs a restart, or
    /// that the command line overrides, is reported once per value, not on every SIGHUP.
    pub(super) noted: Vec<(Key, String)>,
}

impl Leader {
    /// SIGHUP, top-level keys. A key the file sets decides, unless the command line or the
    /// environment fixed it (they win at startup, so they win on reload too); a key the file
    /// leaves out keeps its value in force. `threadpool_size`, `stall_threshold_ms`,
    /// `stall_sample_interval_ms` and `log` are applied live, as `config.set` does; `metrics_addr`, `control` and `loops` need a
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
        let interval_now =
            u64::try_from(self.observe.stall_sample_interval().as_millis()).unwrap_or(u64::MAX);
        let interval_new = new.stall_sample_interval_ms;
        if self.decides(new, Key::StallSampleIntervalMs, interval_new, interval_now) {
            self.observe
                .set_stall_sample_interval(Duration::from_millis(interval_new));
            tracing::info!(
                from = interval_now,
                to = interval_new,
                "SIGHUP: stall_sample_interval_ms changed"
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

/// SIGHUP: re-reads the config file; services added or removed on every loop, the others
/// untouched.
pub(super) fn reload(lp: &mut Loop, state: &Rc<RefCell<LoopState>>, leader: &Rc<RefCell<Leader>>) {
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
    // Every entry's kind must accept it before anything changes.
    let prepared = match super::prepare_services(&ld.kinds, &new.services) {
        Ok(p) => p,
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
        tracing::info!(service = %s.name, addr = ?s.addr, "SIGHUP: service removed");
        registry.unregister(&s.name);
    }
    st.stop(lp, &gone);
    let mut added = Vec::new();
    let names = services::names(&new.services);
    for ((svc, service), name) in new.services.iter().zip(prepared).zip(names) {
        if st.services.iter().any(|s| &s.config == svc) {
            continue;
        }
        let name = if st.services.iter().any(|s| s.name == name) {
            match svc.bind {
                Some(bind) => format!("{name}@{bind}"),
                None => format!("{name}@{}", st.services.len()),
            }
        } else {
            name
        };
        match st.lead(lp, svc, service, name, &registry) {
            Ok(plan) => added.push(plan),
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
