//! Poll handles (libuv's `uv_poll_t`): readiness of a file descriptor the caller owns.
//!
//! mio is edge-triggered, so the callback runs when the descriptor *becomes* readable or
//! writable: read or write until `EAGAIN` before expecting another call (libuv's poll handle
//! is level-triggered; this is the one semantic difference, and it is what lets loopd avoid
//! an `epoll_ctl` per event). Closing the handle stops watching; the descriptor stays open.

use std::os::fd::RawFd;
use std::panic::Location;

use mio::unix::SourceFd;

use super::handle::{Handle, HandleData, HandleRef};
use super::phase::Phase;
use super::target::HandleType;
use super::token;
use super::{EngineError, Loop};

/// Which readiness a poll handle reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollEvents {
    /// Data can be read (or the peer closed).
    pub readable: bool,
    /// Data can be written.
    pub writable: bool,
}

pub(crate) type PollCb = Box<dyn FnMut(&mut Loop, PollFd, PollEvents)>;

pub(crate) struct PollData {
    fd: RawFd,
    registered: bool,
    wanted: PollEvents,
    cb: Option<PollCb>,
}

impl PollData {
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }
}

/// A poll handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PollFd(HandleRef);

impl Handle for PollFd {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

impl PollFd {
    /// Watches `fd` (which must be non-blocking and stay open while watched).
    #[track_caller]
    pub fn new(lp: &mut Loop, fd: RawFd) -> PollFd {
        let site = Location::caller();
        let data = HandleData::Poll(PollData {
            fd,
            registered: false,
            wanted: PollEvents::default(),
            cb: None,
        });
        PollFd(lp.handles.insert(HandleType::Poll, data, site, lp.now_ns))
    }

    /// Starts reporting the readiness in `events` to `cb`.
    ///
    /// # Errors
    /// Closing, or the descriptor cannot be watched (e.g. a regular file).
    pub fn start(
        &self,
        lp: &mut Loop,
        events: PollEvents,
        cb: impl FnMut(&mut Loop, PollFd, PollEvents) + 'static,
    ) -> Result<(), EngineError> {
        let registry = lp.poll.registry();
        let p = lp.handles.open_data_mut::<PollData>(self.0)?;
        if !p.registered {
            registry.register(
                &mut SourceFd(&p.fd),
                token::for_handle(self.0)?,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )?;
            p.registered = true;
        }
        p.wanted = events;
        p.cb = Some(Box::new(cb));
        lp.handles.set_active(self.0, true);
        Ok(())
    }

    /// Stops reporting readiness.
    pub fn stop(&self, lp: &mut Loop) {
        if let Some(p) = lp.handles.data_mut::<PollData>(self.0) {
            p.wanted = PollEvents::default();
        }
        lp.handles.set_active(self.0, false);
    }
}

impl Loop {
    /// Poll phase: readiness on a poll handle's descriptor.
    pub(crate) fn poll_fd_io(&mut self, r: HandleRef, readable: bool, writable: bool) {
        let Ok(p) = self.handles.open_data_mut::<PollData>(r) else {
            return;
        };
        let events = PollEvents {
            readable: readable && p.wanted.readable,
            writable: writable && p.wanted.writable,
        };
        if !events.readable && !events.writable {
            return;
        }
        self.run_handle_callback(
            Phase::Poll,
            r,
            |p: &mut PollData| &mut p.cb,
            |lp, f| f(lp, PollFd(r), events),
        );
    }

    /// Closing a poll handle: stops watching; the descriptor is the caller's.
    pub(crate) fn poll_fd_close(&mut self, r: HandleRef) {
        let registry = self.poll.registry();
        if let Some(p) = self.handles.data_mut::<PollData>(r) {
            if std::mem::take(&mut p.registered) {
                if let Err(e) = registry.deregister(&mut SourceFd(&p.fd)) {
                    tracing::debug!(handle_id = r.id, error = %e, "poll handle deregister failed");
                }
            }
            p.cb = None;
        }
        self.handles.set_active(r, false);
    }
}
