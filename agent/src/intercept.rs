//! Callback attribution: the agent's definitions of libuv's registering calls. Preloaded
//! (`LD_PRELOAD`), they come first; each keeps the host's callback, hands libuv a trampoline
//! of ours instead and forwards to libuv's own function. The trampoline tells the loop's
//! current-callback slot whose callback runs (the watchdog's attribution), times it, and
//! calls the host's callback.
//!
//! Only the loop thread registers and runs these callbacks (libuv is not thread-safe), so
//! the tables are thread-local and need no lock. Nothing here holds a borrow while host code
//! runs: host callbacks call back into libuv (and so into us) freely.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_void};
use std::hash::{BuildHasherDefault, Hasher};

use loopd_engine::instrument::clock::now_ns;
use std::sync::Arc;

use loopd_engine::{
    HandleId, HandleType, Phase, RequestId, RequestInfo, RequestState, RequestType, Site, Target,
};

use crate::loop_agent::agent_of;
use crate::sites;
use crate::uv::{self, Ptr};

/// Hashes an address: one multiply (Fibonacci hashing). The keys are the host's own handle
/// and request addresses, not input from outside the process, so no keyed hash is needed;
/// SipHash cost more than the rest of a callback's bookkeeping.
#[derive(Default)]
pub struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A map keyed by address.
pub type PtrMap<V> = HashMap<usize, V, BuildHasherDefault<PtrHasher>>;

type HandleCb = unsafe extern "C" fn(Ptr);
type StatusCb = unsafe extern "C" fn(Ptr, c_int);
type PollCb = unsafe extern "C" fn(Ptr, c_int, c_int);
type ReadCb = unsafe extern "C" fn(Ptr, isize, *const c_void);
type UdpRecvCb = unsafe extern "C" fn(Ptr, isize, *const c_void, *const c_void, c_uint);

/// `UV_ENOSYS`: what an interposer returns when libuv's own function cannot be found.
const UV_ENOSYS: c_int = -libc::ENOSYS;

/// Which of a handle's callbacks a trampoline runs.
#[derive(Clone, Copy)]
enum Slot {
    Timer,
    Idle,
    Prepare,
    Check,
    Async,
    Signal,
    Poll,
    Read,
    Connection,
    UdpRecv,
    Close,
}
const SLOTS: usize = 11;

/// The host's callbacks of one handle, its id and type, and where it was first registered.
struct HandleCbs {
    cbs: [usize; SLOTS],
    id: HandleId,
    kind: Option<HandleType>,
    first_seen_ns: u64,
    site: Option<usize>,
}

/// A request in flight: the host's callback and what we know of it.
struct Req {
    cb: usize,
    kind: RequestType,
    id: RequestId,
    uv_loop: Ptr,
    started_ns: u64,
}

thread_local! {
    static HANDLES: RefCell<PtrMap<HandleCbs>> = RefCell::new(PtrMap::default());
    static REQS: RefCell<PtrMap<Req>> = RefCell::new(PtrMap::default());
}

/// Whether attribution is on: libuv resolved (a libuv the agent cannot use gets its calls
/// forwarded untouched).
pub(crate) fn wrapping() -> bool {
    uv::get().is_ok()
}

/// What the agent recorded of a handle registered through an interposed call: its id, when
/// it was first seen and the site of that first call.
pub fn registered(h: Ptr) -> Option<(HandleId, u64, Option<usize>)> {
    HANDLES
        .try_with(|m| {
            let m = m.try_borrow().ok()?;
            let e = m.get(&(h as usize))?;
            Some((e.id, e.first_seen_ns, e.site))
        })
        .ok()
        .flatten()
}

fn keep(h: Ptr, slot: Slot, cb: usize) {
    let _ = HANDLES.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            let e = m.entry(h as usize).or_insert_with(|| HandleCbs {
                cbs: [0; SLOTS],
                id: HandleId::allocate(),
                // SAFETY: the registering calls get live, initialized handles.
                kind: uv::get()
                    .ok()
                    .and_then(|uv| uv::handle_type(unsafe { uv::type_of(uv, h) })),
                first_seen_ns: now_ns(),
                site: sites::caller(),
            });
            e.cbs[slot as usize] = cb;
        }
    });
}

