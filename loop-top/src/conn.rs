//! The connection to loopd: a blocking [`Client`] over the control socket, and the connection
//! thread that keeps one open (reconnecting with a capped backoff) and feeds the app's channel.
//!
//! The thread is a small state machine — connecting, connected, disconnected (waiting out the
//! backoff) — and reports each transition as a [`ConnEvent`], which the header draws.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use proto::methods::{SubscribeParams, Topic, HANDLES, REQUESTS, STALLS, STATUS, THREADPOOL};
use proto::{encode, Id, LineDecoder, Message, MethodCall, Response, ServerEvent};

use crate::state::Update;

/// The name a `stalls` call for one stall (the open detail's profile) is tracked under: its
/// answer is not a listing and must not be read as one.
pub const STALL_DETAIL: &str = "stalls(id)";

/// The name `call` is tracked under until answered.
pub fn tracked_name(call: &MethodCall) -> &'static str {
    match call {
        MethodCall::Stalls(p) if p.id.is_some() => STALL_DETAIL,
        c => c.name(),
    }
}

/// First reconnect delay.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How long a blocking read waits before the thread looks at its commands again.
const READ_POLL: Duration = Duration::from_millis(100);

/// The delay before reconnect attempt `attempt` (1-based): doubling from [`BACKOFF_BASE`],
/// capped at [`BACKOFF_CAP`] (with `min`: never longer than the cap).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
}

/// The control socket path of DESIGN §5: `$LOOPD_SOCKET`, else
/// `$XDG_RUNTIME_DIR/loopd/control.sock`, else `/tmp/loopd-<uid>/control.sock`.
pub fn default_socket_path() -> PathBuf {
    socket_path_from(
        std::env::var_os("LOOPD_SOCKET"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        current_uid(),
    )
}

/// [`default_socket_path`] with its inputs given (empty values count as unset).
pub fn socket_path_from(
    loopd_socket: Option<std::ffi::OsString>,
    xdg_runtime_dir: Option<std::ffi::OsString>,
    uid: u32,
) -> PathBuf {
    if let Some(p) = loopd_socket.filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = xdg_runtime_dir.filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("loopd").join("control.sock");
    }
    PathBuf::from(format!("/tmp/loopd-{uid}/control.sock"))
}

/// The real uid of this process, read without `unsafe` from the owner of `/proc/self`.
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// What the connection thread reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnEvent {
    /// Trying to connect (attempt 1, 2, …).
    Connecting {
        /// Attempt number since the last success.
        attempt: u32,
    },
    /// Connected; `hello` follows as an update.
    Connected,
    /// Not connected; the next attempt comes after `retry_in`.
    Disconnected {
        /// Why, in words.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Attempts since the last success.
        attempt: u32,
    },
    /// Data: a notification or a result.
    Update(Update),
    /// A request failed (the daemon answered with an error, or the result was malformed).
    CallFailed {
        /// The method called.
        method: String,
        /// What went wrong.
        error: String,
    },
}

/// What the app asks of the connection thread.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnCommand {
    /// Send this request (dropped when not connected).
    Call(MethodCall),
    /// Close and end the thread.
    Shutdown,
}

/// A blocking client of the control socket.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    decoder: LineDecoder,
    next_id: i64,
    pending: HashMap<Id, &'static str>,
    buf: Vec<u8>,
}

/// Something read from the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A notification.
    Notification(Update),
    /// The answer to one of our calls.
    Answer {
        /// The call's id.
        id: Id,
        /// The data.
        update: Update,
    },
    /// A call's error.
    Failed {
        /// The call's id.
        id: Id,
        /// The method called.
        method: String,
        /// What went wrong.
        error: String,
    },
}

