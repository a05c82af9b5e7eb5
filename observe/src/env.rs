//! The environment variables through which a program that is not the daemon (an example
//! built on loopd, a libuv program with the agent) is observed, and their parsers — shared by
//! `loopd::observe_loops`, the agent and the daemon's own flags.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ObserveOptions;

pub use crate::control::SOCKET_ENV;

/// Where the metrics endpoint listens (none when unset, empty or `off`).
pub const METRICS_ADDR_ENV: &str = "LOOPD_METRICS_ADDR";
/// The stall threshold (`100ms`, `1s`, `250`).
pub const STALL_THRESHOLD_ENV: &str = "LOOPD_STALL_THRESHOLD";
/// How often a stalled loop's stack is sampled (ms, or a duration like `50ms`), 1 ms..=1 s.
pub const STALL_SAMPLE_INTERVAL_ENV: &str = "LOOPD_STALL_SAMPLE_INTERVAL";

/// A bad value in one of the variables; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// Milliseconds from `100ms`, `1s` or a bare number of milliseconds; at least 1 ms.
///
/// # Errors
/// Not a number with an optional `ms` / `s` unit, zero, or too large.
///
/// # Examples
///
/// ```
/// use loopd_observe::env::parse_millis;
/// assert_eq!(parse_millis("250"), Ok(250));
/// assert_eq!(parse_millis("2s"), Ok(2000));
/// assert!(parse_millis("soon").is_err());
/// ```
pub fn parse_millis(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000)
    } else {
        (s, 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 100ms or 1s"))?;
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("`{s}` must be between 1 ms and 584 million years")),
        Some(ms) => Ok(ms),
    }
}

/// A metrics address; `""` or `"off"` disables the endpoint.
///
/// # Errors
/// Not an address like `127.0.0.1:9464`.
pub fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() || s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("metrics_addr `{s}` is not an address like 127.0.0.1:9464"))
}

/// This program's file name, kept to `[A-Za-z0-9._-]` and 40 characters.
pub fn program_file_name() -> String {
    let exe = std::env::current_exe().ok();
    let name = exe
        .as_deref()
        .and_then(std::path::Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "program".into());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

/// Options for observing a program's loops as its environment asks: the control socket at
/// `$LOOPD_SOCKET`, else `<program>-<pid>.sock` beside the daemon's `control.sock`; the
/// metrics endpoint only when `$LOOPD_METRICS_ADDR` is set; the stall threshold from
/// `$LOOPD_STALL_THRESHOLD` (default 100 ms), the stall sampling interval from
/// `$LOOPD_STALL_SAMPLE_INTERVAL` (default 10 ms). `host.kind` is `kind`. The caller fills
/// `input`.
///
/// # Errors
/// A variable with a bad value.
pub fn program_options(kind: &str) -> Result<ObserveOptions, EnvError> {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let metrics_addr = match var(METRICS_ADDR_ENV) {
        Some(addr) => parse_metrics_addr(&addr).map_err(|reason| EnvError {
            var: METRICS_ADDR_ENV,
            reason,
        })?,
        None => None,
    };
    let mut options = ObserveOptions {
        metrics_addr,
        control_name: Some(format!("{}-{}", program_file_name(), std::process::id())),
        ..ObserveOptions::default()
    };
    options.host.kind = kind.into();
    if let Some(text) = var(STALL_THRESHOLD_ENV) {
        let ms = parse_millis(&text).map_err(|reason| EnvError {
            var: STALL_THRESHOLD_ENV,
            reason,
        })?;
        options.stall_threshold = Duration::from_millis(ms);
    }
    if let Some(text) = var(STALL_SAMPLE_INTERVAL_ENV) {
        let max = proto::methods::MAX_STALL_SAMPLE_INTERVAL_MS;
        let ms = parse_millis(&text)
            .and_then(|ms| {
                if (1..=max).contains(&ms) {
                    Ok(ms)
                } else {
                    Err(format!("{ms} ms is out of range 1..={max}"))
                }
            })
            .map_err(|reason| EnvError {
                var: STALL_SAMPLE_INTERVAL_ENV,
                reason,
            })?;
        options.stall_sample_interval = Duration::from_millis(ms);
    }
    Ok(options)
}
