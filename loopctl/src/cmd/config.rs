//! `loopctl config get` and `loopctl config set KEY VALUE`.

use proto::methods::{
    ConfigSetParams, MAX_STALL_SAMPLE_INTERVAL_MS, MAX_STALL_THRESHOLD_MS, MAX_THREADPOOL_SIZE,
};
use proto::{ConfigResult, MethodCall};

use crate::cli::{parse_duration, ConfigCommand, ConfigKey};
use crate::cmd::{Ctx, UsageError};
use crate::output::{self, Align, Cell, Paint, Style, Table};

/// Runs `config get` or `config set`.
///
/// # Errors
///
/// [`UsageError`] for a value of the wrong kind, the client's errors, or a broken stdout.
pub fn run(ctx: &Ctx, cmd: &ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Get => ctx.show(MethodCall::ConfigGet, render),
        ConfigCommand::Set { key, value } => {
            let params = set_params(*key, value)?;
            let key = key.name();
            ctx.show(
                MethodCall::ConfigSet(params),
                |c: &ConfigResult, style: &Style, now_ms| {
                    format!("set {key}\n\n{}", render(c, style, now_ms))
                },
            )
        }
    }
}

/// The `config.set` params for `KEY VALUE`; the daemon checks the ranges again.
///
/// # Errors
///
/// [`UsageError`] when `value` is not of the key's kind or out of range.
pub fn set_params(key: ConfigKey, value: &str) -> Result<ConfigSetParams, UsageError> {
    let mut p = ConfigSetParams::default();
    let name = key.name();
    match key {
        ConfigKey::ThreadpoolSize => {
            let n = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_THREADPOOL_SIZE).contains(n))
                .ok_or_else(|| {
                    UsageError(format!(
                        "invalid value `{value}` for {name}: expected a whole number from 1 to {MAX_THREADPOOL_SIZE}"
                    ))
                })?;
            p.threadpool_size = Some(n);
        }
        ConfigKey::StallThresholdMs => {
            p.stall_threshold_ms = Some(millis(name, value, MAX_STALL_THRESHOLD_MS)?);
        }
        ConfigKey::StallSampleIntervalMs => {
            p.stall_sample_interval_ms = Some(millis(name, value, MAX_STALL_SAMPLE_INTERVAL_MS)?);
        }
        ConfigKey::LogFilter => {
            if value.trim().is_empty() {
                return Err(UsageError(format!(
                    "invalid value for {name}: expected a filter like `info` or `info,loopd::engine=debug`"
                )));
            }
            p.log_filter = Some(value.to_owned());
        }
    }
    Ok(p)
}

/// Milliseconds from 1 to `max`: a bare number is ms here (the key says so); `250ms` or `1s`
/// also work.
fn millis(name: &str, value: &str, max: u64) -> Result<u64, UsageError> {
    let ms = match value.trim().parse::<u64>() {
        Ok(ms) => Some(ms),
        Err(_) => parse_duration(value)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
    };
    ms.filter(|ms| (1..=max).contains(ms)).ok_or_else(|| {
        UsageError(format!(
            "invalid value `{value}` for {name}: expected milliseconds from 1 to {max} (or a duration like 250ms, 2s)"
        ))
    })
}

/// The configuration as `key value` lines and a services table.
pub fn render(c: &ConfigResult, style: &Style, now_ms: u64) -> String {
    let settable = |v: String| format!("{v}  {}", style.paint(Paint::Dim, "(settable)"));
    let mut out = output::pairs(
        style,
        &[
            ("threadpool_size", settable(c.threadpool_size.to_string())),
            (
                "stall_threshold_ms",
                settable(format!(
                    "{} ({})",
                    c.stall_threshold_ms,
                    output::duration(c.stall_threshold_ms as f64 / 1e3)
                )),
            ),
            (
                "stall_sample_interval_ms",
                settable(c.stall_sample_interval_ms.to_string()),
            ),
            ("log_filter", settable(c.log_filter.clone())),
            ("metrics_addr", c.metrics_addr.clone()),
            ("control_path", c.control_path.clone()),
            ("config_file", output::opt(c.config_file.as_deref())),
            ("as_of", output::ago(c.as_of_ms, now_ms)),
        ],
    );
    if !c.services.is_empty() {
        out.push('\n');
        out.push_str(&output::title(style, "SERVICES"));
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("KIND", Align::Left),
            ("BIND", Align::Left),
            ("MODE", Align::Left),
            ("ROOT", Align::Left),
        ]);
        for s in &c.services {
            t.row(vec![
                Cell::new(s.name.clone(), Paint::Cyan),
                s.kind.to_string().into(),
                s.bind.clone().into(),
                output::opt(s.mode.as_deref()).into(),
                output::opt(s.root.as_deref()).into(),
            ]);
        }
        out.push_str(&t.render(style));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        let p = set_params(ConfigKey::ThreadpoolSize, "8").unwrap();
        assert_eq!(p.threadpool_size, Some(8));
        assert!(set_params(ConfigKey::ThreadpoolSize, "0").is_err());
        assert!(set_params(ConfigKey::ThreadpoolSize, "eight").is_err());
        assert!(set_params(ConfigKey::ThreadpoolSize, "1025").is_err());
        let p = set_params(ConfigKey::StallThresholdMs, "250").unwrap();
        assert_eq!(p.stall_threshold_ms, Some(250));
        let p = set_params(ConfigKey::StallThresholdMs, "2s").unwrap();
        assert_eq!(p.stall_threshold_ms, Some(2000));
        assert!(set_params(ConfigKey::StallThresholdMs, "0").is_err());
        let p = set_params(ConfigKey::LogFilter, "debug").unwrap();
        assert_eq!(p.log_filter.as_deref(), Some("debug"));
        assert!(set_params(ConfigKey::LogFilter, " ").is_err());
    }
}
