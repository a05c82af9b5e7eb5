//! The list views — handles, requests, thread pool, stalls — on the one table component.

use proto::{HandleInfo, RequestInfo, RequestState, Stall, WorkerInfo, WorkerState};
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::format::{bytes, count, pct, secs, since};
use super::table::{self, Ctx, RowView, Spec};
use crate::app::App;
use crate::state::rows::{handle_state, stall_target, top_frame};
use crate::state::stalls::{hot_tree, hottest, ProfileState};

/// Seconds a stall has run: its own figure, or longer by the clock while it is in progress.
pub fn stall_age(s: &Stall, clock_ms: u64) -> f64 {
    if s.in_progress && s.started_at_ms > 0 && clock_ms > s.started_at_ms {
        let by_clock = (clock_ms - s.started_at_ms) as f64 / 1000.0;
        s.duration_seconds.max(by_clock)
    } else {
        s.duration_seconds
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl RowView for HandleInfo {
    fn cells(&self, ctx: &Ctx) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.handle_type.to_string(),
            self.label.clone().unwrap_or_default(),
            handle_state(self).to_owned(),
            opt(self.fd),
            secs(self.age_seconds),
            bytes(self.bytes_read),
            bytes(self.bytes_written),
            self.last_activity_ms
                .map_or_else(|| "-".to_owned(), |t| since(ctx.clock_ms, t)),
        ]
    }

    fn style(&self, _ctx: &Ctx) -> Style {
        if self.closing {
            Style::new().dark_gray()
        } else if !self.active {
            Style::new().dim()
        } else {
            Style::new()
        }
    }
}

impl RowView for RequestInfo {
    fn cells(&self, _ctx: &Ctx) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.request_type.to_string(),
            self.state.to_string(),
            self.label.clone().unwrap_or_default(),
            opt(self.handle_id),
            secs(self.age_seconds),
            self.site.clone(),
        ]
    }

    fn style(&self, _ctx: &Ctx) -> Style {
        match self.state {
            RequestState::Running => Style::new().green(),
            RequestState::Queued => Style::new().yellow(),
            _ => Style::new().dim(),
        }
    }
}

impl RowView for WorkerInfo {
    fn cells(&self, _ctx: &Ctx) -> Vec<String> {
        vec![
            self.index.to_string(),
            self.state.to_string(),
            opt(self.task_kind.as_ref()),
            opt(self.request_id),
            self.task_label.clone().unwrap_or_default(),
            self.busy_for_seconds.map_or_else(|| "-".to_owned(), secs),
            secs(self.idle_seconds_total),
            count(self.tasks_done),
        ]
    }

    fn style(&self, _ctx: &Ctx) -> Style {
        match self.state {
            WorkerState::Busy if self.busy_for_seconds.is_some_and(|s| s >= 1.0) => {
                Style::new().red()
            }
            WorkerState::Busy => Style::new().green(),
            _ => Style::new(),
        }
    }
}

impl RowView for Stall {
    fn cells(&self, ctx: &Ctx) -> Vec<String> {
        let dur = secs(stall_age(self, ctx.clock_ms));
        vec![
            self.id.to_string(),
            self.loop_index.to_string(),
            self.phase.to_string(),
            stall_target(self),
            self.label.clone().unwrap_or_default(),
            format!("{} ago", since(ctx.clock_ms, self.started_at_ms)),
            if self.in_progress {
                format!("{dur}+")
            } else {
                dur
            },
            top_frame(self),
        ]
    }

    fn style(&self, _ctx: &Ctx) -> Style {
        if self.in_progress {
            Style::new().red().bold()
        } else {
            Style::new()
        }
    }
}

fn waiting(app: &App, what: &str) -> String {
    if app.replay_state().is_some() {
        format!("no {what} in this recording at this point")
    } else {
        format!("no {what} (yet)")
    }
}

/// The Handles view.
pub fn handles(f: &mut Frame<'_>, area: Rect, app: &App, ctx: &Ctx) {
    let m = app.model();
    let empty = if m.handles.received() {
        "no handles match".to_owned()
    } else {
        waiting(app, "handles")
    };
    table::draw(
        f,
        area,
        &Spec {
            title: "Handles",
            rows: &m.handles.rows,
            view: &app.handles,
            total: Some(m.handles.total),
            empty: &empty,
            filtering: app.filtering,
        },
        ctx,
    );
}

