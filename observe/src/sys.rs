//! The observe side's raw OS interfaces: peer credentials of Unix sockets (the control
//! socket's uid check) and signal-based stack sampling of a loop thread (the stall
//! watchdog's stacks). Every `unsafe` block of the crate lives in this module.
#![allow(unsafe_code)]

pub use loopd_engine::instrument::ThreadIdentity;

/// Credentials of the process at the other end of a Unix socket (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// The peer's process id (as of `connect`).
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// The credentials of the peer of the connected Unix socket `fd` (Linux `SO_PEERCRED`).
///
/// # Errors
/// When `fd` is not a connected Unix socket.
pub fn peer_credentials(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<PeerCred> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is a valid open descriptor for the duration of the call (borrowed);
    // `cred` and `len` are valid for writes and `len` holds the size of `cred`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub use stack_sample::{sample_signal, sample_stack, set_sample_signal, SampleError, StackSample};

/// The dynamic symbol (or at least the object) holding `ip`, from the loader (`dladdr`):
/// the fallback for addresses without debug info, e.g. the vDSO's `__vdso_clock_gettime`
/// or a stripped library's exported functions.
pub fn loader_symbol(ip: usize) -> Option<String> {
    // SAFETY: a zeroed Dl_info is valid storage for dladdr to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; `info` is valid for writes.
    if unsafe { libc::dladdr(ip as *const libc::c_void, &mut info) } == 0 {
        return None;
    }
    // SAFETY: dladdr filled the fields; non-null names are NUL-terminated strings owned by
    // the loader, alive while the object is loaded (we copy them at once).
    let name = |p: *const libc::c_char| {
        (!p.is_null()).then(|| {
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        })
    };
    match (name(info.dli_sname), name(info.dli_fname)) {
        (Some(sym), _) => Some(sym),
        (None, Some(file)) => {
            let base = info.dli_fbase as usize;
            let short = file.rsplit('/').next().unwrap_or(&file).to_string();
            Some(format!("{short}+{:#x}", ip.saturating_sub(base)))
        }
        (None, None) => None,
    }
}

/// Sampling another thread's stack with a signal (the stall watchdog's stack traces).
///
/// How it works:
/// - One process-wide slot ([`SLOT`]) holds a request (the target thread's tid), a state and
///   [`MAX_FRAMES`] instruction pointers, all atomics in a `static`: nothing is allocated.
/// - The sampler (the watchdog thread) writes the request and sends [`sample_signal`] to the
///   target thread only (`tgkill`, which, unlike `pthread_kill`, is harmless when the thread has
///   already exited: `ESRCH`), then waits for the handler with a timeout.
/// - The handler, on the target thread, checks the request is for its own thread, walks the
///   stack with `backtrace::trace_unsynchronized` (libgcc's `_Unwind_Backtrace`, as pprof-rs
///   does) and stores the raw instruction pointers with plain atomic stores: no allocation, no
///   lock of ours. Frames inside the handler are skipped: recording starts at the frame whose
///   instruction pointer is the interrupted program counter read from the `ucontext`.
/// - Symbolization (`backtrace::resolve`) happens later on the sampler's side.
///
/// Why the unwinder and not frame pointers: Rust does not keep frame pointers by default (nor
/// does the prebuilt `std`), so a frame-pointer walk would stop at the first function compiled
/// without them; DWARF unwinding works on every build. Its one caveat: `_Unwind_Backtrace` finds
/// unwind tables through `_dl_find_object` (glibc ≥ 2.35 with libgcc ≥ 12: lock-free and
/// async-signal-safe) or, on older systems, `dl_iterate_phdr`, which takes the loader lock — a
/// sample taken while the loop thread itself holds that lock (inside `dlopen`) would deadlock.
/// The loop never calls `dlopen`, so this is accepted, as pprof-rs accepts it.
mod stack_sample {
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::time::{Duration, Instant};

    use super::ThreadIdentity;

    /// Most frames kept per sample.
    pub const MAX_FRAMES: usize = 128;

    const IDLE: u32 = 0;
    const REQUESTED: u32 = 1;
    const WRITING: u32 = 2;
    const DONE: u32 = 3;

    struct Slot {
        state: AtomicU32,
        target_tid: AtomicI32,
        len: AtomicUsize,
        /// Whether the handler found the interrupted frame (and so skipped its own frames).
        exact: AtomicBool,
        frames: [AtomicUsize; MAX_FRAMES],
    }

    static SLOT: Slot = Slot {
        state: AtomicU32::new(IDLE),
        target_tid: AtomicI32::new(0),
        len: AtomicUsize::new(0),
        exact: AtomicBool::new(false),
        frames: [const { AtomicUsize::new(0) }; MAX_FRAMES],
    };

    /// Serializes samplers (tests run several watchdogs in one process).
    static SAMPLER: Mutex<()> = Mutex::new(());

    /// The raw frames of one sample, innermost first.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct StackSample {
        /// Instruction pointers: the first is the interrupted program counter (when `exact`),
        /// the others return addresses.
        pub frames: Vec<usize>,
        /// `true` when the handler's own frames were cut off; `false` when it could not find
        /// the interrupted frame and kept every frame (the symbolizer then cuts by name).
        pub exact: bool,
    }

    /// Why no sample was taken.
    #[derive(Debug, thiserror::Error)]
    pub enum SampleError {
        /// The signal handler could not be installed.
        #[error("cannot install the stack-sampling signal handler: {0}")]
        Install(String),
        /// The signal could not be sent (the thread is gone?).
        #[error("cannot signal the loop thread: {0}")]
        Signal(std::io::Error),
        /// The handler did not answer in time.
        #[error("the loop thread did not answer the stack-sampling signal within {0:?}")]
        Timeout(Duration),
        /// A previous sample's handler is still running (it timed out).
        #[error("a previous stack sample is still in progress")]
        Busy,
    }

    /// The signal chosen with [`set_sample_signal`]; 0: the default.
    static SIGNAL: AtomicI32 = AtomicI32::new(0);
    /// What was installed for the signal before us: signals that are not our sample requests
    /// go to it.
    static PREVIOUS: OnceLock<PreviousAction> = OnceLock::new();

    /// A `sigaction` kept to chain to.
    struct PreviousAction(libc::sigaction);
    // SAFETY: the struct holds a handler address, a signal mask and flags: plain data, set
    // once and only read afterwards.
    unsafe impl Sync for PreviousAction {}
    // SAFETY: as above.
    unsafe impl Send for PreviousAction {}

    /// The signal used: by default a real-time signal above the ones glibc reserves
    /// (`SIGRTMIN+5`), so it does not collide with `SIGPROF`-based profilers; another one
    /// with [`set_sample_signal`] (for a host program that uses that one itself).
    pub fn sample_signal() -> libc::c_int {
        match SIGNAL.load(Ordering::Relaxed) {
            0 => libc::SIGRTMIN() + 5,
            sig => sig,
        }
    }

    /// Chooses the sampling signal; call before the first sample (the handler is installed
    /// then, once). A handler the program already has for it keeps receiving the signals
    /// that are not our sample requests.
    ///
    /// # Errors
    /// A signal outside `SIGRTMIN..=SIGRTMAX`, or the handler is already installed.
    pub fn set_sample_signal(sig: libc::c_int) -> Result<(), String> {
        if !(libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
            return Err(format!(
                "signal {sig} is not a real-time signal ({}..={})",
                libc::SIGRTMIN(),
                libc::SIGRTMAX()
            ));
        }
        if PREVIOUS.get().is_some() {
            return Err("the sampling signal handler is already installed".into());
        }
        SIGNAL.store(sig, Ordering::Relaxed);
        Ok(())
    }

    /// Hands a signal that was not our sample request to the handler installed before ours.
    /// Async-signal-safe: one atomic load and a call.
    fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let Some(PreviousAction(prev)) = PREVIOUS.get() else {
            return;
        };
        let handler = prev.sa_sigaction;
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            return;
        }
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: with SA_SIGINFO the previous handler has the three-argument signature;
            // it gets the arguments the kernel gave us.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(handler) };
            f(sig, info, ctx);
        } else {
            // SAFETY: without SA_SIGINFO the previous handler has the one-argument signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            f(sig);
        }
    }

    /// The program counter the signal interrupted, from the handler's `ucontext`.
    ///
    /// # Safety
    /// `ctx` must be the `ucontext_t` pointer passed to an `SA_SIGINFO` handler (or null).
    #[allow(unused_variables)]
    unsafe fn interrupted_pc(ctx: *mut libc::c_void) -> Option<usize> {
        if ctx.is_null() {
            return None;
        }
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            // SAFETY: per this function's contract `ctx` points to the kernel-provided
            // `ucontext_t`, valid for reads for the duration of the handler.
            let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
            return Some(uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize);
        }
        #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
        {
            // SAFETY: as above.
            let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
            return Some(uc.uc_mcontext.pc as usize);
        }
        #[allow(unreachable_code)]
        None
    }

    extern "C" fn on_sample_signal(
        sig: libc::c_int,
        info: *mut libc::siginfo_t,
        ctx: *mut libc::c_void,
    ) {
        // SAFETY: __errno_location returns this thread's errno slot; saving and restoring it
        // keeps the interrupted code's errno intact.
        let errno = unsafe { *libc::__errno_location() };
        // SAFETY: gettid is async-signal-safe and has no preconditions.
        let me = unsafe { libc::gettid() };
        if SLOT.target_tid.load(Ordering::Acquire) == me
            && SLOT
                .state
                .compare_exchange(REQUESTED, WRITING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // SAFETY: `ctx` is the third argument of an SA_SIGINFO handler.
            let pc = unsafe { interrupted_pc(ctx) };
            let mut n = record(pc);
            let exact = n > 0;
            if n == 0 {
                n = record(None);
            }
            SLOT.len.store(n, Ordering::Relaxed);
            SLOT.exact.store(exact, Ordering::Relaxed);
            SLOT.state.store(DONE, Ordering::Release);
        } else {
            chain(sig, info, ctx);
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    /// Walks the current stack into `SLOT.frames`, starting at the frame whose instruction
    /// pointer is `from` (every frame when `None`). Returns how many were stored.
    fn record(from: Option<usize>) -> usize {
        let mut n = 0;
        let mut started = from.is_none();
        // SAFETY: `trace_unsynchronized` requires that no other thread unwinds through the
        // `backtrace` crate's synchronized API at the same time in a way that relies on its
        // lock; the unwinder itself (libgcc) is thread-safe, and the closure only does atomic
        // stores into a static array: no allocation, no locks, no panics (the index is checked).
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                let ip = frame.ip() as usize;
                if !started {
                    if Some(ip) == from {
                        started = true;
                    } else {
                        return true;
                    }
                }
                if let Some(slot) = SLOT.frames.get(n) {
                    slot.store(ip, Ordering::Relaxed);
                    n += 1;
                }
                n < MAX_FRAMES
            });
        }
        n
    }

    fn install() -> Result<(), String> {
        static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                // SAFETY: a zeroed sigaction is a valid initial value (empty mask, no flags).
                let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    on_sample_signal;
                action.sa_sigaction = handler as libc::sighandler_t;
                // No SA_ONSTACK: the unwinder needs more stack than Rust's small alternate
                // signal stacks give; the loop thread's own stack has room.
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                // SAFETY: `action.sa_mask` is a valid sigset_t to initialize.
                unsafe { libc::sigemptyset(&mut action.sa_mask) };
                let sig = sample_signal();
                // SAFETY: a zeroed sigaction is valid storage for the current action.
                let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
                // SAFETY: reads the current action into `previous` (a null new action changes
                // nothing).
                if unsafe { libc::sigaction(sig, std::ptr::null(), &mut previous) } != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
                let _ = PREVIOUS.set(PreviousAction(previous));
                // SAFETY: `action` is fully initialized; the handler is an `extern "C"` fn with
                // the SA_SIGINFO signature and is async-signal-safe (see `record`).
                let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error().to_string())
                }
            })
            .clone()
    }

    /// Samples the stack of `thread` (a thread of this process): raw instruction pointers,
    /// innermost first. Waits at most `timeout` for the thread to answer.
    ///
    /// # Errors
    /// See [`SampleError`].
    pub fn sample_stack(
        thread: ThreadIdentity,
        timeout: Duration,
    ) -> Result<StackSample, SampleError> {
        install().map_err(SampleError::Install)?;
        let _serial = SAMPLER.lock().unwrap_or_else(PoisonError::into_inner);
        match SLOT.state.load(Ordering::Acquire) {
            IDLE => {}
            // A late answer to a sample that timed out: forget it.
            DONE => SLOT.state.store(IDLE, Ordering::Release),
            _ => return Err(SampleError::Busy),
        }
        SLOT.target_tid.store(thread.tid, Ordering::Release);
        SLOT.state.store(REQUESTED, Ordering::Release);
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        // SAFETY: tgkill only sends a signal; a stale tid yields ESRCH, and the handler
        // installed above ignores requests that are not for its thread.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                pid as libc::c_long,
                thread.tid as libc::c_long,
                sample_signal() as libc::c_long,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            let _ =
                SLOT.state
                    .compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Relaxed);
            return Err(SampleError::Signal(e));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if SLOT.state.load(Ordering::Acquire) == DONE {
                break;
            }
            if Instant::now() >= deadline {
                if SLOT
                    .state
                    .compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Err(SampleError::Timeout(timeout));
                }
                // The handler is writing right now: give it a little longer.
                if Instant::now() >= deadline + timeout {
                    return Err(SampleError::Timeout(timeout));
                }
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let n = SLOT.len.load(Ordering::Relaxed).min(MAX_FRAMES);
        let frames = SLOT.frames[..n]
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect();
        let exact = SLOT.exact.load(Ordering::Relaxed);
        SLOT.state.store(IDLE, Ordering::Release);
        Ok(StackSample { frames, exact })
    }
}
