//! Signal handles (libuv's `uv_signal_t`): a signal delivered as a loop callback.
//!
//! Each loop has one `signal-hook` pipe registered in its poll; the process-wide handler only
//! writes to it, and the loop runs the callbacks of its handles watching that signal.

use std::io;
use std::panic::Location;

use signal_hook_mio::v1_0::Signals;

use super::handle::{Handle, HandleData, HandleRef};
use super::phase::Phase;
use super::target::HandleType;
use super::token;
use super::{EngineError, Loop};

pub(crate) type SignalCb = Box<dyn FnMut(&mut Loop, Signal, i32)>;

pub(crate) struct SignalData {
    signum: i32,
    cb: Option<SignalCb>,
    /// Stop after the first delivery (libuv's `uv_signal_start_oneshot`).
    oneshot: bool,
}

/// The loop's signal pipe, created when the first signal handle starts.
#[derive(Default)]
pub(crate) struct SignalSource {
    signals: Option<Signals>,
    watched: Vec<i32>,
    handles: Vec<HandleRef>,
}

/// A signal handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(HandleRef);

impl Handle for Signal {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

impl Signal {
    /// Creates a stopped signal handle.
    #[track_caller]
    pub fn new(lp: &mut Loop) -> Signal {
        let site = Location::caller();
        Signal(lp.handles.insert(
            HandleType::Signal,
            HandleData::Signal(SignalData {
                signum: 0,
                cb: None,
                oneshot: false,
            }),
            site,
            lp.now_ns,
        ))
    }

    /// Runs `cb` on the loop each time `signum` arrives (e.g. `libc::SIGTERM`).
    ///
    /// # Errors
    /// Closing, a signal that cannot be caught (SIGKILL, SIGSTOP, …), or the OS error.
    pub fn start(
        &self,
        lp: &mut Loop,
        signum: i32,
        cb: impl FnMut(&mut Loop, Signal, i32) + 'static,
    ) -> Result<(), EngineError> {
        if self.is_closing(lp) {
            return Err(EngineError::Closed);
        }
        lp.signal_watch(signum)?;
        if let Some(s) = lp.handles.data_mut::<SignalData>(self.0) {
            s.signum = signum;
            s.cb = Some(Box::new(cb));
            s.oneshot = false;
        }
        if lp.handles.set_active(self.0, true) {
            lp.signals.handles.push(self.0);
        }
        Ok(())
    }

    /// As [`Signal::start`], but the handle stops as the first delivery's callback begins
    /// (libuv's `uv_signal_start_oneshot`).
    ///
    /// # Errors
    /// As [`Signal::start`].
    pub fn start_oneshot(
        &self,
        lp: &mut Loop,
        signum: i32,
        cb: impl FnMut(&mut Loop, Signal, i32) + 'static,
    ) -> Result<(), EngineError> {
        self.start(lp, signum, cb)?;
        if let Some(s) = lp.handles.data_mut::<SignalData>(self.0) {
            s.oneshot = true;
        }
        Ok(())
    }

    /// Stops watching.
    pub fn stop(&self, lp: &mut Loop) {
        lp.signal_stop(self.0);
    }
}

impl Loop {
    fn signal_watch(&mut self, signum: i32) -> io::Result<()> {
        if self.signals.watched.contains(&signum) {
            return Ok(());
        }
        match &mut self.signals.signals {
            Some(s) => s.add_signal(signum)?,
            None => {
                let mut s = Signals::new([signum])?;
                self.poll
                    .registry()
                    .register(&mut s, token::SIGNAL, mio::Interest::READABLE)?;
                self.signals.signals = Some(s);
            }
        }
        self.signals.watched.push(signum);
        Ok(())
    }

    pub(crate) fn signal_stop(&mut self, r: HandleRef) {
        if self.handles.set_active(r, false) {
            self.signals.handles.retain(|h| *h != r);
        }
    }

    /// Poll phase: the signal pipe is readable.
    pub(crate) fn run_signals(&mut self) {
        let Some(signals) = &mut self.signals.signals else {
            return;
        };
        let arrived: Vec<i32> = signals.pending().collect();
        for signum in arrived {
            let handles = self.signals.handles.clone();
            for r in handles {
                // Watching this signal, and not closed by an earlier callback.
                let watching = self.handles.open_data_mut::<SignalData>(r);
                let Ok(&mut SignalData {
                    signum: s, oneshot, ..
                }) = watching
                else {
                    continue;
                };
                // Stopped by an earlier callback of this batch (or a one-shot handle that
                // already had its delivery): not called.
                if s == signum && crate::Handle::is_active(&r, self) {
                    if oneshot {
                        self.signal_stop(r);
                    }
                    self.run_handle_callback(
                        Phase::Poll,
                        r,
                        |s: &mut SignalData| &mut s.cb,
                        |lp, f| f(lp, Signal(r), signum),
                    );
                }
            }
        }
    }
}
