//! `loopctl record -o FILE`: the `subscribe` stream saved as NDJSON, for `loop-top --replay`.
//!
//! The format (documented in loopctl/README.md):
//!
//! - line 1, the header: `{"loopctl_record":1,"loopctl_version":…,"started_at_ms":…,
//!   "socket":…,"topics":[…],"interval_ms":…,"hello":{…}}`;
//! - every further line, one notification as received, with its receive time added:
//!   `{"received_at_ms":…,"jsonrpc":"2.0","method":"status","params":{…}}`. Without
//!   `received_at_ms` it is the JSON-RPC notification itself, so `proto::Message::parse` reads
//!   it as is (unknown members are ignored).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use proto::methods::{SubscribeParams, Topic};
use proto::{Hello, MethodCall, JSONRPC_VERSION};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::RecordArgs;
use crate::cmd::{now_ms, stop_flag, stopped, Ctx, TICK};
use crate::output;

/// The record format's version, the value of the header's `loopctl_record`.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of a record file.
#[derive(Debug, Serialize)]
pub struct Header<'a> {
    /// [`FORMAT_VERSION`]; its presence marks the file as a loopctl recording.
    pub loopctl_record: u32,
    /// The loopctl that wrote it.
    pub loopctl_version: &'a str,
    /// When recording started, unix ms (the client's clock).
    pub started_at_ms: u64,
    /// The daemon's socket.
    pub socket: &'a Path,
    /// The topics subscribed.
    pub topics: &'a [Topic],
    /// The status/handles push interval in force, ms.
    pub interval_ms: u64,
    /// The daemon's hello.
    pub hello: &'a Hello,
}

/// A recorded notification: the notification's members plus when it was received.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// When loopctl read it, unix ms (the client's clock).
    pub received_at_ms: u64,
    /// Always `"2.0"`: the rest of the line is the notification as sent.
    pub jsonrpc: &'a str,
    /// The notification: `status`, `handles`, `stalls`, `dropped`, …
    pub method: &'a str,
    /// Its params.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<&'a Value>,
}

/// Runs `record`.
///
/// # Errors
///
/// The client's errors, a file that cannot be written, or a broken stdout.
pub fn run(ctx: &Ctx, args: &RecordArgs) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let mut client = ctx.connect()?;

    let topics = vec![Topic::Status, Topic::Handles, Topic::Stalls];
    let interval_ms = u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX);
    let sub = client.call(MethodCall::Subscribe(SubscribeParams {
        topics: topics.clone(),
        interval_ms: Some(interval_ms),
    }))?;
    let interval_ms = sub
        .get("interval_ms")
        .and_then(Value::as_u64)
        .unwrap_or(interval_ms);
    // The recording starts once subscribed.
    let started = Instant::now();
    let started_at_ms = now_ms();
    let deadline = args.duration.map(|d| started + d);

    let to_stdout = args.output == Path::new("-");
    let mut sink = Sink::open(&args.output, to_stdout)?;
    sink.write(&Header {
        loopctl_record: FORMAT_VERSION,
        loopctl_version: env!("CARGO_PKG_VERSION"),
        started_at_ms,
        socket: client.path(),
        topics: &topics,
        interval_ms,
        hello: client.hello(),
    })?;

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let patience = args.interval * 2 + ctx.timeout;
    let mut last_update = Instant::now();
    let mut failure = None;
    loop {
        let now = Instant::now();
        if stopped(&stop) || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let wake = deadline.map_or(now + TICK, |d| d.min(now + TICK));
        match client.next_notification(wake) {
            Ok(Some(n)) => {
                last_update = Instant::now();
                sink.write(&Line {
                    received_at_ms: now_ms(),
                    jsonrpc: JSONRPC_VERSION,
                    method: &n.method,
                    params: n.params.as_ref(),
                })?;
                *counts.entry(n.method).or_default() += 1;
            }
            Ok(None) if last_update.elapsed() > patience => {
                failure = Some(client.timeout_error("send an update"));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    sink.finish()?;

    let total: u64 = counts.values().sum();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = summary_text(&args.output, total, &counts, elapsed);
    if let Some(e) = failure {
        // The file is whole up to here; say so before the error.
        eprintln!("loopctl: {summary}");
        return Err(e.into());
    }
    if ctx.out.json && !to_stdout {
        ctx.out.json(&json!({
            "file": args.output,
            "notifications": total,
            "by_method": counts,
            "duration_seconds": elapsed,
        }))?;
    } else if to_stdout {
        eprintln!("loopctl: {summary}");
    } else {
        ctx.out.text(&format!(
            "{summary}\nreplay it: loop-top --replay {}\n",
            args.output.display()
        ))?;
    }
    Ok(())
}

fn summary_text(path: &Path, total: u64, counts: &BTreeMap<String, u64>, secs: f64) -> String {
    let by: Vec<String> = counts.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" ({})", by.join(", "))
    };
    let to = if path == Path::new("-") {
        "stdout".to_owned()
    } else {
        path.display().to_string()
    };
    format!(
        "recorded {total} notifications{by} over {} to {to}",
        output::duration(secs)
    )
}

/// Where the recording goes; every line is flushed so an interrupted recording stays whole.
struct Sink {
    out: Box<dyn Write>,
    path: PathBuf,
}

impl Sink {
    fn open(path: &Path, to_stdout: bool) -> anyhow::Result<Sink> {
        let out: Box<dyn Write> = if to_stdout {
            Box::new(io::stdout())
        } else {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            Box::new(BufWriter::new(file))
        };
        Ok(Sink {
            out,
            path: path.to_owned(),
        })
    }

    fn write<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        let line = proto::encode(value)?;
        self.out
            .write_all(&line)
            .and_then(|()| self.out.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
