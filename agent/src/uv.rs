//! libuv, found at run time: no libuv header or version at build time. Every function the
//! agent calls is looked up with `dlsym`; the few struct fields it reads are the ones libuv's
//! ABI has kept fixed since 1.0 (`data`, `loop` and `type` at the start of every handle,
//! `data` and `type` at the start of every request).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use loopd_engine::{HandleType, RequestType};

/// `uv_loop_t *`, `uv_handle_t *`, `uv_req_t *`: opaque to us.
pub type Ptr = *mut c_void;

/// `UV_METRICS_IDLE_TIME` of `uv_loop_option` (libuv ≥ 1.39).
pub const UV_METRICS_IDLE_TIME: c_int = 1;
/// `UV_PREPARE`, `UV_CHECK`, `UV_TIMER` of `uv_handle_type`.
pub const UV_CHECK: c_int = 2;
pub const UV_PREPARE: c_int = 9;
pub const UV_TIMER: c_int = 13;

/// libuv's `uv_handle_type` as loopd names it (`UV_HANDLE_TYPE_MAP` order, stable in 1.x).
pub fn handle_type(t: c_int) -> Option<HandleType> {
    Some(match t {
        1 => HandleType::Async,
        2 => HandleType::Check,
        3 => HandleType::FsEvent,
        4 => HandleType::FsPoll,
        6 => HandleType::Idle,
        7 => HandleType::Pipe,
        8 => HandleType::Poll,
        9 => HandleType::Prepare,
        10 => HandleType::Process,
        12 => HandleType::Tcp,
        13 => HandleType::Timer,
        14 => HandleType::Tty,
        15 => HandleType::Udp,
        16 => HandleType::Signal,
        _ => return None,
    })
}

/// libuv's `uv_req_type` as loopd names it (`UV_REQ_TYPE_MAP` order).
pub fn request_type(t: c_int) -> Option<RequestType> {
    Some(match t {
        2 => RequestType::Connect,
        3 => RequestType::Write,
        4 => RequestType::Shutdown,
        5 => RequestType::UdpSend,
        6 => RequestType::Fs,
        7 => RequestType::Work,
        8 => RequestType::Getaddrinfo,
        9 => RequestType::Getnameinfo,
        10 => RequestType::Random,
        _ => return None,
    })
}

/// The loop of a handle: `uv_handle_t.loop`, the second pointer of every handle.
///
/// # Safety
/// `handle` points to a live, initialized libuv handle.
pub unsafe fn handle_loop(handle: Ptr) -> Ptr {
    // SAFETY: per the contract; `loop` follows `void *data` in every libuv 1.x handle.
    unsafe { *(handle as *const Ptr).add(1) }
}

/// The type of a handle: `uv_handle_get_type`, else its `type` field (after `data` and
/// `loop` in every libuv 1.x handle).
///
/// # Safety
/// `handle` points to a live, initialized libuv handle.
pub unsafe fn type_of(uv: &Uv, handle: Ptr) -> c_int {
    match uv.handle_get_type {
        // SAFETY: per the contract.
        Some(f) => unsafe { f(handle) },
        // SAFETY: per the contract; `uv_handle_type type` is the third field.
        None => unsafe { *((handle as *const Ptr).add(2) as *const c_int) },
    }
}

/// The type of a request: `uv_req_t.type`, right after `void *data`.
///
/// # Safety
/// `req` points to a request libuv initialized (as the registering call returns).
pub unsafe fn request_type_of(req: Ptr) -> c_int {
    // SAFETY: per the contract; `type` follows `void *data` in every libuv 1.x request.
    unsafe { *((req as *const u8).add(std::mem::size_of::<Ptr>()) as *const c_int) }
}

macro_rules! functions {
    ($( $field:ident: $name:literal => fn($($arg:ty),*) -> $ret:ty; )+) => {
        /// The libuv functions the agent calls, resolved once.
        #[allow(missing_docs)]
        pub struct Uv {
            $( pub $field: unsafe extern "C" fn($($arg),*) -> $ret, )+
            /// `uv_metrics_info` (libuv ≥ 1.45): events and events waiting.
            pub metrics_info: Option<unsafe extern "C" fn(Ptr, *mut MetricsInfo) -> c_int>,
            /// `uv_version_string` (absent from a static libuv that did not link it).
            pub version_string: Option<unsafe extern "C" fn() -> *const c_char>,
            /// `uv_handle_get_type` (1.19+; else the handle's `type` field is read).
            pub handle_get_type: Option<unsafe extern "C" fn(Ptr) -> c_int>,
        }

        impl Uv {
            fn resolve() -> Result<Uv, String> {
                Ok(Uv {
                    $( $field: {
                        let p = lookup($name).ok_or(concat!("libuv has no ", $name))?;
                        // SAFETY: the symbol is libuv's function of that name, whose C
                        // signature (stable in libuv 1.x) is the one declared here.
                        unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) -> $ret>(p) }
                    }, )+
                    metrics_info: lookup("uv_metrics_info").map(|p| {
                        // SAFETY: libuv ≥ 1.45's `int uv_metrics_info(uv_loop_t*, uv_metrics_t*)`.
                        unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Ptr, *mut MetricsInfo) -> c_int>(p) }
                    }),
                    version_string: lookup("uv_version_string").map(|p| {
                        // SAFETY: `const char *uv_version_string(void)`.
                        unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *const c_char>(p) }
                    }),
                    handle_get_type: lookup("uv_handle_get_type").map(|p| {
                        // SAFETY: `uv_handle_type uv_handle_get_type(const uv_handle_t*)`.
                        unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Ptr) -> c_int>(p) }
                    }),
                })
            }
        }
    };
}

