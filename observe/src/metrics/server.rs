//! The metrics endpoint's HTTP server: our own engine's [`Loop`] on a thread of its own,
//! speaking HTTP/1.1 with the request-head parser of the `http` service ([`http1`](crate::http1)).
//!
//! It is built so that no client can take it (or loopd) down or hold up another client:
//!
//! - **Nothing is allocated on a client's say-so.** A request head is at most
//!   [`MAX_HEAD`](crate::http1::MAX_HEAD) bytes (else 431); a request that announces a body is answered 413 and its
//!   connection closed — the body is never read, whatever `Content-Length` claims. A
//!   connection holds at most one head plus one read of input, and one response of output:
//!   reading stops while a response is being written, so pipelined requests wait in the
//!   kernel, not in loopd.
//! - **Nothing blocks.** Every socket is non-blocking on one loop; a client that does not read
//!   its response only keeps its own write queued, until [`Limits::write_timeout`] closes it.
//! - **Every connection has a deadline**: a head must be complete within
//!   [`Limits::head_timeout`] of its first byte (slowloris), a keep-alive connection may sit
//!   idle for [`Limits::idle_timeout`], a response must drain within
//!   [`Limits::write_timeout`].
//! - **A bounded number of connections.** At [`Limits::max_connections`] a new connection
//!   still gets in: the connection that has waited longest without progress is closed to make
//!   room (idle ones first, then those still sending a head, then those not reading their
//!   response).
//! - **Panics are contained.** The handler runs under `catch_unwind` (a panic answers 500);
//!   every callback of the server is guarded the same way, so the listener survives.
//! - **Accept failures** (out of file descriptors) are retried by the engine every 10 ms.
//! - **Shutdown is bounded**: an async handle closes every connection at once.
//!
//! What it sheds is counted by reason ([`Shed`]) and served as
//! `loopd_metrics_rejected_total{reason}`.
//!
//! ```text
//! accept ─► idle ─first byte─► reading head ─complete─► writing ─done─┬─ keep-alive ─► idle
//!             │                     │    └─ 400/405/413/431 ─► closing (FIN, drain, close)
//!             └─ idle timeout       └─ head timeout                   └─ close ──────► closing
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::super::http1::{parse_request, response_head, Method, Request, Status};
use super::super::ObserveError;
use loopd_engine::{
    Async, AsyncSender, Handle, Loop, LoopOptions, ReadEvent, RunMode, Tcp, ThreadPool, Timer,
};

/// The limits every connection lives under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; one more closes the one waiting longest without progress.
    pub max_connections: usize,
    /// From the first byte of a request head to its end.
    pub head_timeout: Duration,
    /// A keep-alive connection waiting for its next request.
    pub idle_timeout: Duration,
    /// From the start of a response to its last byte taken by the kernel.
    pub write_timeout: Duration,
    /// After an error response: how long what the peer still sends is drained before closing,
    /// so that it sees the response rather than a reset.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// What the server sheds, by reason (`loopd_metrics_rejected_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// A malformed request head (400).
    Malformed,
    /// A method other than GET or HEAD (405).
    Method,
    /// A request announcing a body (413, closed unread).
    Body,
    /// A request head over [`MAX_HEAD`](crate::http1::MAX_HEAD) (431).
    HeadTooLarge,
    /// A head not complete within [`Limits::head_timeout`] (closed).
    HeadTimeout,
    /// A response not drained within [`Limits::write_timeout`] (closed).
    WriteTimeout,
    /// Closed to make room for a new connection at [`Limits::max_connections`].
    Evicted,
    /// `accept` failed (e.g. out of file descriptors; retried).
    AcceptFailed,
    /// The server's own code panicked (500 when answering, else the connection closed).
    Panic,
}

