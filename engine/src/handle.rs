//! The handle table: every long-lived object of a loop, with its id, type, label, creation
//! site, state and type-specific data, and the [`Handle`] trait of operations they all share.
//!
//! Every decision that depends on a handle's type is made here, each one exhaustive `match`
//! with no wildcard arm — over its [`HandleData`] ([`HandleData::fd`], [`HandleData::io`],
//! [`HandleData::take_cancelled`]) or over its [`HandleType`] ([`Loop::io_event`],
//! [`Loop::stop_for_close`], which the slot's type decides without another lookup) — so
//! adding a variant to either makes the compiler point at every one of them.

use std::os::fd::RawFd;
use std::panic::Location;
use std::sync::Arc;

use super::async_handle::AsyncData;
use super::io_request::IoRequest;
use super::poll_fd::PollData;
use super::signal::SignalData;
use super::slots::{HasId, Slots};
use super::target::{next_id, HandleId, HandleType, Site};
use super::tcp::TcpData;
use super::timer::TimerData;
use super::udp::UdpData;
use super::watcher::{WatcherData, WatcherKind};
use super::{EngineError, Loop};

/// Flag: the handle is active (started).
pub(crate) const ACTIVE: u8 = 1;
/// Flag: the handle is referenced (keeps the loop alive while active).
pub(crate) const REF: u8 = 2;
/// Flag: `close` was called; the close callback runs in the close phase.
pub(crate) const CLOSING: u8 = 4;

/// An opaque reference to a handle slot; typed handles wrap it. Stale references (to a
/// closed handle) are detected by id and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandleRef {
    pub(crate) slot: u32,
    pub(crate) id: u64,
}

impl HandleRef {
    /// The handle's stable id.
    pub fn id(&self) -> HandleId {
        HandleId::new(self.id)
    }
}

/// An untyped handle: what every handle can do (close, ref/unref, label), whatever its type
/// — for code that keeps handles of several types together (a service's handles, closed
/// when it stops). Closing one that is already closing or closed does nothing.
impl Handle for HandleRef {
    fn raw(&self) -> HandleRef {
        *self
    }
}

pub(crate) type CloseCb = Box<dyn FnOnce(&mut Loop)>;

/// Per-handle I/O counters (bytes moved, last activity); zero for handles without I/O.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IoCounters {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub last_activity_ns: u64,
}

impl IoCounters {
    /// Counts bytes moved at `now_ns` ([`Loop::io_now`]).
    #[inline]
    pub fn note(&mut self, read: u64, written: u64, now_ns: u64) {
        self.bytes_read += read;
        self.bytes_written += written;
        self.last_activity_ns = now_ns;
    }
}

/// Type-specific state, one variant per kind of handle data.
pub(crate) enum HandleData {
    Timer(TimerData),
    /// Idle, prepare and check handles.
    Watcher(WatcherData),
    Async(AsyncData),
    Tcp(Box<TcpData>),
    Udp(Box<UdpData>),
    Signal(SignalData),
    Poll(PollData),
}

impl HandleData {
    /// The file descriptor the handle watches, if it has one.
    pub fn fd(&self) -> Option<RawFd> {
        match self {
            HandleData::Tcp(t) => t.fd,
            HandleData::Udp(u) => u.fd,
            HandleData::Poll(p) => Some(p.fd()),
            HandleData::Timer(_)
            | HandleData::Watcher(_)
            | HandleData::Async(_)
            | HandleData::Signal(_) => None,
        }
    }

    /// The bytes-moved counters of handles that move bytes (kept in their type-specific data,
    /// so timers and watchers stay small).
    pub fn io(&self) -> Option<&IoCounters> {
        match self {
            HandleData::Tcp(t) => Some(&t.io),
            HandleData::Udp(u) => Some(&u.io),
            // The caller reads and writes the descriptor itself: the loop sees no bytes.
            HandleData::Poll(_) => None,
            HandleData::Timer(_)
            | HandleData::Watcher(_)
            | HandleData::Async(_)
            | HandleData::Signal(_) => None,
        }
    }

    /// The requests that closing the handle cancelled (writes, connect, shutdown, sends),
    /// taken out to fail with `ECANCELED` in the close phase, before the close callback;
    /// `None` when there are none (most handles: nothing to allocate or drop).
    pub fn take_cancelled(&mut self) -> Option<Vec<IoRequest>> {
        let cancelled = match self {
            HandleData::Tcp(t) => &mut t.cancelled,
            HandleData::Udp(u) => &mut u.cancelled,
            // Their callbacks belong to the handle, not to requests.
            HandleData::Timer(_)
            | HandleData::Watcher(_)
            | HandleData::Async(_)
            | HandleData::Signal(_)
            | HandleData::Poll(_) => return None,
        };
        (!cancelled.is_empty()).then(|| std::mem::take(cancelled))
    }
}

