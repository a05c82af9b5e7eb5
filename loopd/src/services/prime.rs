//! The primality service: a line with a decimal u64 → `prime` / `composite` / `error: …`,
//! by naive trial division. `pool` mode computes on the thread pool; `inline` computes on
//! the loop thread and blocks it — the stall the observability tooling must expose.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::PrimeMode;
use crate::engine::{
    DoneCb, EngineError, Handle, Loop, ReadEvent, Tcp, WorkContext, WorkError, WorkRequest,
};
use crate::observe::ServiceCounters;
use crate::services::flow::HIGH_WATER;

/// Longest accepted line, newline excluded.
pub const MAX_LINE: usize = 64;

/// Naive trial division by 2 and odd numbers up to √n. Slow on purpose: 2305843009213693951
/// takes seconds. Not inlined, so stack samples name it.
#[inline(never)]
pub fn is_prime_trial_division(n: u64) -> bool {
    is_prime_trial_division_until(n, || true) == Some(true)
}

/// Odd divisors tried between two calls of `keep_going` (about a millisecond of work).
pub const DIVISORS_PER_CHECK: u64 = 1 << 16;

/// [`is_prime_trial_division`] that asks `keep_going` every [`DIVISORS_PER_CHECK`] divisors
/// and gives up (`None`) when it says no: pool work stops soon after its client is gone.
#[inline(never)]
pub fn is_prime_trial_division_until(n: u64, mut keep_going: impl FnMut() -> bool) -> Option<bool> {
    if n < 2 {
        return Some(false);
    }
    if n.is_multiple_of(2) {
        return Some(n == 2);
    }
    let mut d = 3u64;
    loop {
        let pause_at = d.saturating_add(2 * DIVISORS_PER_CHECK);
        while d <= n / d {
            if n.is_multiple_of(d) {
                return Some(false);
            }
            d += 2;
            if d >= pause_at {
                break;
            }
        }
        if d > n / d {
            return Some(true);
        }
        if !keep_going() {
            return None;
        }
    }
}

/// Numbers from here on take more than [`DIVISORS_PER_CHECK`] divisors (√n / 2): pool mode
/// runs them as slow work, which holds at most half the workers; smaller ones (under a
/// millisecond) are fast work, answered beside them.
pub const SLOW_FROM: u64 = (2 * DIVISORS_PER_CHECK) * (2 * DIVISORS_PER_CHECK);

/// The answer to one line (without the newline), or the question to compute.
///
/// A question is ASCII digits, optionally surrounded by spaces and tabs, optionally ended by
/// the CR of a CRLF line end; nothing else (no sign, no other white space). The error
/// quotes the line with [`escape`], so no control byte of it is echoed raw.
pub fn parse_line(line: &[u8]) -> Result<u64, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = line.iter().position(|b| !blank(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |last| last + 1);
    let text = &line[start..end];
    if text.is_empty() {
        return Err("empty line; send a decimal number".into());
    }
    let n = text
        .iter()
        .try_fold(0u64, |n, &b| {
            let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
            n.checked_mul(10)?.checked_add(digit)
        })
        .ok_or_else(|| {
            format!(
                "`{}` is not a decimal number from 0 to 18446744073709551615",
                escape(text)
            )
        })?;
    if n < 2 {
        return Err(format!("{n} is neither prime nor composite"));
    }
    Ok(n)
}

/// `bytes` as printable ASCII: `\\`, `\t`, `\r`, `\0` and `\xNN` for every other control or
/// non-ASCII byte, so an error line never carries a raw escape sequence back to a terminal.
/// At most 4 characters per byte.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// The reply line for a parsed number.
pub fn verdict(prime: bool) -> &'static [u8] {
    if prime {
        b"prime\n"
    } else {
        b"composite\n"
    }
}

/// Splits incoming bytes into lines, rejecting (and skipping) lines over [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    discarding: bool,
}