impl Shed {
    /// Every reason, in the order of the metric's label values.
    pub const ALL: [Shed; 9] = [
        Shed::Malformed,
        Shed::Method,
        Shed::Body,
        Shed::HeadTooLarge,
        Shed::HeadTimeout,
        Shed::WriteTimeout,
        Shed::Evicted,
        Shed::AcceptFailed,
        Shed::Panic,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Malformed => "malformed",
            Shed::Method => "method",
            Shed::Body => "body",
            Shed::HeadTooLarge => "head_too_large",
            Shed::HeadTimeout => "head_timeout",
            Shed::WriteTimeout => "write_timeout",
            Shed::Evicted => "evicted",
            Shed::AcceptFailed => "accept_failed",
            Shed::Panic => "panic",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of what was shed, readable from any thread.
#[derive(Debug, Default)]
pub struct ShedCounters([AtomicU64; Shed::ALL.len()]);

impl ShedCounters {
    fn add(&self, reason: Shed) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many were shed for `reason`.
    pub fn get(&self, reason: Shed) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }
}

/// A response of the handler.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status.
    pub status: Status,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body (not sent for HEAD; its length is).
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: Status, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// Answers a parsed GET or HEAD request; runs on the server's thread.
pub type Handler = Box<dyn Fn(&Request) -> Response + Send>;

/// The running server. Dropping it shuts it down (as [`HttpServer::shutdown`]).
pub struct HttpServer {
    stop: Option<AsyncSender>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Binds `addr` and serves `handler` on a new thread named `name`.
    ///
    /// # Errors
    /// The bind or listen failure, or a thread (or its poller) that cannot be created.
    pub fn start(
        name: &'static str,
        addr: SocketAddr,
        limits: Limits,
        handler: Handler,
        shed: Arc<ShedCounters>,
    ) -> Result<HttpServer, ObserveError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                serve(addr, limits, handler, shed, &ready_tx);
            })
            .map_err(|source| ObserveError::Thread { name, source })?;
        match ready_rx.recv() {
            Ok(Ok((bound, stop))) => Ok(HttpServer {
                stop: Some(stop),
                thread: Some(thread),
                addr: bound,
            }),
            Ok(Err(reason)) => {
                let _ = thread.join();
                Err(ObserveError::MetricsBind { addr, reason })
            }
            Err(_) => {
                let _ = thread.join();
                Err(ObserveError::MetricsBind {
                    addr,
                    reason: "the server thread ended before listening".into(),
                })
            }
        }
    }

    /// The address listened on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection at once, and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

type Ready = mpsc::SyncSender<Result<(SocketAddr, AsyncSender), String>>;

/// The server thread: set up, report readiness, run until stopped.
fn serve(
    addr: SocketAddr,
    limits: Limits,
    handler: Handler,
    shed: Arc<ShedCounters>,
    ready: &Ready,
) {
    let mut lp = match Loop::with_options(LoopOptions {
        // Not one of the observed loops: no stats, no snapshots, no index taken.
        instrument: false,
        index: Some(usize::MAX),
        // The endpoint submits no work: a pool of its own, whose worker never starts (workers
        // start with the first job), keeps it off the global pool.
        pool: Some(Arc::new(ThreadPool::new(1))),
        ..LoopOptions::default()
    }) {
        Ok(lp) => lp,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create its poller: {e}")));
            return;
        }
    };
    let server = Rc::new(RefCell::new(Server {
        limits,
        handler,
        shed,
        conns: Vec::new(),
    }));
    let listener = Tcp::new(&mut lp);
    let listening = listener.bind(&mut lp, addr).and_then(|()| {
        let s = server.clone();
        listener.listen(&mut lp, 128, move |lp, listener, status| {
            let _ = guarded(&s, lp, |lp| on_connection(lp, &s, listener, status));
        })?;
        listener.local_addr(&lp)
    });
    let bound = match listening {
        Ok(bound) => bound,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    listener.set_label(&mut lp, format!("metrics listen {bound}"));
    let sweep = Timer::new(&mut lp);
    let s = server.clone();
    let every = SWEEP_INTERVAL;
    if let Err(e) = sweep.start(&mut lp, every, every, move |lp, _| {
        let _ = guarded(&s, lp, |lp| sweep_deadlines(lp, &s));
    }) {
        let _ = ready.send(Err(format!("cannot start its timer: {e}")));
        return;
    }
    let s = server.clone();
    let stop = Async::new(&mut lp, move |lp, stop| {
        // Everything closes now; the loop then has nothing alive and `run` returns.
        listener.close(lp);
        sweep.close(lp);
        stop.close(lp);
        let conns: Vec<ConnRef> = s.borrow_mut().conns.drain(..).collect();
        for c in conns {
            close_now(lp, &c);
        }
    });
    let Some(sender) = stop.sender(&lp) else {
        let _ = ready.send(Err("cannot create its stop handle".into()));
        return;
    };
    if ready.send(Ok((bound, sender))).is_err() {
        return;
    }
    tracing::debug!(addr = %bound, "http server listening");
    lp.run(RunMode::Default);
    tracing::debug!("http server stopped");
}