impl Loop {
    /// Poll phase: readiness of a handle's descriptor (registered with
    /// [`token::for_handle`](super::token::for_handle)).
    pub(crate) fn io_event(&mut self, r: HandleRef, readable: bool, writable: bool) {
        let Some(slot) = self.handles.get(r) else {
            // Closed since the poll returned.
            return;
        };
        match slot.kind {
            HandleType::Tcp => self.tcp_io(r, readable, writable),
            HandleType::Udp => self.udp_io(r, readable, writable),
            HandleType::Poll => self.poll_fd_io(r, readable, writable),
            // No descriptor of their own: the loop's waker and signal pipe serve them.
            HandleType::Timer
            | HandleType::Idle
            | HandleType::Prepare
            | HandleType::Check
            | HandleType::Async
            | HandleType::Signal => {
                debug_assert!(false, "readiness for a handle without a descriptor")
            }
            // Types only other producers report: this engine makes no handle of them.
            HandleType::Pipe
            | HandleType::Tty
            | HandleType::Process
            | HandleType::FsEvent
            | HandleType::FsPoll => debug_assert!(false, "a handle type the engine never makes"),
        }
    }

    /// Stops a handle of type `kind` as [`Loop::close_handle`] begins: it leaves the timer
    /// heap, its watcher list or the signal set, its socket closes, its requests are
    /// cancelled.
    pub(crate) fn stop_for_close(&mut self, r: HandleRef, kind: HandleType) {
        match kind {
            HandleType::Timer => self.timer_stop(r),
            HandleType::Idle => self.watcher_stop(r, WatcherKind::Idle),
            HandleType::Prepare => self.watcher_stop(r, WatcherKind::Prepare),
            HandleType::Check => self.watcher_stop(r, WatcherKind::Check),
            HandleType::Async => self.async_close(r),
            HandleType::Tcp => self.tcp_close(r),
            HandleType::Udp => self.udp_close(r),
            HandleType::Signal => self.signal_stop(r),
            HandleType::Poll => self.poll_fd_close(r),
            // Types only other producers report: this engine makes no handle of them.
            HandleType::Pipe
            | HandleType::Tty
            | HandleType::Process
            | HandleType::FsEvent
            | HandleType::FsPoll => debug_assert!(false, "a handle type the engine never makes"),
        }
    }
}

/// The data of one handle type: where it sits in [`HandleData`]. Typed access for the
/// type's own file (each typed handle only ever refers to data of its own type).
pub(crate) trait TypeData: Sized {
    fn of(data: &HandleData) -> Option<&Self>;
    fn of_mut(data: &mut HandleData) -> Option<&mut Self>;
}

macro_rules! type_data {
    ($($variant:ident => $ty:ty),+ $(,)?) => {$(
        impl TypeData for $ty {
            #[inline]
            fn of(data: &HandleData) -> Option<&Self> {
                if let HandleData::$variant(d) = data {
                    Some(d)
                } else {
                    None
                }
            }

            #[inline]
            fn of_mut(data: &mut HandleData) -> Option<&mut Self> {
                if let HandleData::$variant(d) = data {
                    Some(d)
                } else {
                    None
                }
            }
        }
    )+};
}

type_data!(
    Timer => TimerData,
    Watcher => WatcherData,
    Async => AsyncData,
    Tcp => Box<TcpData>,
    Udp => Box<UdpData>,
    Signal => SignalData,
    Poll => PollData,
);

pub(crate) struct HandleSlot {
    pub id: u64,
    pub kind: HandleType,
    pub flags: u8,
    pub label: Option<Arc<str>>,
    pub site: &'static Location<'static>,
    pub created_ns: u64,
    pub close_cb: Option<CloseCb>,
    pub data: HandleData,
}

impl HasId for HandleSlot {
    fn id(&self) -> u64 {
        self.id
    }
}

/// Counts of one handle type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeCount {
    /// Handles of the type that exist (including closing ones).
    pub total: u64,
    /// Of those, how many are active.
    pub active: u64,
}