functions! {
    run: "uv_run" => fn(Ptr, c_int) -> c_int;
    loop_configure: "uv_loop_configure" => fn(Ptr, c_int) -> c_int;
    metrics_idle_time: "uv_metrics_idle_time" => fn(Ptr) -> u64;
    backend_timeout: "uv_backend_timeout" => fn(Ptr) -> c_int;
    handle_size: "uv_handle_size" => fn(c_int) -> usize;
    walk: "uv_walk" => fn(Ptr, unsafe extern "C" fn(Ptr, Ptr), Ptr) -> ();
    is_active: "uv_is_active" => fn(Ptr) -> c_int;
    is_closing: "uv_is_closing" => fn(Ptr) -> c_int;
    has_ref: "uv_has_ref" => fn(Ptr) -> c_int;
    fileno: "uv_fileno" => fn(Ptr, *mut c_int) -> c_int;
    unref: "uv_unref" => fn(Ptr) -> ();
    close: "uv_close" => fn(Ptr, Option<unsafe extern "C" fn(Ptr)>) -> ();
    prepare_init: "uv_prepare_init" => fn(Ptr, Ptr) -> c_int;
    prepare_start: "uv_prepare_start" => fn(Ptr, unsafe extern "C" fn(Ptr)) -> c_int;
    check_init: "uv_check_init" => fn(Ptr, Ptr) -> c_int;
    check_start: "uv_check_start" => fn(Ptr, unsafe extern "C" fn(Ptr)) -> c_int;
    timer_init: "uv_timer_init" => fn(Ptr, Ptr) -> c_int;
    timer_start: "uv_timer_start" => fn(Ptr, unsafe extern "C" fn(Ptr), u64, u64) -> c_int;
}

/// `uv_metrics_t` (libuv ≥ 1.45): three counters and reserved room.
#[repr(C)]
#[derive(Default)]
pub struct MetricsInfo {
    /// Iterations.
    pub loop_count: u64,
    /// Events processed.
    pub events: u64,
    /// Events waiting when the last poll returned.
    pub events_waiting: u64,
    reserved: [u64; 13],
}

/// The symbols a test hides (`LOOPD_AGENT_HIDE_SYMBOLS=uv_metrics_idle_time,…`), to try the
/// agent against a libuv that lacks them.
fn hidden(name: &str) -> bool {
    static HIDDEN: OnceLock<Vec<String>> = OnceLock::new();
    HIDDEN
        .get_or_init(|| {
            std::env::var("LOOPD_AGENT_HIDE_SYMBOLS")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|h| h == name)
}

/// libuv's definition of `name`, never the agent's own interposer of it: the next definition
/// after this library (libuv preloaded past), else the process's first one (libuv linked into
/// the executable), unless that is ours.
pub fn lookup(name: &str) -> Option<*mut c_void> {
    if hidden(name) {
        return None;
    }
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: dlsym with a valid NUL-terminated name and a pseudo-handle.
    let next = unsafe { libc::dlsym(libc::RTLD_NEXT, c.as_ptr()) };
    if !next.is_null() {
        return Some(next);
    }
    // libuv loaded by a library that was itself dlopen'ed with RTLD_LOCAL (Python's uvloop)
    // is in no global scope: ask the loaded libuv itself.
    if let Some(lib) = loaded_libuv() {
        // SAFETY: dlsym on a handle dlopen returned (never closed), with a valid name.
        let p = unsafe { libc::dlsym(lib as *mut c_void, c.as_ptr()) };
        if !p.is_null() && !crate::intercept::is_ours(p) {
            return Some(p);
        }
    }
    // SAFETY: as above.
    let first = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
    if first.is_null() || crate::intercept::is_ours(first) {
        return None;
    }
    Some(first)
}

/// The shared libuv already loaded in this process, if any (never loads one).
fn loaded_libuv() -> Option<usize> {
    for name in [c"libuv.so.1", c"libuv.so"] {
        // SAFETY: RTLD_NOLOAD only returns a handle to an object already loaded; the handle
        // is kept for the life of the process (never dlclose'd).
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if !h.is_null() {
            return Some(h as usize);
        }
    }
    None
}

/// The process's libuv, or why the agent stays out of the way (logged once by the caller).
pub fn get() -> Result<&'static Uv, &'static str> {
    static UV: OnceLock<Result<Uv, String>> = OnceLock::new();
    match UV.get_or_init(Uv::resolve) {
        Ok(uv) => Ok(uv),
        Err(e) => Err(e.as_str()),
    }
}

impl Uv {
    /// `uv_version_string()`, e.g. `1.44.2`.
    pub fn version(&self) -> String {
        let Some(version_string) = self.version_string else {
            return "unknown".into();
        };
        // SAFETY: uv_version_string returns a static NUL-terminated string.
        let p = unsafe { version_string() };
        if p.is_null() {
            return "unknown".into();
        }
        // SAFETY: non-null, static, NUL-terminated (above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}
