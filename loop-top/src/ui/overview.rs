//! The Overview: per loop, ELU, lag, iterations, phase times, handle and request counts; then
//! the thread pool, the services and the totals.

use proto::{LoopStatus, Status};
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::format::{bar, bytes, clip, count, pct, secs, spark};

/// The sparkline's full scale is at least this lag (seconds), so a healthy loop draws low.
const LAG_SCALE_FLOOR: f64 = 0.01;

/// Draws the overview of `status` in `area`.
pub fn draw(f: &mut Frame<'_>, area: Rect, status: &Status) {
    let w = usize::from(area.width);
    let mut lines: Vec<Line<'static>> = Vec::new();
    for l in &status.loops {
        loop_lines(&mut lines, l, w);
        lines.push(Line::from(""));
    }
    if status.loops.is_empty() {
        lines.push(Line::from("the daemon reports no loops").dim());
    }
    pool_lines(&mut lines, status, w);
    f.render_widget(Paragraph::new(lines), area);
}

fn elu_style(u: f64) -> Style {
    if u >= 0.9 {
        Style::new().red().bold()
    } else if u >= 0.6 {
        Style::new().yellow()
    } else {
        Style::new().green()
    }
}

fn lag_style(p99: f64) -> Style {
    if p99 >= 0.1 {
        Style::new().red().bold()
    } else if p99 >= 0.02 {
        Style::new().yellow()
    } else {
        Style::new()
    }
}

fn loop_lines(lines: &mut Vec<Line<'static>>, l: &LoopStatus, w: usize) {
    let u = &l.utilization;
    let bw = (w / 5).clamp(8, 30);
    let mut tail = format!(
        " (10s {} 60s {})  iter/s {}",
        pct(u.last_10s),
        pct(u.last_60s),
        rate(l.iterations_per_second),
    );
    let events = format!(
        "  events {} ({} waiting)",
        count(l.events),
        l.events_waiting
    );
    if 12 + bw + 5 + tail.chars().count() + events.chars().count() <= w {
        tail.push_str(&events);
    }
    lines.push(Line::from(vec![
        Span::styled(format!("loop {:<2} ", l.loop_index), Style::new().bold()),
        Span::raw("ELU "),
        Span::styled(bar(u.last_1s, bw), elu_style(u.last_1s)),
        Span::styled(format!(" {:>4}", pct(u.last_1s)), elu_style(u.last_1s)),
        Span::raw(tail),
    ]));
    let sw = (w / 3).clamp(8, 60);
    lines.push(Line::from(vec![
        Span::raw("lag     "),
        Span::styled(
            spark(&l.lag_recent, sw, LAG_SCALE_FLOOR),
            lag_style(l.lag.max),
        ),
        Span::styled(
            format!(
                "  p50 {}  p99 {}  max {}",
                secs(l.lag.p50),
                secs(l.lag.p99),
                secs(l.lag.max)
            ),
            lag_style(l.lag.p99),
        ),
    ]));

    // Phases | handles | requests, side by side.
    // Handles and requests need 21 columns each; phases take the rest, up to 55%.
    let left = w
        .saturating_sub(2 * 21 + 4)
        .clamp(30, (w * 11 / 20).max(30));
    let right = w.saturating_sub(left + 4) / 2;
    let pbar = left.saturating_sub(8 + 2 + 8 + 8).clamp(4, 30);
    let left = left.max(8 + pbar + 18);
    let mut rows: Vec<Vec<Span<'static>>> = Vec::new();
    rows.push(vec![Span::styled(
        pad(
            &format!(
                "phase   {:<pbar$}  {:>7} {:>7}",
                clip(
                    if pbar >= 18 {
                        "time per iteration"
                    } else {
                        "time"
                    },
                    pbar
                ),
                "mean",
                "p99"
            ),
            left,
        ),
        Style::new().bold(),
    )]);
    let max_mean = l
        .phases
        .iter()
        .map(|p| p.duration.mean)
        .filter(|m| m.is_finite())
        .fold(0.0_f64, f64::max);
    for p in &l.phases {
        let frac = if max_mean > 0.0 {
            p.duration.mean / max_mean
        } else {
            0.0
        };
        rows.push(vec![
            Span::raw(format!("{:<8}", p.phase.as_str())),
            Span::styled(bar(frac, pbar), Style::new().cyan()),
            Span::raw(pad(
                &format!("  {:>7} {:>7}", secs(p.duration.mean), secs(p.duration.p99)),
                left.saturating_sub(8 + pbar),
            )),
        ]);
    }
    let mut hcol = vec![pad("handles   open   act", right)];
    for (t, c) in &l.handles {
        hcol.push(pad(
            &format!(
                "{:<8}{:>6}{:>6}",
                t.as_str(),
                count(c.total),
                count(c.active)
            ),
            right,
        ));
    }
    let mut rcol = vec![pad("requests  act   done", right)];
    for (t, c) in &l.requests {
        rcol.push(pad(
            &format!(
                "{:<9}{:>5}{:>7}",
                t.as_str(),
                count(c.active),
                count(c.completed_total)
            ),
            right,
        ));
    }
    let n = rows.len().max(hcol.len()).max(rcol.len());
    for i in 0..n {
        let mut spans = rows
            .get(i)
            .cloned()
            .unwrap_or_else(|| vec![Span::raw(" ".repeat(left))]);
        if right >= 10 {
            let style = if i == 0 {
                Style::new().bold()
            } else {
                Style::new()
            };
            spans.push(Span::raw(" │ "));
            spans.push(Span::styled(
                hcol.get(i).cloned().unwrap_or_else(|| " ".repeat(right)),
                style,
            ));
            spans.push(Span::raw(" "));
            spans.push(Span::styled(
                rcol.get(i).cloned().unwrap_or_default(),
                style,
            ));
        }
        lines.push(Line::from(spans));
    }
}

