//! Backpressure for the services: a peer that sends but does not read must not make loopd
//! buffer answers without bound. Past a high-water mark of queued output, reading pauses
//! (the kernel then pushes back on the peer) until the queue has drained.

use crate::engine::{DoneCb, EngineError, Loop, Tcp};

/// Queued output above which a connection stops reading.
pub const HIGH_WATER: usize = 256 * 1024;

/// Writes `bytes`; if the connection's write queue is now above [`HIGH_WATER`], pauses its
/// reads until this write (and so everything queued before it) has gone out.
///
/// # Errors
/// The write's own error (the connection is closing or shut down).
pub fn write_with_backpressure(lp: &mut Loop, c: Tcp, bytes: Vec<u8>) -> Result<(), EngineError> {
    let over = c.write_queue_size(lp) + bytes.len() > HIGH_WATER;
    if !over {
        return c.write(lp, bytes, None);
    }
    let resume: DoneCb = Box::new(move |lp, _result| {
        // Resume even when the write failed (peer reset): the read side then sees the error
        // or EOF and the service closes the connection. Not resuming left a reset peer's
        // handle open forever, reading paused and nothing queued. Fails only if the
        // connection closed meanwhile: nothing to resume then.
        let _ = c.read_resume(lp);
    });
    c.write(lp, bytes, Some(resume))?;
    c.read_stop(lp);
    Ok(())
}