/// The Requests view.
pub fn requests(f: &mut Frame<'_>, area: Rect, app: &App, ctx: &Ctx) {
    let m = app.model();
    let empty = if m.requests.received() {
        "no requests in flight".to_owned()
    } else {
        waiting(app, "requests")
    };
    table::draw(
        f,
        area,
        &Spec {
            title: "Requests",
            rows: &m.requests.rows,
            view: &app.requests,
            total: Some(m.requests.total),
            empty: &empty,
            filtering: app.filtering,
        },
        ctx,
    );
}

/// The Thread pool view: a summary, then one row per worker.
pub fn threadpool(f: &mut Frame<'_>, area: Rect, app: &App, ctx: &Ctx) {
    let m = app.model();
    let mut lines = Vec::new();
    if let Some(tp) = &m.threadpool {
        let frac = if tp.size > 0 {
            f64::from(tp.busy_workers) / f64::from(tp.size)
        } else {
            0.0
        };
        let busy_style = if tp.size > 0 && tp.busy_workers >= tp.size {
            Style::new().red().bold()
        } else {
            Style::new().green()
        };
        lines.push(Line::from(vec![
            Span::raw("busy "),
            Span::styled(super::format::bar(frac, 16), busy_style),
            Span::raw(format!(
                " {}/{} ({})  queue {}  panics {}",
                tp.busy_workers,
                tp.size,
                pct(frac),
                tp.queue_depth,
                tp.panics_total
            )),
        ]));
        lines.push(Line::from(format!(
            "queue wait p50 {} p99 {} max {}   run p50 {} p99 {} max {}",
            secs(tp.queue_wait.p50),
            secs(tp.queue_wait.p99),
            secs(tp.queue_wait.max),
            secs(tp.run.p50),
            secs(tp.run.p99),
            secs(tp.run.max)
        )));
        let tasks: Vec<String> = tp
            .tasks
            .iter()
            .map(|t| format!("{} {} {}", t.kind, t.outcome, count(t.count)))
            .collect();
        lines.push(Line::from(if tasks.is_empty() {
            "tasks: none finished".to_owned()
        } else {
            format!("tasks: {}", tasks.join(" · "))
        }));
    } else if let Some(s) = &m.status {
        let tp = &s.threadpool;
        lines.push(Line::from(format!(
            "busy {}/{}  queue {}  wait p99 {}  (waiting for the worker list)",
            tp.busy_workers,
            tp.size,
            tp.queue_depth,
            secs(tp.queue_wait.p99)
        )));
    }
    let top = u16::try_from(lines.len()).unwrap_or(0).min(area.height);
    f.render_widget(
        Paragraph::new(lines),
        Rect {
            height: top,
            ..area
        },
    );
    let rest = Rect {
        y: area.y + top,
        height: area.height - top,
        ..area
    };
    let empty = if m.workers.received() {
        "no workers".to_owned()
    } else {
        waiting(app, "worker list")
    };
    table::draw(
        f,
        rest,
        &Spec {
            title: "Workers",
            rows: &m.workers.rows,
            view: &app.workers,
            total: None,
            empty: &empty,
            filtering: app.filtering,
        },
        ctx,
    );
}

/// The Stalls view, and the detail of the opened one on top.
pub fn stalls(f: &mut Frame<'_>, area: Rect, app: &App, ctx: &Ctx) {
    let m = app.model();
    table::draw(
        f,
        area,
        &Spec {
            title: "Stalls (Enter: stack)",
            rows: m.stalls.rows(),
            view: &app.stalls,
            total: Some(m.stalls.total()),
            empty: "no stalls: every callback returned within the threshold",
            filtering: app.filtering,
        },
        ctx,
    );
    if let Some(s) = app.detail_stall() {
        detail(f, area, s, app.detail_profile(), ctx);
    }
}

