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

#[test]
fn only_ascii_digits_are_numbers_and_error_lines_escape_what_they_quote() {
    let d = Daemon::start_services("pool");
    let mut s = connect(d.addr("prime"));
    // Accepted: digits with spaces or tabs around them, and a CRLF line end.
    s.write_all(b" 97\t\r\n\t91 \n").unwrap();
    assert_eq!(read_line(&mut s), "prime");
    assert_eq!(read_line(&mut s), "composite");
    // Refused: a sign, vertical tab, form feed, Unicode spaces, non-ASCII digits.
    for bad in [
        &b"+97"[..],
        b"\x0b97",
        b"97\x0c",
        "\u{a0}97".as_bytes(),
        "97\u{2003}".as_bytes(),
        "\u{3000}97".as_bytes(),
        "\u{0669}\u{0667}".as_bytes(),
    ] {
        s.write_all(bad).unwrap();
        s.write_all(b"\n").unwrap();
        let line = read_line(&mut s);
        assert!(
            line.starts_with("error: ") && line.contains("is not a decimal number"),
            "{bad:?} → {line:?}"
        );
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{bad:?} echoed raw: {line:?}"
        );
    }
    // Control bytes in the quoted line come back escaped, never raw.
    s.write_all(b"\x1b[2J\x1b]0;pwned\x07\0\n").unwrap();
    assert_eq!(
        read_line(&mut s),
        "error: `\\x1b[2J\\x1b]0;pwned\\x07\\0` is not a decimal number from 0 to \
         18446744073709551615"
    );
    writeln!(s, "13").unwrap();
    assert_eq!(read_line(&mut s), "prime", "the connection stays usable");
}
