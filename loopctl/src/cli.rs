//! The command line: every subcommand, flag and its help text (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use proto::methods::{self, HandleSort};
use proto::{HandleType, RequestType};

const EXIT_CODES: &str = "\
Exit codes:
  0  ok (also when the reader of stdout goes away, e.g. `loopctl handles | head -1`)
  1  the daemon answered with an error (or an answer loopctl cannot use)
  2  usage error
  3  cannot reach the daemon: no socket, refused, timed out, connection closed

Socket: --socket, else $LOOPD_SOCKET, else $XDG_RUNTIME_DIR/loopd/control.sock,
else /tmp/loopd-<uid>/control.sock (the daemon's own rule).
`ls` looks at every socket of that directory (--dir to look elsewhere, --socket for one):
exit 0 when at least one answered, 3 when none did.";

/// Inspect and control a running loopd over its control socket.
#[derive(Debug, Parser)]
#[command(
    name = "loopctl",
    version,
    about = "Inspect and control a running loopd over its control socket",
    long_about = "Inspect and control a running loopd (an observable libuv-style event-loop \
                  daemon) over its control socket: loop status, handles, requests, the thread \
                  pool, stalls with stacks, live watch, recordings for `loop-top --replay`, \
                  Chrome traces and runtime configuration.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// The daemon's control socket [default: $LOOPD_SOCKET, else the daemon's default path].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print the daemon's raw result as JSON (one document per call; NDJSON for `watch`).
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up connecting or waiting for an answer after this long (e.g. 500ms, 5s, 1m)
    /// [default: 5s; `ls`: 1s per endpoint].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// When to colour the output (auto: only on a terminal, and never with NO_COLOR set).
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every loopd and observed program on this machine: one line per endpoint of the runtime
    /// directory (program, pid, kind, loops, uptime, ELU, lag, stalls, handles, requests, pool).
    Ls(LsArgs),
    /// The daemon at a glance: loops, utilization, lag, phases, handles, thread pool, services.
    Status,
    /// List handles (timers, sockets, …) with their state, age, bytes and creation site.
    Handles(HandlesArgs),
    /// List in-flight requests (writes, fs, work, …).
    Requests(RequestsArgs),
    /// The thread pool: queue, latencies, tasks by outcome, every worker.
    Threadpool,
    /// The stall in progress and recent stalls, with the loop thread's sampled stack.
    Stalls(StallsArgs),
    /// Live status lines until Ctrl-C (uses the `subscribe` stream).
    Watch(WatchArgs),
    /// Save the `subscribe` stream (status, handles, stalls) as NDJSON for `loop-top --replay`.
    Record(RecordArgs),
    /// Save the flight recorder as a Chrome trace (open it in Perfetto).
    Trace(TraceArgs),
    /// Show or change the runtime configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check that the daemon answers, and how fast.
    Ping,
    /// Print a shell completion script (e.g. `loopctl completions bash > /etc/bash_completion.d/loopctl`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; e.g. `loopctl man | man -l -`).
    Man,
}

/// `ls` options.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Look for sockets in this directory [default: $XDG_RUNTIME_DIR/loopd, else
    /// /tmp/loopd-$UID].
    #[arg(long, value_name = "DIR", conflicts_with = "socket")]
    pub dir: Option<PathBuf>,
}

/// `handles` filters; the daemon filters, sorts and limits.
#[derive(Debug, Args)]
pub struct HandlesArgs {
    /// Only handles of this type.
    #[arg(long = "type", value_name = "TYPE", value_parser = handle_type_names())]
    pub handle_type: Option<String>,
    /// Only active handles.
    #[arg(long, conflicts_with = "inactive")]
    pub active: bool,
    /// Only inactive handles.
    #[arg(long)]
    pub inactive: bool,
    /// Sort order (bytes and last activity: most first).
    #[arg(long, value_enum, value_name = "KEY")]
    pub sort: Option<SortKey>,
    /// At most this many rows (the total still counts every match).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Only this loop.
    #[arg(long = "loop", value_name = "INDEX")]
    pub loop_index: Option<u32>,
}

/// `handles --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SortKey {
    /// Creation order.
    Id,
    /// Oldest first.
    Age,
    /// By type, then id.
    Type,
    /// Most bytes read first.
    #[value(alias = "bytes-read")]
    BytesRead,
    /// Most bytes written first.
    #[value(alias = "bytes-written")]
    BytesWritten,
    /// Most recently active first.
    #[value(alias = "last-activity")]
    LastActivity,
}

impl From<SortKey> for HandleSort {
    fn from(k: SortKey) -> HandleSort {
        match k {
            SortKey::Id => HandleSort::Id,
            SortKey::Age => HandleSort::Age,
            SortKey::Type => HandleSort::Type,
            SortKey::BytesRead => HandleSort::BytesRead,
            SortKey::BytesWritten => HandleSort::BytesWritten,
            SortKey::LastActivity => HandleSort::LastActivity,
        }
    }
}