/// One item out of the splitter.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (no newline).
    Text(Vec<u8>),
    /// A line that was too long (reported once; its rest is skipped).
    TooLong,
}

impl LineSplitter {
    /// Feeds bytes; returns the complete lines.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        self.feed_some(bytes, usize::MAX, &mut out);
        out
    }

    /// Feeds bytes until `max_lines` lines are complete; returns how many bytes it consumed
    /// (the caller keeps the rest for later).
    pub fn feed_some(&mut self, bytes: &[u8], max_lines: usize, out: &mut Vec<Line>) -> usize {
        let mut produced = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if produced == max_lines {
                return i;
            }
            if b == b'\n' {
                if self.discarding {
                    self.discarding = false;
                } else {
                    out.push(Line::Text(std::mem::take(&mut self.buf)));
                    produced += 1;
                }
                self.buf.clear();
                continue;
            }
            if self.discarding {
                continue;
            }
            if self.buf.len() == MAX_LINE {
                self.buf.clear();
                self.discarding = true;
                out.push(Line::TooLong);
                produced += 1;
                continue;
            }
            self.buf.push(b);
        }
        bytes.len()
    }
}

/// Parsed lines waiting for their answer past which a connection stops reading (the kernel
/// then pushes back on a peer that pipelines faster than the pool answers).
pub const MAX_QUEUED: usize = 1024;

struct Conn {
    splitter: LineSplitter,
    /// Numbers waiting for their turn.
    queue: VecDeque<Result<u64, String>>,
    /// The question being computed on the pool: one per connection, which keeps the answers
    /// in order and one client to one worker; cancelled when the peer goes away.
    in_flight: Option<WorkRequest>,
    closed: bool,
    /// The peer sent EOF: answer what is queued, then shut down and close. Reads stay on
    /// meanwhile, to learn of a reset: a peer that closed entirely (rather than half-closed)
    /// answers our next bytes with one, and the work queued for it is dropped then
    /// ([`abandon`]).
    eof: bool,
    /// Reads paused: too many lines queued or too many answers unsent.
    paused: bool,
    /// Bytes read but not yet split into lines: at most [`MAX_QUEUED`] lines are parsed
    /// ahead of their answers, so one read full of newlines cannot queue 64 Ki of them.
    backlog: Vec<u8>,
}

/// Splits backlog bytes into queued lines while the queue has room.
fn take_lines(conn: &Rc<RefCell<Conn>>) {
    let mut st = conn.borrow_mut();
    let room = MAX_QUEUED.saturating_sub(st.queue.len());
    if room == 0 || st.backlog.is_empty() {
        return;
    }
    let backlog = std::mem::take(&mut st.backlog);
    let mut lines = Vec::new();
    let used = st.splitter.feed_some(&backlog, room, &mut lines);
    st.backlog = backlog;
    st.backlog.drain(..used);
    for line in lines {
        let item = match line {
            Line::Text(t) => parse_line(&t),
            Line::TooLong => Err(format!("line longer than {MAX_LINE} bytes")),
        };
        st.queue.push_back(item);
    }
}

/// The `prime` kind: `mode = "pool"` (default) or `"inline"`.
#[derive(Debug)]
pub struct Prime {
    /// Where numbers are tested.
    pub mode: PrimeMode,
}

impl crate::service::Service for Prime {
    fn start(
        &self,
        ctx: crate::service::ServiceContext<'_>,
    ) -> Result<(), crate::service::ServiceError> {
        let listener = ctx.require_listener()?;
        Ok(start(ctx.lp, listener, self.mode, ctx.counters.clone())?)
    }
}