/// One lookup per callback: the host's callback in `slot`, and the target it belongs to.
fn kept(h: Ptr, slot: Slot) -> Option<(usize, Option<Target>)> {
    HANDLES
        .try_with(|m| {
            let m = m.try_borrow().ok()?;
            let e = m.get(&(h as usize))?;
            Some((
                e.cbs[slot as usize],
                e.kind.map(|k| Target::Handle(k, e.id)),
            ))
        })
        .ok()
        .flatten()
}

/// Runs `call` (the host's callback of handle `h`) attributed to `target` in `phase`.
fn attributed(h: Ptr, phase: Phase, target: Option<Target>, call: impl FnOnce()) {
    // SAFETY: libuv passes its callbacks live handles.
    let l = unsafe { uv::handle_loop(h) };
    let agent = target.and_then(|_| agent_of(l));
    let begun = agent.as_ref().and_then(|agent| {
        let target = target?;
        let mut a = agent.try_borrow_mut().ok()?;
        Some((target, a.callback_begins(phase, target, None)))
    });
    call();
    if let (Some(agent), Some((target, started))) = (agent, begun) {
        if let Ok(mut a) = agent.try_borrow_mut() {
            a.callback_ends(phase, target, started);
        }
    }
}

/// The trampoline of one callback slot with the signature `$args`.
macro_rules! trampoline {
    ($name:ident, $slot:expr, $phase:expr, $ty:ty, ($($arg:ident: $t:ty),*)) => {
        unsafe extern "C" fn $name(h: Ptr $(, $arg: $t)*) {
            let Some((cb, target)) = kept(h, $slot) else {
                return;
            };
            if cb == 0 {
                return;
            }
            // SAFETY: `cb` was stored from a non-null host callback of this very type.
            let f = unsafe { std::mem::transmute::<usize, $ty>(cb) };
            let run = || {
                // SAFETY: the host's callback, with the arguments libuv gave us.
                unsafe { f(h $(, $arg)*) }
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attributed(h, $phase, target, run))).is_err() {
                // Our bookkeeping panicked before or after the host's callback; nothing to undo.
            }
        }
    };
}

trampoline!(timer_tramp, Slot::Timer, Phase::Timers, HandleCb, ());
trampoline!(idle_tramp, Slot::Idle, Phase::Idle, HandleCb, ());
trampoline!(prepare_tramp, Slot::Prepare, Phase::Prepare, HandleCb, ());
trampoline!(check_tramp, Slot::Check, Phase::Check, HandleCb, ());
trampoline!(async_tramp, Slot::Async, Phase::Poll, HandleCb, ());
trampoline!(signal_tramp, Slot::Signal, Phase::Poll, StatusCb, (signum: c_int));
trampoline!(poll_tramp, Slot::Poll, Phase::Poll, PollCb, (status: c_int, events: c_int));
trampoline!(read_tramp, Slot::Read, Phase::Poll, ReadCb, (nread: isize, buf: *const c_void));
trampoline!(connection_tramp, Slot::Connection, Phase::Poll, StatusCb, (status: c_int));
trampoline!(udp_recv_tramp, Slot::UdpRecv, Phase::Poll, UdpRecvCb,
    (nread: isize, buf: *const c_void, addr: *const c_void, flags: c_uint));

unsafe extern "C" fn close_tramp(h: Ptr) {
    let (cb, target) = kept(h, Slot::Close).unwrap_or((0, None));
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        attributed(h, Phase::Close, target, || {
            if cb != 0 {
                // SAFETY: stored from the host's non-null `uv_close_cb`.
                let f = unsafe { std::mem::transmute::<usize, HandleCb>(cb) };
                // SAFETY: the host's close callback with its handle.
                unsafe { f(h) };
            }
        });
        // The handle's memory may be freed now: only its address is used below.
        let _ = HANDLES.try_with(|m| m.try_borrow_mut().map(|mut m| m.remove(&(h as usize))));
        // SAFETY: not dereferenced: the loop pointer was read when uv_close was called.
        if let Some(agent) = CLOSING_LOOP
            .with(|c| c.borrow_mut().remove(&(h as usize)))
            .and_then(agent_of)
        {
            if let Ok(mut a) = agent.try_borrow_mut() {
                a.forget_handle(h);
            }
        }
    }));
}

