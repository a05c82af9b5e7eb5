//! Ids and types of handles and requests, and the "target" a callback belongs to.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::names::named_enum;

/// Ids for handles and requests come from one process-wide counter: never reused, and a
/// handle id never equals a request id. Each thread takes them from the counter a block at a
/// time and hands them out from its block, so creating a handle or request costs no atomic
/// read-modify-write on the loop's hot path (a work request per job, a handle per
/// connection). Ids are increasing per thread (per loop), not across threads.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Ids a thread takes from [`NEXT_ID`] at once.
const ID_BLOCK: u64 = 1024;

thread_local! {
    /// This thread's block: the next id to hand out and the end of the block (exclusive).
    static ID_RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

pub(crate) fn next_id() -> u64 {
    ID_RANGE.with(|range| {
        let (mut next, mut end) = range.get();
        if next == end {
            next = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        range.set((next + 1, end));
        next
    })
}

/// A handle's stable id: only the engine makes one (so an id always names a handle that
/// existed), or hands a fresh one to a producer that watches foreign handles
/// ([`HandleId::allocate`]); [`HandleId::get`] and `Display` read it.
///
/// ```compile_fail,E0423
/// let forged = loopd_engine::HandleId(7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(u64);

/// A request's stable id: only the engine makes one; [`RequestId::get`] and `Display` read
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl HandleId {
    pub(crate) const fn new(id: u64) -> HandleId {
        HandleId(id)
    }

    /// A fresh id, never handed out before in this process (by the engine or by this call):
    /// for a producer that observes handles the engine does not own (the libuv agent names
    /// each libuv handle it sees with one).
    pub fn allocate() -> HandleId {
        HandleId(next_id())
    }

    /// The id as a number (as on the wire and in logs).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl RequestId {
    pub(crate) const fn new(id: u64) -> RequestId {
        RequestId(id)
    }

    /// A fresh id, never handed out before in this process: for a producer that observes
    /// requests the engine does not own (see [`HandleId::allocate`]).
    pub fn allocate() -> RequestId {
        RequestId(next_id())
    }

    /// The id as a number (as on the wire and in logs).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

named_enum!(
    /// The type of a handle (a long-lived object of the loop). More types may come: match
    /// with a wildcard arm outside the engine.
    ///
    /// ```compile_fail,E0004
    /// use loopd_engine::HandleType as T;
    /// fn fd_owning(t: T) -> bool {
    ///     match t {
    ///         T::Tcp | T::Udp | T::Poll => true,
    ///         T::Timer | T::Idle | T::Prepare | T::Check | T::Async | T::Signal => false,
    ///     }
    /// }
    /// ```
    #[non_exhaustive]
    pub enum HandleType {
        /// [`super::Timer`]
        Timer => "timer",
        /// [`super::Idle`]
        Idle => "idle",
        /// [`super::Prepare`]
        Prepare => "prepare",
        /// [`super::Check`]
        Check => "check",
        /// [`super::Async`]
        Async => "async",
        /// A TCP listener or stream.
        Tcp => "tcp",
        /// A UDP socket.
        Udp => "udp",
        /// A signal watcher.
        Signal => "signal",
        /// A poll watcher of an arbitrary file descriptor.
        Poll => "poll",
        /// A pipe or Unix-domain socket stream. The engine has none yet; seen in libuv
        /// programs (the agent).
        Pipe => "pipe",
        /// A terminal stream. Seen in libuv programs (the agent).
        Tty => "tty",
        /// A child process. Seen in libuv programs (the agent).
        Process => "process",
        /// A file-system event watcher. Seen in libuv programs (the agent).
        FsEvent => "fs_event",
        /// A file-system stat poller. Seen in libuv programs (the agent).
        FsPoll => "fs_poll",
    }
);

named_enum!(
    /// The type of a request (a one-shot operation). More types may come: match with a
    /// wildcard arm outside the engine.
    #[non_exhaustive]
    pub enum RequestType {
        /// A stream write.
        Write => "write",
        /// A TCP connect.
        Connect => "connect",
        /// A stream shutdown (half-close).
        Shutdown => "shutdown",
        /// A UDP send.
        UdpSend => "udp_send",
        /// A file-system operation on the thread pool.
        Fs => "fs",
        /// User work on the thread pool ([`super::Loop::queue_work`]).
        Work => "work",
        /// A name lookup on the thread pool.
        Getaddrinfo => "getaddrinfo",
        /// A reverse name lookup on the thread pool. Seen in libuv programs (the agent).
        Getnameinfo => "getnameinfo",
        /// Random bytes from the thread pool. Seen in libuv programs (the agent).
        Random => "random",
    }
);

/// The handle or request a callback belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A handle's callback (timer fired, watcher ran, data read, close callback, …).
    Handle(HandleType, HandleId),
    /// A request's completion callback.
    Request(RequestType, RequestId),
}

/// In the encoded kind of a [`Target`]: set for requests; below it, the type's index.
const REQUEST_BIT: u64 = 1 << 7;
// A type's index must fit below REQUEST_BIT.
const _: () = assert!(HandleType::COUNT <= REQUEST_BIT as usize);
const _: () = assert!(RequestType::COUNT <= REQUEST_BIT as usize);

impl Target {
    /// The raw id of the handle or request.
    pub fn id(&self) -> u64 {
        match *self {
            Target::Handle(_, id) => id.get(),
            Target::Request(_, id) => id.get(),
        }
    }

    /// The type name (`timer`, `tcp`, `work`, …).
    pub fn type_name(&self) -> &'static str {
        match *self {
            Target::Handle(t, _) => t.as_str(),
            Target::Request(t, _) => t.as_str(),
        }
    }

    /// `true` for requests.
    pub fn is_request(&self) -> bool {
        matches!(self, Target::Request(..))
    }

    pub(crate) fn encode_kind(&self) -> u64 {
        match *self {
            Target::Handle(t, _) => t.index() as u64,
            Target::Request(t, _) => REQUEST_BIT | t.index() as u64,
        }
    }

    pub(crate) fn decode(kind: u64, id: u64) -> Option<Target> {
        if kind & REQUEST_BIT != 0 {
            let t = RequestType::from_index((kind & !REQUEST_BIT) as usize)?;
            Some(Target::Request(t, RequestId(id)))
        } else {
            let t = HandleType::from_index(kind as usize)?;
            Some(Target::Handle(t, HandleId(id)))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Handle(t, id) => write!(f, "{t} handle {id}"),
            Target::Request(t, id) => write!(f, "{t} request {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_threads_and_increasing_within_one() {
        let per_thread = 3 * ID_BLOCK as usize + 7;
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || (0..per_thread).map(|_| next_id()).collect()))
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            let ids: Vec<u64> = t.join().unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing per thread");
            for id in ids {
                assert!(id > 0, "0 is never an id");
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(seen.len(), 4 * per_thread);
    }
}

/// Where a handle or request was created: the source line of the engine's caller, or, for a
/// producer that sees only machine code (the libuv agent), the symbolized return address of
/// the call that created it. `Display` gives `file:line` or the symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Site {
    /// The `#[track_caller]` location of the call.
    Source(&'static Location<'static>),
    /// A symbolized code address, e.g. `on_connection+0x2c (server.c:41)`.
    Symbol(Arc<str>),
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Source(l) => write!(f, "{}:{}", l.file(), l.line()),
            Site::Symbol(s) => f.write_str(s),
        }
    }
}