/// `requests` filters.
#[derive(Debug, Args)]
pub struct RequestsArgs {
    /// Only requests of this type.
    #[arg(long = "type", value_name = "TYPE", value_parser = request_type_names())]
    pub request_type: Option<String>,
    /// At most this many rows, oldest first.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Only this loop.
    #[arg(long = "loop", value_name = "INDEX")]
    pub loop_index: Option<u32>,
}

/// `stalls` options.
#[derive(Debug, Args)]
pub struct StallsArgs {
    /// At most this many recent stalls (newest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Leave out the sampled stacks.
    #[arg(long)]
    pub no_stacks: bool,
    /// Stall ID's profile: its hottest functions by self and total samples.
    #[arg(long, value_name = "ID", group = "profile_view")]
    pub profile: Option<u64>,
    /// Stall ID's profile as folded stacks (`frame;frame;frame count`, root first), for
    /// flamegraph.pl or inferno-flamegraph.
    #[arg(long, value_name = "ID", group = "profile_view")]
    pub folded: Option<u64>,
    /// Stall ID's profile as a speedscope file (open it at <https://www.speedscope.app>);
    /// needs -o.
    #[arg(long, value_name = "ID", group = "profile_view", requires = "output")]
    pub speedscope: Option<u64>,
    /// Stall ID's profile as a flame graph SVG (open it in a browser); needs -o.
    #[arg(long, value_name = "ID", group = "profile_view", requires = "output")]
    pub svg: Option<u64>,
    /// Where --folded, --speedscope or --svg write (`-` for stdout; --folded default: stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `watch` options.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between updates (100ms..60s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many status updates (default: until Ctrl-C).
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
}

/// `record` options.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The file to write (`-` for stdout); replaced if it exists.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, short = 'd', value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Time between status and handles snapshots (100ms..60s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
}

/// `trace` options.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The file to write (`-` for stdout); replaced if it exists.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Only the last this-long of the flight recorder (default: all of it).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "stall")]
    pub last: Option<Duration>,
    /// Instead, the window kept with stall ID: from 2 s before it opened to its end, with its
    /// stack samples on the loop's track (the last 16 closed stalls keep one).
    #[arg(long, value_name = "ID")]
    pub stall: Option<u64>,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the configuration in force.
    Get,
    /// Change a runtime setting; prints the configuration after the change.
    Set {
        /// The setting.
        #[arg(value_enum)]
        key: ConfigKey,
        /// The new value (threadpool_size: 1..=1024; stall_threshold_ms: ms or a duration like
        /// 250ms; stall_sample_interval_ms: 1..=1000 ms; log_filter: a RUST_LOG-style filter).
        value: String,
    },
}

/// The settings `config set` can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ConfigKey {
    /// Thread-pool workers, 1..=1024.
    #[value(alias = "threadpool-size")]
    ThreadpoolSize,
    /// Stall threshold in ms, 1..=600000.
    #[value(alias = "stall-threshold-ms", alias = "stall_threshold")]
    StallThresholdMs,
    /// How often a stalled loop's stack is sampled, ms, 1..=1000.
    #[value(alias = "stall-sample-interval-ms", alias = "stall_sample_interval")]
    StallSampleIntervalMs,
    /// The log filter, e.g. `info,loopd::engine=debug`.
    #[value(alias = "log-filter", alias = "log")]
    LogFilter,
}

impl ConfigKey {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ConfigKey::ThreadpoolSize => "threadpool_size",
            ConfigKey::StallThresholdMs => "stall_threshold_ms",
            ConfigKey::StallSampleIntervalMs => "stall_sample_interval_ms",
            ConfigKey::LogFilter => "log_filter",
        }
    }
}

fn handle_type_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(HandleType::NAMES)
}

fn request_type_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(RequestType::NAMES)
}

/// Parses `250ms`, `5s`, `1.5s`, `2m`, `1h`, `10us`; a bare number is seconds.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{s}` is not a duration; use e.g. 500ms, 5s, 1.5s, 2m, 1h");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|_| bad())
}

/// [`parse_duration`] limited to the daemon's subscription interval range.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    let ms = d.as_millis();
    if !(u128::from(methods::MIN_INTERVAL_MS)..=u128::from(methods::MAX_INTERVAL_MS)).contains(&ms)
    {
        return Err(format!(
            "the interval must be between {}ms and {}s, got {s}",
            methods::MIN_INTERVAL_MS,
            methods::MAX_INTERVAL_MS / 1000
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_interval("50ms").is_err());
        assert!(parse_interval("2m").is_err());
        assert_eq!(parse_interval("100ms"), Ok(Duration::from_millis(100)));
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "loopctl",
            "handles",
            "--type",
            "tcp",
            "--sort",
            "bytes-read",
            "--limit",
            "3",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Handles(h) = cli.command else {
            panic!()
        };
        assert_eq!(h.handle_type.as_deref(), Some("tcp"));
        assert_eq!(h.sort, Some(SortKey::BytesRead));
        assert!(Cli::try_parse_from(["loopctl", "handles", "--type", "tpc"]).is_err());
        assert!(Cli::try_parse_from(["loopctl", "handles", "--active", "--inactive"]).is_err());
        assert!(Cli::try_parse_from(["loopctl", "config", "set", "threadpool-size", "8"]).is_ok());
    }
}