thread_local! {
    /// The loop of each handle being closed (read at `uv_close`: the handle may be freed by
    /// the time its close callback returns).
    static CLOSING_LOOP: RefCell<PtrMap<Ptr>> = RefCell::new(PtrMap::default());
}

/// Runs a request's completion: the host's callback (`call` gets its address, 0 if none)
/// attributed to the request.
fn complete_with(req: Ptr, call: impl FnOnce(usize)) {
    let Some(r) = REQS
        .try_with(|m| m.try_borrow_mut().ok()?.remove(&(req as usize)))
        .ok()
        .flatten()
    else {
        return;
    };
    let agent = agent_of(r.uv_loop);
    let target = Target::Request(r.kind, r.id);
    let begun = agent.as_ref().and_then(|agent| {
        let mut a = agent.try_borrow_mut().ok()?;
        a.request_done(r.kind, r.started_ns);
        Some(a.callback_begins(Phase::Poll, target, None))
    });
    call(r.cb);
    if let (Some(agent), Some(started)) = (agent, begun) {
        if let Ok(mut a) = agent.try_borrow_mut() {
            a.callback_ends(Phase::Poll, target, started);
        }
    }
}

/// [`complete_with`] for a `(req, status)` callback.
pub(crate) fn complete(req: Ptr, status: c_int) {
    complete_with(req, |cb| {
        if cb != 0 {
            // SAFETY: stored from the host's non-null callback of this (request, status) type.
            let f = unsafe { std::mem::transmute::<usize, StatusCb>(cb) };
            // SAFETY: the host's callback with the request and status libuv gave us.
            unsafe { f(req, status) };
        }
    });
}

type FsCb = unsafe extern "C" fn(Ptr);
type GetaddrinfoCb = unsafe extern "C" fn(Ptr, c_int, Ptr);

unsafe extern "C" fn fs_tramp(req: Ptr) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        complete_with(req, |cb| {
            if cb != 0 {
                // SAFETY: stored from the host's non-null `uv_fs_cb`.
                let f = unsafe { std::mem::transmute::<usize, FsCb>(cb) };
                // SAFETY: the host's callback with its request.
                unsafe { f(req) };
            }
        })
    }));
}

unsafe extern "C" fn getaddrinfo_tramp(req: Ptr, status: c_int, res: Ptr) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        complete_with(req, |cb| {
            if cb != 0 {
                // SAFETY: stored from the host's non-null `uv_getaddrinfo_cb`.
                let f = unsafe { std::mem::transmute::<usize, GetaddrinfoCb>(cb) };
                // SAFETY: the host's callback with the arguments libuv gave us.
                unsafe { f(req, status, res) };
            }
        })
    }));
}

unsafe extern "C" fn request_tramp(req: Ptr, status: c_int) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| complete(req, status)));
}

/// Notes a request started on `uv_loop`.
pub(crate) fn track_request(req: Ptr, kind: RequestType, uv_loop: Ptr, cb: usize) {
    let _ = REQS.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.insert(
                req as usize,
                Req {
                    cb,
                    kind,
                    id: RequestId::allocate(),
                    uv_loop,
                    started_ns: now_ns(),
                },
            );
        }
    });
    if let Some(agent) = agent_of(uv_loop) {
        if let Ok(mut a) = agent.try_borrow_mut() {
            a.request_started(kind);
        }
    }
}

