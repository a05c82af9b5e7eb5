//! The daemon's configuration: TOML file (`--config`, `$LOOPD_CONFIG`) with built-in
//! defaults, then flags on top. Every key is optional; unknown keys are errors, so a typo
//! never silently does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::THREADPOOL_MAX_SIZE;

/// Most loops a daemon runs.
pub const MAX_LOOPS: usize = 256;

/// Default metrics endpoint.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, so not also a `source` that `{:#}` would repeat).
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has wrong keys or values.
    #[error("bad config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its position.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("bad config: {0}")]
    Invalid(String),
    /// An environment variable has a value out of range (the message names it).
    #[error("{0}")]
    Environment(String),
}

/// Where `prime` computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimeMode {
    /// On the thread pool: the loop stays responsive.
    #[default]
    Pool,
    /// On the loop thread: blocks the loop (what the stall tooling must expose).
    Inline,
}

/// One `[[service]]` entry: a kind, an address, and the kind's own keys (checked by the kind's
/// factory, [`crate::service::ServiceKinds::prepare`]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServiceConfig {
    /// Its kind: `seq`, `prime`, `http`, or one registered with [`crate::service`].
    pub kind: String,
    /// Address to listen on; port 0 picks a free one. `None` (no `bind` key): a service
    /// without a listener (timers only, UDP, …), for kinds that do not need one.
    #[serde(default)]
    pub bind: Option<SocketAddr>,
    /// Every other key of the entry, for the kind's factory.
    #[serde(flatten)]
    pub options: toml::Table,
}

impl ServiceConfig {
    /// An entry of `kind` on `bind` with no options of its own.
    pub fn new(kind: impl Into<String>, bind: SocketAddr) -> ServiceConfig {
        ServiceConfig {
            kind: kind.into(),
            bind: Some(bind),
            options: toml::Table::new(),
        }
    }

    /// An entry of `kind` without a listener (no `bind`), with no options of its own.
    pub fn without_listener(kind: impl Into<String>) -> ServiceConfig {
        ServiceConfig {
            kind: kind.into(),
            bind: None,
            options: toml::Table::new(),
        }
    }

    /// The same entry with `key = value` among its options.
    pub fn with(mut self, key: &str, value: impl Into<toml::Value>) -> ServiceConfig {
        self.options.insert(key.to_string(), value.into());
        self
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    metrics_addr: Option<String>,
    control: Option<PathBuf>,
    threadpool_size: Option<usize>,
    loops: Option<usize>,
    stall_threshold_ms: Option<u64>,
    stall_sample_interval_ms: Option<u64>,
    log: Option<String>,
    #[serde(default)]
    service: Vec<ServiceConfig>,
}

/// A top-level key of the configuration (the `[[service]]` entries aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `metrics_addr` / `--metrics-addr`.
    MetricsAddr,
    /// `control` / `--control`.
    Control,
    /// `threadpool_size` / `--threadpool-size`, `$LOOPD_THREADPOOL_SIZE`.
    ThreadpoolSize,
    /// `loops` / `--loops`.
    Loops,
    /// `stall_threshold_ms` / `--stall-threshold`.
    StallThresholdMs,
    /// `stall_sample_interval_ms`.
    StallSampleIntervalMs,
    /// `log` / `--log`, `$LOOPD_LOG`, `$RUST_LOG`.
    Log,
}

impl Key {
    /// The key's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Key::MetricsAddr => "metrics_addr",
            Key::Control => "control",
            Key::ThreadpoolSize => "threadpool_size",
            Key::Loops => "loops",
            Key::StallThresholdMs => "stall_threshold_ms",
            Key::StallSampleIntervalMs => "stall_sample_interval_ms",
            Key::Log => "log",
        }
    }
}

/// Which [`Key`]s one layer of the configuration set: the file ([`Config::in_file`]), or the
/// command line and environment ([`Config::fixed`]), which win over the file at startup and
/// on every reload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keys(u8);

impl Keys {
    /// Whether `key` is in the set.
    pub fn contains(self, key: Key) -> bool {
        self.0 & (1 << key as u8) != 0
    }