fn pool_lines(lines: &mut Vec<Line<'static>>, s: &Status, w: usize) {
    let tp = &s.threadpool;
    let frac = if tp.size > 0 {
        f64::from(tp.busy_workers) / f64::from(tp.size)
    } else {
        0.0
    };
    let style = if tp.size > 0 && tp.busy_workers >= tp.size {
        Style::new().red().bold()
    } else {
        Style::new().green()
    };
    lines.push(Line::from(vec![
        Span::styled("pool    ", Style::new().bold()),
        Span::raw("busy "),
        Span::styled(bar(frac, (w / 6).clamp(6, 20)), style),
        Span::raw(format!(
            " {}/{}  queue {}  wait p99 {}  tasks {}  panics {}",
            tp.busy_workers,
            tp.size,
            tp.queue_depth,
            secs(tp.queue_wait.p99),
            count(tp.tasks_total),
            tp.panics_total
        )),
    ]));
    if !s.services.is_empty() {
        let svc: Vec<String> = s
            .services
            .iter()
            .map(|v| {
                format!(
                    "{} {} {} conn {}↓ {}↑",
                    v.name,
                    v.bind,
                    v.connections,
                    bytes(v.bytes_received_total),
                    bytes(v.bytes_sent_total)
                )
            })
            .collect();
        lines.push(Line::from(vec![
            Span::styled("services ", Style::new().bold()),
            Span::raw(svc.join(" · ")),
        ]));
    }
    let panics: u64 = s.loops.iter().map(|l| l.callback_panics_total).sum();
    lines.push(Line::from(vec![
        Span::styled("totals  ", Style::new().bold()),
        Span::raw(format!(
            "stalls {}  callback panics {}  uptime {}",
            s.stalls_total,
            panics,
            secs(s.uptime_seconds)
        )),
    ]));
}

fn rate(r: f64) -> String {
    if !r.is_finite() {
        "-".into()
    } else if r < 100.0 {
        format!("{r:.1}")
    } else {
        count(r.round() as u64)
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.chars().take(width).collect()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}
