//! `loopctl status`: the daemon at a glance.

use std::fmt::Write as _;

use proto::{LoopStatus, MethodCall, Stall, Status};

use crate::cmd::Ctx;
use crate::output::{self, Align, Cell, Paint, Style, Table};

/// Runs `status`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.show(MethodCall::Status, render)
}

/// What serves the socket when it is not the daemon: ` · agent in python3.11 (libuv 1.44.2)`.
fn host_line(host: &proto::Host) -> String {
    match host.kind.as_str() {
        "" | "loopd" => String::new(),
        kind => {
            let libuv = host
                .libuv_version
                .as_deref()
                .map(|v| format!(" (libuv {v})"))
                .unwrap_or_default();
            format!(" · {kind} in {}{libuv}", host.program)
        }
    }
}

/// `status` as text; `now_ms` dates the snapshot.
pub fn render(s: &Status, style: &Style, now_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}{} · pid {} · up {} · stalls {} · snapshot {}",
        style.paint(Paint::Bold, "loopd"),
        if s.server_version.is_empty() {
            "(version unknown)"
        } else {
            &s.server_version
        },
        host_line(&s.host),
        s.pid,
        output::duration(s.uptime_seconds),
        s.stalls_total,
        output::ago(s.as_of_ms, now_ms)
    );

    out.push('\n');
    out.push_str(&loops_table(&s.loops).render(style));

    for l in &s.loops {
        if let Some(stall) = &l.stall_in_progress {
            out.push('\n');
            out.push_str(&style.paint(Paint::Red, "STALL IN PROGRESS"));
            out.push_str("  ");
            out.push_str(&stall_summary(stall));
            out.push('\n');
        }
    }

    for l in &s.loops {
        out.push('\n');
        out.push_str(&output::title(
            style,
            &format!("PHASES (loop {})", l.loop_index),
        ));
        out.push_str(&phases_table(l).render(style));
        if !l.handles.is_empty() || !l.requests.is_empty() {
            out.push('\n');
            out.push_str(&output::title(
                style,
                &format!("HANDLES AND REQUESTS (loop {})", l.loop_index),
            ));
            out.push_str(&objects_table(l).render(style));
        }
    }

    let tp = &s.threadpool;
    out.push('\n');
    let _ = writeln!(
        out,
        "{}  size {} · busy {} · queued {} · tasks {} · panics {} · queue wait p50 {} p99 {} max {}",
        style.paint(Paint::Bold, "THREAD POOL"),
        tp.size,
        busy(style, tp.busy_workers, tp.size),
        tp.queue_depth,
        tp.tasks_total,
        count_alarm(style, tp.panics_total),
        output::duration(tp.queue_wait.p50),
        output::duration(tp.queue_wait.p99),
        output::duration(tp.queue_wait.max),
    );

    if !s.services.is_empty() {
        out.push('\n');
        out.push_str(&output::title(style, "SERVICES"));
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("KIND", Align::Left),
            ("BIND", Align::Left),
            ("CONNS", Align::Right),
            ("ACCEPTED", Align::Right),
            ("RECEIVED", Align::Right),
            ("SENT", Align::Right),
        ]);
        for svc in &s.services {
            t.row(vec![
                Cell::new(svc.name.clone(), Paint::Cyan),
                svc.kind.to_string().into(),
                svc.bind.clone().into(),
                svc.connections.to_string().into(),
                svc.connections_total.to_string().into(),
                output::bytes(svc.bytes_received_total).into(),
                output::bytes(svc.bytes_sent_total).into(),
            ]);
        }
        out.push_str(&t.render(style));
    }
    out
}

