//! Every view rendered with ratatui's TestBackend against checked-in snapshots.

use std::path::PathBuf;
use std::time::Duration;

use loop_top::app::{App, AppEvent, View};
use loop_top::conn::ConnEvent;
use loop_top::input::Action;
use loop_top::state::Update;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;

use crate::support::{self, live_app, snapshot, NOW};

#[test]
fn overview_120x40() {
    let app = live_app(false, View::Overview, 120, 40);
    let text = snapshot("overview_120x40", &app, 120, 40);
    assert!(!text.contains("STALL"));
    assert!(text.contains("ELU"));
}

#[test]
fn overview_with_stall_banner_120x40() {
    let app = live_app(true, View::Overview, 120, 40);
    let text = snapshot("overview_stall_120x40", &app, 120, 40);
    assert!(text.contains("STALL IN PROGRESS  loop 0 blocked 2.50s in poll"));
    assert!(text.contains("is_prime (loopd/src/services/prime.rs:52)"));
}

#[test]
fn stall_banner_is_red() {
    let app = live_app(true, View::Overview, 120, 40);
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    t.draw(|f| loop_top::ui::draw(f, &app)).unwrap();
    let buf = t.backend().buffer();
    // Row 2 is the banner's first line, right under header and tabs.
    assert_eq!(buf[(5, 2)].bg, Color::Red);
    assert_eq!(buf[(5, 3)].bg, Color::Red);
}

#[test]
fn stall_banner_on_every_view() {
    for v in View::ALL {
        let app = live_app(true, v, 100, 30);
        let lines = loop_top::ui::render_lines(&app, 100, 30).unwrap();
        assert!(lines[2].contains("STALL IN PROGRESS"), "{v:?}: {lines:#?}");
    }
}

#[test]
fn overview_with_stall_80x24() {
    let app = live_app(true, View::Overview, 80, 24);
    let text = snapshot("overview_stall_80x24", &app, 80, 24);
    assert!(text.contains("STALL IN PROGRESS"));
    assert!(text.contains("pool"), "the thread pool still fits at 80x24");
    for line in text.lines() {
        assert!(line.chars().count() <= 80);
    }
}

#[test]
fn handles_120x40() {
    let app = live_app(false, View::Handles, 120, 40);
    snapshot("handles_120x40", &app, 120, 40);
}

#[test]
fn handles_sorted_and_filtered_80x24() {
    let mut app = live_app(false, View::Handles, 80, 24);
    // Sort on IN (bytes read), largest first, then filter on "peer".
    for _ in 0..7 {
        app.act(Action::CycleSort);
    }
    app.act(Action::StartFilter);
    for c in "peer".chars() {
        app.act(Action::FilterChar(c));
    }
    let text = snapshot("handles_sorted_filtered_80x24", &app, 80, 24);
    assert!(text.contains("sort IN ▼"));
    assert!(text.contains("filter \"peer\""));
}

#[test]
fn requests_120x40() {
    let app = live_app(false, View::Requests, 120, 40);
    snapshot("requests_120x40", &app, 120, 40);
}

#[test]
fn threadpool_120x40() {
    let app = live_app(false, View::ThreadPool, 120, 40);
    let text = snapshot("threadpool_120x40", &app, 120, 40);
    assert!(text.contains("prime 2305843009213693951"));
}

#[test]
fn stalls_and_detail_120x40() {
    let mut app = live_app(true, View::Stalls, 120, 40);
    let text = snapshot("stalls_120x40", &app, 120, 40);
    assert!(
        text.contains("2.50s+"),
        "in-progress stall shows its running age"
    );
    app.act(Action::Open);
    let text = snapshot("stall_detail_120x40", &app, 120, 40);
    assert!(text.contains("Stall #7"));
    assert!(text.contains("loopd::services::prime::on_line"));
}

#[test]
fn help_overlay_80x24() {
    let mut app = live_app(false, View::Overview, 80, 24);
    app.act(Action::ToggleHelp);
    snapshot("help_80x24", &app, 80, 24);
}

