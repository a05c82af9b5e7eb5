//! Serving what the agent records with loopd's own observe code: one `Observe` for the
//! process, restarted by the agent's thread when a loop is attached or detached (never on a
//! loop thread: starting binds sockets and joins threads).

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::{const_mutex, Mutex, MutexGuard};

use loopd_engine::instrument::LoopObserver;
use loopd_observe::{
    env, ConfigControl, Observe, ObserveHandle, ObserveInput, PoolFeed, ServiceRegistry,
};

use crate::pool;

/// The environment variable choosing the stack-sampling signal (`SIGRTMIN+N` or a number).
pub const SAMPLE_SIGNAL_ENV: &str = "LOOPD_SAMPLE_SIGNAL";

/// The attached loops, in attach order (their `loop` labels).
struct Registry {
    loops: Vec<(usize, Arc<LoopObserver>)>,
    next_index: usize,
    server: Option<Sender<()>>,
}

static REGISTRY: Mutex<Registry> = const_mutex(Registry {
    loops: Vec::new(),
    next_index: 0,
    server: None,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock()
}

/// The socket path being served and the process serving it, for the exit handler
/// (try-locked there): a forked child's exit must not remove its parent's socket.
static SOCKET: Mutex<Option<(u32, PathBuf)>> = const_mutex(None);

/// Takes the locks a loop thread may take, for a `fork` (see `crate::fork`).
pub(crate) fn hold_for_fork() {
    std::mem::forget(REGISTRY.lock());
    std::mem::forget(SOCKET.lock());
}

/// Releases the locks [`hold_for_fork`] took.
///
/// # Safety
/// Only after [`hold_for_fork`] on this thread (the fork handlers).
#[allow(unsafe_code)]
pub(crate) unsafe fn release_after_fork() {
    // SAFETY: held by this thread since `hold_for_fork` (the caller's contract).
    unsafe {
        SOCKET.force_unlock();
        REGISTRY.force_unlock();
    }
}

/// In a forked child: the parent's loops and server thread are not the child's. The loops of
/// the forking thread are added again by [`crate::loop_agent::adopt_after_fork`].
pub(crate) fn forget_parent() {
    let mut r = registry();
    r.loops.clear();
    r.server = None;
}

/// The host's stderr is not ours: by default only the agent's own warnings (it cannot
/// attach, cannot serve) and errors; stalls are in `loopctl stalls`, not in the host's log.
pub const DEFAULT_LOG: &str = "warn,loopd_observe=error";

/// The log filter in force (`$LOOPD_LOG`, else [`DEFAULT_LOG`]).
fn log_filter() -> String {
    std::env::var("LOOPD_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_LOG.into())
}

/// `config.get` / `config.set` in a host program: the stall threshold is live-settable (the
/// watchdog's own); the log filter and the pool are the host's and fixed at start.
struct AgentConfig;

impl ConfigControl for AgentConfig {
    fn get(&self) -> proto::ConfigResult {
        proto::ConfigResult {
            log_filter: log_filter(),
            ..proto::ConfigResult::default()
        }
    }

    fn set(&self, params: &proto::methods::ConfigSetParams) -> Result<(), String> {
        if params.log_filter.is_some() {
            return Err(
                "the agent's log filter is fixed when the program starts (LOOPD_LOG)".into(),
            );
        }
        Ok(())
    }
}

/// Logs to stderr, filtered by `$LOOPD_LOG` (default: `warn,loopd_observe=error`).
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = log_filter();
        let filter = tracing_subscriber::EnvFilter::try_new(&filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init();
    });
}

/// The next `loop` label.
pub fn next_index() -> usize {
    let mut r = registry();
    r.next_index += 1;
    r.next_index - 1
}

/// Adds an attached loop and has the server thread serve it.
pub fn add(uv_loop: usize, observer: Arc<LoopObserver>) {
    let mut r = registry();
    r.loops.push((uv_loop, observer));
    notify(&mut r);
}

/// Removes a detached loop.
pub fn remove(uv_loop: usize) {
    let mut r = registry();
    r.loops.retain(|(l, _)| *l != uv_loop);
    notify(&mut r);
}

fn notify(r: &mut Registry) {
    if let Some(tx) = &r.server {
        if tx.send(()).is_ok() {
            return;
        }
    }
    let (tx, rx) = mpsc::channel::<()>();
    let started = crate::threads::spawn_apart("loopd-agent", move || serve(rx));
    match started {
        Ok(_) => {
            let _ = tx.send(());
            r.server = Some(tx);
        }
        Err(e) => tracing::error!("loopd-agent: cannot start its thread: {e}"),
    }
}