/// Functions listed in the detail's profile table.
const HOT_FRAMES: usize = 8;
/// Lines of the detail's call tree, and the share of samples a node needs to be drawn.
const TREE_LINES: usize = 10;
const TREE_MIN_PCT: f64 = 5.0;

/// A call-tree line's functions: a long chain of single callers shows its ends.
fn chain_text(chain: &[String]) -> String {
    match chain {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} → {b}"),
        [first, .., last] => format!("{first} → … → {last} ({} frames)", chain.len()),
    }
}

/// The open stall's hottest functions (self and total share of its samples), or why not.
fn profile_lines(s: &Stall, profile: Option<&ProfileState>) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match profile {
        None if s.samples > 0 => lines.push(Line::from(format!(
            "hottest frames: fetching the profile ({} samples)…",
            s.samples
        ))),
        None => lines.push(Line::from("hottest frames: no samples yet").dim()),
        Some(ProfileState::Missing(why)) => {
            lines.push(Line::from(format!("hottest frames: none ({why})")).dim());
        }
        Some(ProfileState::Kept(p)) => {
            let dropped = if s.samples_dropped > 0 {
                format!(", {} not kept", s.samples_dropped)
            } else {
                String::new()
            };
            lines.push(Line::from(vec![
                "hottest frames".bold(),
                Span::raw(format!(
                    " ({} samples every {} ms{dropped}):",
                    p.samples.len(),
                    p.interval_ms
                )),
            ]));
            lines.push(Line::from("    SELF   TOTAL  FUNCTION").dim());
            for h in hottest(p, HOT_FRAMES) {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {:>5.1}%", h.self_pct), Style::new().red().bold()),
                    Span::raw(format!(" {:>6.1}%  ", h.total_pct)),
                    Span::raw(h.function),
                ]));
            }
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                "call tree".bold(),
                Span::raw(format!(
                    " (from the root; nodes with ≥ {TREE_MIN_PCT:.0} % of samples):"
                )),
            ]));
            lines.push(Line::from("   TOTAL    SELF  CALLS").dim());
            for t in hot_tree(p, TREE_MIN_PCT, TREE_LINES) {
                lines.push(Line::from(vec![
                    Span::raw(format!("  {:>5.1}%  {:>5.1}%  ", t.total_pct, t.self_pct)),
                    Span::raw("  ".repeat(t.depth)),
                    Span::raw(chain_text(&t.chain)),
                ]));
            }
        }
    }
    lines.push(Line::from(""));
    lines
}

fn detail(f: &mut Frame<'_>, area: Rect, s: &Stall, profile: Option<&ProfileState>, ctx: &Ctx) {
    let w = area.width.saturating_sub(4).max(area.width.min(20));
    let h = area.height.saturating_sub(2).max(area.height.min(5));
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let state = if s.in_progress {
        Span::styled("IN PROGRESS", Style::new().red().bold())
    } else {
        Span::raw("closed")
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!("loop {} · phase {} · ", s.loop_index, s.phase)),
            Span::styled(stall_target(s), Style::new().bold()),
            Span::raw(
                s.label
                    .as_deref()
                    .map(|l| format!(" \"{l}\""))
                    .unwrap_or_default(),
            ),
        ]),
        Line::from(vec![
            state,
            Span::raw(format!(
                " · ran {} · threshold {}ms · started {} ago",
                secs(stall_age(s, ctx.clock_ms)),
                s.threshold_ms,
                since(ctx.clock_ms, s.started_at_ms)
            )),
        ]),
        Line::from(""),
    ];
    lines.extend(profile_lines(s, profile));
    lines.push(Line::from("first sampled stack, innermost first:".bold()));
    if s.stack.is_empty() {
        lines.push(Line::from(format!(
            "  (none{})",
            s.stack_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )));
    }
    for (i, fr) in s.stack.iter().enumerate() {
        lines.push(Line::from(format!("  #{i:<2} {}", fr.function)));
        if let Some(file) = &fr.file {
            let at = match fr.line {
                Some(l) => format!("{file}:{l}"),
                None => file.clone(),
            };
            lines.push(Line::from(format!("       at {at}")).dim());
        }
    }
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(format!(" Stall #{} ", s.id))
                .title_bottom(" Esc: close "),
        ),
        popup,
    );
}
