//! Drawing: a pure function of `&App`.
//!
//! Layout, top to bottom: header, tabs, one red banner per stall in progress, the view, the
//! replay timeline (replay only), the footer; the help overlay on top.

pub mod chrome;
pub mod fleet;
pub mod format;
pub mod lists;
pub mod overview;
pub mod table;

use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::{Frame, Terminal};

use crate::app::{App, View};
use table::Ctx;

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let replay = app.replay_state();
    let [header, tabs, banner, body, timeline, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(chrome::banner_height(app)),
        Constraint::Min(0),
        Constraint::Length(u16::from(replay.is_some())),
        Constraint::Length(1),
    ])
    .areas(f.area());
    chrome::header(f, header, app);
    chrome::tabs(f, tabs, app);
    chrome::banner(f, banner, app);
    let ctx = Ctx {
        clock_ms: app.clock_ms(),
    };
    let m = app.model();
    match app.view {
        View::Fleet => match &app.fleet {
            Some(fl) => fleet::draw(f, body, app, fl, &ctx),
            None => chrome::no_data(f, body, app),
        },
        View::Overview => match &m.status {
            Some(s) => overview::draw(f, body, s),
            None => chrome::no_data(f, body, app),
        },
        _ if m.status.is_none() && m.hello.is_none() && replay.is_none() => {
            chrome::no_data(f, body, app);
        }
        View::Handles => lists::handles(f, body, app, &ctx),
        View::Requests => lists::requests(f, body, app, &ctx),
        View::ThreadPool => lists::threadpool(f, body, app, &ctx),
        View::Stalls => lists::stalls(f, body, app, &ctx),
    }
    if let Some(r) = replay {
        chrome::timeline(f, timeline, r);
    }
    chrome::footer(f, footer, app);
    if app.help {
        chrome::help(f, f.area(), app);
    }
}

/// Renders one frame of `app` at `width`×`height` into text lines (trailing spaces trimmed):
/// what `--once` prints and what the snapshot tests compare.
///
/// # Errors
///
/// Never in practice (the test backend does not fail); kept for the `Terminal` API.
pub fn render_lines(app: &App, width: u16, height: u16) -> std::io::Result<Vec<String>> {
    let mut terminal = Terminal::new(TestBackend::new(width, height))?;
    terminal.draw(|f| draw(f, app))?;
    let buf = terminal.backend().buffer();
    let w = usize::from(buf.area.width.max(1));
    Ok(buf
        .content
        .chunks(w)
        .map(|row| {
            let line: String = row.iter().map(|c| c.symbol()).collect();
            line.trim_end().to_owned()
        })
        .collect())
}
