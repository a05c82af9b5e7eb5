//! The request table: one-shot operations in flight (work, fs, writes, …) with their ids,
//! types, labels, creation sites and states.

use std::any::Any;
use std::panic::Location;
use std::sync::Arc;

use super::pool::WorkError;
use super::slots::{HasId, Slots};
use super::target::{next_id, RequestId, RequestType, Site};
use super::Loop;
use crate::names::named_enum;

/// An opaque reference to a request slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestRef {
    pub(crate) slot: u32,
    pub(crate) id: u64,
}

impl RequestRef {
    /// The request's stable id.
    pub fn id(&self) -> RequestId {
        RequestId::new(self.id)
    }
}

named_enum!(
    /// Where a request is in its life.
    pub enum RequestState {
        /// Waiting (in the thread-pool queue, or for the socket to be writable).
        Queued => "queued",
        /// A worker runs it.
        Running => "running",
        /// Finished; its callback is running.
        Done => "done",
    }
);

pub(crate) type AfterWork = Box<dyn FnOnce(&mut Loop, Result<Box<dyn Any + Send>, WorkError>)>;

pub(crate) enum RequestData {
    /// Thread-pool work whose after-callback runs on the loop.
    Pool { after: Option<AfterWork> },
    /// Socket I/O (write, connect, shutdown, send); the callback lives with the handle.
    Io,
}

pub(crate) struct RequestSlot {
    pub id: u64,
    pub kind: RequestType,
    pub label: Option<Arc<str>>,
    pub site: &'static Location<'static>,
    pub created_ns: u64,
    pub state: RequestState,
    pub data: RequestData,
}

impl HasId for RequestSlot {
    fn id(&self) -> u64 {
        self.id
    }
}

/// Every request of one loop that has not completed.
#[derive(Default)]
pub(crate) struct RequestTable {
    slots: Slots<RequestSlot>,
    /// In flight, by type.
    pub active: [u64; RequestType::COUNT],
    /// Started, by type, since the loop began.
    pub started: [u64; RequestType::COUNT],
    /// In flight, all types (what keeps the loop alive: libuv's `active_reqs`).
    pub active_total: usize,
}

impl RequestTable {
    pub fn insert(
        &mut self,
        kind: RequestType,
        data: RequestData,
        site: &'static Location<'static>,
        now_ns: u64,
    ) -> RequestRef {
        let id = next_id();
        let slot = RequestSlot {
            id,
            kind,
            label: None,
            site,
            created_ns: now_ns,
            state: RequestState::Queued,
            data,
        };
        let index = self.slots.insert(slot);
        self.active[kind.index()] += 1;
        self.started[kind.index()] += 1;
        self.active_total += 1;
        RequestRef { slot: index, id }
    }

    #[inline]
    pub fn get(&self, r: RequestRef) -> Option<&RequestSlot> {
        self.slots.get(r.slot, r.id)
    }

    #[inline]
    pub fn get_mut(&mut self, r: RequestRef) -> Option<&mut RequestSlot> {
        self.slots.get_mut(r.slot, r.id)
    }

    /// The label of the request in `slot`, if its id is `id`.
    pub fn label(&self, slot: u32, id: u64) -> Option<&str> {
        self.get(RequestRef { slot, id })?.label.as_deref()
    }

    pub fn remove(&mut self, r: RequestRef) -> Option<RequestSlot> {
        let taken = self.slots.remove(r.slot, r.id)?;
        self.active[taken.kind.index()] -= 1;
        self.active_total -= 1;
        Some(taken)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RequestSlot> {
        self.slots.iter().map(|(_, s)| s)
    }
}

/// What [`Loop::walk_requests`] shows of a request in flight.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Stable id.
    pub id: RequestId,
    /// Type.
    pub kind: RequestType,
    /// Label, if one was set.
    pub label: Option<Arc<str>>,
    /// Where it was made (`file:line` for the engine's requests).
    pub site: Site,
    /// Creation time ([`super::clock::now_ns`]).
    pub created_ns: u64,
    /// Queued, running or done.
    pub state: RequestState,
}

impl RequestInfo {
    pub(crate) fn of(slot: &RequestSlot) -> RequestInfo {
        RequestInfo {
            id: RequestId::new(slot.id),
            kind: slot.kind,
            label: slot.label.clone(),
            site: Site::Source(slot.site),
            created_ns: slot.created_ns,
            state: slot.state,
        }
    }
}
