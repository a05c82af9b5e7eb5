//! Wire data → model: what loop-top knows about the daemon, fed by live notifications and
//! responses or by a replayed recording, through the same [`Model::apply`].

pub mod fleet;
pub mod replay;
pub mod rows;
pub mod stalls;
pub mod table;

use proto::methods::{HANDLES, HELLO, REQUESTS, STALLS, STATUS, THREADPOOL};
use proto::{
    Dropped, HandleInfo, HandlesResult, Hello, RequestInfo, RequestsResult, Stall, StallEvent,
    StallsResult, Status, ThreadPoolStatus, WorkerInfo,
};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

pub use stalls::StallBook;

/// One piece of data from the daemon: a notification or the typed result of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// `hello`.
    Hello(Hello),
    /// A `status` notification or result.
    Status(Box<Status>),
    /// A `stalls` notification (a stall opened or closed).
    Stall(Box<StallEvent>),
    /// A `stalls` result (in progress + recent).
    Stalls(StallsResult),
    /// A `stalls` result for one stall, with its profile (the open detail's fetch).
    StallDetail(StallsResult),
    /// A `handles` notification or result.
    Handles(HandlesResult),
    /// A `requests` result.
    Requests(RequestsResult),
    /// A `threadpool` result.
    ThreadPool(Box<ThreadPoolStatus>),
    /// `dropped`: the daemon dropped pushes we read too slowly.
    Dropped(Dropped),
}

/// Which part of the model an update replaces wholesale (a later one of the same kind makes an
/// earlier one irrelevant), for fast seeking in a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnapshotKind {
    /// [`Update::Status`].
    Status,
    /// [`Update::Handles`].
    Handles,
    /// [`Update::Requests`].
    Requests,
    /// [`Update::ThreadPool`].
    ThreadPool,
}

impl Update {
    /// Decodes a notification (or a recorded line) by method name and params.
    ///
    /// `stalls` is both a notification (`{event, stall}`) and a result (`{in_progress, recent,
    /// total}`); the shape of `params` tells which. Unknown methods give `Ok(None)`.
    ///
    /// # Errors
    ///
    /// When a known method's params do not have its shape.
    pub fn from_method(method: &str, params: Value) -> Result<Option<Update>, serde_json::Error> {
        Ok(Some(match method {
            HELLO => Update::Hello(serde_json::from_value(params)?),
            STATUS => Update::Status(Box::new(serde_json::from_value(params)?)),
            STALLS => {
                if params.get("stall").is_some() || params.get("event").is_some() {
                    Update::Stall(Box::new(serde_json::from_value(params)?))
                } else {
                    Update::Stalls(serde_json::from_value(params)?)
                }
            }
            HANDLES => Update::Handles(serde_json::from_value(params)?),
            REQUESTS => Update::Requests(serde_json::from_value(params)?),
            THREADPOOL => Update::ThreadPool(Box::new(serde_json::from_value(params)?)),
            proto::methods::DROPPED => Update::Dropped(serde_json::from_value(params)?),
            _ => return Ok(None),
        }))
    }

    /// Decodes a typed notification from the connection.
    pub fn from_event(event: proto::ServerEvent) -> Option<Update> {
        use proto::ServerEvent as E;
        Some(match event {
            E::Hello(h) => Update::Hello(h),
            E::Status(s) => Update::Status(s),
            E::Stalls(s) => Update::Stall(s),
            E::Handles(h) => Update::Handles(h),
            E::Dropped(d) => Update::Dropped(d),
            E::Other(_) => return None,
        })
    }

    /// The snapshot this update replaces wholesale, if it does.
    pub fn snapshot_kind(&self) -> Option<SnapshotKind> {
        match self {
            Update::Status(_) => Some(SnapshotKind::Status),
            Update::Handles(_) => Some(SnapshotKind::Handles),
            Update::Requests(_) => Some(SnapshotKind::Requests),
            Update::ThreadPool(_) => Some(SnapshotKind::ThreadPool),
            _ => None,
        }
    }
}

