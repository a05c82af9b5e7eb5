//! The daemon's side of `config.get` / `config.set`: the configuration in force, and the log
//! filter applied through the subscriber's reload handle.

use std::sync::{Mutex, PoisonError};

use loopd_observe::ConfigControl;

use super::LogFilterSetter;
use crate::config::Config;
use crate::services;

/// The daemon's side of `config.get` / `config.set`.
pub(super) struct DaemonConfig {
    pub(super) current: Mutex<Config>,
    pub(super) set_log_filter: LogFilterSetter,
}

impl DaemonConfig {
    /// The log filter in force.
    pub(super) fn log(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .clone()
    }

    /// Records the log filter now in force (after `set_log_filter` accepted it).
    pub(super) fn set_log(&self, filter: &str) {
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
                kind: services::proto_kind(&s.kind),
                bind: s.bind.map(|b| b.to_string()).unwrap_or_default(),
                mode: option_text(&s.options, "mode"),
                root: option_text(&s.options, "root"),
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

/// A service option as `config.get` shows it: strings as they are, other values in TOML.
fn option_text(options: &toml::Table, key: &str) -> Option<String> {
    options.get(key).map(|v| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}