    /// Adds `key`.
    pub fn insert(&mut self, key: Key) {
        self.0 |= 1 << key as u8;
    }
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Metrics endpoint; `None` disables it (`metrics_addr = ""`).
    pub metrics_addr: Option<SocketAddr>,
    /// Control socket path; `None`: the default path rule.
    pub control: Option<PathBuf>,
    /// Thread-pool size.
    pub threadpool_size: usize,
    /// Event loops, one thread each, sharing the services' ports (`SO_REUSEPORT`).
    pub loops: usize,
    /// Stall threshold in milliseconds.
    pub stall_threshold_ms: u64,
    /// How often a stalled loop's stack is sampled, milliseconds.
    pub stall_sample_interval_ms: u64,
    /// Log filter (env-filter syntax).
    pub log: String,
    /// Services to run.
    pub services: Vec<ServiceConfig>,
    /// The file it came from, for reloads.
    pub source: Option<PathBuf>,
    /// The keys the file set (a key it leaves out is not changed by a reload).
    pub in_file: Keys,
    /// The keys the command line or the environment set: they win over the file.
    pub fixed: Keys,
}

impl Default for Config {
    fn default() -> Self {
        let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Config {
            metrics_addr: DEFAULT_METRICS_ADDR.parse().ok(),
            control: None,
            threadpool_size: crate::engine::THREADPOOL_DEFAULT_SIZE,
            loops: 1,
            stall_threshold_ms: 100,
            stall_sample_interval_ms: proto::methods::DEFAULT_STALL_SAMPLE_INTERVAL_MS,
            log: "info".to_string(),
            services: vec![
                ServiceConfig::new("seq", local(7070)),
                ServiceConfig::new("prime", local(7071)).with("mode", "pool"),
                ServiceConfig::new("http", local(7080)).with("root", "."),
            ],
            source: None,
            in_file: Keys::default(),
            fixed: Keys::default(),
        }
    }
}

impl Config {
    /// Reads `path` over the defaults. A file with `[[service]]` entries runs exactly those.
    ///
    /// # Errors
    /// Unreadable file, bad TOML, unknown keys, invalid values.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Config::parse(&text, Some(path))
    }

    /// Parses TOML text over the defaults.
    ///
    /// # Errors
    /// Bad TOML, unknown keys, invalid values.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let shown = path.map_or_else(|| PathBuf::from("<config>"), Path::to_path_buf);
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })?;
        let mut c = Config::default();
        for (key, set) in [
            (Key::MetricsAddr, file.metrics_addr.is_some()),
            (Key::Control, file.control.is_some()),
            (Key::ThreadpoolSize, file.threadpool_size.is_some()),
            (Key::Loops, file.loops.is_some()),
            (Key::StallThresholdMs, file.stall_threshold_ms.is_some()),
            (
                Key::StallSampleIntervalMs,
                file.stall_sample_interval_ms.is_some(),
            ),
            (Key::Log, file.log.is_some()),
        ] {
            if set {
                c.in_file.insert(key);
            }
        }
        if let Some(addr) = file.metrics_addr {
            c.metrics_addr = parse_metrics_addr(&addr)?;
        }
        if file.control.is_some() {
            c.control = file.control;
        }
        if let Some(n) = file.threadpool_size {
            c.threadpool_size = n;
        }
        if let Some(n) = file.loops {
            c.loops = n;
        }
        if let Some(ms) = file.stall_threshold_ms {
            c.stall_threshold_ms = ms;
        }
        if let Some(ms) = file.stall_sample_interval_ms {
            c.stall_sample_interval_ms = ms;
        }
        if let Some(log) = file.log {
            c.log = log;
        }
        if !file.service.is_empty() {
            c.services = file.service;
        }
        c.source = path.map(Path::to_path_buf);
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges and consistency.
    ///
    /// # Errors
    /// The first problem found, in words.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !threadpool_size_in_range(self.threadpool_size) {
            return Err(ConfigError::Invalid(format!(
                "threadpool_size = {} is out of range 1..={THREADPOOL_MAX_SIZE}",
                self.threadpool_size
            )));
        }
        if !(1..=MAX_LOOPS).contains(&self.loops) {
            return Err(ConfigError::Invalid(format!(
                "loops = {} is out of range 1..={MAX_LOOPS}",
                self.loops
            )));
        }
        if self.stall_threshold_ms == 0 {
            return Err(ConfigError::Invalid(
                "stall_threshold_ms must be at least 1".into(),
            ));
        }
        let max = proto::methods::MAX_STALL_SAMPLE_INTERVAL_MS;
        if !(1..=max).contains(&self.stall_sample_interval_ms) {
            return Err(ConfigError::Invalid(format!(
                "stall_sample_interval_ms = {} is out of range 1..={max}",
                self.stall_sample_interval_ms
            )));
        }
        for (i, s) in self.services.iter().enumerate() {
            let Some(bind) = s.bind else {
                continue;
            };
            let clash = self.services[..i]
                .iter()
                .any(|o| o.bind == Some(bind) && bind.port() != 0);
            if clash {
                return Err(ConfigError::Invalid(format!("two services bind {bind}")));
            }
        }
        Ok(())
    }
}

