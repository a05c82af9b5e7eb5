//! The subcommands, one module per group, and what they share: the connection settings, the
//! output, the Ctrl-C flag.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use proto::MethodCall;
use serde::de::DeserializeOwned;

use crate::cli::{Cli, Command};
use crate::client::{default_socket_path, Client, ClientError};
use crate::output::{Out, Style};

pub mod config;
pub mod docs;
pub mod handles;
pub mod ls;
pub mod ping;
pub mod profile;
pub mod record;
pub mod stalls;
pub mod status;
pub mod threadpool;
pub mod trace;
pub mod watch;

/// `--timeout` when not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `--timeout` of `ls` when not given: per endpoint, all asked at once.
pub const LS_TIMEOUT: Duration = Duration::from_secs(1);

/// A usage error found after parsing (e.g. a `config set` value of the wrong kind): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What every subcommand gets: where the daemon is, how long to wait, where output goes.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The control socket.
    pub socket: PathBuf,
    /// Connect / answer timeout.
    pub timeout: Duration,
    /// stdout, text or JSON.
    pub out: Out,
}

impl Ctx {
    /// Connects and reads the daemon's hello.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(&self.socket, self.timeout)
    }

    /// One call, printed: the raw result with `--json`, else `render(typed result)`.
    ///
    /// # Errors
    ///
    /// The client's errors, or a broken stdout.
    pub fn show<T: DeserializeOwned>(
        &self,
        call: MethodCall,
        render: impl FnOnce(&T, &Style, u64) -> String,
    ) -> anyhow::Result<()> {
        let mut client = self.connect()?;
        let method = call.name();
        let value = client.call(call)?;
        if self.out.json {
            self.out.json(&value)?;
            return Ok(());
        }
        let typed = decode::<T>(&client, method, value)?;
        self.out.text(&render(&typed, &self.out.style, now_ms()))?;
        Ok(())
    }
}

/// Runs the parsed command line.
///
/// # Errors
///
/// [`ClientError`] (exit 1 or 3), [`UsageError`] (exit 2), anything else (exit 1).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let explicit_socket = cli.socket.clone();
    let ctx = Ctx {
        socket: cli.socket.unwrap_or_else(default_socket_path),
        timeout: cli.timeout.unwrap_or(DEFAULT_TIMEOUT),
        out: Out {
            json: cli.json,
            style: Style::detect(cli.color),
        },
    };
    match cli.command {
        Command::Ls(args) => {
            // `$LOOPD_SOCKET` names one socket, not the directory: only `--socket` narrows `ls`.
            let place = match (args.dir, explicit_socket) {
                (Some(dir), _) => ls::Where::Dir(dir),
                (None, Some(socket)) => ls::Where::Socket(socket),
                (None, None) => ls::Where::Dir(proto::discovery::runtime_dir()),
            };
            ls::run(&ctx, &place, cli.timeout.unwrap_or(LS_TIMEOUT))
        }
        Command::Status => status::run(&ctx),
        Command::Handles(args) => handles::run_handles(&ctx, &args),
        Command::Requests(args) => handles::run_requests(&ctx, &args),
        Command::Threadpool => threadpool::run(&ctx),
        Command::Stalls(args) => stalls::run(&ctx, &args),
        Command::Watch(args) => watch::run(&ctx, &args),
        Command::Record(args) => record::run(&ctx, &args),
        Command::Trace(args) => trace::run(&ctx, &args),
        Command::Config(c) => config::run(&ctx, &c),
        Command::Ping => ping::run(&ctx),
        Command::Completions { shell } => docs::completions(&ctx, shell),
        Command::Man => docs::man(&ctx),
    }
}

/// The result of `method` as `T`.
///
/// # Errors
///
/// [`ClientError::Protocol`] when it does not have `T`'s shape.
pub fn decode<T: DeserializeOwned>(
    client: &Client,
    method: &str,
    value: serde_json::Value,
) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Protocol {
        path: client.path().to_owned(),
        detail: format!("the answer to `{method}` does not have the expected shape: {e}"),
    })
}

/// Now, unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A flag set by the first SIGINT/SIGTERM, so a streaming command can stop cleanly; a second
/// one terminates the process at once.
///
/// # Errors
///
/// When the handler cannot be installed.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Order matters: the conditional shutdown sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
            .context("installing the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&flag))
            .context("installing the Ctrl-C handler")?;
    }
    Ok(flag)
}

/// Whether Ctrl-C was pressed.
pub fn stopped(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// How often a streaming command wakes up to notice Ctrl-C or its deadline.
pub const TICK: Duration = Duration::from_millis(200);
