//! The control socket server: JSON-RPC 2.0, one JSON object per line, on a Unix socket
//! (protocol: the `proto` crate), served by the `loopd-control` thread with its own
//! `mio::Poll`.
//!
//! - Peers are checked with `SO_PEERCRED`: another uid (root aside) gets a `-32004` error line
//!   and is disconnected. Every accepted connection first receives the `hello` notification.
//! - Every method of DESIGN §5 answers from published snapshots and the stall book, never
//!   waiting on a loop. Bad input gets a JSON-RPC error and the connection stays open; a line
//!   over 1 MiB gets a `-32600` error and that connection (only) is closed.
//! - Subscribers get `status`/`handles` every `interval_ms` and `stalls` events as they happen.
//!   Each connection has a bounded output buffer ([`conn::OUT_LIMIT`]): when a subscriber reads
//!   too slowly its notifications are dropped and counted, and a `dropped` notification tells
//!   it so; nobody else waits for it. A `trace` (megabytes) is streamed as the client reads,
//!   at most [`MAX_TRACE_STREAMS`] at once; more get a `-32003` error, counted.
//! - A failed `accept` (out of file descriptors) is retried every [`ACCEPT_RETRY`], so a
//!   client waiting in the backlog gets its `hello` once descriptors are free, without another
//!   client having to connect; the failure is logged at most once a second.

mod conn;
mod path;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use proto::methods::{PingResult, SubscribeResult, Topic, UnsubscribeResult};
use proto::{
    encode, ErrorCode, ErrorObject, Message, MethodCall, Request, Response, ServerEvent, StallEvent,
};

pub use conn::OUT_LIMIT;
pub use path::{default_socket_path, program_socket_path, SOCKET_ENV};

use self::conn::{Conn, Streamed, Subscription};
use super::{convert, trace, ObserveError, Shared};
use crate::sys::{effective_uid, peer_credentials, PeerCred};
use loopd_engine::instrument::clock::{now_ns, wall_ms};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// Most connections at once; more get a `-32003` error and are closed.
pub const MAX_CONNECTIONS: usize = 256;
/// Stall events waiting for the control thread; more are dropped (and logged).
const EVENT_QUEUE: usize = 1024;
/// Longest the poll sleeps (bounds how late a closing connection is reaped).
const MAX_WAIT: Duration = Duration::from_millis(250);
/// A connection closing after an error gets this long to take its last output.
const CLOSE_GRACE_NS: u64 = 2_000_000_000;
/// Read chunk.
const READ_CHUNK: usize = 64 * 1024;
/// `trace` answers streamed at once: each holds the recorder's records of its moment (up to
/// a ring per loop once the ring has moved on), so their number is bounded.
pub const MAX_TRACE_STREAMS: usize = 8;
/// After a failed `accept` (EMFILE, ENFILE, ENOBUFS…), try again this soon: the listener is
/// edge-triggered, so the clients already waiting would otherwise wait for a new one.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// At most one WARN line per this long about failing accepts.
const ACCEPT_WARN_EVERY_NS: u64 = 1_000_000_000;

/// Control clients turned away, by reason (`loopd_control_rejected_total{reason}`).
#[derive(Debug, Default)]
pub(crate) struct Rejected {
    /// A peer of another uid (`-32004`).
    pub other_user: AtomicU64,
    /// Over [`MAX_CONNECTIONS`] (`-32003`).
    pub connection_limit: AtomicU64,
    /// A `trace` while [`MAX_TRACE_STREAMS`] were streaming (`-32003`).
    pub trace_busy: AtomicU64,
}