/// The sampling signal from `$LOOPD_SAMPLE_SIGNAL`: `SIGRTMIN+N`, `RTMIN+N` or a number.
fn configure_sample_signal() {
    let Ok(text) = std::env::var(SAMPLE_SIGNAL_ENV) else {
        return;
    };
    let t = text.trim();
    let t = t.strip_prefix("SIG").unwrap_or(t);
    let sig = if let Some(n) = t.strip_prefix("RTMIN+") {
        n.parse::<i32>().ok().map(|n| libc::SIGRTMIN() + n)
    } else if t == "RTMIN" {
        Some(libc::SIGRTMIN())
    } else {
        t.parse::<i32>().ok()
    };
    let result = match sig {
        Some(sig) => loopd_observe::watchdog::set_sample_signal(sig),
        None => Err(format!("`{text}` is not a signal like SIGRTMIN+5 or 39")),
    };
    if let Err(e) = result {
        tracing::warn!("loopd-agent: {SAMPLE_SIGNAL_ENV}: {e}; using the default");
    }
}

/// The server thread: (re)starts `Observe` with the registered loops on each change.
fn serve(changes: mpsc::Receiver<()>) {
    configure_sample_signal();
    let mut running: Option<ObserveHandle> = None;
    while changes.recv().is_ok() {
        while changes.try_recv().is_ok() {}
        if let Some(mut old) = running.take() {
            old.shutdown();
        }
        let loops: Vec<Arc<LoopObserver>> =
            registry().loops.iter().map(|(_, o)| o.clone()).collect();
        if loops.is_empty() {
            continue;
        }
        match start(loops) {
            Ok(handle) => running = Some(handle),
            Err(e) => tracing::error!("loopd-agent: not serving: {e}"),
        }
    }
}

fn start(loops: Vec<Arc<LoopObserver>>) -> Result<ObserveHandle, String> {
    let mut options = env::program_options("agent").map_err(|e| e.to_string())?;
    if let Ok(uv) = crate::uv::get() {
        options.host.libuv_version = Some(uv.version());
        options.host.capabilities = crate::capabilities(uv);
    }
    let pool: Arc<dyn PoolFeed> = Arc::new(pool::pool());
    options.input = ObserveInput {
        loops,
        pool,
        services: ServiceRegistry::default(),
    };
    options.config = Arc::new(AgentConfig);
    if crate::fork::in_child() {
        as_forked_child(&mut options);
    }
    let handle = Observe::start(options).map_err(|e| e.to_string())?;
    if let Some(path) = handle.control_path() {
        tracing::info!(path = %path.display(), "loopd-agent: control socket listening");
        let mut s = SOCKET.lock();
        if s.is_none() {
            // SAFETY: registers a plain `extern "C" fn` with no arguments.
            #[allow(unsafe_code)]
            unsafe {
                libc::atexit(remove_socket_at_exit);
            }
        }
        *s = Some((std::process::id(), path.to_path_buf()));
    }
    if let Some(addr) = handle.metrics_addr() {
        tracing::info!(%addr, "loopd-agent: metrics endpoint listening");
    }
    Ok(handle)
}

/// A forked child's own endpoints: the parent's `$LOOPD_SOCKET` path becomes
/// `<path without .sock>-<pid>.sock` beside it (the default path already has the child's
/// pid), and the metrics endpoint is left to the parent, whose address it is.
fn as_forked_child(options: &mut loopd_observe::ObserveOptions) {
    let pid = std::process::id();
    if let Some(path) = std::env::var_os(env::SOCKET_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let stem = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".sock").to_owned())
            .unwrap_or_default();
        options.control_path = Some(path.with_file_name(format!("{stem}-{pid}.sock")));
    }
    if options.metrics_addr.take().is_some() {
        tracing::warn!(
            "loopd-agent: forked child {pid}: no metrics endpoint (LOOPD_METRICS_ADDR is the parent's)"
        );
    }
}

/// At exit, the socket file goes (the threads serving it die with the process) — only the
/// socket this process serves, not one a forked child inherited the path of.
extern "C" fn remove_socket_at_exit() {
    if let Some(s) = SOCKET.try_lock() {
        if let Some((pid, p)) = s.as_ref() {
            if *pid == std::process::id() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