/// A list from the daemon with a version that changes whenever the list is replaced, so derived
/// views (sorted, filtered indexes) are rebuilt only when something changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// Changes on every replacement.
    pub version: u64,
    /// When the daemon published it, unix ms (0 = never received).
    pub as_of_ms: u64,
    /// Matches on the daemon (may exceed `rows.len()` when the daemon applied a limit).
    pub total: u64,
}

/// A new version number, unique in this process (so a model rebuilt from scratch by a replay
/// seek never reuses the version of different data).
pub(crate) fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, AtomicOrdering::Relaxed)
}

impl<T> Versioned<T> {
    fn replace(&mut self, rows: Vec<T>, as_of_ms: u64, total: u64) {
        self.rows = rows;
        self.version = next_version();
        self.as_of_ms = as_of_ms;
        self.total = total;
    }

    /// Whether anything was ever received.
    pub fn received(&self) -> bool {
        self.as_of_ms != 0 || !self.rows.is_empty()
    }
}

/// Everything loop-top knows about the daemon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// The daemon's `hello`.
    pub hello: Option<Hello>,
    /// The last `status`.
    pub status: Option<Status>,
    /// The last `handles` list.
    pub handles: Versioned<HandleInfo>,
    /// The last `requests` list.
    pub requests: Versioned<RequestInfo>,
    /// The last `threadpool` answer (its workers are in `workers`).
    pub threadpool: Option<ThreadPoolStatus>,
    /// The thread-pool workers.
    pub workers: Versioned<WorkerInfo>,
    /// Stalls: in progress and recent.
    pub stalls: StallBook,
    /// Notifications the daemon dropped for us since we connected.
    pub dropped_total: u64,
    /// Updates applied.
    pub updates: u64,
}

impl Model {
    /// Applies one update.
    pub fn apply(&mut self, update: Update) {
        self.updates += 1;
        match update {
            Update::Hello(h) => self.hello = Some(h),
            Update::Status(s) => {
                self.stalls.observe_status(&s);
                self.status = Some(*s);
            }
            Update::Stall(e) => self.stalls.observe_event(&e),
            Update::Stalls(r) => self.stalls.observe_result(&r),
            Update::StallDetail(r) => self.stalls.observe_detail(&r),
            Update::Handles(h) => self.handles.replace(h.handles, h.as_of_ms, h.total),
            Update::Requests(r) => self.requests.replace(r.requests, r.as_of_ms, r.total),
            Update::ThreadPool(mut t) => {
                let workers = std::mem::take(&mut t.workers);
                let n = workers.len() as u64;
                self.workers.replace(workers, t.as_of_ms, n);
                self.threadpool = Some(*t);
            }
            Update::Dropped(d) => self.dropped_total = self.dropped_total.saturating_add(d.count),
        }
    }

    /// Stalls in progress, one per blocked loop, by loop index.
    pub fn stalls_in_progress(&self) -> impl Iterator<Item = &Stall> {
        self.stalls.in_progress()
    }

    /// When the freshest snapshot we hold was published, unix ms (0 = none).
    pub fn as_of_ms(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| s.as_of_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stalls_method_is_told_apart_by_shape() {
        let ev = Update::from_method(
            "stalls",
            json!({"event": "opened", "stall": {"id": 1, "in_progress": true}}),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(ev, Update::Stall(_)));
        let res = Update::from_method(
            "stalls",
            json!({"in_progress": [], "recent": [], "total": 0}),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(res, Update::Stalls(_)));
        assert_eq!(Update::from_method("weird", json!({})).unwrap(), None);
        assert!(Update::from_method("status", json!({"loops": 3})).is_err());
    }

    #[test]
    fn replacing_a_list_bumps_its_version() {
        let mut m = Model::default();
        let v0 = m.handles.version;
        m.apply(Update::Handles(HandlesResult {
            as_of_ms: 5,
            total: 1,
            handles: vec![HandleInfo::default()],
        }));
        assert_ne!(m.handles.version, v0);
        assert!(m.handles.received());
        m.apply(Update::ThreadPool(Box::new(ThreadPoolStatus {
            as_of_ms: 6,
            workers: vec![WorkerInfo::default(); 3],
            ..Default::default()
        })));
        assert_eq!(m.workers.rows.len(), 3);
        assert!(m.threadpool.as_ref().unwrap().workers.is_empty());
    }
}
