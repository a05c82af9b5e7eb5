//! `loopctl watch`: one status line per update until Ctrl-C, from the `subscribe` stream.

use std::time::Instant;

use proto::methods::{SubscribeParams, Topic};
use proto::{MethodCall, ServerEvent, StallEvent, StallEventKind, Status};
use serde_json::Value;

use crate::cli::WatchArgs;
use crate::cmd::status::{elu_paint, stall_summary};
use crate::cmd::{decode, now_ms, stop_flag, stopped, Ctx, TICK};
use crate::output::{self, Paint, Style};

/// Runs `watch`: prints the current status at once, then every pushed one.
///
/// # Errors
///
/// The client's errors (the daemon going away or falling silent), or a broken stdout.
pub fn run(ctx: &Ctx, args: &WatchArgs) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let mut client = ctx.connect()?;
    let json = ctx.out.json;
    let style = ctx.out.style;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut shown = 0u64;

    // One status document/line per update: the raw params with --json, else a table row.
    let show = |value: Value, client: &crate::client::Client| -> anyhow::Result<()> {
        if json {
            ctx.out.json_line(&value)?;
        } else {
            let status: Status = decode(client, proto::methods::STATUS, value)?;
            ctx.out.text(&render_lines(&status, &style))?;
        }
        Ok(())
    };

    if !json {
        ctx.out.text(&header(&style))?;
    }
    let first = client.call(MethodCall::Status)?;
    show(first, &client)?;
    shown += 1;
    if shown >= limit {
        return Ok(());
    }

    // Stall events are pushed as they happen; `--json` keeps to one document shape.
    let topics = if json {
        vec![Topic::Status]
    } else {
        vec![Topic::Status, Topic::Stalls]
    };
    let interval_ms = u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX);
    client.call(MethodCall::Subscribe(SubscribeParams {
        topics,
        interval_ms: Some(interval_ms),
    }))?;

    // Updates come every interval; silence for much longer means the daemon is stuck.
    let patience = args.interval * 2 + ctx.timeout;
    let mut last_update = Instant::now();
    while !stopped(&stop) {
        let Some(n) = client.next_notification(Instant::now() + TICK)? else {
            if last_update.elapsed() > patience {
                return Err(client.timeout_error("send a status update").into());
            }
            continue;
        };
        last_update = Instant::now();
        let raw = n.params.clone().unwrap_or(Value::Null);
        match ServerEvent::from_notification(n) {
            Ok(ServerEvent::Status(_)) => {
                show(raw, &client)?;
                shown += 1;
                if shown >= limit {
                    break;
                }
            }
            Ok(ServerEvent::Stalls(ev)) if !json => {
                ctx.out.text(&render_stall_event(&ev, &style, now_ms()))?;
            }
            Ok(ServerEvent::Dropped(d)) if !json => {
                ctx.out.text(&format!(
                    "{}\n",
                    style.paint(
                        Paint::Yellow,
                        &format!(
                            "(missed {} updates: this terminal reads too slowly)",
                            d.count
                        )
                    )
                ))?;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(crate::client::ClientError::Protocol {
                    path: client.path().to_owned(),
                    detail: e.to_string(),
                }
                .into())
            }
        }
    }
    Ok(())
}

/// Column widths of a watch line (fixed: lines stream, they cannot be aligned afterwards).
const COLUMNS: [(&str, usize); 12] = [
    ("TIME", 8),
    ("LOOP", 4),
    ("ITER/S", 8),
    ("ELU", 6),
    ("LAG p99", 8),
    ("LAG max", 8),
    ("HANDLES", 7),
    ("ACTIVE", 6),
    ("REQS", 5),
    ("POOL", 7),
    ("QUEUED", 6),
    ("STALLS", 6),
];

/// The header line of `watch`.
pub fn header(style: &Style) -> String {
    let mut line = String::new();
    for (i, (name, w)) in COLUMNS.iter().enumerate() {
        push_cell(&mut line, style, Paint::Bold, name, *w, i == 0);
    }
    line.push_str("  ");
    line.push_str(&style.paint(Paint::Bold, "STALL NOW"));
    line.push('\n');
    line
}

/// One line per loop for a status update.
pub fn render_lines(s: &Status, style: &Style) -> String {
    let mut out = String::new();
    let tp = &s.threadpool;
    for l in &s.loops {
        let handles: u64 = l.handles.values().map(|h| h.total).sum();
        let active: u64 = l.handles.values().map(|h| h.active).sum();
        let reqs: u64 = l.requests.values().map(|r| r.active).sum();
        let cells: [(String, Paint); 12] = [
            (output::utc_time(s.as_of_ms), Paint::Dim),
            (l.loop_index.to_string(), Paint::Plain),
            (output::rate(l.iterations_per_second), Paint::Plain),
            (
                output::percent(l.utilization.last_1s),
                elu_paint(l.utilization.last_1s),
            ),
            (output::duration(l.lag.p99), Paint::Plain),
            (output::duration(l.lag.max), Paint::Plain),
            (handles.to_string(), Paint::Plain),
            (active.to_string(), Paint::Plain),
            (reqs.to_string(), Paint::Plain),
            (format!("{}/{}", tp.busy_workers, tp.size), Paint::Plain),
            (tp.queue_depth.to_string(), Paint::Plain),
            (l.stalls_total.to_string(), Paint::Plain),
        ];
        let mut line = String::new();
        for (i, ((text, paint), (_, w))) in cells.iter().zip(COLUMNS).enumerate() {
            push_cell(&mut line, style, *paint, text, w, i == 0);
        }
        line.push_str("  ");
        match &l.stall_in_progress {
            Some(stall) => line.push_str(&style.paint(Paint::Red, &stall_summary(stall))),
            None => line.push('-'),
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A pushed stall event as one line, stamped with the time it was received.
pub fn render_stall_event(ev: &StallEvent, style: &Style, received_ms: u64) -> String {
    let (what, paint) = match ev.event {
        StallEventKind::Opened => ("opened", Paint::Red),
        StallEventKind::Closed => ("closed", Paint::Yellow),
        StallEventKind::Other(ref s) => (s.as_str(), Paint::Yellow),
    };
    format!(
        "{}  {} {}\n",
        style.paint(Paint::Dim, &output::utc_time(received_ms)),
        style.paint(paint, &format!("stall {what}:")),
        stall_summary(&ev.stall)
    )
}

/// Appends `text` padded to `width`: left-aligned in the first column, right-aligned after.
fn push_cell(
    line: &mut String,
    style: &Style,
    paint: Paint,
    text: &str,
    width: usize,
    first: bool,
) {
    let pad = " ".repeat(width.saturating_sub(text.chars().count()));
    if first {
        line.push_str(&style.paint(paint, text));
        line.push_str(&pad);
    } else {
        line.push_str("  ");
        line.push_str(&pad);
        line.push_str(&style.paint(paint, text));
    }
}
