//! One control connection: its decoder, its bounded output buffer, its subscription.

use std::collections::VecDeque;
use std::io::{self, Write};

use proto::methods::Topic;
use proto::{encode_into, Dropped, LineDecoder, LineError, ServerEvent};

use crate::sys::PeerCred;

/// Notifications are dropped while a connection has this much unsent output; responses are
/// always queued, but the connection's input is not read while it is over the limit. An
/// answer too big to queue whole (a `trace`) is streamed instead: at most `STREAM_PIECE`
/// of it waits in the buffer at a time.
pub const OUT_LIMIT: usize = 4 * 1024 * 1024;

/// How much of a streamed answer is produced at a time, when the buffer runs low.
pub const STREAM_PIECE: usize = 64 * 1024;

/// An answer written piece by piece as the client reads (a `trace`).
pub(crate) trait Streamed: Send {
    /// Appends at least `want` more bytes to `out` (less at the end); true once complete.
    fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool;
}

/// What a connection subscribed to.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub topics: Vec<Topic>,
    pub interval_ns: u64,
    pub next_due_ns: u64,
}

impl Subscription {
    pub fn has(&self, t: &Topic) -> bool {
        self.topics.contains(t)
    }
}

pub(crate) struct Conn {
    pub stream: mio::net::UnixStream,
    pub peer: PeerCred,
    pub decoder: LineDecoder,
    /// Lines read but not handled yet (input is handled only while the output is under
    /// the limit).
    pub lines: VecDeque<Result<String, LineError>>,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    sent: usize,
    pub sub: Option<Subscription>,
    dropped_pending: u64,
    pub dropped_total: u64,
    /// Close once the output is flushed (or at `close_by_ns`).
    pub closing: bool,
    pub close_by_ns: u64,
    /// The peer closed its side or the socket failed.
    pub dead: bool,
    /// Input left unread because the output is over the limit or an answer is streaming.
    pub read_paused: bool,
    /// The answer being streamed; nothing else is written until it is complete.
    streaming: Option<Box<dyn Streamed>>,
}

impl Conn {
    pub fn new(stream: mio::net::UnixStream, peer: PeerCred) -> Conn {
        Conn {
            stream,
            peer,
            decoder: LineDecoder::new(),
            lines: VecDeque::new(),
            out: Vec::new(),
            sent: 0,
            sub: None,
            dropped_pending: 0,
            dropped_total: 0,
            closing: false,
            close_by_ns: 0,
            dead: false,
            read_paused: false,
            streaming: None,
        }
    }

    /// Unsent output, bytes.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Queues a message (a response or the hello): never dropped.
    pub fn queue<T: serde::Serialize + ?Sized>(&mut self, message: &T) {
        if let Err(e) = encode_into(&mut self.out, message) {
            tracing::error!(error = %e, "cannot encode a control message");
        }
    }

    /// Starts streaming an answer (after what is queued); see [`Streamed`].
    pub fn stream(&mut self, answer: Box<dyn Streamed>) {
        debug_assert!(self.streaming.is_none(), "one streamed answer at a time");
        self.streaming = Some(answer);
    }

    /// Whether an answer is being streamed.
    pub fn is_streaming(&self) -> bool {
        self.streaming.is_some()
    }

    /// Whether the connection's next input must wait: its output is over [`OUT_LIMIT`], or an
    /// answer is still streaming (answers go out in order, whole).
    pub fn is_busy(&self) -> bool {
        self.pending() > OUT_LIMIT || self.streaming.is_some()
    }

    /// Nothing left to send.
    pub fn is_drained(&self) -> bool {
        self.pending() == 0 && self.streaming.is_none()
    }

    /// Queues an encoded notification unless the buffer is full; then it is dropped and
    /// counted, and a `dropped` notification goes before the next one that fits.
    /// Returns whether it was queued.
    pub fn push(&mut self, line: &[u8]) -> bool {
        // Never in the middle of a streamed answer's line.
        if self.streaming.is_some() || self.pending() + line.len() > OUT_LIMIT {
            if self.dropped_pending == 0 {
                tracing::info!(
                    peer_pid = self.peer.pid,
                    pending_bytes = self.pending(),
                    "control client reads too slowly; dropping its notifications"
                );
            }
            self.dropped_pending += 1;
            self.dropped_total += 1;
            return false;
        }
        if self.dropped_pending > 0 {
            let n = ServerEvent::Dropped(Dropped {
                count: self.dropped_pending,
                total: self.dropped_total,
            })
            .to_notification();
            self.queue(&n);
            self.dropped_pending = 0;
        }
        self.out.extend_from_slice(line);
        true
    }

    /// Writes as much output as the socket takes, producing more of a streamed answer each
    /// time less than [`STREAM_PIECE`] of it waits.
    pub fn flush(&mut self) {
        while !self.dead {
            if self.pending() < STREAM_PIECE && self.streaming.is_some() {
                self.compact();
                if let Some(answer) = self.streaming.as_mut() {
                    if answer.fill(&mut self.out, STREAM_PIECE) {
                        self.streaming = None;
                    }
                }
            }
            if self.sent == self.out.len() {
                break;
            }
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => self.dead = true,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        self.compact();
    }

    /// Drops what was sent from the buffer (all of it, or the front half once it is most);
    /// an emptied buffer that a big answer grew is given back, so idle connections stay small.
    fn compact(&mut self) {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            if self.out.capacity() > 4 * STREAM_PIECE {
                self.out.shrink_to(STREAM_PIECE);
            }
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}
