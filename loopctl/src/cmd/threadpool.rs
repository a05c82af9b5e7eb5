//! `loopctl threadpool`: the pool, its latencies, tasks by outcome and every worker.

use std::fmt::Write as _;

use proto::{Latency, MethodCall, TaskOutcome, ThreadPoolStatus, WorkerState};

use crate::cmd::status::alarm_paint;
use crate::cmd::Ctx;
use crate::output::{self, Align, Cell, Paint, Style, Table};

/// Runs `threadpool`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.show(MethodCall::ThreadPool, render)
}

/// `threadpool` as text.
pub fn render(tp: &ThreadPoolStatus, style: &Style, now_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  size {} · busy {} · queued {} · panics {} · snapshot {}",
        style.paint(Paint::Bold, "THREAD POOL"),
        tp.size,
        tp.busy_workers,
        tp.queue_depth,
        style.paint(alarm_paint(tp.panics_total), &tp.panics_total.to_string()),
        output::ago(tp.as_of_ms, now_ms)
    );
    if tp.slow_limit > 0 {
        // Slow work (prime, getaddrinfo) is held to part of the pool; fs always finds a worker.
        let queued: Vec<String> = tp
            .queued_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "slow work  busy {} · at most {} · queued by kind: {}",
            tp.slow_busy_workers,
            tp.slow_limit,
            if queued.is_empty() {
                "-".to_owned()
            } else {
                queued.join(", ")
            }
        );
    }

    out.push('\n');
    let mut lat = Table::new(&[
        ("LATENCY", Align::Left),
        ("COUNT", Align::Right),
        ("MEAN", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
        ("TOTAL", Align::Right),
    ]);
    for (name, l) in [("queue wait", &tp.queue_wait), ("run", &tp.run)] {
        lat.row(latency_row(name, l));
    }
    out.push_str(&lat.render(style));

    out.push('\n');
    out.push_str(&output::title(style, "WORKERS"));
    let mut w = Table::new(&[
        ("WORKER", Align::Left),
        ("STATE", Align::Left),
        ("TASK", Align::Left),
        ("REQUEST", Align::Right),
        ("BUSY FOR", Align::Right),
        ("IDLE TOTAL", Align::Right),
        ("DONE", Align::Right),
        ("LABEL", Align::Left),
    ]);
    for worker in &tp.workers {
        let paint = match worker.state {
            WorkerState::Busy => Paint::Green,
            _ => Paint::Dim,
        };
        w.row(vec![
            format!("loopd-worker-{}", worker.index).into(),
            Cell::new(worker.state.to_string(), paint),
            output::opt(worker.task_kind.as_ref()).into(),
            output::opt(worker.request_id).into(),
            worker
                .busy_for_seconds
                .map_or_else(|| "-".to_owned(), output::duration)
                .into(),
            output::duration(worker.idle_seconds_total).into(),
            worker.tasks_done.to_string().into(),
            output::opt(worker.task_label.as_deref()).into(),
        ]);
    }
    out.push_str(&w.render(style));

    if !tp.tasks.is_empty() {
        out.push('\n');
        out.push_str(&output::title(style, "TASKS"));
        let mut t = Table::new(&[
            ("KIND", Align::Left),
            ("OUTCOME", Align::Left),
            ("COUNT", Align::Right),
        ]);
        for task in &tp.tasks {
            let paint = match task.outcome {
                TaskOutcome::Ok => Paint::Plain,
                TaskOutcome::Cancelled => Paint::Dim,
                _ => Paint::Red,
            };
            t.row(vec![
                task.kind.to_string().into(),
                Cell::new(task.outcome.to_string(), paint),
                task.count.to_string().into(),
            ]);
        }
        out.push_str(&t.render(style));
    }
    out
}

fn latency_row(name: &str, l: &Latency) -> Vec<Cell> {
    vec![
        name.into(),
        l.count.to_string().into(),
        output::duration(l.mean).into(),
        output::duration(l.p50).into(),
        output::duration(l.p99).into(),
        output::duration(l.max).into(),
        output::duration(l.sum).into(),
    ]
}