/// The requests in flight on `uv_loop` (loop thread: the table is the thread's), oldest
/// first. Work queued with `uv_queue_work` is `queued` or `running`; the agent cannot see
/// inside libuv's other requests (writes, fs, connects, …), which are `running` while in
/// flight.
pub(crate) fn requests_of(uv_loop: Ptr) -> Vec<RequestInfo> {
    let unknown_site: Arc<str> = Arc::from("?");
    let mut work = Vec::new();
    let mut list: Vec<RequestInfo> = REQS
        .try_with(|m| {
            let Ok(m) = m.try_borrow() else {
                return Vec::new();
            };
            m.iter()
                .filter(|(_, r)| r.uv_loop == uv_loop)
                .map(|(&req, r)| {
                    if r.kind == RequestType::Work {
                        work.push(req);
                    }
                    RequestInfo {
                        id: r.id,
                        kind: r.kind,
                        label: None,
                        site: Site::Symbol(unknown_site.clone()),
                        created_ns: r.started_ns,
                        state: RequestState::Running,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    // Work items in the order they were listed: the pool's table says which still wait.
    let states = crate::pool::work_states(&work);
    let mut states = states.into_iter();
    for info in list.iter_mut().filter(|r| r.kind == RequestType::Work) {
        if let Some(Some(state)) = states.next() {
            info.state = state;
        }
    }
    list.sort_by_key(|r| r.created_ns);
    list
}

/// Forgets a request whose registering call failed (no callback will come).
pub(crate) fn untrack_request(req: Ptr) {
    let r = REQS
        .try_with(|m| m.try_borrow_mut().ok()?.remove(&(req as usize)))
        .ok()
        .flatten();
    if let Some(r) = r {
        if let Some(agent) = agent_of(r.uv_loop) {
            if let Ok(mut a) = agent.try_borrow_mut() {
                a.request_done(r.kind, r.started_ns);
            }
        }
    }
}

/// libuv's own `name`, resolved once, as the function type `$ty`.
#[macro_export]
#[doc(hidden)]
macro_rules! real {
    ($name:expr, $ty:ty) => {{
        static REAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let p = *REAL.get_or_init(|| $crate::uv::lookup($name).map_or(0, |p| p as usize));
        if p == 0 {
            None
        } else {
            // SAFETY: libuv's function of that name, whose signature is `$ty` in libuv 1.x.
            Some(unsafe { std::mem::transmute::<usize, $ty>(p) })
        }
    }};
}

/// Defines an interposer of a `start(handle, cb)`-shaped call.
macro_rules! start_with_cb {
    ($export:ident, $name:literal, $slot:expr, $tramp:ident, $cbty:ty,
     ($($pre:ident: $pt:ty),*), ($($post:ident: $qt:ty),*)) => {
        #[doc = concat!("Interposes `", $name, "`: the host's callback runs through the agent's trampoline.")]
        ///
        /// # Safety
        /// As libuv's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $export(h: Ptr, $($pre: $pt,)* cb: Option<$cbty> $(, $post: $qt)*) -> c_int {
            type Real = unsafe extern "C" fn(Ptr, $($pt,)* Option<$cbty> $(, $qt)*) -> c_int;
            let Some(real) = real!($name, Real) else {
                return UV_ENOSYS;
            };
            let cb = match cb {
                // libuv re-arming with the trampoline it holds (`uv_timer_again` calls
                // `uv_timer_start`): the host's callback is already kept.
                Some(cb) if cb as usize == $tramp as *const () as usize
                    || crate::loop_agent::is_own_callback(cb as usize) => Some(cb),
                Some(cb) if wrapping() => {
                    let _ = std::panic::catch_unwind(|| keep(h, $slot, cb as usize));
                    Some($tramp as $cbty)
                }
                other => other,
            };
            // SAFETY: forwarding the host's call to libuv, with our trampoline as callback.
            unsafe { real(h, $($pre,)* cb $(, $post)*) }
        }
    };
}

start_with_cb!(uv_timer_start, "uv_timer_start", Slot::Timer, timer_tramp, HandleCb, (), (timeout: u64, repeat: u64));
start_with_cb!(
    uv_idle_start,
    "uv_idle_start",
    Slot::Idle,
    idle_tramp,
    HandleCb,
    (),
    ()
);
start_with_cb!(
    uv_prepare_start,
    "uv_prepare_start",
    Slot::Prepare,
    prepare_tramp,
    HandleCb,
    (),
    ()
);
start_with_cb!(
    uv_check_start,
    "uv_check_start",
    Slot::Check,
    check_tramp,
    HandleCb,
    (),
    ()
);
start_with_cb!(uv_signal_start, "uv_signal_start", Slot::Signal, signal_tramp, StatusCb, (), (signum: c_int));
start_with_cb!(uv_poll_start, "uv_poll_start", Slot::Poll, poll_tramp, PollCb, (events: c_int), ());
start_with_cb!(uv_listen, "uv_listen", Slot::Connection, connection_tramp, StatusCb, (backlog: c_int), ());

/// Defines an interposer of a call `(first, second, cb)` whose last argument is a handle
/// callback: it runs through the agent's trampoline. `$handle` picks which argument is the
/// handle (`uv_read_start(handle, alloc, cb)`, `uv_async_init(loop, handle, cb)`).
macro_rules! with_last_cb {
    ($export:ident, $name:literal, $slot:expr, $tramp:ident, $cbty:ty, $handle:ident) => {
        #[doc = concat!("Interposes `", $name, "`: the host's callback runs through the agent's trampoline (other callbacks pass through).")]
        ///
        /// # Safety
        /// As libuv's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $export(first: Ptr, second: Ptr, cb: Option<$cbty>) -> c_int {
            type Real = unsafe extern "C" fn(Ptr, Ptr, Option<$cbty>) -> c_int;
            let Some(real) = real!($name, Real) else {
                return UV_ENOSYS;
            };
            let h = $handle(first, second);
            let cb = match cb {
                Some(cb) if cb as usize == $tramp as *const () as usize => Some(cb),
                Some(cb) if wrapping() => {
                    let _ = std::panic::catch_unwind(|| keep(h, $slot, cb as usize));
                    Some($tramp as $cbty)
                }
                other => other,
            };
            // SAFETY: forwarding the host's call.
            unsafe { real(first, second, cb) }
        }
    };
}

fn handle_first(first: Ptr, _second: Ptr) -> Ptr {
    first
}

fn handle_second(_first: Ptr, second: Ptr) -> Ptr {
    second
}

with_last_cb!(
    uv_read_start,
    "uv_read_start",
    Slot::Read,
    read_tramp,
    ReadCb,
    handle_first
);
with_last_cb!(
    uv_udp_recv_start,
    "uv_udp_recv_start",
    Slot::UdpRecv,
    udp_recv_tramp,
    UdpRecvCb,
    handle_first
);
with_last_cb!(
    uv_async_init,
    "uv_async_init",
    Slot::Async,
    async_tramp,
    HandleCb,
    handle_second
);

/// Interposes `uv_close`: the close callback runs attributed, and the agent forgets the
/// handle after it.
///
/// # Safety
/// As libuv's `uv_close`.
#[no_mangle]
pub unsafe extern "C" fn uv_close(h: Ptr, cb: Option<HandleCb>) {
    type Real = unsafe extern "C" fn(Ptr, Option<HandleCb>);
    let Some(real) = real!("uv_close", Real) else {
        return;
    };
    let ours = cb.is_some_and(|c| c as usize == close_tramp as *const () as usize);
    let cb = if wrapping() && !ours {
        let _ = std::panic::catch_unwind(|| {
            keep(h, Slot::Close, cb.map_or(0, |cb| cb as usize));
            // SAFETY: a live handle (uv_close's contract).
            let l = unsafe { uv::handle_loop(h) };
            CLOSING_LOOP.with(|c| c.borrow_mut().insert(h as usize, l));
        });
        Some(close_tramp as HandleCb)
    } else {
        cb
    };
    // SAFETY: forwarding the host's call.
    unsafe { real(h, cb) }
}

/// Defines an interposer of a request call whose callback is `(req, status)`.
macro_rules! request_call {
    ($export:ident, $name:literal, $kind:expr, ($($arg:ident: $t:ty),*), $loop_of:expr) => {
        #[doc = concat!("Interposes `", $name, "`: the request is counted in flight and its callback runs attributed.")]
        ///
        /// # Safety
        /// As libuv's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $export(req: Ptr, $($arg: $t,)* cb: Option<StatusCb>) -> c_int {
            type Real = unsafe extern "C" fn(Ptr, $($t,)* Option<StatusCb>) -> c_int;
            let Some(real) = real!($name, Real) else {
                return UV_ENOSYS;
            };
            let ours = cb.is_some_and(|c| c as usize == request_tramp as *const () as usize);
            if !wrapping() || ours {
                // SAFETY: forwarding the host's call untouched.
                return unsafe { real(req, $($arg,)* cb) };
            }
            let loop_of: fn($($t),*) -> Ptr = $loop_of;
            let l = loop_of($($arg),*);
            let _ = std::panic::catch_unwind(|| track_request(req, $kind, l, cb.map_or(0, |c| c as usize)));
            // SAFETY: forwarding the host's call, with our trampoline as callback.
            let rc = unsafe { real(req, $($arg,)* Some(request_tramp as StatusCb)) };
            if rc != 0 {
                let _ = std::panic::catch_unwind(|| untrack_request(req));
            }
            rc
        }
    };
}

request_call!(uv_write, "uv_write", RequestType::Write,
    (stream: Ptr, bufs: *const c_void, nbufs: c_uint),
    // SAFETY: the stream is a live handle (uv_write's contract).
    |stream, _, _| unsafe { uv::handle_loop(stream) });
request_call!(uv_shutdown, "uv_shutdown", RequestType::Shutdown,
    (stream: Ptr),
    // SAFETY: as above.
    |stream| unsafe { uv::handle_loop(stream) });
request_call!(uv_tcp_connect, "uv_tcp_connect", RequestType::Connect,
    (tcp: Ptr, addr: *const c_void),
    // SAFETY: as above.
    |tcp, _| unsafe { uv::handle_loop(tcp) });
request_call!(uv_udp_send, "uv_udp_send", RequestType::UdpSend,
    (udp: Ptr, bufs: *const c_void, nbufs: c_uint, addr: *const c_void),
    // SAFETY: as above.
    |udp, _, _, _| unsafe { uv::handle_loop(udp) });

type WalkCb = unsafe extern "C" fn(Ptr, Ptr);

/// A host's `uv_walk`, with the agent's handles left out.
struct HostWalk {
    cb: WalkCb,
    arg: Ptr,
    own: [usize; 3],
}

unsafe extern "C" fn walk_tramp(h: Ptr, arg: Ptr) {
    // SAFETY: `arg` is the `HostWalk` uv_walk below was given, alive for the walk.
    let w = unsafe { &*(arg as *const HostWalk) };
    if !w.own.contains(&(h as usize)) {
        // SAFETY: the host's walk callback with its own argument.
        unsafe { (w.cb)(h, w.arg) };
    }
}

/// Interposes `uv_walk`: the host does not see the agent's own handles (a host that closes
/// "every handle" or expects its `data` on each — uvloop does — is not surprised by ours).
///
/// # Safety
/// As libuv's `uv_walk`.
#[no_mangle]
pub unsafe extern "C" fn uv_walk(l: Ptr, cb: Option<WalkCb>, arg: Ptr) {
    type Real = unsafe extern "C" fn(Ptr, Option<WalkCb>, Ptr);
    let Some(real) = real!("uv_walk", Real) else {
        return;
    };
    let own = std::panic::catch_unwind(|| crate::loop_agent::own_handles(l))
        .ok()
        .flatten();
    match (cb, own) {
        (Some(cb), Some(own)) => {
            let mut w = HostWalk { cb, arg, own };
            // SAFETY: forwarding the walk with our filter; `w` outlives the call.
            unsafe { real(l, Some(walk_tramp), (&mut w as *mut HostWalk).cast()) }
        }
        // SAFETY: forwarding the host's call untouched.
        _ => unsafe { real(l, cb, arg) },
    }
}

/// Defines an interposer of an asynchronous `uv_fs_*` call `(loop, req, args…, cb)`: with a
/// callback, the request is counted in flight and its callback runs attributed; without one
/// (a synchronous call) it is forwarded untouched.
macro_rules! fs_call {
    ($($export:ident($($arg:ident: $t:ty),*);)+) => {$(
        #[doc = concat!("Interposes `", stringify!($export), "` (see `fs_call!`).")]
        ///
        /// # Safety
        /// As libuv's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $export(l: Ptr, req: Ptr, $($arg: $t,)* cb: Option<FsCb>) -> c_int {
            type Real = unsafe extern "C" fn(Ptr, Ptr, $($t,)* Option<FsCb>) -> c_int;
            let Some(real) = real!(stringify!($export), Real) else {
                return UV_ENOSYS;
            };
            let Some(host_cb) = cb.filter(|c| *c as usize != fs_tramp as *const () as usize && wrapping()) else {
                // SAFETY: forwarding the host's call untouched.
                return unsafe { real(l, req, $($arg,)* cb) };
            };
            let _ = std::panic::catch_unwind(|| track_request(req, RequestType::Fs, l, host_cb as usize));
            // SAFETY: forwarding the host's call, with our trampoline as callback.
            let rc = unsafe { real(l, req, $($arg,)* Some(fs_tramp as FsCb)) };
            if rc < 0 {
                let _ = std::panic::catch_unwind(|| untrack_request(req));
            }
            rc
        }
    )+};
}

type CStrPtr = *const std::ffi::c_char;

fs_call! {
    uv_fs_open(path: CStrPtr, flags: c_int, mode: c_int);
    uv_fs_close(file: c_int);
    uv_fs_read(file: c_int, bufs: *const c_void, nbufs: c_uint, offset: i64);
    uv_fs_write(file: c_int, bufs: *const c_void, nbufs: c_uint, offset: i64);
    uv_fs_unlink(path: CStrPtr);
    uv_fs_mkdir(path: CStrPtr, mode: c_int);
    uv_fs_rmdir(path: CStrPtr);
    uv_fs_scandir(path: CStrPtr, flags: c_int);
    uv_fs_stat(path: CStrPtr);
    uv_fs_fstat(file: c_int);
    uv_fs_lstat(path: CStrPtr);
    uv_fs_rename(path: CStrPtr, new_path: CStrPtr);
    uv_fs_fsync(file: c_int);
    uv_fs_ftruncate(file: c_int, offset: i64);
    uv_fs_access(path: CStrPtr, mode: c_int);
    uv_fs_readlink(path: CStrPtr);
    uv_fs_realpath(path: CStrPtr);
}

/// Interposes `uv_getaddrinfo`: with a callback, the lookup is counted in flight and its
/// callback runs attributed.
///
/// # Safety
/// As libuv's `uv_getaddrinfo`.
#[no_mangle]
pub unsafe extern "C" fn uv_getaddrinfo(
    l: Ptr,
    req: Ptr,
    cb: Option<GetaddrinfoCb>,
    node: CStrPtr,
    service: CStrPtr,
    hints: *const c_void,
) -> c_int {
    type Real = unsafe extern "C" fn(
        Ptr,
        Ptr,
        Option<GetaddrinfoCb>,
        CStrPtr,
        CStrPtr,
        *const c_void,
    ) -> c_int;
    let Some(real) = real!("uv_getaddrinfo", Real) else {
        return UV_ENOSYS;
    };
    let ours = getaddrinfo_tramp as *const () as usize;
    let Some(host_cb) = cb.filter(|c| *c as usize != ours && wrapping()) else {
        // SAFETY: forwarding the host's call untouched.
        return unsafe { real(l, req, cb, node, service, hints) };
    };
    let _ = std::panic::catch_unwind(|| {
        track_request(req, RequestType::Getaddrinfo, l, host_cb as usize)
    });
    // SAFETY: forwarding the host's call, with our trampoline as callback.
    let rc = unsafe {
        real(
            l,
            req,
            Some(getaddrinfo_tramp as GetaddrinfoCb),
            node,
            service,
            hints,
        )
    };
    if rc != 0 {
        let _ = std::panic::catch_unwind(|| untrack_request(req));
    }
    rc
}

/// Whether `p` is one of the agent's own definitions of a libuv function (so that looking up
/// libuv's never finds ours). Compared by object, not by address: an executable that exports
/// libuv's functions (`-rdynamic`) interposes even our own references to `uv_run`.
pub fn is_ours(p: *mut c_void) -> bool {
    let ours = crate::sites::object_base(is_ours as *const () as usize);
    ours != 0 && crate::sites::object_base(p as usize) == ours
}

/// Whether the host's calls reach the agent's definitions (preloaded, and libuv shared): only
/// then are callbacks attributed.
pub fn interposing() -> bool {
    // SAFETY: dlsym with a pseudo-handle and a valid NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"uv_timer_start".as_ptr()) };
    !p.is_null() && is_ours(p)
}
