//! Everything around the views: header, tabs, stall banner, footer, replay timeline, help,
//! and the "cannot connect" panel.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::format::{clip, offset, secs, since};
use super::lists::stall_age;
use crate::app::{App, Link, View};
use crate::state::fleet::{Fleet, FleetRow};
use crate::state::replay::Replay;
use crate::state::rows::{stall_target, top_frame};

/// Who serves the socket: `loopd 0.1.0`, or `python3.11 (agent, libuv 1.44.2)`.
fn who(host: &proto::Host, version: &str) -> String {
    match host.kind.as_str() {
        "" | "loopd" => format!("loopd {version}"),
        kind => match &host.libuv_version {
            Some(v) => format!("{} ({kind}, libuv {v})", host.program),
            None => format!("{} ({kind})", host.program),
        },
    }
}

/// The fleet view's header: how many endpoints and loops, where, how fresh.
fn fleet_header(f: &mut Frame<'_>, area: Rect, app: &App, fleet: &Fleet) {
    let mut spans = vec![
        Span::styled(" loop-top ", Style::new().bold().reversed()),
        Span::styled(" FLEET", Style::new().cyan().bold()),
    ];
    let n = fleet.live_endpoints();
    let loops = fleet.live_loops();
    let mut text = format!(
        " {n} endpoint{} · {loops} loop{}",
        if n == 1 { "" } else { "s" },
        if loops == 1 { "" } else { "s" }
    );
    let gone = fleet.endpoints.len() - n;
    if gone > 0 {
        text.push_str(&format!(" · {gone} gone"));
    }
    if !fleet.unreachable.is_empty() {
        text.push_str(&format!(" · {} unreachable", fleet.unreachable.len()));
    }
    text.push_str(&format!(" · {}", fleet.dir.display()));
    match app.now_ms.saturating_sub(fleet.scanned_at_ms) {
        _ if fleet.scanned_at_ms == 0 => {}
        0..=999 => text.push_str(" · scanned just now"),
        _ => text.push_str(&format!(
            " · scanned {} ago",
            since(app.now_ms, fleet.scanned_at_ms)
        )),
    }
    spans.push(Span::raw(text));
    if app.paused {
        spans.push(Span::styled(" [PAUSED]", Style::new().yellow().bold()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The header line: who we watch and how fresh the data is.
pub fn header(f: &mut Frame<'_>, area: Rect, app: &App) {
    if let (View::Fleet, Some(fleet)) = (app.view, &app.fleet) {
        return fleet_header(f, area, app, fleet);
    }
    let m = app.model();
    let mut spans = vec![Span::styled(" loop-top ", Style::new().bold().reversed())];
    let daemon = match (&m.status, &m.hello) {
        (Some(s), _) => format!(
            " {} pid {} · up {} · {} loop{}",
            who(&s.host, &s.server_version),
            s.pid,
            secs(s.uptime_seconds),
            s.loops.len(),
            if s.loops.len() == 1 { "" } else { "s" }
        ),
        (None, Some(h)) => format!(" {} pid {}", who(&h.host, &h.server_version), h.pid),
        (None, None) => String::new(),
    };
    match (app.replay_state(), app.link()) {
        (Some(r), _) => {
            spans.push(Span::styled(
                if r.playing {
                    " ▶ REPLAY"
                } else {
                    " || REPLAY"
                },
                Style::new().magenta().bold(),
            ));
            spans.push(Span::raw(daemon));
        }
        (None, Some(link)) => match link {
            Link::Connected { .. } => {
                spans.push(Span::styled(" ● live", Style::new().green().bold()));
                spans.push(Span::raw(daemon));
                let as_of = m.as_of_ms();
                if as_of > 0 {
                    spans.push(Span::raw(format!(
                        " · as of {} ago",
                        since(app.clock_ms(), as_of)
                    )));
                }
            }
            Link::Connecting {
                attempt,
                last_error,
            } => {
                spans.push(Span::styled(
                    format!(" … connecting (attempt {attempt})"),
                    Style::new().yellow().bold(),
                ));
                if let Some(e) = last_error {
                    spans.push(Span::raw(format!(" · last: {e}")));
                }
            }
            Link::Disconnected {
                error, retry_at_ms, ..
            } => {
                spans.push(Span::styled(" ✗ disconnected", Style::new().red().bold()));
                if let Some(at) = retry_at_ms {
                    let left = at.saturating_sub(app.now_ms) as f64 / 1000.0;
                    spans.push(Span::raw(format!(" · retry in {}", secs(left))));
                }
                if m.status.is_some() {
                    spans.push(Span::styled(
                        format!(" · data from {} ago", since(app.now_ms, m.as_of_ms())),
                        Style::new().yellow(),
                    ));
                }
                spans.push(Span::raw(format!(" · {error}")));
            }
        },
        (None, None) => {}
    }
    if app.paused && app.replay_state().is_none() {
        spans.push(Span::styled(" [PAUSED]", Style::new().yellow().bold()));
    }
    if m.dropped_total > 0 {
        spans.push(Span::styled(
            format!(" · {} dropped", m.dropped_total),
            Style::new().yellow(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The tabs line.
pub fn tabs(f: &mut Frame<'_>, area: Rect, app: &App) {
    let wide = area.width >= 70;
    let mut spans = Vec::new();
    if let Some(fleet) = &app.fleet {
        let mut style = Style::new();
        if app.view == View::Fleet {
            style = style.reversed().bold();
        }
        if fleet.stalled().next().is_some() {
            style = style.red();
        }
        spans.push(Span::styled(" 0 Fleet ", style));
        spans.push(Span::raw("│"));
    }
    for (i, v) in View::ALL.iter().enumerate() {
        let name = if wide {
            v.title()
        } else {
            match v {
                View::ThreadPool => "Pool",
                other => other.title(),
            }
        };
        let text = format!(" {} {name} ", i + 1);
        let mut style = Style::new();
        if *v == app.view {
            style = style.reversed().bold();
        }
        if *v == View::Stalls && app.model().stalls_in_progress().next().is_some() {
            style = style.red();
        }
        spans.push(Span::styled(text, style));
        spans.push(Span::raw("│"));
    }
    spans.pop();
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The fleet's stalls in progress, in the fleet view (else `None`).
fn fleet_stalls(app: &App) -> Option<Vec<&FleetRow>> {
    match (app.view, &app.fleet) {
        (View::Fleet, Some(f)) => Some(f.stalled().collect()),
        _ => None,
    }
}

/// Where a stall in progress is: the hottest frame of its samples so far (the first thing
/// to read), else the top frame of its first stack.
fn where_it_is(s: &proto::Stall) -> String {
    match (s.samples, s.hot_frame.as_deref()) {
        (0, _) | (_, None) => format!("at {}", top_frame(s)),
        (n, Some(hot)) => format!("hottest: {hot} · {n} samples · first at {}", top_frame(s)),
    }
}

/// How many rows the stall banner takes (2 per stall in progress).
pub fn banner_height(app: &App) -> u16 {
    let n = match fleet_stalls(app) {
        Some(rows) => rows.len(),
        None => app.model().stalls_in_progress().count(),
    };
    u16::try_from(n * 2).unwrap_or(u16::MAX)
}

/// The red banner: each stall in progress, its age, what it blocked on, its top frame; in the
/// fleet view, each of the fleet's, naming the process.
pub fn banner(f: &mut Frame<'_>, area: Rect, app: &App) {
    let style = Style::new().white().on_red().add_modifier(Modifier::BOLD);
    let w = usize::from(area.width);
    if let Some(rows) = fleet_stalls(app) {
        let mut lines = Vec::new();
        for r in rows {
            let Some(s) = &r.stall else { continue };
            let label = s
                .label
                .as_deref()
                .map(|l| format!(" \"{l}\""))
                .unwrap_or_default();
            let text = format!(
                " STALL IN PROGRESS  {} pid {} loop {} blocked {} in {} · {}{}",
                r.program,
                r.pid,
                s.loop_index,
                secs(stall_age(s, app.clock_ms())),
                s.phase,
                stall_target(s),
                label
            );
            lines.push(Line::from(format!("{:<w$}", clip(&text, w))).style(style));
            let at = format!("   {} (Enter opens it)", where_it_is(s));
            lines.push(
                Line::from(format!("{:<w$}", clip(&at, w))).style(Style::new().white().on_red()),
            );
        }
        f.render_widget(Paragraph::new(lines), area);
        return;
    }
    let mut lines = Vec::new();
    for s in app.model().stalls_in_progress() {
        let label = s
            .label
            .as_deref()
            .map(|l| format!(" \"{l}\""))
            .unwrap_or_default();
        let text = format!(
            " STALL IN PROGRESS  loop {} blocked {} in {} · {}{} (threshold {}ms)",
            s.loop_index,
            secs(stall_age(s, app.clock_ms())),
            s.phase,
            stall_target(s),
            label,
            s.threshold_ms
        );
        lines.push(Line::from(format!("{:<w$}", clip(&text, w))).style(style));
        let at = format!("   {}", where_it_is(s));
        lines
            .push(Line::from(format!("{:<w$}", clip(&at, w))).style(Style::new().white().on_red()));
    }
    f.render_widget(Paragraph::new(lines), area);
}

/// The key hints, the filter being typed, or a note.
pub fn footer(f: &mut Frame<'_>, area: Rect, app: &App) {
    let line = if app.filtering {
        let t = match app.view {
            View::Handles => &app.handles,
            View::Requests => &app.requests,
            View::ThreadPool => &app.workers,
            View::Fleet => &app.fleet_table,
            View::Overview | View::Stalls => &app.stalls,
        };
        Line::from(vec![
            Span::styled(" filter: ", Style::new().yellow().bold()),
            Span::raw(format!("{}█", t.filter)),
            Span::raw("   Enter keep · Esc clear").dim(),
        ])
    } else if let Some(n) = &app.note {
        Line::from(Span::styled(format!(" {n}"), Style::new().yellow()))
    } else if app.replay_state().is_some() {
        Line::from(
            " q quit  ? help  Tab/1-5 views  space play/pause  ←/→ step  [/] ±10s  n/N stall".dim(),
        )
    } else if app.view == View::Fleet {
        Line::from(
            " q quit  ? help  Enter open  1-5 views  ↑/↓ select  s sort  / filter  p pause".dim(),
        )
    } else if app.fleet.is_some() {
        Line::from(
            " q quit  ? help  Esc/0 fleet  Tab/1-5 views  ↑/↓ select  s sort  / filter".dim(),
        )
    } else {
        Line::from(" q quit  ? help  Tab/1-5 views  ↑/↓ select  s sort  / filter  p pause".dim())
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The replay timeline: where stalls happened (red) and where the play head is.
pub fn timeline(f: &mut Frame<'_>, area: Rect, r: &Replay) {
    let head = format!(
        " {} {} / {} ",
        if r.playing { "▶" } else { "||" },
        offset(r.offset_ms()),
        offset(r.rec.duration_ms())
    );
    let tail = format!(
        " {} stall{} ",
        r.rec.stall_marks.len(),
        if r.rec.stall_marks.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    let w = usize::from(area.width)
        .saturating_sub(head.chars().count() + tail.chars().count())
        .max(1);
    let dur = r.rec.duration_ms().max(1);
    let cell_of = |t: u64| -> usize {
        let off = t.saturating_sub(r.rec.start_ms).min(dur);
        ((off as u128 * (w as u128 - 1)) / dur as u128) as usize
    };
    let mut cells = vec![0u8; w]; // 0 plain, 1 stall, 2 head
    for m in &r.rec.stall_marks {
        for c in cell_of(m.start_ms)..=cell_of(m.end_ms) {
            if let Some(x) = cells.get_mut(c) {
                *x = 1;
            }
        }
    }
    if let Some(x) = cells.get_mut(cell_of(r.cursor_ms)) {
        *x = 2;
    }
    let mut spans = vec![Span::styled(head, Style::new().magenta().bold())];
    let mut run = String::new();
    let mut kind = cells.first().copied().unwrap_or(0);
    let style = |k: u8| match k {
        1 => Style::new().red().bold(),
        2 => Style::new().yellow().bold(),
        _ => Style::new().dark_gray(),
    };
    let glyph = |k: u8| match k {
        1 => '▆',
        2 => '┃',
        _ => '─',
    };
    for &k in &cells {
        if k != kind {
            spans.push(Span::styled(std::mem::take(&mut run), style(kind)));
            kind = k;
        }
        run.push(glyph(k));
    }
    spans.push(Span::styled(run, style(kind)));
    spans.push(Span::raw(tail));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The panel shown instead of a view when there is no data to show.
pub fn no_data(f: &mut Frame<'_>, area: Rect, app: &App) {
    let mut lines: Vec<Line<'_>> = Vec::new();
    let socket = match &app.source {
        crate::app::Source::Live { socket, .. } => socket.display().to_string(),
        crate::app::Source::Replay(_) => String::new(),
    };
    match app.link() {
        Some(Link::Disconnected {
            error,
            retry_at_ms,
            attempt,
        }) => {
            lines.push(
                Line::from(format!("Cannot connect to loopd at {socket}"))
                    .red()
                    .bold(),
            );
            lines.push(Line::from(error.clone()));
            lines.push(Line::from(""));
            lines.push(Line::from(match retry_at_ms {
                Some(at) => format!(
                    "Retrying in {} (attempt {attempt}). Start loopd, or point --socket / LOOPD_SOCKET at its control socket.",
                    secs(at.saturating_sub(app.now_ms) as f64 / 1000.0)
                ),
                None => "Start loopd, or point --socket / LOOPD_SOCKET at its control socket.".to_owned(),
            }));
        }
        Some(Link::Connecting { .. }) => {
            lines.push(Line::from(format!("Connecting to loopd at {socket}…")));
        }
        Some(Link::Connected { .. }) => {
            lines.push(Line::from(
                "Connected; waiting for the first status from loopd…",
            ));
        }
        None => lines.push(Line::from("No status in the recording at this point.")),
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().padding(ratatui::widgets::Padding::new(2, 2, 1, 0))),
        area,
    );
}

/// The help overlay.
pub fn help(f: &mut Frame<'_>, area: Rect, app: &App) {
    let mut rows: Vec<(&str, &str)> = vec![
        ("q, Ctrl-C", "quit"),
        ("Tab, Shift-Tab", "next / previous view"),
        ("1 … 5", "Overview, Handles, Requests, Thread pool, Stalls"),
        ("↑ ↓ j k", "move the selection"),
        ("PgUp PgDn", "page"),
        ("Home End g G", "first / last row"),
        ("s", "sort on the next column"),
        ("r", "reverse the sort"),
        ("/", "filter (Enter keeps it, Esc clears it)"),
        ("Enter", "open a stall's stack (Stalls)"),
        ("Esc", "close / clear the filter"),
    ];
    if app.fleet.is_some() {
        rows.extend([
            ("0, f", "Fleet: every loop of every endpoint found"),
            ("Enter (Fleet)", "open that endpoint's views (1 … 5)"),
            ("Esc", "back to the Fleet from an endpoint's views"),
        ]);
    }
    if app.replay_state().is_some() {
        rows.extend([
            ("space, p", "play / pause"),
            ("← →", "step one recorded message"),
            ("[ ]", "seek 10 s back / forward"),
            ("n N", "next / previous stall"),
        ]);
    } else {
        rows.push(("p, space", "freeze the screen (data keeps arriving)"));
    }
    rows.push(("?", "close this help"));
    let lines: Vec<Line<'_>> = rows
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!(" {k:<15}"), Style::new().bold()),
                Span::raw(*v),
            ])
        })
        .collect();
    let w = area.width.min(66);
    let h = (u16::try_from(lines.len()).unwrap_or(20) + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" loop-top help ")),
        popup,
    );
}