/// All handles of one loop.
#[derive(Default)]
pub(crate) struct HandleTable {
    slots: Slots<HandleSlot>,
    pub counts: [TypeCount; HandleType::COUNT],
    pub opened: [u64; HandleType::COUNT],
    pub closed: [u64; HandleType::COUNT],
    /// Active and referenced handles: what keeps the loop alive (libuv's `active_handles`).
    pub active_refd: usize,
    /// Handles whose close callback is due in the next close phase, in close order.
    pub closing: Vec<HandleRef>,
}

impl HandleTable {
    pub fn insert(
        &mut self,
        kind: HandleType,
        data: HandleData,
        site: &'static Location<'static>,
        now_ns: u64,
    ) -> HandleRef {
        self.insert_with(kind, site, now_ns, |_| data)
    }

    /// Inserts a handle whose data needs its own reference (an async handle's shared part).
    pub fn insert_with(
        &mut self,
        kind: HandleType,
        site: &'static Location<'static>,
        now_ns: u64,
        data: impl FnOnce(HandleRef) -> HandleData,
    ) -> HandleRef {
        let id = next_id();
        let index = self.slots.insert_with(|slot| HandleSlot {
            id,
            kind,
            flags: REF,
            label: None,
            site,
            created_ns: now_ns,
            close_cb: None,
            data: data(HandleRef { slot, id }),
        });
        self.counts[kind.index()].total += 1;
        self.opened[kind.index()] += 1;
        HandleRef { slot: index, id }
    }

    #[inline]
    pub fn get(&self, r: HandleRef) -> Option<&HandleSlot> {
        self.slots.get(r.slot, r.id)
    }

    #[inline]
    pub fn get_mut(&mut self, r: HandleRef) -> Option<&mut HandleSlot> {
        self.slots.get_mut(r.slot, r.id)
    }

    /// The data of a live handle (closing or not), as its type `D`.
    #[inline]
    pub fn data<D: TypeData>(&self, r: HandleRef) -> Option<&D> {
        D::of(&self.get(r)?.data)
    }

    /// [`HandleTable::data`], mutable.
    #[inline]
    pub fn data_mut<D: TypeData>(&mut self, r: HandleRef) -> Option<&mut D> {
        D::of_mut(&mut self.get_mut(r)?.data)
    }

    /// The data of a handle that is open (not closing), as its type `D`.
    ///
    /// # Errors
    /// [`EngineError::Closed`] when the handle is closing or closed.
    #[inline]
    pub fn open_data_mut<D: TypeData>(&mut self, r: HandleRef) -> Result<&mut D, EngineError> {
        match self.get_mut(r) {
            Some(s) if s.flags & CLOSING == 0 => match D::of_mut(&mut s.data) {
                Some(d) => Ok(d),
                None => Err(EngineError::InvalidState("not a handle of this type")),
            },
            _ => Err(EngineError::Closed),
        }
    }

    /// Sets or clears the active flag, keeping the counts right. Returns whether it changed.
    pub fn set_active(&mut self, r: HandleRef, active: bool) -> bool {
        let Some(slot) = self.get_mut(r) else {
            return false;
        };
        let was = slot.flags & ACTIVE != 0;
        if was == active {
            return false;
        }
        let refd = slot.flags & REF != 0;
        let kind = slot.kind.index();
        if active {
            slot.flags |= ACTIVE;
        } else {
            slot.flags &= !ACTIVE;
        }
        if active {
            self.counts[kind].active += 1;
            if refd {
                self.active_refd += 1;
            }
        } else {
            self.counts[kind].active -= 1;
            if refd {
                self.active_refd -= 1;
            }
        }
        true
    }

    /// Sets or clears the ref flag (libuv's `uv_ref`/`uv_unref`), keeping the counts right.
    pub fn set_ref(&mut self, r: HandleRef, refd: bool) {
        let Some(slot) = self.get_mut(r) else {
            return;
        };
        let was = slot.flags & REF != 0;
        if was == refd {
            return;
        }
        let active = slot.flags & ACTIVE != 0;
        if refd {
            slot.flags |= REF;
        } else {
            slot.flags &= !REF;
        }
        if active {
            if refd {
                self.active_refd += 1;
            } else {
                self.active_refd -= 1;
            }
        }
    }

    /// Frees a slot after its close callback; the id is never used again.
    pub fn remove(&mut self, r: HandleRef) -> Option<HandleSlot> {
        let slot = self.get(r)?;
        debug_assert!(slot.flags & ACTIVE == 0, "removing an active handle");
        let kind = slot.kind.index();
        let taken = self.slots.remove(r.slot, r.id);
        self.counts[kind].total -= 1;
        self.closed[kind] += 1;
        taken
    }

