//! The primality service against the real daemon, in both modes.

use std::io::{Read, Write};

use crate::support::{connect, read_line, Daemon};

/// Prime and slow enough to dominate (about a second of trial division in a debug build).
const BIG_PRIME: &str = "10000000000000061";

#[test]
fn answers_known_numbers_and_explains_bad_input() {
    let d = Daemon::start_services("pool");
    let mut s = connect(d.addr("prime"));
    for (q, a) in [
        ("2", "prime"),
        ("97", "prime"),
        ("1000000007", "prime"),
        ("91", "composite"),
        ("4294967297", "composite"),
        ("100000000000031", "prime"),
    ] {
        writeln!(s, "{q}").unwrap();
        assert_eq!(read_line(&mut s), a, "{q}");
    }
    for bad in ["abc", "-3", "18446744073709551616", "1", ""] {
        writeln!(s, "{bad}").unwrap();
        let line = read_line(&mut s);
        assert!(line.starts_with("error: "), "{bad:?} → {line}");
    }
    // An over-long line is rejected; the connection stays usable.
    writeln!(s, "{}", "1".repeat(100)).unwrap();
    assert!(read_line(&mut s).contains("longer than 64"));
    writeln!(s, "13").unwrap();
    assert_eq!(read_line(&mut s), "prime");
}

#[test]
fn pipelined_lines_are_answered_in_order() {
    let d = Daemon::start_services("pool");
    let mut s = connect(d.addr("prime"));
    s.write_all(b"7\n8\nx\n11\n").unwrap();
    let answers: Vec<String> = (0..4).map(|_| read_line(&mut s)).collect();
    assert_eq!(answers[0], "prime");
    assert_eq!(answers[1], "composite");
    assert!(answers[2].starts_with("error:"));
    assert_eq!(answers[3], "prime");
}

/// Sends the big prime on one connection, then a trivial question on another; returns
/// whether the trivial answer arrived while the big one was still being computed.
///
/// Ordering, not timing: loopback delivers a write before `write` returns, so once the
/// small answer has been read, a big answer written earlier is already readable.
fn small_answer_first(d: &Daemon) -> bool {
    let addr = d.addr("prime");
    let mut big = connect(addr);
    writeln!(big, "97").unwrap();
    assert_eq!(
        read_line(&mut big),
        "prime",
        "connection established and served"
    );
    writeln!(big, "{BIG_PRIME}").unwrap();
    let mut small = connect(addr);
    writeln!(small, "7").unwrap();
    assert_eq!(read_line(&mut small), "prime");
    big.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let big_already_answered = match big.read(&mut probe) {
        Ok(n) => n > 0,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    };
    big.set_nonblocking(false).unwrap();
    if !big_already_answered {
        // Let the computation finish before the daemon is dropped.
        let _ = read_line(&mut big);
    }
    !big_already_answered
}

#[test]
fn inline_mode_makes_other_clients_wait() {
    let d = Daemon::start_services("inline");
    assert!(
        !small_answer_first(&d),
        "inline: the loop was busy with the big prime, so the small one waited"
    );
}

#[test]
fn pool_mode_keeps_other_clients_served() {
    let d = Daemon::start_services("pool");
    assert!(
        small_answer_first(&d),
        "pool: the loop answered the small question while a worker computed"
    );
}
