//! The app as a pure state machine: key → action → new state (and requests), no terminal.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use loop_top::app::{App, AppEvent, View};
use loop_top::conn::ConnEvent;
use loop_top::state::Update;
use proto::MethodCall;

use crate::support::{self, live_app};

fn key(app: &mut App, code: KeyCode) -> Vec<MethodCall> {
    app.update(AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ch(app: &mut App, c: char) -> Vec<MethodCall> {
    key(app, KeyCode::Char(c))
}

fn names(calls: &[MethodCall]) -> Vec<&'static str> {
    calls.iter().map(MethodCall::name).collect()
}

#[test]
fn tab_and_digits_switch_views() {
    let mut app = live_app(false, View::Overview, 120, 40);
    let mut seen = vec![app.view];
    for _ in 0..5 {
        key(&mut app, KeyCode::Tab);
        seen.push(app.view);
    }
    assert_eq!(
        seen,
        vec![
            View::Overview,
            View::Handles,
            View::Requests,
            View::ThreadPool,
            View::Stalls,
            View::Overview
        ]
    );
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.view, View::Stalls);
    ch(&mut app, '3');
    assert_eq!(app.view, View::Requests);
    ch(&mut app, '1');
    assert_eq!(app.view, View::Overview);
}

#[test]
fn q_and_ctrl_c_quit() {
    let mut app = live_app(false, View::Overview, 120, 40);
    ch(&mut app, 'q');
    assert!(app.quit);
    let mut app = live_app(false, View::Handles, 120, 40);
    ch(&mut app, '/');
    assert!(app.filtering);
    ch(&mut app, 'q'); // text while filtering
    assert!(!app.quit);
    app.update(AppEvent::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.quit);
}

#[test]
fn views_request_their_data_once_at_a_time() {
    let mut app = live_app(false, View::Overview, 120, 40);
    assert_eq!(names(&ch(&mut app, '2')), vec!["handles"]);
    // The next status push would refresh, but the answer is still pending.
    let st = Update::Status(Box::new(support::status(false)));
    assert!(app
        .update(AppEvent::Conn(ConnEvent::Update(st.clone())))
        .is_empty());
    // The answer arrives; the next push asks again.
    app.update(AppEvent::Conn(ConnEvent::Update(Update::Handles(
        support::handles(3),
    ))));
    assert_eq!(
        names(&app.update(AppEvent::Conn(ConnEvent::Update(st.clone())))),
        vec!["handles"]
    );
    assert_eq!(names(&ch(&mut app, '4')), vec!["threadpool"]);
    assert_eq!(names(&ch(&mut app, '5')), vec!["stalls"]);
    assert_eq!(names(&ch(&mut app, '3')), vec!["requests"]);
    assert!(
        ch(&mut app, '1').is_empty(),
        "the overview lives on the subscription"
    );
    // A lost connection forgets what was pending; reconnecting asks again.
    ch(&mut app, '2');
    app.update(AppEvent::Conn(ConnEvent::Disconnected {
        error: "gone".into(),
        retry_in: Duration::from_millis(250),
        attempt: 1,
    }));
    assert!(
        app.update(AppEvent::Conn(ConnEvent::Update(st))).is_empty(),
        "nothing is sent while disconnected"
    );
    assert_eq!(
        names(&app.update(AppEvent::Conn(ConnEvent::Connected))),
        vec!["handles"]
    );
}

#[test]
fn pause_freezes_the_screen_not_the_data() {
    let mut app = live_app(false, View::Overview, 120, 40);
    ch(&mut app, 'p');
    assert!(app.is_paused());
    app.update(AppEvent::Conn(ConnEvent::Update(Update::Status(Box::new(
        support::status(true),
    )))));
    assert_eq!(app.model().stalls_in_progress().count(), 0, "frozen");
    ch(&mut app, '2');
    assert!(ch(&mut app, '2').is_empty(), "no requests while paused");
    ch(&mut app, 'p');
    assert!(!app.is_paused());
    assert_eq!(app.model().stalls_in_progress().count(), 1, "caught up");
}