impl Rejected {
    /// `(reason label, count)` for every reason.
    pub fn by_reason(&self) -> [(&'static str, u64); 3] {
        [
            ("other_user", self.other_user.load(Ordering::Relaxed)),
            (
                "connection_limit",
                self.connection_limit.load(Ordering::Relaxed),
            ),
            ("trace_busy", self.trace_busy.load(Ordering::Relaxed)),
        ]
    }
}

impl Streamed for trace::TraceStream {
    fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool {
        trace::TraceStream::fill(self, out, want)
    }
}

/// The running control server.
pub(crate) struct ControlServer {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    ino: u64,
}

struct Server {
    shared: Arc<Shared>,
    poll: Poll,
    listener: UnixListener,
    conns: HashMap<usize, Conn>,
    next_token: usize,
    events: Arc<Mutex<VecDeque<StallEvent>>>,
    stop: Arc<AtomicBool>,
    uid: u32,
    scratch: Vec<u8>,
    /// When to try `accept` again after it failed.
    accept_retry_ns: Option<u64>,
    /// When the last accept failure was logged, and how many were not since.
    accept_warned_ns: u64,
    accept_suppressed: u64,
}

impl ControlServer {
    pub fn start(
        shared: Arc<Shared>,
        path: Option<PathBuf>,
        name: Option<&str>,
    ) -> Result<ControlServer, ObserveError> {
        let (path, ours) = match (path, name) {
            (Some(p), _) => (p, false),
            (None, Some(name)) => path::program_location(name),
            (None, None) => path::default_location(),
        };
        let bound = path::bind(&path, ours)?;
        let ino = bound.ino;
        let fail = |e: io::Error| ObserveError::ControlSocket {
            path: path.clone(),
            cause: e,
        };
        let cleanup = |e: ObserveError| {
            path::remove_if_ours(&path, ino);
            e
        };
        let poll = Poll::new().map_err(fail).map_err(cleanup)?;
        let mut listener = UnixListener::from_std(bound.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(fail)
            .map_err(cleanup)?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER)
                .map_err(fail)
                .map_err(cleanup)?,
        );
        let events = Arc::new(Mutex::new(VecDeque::new()));
        {
            let (events, waker) = (events.clone(), waker.clone());
            shared.stalls.add_sink(Arc::new(move |e: &StallEvent| {
                let mut q = events.lock().unwrap_or_else(PoisonError::into_inner);
                if q.len() >= EVENT_QUEUE {
                    tracing::warn!("control server is behind; a stall event was dropped");
                    return;
                }
                q.push_back(e.clone());
                drop(q);
                let _ = waker.wake();
            }));
        }
        let _ = shared.control_path.set(path.clone());
        tracing::debug!(path = %path.display(), "control socket listening");
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            shared,
            poll,
            listener,
            conns: HashMap::new(),
            next_token: 0,
            events,
            stop: stop.clone(),
            uid: effective_uid(),
            scratch: vec![0; READ_CHUNK],
            accept_retry_ns: None,
            accept_warned_ns: 0,
            accept_suppressed: 0,
        };
        let thread = std::thread::Builder::new()
            .name("loopd-control".into())
            .spawn(move || server.run())
            .map_err(|source| {
                path::remove_if_ours(&path, ino);
                ObserveError::Thread {
                    name: "loopd-control",
                    source,
                }
            })?;
        Ok(ControlServer {
            stop,
            waker,
            thread: Some(thread),
            path,
            ino,
        })
    }

    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.waker.wake();
            let _ = t.join();
            path::remove_if_ours(&self.path, self.ino);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn error_response(id: Option<proto::Id>, code: ErrorCode, message: impl Into<String>) -> Response {
    Response::error(id, ErrorObject::new(code, message))
}

