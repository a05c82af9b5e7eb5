//! Idle, prepare and check handles: one generic watcher that runs its callback once per
//! iteration in its phase (libuv's `loop-watcher.c`).
//!
//! As in libuv, the most recently started watcher of a phase runs first, a watcher started
//! during its phase first runs in the next iteration, and one stopped before its turn does not
//! run. An active idle handle makes the poll phase not block.

use std::marker::PhantomData;
use std::panic::Location;

use super::handle::{Handle, HandleData, HandleRef};
use super::phase::Phase;
use super::target::{HandleType, Target};
use super::{EngineError, Loop};

pub(crate) type WatcherCb = Box<dyn FnMut(&mut Loop, HandleRef)>;

pub(crate) struct WatcherData {
    pub cb: Option<WatcherCb>,
}

/// Which phase a watcher runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatcherKind {
    Idle = 0,
    Prepare = 1,
    Check = 2,
}

/// The three phases' lists of started watchers, oldest first.
#[derive(Default)]
pub(crate) struct Watchers {
    lists: [Vec<HandleRef>; 3],
    scratch: Vec<HandleRef>,
}

impl Watchers {
    pub fn any_active(&self, kind: WatcherKind) -> bool {
        !self.lists[kind as usize].is_empty()
    }
}

/// Marker types that pick a watcher's phase.
pub trait WatcherPhase: Copy + 'static {
    #[doc(hidden)]
    const KIND: u8;
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

impl WatcherPhase for IdlePhase {
    const KIND: u8 = WatcherKind::Idle as u8;
    const HANDLE_TYPE: HandleType = HandleType::Idle;
}
impl WatcherPhase for PreparePhase {
    const KIND: u8 = WatcherKind::Prepare as u8;
    const HANDLE_TYPE: HandleType = HandleType::Prepare;
}
impl WatcherPhase for CheckPhase {
    const KIND: u8 = WatcherKind::Check as u8;
    const HANDLE_TYPE: HandleType = HandleType::Check;
}

fn kind_of(k: u8) -> WatcherKind {
    match k {
        0 => WatcherKind::Idle,
        1 => WatcherKind::Prepare,
        _ => WatcherKind::Check,
    }
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
        if let Some(HandleData::Watcher(w)) = lp.handles.get_mut(self.0).map(|s| &mut s.data) {
            w.cb = Some(boxed);
        }
        if lp.handles.set_active(self.0, true) {
            lp.watchers.lists[P::KIND as usize].push(self.0);
        }
        Ok(())
    }

    /// Stops the watcher.
    pub fn stop(&self, lp: &mut Loop) {
        lp.watcher_stop(self.0, kind_of(P::KIND));
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
            // One watcher: nothing started by its callback runs in this pass anyway, so the
            // snapshot below is not needed.
            1 => {
                let r = list[0];
                self.run_watcher(r, phase);
            }
            _ => {
                let mut batch = std::mem::take(&mut self.watchers.scratch);
                batch.extend(list.iter().rev());
                for &r in &batch {
                    self.run_watcher(r, phase);
                }
                batch.clear();
                self.watchers.scratch = batch;
            }
        }
    }

    /// Runs one watcher's callback if it is still active.
    #[inline]
    fn run_watcher(&mut self, r: HandleRef, phase: Phase) {
        let Some(slot) = self.handles.get_mut(r) else {
            return;
        };
        if slot.flags & super::handle::ACTIVE == 0 {
            return;
        }
        let HandleData::Watcher(w) = &mut slot.data else {
            return;
        };
        let mut cb = w.cb.take();
        let target = Target::Handle(slot.kind, r.id());
        if let Some(f) = cb.as_mut() {
            self.dispatch(phase, target, r.slot, |lp| f(lp, r));
        }
        if let Some(HandleData::Watcher(w)) = self.handles.get_mut(r).map(|s| &mut s.data) {
            if w.cb.is_none() {
                w.cb = cb;
            }
        }
    }
}