#[test]
fn disconnected_80x24() {
    let mut app = App::live(PathBuf::from("/tmp/loopd-1000/control.sock"), 1000, NOW);
    app.update(AppEvent::Resize {
        width: 80,
        height: 24,
    });
    app.update(AppEvent::Conn(ConnEvent::Disconnected {
        error: "cannot connect to /tmp/loopd-1000/control.sock: Connection refused (os error 111)"
            .into(),
        retry_in: Duration::from_secs(2),
        attempt: 3,
    }));
    let text = snapshot("disconnected_80x24", &app, 80, 24);
    assert!(text.contains("Cannot connect to loopd at /tmp/loopd-1000/control.sock"));
    assert!(text.contains("retry in 2.00s"));
}

#[test]
fn daemon_gone_keeps_stale_data_and_says_so() {
    let mut app = live_app(false, View::Overview, 100, 30);
    app.update(AppEvent::Conn(ConnEvent::Disconnected {
        error: "lost the daemon: the daemon closed the connection".into(),
        retry_in: Duration::from_millis(250),
        attempt: 1,
    }));
    let lines = loop_top::ui::render_lines(&app, 100, 30).unwrap();
    assert!(lines[0].contains("✗ disconnected"), "{}", lines[0]);
    assert!(lines[0].contains("data from"), "{}", lines[0]);
    assert!(
        lines.iter().any(|l| l.contains("ELU")),
        "stale data still shown"
    );
    // Back: the header says live again.
    app.update(AppEvent::Conn(ConnEvent::Connected));
    let lines = loop_top::ui::render_lines(&app, 100, 30).unwrap();
    assert!(lines[0].contains("● live"), "{}", lines[0]);
}

/// 10,000 handles: the index is built once per data change, not per frame; drawing formats
/// only the visible rows; End reaches the last one.
#[test]
fn ten_thousand_handles() {
    let mut app = live_app(false, View::Handles, 120, 40);
    app.update(AppEvent::Conn(ConnEvent::Update(Update::Handles(
        support::handles(10_000),
    ))));
    app.act(Action::CycleSort); // ID ascending
    app.act(Action::ReverseSort); // ID descending
    app.act(Action::Home);
    let rebuilds = app.handles.rebuilds();
    for i in 0..50 {
        app.update(AppEvent::Tick {
            now_ms: NOW + i * 250,
        });
        let lines = loop_top::ui::render_lines(&app, 120, 40).unwrap();
        assert!(lines[4].trim_start().starts_with("10000"), "{}", lines[4]);
    }
    assert_eq!(
        app.handles.rebuilds(),
        rebuilds,
        "no re-sort without a change"
    );
    app.act(Action::End);
    let lines = loop_top::ui::render_lines(&app, 120, 40).unwrap();
    let last_row = lines[lines.len() - 2].trim_start();
    assert!(last_row.starts_with("1 "), "{last_row}");
    assert!(lines[2].contains("rows 9966-10000"), "{}", lines[2]);
}

#[test]
fn fleet_80x24() {
    let app = support::fleet_app(true, 80, 24);
    let text = snapshot("fleet_80x24", &app, 80, 24);
    assert!(
        text.contains("STALL IN PROGRESS  loopd pid 4242 loop 0 blocked 2.50s in poll"),
        "{text}"
    );
    assert!(
        text.contains("3 endpoints · 4 loops · 1 unreachable"),
        "{text}"
    );
    assert!(text.contains("unreachable old-99.sock"), "{text}");
    for line in text.lines() {
        assert!(line.chars().count() <= 80);
    }
}