    /// The live slot at index `slot`, whatever its id.
    pub fn by_slot(&self, slot: u32) -> Option<(HandleRef, &HandleSlot)> {
        let s = self.slots.by_slot(slot)?;
        Some((HandleRef { slot, id: s.id }, s))
    }

    /// Every live slot with its reference, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (HandleRef, &HandleSlot)> {
        self.slots
            .iter()
            .map(|(slot, s)| (HandleRef { slot, id: s.id }, s))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

/// What [`Loop::walk`] shows of a handle.
#[derive(Clone, Debug)]
pub struct HandleInfo {
    /// Stable id.
    pub id: HandleId,
    /// Type.
    pub kind: HandleType,
    /// Label, if one was set.
    pub label: Option<Arc<str>>,
    /// Where it was created (`file:line` for the engine's handles).
    pub site: Site,
    /// Creation time ([`super::clock::now_ns`]).
    pub created_ns: u64,
    /// Started and not stopped.
    pub active: bool,
    /// Keeps the loop alive while active.
    pub has_ref: bool,
    /// Being closed.
    pub closing: bool,
    /// The file descriptor, for I/O handles.
    pub fd: Option<i32>,
    /// Bytes read through the handle.
    pub bytes_read: u64,
    /// Bytes written through the handle.
    pub bytes_written: u64,
    /// Last time data moved ([`super::clock::now_ns`]), 0 if never.
    pub last_activity_ns: u64,
}

impl HandleInfo {
    pub(crate) fn of(slot: &HandleSlot) -> HandleInfo {
        let io = slot.data.io().copied().unwrap_or_default();
        HandleInfo {
            id: HandleId::new(slot.id),
            kind: slot.kind,
            label: slot.label.clone(),
            site: Site::Source(slot.site),
            created_ns: slot.created_ns,
            active: slot.flags & ACTIVE != 0,
            has_ref: slot.flags & REF != 0,
            closing: slot.flags & CLOSING != 0,
            fd: slot.data.fd(),
            bytes_read: io.bytes_read,
            bytes_written: io.bytes_written,
            last_activity_ns: io.last_activity_ns,
        }
    }
}

/// Operations every handle type shares (libuv's `uv_handle_t` functions).
pub trait Handle: Copy {
    /// The untyped reference.
    fn raw(&self) -> HandleRef;

    /// The stable id.
    fn id(&self) -> HandleId {
        self.raw().id()
    }

    /// Closes the handle: it stops now, and its slot is freed in the close phase.
    /// Closing a handle twice, or a closed one, does nothing.
    fn close(&self, lp: &mut Loop) {
        lp.close_handle(self.raw(), None);
    }

    /// Like [`Handle::close`], then runs `cb` in the close phase.
    fn close_then(&self, lp: &mut Loop, cb: impl FnOnce(&mut Loop) + 'static) {
        lp.close_handle(self.raw(), Some(Box::new(cb)));
    }

    /// Makes the handle keep the loop alive while active (the default).
    fn ref_(&self, lp: &mut Loop) {
        lp.handles.set_ref(self.raw(), true);
    }

    /// Makes the handle not keep the loop alive.
    fn unref(&self, lp: &mut Loop) {
        lp.handles.set_ref(self.raw(), false);
    }

    /// Whether the handle is referenced.
    fn has_ref(&self, lp: &Loop) -> bool {
        lp.handles
            .get(self.raw())
            .is_some_and(|s| s.flags & REF != 0)
    }

    /// Whether the handle is active.
    fn is_active(&self, lp: &Loop) -> bool {
        lp.handles
            .get(self.raw())
            .is_some_and(|s| s.flags & ACTIVE != 0)
    }

    /// Whether the handle is closing or closed.
    fn is_closing(&self, lp: &Loop) -> bool {
        lp.handles
            .get(self.raw())
            .is_none_or(|s| s.flags & CLOSING != 0)
    }

    /// Sets the label shown in snapshots, stall reports and logs.
    fn set_label(&self, lp: &mut Loop, label: impl Into<Arc<str>>) {
        if let Some(slot) = lp.handles.get_mut(self.raw()) {
            slot.label = Some(label.into());
            lp.observer.current.invalidate_label();
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// A million timers are a million slots: keep them small (libuv's `uv_timer_t` is 152
    /// bytes). I/O state lives in the boxed type-specific data, not here.
    #[test]
    fn a_slot_stays_small() {
        assert!(std::mem::size_of::<Option<super::HandleSlot>>() <= 112);
    }
}
