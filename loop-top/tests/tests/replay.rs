//! Replaying the hand-made recording `tests/fixtures/stall.ndjson`: a loop healthy for 15 s,
//! blocked from 15.2 s to 22 s by `prime peer 127.0.0.1:50500`, healthy again until 30 s.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use loop_top::app::{App, AppEvent, View};
use loop_top::state::replay::Recording;

use crate::support::{fixture, snapshot};

const T0: u64 = 1_700_000_000_000;

fn app() -> App {
    let rec = Recording::open(&fixture("stall.ndjson")).unwrap();
    let mut app = App::replay(rec, 0);
    app.update(AppEvent::Resize {
        width: 100,
        height: 30,
    });
    app
}

fn key(app: &mut App, code: KeyCode) {
    app.update(AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn banner(app: &App) -> Option<String> {
    let lines = loop_top::ui::render_lines(app, 100, 30).unwrap();
    lines
        .iter()
        .position(|l| l.contains("STALL IN PROGRESS"))
        .map(|i| format!("{}\n{}", lines[i], lines[i + 1]))
}

#[test]
fn the_reader_counts_what_it_skips() {
    let rec = Recording::open(&fixture("stall.ndjson")).unwrap();
    assert_eq!(rec.skipped, 2, "one garbage line, one unknown method");
    assert_eq!(rec.start_ms, T0);
    assert_eq!(rec.duration_ms(), 30_000);
    assert_eq!(rec.stall_marks.len(), 1);
    assert_eq!(rec.stall_marks[0].start_ms, T0 + 15_200);
    assert_eq!(rec.stall_marks[0].end_ms, T0 + 22_000);
}

#[test]
fn seek_to_the_stall_shows_the_banner() {
    let mut app = app();
    assert!(banner(&app).is_none());
    key(&mut app, KeyCode::Char(']')); // 10 s
    assert_eq!(app.replay_state().unwrap().offset_ms(), 10_000);
    assert!(banner(&app).is_none(), "healthy at 10 s");
    key(&mut app, KeyCode::Char(']')); // 20 s: blocked since 15.2 s
    let b = banner(&app).expect("banner at 20 s");
    assert!(b.contains("loop 0 blocked 5.00s in poll"), "{b}");
    assert!(b.contains("tcp #12 \"prime peer 127.0.0.1:50500\""), "{b}");
    assert!(b.contains("at loopd::services::prime::is_prime"), "{b}");
    snapshot("replay_stall_100x30", &app, 100, 30);
    key(&mut app, KeyCode::Char(']')); // 30 s: over
    assert!(banner(&app).is_none(), "closed at 22 s");
    key(&mut app, KeyCode::Char('[')); // back to 20 s
    assert!(banner(&app).is_some(), "seeking back rebuilds the state");
}

#[test]
fn next_stall_key_and_stepping() {
    let mut app = app();
    key(&mut app, KeyCode::Char('n'));
    let r = app.replay_state().unwrap();
    assert_eq!(r.cursor_ms, T0 + 15_200);
    assert!(!r.playing);
    assert!(banner(&app).is_some());
    key(&mut app, KeyCode::Left); // un-apply the "opened" event
    assert!(banner(&app).is_none());
    key(&mut app, KeyCode::Right);
    assert!(banner(&app).is_some());
    key(&mut app, KeyCode::Char('n'));
    assert!(app.note.as_deref().unwrap().contains("no stall after"));
}

#[test]
fn the_closed_stall_is_listed_with_its_stack() {
    let mut app = app();
    app.seek_replay_offset(30_000);
    key(&mut app, KeyCode::Char('5'));
    assert_eq!(app.view, View::Stalls);
    let rows = app.model().stalls.rows();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].in_progress);
    assert!((rows[0].duration_seconds - 6.95).abs() < 1e-9);
    key(&mut app, KeyCode::Enter);
    let text = loop_top::ui::render_lines(&app, 100, 30)
        .unwrap()
        .join("\n");
    assert!(text.contains("loopd::engine::Loop::run_poll"), "{text}");
}

#[test]
fn playing_follows_injected_ticks() {
    let mut app = app();
    key(&mut app, KeyCode::Char(' '));
    assert!(app.replay_state().unwrap().playing);
    // Ticks carry the wall clock; 16 s of them reach the stall.
    for i in 1..=64 {
        app.update(AppEvent::Tick { now_ms: i * 250 });
    }
    assert_eq!(app.replay_state().unwrap().offset_ms(), 16_000);
    assert!(banner(&app).is_some());
    key(&mut app, KeyCode::Char('p'));
    app.update(AppEvent::Tick { now_ms: 100_000 });
    assert_eq!(
        app.replay_state().unwrap().offset_ms(),
        16_000,
        "paused: ticks do not move the head"
    );
}

#[test]
fn a_newer_format_is_refused_in_words() {
    let path = std::env::temp_dir().join(format!("loop-top-v2-{}.ndjson", std::process::id()));
    std::fs::write(
        &path,
        "{\"loopctl_record\":2,\"started_at_ms\":1}\n{\"received_at_ms\":2,\"jsonrpc\":\"2.0\",\"method\":\"status\",\"params\":{}}\n",
    )
    .unwrap();
    let err = Recording::open(&path).unwrap_err().to_string();
    assert!(err.contains("format 2"), "{err}");
    let _ = std::fs::remove_file(&path);
}
