//! Async handles (libuv's `uv_async_t`): wake a loop from any thread and run a callback on it.
//! Sends that happen before the loop gets to the callback coalesce into one call.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::handle::{Handle, HandleData, HandleRef};
use super::phase::Phase;
use super::target::HandleType;
use super::wake::LoopWake;
use super::Loop;

pub(crate) type AsyncCb = Box<dyn FnMut(&mut Loop, Async)>;

pub(crate) struct AsyncShared {
    pending: AtomicBool,
    closed: AtomicBool,
    handle: HandleRef,
    wake: Arc<LoopWake>,
}

pub(crate) struct AsyncData {
    pub cb: Option<AsyncCb>,
    pub shared: Arc<AsyncShared>,
}

/// An async handle. It is active from creation and keeps the loop alive until closed or
/// unref'd.
///
/// # Examples
/// ```
/// use loopd_engine::{Async, Handle, Loop, RunMode};
///
/// let mut lp = Loop::new()?;
/// let a = Async::new(&mut lp, |lp, a| a.close(lp));
/// let sender = a.sender(&lp).expect("open handle");
/// std::thread::spawn(move || sender.send());
/// lp.run(RunMode::Default); // returns once the callback closed the handle
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Async(HandleRef);

impl Handle for Async {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

/// The sending side of an [`Async`]: `Send + Sync + Clone`, usable from any thread.
#[derive(Clone)]
pub struct AsyncSender {
    shared: Arc<AsyncShared>,
}

impl std::fmt::Debug for AsyncSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSender")
            .field("handle", &self.shared.handle.id())
            .finish()
    }
}

impl AsyncSender {
    /// Asks the loop to run the handle's callback. Several sends before it runs result in one
    /// call. Returns `false` if the handle is closed (nothing happens then).
    pub fn send(&self) -> bool {
        if self.shared.closed.load(Ordering::Acquire) {
            return false;
        }
        if !self.shared.pending.swap(true, Ordering::AcqRel) {
            self.shared.wake.post_async(self.shared.handle);
        }
        true
    }
}

impl Async {
    /// Creates an active async handle whose callback runs on the loop thread.
    #[track_caller]
    pub fn new(lp: &mut Loop, cb: impl FnMut(&mut Loop, Async) + 'static) -> Async {
        let site = Location::caller();
        let wake = lp.wake.clone();
        // The shared part names the handle, so it is built with the slot.
        let r = lp
            .handles
            .insert_with(HandleType::Async, site, lp.now_ns, |r| {
                HandleData::Async(AsyncData {
                    cb: Some(Box::new(cb)),
                    shared: Arc::new(AsyncShared {
                        pending: AtomicBool::new(false),
                        closed: AtomicBool::new(false),
                        handle: r,
                        wake,
                    }),
                })
            });
        lp.handles.set_active(r, true);
        Async(r)
    }

    /// A sender for other threads; `None` if the handle is closed.
    pub fn sender(&self, lp: &Loop) -> Option<AsyncSender> {
        let a = lp.handles.data::<AsyncData>(self.0)?;
        Some(AsyncSender {
            shared: a.shared.clone(),
        })
    }

    /// Same as a send from another thread.
    pub fn send(&self, lp: &Loop) -> bool {
        self.sender(lp).is_some_and(|s| s.send())
    }
}

impl Loop {
    /// Poll phase: runs the callbacks of async handles that were sent to.
    pub(crate) fn run_asyncs(&mut self, ready: &[HandleRef]) {
        for &r in ready {
            let Some(a) = self.handles.data_mut::<AsyncData>(r) else {
                continue;
            };
            // Cleared before the callback, so a send during the callback calls it again.
            a.shared.pending.store(false, Ordering::Release);
            self.run_handle_callback(
                Phase::Poll,
                r,
                |a: &mut AsyncData| &mut a.cb,
                |lp, f| f(lp, Async(r)),
            );
        }
    }

    /// Closing an async handle: later sends do nothing.
    pub(crate) fn async_close(&mut self, r: HandleRef) {
        if let Some(a) = self.handles.data::<AsyncData>(r) {
            a.shared.closed.store(true, Ordering::Release);
        }
        self.handles.set_active(r, false);
    }
}
