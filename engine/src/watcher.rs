//! Idle, prepare and check handles: one generic watcher that runs its callback once per
//! iteration in its phase (libuv's `loop-watcher.c`).
//!
//! As in libuv, the most recently started watcher of a phase runs first, a watcher started
//! during its phase first runs in the next iteration, and one stopped before its turn does not
//! run. An active idle handle makes the poll phase not block.

use std::marker::PhantomData;
use std::panic::Location;

use super::handle::{Handle, HandleData, HandleRef, ACTIVE};
use super::phase::Phase;
use super::target::HandleType;
use super::{EngineError, Loop};

pub(crate) type WatcherCb = Box<dyn FnMut(&mut Loop, HandleRef)>;

pub(crate) struct WatcherData {
    pub cb: Option<WatcherCb>,
}

/// Which phase a watcher runs in. (Public in this private module only so that the sealed
/// [`WatcherPhase`] can name it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherKind {
    /// Idle phase.
    Idle,
    /// Prepare phase.
    Prepare,
    /// Check phase.
    Check,
}

impl WatcherKind {
    const COUNT: usize = 3;
}

/// The three phases' lists of started watchers, oldest first.
#[derive(Default)]
pub(crate) struct Watchers {
    lists: [Vec<HandleRef>; WatcherKind::COUNT],
    scratch: Vec<HandleRef>,
}

impl Watchers {
    pub fn any_active(&self, kind: WatcherKind) -> bool {
        !self.lists[kind as usize].is_empty()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Marker types that pick a watcher's phase (sealed: the three below are all there is).
pub trait WatcherPhase: sealed::Sealed + Copy + 'static {
    #[doc(hidden)]
    const KIND: WatcherKind;
    #[doc(hidden)]
    const HANDLE_TYPE: HandleType;
}

/// Marker: runs in the idle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdlePhase;
/// Marker: runs in the prepare phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PreparePhase;
/// Marker: runs in the check phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CheckPhase;

impl sealed::Sealed for IdlePhase {}
impl sealed::Sealed for PreparePhase {}
impl sealed::Sealed for CheckPhase {}

impl WatcherPhase for IdlePhase {
    const KIND: WatcherKind = WatcherKind::Idle;
    const HANDLE_TYPE: HandleType = HandleType::Idle;
}
impl WatcherPhase for PreparePhase {
    const KIND: WatcherKind = WatcherKind::Prepare;
    const HANDLE_TYPE: HandleType = HandleType::Prepare;
}
impl WatcherPhase for CheckPhase {
    const KIND: WatcherKind = WatcherKind::Check;
    const HANDLE_TYPE: HandleType = HandleType::Check;
}

/// A handle that runs its callback once per loop iteration in phase `P`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Watcher<P: WatcherPhase>(HandleRef, PhantomData<P>);

impl<P: WatcherPhase> Clone for Watcher<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: WatcherPhase> Copy for Watcher<P> {}

/// Runs every iteration before the poll, and keeps the poll from blocking while active.
pub type Idle = Watcher<IdlePhase>;
/// Runs every iteration right before the poll.
pub type Prepare = Watcher<PreparePhase>;
/// Runs every iteration right after the poll.
pub type Check = Watcher<CheckPhase>;

impl<P: WatcherPhase> Handle for Watcher<P> {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

impl<P: WatcherPhase> Watcher<P> {
    /// Creates a stopped watcher.
    #[track_caller]
    pub fn new(lp: &mut Loop) -> Self {
        let site = Location::caller();
        let data = HandleData::Watcher(WatcherData { cb: None });
        Watcher(
            lp.handles.insert(P::HANDLE_TYPE, data, site, lp.now_ns),
            PhantomData,
        )
    }

    /// Starts running `cb` every iteration; replaces the callback of a started watcher.
    ///
    /// # Errors
    /// [`EngineError::Closed`] if the handle is closing or closed.
    pub fn start(
        &self,
        lp: &mut Loop,
        mut cb: impl FnMut(&mut Loop, Self) + 'static,
    ) -> Result<(), EngineError> {
        if self.is_closing(lp) {
            return Err(EngineError::Closed);
        }
        let boxed: WatcherCb = Box::new(move |lp, r| cb(lp, Watcher(r, PhantomData)));
        if let Some(w) = lp.handles.data_mut::<WatcherData>(self.0) {
            w.cb = Some(boxed);
        }
        if lp.handles.set_active(self.0, true) {
            lp.watchers.lists[P::KIND as usize].push(self.0);
        }
        Ok(())
    }

    /// Stops the watcher.
    pub fn stop(&self, lp: &mut Loop) {
        lp.watcher_stop(self.0, P::KIND);
    }
}

impl Loop {
    pub(crate) fn watcher_stop(&mut self, r: HandleRef, kind: WatcherKind) {
        if self.handles.set_active(r, false) {
            let list = &mut self.watchers.lists[kind as usize];
            if let Some(pos) = list.iter().position(|h| *h == r) {
                list.remove(pos);
            }
        }
    }

    /// Runs one phase's watchers, newest first, each if still active when its turn comes.
    pub(crate) fn run_watchers(&mut self, kind: WatcherKind, phase: Phase) {
        let list = &self.watchers.lists[kind as usize];
        match list.len() {
            0 => {}
            // One watcher: it is active (a stopped watcher leaves the list), and nothing
            // started by its callback runs in this pass anyway, so no snapshot is needed.
            1 => {
                let r = list[0];
                self.run_watcher(r, phase);
            }
            _ => {
                let mut batch = std::mem::take(&mut self.watchers.scratch);
                batch.extend(list.iter().rev());
                for &r in &batch {
                    // An earlier callback of this pass may have stopped it.
                    if self.handles.get(r).is_some_and(|s| s.flags & ACTIVE != 0) {
                        self.run_watcher(r, phase);
                    }
                }
                batch.clear();
                self.watchers.scratch = batch;
            }
        }
    }

    #[inline]
    fn run_watcher(&mut self, r: HandleRef, phase: Phase) {
        self.run_handle_callback(phase, r, |w: &mut WatcherData| &mut w.cb, |lp, f| f(lp, r));
    }
}