#[test]
fn filter_sort_and_selection() {
    let mut app = live_app(false, View::Handles, 120, 40);
    assert_eq!(app.handles.index().len(), 40);
    ch(&mut app, '/');
    for c in "LISTENER".chars() {
        ch(&mut app, c);
    }
    assert_eq!(app.handles.index().len(), 1, "case-insensitive filter");
    key(&mut app, KeyCode::Backspace);
    assert_eq!(app.handles.filter, "LISTENE");
    key(&mut app, KeyCode::Enter);
    assert!(!app.filtering);
    assert_eq!(app.handles.filter, "LISTENE", "Enter keeps the filter");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.handles.filter, "", "Esc clears it");
    assert_eq!(app.handles.index().len(), 40);

    ch(&mut app, 's'); // ID ▲
    assert_eq!(app.handles.sort, Some(0));
    ch(&mut app, 'r'); // ID ▼
    assert!(app.handles.descending);
    let first = app.model().handles.rows[app.handles.index()[0]].id;
    assert_eq!(first, 40);
    key(&mut app, KeyCode::Home);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.handles.selected, 2);
    key(&mut app, KeyCode::End);
    assert_eq!(app.handles.selected, 39);
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.handles.selected, 39 - app.page_rows());
    key(&mut app, KeyCode::Home);
    assert_eq!(app.handles.selected, 0);
    // The selection follows its row when the data is re-sorted.
    key(&mut app, KeyCode::Down); // id 39
    ch(&mut app, 'r'); // ascending
    let sel = app.handles.selected_row().unwrap();
    assert_eq!(app.model().handles.rows[sel].id, 39);
}

#[test]
fn stall_detail_opens_and_closes() {
    let mut app = live_app(true, View::Stalls, 120, 40);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.detail, Some(7), "the in-progress stall is first");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.detail, None);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.detail_stall().map(|s| s.id), Some(6));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.detail, None, "switching views closes it");
}

#[test]
fn help_toggles_and_any_key_closes_it() {
    let mut app = live_app(false, View::Overview, 120, 40);
    ch(&mut app, '?');
    assert!(app.help);
    ch(&mut app, 'x');
    assert!(!app.help);
    ch(&mut app, '?');
    key(&mut app, KeyCode::Esc);
    assert!(!app.help);
}

/// The fleet view: sort by ELU, Enter opens the selected endpoint (a new connection), Esc
/// comes back; a vanished endpoint stays, greyed, and cannot be opened.
#[test]
fn fleet_sort_open_and_back() {
    use loop_top::input::Action;

    let mut app = crate::support::fleet_app(false, 120, 40);
    // PROGRAM, PID, KIND, LOOP, ELU: the fifth sort is ELU, largest first.
    for _ in 0..5 {
        app.act(Action::CycleSort);
    }
    assert!(app.fleet_table.descending);
    app.act(Action::Home);
    assert_eq!(
        app.selected_fleet_row().map(|r| r.pid),
        Some(7311),
        "93% first"
    );
    app.act(Action::Open);
    assert_eq!(app.view, View::Overview);
    let socket = app.take_switch().expect("a new endpoint to connect to");
    assert!(socket.ends_with("node-7311.sock"), "{}", socket.display());
    assert_eq!(app.take_switch(), None, "taken once");
    app.act(Action::Back);
    assert_eq!(app.view, View::Fleet);
    // `0` / `f` show it too, and the current endpoint opens without reconnecting.
    app.act(Action::Show(View::Handles));
    app.act(Action::Show(View::Fleet));
    assert_eq!(app.view, View::Fleet);
    app.act(Action::Open);
    assert_eq!(app.take_switch(), None, "already connected to it");
    // node goes away: its row stays, grey, and Enter on it does nothing.
    app.act(Action::Back);
    let mut scan = crate::support::fleet_scan(false);
    scan.probes
        .retain(|p| !p.socket.ends_with("node-7311.sock"));
    app.update(AppEvent::Fleet(scan));
    let row = app.selected_fleet_row().unwrap();
    assert_eq!(row.pid, 7311);
    assert!(row.gone.is_some());
    app.act(Action::Open);
    assert_eq!(app.view, View::Fleet);
    assert_eq!(app.take_switch(), None);
    let text = loop_top::ui::render_lines(&app, 120, 40)
        .unwrap()
        .join("\n");
    assert!(text.contains("gone 0 ago: its socket is gone"), "{text}");
    assert!(text.contains("2 endpoints · 3 loops · 1 gone"), "{text}");
}
