//! The sequence service: on connect send `*`; outside a message ignore bytes until `^`;
//! inside, answer each byte `b` with `b + 1` until `$`. Each client's state is its own.

use std::sync::Arc;

use crate::engine::{EngineError, Handle, Loop, ReadEvent, Tcp};
use crate::observe::ServiceCounters;

/// Where a client is in the protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeqState {
    /// Waiting for `^`.
    #[default]
    Outside,
    /// Inside a message: answering bytes until `$`.
    Inside,
}

/// Feeds `input` through the protocol from `state`, appending answers to `out`. Pure, so it
/// is tested (and fuzzed) without sockets.
pub fn answer(state: &mut SeqState, input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        match (*state, b) {
            (SeqState::Outside, b'^') => *state = SeqState::Inside,
            (SeqState::Outside, _) => {}
            (SeqState::Inside, b'$') => *state = SeqState::Outside,
            (SeqState::Inside, b) => out.push(b.wrapping_add(1)),
        }
    }
}

/// The `seq` kind: no options.
#[derive(Debug)]
pub struct Seq;

impl crate::service::Service for Seq {
    fn start(
        &self,
        ctx: crate::service::ServiceContext<'_>,
    ) -> Result<(), crate::service::ServiceError> {
        let listener = ctx.require_listener()?;
        Ok(start(ctx.lp, listener, ctx.counters.clone())?)
    }
}

/// Serves the sequence protocol on a bound listener.
///
/// # Errors
/// Bind or listen failures (address in use, …).
pub fn start(
    lp: &mut Loop,
    listener: Tcp,
    counters: Arc<ServiceCounters>,
) -> Result<(), EngineError> {
    listener.listen(lp, 1024, move |lp, server, status| {
        if let Err(e) = status {
            crate::services::warn_accept_failed("seq", &e);
            return;
        }
        let Ok(client) = server.accept(lp) else {
            return;
        };
        if let Ok(peer) = client.peer_addr(lp) {
            client.set_label(lp, format!("seq peer {peer}"));
        }
        let counters = counters.clone();
        counters.connection_opened();
        counters.add_bytes_sent(1);
        if client.write(lp, b"*".to_vec(), None).is_err() {
            counters.connection_closed();
            client.close(lp);
            return;
        }
        let mut state = SeqState::Outside;
        let started = client.read_start(lp, move |lp, c, ev| match ev {
            ReadEvent::Data(bytes) => {
                counters.add_bytes_received(bytes.len() as u64);
                let mut out = Vec::new();
                answer(&mut state, bytes, &mut out);
                if !out.is_empty() {
                    counters.add_bytes_sent(out.len() as u64);
                    if super::flow::write_with_backpressure(lp, c, out).is_err() {
                        counters.connection_closed();
                        c.close(lp);
                    }
                }
            }
            ReadEvent::Eof => {
                // A half-closed peer still gets the answers queued for it: shut the write
                // side after them, then close.
                counters.connection_closed();
                if c.shutdown(lp, move |lp, _| c.close(lp)).is_err() {
                    c.close(lp);
                }
            }
            ReadEvent::Error(_) => {
                counters.connection_closed();
                c.close(lp);
            }
        });
        if started.is_err() {
            client.close(lp);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_inside_messages_only() {
        let mut st = SeqState::Outside;
        let mut out = Vec::new();
        answer(&mut st, b"xx^abc$yy^\x00\xff$", &mut out);
        assert_eq!(out, vec![b'b', b'c', b'd', 1, 0]);
        assert_eq!(st, SeqState::Outside);
    }

    #[test]
    fn state_survives_splits() {
        let mut st = SeqState::Outside;
        let mut out = Vec::new();
        for b in b"^hel" {
            answer(&mut st, &[*b], &mut out);
        }
        answer(&mut st, b"lo$^", &mut out);
        assert_eq!(out, b"ifmmp");
        assert_eq!(st, SeqState::Inside);
    }
}