fn loops_table(loops: &[LoopStatus]) -> Table {
    let mut t = Table::new(&[
        ("LOOP", Align::Right),
        ("ITER/S", Align::Right),
        ("ELU 1s", Align::Right),
        ("10s", Align::Right),
        ("60s", Align::Right),
        ("LAG p50", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
        ("EVENTS", Align::Right),
        ("HANDLES", Align::Right),
        ("ACTIVE", Align::Right),
        ("REQS", Align::Right),
        ("STALLS", Align::Right),
        ("PANICS", Align::Right),
    ]);
    for l in loops {
        let handles: u64 = l.handles.values().map(|h| h.total).sum();
        let active: u64 = l.handles.values().map(|h| h.active).sum();
        let reqs: u64 = l.requests.values().map(|r| r.active).sum();
        t.row(vec![
            l.loop_index.to_string().into(),
            output::rate(l.iterations_per_second).into(),
            Cell::new(
                output::percent(l.utilization.last_1s),
                elu_paint(l.utilization.last_1s),
            ),
            output::percent(l.utilization.last_10s).into(),
            output::percent(l.utilization.last_60s).into(),
            output::duration(l.lag.p50).into(),
            output::duration(l.lag.p99).into(),
            output::duration(l.lag.max).into(),
            l.events.to_string().into(),
            handles.to_string().into(),
            active.to_string().into(),
            reqs.to_string().into(),
            Cell::new(
                l.stalls_total.to_string(),
                if l.stall_in_progress.is_some() {
                    Paint::Red
                } else {
                    Paint::Plain
                },
            ),
            Cell::new(
                l.callback_panics_total.to_string(),
                alarm_paint(l.callback_panics_total),
            ),
        ]);
    }
    t
}

fn phases_table(l: &LoopStatus) -> Table {
    let mut t = Table::new(&[
        ("PHASE", Align::Left),
        ("CALLBACKS", Align::Right),
        ("MEAN", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
    ]);
    for p in &l.phases {
        t.row(vec![
            p.phase.to_string().into(),
            p.callbacks_total.to_string().into(),
            output::duration(p.duration.mean).into(),
            output::duration(p.duration.p50).into(),
            output::duration(p.duration.p99).into(),
            output::duration(p.duration.max).into(),
        ]);
    }
    t
}

fn objects_table(l: &LoopStatus) -> Table {
    let mut t = Table::new(&[
        ("KIND", Align::Left),
        ("TYPE", Align::Left),
        ("OPEN", Align::Right),
        ("ACTIVE", Align::Right),
        ("OPENED", Align::Right),
        ("CLOSED", Align::Right),
        ("DONE", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
    ]);
    for (ty, h) in &l.handles {
        t.row(vec![
            "handle".into(),
            ty.to_string().into(),
            h.total.to_string().into(),
            h.active.to_string().into(),
            h.opened_total.to_string().into(),
            h.closed_total.to_string().into(),
        ]);
    }
    for (ty, r) in &l.requests {
        t.row(vec![
            "request".into(),
            ty.to_string().into(),
            "".into(),
            r.active.to_string().into(),
            "".into(),
            "".into(),
            r.completed_total.to_string().into(),
            output::duration(r.duration.p50).into(),
            output::duration(r.duration.p99).into(),
        ]);
    }
    t
}

/// One line about a stall: `#3 loop 0 · timers · timer #17 "prime inline" · 2.50s (threshold 100ms)`.
pub fn stall_summary(s: &Stall) -> String {
    let mut out = format!(
        "#{} loop {} · {} · {}",
        s.id,
        s.loop_index,
        s.phase,
        target(s)
    );
    let _ = write!(
        out,
        " · {}{} (threshold {})",
        output::duration(s.duration_seconds),
        if s.in_progress { " so far" } else { "" },
        output::duration(s.threshold_ms as f64 / 1e3)
    );
    out
}

/// What stalled: `timer #17 "prime inline"`, `work request #5`.
pub fn target(s: &Stall) -> String {
    let ty = if s.target_type.is_empty() {
        "callback"
    } else {
        &s.target_type
    };
    let mut out = match (s.handle_id, s.request_id) {
        (Some(h), _) => format!("{ty} #{h}"),
        (None, Some(r)) => format!("{ty} request #{r}"),
        (None, None) => ty.to_owned(),
    };
    if let Some(label) = &s.label {
        let _ = write!(out, " {label:?}");
    }
    out
}

/// Paint for an event-loop utilization: yellow from 50 %, red from 90 %.
pub fn elu_paint(elu: f64) -> Paint {
    if elu >= 0.9 {
        Paint::Red
    } else if elu >= 0.5 {
        Paint::Yellow
    } else {
        Paint::Plain
    }
}

/// Paint for a counter of bad things: red when non-zero.
pub fn alarm_paint(n: u64) -> Paint {
    if n > 0 {
        Paint::Red
    } else {
        Paint::Plain
    }
}

fn count_alarm(style: &Style, n: u64) -> String {
    style.paint(alarm_paint(n), &n.to_string())
}

fn busy(style: &Style, busy: u32, size: u32) -> String {
    let paint = if size > 0 && busy >= size {
        Paint::Yellow
    } else {
        Paint::Plain
    };
    style.paint(paint, &busy.to_string())
}
