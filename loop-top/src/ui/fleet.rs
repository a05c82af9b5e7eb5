//! The fleet view: one row per loop of every endpoint found, on the one table component; a
//! stall in progress is a red row (and a banner, see `chrome::fleet_banner`), a vanished
//! endpoint a grey one; sockets that never answered are listed under the table.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style, Stylize as _};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::format::{clip, count, pct, secs, since};
use super::lists::stall_age;
use super::table::{self, Ctx, RowView, Spec};
use crate::app::App;
use crate::state::fleet::{Fleet, FleetRow};
use crate::state::rows::stall_target;

/// At most this many unreachable sockets are named under the table.
const UNREACHABLE_LINES: usize = 3;

/// What the `NOW` column says: the stall and its attribution, gone since when, or the socket.
pub fn now_text(r: &FleetRow, clock_ms: u64) -> String {
    if let Some(s) = &r.stall {
        let label = s
            .label
            .as_deref()
            .map(|l| format!(" \"{l}\""))
            .unwrap_or_default();
        return format!(
            "STALL {} in {} · {}{label}",
            secs(stall_age(s, clock_ms)),
            s.phase,
            stall_target(s)
        );
    }
    if let Some((since_ms, why)) = &r.gone {
        return format!("gone {} ago: {why}", since(clock_ms, *since_ms));
    }
    r.socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl RowView for FleetRow {
    fn cells(&self, ctx: &Ctx) -> Vec<String> {
        let stalls = if self.stall.is_some() {
            format!("{}+", self.stalls_total.max(1))
        } else {
            self.stalls_total.to_string()
        };
        vec![
            self.program.clone(),
            self.pid.to_string(),
            self.kind.clone(),
            self.loop_index.to_string(),
            pct(self.elu),
            secs(self.lag_p99),
            stalls,
            count(self.handles),
            count(self.requests),
            format!("{}/{} q{}", self.pool.0, self.pool.1, self.pool.2),
            now_text(self, ctx.clock_ms),
        ]
    }

    fn style(&self, _ctx: &Ctx) -> Style {
        if self.stall.is_some() {
            Style::new().white().on_red().add_modifier(Modifier::BOLD)
        } else if self.gone.is_some() {
            Style::new().dark_gray()
        } else if self.elu >= 0.9 {
            Style::new().yellow()
        } else {
            Style::new()
        }
    }
}

/// Draws the fleet view in `area`.
pub fn draw(f: &mut Frame<'_>, area: Rect, app: &App, fleet: &Fleet, ctx: &Ctx) {
    let extra: Vec<Line<'_>> = under_table(fleet, usize::from(area.width));
    let n = u16::try_from(extra.len()).unwrap_or(0).min(area.height / 2);
    let table_area = Rect {
        height: area.height - n,
        ..area
    };
    let empty = match &fleet.error {
        Some(e) => e.clone(),
        None if fleet.scanned_at_ms == 0 => "looking for endpoints…".to_owned(),
        None => format!(
            "no loopd or observed program in {} (start one, or --dir DIR)",
            fleet.dir.display()
        ),
    };
    table::draw(
        f,
        table_area,
        &Spec {
            title: "Fleet",
            rows: &fleet.rows,
            view: &app.fleet_table,
            total: None,
            empty: &empty,
            filtering: app.filtering,
        },
        ctx,
    );
    if n > 0 {
        f.render_widget(
            Paragraph::new(extra),
            Rect {
                y: area.y + area.height - n,
                height: n,
                ..area
            },
        );
    }
}

/// The lines under the table: sockets that never answered, with the reason.
fn under_table(fleet: &Fleet, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (socket, why) in fleet.unreachable.iter().take(UNREACHABLE_LINES) {
        let name = socket
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        lines.push(Line::from(clip(&format!(" unreachable {name}: {why}"), width)).yellow());
    }
    if fleet.unreachable.len() > UNREACHABLE_LINES {
        lines.push(
            Line::from(format!(
                " … and {} more unreachable",
                fleet.unreachable.len() - UNREACHABLE_LINES
            ))
            .yellow(),
        );
    }
    lines
}
