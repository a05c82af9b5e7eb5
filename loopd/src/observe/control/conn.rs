//! One control connection: its decoder, its bounded output buffer, its subscription.

use std::collections::VecDeque;
use std::io::{self, Write};

use proto::methods::Topic;
use proto::{encode_into, Dropped, LineDecoder, LineError, ServerEvent};

use crate::engine::sys::PeerCred;

/// Notifications are dropped while a connection has this much unsent output; responses are
/// always queued, but the connection's input is not read while it is over the limit.
pub const OUT_LIMIT: usize = 4 * 1024 * 1024;

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
    /// Input left unread because the output is over the limit.
    pub read_paused: bool,
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

    /// Queues an already-encoded message line (a response): never dropped.
    pub fn queue_raw(&mut self, line: &[u8]) {
        self.out.extend_from_slice(line);
    }

    /// Queues an encoded notification unless the buffer is full; then it is dropped and
    /// counted, and a `dropped` notification goes before the next one that fits.
    /// Returns whether it was queued.
    pub fn push(&mut self, line: &[u8]) -> bool {
        if self.pending() + line.len() > OUT_LIMIT {
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

    /// Writes as much output as the socket takes.
    pub fn flush(&mut self) {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            if self.out.capacity() > OUT_LIMIT {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}