/// How often deadlines are checked (timeouts are this much late at most).
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Server state, on its thread only.
struct Server {
    limits: Limits,
    handler: Handler,
    shed: Arc<ShedCounters>,
    /// Open connections, oldest first.
    conns: Vec<ConnRef>,
}

type ServerRef = Rc<RefCell<Server>>;

/// Where a connection is; each state has its deadline, and an order for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    /// Waiting for the first byte of a request (keep-alive or just accepted).
    Idle,
    /// Shut down after a response that ends it: draining the peer's input until it closes.
    Closing,
    /// Part of a request head arrived.
    ReadingHead,
    /// A response is being written; reading is stopped.
    Writing,
}

struct Conn {
    tcp: Tcp,
    input: Vec<u8>,
    state: State,
    /// Loop time the state began (nanoseconds since the loop's start, as [`Loop::now`]).
    since: Duration,
    /// The peer closed its write side.
    read_eof: bool,
    closed: bool,
}

type ConnRef = Rc<RefCell<Conn>>;

/// Runs a server callback; a panic in it is counted and logged, and the server goes on.
/// Returns whether `f` finished without panicking.
fn guarded(server: &ServerRef, lp: &mut Loop, f: impl FnOnce(&mut Loop)) -> bool {
    if catch_unwind(AssertUnwindSafe(|| f(lp))).is_ok() {
        return true;
    }
    tracing::error!("metrics endpoint: a callback panicked; the endpoint goes on");
    // Borrows taken inside `f` were released while unwinding.
    if let Ok(s) = server.try_borrow() {
        s.shed.add(Shed::Panic);
    }
    false
}

fn on_connection(lp: &mut Loop, server: &ServerRef, listener: Tcp, status: std::io::Result<()>) {
    if let Err(e) = status {
        server.borrow().shed.add(Shed::AcceptFailed);
        tracing::debug!(error = %e, "metrics endpoint: accept failed (retried)");
        return;
    }
    let Ok(tcp) = listener.accept(lp) else {
        return;
    };
    let _ = tcp.set_nodelay(lp, true);
    if let Ok(peer) = tcp.peer_addr(lp) {
        tcp.set_label(lp, format!("metrics peer {peer}"));
    }
    let victim = {
        let s = server.borrow();
        if s.conns.len() >= s.limits.max_connections {
            s.conns
                .iter()
                .min_by_key(|c| {
                    let c = c.borrow();
                    (c.state, c.since)
                })
                .cloned()
        } else {
            None
        }
    };
    if let Some(victim) = victim {
        server.borrow().shed.add(Shed::Evicted);
        tracing::debug!("metrics endpoint: connection limit reached, closing the oldest waiting");
        close_conn(lp, server, &victim);
    }
    let conn = Rc::new(RefCell::new(Conn {
        tcp,
        input: Vec::new(),
        state: State::Idle,
        since: lp.now(),
        read_eof: false,
        closed: false,
    }));
    server.borrow_mut().conns.push(conn.clone());
    start_reading(lp, server, &conn);
}