#[test]
fn fleet_160x48() {
    let app = support::fleet_app(true, 160, 48);
    let text = snapshot("fleet_160x48", &app, 160, 48);
    // The stalled row names its callback; the others show their socket.
    let row = text
        .lines()
        .find(|l| l.contains("4242") && l.contains("STALL"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("tcp #12 \"prime peer 127.0.0.1:50500\""),
        "{row}"
    );
    assert!(text.contains("node-7311.sock"), "{text}");
    assert!(text.contains("agent"), "{text}");
}

#[test]
fn fleet_stalled_row_is_red_and_others_are_not() {
    let app = support::fleet_app(true, 160, 48);
    let mut t = Terminal::new(TestBackend::new(160, 48)).unwrap();
    t.draw(|f| loop_top::ui::draw(f, &app)).unwrap();
    let buf = t.backend().buffer();
    let lines = loop_top::ui::render_lines(&app, 160, 48).unwrap();
    let y = |pid: &str| {
        u16::try_from(
            lines
                .iter()
                .rposition(|l| l.contains(pid) && !l.contains("STALL IN PROGRESS"))
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(buf[(2, y("4242"))].bg, Color::Red);
    assert_ne!(buf[(2, y("7311"))].bg, Color::Red);
}

/// A stall of the fixtures as it is while being profiled: samples, a hot frame, a profile.
fn profiled_stall() -> proto::Stall {
    use proto::{Frame, ProfileSample, StallProfile};
    let f = |n: &str| Frame {
        function: n.into(),
        file: None,
        line: None,
    };
    let mut s = support::stall(true);
    s.samples = 40;
    s.hot_frame = Some("loopd::services::prime::is_prime (prime.rs:52)".into());
    s.profile = Some(StallProfile {
        interval_ms: 10,
        frames: vec![
            f("loopd::services::prime::is_prime"),
            f("loopd::services::prime::on_line"),
            f("core::num::<impl u64>::is_multiple_of"),
        ],
        stacks: vec![vec![0, 1], vec![2, 0, 1]],
        samples: (0..40)
            .map(|i| ProfileSample {
                at_us: 100_000 + i * 10_000,
                stack: u32::from(i % 4 == 0),
            })
            .collect(),
    });
    s
}

#[test]
fn a_stall_detail_shows_the_hottest_frames_and_the_banner_the_samples() {
    let mut app = live_app(true, View::Stalls, 120, 40);
    app.act(Action::Open);
    // The open detail asks for the profile at once…
    let text = snapshot("stall_detail_fetching_120x40", &app, 120, 40);
    assert!(text.contains("hottest frames: no samples yet"), "{text}");
    // …and shows it when it arrives; the status push brings the samples to the banner.
    let stall = profiled_stall();
    let mut status = support::status(true);
    let mut banner_stall = stall.clone();
    banner_stall.profile = None;
    status.loops[0].stall_in_progress = Some(banner_stall);
    for u in [
        Update::Status(Box::new(status)),
        Update::StallDetail(proto::StallsResult {
            as_of_ms: NOW,
            in_progress: vec![stall],
            recent: Vec::new(),
            total: 1,
        }),
    ] {
        app.update(AppEvent::Conn(ConnEvent::Update(u)));
    }
    let text = snapshot("stall_detail_profile_120x40", &app, 120, 40);
    assert!(
        text.contains("hottest frames (40 samples every 10 ms):"),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("SELF   TOTAL  FUNCTION"))
        .skip(1)
        .take(3)
        .collect();
    assert!(
        rows[0].contains("75.0%") && rows[0].contains("is_prime"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains("25.0%") && rows[1].contains("is_multiple_of"),
        "{rows:?}"
    );
    assert!(
        rows[2].contains("0.0%") && rows[2].contains("100.0%") && rows[2].contains("on_line"),
        "{rows:?}"
    );
    // The call tree: the chain down to is_prime on one line, its callee nested under it.
    assert!(
        text.contains(
            "100.0%   75.0%  loopd::services::prime::on_line → loopd::services::prime::is_prime"
        ),
        "{text}"
    );
    assert!(
        text.contains(" 25.0%   25.0%    core::num::<impl u64>::is_multiple_of"),
        "{text}"
    );
    assert!(
        text.contains("hottest: loopd::services::prime::is_prime (prime.rs:52) · 40 samples"),
        "{text}"
    );
}

#[test]
fn a_stall_without_a_kept_profile_says_why() {
    let mut app = live_app(true, View::Stalls, 120, 40);
    app.act(Action::Open);
    app.update(AppEvent::Conn(ConnEvent::CallFailed {
        method: loop_top::conn::STALL_DETAIL.into(),
        error: "no stall 7 is kept (code -32006 not found)".into(),
    }));
    let text = snapshot("stall_detail_missing_120x40", &app, 120, 40);
    assert!(
        text.contains("hottest frames: none (no stall 7 is kept"),
        "{text}"
    );
    assert!(app.note.is_none(), "not a footer note");
}
