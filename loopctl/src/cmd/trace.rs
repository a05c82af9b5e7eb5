//! `loopctl trace -o FILE`: the flight recorder as a Chrome trace, for Perfetto.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use proto::methods::TraceParams;
use proto::MethodCall;
use serde_json::{json, Value};

use crate::cli::TraceArgs;
use crate::cmd::Ctx;
use crate::output;

/// Runs `trace`.
///
/// # Errors
///
/// The client's errors, a file that cannot be written, or a broken stdout.
pub fn run(ctx: &Ctx, args: &TraceArgs) -> anyhow::Result<()> {
    let last_ms = args
        .last
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
    let mut client = ctx.connect()?;
    let trace = client.call(MethodCall::Trace(TraceParams {
        last_ms,
        stall: args.stall,
    }))?;
    let events = event_count(&trace);

    let to_stdout = args.output == Path::new("-");
    let bytes = if to_stdout {
        let text = serde_json::to_string(&trace)?;
        ctx.out.text(&text)?;
        ctx.out.text("\n")?;
        return Ok(());
    } else {
        write_json(&args.output, &trace)
            .with_context(|| format!("cannot write {}", args.output.display()))?
    };

    if ctx.out.json {
        ctx.out.json(&json!({
            "file": args.output,
            "bytes": bytes,
            "events": events,
        }))?;
        return Ok(());
    }
    ctx.out.text(&format!(
        "wrote {} ({} trace events, {})\nopen it: https://ui.perfetto.dev → Open trace file (or chrome://tracing → Load)\n",
        args.output.display(),
        events,
        output::bytes(bytes)
    ))?;
    Ok(())
}

/// Writes `value` to `path` and returns the size written.
fn write_json(path: &Path, value: &Value) -> anyhow::Result<u64> {
    let mut w = BufWriter::new(File::create(path)?);
    serde_json::to_writer(&mut w, value)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The number of events in a Chrome trace: the JSON object form (`{"traceEvents": [...]}`) or
/// the JSON array form.
fn event_count(trace: &Value) -> usize {
    match trace {
        Value::Array(events) => events.len(),
        Value::Object(o) => o
            .get("traceEvents")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        _ => 0,
    }
}
