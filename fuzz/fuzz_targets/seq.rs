//! The `seq` protocol state machine against a reference written as searches for `^` and `$`.
//!
//! Input: byte 0 picks the start state and the chunk size; the rest is what a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopd::services::seq::{answer, SeqState};

fn reference(inside: bool, input: &[u8]) -> (Vec<u8>, bool) {
    let (mut out, mut rest, mut inside) = (Vec::new(), input, inside);
    loop {
        if !inside {
            match rest.iter().position(|&b| b == b'^') {
                Some(i) => rest = &rest[i + 1..],
                None => return (out, false),
            }
        }
        match rest.iter().position(|&b| b == b'$') {
            Some(j) => {
                out.extend(rest[..j].iter().map(|b| b.wrapping_add(1)));
                rest = &rest[j + 1..];
                inside = false;
            }
            None => {
                out.extend(rest.iter().map(|b| b.wrapping_add(1)));
                return (out, true);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [first, input @ ..] = data else {
        return;
    };
    let inside = first & 1 == 1;
    let mut state = if inside {
        SeqState::Inside
    } else {
        SeqState::Outside
    };
    let mut out = Vec::new();
    for chunk in input.chunks(usize::from(first >> 1) + 1) {
        answer(&mut state, chunk, &mut out);
    }
    let (want, want_inside) = reference(inside, input);
    assert_eq!(out, want);
    assert_eq!(state == SeqState::Inside, want_inside);
});