fn start_reading(lp: &mut Loop, server: &ServerRef, conn: &ConnRef) {
    let tcp = conn.borrow().tcp;
    if tcp.is_reading(lp) {
        return;
    }
    let (s, c) = (server.clone(), conn.clone());
    let reading = tcp.read_start(lp, move |lp, _, ev| {
        if !guarded(&s, lp, |lp| on_read(lp, &s, &c, ev)) {
            // The connection may be in any state after a panic: end it.
            close_conn(lp, &s, &c);
        }
    });
    if reading.is_err() {
        close_conn(lp, server, conn);
    }
}

fn on_read(lp: &mut Loop, server: &ServerRef, conn: &ConnRef, ev: ReadEvent<'_>) {
    {
        let mut c = conn.borrow_mut();
        if c.closed {
            return;
        }
        if c.state == State::Closing {
            // Drained, never kept; the peer's EOF (or an error) ends it.
            if matches!(ev, ReadEvent::Data(_)) {
                return;
            }
            drop(c);
            return close_conn(lp, server, conn);
        }
        match ev {
            ReadEvent::Data(bytes) => {
                if c.state == State::Idle {
                    c.state = State::ReadingHead;
                    c.since = lp.now();
                }
                c.input.extend_from_slice(bytes);
                if c.state == State::Writing {
                    // Only within one read burst: the response's end parses it.
                    let tcp = c.tcp;
                    drop(c);
                    tcp.read_stop(lp);
                    return;
                }
            }
            ReadEvent::Eof => c.read_eof = true,
            ReadEvent::Error(e) => {
                tracing::debug!(error = %e, "metrics endpoint: read failed");
                drop(c);
                return close_conn(lp, server, conn);
            }
        }
    }
    next_request(lp, server, conn);
}

/// Answers the next request in the input, waits for more, or ends the connection.
fn next_request(lp: &mut Loop, server: &ServerRef, conn: &ConnRef) {
    let mut c = conn.borrow_mut();
    if c.closed || matches!(c.state, State::Writing | State::Closing) {
        return;
    }
    match parse_request(&c.input) {
        Ok(Some((request, used))) => {
            c.input.drain(..used);
            drop(c);
            answer(lp, server, conn, &request);
        }
        Ok(None) if c.read_eof => {
            // Nothing more will come; a partial head goes with the connection.
            drop(c);
            close_conn(lp, server, conn);
        }
        Ok(None) => {
            if c.input.is_empty() && c.state == State::ReadingHead {
                c.state = State::Idle;
                c.since = lp.now();
            }
            drop(c);
            start_reading(lp, server, conn);
        }
        Err(e) => {
            c.input = Vec::new();
            drop(c);
            let status = Status::for_parse_error(e);
            let reason = match status {
                Status::HeaderFieldsTooLarge => Shed::HeadTooLarge,
                _ => Shed::Malformed,
            };
            server.borrow().shed.add(reason);
            tracing::debug!(error = ?e, status = status.code(), "metrics endpoint: bad request");
            respond(
                lp,
                server,
                conn,
                &Response::text(status, format!("{} {}\n", status.code(), status.reason())),
                false,
                false,
            );
        }
    }
}

/// Answers one parsed request: refused ones here, GET/HEAD by the handler.
fn answer(lp: &mut Loop, server: &ServerRef, conn: &ConnRef, request: &Request) {
    let head_only = request.method == Method::Head;
    let refused = match &request.method {
        Method::Other(_) => Some((Shed::Method, Status::MethodNotAllowed)),
        // A body is never read: answer, then close rather than parse it as requests.
        _ if request.has_body => Some((Shed::Body, Status::PayloadTooLarge)),
        _ => None,
    };
    if let Some((reason, status)) = refused {
        server.borrow().shed.add(reason);
        let body = format!("{} {}\n", status.code(), status.reason());
        let keep_alive = reason == Shed::Method && request.keep_alive;
        return respond(
            lp,
            server,
            conn,
            &Response::text(status, body),
            head_only,
            keep_alive,
        );
    }
    let response = {
        let s = server.borrow();
        match catch_unwind(AssertUnwindSafe(|| (s.handler)(request))) {
            Ok(r) => r,
            Err(_) => {
                s.shed.add(Shed::Panic);
                tracing::error!(target = %request.target, "metrics endpoint: the handler panicked");
                Response::text(Status::InternalError, "500 internal error\n")
            }
        }
    };
    respond(lp, server, conn, &response, head_only, request.keep_alive);
}