impl Client {
    /// Connects to the socket at `path`.
    ///
    /// # Errors
    ///
    /// When the socket cannot be connected to (no daemon, wrong path, permission).
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(READ_POLL))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        Ok(Client {
            stream,
            decoder: LineDecoder::with_limit(proto::MAX_SERVER_LINE_LEN),
            next_id: 1,
            pending: HashMap::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends a request; its answer comes back from [`Client::poll`].
    ///
    /// # Errors
    ///
    /// When writing fails (the daemon went away).
    pub fn send(&mut self, call: MethodCall) -> io::Result<Id> {
        let id = Id::from(self.next_id);
        self.next_id += 1;
        let name = tracked_name(&call);
        let line = encode(&call.into_request(id.clone())).map_err(io::Error::other)?;
        self.stream.write_all(&line)?;
        self.pending.insert(id.clone(), name);
        Ok(id)
    }

    /// Reads what arrived within the read timeout (nothing is not an error).
    ///
    /// # Errors
    ///
    /// When the daemon closed the connection or reading failed.
    pub fn poll(&mut self) -> io::Result<Vec<Incoming>> {
        let n = match self.stream.read(&mut self.buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection",
                ))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in self.decoder.feed(&self.buf[..n]) {
            let Ok(line) = line else { continue };
            match Message::parse(&line) {
                Ok(Message::Notification(n)) => {
                    if let Some(u) = ServerEvent::from_notification(n)
                        .ok()
                        .and_then(Update::from_event)
                    {
                        out.push(Incoming::Notification(u));
                    }
                }
                Ok(Message::Response(r)) => {
                    let Some(id) = r.id.clone() else { continue };
                    if let Some(method) = self.pending.remove(&id) {
                        out.extend(decode_response(id, method, r));
                    }
                }
                Ok(Message::Request(_)) | Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Calls `call` and waits up to `timeout` for its answer, collecting the notifications that
    /// arrive meanwhile into `also`.
    ///
    /// # Errors
    ///
    /// When the connection fails, the daemon answers with an error, or no answer comes in time.
    pub fn call(
        &mut self,
        call: MethodCall,
        timeout: Duration,
        also: &mut Vec<Update>,
    ) -> anyhow::Result<Update> {
        let name = call.name();
        let want = self.send(call)?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for i in self.poll()? {
                match i {
                    Incoming::Answer { id, update } if id == want => return Ok(update),
                    Incoming::Failed { id, method, error } if id == want => {
                        anyhow::bail!("`{method}` failed: {error}")
                    }
                    Incoming::Notification(u) | Incoming::Answer { update: u, .. } => also.push(u),
                    Incoming::Failed { .. } => {}
                }
            }
        }
        anyhow::bail!("no answer to `{name}` within {timeout:?}")
    }
}

fn decode_response(id: Id, method: &'static str, r: Response) -> Option<Incoming> {
    let failed = |id: Id, error: String| Incoming::Failed {
        id,
        method: method.to_owned(),
        error,
    };
    let value = match r.outcome {
        Ok(v) => v,
        Err(e) => return Some(failed(id, e.to_string())),
    };
    match method {
        STATUS | STALLS | HANDLES | REQUESTS | THREADPOOL => {
            match Update::from_method(method, value) {
                Ok(Some(update)) => Some(Incoming::Answer { id, update }),
                Ok(None) => None,
                Err(e) => Some(failed(id, format!("malformed result: {e}"))),
            }
        }
        STALL_DETAIL => match serde_json::from_value(value) {
            Ok(r) => Some(Incoming::Answer {
                id,
                update: Update::StallDetail(r),
            }),
            Err(e) => Some(failed(id, format!("malformed result: {e}"))),
        },
        _ => None,
    }
}

/// A handle on the connection thread.
#[derive(Debug)]
pub struct Connection {
    commands: Sender<ConnCommand>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Connection {
    /// Starts the thread: it connects to `path`, subscribes to `status` and `stalls` every
    /// `interval_ms`, and sends everything to `sink` wrapped by `wrap`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub fn spawn<E: Send + 'static>(
        path: PathBuf,
        interval_ms: u64,
        sink: Sender<E>,
        wrap: fn(ConnEvent) -> E,
    ) -> io::Result<Connection> {
        let (commands, rx) = std::sync::mpsc::channel();
        let thread = thread::Builder::new()
            .name("loop-top-conn".into())
            .spawn(move || run(&path, interval_ms, &rx, &|e| sink.send(wrap(e)).is_ok()))?;
        Ok(Connection {
            commands,
            thread: Some(thread),
        })
    }

    /// Asks the thread to send `call`.
    pub fn call(&self, call: MethodCall) {
        let _ = self.commands.send(ConnCommand::Call(call));
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.commands.send(ConnCommand::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread's body; `emit` returns false when nobody listens any more.
fn run(
    path: &Path,
    interval_ms: u64,
    commands: &Receiver<ConnCommand>,
    emit: &dyn Fn(ConnEvent) -> bool,
) {
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        if !emit(ConnEvent::Connecting { attempt }) {
            return;
        }
        let error = match Client::connect(path) {
            Ok(client) => {
                attempt = 0;
                if !emit(ConnEvent::Connected) {
                    return;
                }
                match serve(client, interval_ms, commands, emit) {
                    Ended::Shutdown => return,
                    Ended::Lost(e) => e,
                }
            }
            Err(e) => format!("cannot connect to {}: {e}", path.display()),
        };
        let retry_in = backoff(attempt.max(1));
        if !emit(ConnEvent::Disconnected {
            error,
            retry_in,
            attempt: attempt.max(1),
        }) {
            return;
        }
        // Wait out the backoff, answering commands (calls are dropped while disconnected).
        let until = Instant::now() + retry_in;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match commands.recv_timeout(left) {
                Ok(ConnCommand::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(ConnCommand::Call(_)) => {}
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}

fn serve(
    mut client: Client,
    interval_ms: u64,
    commands: &Receiver<ConnCommand>,
    emit: &dyn Fn(ConnEvent) -> bool,
) -> Ended {
    let subscribe = MethodCall::Subscribe(SubscribeParams {
        topics: vec![Topic::Status, Topic::Stalls],
        interval_ms: Some(interval_ms),
    });
    let first = [
        subscribe,
        MethodCall::Status,
        MethodCall::Stalls(Default::default()),
    ];
    for call in first {
        if let Err(e) = client.send(call) {
            return Ended::Lost(format!("lost the daemon: {e}"));
        }
    }
    loop {
        loop {
            match commands.try_recv() {
                Ok(ConnCommand::Call(call)) => {
                    if let Err(e) = client.send(call) {
                        return Ended::Lost(format!("lost the daemon: {e}"));
                    }
                }
                Ok(ConnCommand::Shutdown) | Err(TryRecvError::Disconnected) => {
                    return Ended::Shutdown
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        match client.poll() {
            Ok(items) => {
                for i in items {
                    let ev = match i {
                        Incoming::Notification(u) | Incoming::Answer { update: u, .. } => {
                            ConnEvent::Update(u)
                        }
                        Incoming::Failed { method, error, .. } => {
                            ConnEvent::CallFailed { method, error }
                        }
                    };
                    if !emit(ev) {
                        return Ended::Shutdown;
                    }
                }
            }
            Err(e) => return Ended::Lost(format!("lost the daemon: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(3), BACKOFF_BASE * 4);
        assert_eq!(backoff(10), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
        for a in 1..100 {
            assert!(backoff(a) <= BACKOFF_CAP);
            assert!(backoff(a) >= backoff(a.saturating_sub(1).max(1)));
        }
    }

    #[test]
    fn socket_path_rule() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            socket_path_from(s("/x.sock"), s("/run/user/1"), 5),
            PathBuf::from("/x.sock")
        );
        assert_eq!(
            socket_path_from(None, s("/run/user/1"), 5),
            PathBuf::from("/run/user/1/loopd/control.sock")
        );
        assert_eq!(
            socket_path_from(s(""), s(""), 5),
            PathBuf::from("/tmp/loopd-5/control.sock")
        );
    }

    /// A fake daemon on a socketpair-like listener: the thread connects, subscribes, reports
    /// data, and reports the loss when the daemon goes away. No timing assumptions: every wait
    /// is on a channel with a generous timeout.
    #[test]
    fn thread_connects_subscribes_and_reports_loss() {
        use std::io::{BufRead, BufReader};
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("loop-top-conn-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("c.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let conn = Connection::spawn(path.clone(), 500, tx, |e| e).unwrap();
        let (mut sock, _) = listener.accept().unwrap();
        let hello = proto::Notification::new(
            "hello",
            Some(serde_json::json!({"protocol_version": 1, "pid": 9})),
        );
        sock.write_all(&encode(&hello).unwrap()).unwrap();
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains("\"subscribe\""), "{line}");
        assert!(line.contains("\"interval_ms\":500"), "{line}");
        let wait = Duration::from_secs(10);
        let mut got_hello = false;
        while !got_hello {
            if let ConnEvent::Update(Update::Hello(h)) = rx.recv_timeout(wait).unwrap() {
                got_hello = h.pid == 9;
            }
        }
        drop(reader);
        drop(sock);
        loop {
            if let ConnEvent::Disconnected { error, .. } = rx.recv_timeout(wait).unwrap() {
                assert!(error.contains("lost the daemon"), "{error}");
                break;
            }
        }
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
