//! Golden-file tests of the human output: fixed protocol values (tests/support/fixtures.rs)
//! rendered and compared with the files under tests/golden/. `UPDATE_GOLDEN=1 cargo test -p
//! loopctl` rewrites the files; review the diff before committing.

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::path::PathBuf;

use proto::{StallEvent, StallEventKind};

use crate::cmd;
use crate::output::Style;

const PLAIN: Style = Style { color: false };
const COLOR: Style = Style { color: true };

fn check(name: &str, actual: &str) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", name]
        .iter()
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `UPDATE_GOLDEN=1 cargo test -p loopctl` to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering (first at line {}); \
             if the change is intended, run `UPDATE_GOLDEN=1 cargo test -p loopctl`\n\
             --- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

#[test]
fn status() {
    check(
        "status.txt",
        &cmd::status::render(&fixtures::status(), &PLAIN, fixtures::NOW_MS),
    );
}

#[test]
fn status_in_colour() {
    let text = cmd::status::render(&fixtures::status(), &COLOR, fixtures::NOW_MS);
    // Escapes made visible so the golden file reads as text.
    check("status.color.txt", &text.replace('\x1b', "\\e"));
}

#[test]
fn status_of_an_empty_daemon() {
    check(
        "status.empty.txt",
        &cmd::status::render(&proto::Status::default(), &PLAIN, 0),
    );
}

#[test]
fn handles() {
    check(
        "handles.txt",
        &cmd::handles::render_handles(&fixtures::handles(), &PLAIN, fixtures::NOW_MS),
    );
}

#[test]
fn handles_none() {
    let empty = proto::HandlesResult {
        as_of_ms: fixtures::AS_OF_MS,
        ..Default::default()
    };
    check(
        "handles.empty.txt",
        &cmd::handles::render_handles(&empty, &PLAIN, fixtures::NOW_MS),
    );
}

#[test]
fn requests() {
    check(
        "requests.txt",
        &cmd::handles::render_requests(&fixtures::requests(), &PLAIN, fixtures::NOW_MS),
    );
}

#[test]
fn threadpool() {
    check(
        "threadpool.txt",
        &cmd::threadpool::render(&fixtures::threadpool(), &PLAIN, fixtures::NOW_MS),
    );
}

#[test]
fn stalls_with_stacks() {
    check(
        "stalls.txt",
        &cmd::stalls::render(&fixtures::stalls(), &PLAIN, fixtures::NOW_MS, true),
    );
}

#[test]
fn stalls_without_stacks() {
    check(
        "stalls.no-stacks.txt",
        &cmd::stalls::render(&fixtures::stalls(), &PLAIN, fixtures::NOW_MS, false),
    );
}

#[test]
fn config() {
    check(
        "config.txt",
        &cmd::config::render(&fixtures::config(), &PLAIN, fixtures::NOW_MS),
    );
}

#[test]
fn watch_lines() {
    let mut text = cmd::watch::header(&PLAIN);
    text.push_str(&cmd::watch::render_lines(&fixtures::status(), &PLAIN));
    let mut calm = fixtures::status();
    calm.loops[0].stall_in_progress = None;
    calm.loops[0].utilization.last_1s = 0.1;
    text.push_str(&cmd::watch::render_lines(&calm, &PLAIN));
    text.push_str(&cmd::watch::render_stall_event(
        &StallEvent {
            event: StallEventKind::Opened,
            stall: fixtures::stall(true),
        },
        &PLAIN,
        fixtures::NOW_MS,
    ));
    text.push_str(&cmd::watch::render_stall_event(
        &StallEvent {
            event: StallEventKind::Closed,
            stall: fixtures::stall(false),
        },
        &PLAIN,
        fixtures::NOW_MS,
    ));
    check("watch.txt", &text);
}
