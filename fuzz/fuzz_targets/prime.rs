//! The `prime` line splitter and number parser.
//!
//! Input: byte 0 picks the chunk size; the rest is what a client sends. Checks: the same lines
//! however split, no line over 64 bytes gets through, `parse_line` agrees with a reference,
//! its error lines are printable ASCII (control bytes escaped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopd::services::prime::{parse_line, Line, LineSplitter, MAX_LINE};

/// ASCII digits, optionally surrounded by spaces and tabs, optionally ended by a CR.
fn reference(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    let digits = text.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u128 = 0;
    for d in digits.bytes() {
        n = n * 10 + u128::from(d - b'0');
        if n > u128::from(u64::MAX) {
            return None;
        }
    }
    u64::try_from(n).ok().filter(|&n| n >= 2)
}

fuzz_target!(|data: &[u8]| {
    let [first, input @ ..] = data else {
        return;
    };
    let whole = LineSplitter::default().feed(input);
    let mut split = LineSplitter::default();
    let mut lines = Vec::new();
    for chunk in input.chunks(usize::from(*first) + 1) {
        lines.extend(split.feed(chunk));
    }
    assert_eq!(lines, whole);
    for line in lines {
        if let Line::Text(text) = line {
            assert!(text.len() <= MAX_LINE);
            let parsed = parse_line(&text);
            if let Err(msg) = &parsed {
                assert!(msg.bytes().all(|b| (0x20..0x7f).contains(&b)), "{msg:?}");
            }
            assert_eq!(parsed.ok(), reference(&text));
        }
    }
});
