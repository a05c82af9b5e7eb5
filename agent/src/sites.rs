//! Creation sites of host handles: the return address of the host's first registering call
//! (`uv_timer_start`, `uv_read_start`, …), symbolized off the loop thread and cached.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Frames looked at to leave the agent's own code.
const MAX_FRAMES: usize = 16;
/// Addresses kept symbolized (a bounded cache: sites are code addresses, few and reused).
const CACHE_MAX: usize = 4096;

/// The load address of the object a code address is in (0 if none).
pub fn object_base(ip: usize) -> usize {
    // SAFETY: a zeroed Dl_info is valid storage for dladdr's answer.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables for `ip`.
    if unsafe { libc::dladdr(ip as *const c_void, &mut info) } == 0 {
        return 0;
    }
    info.dli_fbase as usize
}

/// The return address in the host code that called into the agent (first frame outside this
/// library), or `None`. A walk of a few frames, once per handle (its first registering call).
pub fn caller() -> Option<usize> {
    let ours = object_base(caller as *const () as usize);
    let mut found = None;
    let mut n = 0;
    // SAFETY: the unsynchronized walk takes no lock — the synchronized one shares a global
    // lock with `backtrace::resolve`, which the resolver thread holds while it reads debug
    // info, and the loop thread must never wait for it. libgcc's unwinder is thread-safe, and
    // the closure only reads the frames.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            n += 1;
            let ip = frame.ip() as usize;
            if object_base(ip) != ours {
                found = Some(ip);
                return false;
            }
            n < MAX_FRAMES
        });
    }
    found
}

struct Cache {
    names: HashMap<usize, Arc<str>>,
    resolver: Option<Sender<usize>>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            names: HashMap::new(),
            resolver: None,
        })
    })
}

/// The symbol of `addr` if known; else `0x…` now, and the name once the resolver thread has
/// it. Never blocks: the loop thread calls it.
pub fn symbol(addr: usize) -> Arc<str> {
    let Ok(mut c) = cache().try_lock() else {
        return Arc::from(format!("{addr:#x}"));
    };
    if let Some(name) = c.names.get(&addr) {
        return name.clone();
    }
    if c.resolver.is_none() {
        c.resolver = start_resolver();
    }
    if let Some(tx) = &c.resolver {
        let _ = tx.send(addr);
    }
    Arc::from(format!("{addr:#x}"))
}

/// In a forked child: the resolver thread is the parent's; the next symbol starts one.
pub fn forget_resolver() {
    if let Ok(mut c) = cache().try_lock() {
        c.resolver = None;
    }
}

fn start_resolver() -> Option<Sender<usize>> {
    let (tx, rx) = mpsc::channel::<usize>();
    crate::threads::spawn_apart("loopd-agent-sym", move || {
        for addr in rx {
            let name = resolve(addr);
            let mut c = match cache().lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            if c.names.len() >= CACHE_MAX {
                c.names.clear();
            }
            c.names.insert(addr, name);
        }
    })
    .ok()?;
    Some(tx)
}

/// `function (file:line)` for a return address, `function`, or `0x… (object)`.
fn resolve(addr: usize) -> Arc<str> {
    let mut out = None;
    // A return address points after the call: look up the call itself.
    backtrace::resolve(addr.saturating_sub(1) as *mut c_void, |sym| {
        if out.is_some() {
            return;
        }
        let name = sym.name().map(|n| n.to_string());
        let place = match (sym.filename(), sym.lineno()) {
            (Some(f), Some(l)) => Some(format!(
                "{}:{l}",
                f.file_name().map_or_else(
                    || f.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            )),
            _ => None,
        };
        out = match (name, place) {
            (Some(n), Some(p)) => Some(format!("{n} ({p})")),
            (Some(n), None) => Some(n),
            (None, Some(p)) => Some(p),
            (None, None) => None,
        };
    });
    Arc::from(out.unwrap_or_else(|| format!("{addr:#x}")))
}