/// Writes a whole response (reading stopped until it is out), then goes on.
fn respond(
    lp: &mut Loop,
    server: &ServerRef,
    conn: &ConnRef,
    response: &Response,
    head_only: bool,
    keep_alive: bool,
) {
    let status = response.status;
    let mut data = response_head(
        status,
        response.content_type,
        response.body.len() as u64,
        keep_alive,
        status.extra_headers(),
    );
    if !head_only {
        data.extend_from_slice(&response.body);
    }
    let tcp = {
        let mut c = conn.borrow_mut();
        c.state = State::Writing;
        c.since = lp.now();
        c.tcp
    };
    tcp.read_stop(lp);
    let (s, c) = (server.clone(), conn.clone());
    let written = tcp.write(
        lp,
        data,
        Some(Box::new(move |lp, result| {
            let ok = guarded(&s, lp, |lp| match result {
                Ok(()) => response_written(lp, &s, &c, keep_alive),
                Err(_) => close_conn(lp, &s, &c),
            });
            if !ok {
                close_conn(lp, &s, &c);
            }
        })),
    );
    if written.is_err() {
        close_conn(lp, server, conn);
    }
}

/// The response is out: the next request (pipelined ones first, even after the peer's
/// EOF), or the end of the connection.
fn response_written(lp: &mut Loop, server: &ServerRef, conn: &ConnRef, keep_alive: bool) {
    {
        let mut c = conn.borrow_mut();
        if c.closed {
            return;
        }
        c.state = if c.input.is_empty() {
            State::Idle
        } else {
            State::ReadingHead
        };
        c.since = lp.now();
    }
    if keep_alive {
        next_request(lp, server, conn);
    } else {
        shut_down(lp, server, conn);
    }
}

/// Ends a connection gracefully: FIN after the response, then drain the peer's input (so it
/// sees the response rather than a reset) until its EOF or [`Limits::linger`].
fn shut_down(lp: &mut Loop, server: &ServerRef, conn: &ConnRef) {
    let (tcp, read_eof) = {
        let mut c = conn.borrow_mut();
        c.state = State::Closing;
        c.since = lp.now();
        c.input = Vec::new();
        (c.tcp, c.read_eof)
    };
    if read_eof {
        return close_conn(lp, server, conn);
    }
    let (s, c) = (server.clone(), conn.clone());
    let shut = tcp.shutdown(lp, move |lp, result| {
        if result.is_err() {
            close_conn(lp, &s, &c);
        }
    });
    if shut.is_err() {
        return close_conn(lp, server, conn);
    }
    start_reading(lp, server, conn);
}

/// Closes connections past their state's deadline.
fn sweep_deadlines(lp: &mut Loop, server: &ServerRef) {
    let now = lp.now();
    let expired: Vec<(ConnRef, Option<Shed>)> = {
        let s = server.borrow();
        let l = &s.limits;
        s.conns
            .iter()
            .filter_map(|c| {
                let b = c.borrow();
                let waited = now.saturating_sub(b.since);
                let (limit, reason) = match b.state {
                    State::Idle => (l.idle_timeout, None),
                    State::Closing => (l.linger, None),
                    State::ReadingHead => (l.head_timeout, Some(Shed::HeadTimeout)),
                    State::Writing => (l.write_timeout, Some(Shed::WriteTimeout)),
                };
                (waited >= limit).then(|| (c.clone(), reason))
            })
            .collect()
    };
    for (conn, reason) in expired {
        if let Some(reason) = reason {
            server.borrow().shed.add(reason);
            tracing::debug!(
                reason = reason.as_str(),
                "metrics endpoint: connection timed out"
            );
        }
        close_conn(lp, server, &conn);
    }
}

