//! The one table component every list view uses: a title line (counts, sort, filter, position),
//! a header, and only the visible rows — formatting cost is per screen, not per row of data.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame;

use crate::state::table::{visible_offset, Row, TableView};

/// What drawing a row needs besides the row.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The clock the screen is drawn at, unix ms.
    pub clock_ms: u64,
}

/// A row that can be drawn: one text per column, and a style.
pub trait RowView: Row {
    /// The cells, one per [`Row::COLUMNS`] entry.
    fn cells(&self, ctx: &Ctx) -> Vec<String>;
    /// The row's style (e.g. red for a stall in progress).
    fn style(&self, _ctx: &Ctx) -> Style {
        Style::default()
    }
}

/// A list to draw.
pub struct Spec<'a, R> {
    /// The view's name.
    pub title: &'a str,
    /// All rows (the view's index picks and orders them).
    pub rows: &'a [R],
    /// Sort, filter, selection, scroll.
    pub view: &'a TableView,
    /// The daemon's total, when it may exceed `rows.len()`.
    pub total: Option<u64>,
    /// Shown when there are no rows.
    pub empty: &'a str,
    /// The filter is being typed.
    pub filtering: bool,
}

/// Draws a list in `area`.
pub fn draw<R: RowView>(f: &mut Frame<'_>, area: Rect, spec: &Spec<'_, R>, ctx: &Ctx) {
    if area.height == 0 {
        return;
    }
    let index = spec.view.index();
    let height = usize::from(area.height.saturating_sub(2));
    let offset = visible_offset(spec.view.offset, spec.view.selected, height, index.len());
    let end = (offset + height).min(index.len());

    let mut title = vec![Span::styled(spec.title, Style::new().bold())];
    let mut count = format!("  {}", index.len());
    if index.len() != spec.rows.len() {
        count.push_str(&format!(" of {}", spec.rows.len()));
    }
    if let Some(t) = spec.total.filter(|t| *t > spec.rows.len() as u64) {
        count.push_str(&format!(" (daemon has {t})"));
    }
    title.push(Span::raw(count));
    if let Some(col) = spec.view.sort.and_then(|c| R::COLUMNS.get(c)) {
        let arrow = if spec.view.descending { "▼" } else { "▲" };
        title.push(Span::raw(format!("  sort {} {arrow}", col.name)));
    }
    if !spec.view.filter.is_empty() || spec.filtering {
        title.push(Span::styled(
            format!("  filter \"{}\"", spec.view.filter),
            Style::new().yellow(),
        ));
    }
    if index.len() > height && height > 0 {
        title.push(Span::raw(format!("  rows {}-{}", offset + 1, end)));
    }
    f.render_widget(
        Paragraph::new(Line::from(title)),
        Rect { height: 1, ..area },
    );
    let body = Rect {
        y: area.y + 1,
        height: area.height - 1,
        ..area
    };
    if index.is_empty() {
        let header = header_row::<R>(spec.view);
        let table = Table::new(Vec::<TableRow<'_>>::new(), widths::<R>()).header(header);
        f.render_widget(table, body);
        if body.height > 1 {
            f.render_widget(
                Paragraph::new(Line::from(format!("  {}", spec.empty)).dim()),
                Rect {
                    y: body.y + 1,
                    height: 1,
                    ..body
                },
            );
        }
        return;
    }
    let rows = index[offset..end].iter().enumerate().map(|(i, &r)| {
        let row = &spec.rows[r];
        let mut style = row.style(ctx);
        if offset + i == spec.view.selected {
            style = style.add_modifier(Modifier::REVERSED);
        }
        TableRow::new(row.cells(ctx).into_iter().map(Cell::from)).style(style)
    });
    let table = Table::new(rows, widths::<R>())
        .header(header_row::<R>(spec.view))
        .column_spacing(1);
    f.render_widget(table, body);
}

fn header_row<R: Row>(view: &TableView) -> TableRow<'static> {
    TableRow::new(R::COLUMNS.iter().enumerate().map(|(i, c)| {
        let mut name = c.name.to_owned();
        if view.sort == Some(i) {
            name.push(if view.descending { '▼' } else { '▲' });
        }
        Cell::from(name)
    }))
    .style(Style::new().bold().underlined())
}

fn widths<R: Row>() -> Vec<Constraint> {
    R::COLUMNS
        .iter()
        .map(|c| match c.width {
            0 => Constraint::Fill(1),
            w => Constraint::Length(w),
        })
        .collect()
}
