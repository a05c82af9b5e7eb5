//! The primality service: a line with a decimal u64 → `prime` / `composite` / `error: …`,
//! by naive trial division. `pool` mode computes on the thread pool; `inline` computes on
//! the loop thread and blocks it — the stall the observability tooling must expose.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::PrimeMode;
use crate::engine::{DoneCb, EngineError, Handle, Loop, ReadEvent, Tcp};
use crate::observe::ServiceCounters;
use crate::services::flow::HIGH_WATER;

/// Longest accepted line, newline excluded.
pub const MAX_LINE: usize = 64;

/// Naive trial division by 2 and odd numbers up to √n. Slow on purpose: 2305843009213693951
/// takes seconds. Not inlined, so stack samples name it.
#[inline(never)]
pub fn is_prime_trial_division(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u64;
    while d <= n / d {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The answer to one line (without the newline), or the question to compute.
pub fn parse_line(line: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("empty line; send a decimal number".into());
    }
    let n: u64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a decimal number from 0 to 18446744073709551615"))?;
    if n < 2 {
        return Err(format!("{n} is neither prime nor composite"));
    }
    Ok(n)
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
    /// Numbers waiting for their turn (one computation in flight per connection keeps the
    /// answers in order).
    queue: VecDeque<Result<u64, String>>,
    busy: bool,
    closed: bool,
    /// The peer half-closed: answer what is queued, then shut down and close.
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
            busy: false,
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
                // A half-closed peer still gets the answers to what it sent.
                conn.borrow_mut().eof = true;
                settle(lp, c, &conn, &counters);
            }
            ReadEvent::Error(_) => {
                conn.borrow_mut().closed = true;
                counters.connection_closed();
                c.close(lp);
            }
        });
        if started.is_err() {
            client.close(lp);
        }
    })
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
        if st.queue.is_empty() && st.backlog.is_empty() && !st.busy {
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
            if st.busy || st.closed || c.is_closing(lp) {
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
                    conn.borrow_mut().busy = true;
                    let (conn2, counters2) = (conn.clone(), counters.clone());
                    let req = lp.queue_work(
                        move || is_prime_trial_division(n),
                        move |lp, result| {
                            conn2.borrow_mut().busy = false;
                            if conn2.borrow().closed {
                                return;
                            }
                            let bytes = match result {
                                Ok(p) => verdict(p).to_vec(),
                                Err(e) => format!("error: {e}\n").into_bytes(),
                            };
                            reply(lp, c, &conn2, &counters2, bytes);
                            pump(lp, c, &conn2, mode, &counters2);
                        },
                    );
                    req.set_label(lp, format!("prime {n}"));
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
        assert!(parse_line(&[0xff, 0xfe]).is_err());
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