impl Server {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "control server poll failed");
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.forward_stall_events(),
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(t);
                        }
                        if ev.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            if self.accept_retry_ns.is_some_and(|due| now_ns() >= due) {
                self.accept();
            }
            self.forward_stall_events();
            self.push_periodic();
            self.reap();
        }
        tracing::debug!("control server stopped");
    }

    fn next_timeout(&self) -> Duration {
        let now = now_ns();
        let due = self
            .conns
            .values()
            .filter_map(|c| c.sub.as_ref())
            .filter(|s| s.has(&Topic::Status) || s.has(&Topic::Handles))
            .map(|s| s.next_due_ns)
            .min();
        match due.into_iter().chain(self.accept_retry_ns).min() {
            Some(d) => Duration::from_nanos(d.saturating_sub(now)).min(MAX_WAIT),
            None => MAX_WAIT,
        }
    }

    fn accept(&mut self) {
        self.accept_retry_ns = None;
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.accept_failed(&e);
                    return;
                }
            };
            let peer = match peer_credentials(stream.as_fd()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read control peer credentials; refused");
                    continue;
                }
            };
            if peer.uid != self.uid && peer.uid != 0 {
                self.shared
                    .control_rejected
                    .other_user
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    peer_pid = peer.pid,
                    peer_uid = peer.uid,
                    "control connection from another user refused"
                );
                refuse(
                    &mut stream,
                    ErrorCode::PERMISSION_DENIED,
                    format!(
                        "permission denied: this loopd belongs to uid {}, you are uid {}",
                        self.uid, peer.uid
                    ),
                );
                continue;
            }
            if self.conns.len() >= MAX_CONNECTIONS {
                self.shared
                    .control_rejected
                    .connection_limit
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer_pid = peer.pid, "too many control connections; refused");
                refuse(
                    &mut stream,
                    ErrorCode::BUSY,
                    format!(
                        "daemon busy: {MAX_CONNECTIONS} control connections are open; retry later"
                    ),
                );
                continue;
            }
            let token = self.next_token;
            self.next_token = (self.next_token + 1) % (usize::MAX - 2);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(error = %e, "cannot register a control connection");
                continue;
            }
            tracing::debug!(
                peer_pid = peer.pid,
                peer_uid = peer.uid,
                "control client connected"
            );
            let mut conn = Conn::new(stream, peer);
            conn.queue(&ServerEvent::Hello(convert::hello(&self.shared)).to_notification());
            conn.flush();
            self.conns.insert(token, conn);
            // Data may have arrived with the connection (edge-triggered: read now).
            self.read(token);
        }
    }

    /// Out of descriptors or buffers: retry soon (see [`ACCEPT_RETRY`]), log rate-limited.
    fn accept_failed(&mut self, e: &io::Error) {
        let now = now_ns();
        self.accept_retry_ns = Some(now + ACCEPT_RETRY.as_nanos() as u64);
        if self.accept_warned_ns == 0
            || now.saturating_sub(self.accept_warned_ns) >= ACCEPT_WARN_EVERY_NS
        {
            tracing::warn!(
                error = %e,
                suppressed = self.accept_suppressed,
                retry_ms = ACCEPT_RETRY.as_millis() as u64,
                "control socket accept failed; retrying"
            );
            self.accept_warned_ns = now.max(1);
            self.accept_suppressed = 0;
        } else {
            self.accept_suppressed += 1;
        }
    }

    /// Reads and handles input, one line at a time, while the connection is not busy (output
    /// under [`OUT_LIMIT`], no answer streaming); otherwise the input waits (in the socket)
    /// until the client reads.
    fn read(&mut self, token: usize) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        conn.read_paused = false;
        loop {
            while !conn.closing && !conn.is_busy() {
                let Some(line) = conn.lines.pop_front() else {
                    break;
                };
                match line {
                    Ok(line) => self.handle_line(&mut conn, &line),
                    Err(e) => {
                        conn.queue(&Response::error(None, e.to_error_object()));
                        if e.is_fatal() {
                            tracing::debug!(peer_pid = conn.peer.pid, error = %e, "closing control connection");
                            conn.closing = true;
                            conn.close_by_ns = now_ns() + CLOSE_GRACE_NS;
                            conn.lines.clear();
                        }
                    }
                }
                conn.flush();
            }
            if conn.closing || conn.dead {
                break;
            }
            if conn.is_busy() {
                conn.read_paused = true;
                break;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    // The peer shut its writing side (`printf … | nc -U`) and may still be
                    // reading: answer its last line, then close once the answers are out
                    // (or after the grace). Dropping it now cut long answers mid-line.
                    match conn.decoder.finish() {
                        Some(Ok(line)) => self.handle_line(&mut conn, &line),
                        Some(Err(e)) => conn.queue(&Response::error(None, e.to_error_object())),
                        None => {}
                    }
                    conn.sub = None;
                    conn.closing = true;
                    conn.close_by_ns = now_ns() + CLOSE_GRACE_NS;
                }
                Ok(n) => {
                    let lines = &mut conn.lines;
                    conn.decoder
                        .feed_with(&self.scratch[..n], |l| lines.push_back(l));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => conn.dead = true,
            }
        }
        conn.flush();
        self.conns.insert(token, conn);
    }

    fn flush(&mut self, token: usize) {
        let resume = match self.conns.get_mut(&token) {
            Some(conn) => {
                conn.flush();
                conn.read_paused && !conn.is_busy()
            }
            None => false,
        };
        if resume {
            self.read(token);
        }
    }

    fn reap(&mut self) {
        let now = now_ns();
        let gone: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dead || (c.closing && (c.is_drained() || now >= c.close_by_ns)))
            .map(|(t, _)| *t)
            .collect();
        for t in gone {
            if let Some(mut c) = self.conns.remove(&t) {
                let _ = self.poll.registry().deregister(&mut c.stream);
                if c.dropped_total > 0 {
                    tracing::info!(
                        peer_pid = c.peer.pid,
                        dropped_total = c.dropped_total,
                        "control client disconnected after missing notifications"
                    );
                } else {
                    tracing::debug!(peer_pid = c.peer.pid, "control client disconnected");
                }
            }
        }
    }

    fn forward_stall_events(&mut self) {
        let events: Vec<StallEvent> = {
            let mut q = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            q.drain(..).collect()
        };
        for e in events {
            let Ok(line) = encode(&ServerEvent::Stalls(Box::new(e)).to_notification()) else {
                continue;
            };
            for conn in self.conns.values_mut() {
                if conn.sub.as_ref().is_some_and(|s| s.has(&Topic::Stalls)) {
                    conn.push(&line);
                    conn.flush();
                }
            }
        }
    }

    fn push_periodic(&mut self) {
        let now = now_ns();
        let mut status_line: Option<Vec<u8>> = None;
        let mut handles_line: Option<Vec<u8>> = None;
        for conn in self.conns.values_mut() {
            let Some(sub) = conn.sub.as_mut() else {
                continue;
            };
            if now < sub.next_due_ns {
                continue;
            }
            sub.next_due_ns = now + sub.interval_ns;
            let (want_status, want_handles) = (sub.has(&Topic::Status), sub.has(&Topic::Handles));
            if want_status {
                let line = status_line.get_or_insert_with(|| {
                    encode(
                        &ServerEvent::Status(Box::new(convert::status(&self.shared)))
                            .to_notification(),
                    )
                    .unwrap_or_default()
                });
                conn.push(line);
            }
            if want_handles {
                let line = handles_line.get_or_insert_with(|| {
                    let all = proto::methods::HandlesParams::default();
                    encode(
                        &ServerEvent::Handles(convert::handles(&self.shared, &all))
                            .to_notification(),
                    )
                    .unwrap_or_default()
                });
                conn.push(line);
            }
            conn.flush();
        }
    }

    fn handle_line(&mut self, conn: &mut Conn, line: &str) {
        let response = match Message::parse(line) {
            Err(e) => Response::error(e.id().cloned(), e.to_error_object()),
            Ok(Message::Request(req)) => match self.call(conn, req) {
                Some(r) => r,
                None => return,
            },
            // Notifications and responses from a client are ignored (proto README).
            Ok(_) => return,
        };
        conn.queue(&response);
    }

    /// Answers a request: the response, or `None` when the answer was queued already.
    fn call(&mut self, conn: &mut Conn, req: Request) -> Option<Response> {
        let call = match MethodCall::from_request(&req) {
            Ok(c) => c,
            Err(e) => return Some(Response::error(Some(req.id), e.to_error_object())),
        };
        let id = req.id;
        let shared = &self.shared;
        Some(match call {
            MethodCall::Ping => Response::result(
                id,
                &PingResult {
                    as_of_ms: wall_ms(now_ns()),
                },
            ),
            MethodCall::Status => Response::result(id, &convert::status(shared)),
            MethodCall::Handles(p) => Response::result(id, &convert::handles(shared, &p)),
            MethodCall::Requests(p) => Response::result(id, &convert::requests(shared, &p)),
            MethodCall::ThreadPool => Response::result(id, &convert::threadpool(shared)),
            MethodCall::Stalls(p) => match convert::stalls(shared, &p) {
                Some(result) => Response::result(id, &result),
                None => error_response(
                    Some(id),
                    ErrorCode::NOT_FOUND,
                    format!(
                        "no stall {} is kept (the last {} closed stalls are)",
                        p.id.unwrap_or_default(),
                        crate::STALLS_KEPT
                    ),
                ),
            },
            MethodCall::Trace(p) => {
                // Megabytes: streamed as the client reads (this connection is not streaming,
                // or its line would not have been read).
                let streaming = self.conns.values().filter(|c| c.is_streaming()).count();
                if streaming >= MAX_TRACE_STREAMS {
                    shared
                        .control_rejected
                        .trace_busy
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer_pid = conn.peer.pid, "trace refused: busy");
                    return Some(error_response(
                        Some(id),
                        ErrorCode::BUSY,
                        format!(
                            "daemon busy: {streaming} trace answers are being sent; retry later"
                        ),
                    ));
                }
                match proto::codec::response_frame(&id) {
                    Ok((head, tail)) => {
                        let answer = match p.stall {
                            None => trace::TraceStream::new(shared, p.last_ms, head, tail),
                            Some(stall) => {
                                match trace::TraceStream::for_stall(shared, stall, head, tail) {
                                    Some(answer) => answer,
                                    None => {
                                        return Some(error_response(
                                            Some(id),
                                            ErrorCode::NOT_FOUND,
                                            format!(
                                            "no flight-recorder window is kept for stall {stall} \
                                                 (the last {} closed stalls keep one, once their \
                                                 iteration was recorded)",
                                            proto::STALL_PROFILES_KEPT
                                        ),
                                        ))
                                    }
                                }
                            }
                        };
                        conn.stream(Box::new(answer));
                        return None;
                    }
                    Err(e) => error_response(Some(id), ErrorCode::INTERNAL_ERROR, e.to_string()),
                }
            }
            MethodCall::ConfigGet => Response::result(id, &convert::config(shared)),
            MethodCall::ConfigSet(p) => config_set(shared, &conn.peer, id, &p),
            MethodCall::Subscribe(p) => {
                let interval_ms = p.interval_ms.unwrap_or(proto::methods::DEFAULT_INTERVAL_MS);
                let mut topics = Vec::new();
                for t in p.topics {
                    if !topics.contains(&t) {
                        topics.push(t);
                    }
                }
                conn.sub = Some(Subscription {
                    topics: topics.clone(),
                    interval_ns: interval_ms * 1_000_000,
                    next_due_ns: now_ns(),
                });
                tracing::debug!(peer_pid = conn.peer.pid, ?topics, interval_ms, "subscribed");
                Response::result(
                    id,
                    &SubscribeResult {
                        as_of_ms: wall_ms(now_ns()),
                        topics,
                        interval_ms,
                    },
                )
            }
            MethodCall::Unsubscribe(p) => {
                let Some(sub) = conn.sub.as_mut() else {
                    return Some(error_response(
                        Some(id),
                        ErrorCode::NOT_SUBSCRIBED,
                        "not subscribed: this connection has no subscription",
                    ));
                };
                match p.topics {
                    None => sub.topics.clear(),
                    Some(drop) => sub.topics.retain(|t| !drop.contains(t)),
                }
                let topics = sub.topics.clone();
                if topics.is_empty() {
                    conn.sub = None;
                }
                Response::result(
                    id,
                    &UnsubscribeResult {
                        as_of_ms: wall_ms(now_ns()),
                        topics,
                    },
                )
            }
        })
    }
}

