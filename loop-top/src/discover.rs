//! The discovery thread: scans the runtime directory (or the one socket) every interval and
//! sends each [`Scan`] to the app, so endpoints appear and vanish while loop-top runs.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

use proto::discovery::{self, Scan};

/// How long one endpoint may take to answer `hello` and `status`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every socket of this directory (`--dir`, else the runtime directory).
    Dir(PathBuf),
    /// This one socket (`--socket`).
    Socket(PathBuf),
}

/// Scans `target` once (each endpoint within [`PROBE_TIMEOUT`], all at once).
pub fn scan(target: &Target) -> Scan {
    match target {
        Target::Dir(dir) => discovery::discover(dir, PROBE_TIMEOUT),
        Target::Socket(path) => Scan {
            dir: path.parent().map(PathBuf::from).unwrap_or_default(),
            probes: vec![discovery::probe(path, PROBE_TIMEOUT)],
            ..Scan::default()
        },
    }
}

/// A handle on the discovery thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Discovery {
    stop: Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Discovery {
    /// Starts the thread: a scan of `target` every `interval_ms`, each sent to `sink` wrapped
    /// by `wrap`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub fn spawn<E: Send + 'static>(
        target: Target,
        interval_ms: u64,
        sink: Sender<E>,
        wrap: fn(Scan) -> E,
    ) -> std::io::Result<Discovery> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = thread::Builder::new()
            .name("loop-top-discovery".into())
            .spawn(move || {
                run(
                    &target,
                    Duration::from_millis(interval_ms),
                    &stopped,
                    &sink,
                    wrap,
                )
            })?;
        Ok(Discovery {
            stop,
            thread: Some(thread),
        })
    }
}

fn run<E>(
    target: &Target,
    interval: Duration,
    stopped: &Receiver<()>,
    sink: &Sender<E>,
    wrap: fn(Scan) -> E,
) {
    loop {
        if sink.send(wrap(scan(target))).is_err() {
            return;
        }
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