/// Serves the primality protocol on a bound listener.
///
/// # Errors
/// Listen failures.
pub fn start(
    lp: &mut Loop,
    listener: Tcp,
    mode: PrimeMode,
    counters: Arc<ServiceCounters>,
) -> Result<(), EngineError> {
    listener.listen(lp, 1024, move |lp, server, status| {
        if let Err(e) = status {
            crate::services::warn_accept_failed("prime", &e);
            return;
        }
        let Ok(client) = server.accept(lp) else {
            return;
        };
        if let Ok(peer) = client.peer_addr(lp) {
            client.set_label(lp, format!("prime peer {peer}"));
        }
        counters.connection_opened();
        let conn = Rc::new(RefCell::new(Conn {
            splitter: LineSplitter::default(),
            queue: VecDeque::new(),
            in_flight: None,
            closed: false,
            eof: false,
            paused: false,
            backlog: Vec::new(),
        }));
        let counters = counters.clone();
        let started = client.read_start(lp, move |lp, c, ev| match ev {
            ReadEvent::Data(bytes) => {
                counters.add_bytes_received(bytes.len() as u64);
                conn.borrow_mut().backlog.extend_from_slice(bytes);
                pump(lp, c, &conn, mode, &counters);
            }
            ReadEvent::Eof => {
                // The socket changed again after the peer's EOF: a reset (the peer is gone)
                // shows as a socket error, not as a read.
                let again = std::mem::replace(&mut conn.borrow_mut().eof, true);
                if again && !matches!(c.take_error(lp), Ok(None)) {
                    abandon(lp, c, &conn, &counters);
                    return;
                }
                // A half-closed peer still gets the answers to what it sent.
                settle(lp, c, &conn, &counters);
                if !conn.borrow().closed {
                    // Fails only if the connection is closing.
                    let _ = c.read_resume(lp);
                }
            }
            ReadEvent::Error(_) => abandon(lp, c, &conn, &counters),
        });
        if started.is_err() {
            client.close(lp);
        }
    })
}

/// The peer is gone (a reset or another read error): nobody waits for the answers, so its
/// queued lines are dropped, the question on the pool is cancelled (running trial division
/// stops at its next checkpoint) and the connection is closed.
fn abandon(lp: &mut Loop, c: Tcp, conn: &Rc<RefCell<Conn>>, counters: &Arc<ServiceCounters>) {
    let in_flight = {
        let mut st = conn.borrow_mut();
        if st.closed {
            return;
        }
        st.closed = true;
        st.queue = VecDeque::new();
        st.backlog = Vec::new();
        st.in_flight.take()
    };
    if let Some(work) = in_flight {
        // Fails only when its answer is already being delivered: nothing left to stop.
        let _ = work.cancel(lp);
    }
    counters.connection_closed();
    c.close(lp);
}

/// Writes an answer. Past [`HIGH_WATER`] of unsent answers, reading pauses (in `settle`)
/// and this write's completion re-evaluates it.
fn reply(
    lp: &mut Loop,
    c: Tcp,
    conn: &Rc<RefCell<Conn>>,
    counters: &Arc<ServiceCounters>,
    bytes: Vec<u8>,
) {
    counters.add_bytes_sent(bytes.len() as u64);
    let over = c.write_queue_size(lp) + bytes.len() > HIGH_WATER;
    let cb: Option<DoneCb> = over.then(|| {
        let (conn, counters) = (conn.clone(), counters.clone());
        Box::new(move |lp: &mut Loop, _: std::io::Result<()>| settle(lp, c, &conn, &counters))
            as DoneCb
    });
    // Fails only when the connection is closing: the answer has nobody to go to.
    let _ = c.write(lp, bytes, cb);
}