/// The one range rule of the thread-pool size, whoever gives it (file, flag, environment).
fn threadpool_size_in_range(n: usize) -> bool {
    (1..=THREADPOOL_MAX_SIZE).contains(&n)
}

/// Environment variable that sets the thread-pool size (as libuv's `UV_THREADPOOL_SIZE`).
pub const THREADPOOL_SIZE_ENV: &str = "LOOPD_THREADPOOL_SIZE";

/// Reads [`THREADPOOL_SIZE_ENV`]: `None` when unset or empty. The daemon reads it, not the
/// pool, and holds it to the rule of `--threadpool-size` and the `threadpool_size` key.
///
/// # Errors
/// A value that is not a whole number in 1..=1024, named with the variable.
pub fn threadpool_size_from_env() -> Result<Option<usize>, ConfigError> {
    let Some(raw) = std::env::var_os(THREADPOOL_SIZE_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    match text.trim().parse::<usize>() {
        Ok(n) if threadpool_size_in_range(n) => Ok(Some(n)),
        Ok(n) => Err(ConfigError::Environment(format!(
            "{THREADPOOL_SIZE_ENV}={n} is out of range 1..={THREADPOOL_MAX_SIZE}"
        ))),
        Err(_) => Err(ConfigError::Environment(format!(
            "{THREADPOOL_SIZE_ENV}={text:?} is not a whole number in 1..={THREADPOOL_MAX_SIZE}"
        ))),
    }
}

pub use crate::observe::env::parse_millis;

/// `""` or `"off"` disables the endpoint.
pub fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    crate::observe::env::parse_metrics_addr(s).map_err(ConfigError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_three_services_on_loopback() {
        let c = Config::parse("", None).unwrap();
        let kinds: Vec<_> = c.services.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, vec!["seq", "prime", "http"]);
        assert!(c
            .services
            .iter()
            .all(|s| s.bind.is_some_and(|b| b.ip().is_loopback())));
        assert_eq!(c.metrics_addr, "127.0.0.1:9464".parse().ok());
        assert_eq!(c.stall_threshold_ms, 100);
    }

    #[test]
    fn services_in_the_file_replace_the_defaults() {
        let c = Config::parse(
            "stall_threshold_ms = 50\n[[service]]\nkind = \"prime\"\nbind = \"127.0.0.1:0\"\nmode = \"inline\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.services[0].options.get("mode"), Some(&"inline".into()));
        assert_eq!(c.stall_threshold_ms, 50);
    }

    #[test]
    fn the_keys_a_file_sets_are_recorded() {
        let c = Config::parse("log = \"debug\"\nloops = 2\n", None).unwrap();
        for (key, set) in [
            (Key::Log, true),
            (Key::Loops, true),
            (Key::ThreadpoolSize, false),
            (Key::MetricsAddr, false),
            (Key::Control, false),
            (Key::StallThresholdMs, false),
        ] {
            assert_eq!(c.in_file.contains(key), set, "{}", key.name());
        }
        assert_eq!(c.fixed, Keys::default());
    }

    #[test]
    fn the_threadpool_variable_follows_the_rule_of_the_key() {
        // The only test of this binary that touches the variable.
        let read = |v: &str| {
            std::env::set_var(THREADPOOL_SIZE_ENV, v);
            let r = threadpool_size_from_env().map_err(|e| e.to_string());
            std::env::remove_var(THREADPOOL_SIZE_ENV);
            r
        };
        assert_eq!(read("").unwrap(), None);
        assert_eq!(read("1").unwrap(), Some(1));
        assert_eq!(read(" 1024 ").unwrap(), Some(1024));
        for bad in ["0", "1025", "99999", "-1", "four", "1.5"] {
            let e = read(bad).unwrap_err();
            assert!(
                e.starts_with("LOOPD_THREADPOOL_SIZE=") && e.contains("1..=1024"),
                "{e}"
            );
        }
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::parse("stall_treshold_ms = 5", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stall_treshold_ms"), "{e}");
        let e = Config::parse("threadpool_size = 0", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("threadpool_size"), "{e}");
        // A service entry's kind and own keys are its kind's to check: `crate::service`.
        let c = Config::parse(
            "[[service]]\nkind = \"ftp\"\nbind = \"127.0.0.1:1\"\nanything = 1",
            None,
        )
        .unwrap();
        assert_eq!(c.services[0].kind, "ftp");
        assert!(c.services[0].options.contains_key("anything"));
    }
}