/// Closes a connection now and forgets it (idempotent).
fn close_conn(lp: &mut Loop, server: &ServerRef, conn: &ConnRef) {
    if close_now(lp, conn) {
        server.borrow_mut().conns.retain(|c| !Rc::ptr_eq(c, conn));
    }
}

/// Closes the connection's handle; `false` if it was already closed.
fn close_now(lp: &mut Loop, conn: &ConnRef) -> bool {
    let tcp = {
        let mut c = conn.borrow_mut();
        if c.closed {
            return false;
        }
        c.closed = true;
        c.input = Vec::new();
        c.tcp
    };
    tcp.close(lp);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn start(limits: Limits) -> (HttpServer, Arc<ShedCounters>) {
        let shed = Arc::new(ShedCounters::default());
        let handler: Handler = Box::new(|req| match req.path.as_str() {
            "/boom" => panic!("a bug in the handler"),
            "/big" => Response {
                status: Status::Ok,
                content_type: "application/octet-stream",
                body: vec![b'x'; 32 << 20],
            },
            path => Response::text(Status::Ok, format!("path {path}\n")),
        });
        let server = HttpServer::start(
            "test-http",
            "127.0.0.1:0".parse().expect("addr"),
            limits,
            handler,
            shed.clone(),
        )
        .expect("server starts");
        (server, shed)
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(request).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let (server, shed) = start(Limits::default());
        let addr = server.local_addr();
        let r = exchange(addr, b"GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
        assert_eq!(shed.get(Shed::Panic), 1);
        let r = exchange(addr, b"GET /fine HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("path /fine\n"), "{r}");
        server.shutdown();
    }

    #[test]
    fn keep_alive_and_pipelining_answer_in_order() {
        let (server, _) = start(Limits::default());
        let r = exchange(
            server.local_addr(),
            b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let a = r.find("path /a").expect("a");
        let c = r.find("path /c").expect("c");
        assert!(a < c && !r.contains("path /b"), "{r}");
        assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 3, "{r}");
    }

    #[test]
    fn the_connection_limit_evicts_the_oldest_waiting() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (server, shed) = start(limits);
        let addr = server.local_addr();
        let mut held: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(b"GET /").expect("partial head");
                s
            })
            .collect();
        let r = exchange(addr, b"GET /new HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.ends_with("path /new\n"), "{r}");
        assert!(shed.get(Shed::Evicted) >= 1);
        // The first held connection was the oldest: it was closed.
        held[0]
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(held[0].read(&mut buf).unwrap_or(0), 0);
    }

    /// Waits until the server closes `s` (EOF or reset), discarding what it sends.
    fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        s.set_read_timeout(Some(within)).expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn every_state_has_a_deadline() {
        let short = Duration::from_millis(300);
        let limits = Limits {
            head_timeout: short,
            idle_timeout: short,
            write_timeout: short,
            ..Limits::default()
        };
        let (server, shed) = start(limits);
        let addr = server.local_addr();
        let within = Duration::from_secs(10);

        let mut idle = TcpStream::connect(addr).expect("connect");
        assert!(closed_within(&mut idle, within), "idle connection kept");

        let mut slow = TcpStream::connect(addr).expect("connect");
        slow.write_all(b"GET /slow HTTP/1.1\r\nX-A: 1")
            .expect("write");
        assert!(closed_within(&mut slow, within), "slow head kept");
        assert_eq!(shed.get(Shed::HeadTimeout), 1);

        // 32 MiB that is never read: the kernel's buffers fill, the write times out.
        let mut stuck = TcpStream::connect(addr).expect("connect");
        stuck
            .write_all(b"GET /big HTTP/1.1\r\n\r\n")
            .expect("write");
        let deadline = std::time::Instant::now() + within;
        while shed.get(Shed::WriteTimeout) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "write never timed out"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Idle and closed connections are not shed load.
        assert_eq!(shed.get(Shed::Evicted), 0);
        server.shutdown();
    }
}
