//! The I/O requests of TCP and UDP handles — writes, connect, shutdown, sends: each request is an entry in the request table (listed, timed) with
//! the caller's completion callback, and completes exactly once: now, in the next pending
//! phase, or with `ECANCELED` in the close phase when its handle closes first (libuv's
//! `uv__stream_destroy` and `uv__udp_finish_close`).

use std::io;
use std::panic::Location;

use super::clock;
use super::handle::HandleRef;
use super::phase::Phase;
use super::request::{RequestData, RequestRef, RequestTable};
use super::target::{RequestType, Target};
use super::Loop;

/// Write, shutdown, connect and send completions.
pub type DoneCb = Box<dyn FnOnce(&mut Loop, io::Result<()>)>;

/// An I/O request in flight: its table entry and the callback waiting for it, if any.
pub(crate) struct IoRequest {
    req: RequestRef,
    kind: RequestType,
    cb: Option<DoneCb>,
}

impl IoRequest {
    /// Starts an I/O request of `kind`, made at `site` at loop time `now_ns`: listed and
    /// timed until it completes. (Takes the request table alone, so a caller may hold its
    /// handle's data meanwhile.)
    pub(crate) fn start(
        requests: &mut RequestTable,
        kind: RequestType,
        site: &'static Location<'static>,
        now_ns: u64,
        cb: Option<DoneCb>,
    ) -> IoRequest {
        let req = requests.insert(kind, RequestData::Io, site, now_ns);
        IoRequest { req, kind, cb }
    }

    /// [`IoRequest::start`] with a callback that waits for it.
    pub(crate) fn waited_for(
        requests: &mut RequestTable,
        kind: RequestType,
        site: &'static Location<'static>,
        now_ns: u64,
        cb: impl FnOnce(&mut Loop, io::Result<()>) + 'static,
    ) -> IoRequest {
        IoRequest::start(requests, kind, site, now_ns, Some(Box::new(cb)))
    }
}

/// When a completion callback runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum When {
    /// Now, as a callback of this phase (the request completed on readiness, or closing).
    Now(Phase),
    /// In the next pending phase: the request finished as it started, and its callback must
    /// not run inside the call that started it. The handle it belongs to: if that handle is
    /// closed first, the callback runs in the close phase before the handle's close callback
    /// (libuv's `uv__stream_destroy`).
    Pending(HandleRef),
}

impl Loop {
    /// Counts a request of `kind` that completed as it started with nobody waiting for it
    /// (a write the socket took at once): counted, never listed.
    #[inline]
    pub(crate) fn count_instant_io(&mut self, kind: RequestType) {
        self.requests.started[kind.index()] += 1;
    }

    /// Completes `io` with `result`: its callback runs `when` says.
    pub(crate) fn complete_io(&mut self, io: IoRequest, result: io::Result<()>, when: When) {
        let IoRequest { req, kind, cb } = io;
        let Some(cb) = cb else {
            self.finish_request(req);
            return;
        };
        let target = Target::Request(kind, req.id());
        let run = move |lp: &mut Loop| {
            lp.finish_request(req);
            cb(lp, result)
        };
        match when {
            When::Now(phase) => self.dispatch(phase, target, req.slot, run),
            When::Pending(owner) => self.defer(target, req.slot, Some(owner), Box::new(run)),
        }
    }

    /// Close phase, before the close callback: fails the requests the handle's close
    /// cancelled with `ECANCELED`.
    pub(crate) fn run_cancelled(&mut self, r: HandleRef) {
        let Some(cancelled) = self
            .handles
            .get_mut(r)
            .and_then(|s| s.data.take_cancelled())
        else {
            return;
        };
        for io in cancelled {
            let cancelled = io::Error::from_raw_os_error(libc::ECANCELED);
            self.complete_io(io, Err(cancelled), When::Now(Phase::Close));
        }
    }

    /// Removes a finished request, recording its duration.
    pub(crate) fn finish_request(&mut self, req: RequestRef) {
        if let Some(slot) = self.requests.remove(req) {
            if self.instrument {
                let took = clock::now_ns().saturating_sub(slot.created_ns);
                self.stats.request_ns[slot.kind.index()].record(took);
            }
        }
    }

    /// The time to note bytes moved at: the latest clock reading.
    #[inline]
    pub(crate) fn io_now(&self) -> u64 {
        self.last_clock.max(self.now_ns)
    }
}