/// After any change: reads run while few lines wait and few answers are unsent (so neither
/// the line queue nor the write queue grows without bound for a peer that never reads); a
/// half-closed peer's connection is shut down and closed once everything is answered.
fn settle(lp: &mut Loop, c: Tcp, conn: &Rc<RefCell<Conn>>, counters: &Arc<ServiceCounters>) {
    let mut st = conn.borrow_mut();
    if st.closed {
        return;
    }
    if st.eof {
        if st.queue.is_empty() && st.backlog.is_empty() && st.in_flight.is_none() {
            st.closed = true;
            drop(st);
            counters.connection_closed();
            if c.shutdown(lp, move |lp, _| c.close(lp)).is_err() {
                c.close(lp);
            }
        }
        return;
    }
    let read = st.backlog.is_empty()
        && st.queue.len() < MAX_QUEUED
        && c.write_queue_size(lp) <= HIGH_WATER;
    if read && st.paused {
        st.paused = false;
        // Fails only if the connection is closing.
        let _ = c.read_resume(lp);
    } else if !read && !st.paused {
        st.paused = true;
        c.read_stop(lp);
    }
}

/// Answers queued lines in order: errors at once, numbers inline or one at a time on the pool.
fn pump(
    lp: &mut Loop,
    c: Tcp,
    conn: &Rc<RefCell<Conn>>,
    mode: PrimeMode,
    counters: &Arc<ServiceCounters>,
) {
    loop {
        take_lines(conn);
        let next = {
            let mut st = conn.borrow_mut();
            if st.in_flight.is_some() || st.closed || c.is_closing(lp) {
                break;
            }
            match st.queue.pop_front() {
                Some(item) => item,
                None => break,
            }
        };
        match next {
            Err(msg) => reply(
                lp,
                c,
                conn,
                counters,
                format!("error: {msg}\n").into_bytes(),
            ),
            Ok(n) => match mode {
                PrimeMode::Inline => {
                    let prime = is_prime_trial_division(n);
                    reply(lp, c, conn, counters, verdict(prime).to_vec());
                }
                PrimeMode::Pool => {
                    let (conn2, counters2) = (conn.clone(), counters.clone());
                    let after = move |lp: &mut Loop, result: Result<Option<bool>, WorkError>| {
                        conn2.borrow_mut().in_flight = None;
                        if conn2.borrow().closed {
                            return;
                        }
                        let bytes = match result {
                            Ok(Some(p)) => verdict(p).to_vec(),
                            // Stopped early only when cancelled (the peer is gone).
                            Ok(None) => format!("error: {}\n", WorkError::Cancelled).into_bytes(),
                            Err(e) => format!("error: {e}\n").into_bytes(),
                        };
                        reply(lp, c, &conn2, &counters2, bytes);
                        pump(lp, c, &conn2, mode, &counters2);
                    };
                    // Large numbers are slow work: they share at most half the workers, so
                    // fs requests (http) always find one, and stop when cancelled.
                    let req = if n < SLOW_FROM {
                        lp.queue_work(move || Some(is_prime_trial_division(n)), after)
                    } else {
                        lp.queue_work_slow(
                            move |ctx: &WorkContext<'_>| {
                                is_prime_trial_division_until(n, || ctx.checkpoint().is_ok())
                            },
                            after,
                        )
                    };
                    req.set_label(lp, format!("prime {n}"));
                    conn.borrow_mut().in_flight = Some(req);
                    break;
                }
            },
        }
    }
    settle(lp, c, conn, counters);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_small_primes_and_composites() {
        let primes = [2u64, 3, 5, 7, 11, 13, 97, 7919, 1_000_000_007];
        let composites = [4u64, 6, 9, 15, 91, 7917, 1_000_000_008, 4_294_967_297];
        assert!(primes.iter().all(|&p| is_prime_trial_division(p)));
        assert!(composites.iter().all(|&c| !is_prime_trial_division(c)));
    }

    #[test]
    fn parses_lines_and_names_the_problem() {
        assert_eq!(parse_line(b" 42 \r"), Ok(42));
        assert!(parse_line(b"abc").unwrap_err().contains("abc"));
        assert!(parse_line(b"-5").is_err());
        assert!(parse_line(b"18446744073709551616").is_err());
        assert!(parse_line(b"1").unwrap_err().contains("neither"));
        assert!(parse_line(b"").is_err());
        assert!(parse_line(&[0xff, 0xfe])
            .unwrap_err()
            .contains("\\xff\\xfe"));
    }

    #[test]
    fn accepts_only_ascii_digits_with_blanks_and_a_crlf_end() {
        for ok in [
            &b"97"[..],
            b" 97",
            b"97 ",
            b"\t97\t",
            b"97\r",
            b" \t 97 \t\r",
            b"0097",
        ] {
            assert_eq!(parse_line(ok), Ok(97), "{ok:?}");
        }
        for bad in [
            &b"+97"[..],
            b"-97",
            b"9 7",
            b"\x0b97",
            b"97\x0c",
            b"\x0c97",
            b"97\r\r",
            b"\r97",
            "\u{a0}97".as_bytes(),
            "97\u{2003}".as_bytes(),
            "\u{3000}97".as_bytes(),
            "\u{0667}".as_bytes(),
            b"0x61",
            b"97\0",
        ] {
            let err = parse_line(bad).unwrap_err();
            assert!(err.contains("is not a decimal number"), "{bad:?} → {err}");
        }
        assert_eq!(parse_line(b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_line(b"18446744073709551616").is_err());
        assert!(parse_line(b" \t\r").unwrap_err().starts_with("empty line"));
    }

    #[test]
    fn error_lines_never_echo_control_bytes_or_non_ascii() {
        let err = parse_line(b"\x1b[31mred\x1b[0m\0\x07").unwrap_err();
        assert_eq!(
            err,
            "`\\x1b[31mred\\x1b[0m\\0\\x07` is not a decimal number from 0 to 18446744073709551615"
        );
        let err = parse_line("9\u{a0}7\x0b\\".as_bytes()).unwrap_err();
        assert!(err.starts_with("`9\\xc2\\xa07\\x0b\\\\`"), "{err}");
        let err = parse_line(&[0xff, b'\t', 0x7f, b'1', b'\r', b'2']).unwrap_err();
        assert!(err.starts_with("`\\xff\\t\\x7f1\\r2`"), "{err}");
        // Every byte of a longest line escaped: bounded.
        let worst = parse_line(&[0x1b; MAX_LINE]).unwrap_err();
        assert!(worst.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert!(worst.len() <= 4 * MAX_LINE + 64, "{}", worst.len());
    }

    #[test]
    fn trial_division_stops_when_told_and_agrees_otherwise() {
        let big = 2_305_843_009_213_693_951u64;
        let mut checks = 0;
        assert_eq!(
            is_prime_trial_division_until(big, || {
                checks += 1;
                checks < 3
            }),
            None
        );
        assert_eq!(checks, 3, "asked every {DIVISORS_PER_CHECK} divisors");
        for n in [
            0u64,
            1,
            2,
            3,
            4,
            9,
            25,
            97,
            7919,
            4_294_967_297,
            1_000_000_007,
        ] {
            assert_eq!(
                is_prime_trial_division_until(n, || true),
                Some(is_prime_trial_division(n)),
                "{n}"
            );
        }
        // A composite whose smallest factor lies past the first check.
        let p = 1_000_003u64;
        assert_eq!(is_prime_trial_division_until(p * p, || true), Some(false));
        assert_eq!(is_prime_trial_division_until(p * p, || false), None);
    }

    #[test]
    fn long_lines_are_rejected_once_and_skipped() {
        let mut s = LineSplitter::default();
        let mut input = vec![b'1'; 100];
        input.extend_from_slice(b"\n7\n");
        let lines = s.feed(&input);
        assert_eq!(lines, vec![Line::TooLong, Line::Text(b"7".to_vec())]);
        let split: Vec<_> = b"12".iter().flat_map(|b| s.feed(&[*b])).collect();
        assert!(split.is_empty());
        assert_eq!(s.feed(b"3\n"), vec![Line::Text(b"123".to_vec())]);
    }
}