fn config_set(
    shared: &Shared,
    peer: &PeerCred,
    id: proto::Id,
    p: &proto::methods::ConfigSetParams,
) -> Response {
    tracing::info!(
        peer_pid = peer.pid,
        peer_uid = peer.uid,
        threadpool_size = ?p.threadpool_size,
        stall_threshold_ms = ?p.stall_threshold_ms,
        stall_sample_interval_ms = ?p.stall_sample_interval_ms,
        log_filter = ?p.log_filter,
        "config.set"
    );
    if p.threadpool_size.is_some() && !shared.pool.resizable() {
        return error_response(
            Some(id),
            ErrorCode::INVALID_CONFIG,
            "threadpool_size cannot be changed: this loop's thread pool is not run by loopd",
        );
    }
    if let Err(e) = shared.config.set(p) {
        return error_response(
            Some(id),
            ErrorCode::INVALID_CONFIG,
            format!("invalid config value: {e}"),
        );
    }
    if let Some(n) = p.threadpool_size {
        if let Err(e) = shared.pool.set_size(n as usize) {
            tracing::warn!(error = %e, "config.set threadpool_size failed after the check");
        }
    }
    if let Some(ms) = p.stall_threshold_ms {
        shared
            .stall_threshold_ns
            .store(ms.saturating_mul(1_000_000).max(1), Ordering::Relaxed);
    }
    if let Some(ms) = p.stall_sample_interval_ms {
        shared.stall_sample_interval_ns.store(
            ms.clamp(1, 1_000).saturating_mul(1_000_000),
            Ordering::Relaxed,
        );
    }
    Response::result(id, &convert::config(shared))
}

/// Best effort: tells a refused peer why, then drops the connection.
fn refuse(stream: &mut UnixStream, code: ErrorCode, message: String) {
    use std::io::Write;
    if let Ok(line) = encode(&error_response(None, code, message)) {
        let _ = stream.write(&line);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
