//! The `http` service (DESIGN §6): static files under a root, served on the loop.
//!
//! Every file-system step runs on the thread pool as an fs request — `realpath`, `open`,
//! 64 KiB `read`s, `close` — so the loop thread never blocks on a disk. One response
//! is in flight per connection: reading from the socket stops while it streams (pipelined
//! requests wait in the kernel and in the input buffer, answered in order), and the next file
//! chunk is read only once the previous write completed, so a connection holds at most one
//! chunk however slow its peer.
//!
//! The request path is percent-decoded, then any `..` segment is refused (403), and the
//! resolved real path must stay under the canonical root (a symlink pointing outside is
//! refused too). Directories are not listed (403); only regular files are served. The checks
//! hold for the file actually opened, not just for the path before it (`open_checked`); the
//! check of the open file is the one step on the loop thread, and touches no disk.
//!
//! ```text
//! read → parse ─┬─ error ─────────────────────────────→ 400/431, close
//!               └─ request → realpath → open → check the open file (fstat, /proc/self/fd)
//!                                                  → read ⇄ write → close file → next request
//! ```

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use crate::observe::http1::{
    parse_request, relative_path, Method, ParseError, Request, MAX_HEAD,
};

use crate::engine::{EngineError, FsFile, Handle, Loop, ReadEvent, Tcp, Timer};
use crate::observe::http1::{response_head, Status};
use crate::observe::ServiceCounters;

/// Size of one file read (and so of the largest write in flight per connection).
pub const CHUNK: usize = 64 * 1024;

/// After a response that ends the connection, unread input is drained for at most this long
/// before closing, so the peer sees the response rather than a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Options of [`start`].
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The directory served. Resolved to its canonical path on the thread pool.
    pub root: PathBuf,
    /// Where connections and bytes are counted.
    pub counters: Arc<ServiceCounters>,
}

/// State shared by the listener and its connections.
struct Server {
    root: PathBuf,
    /// The canonical root, once resolved (the first request resolves it).
    canonical_root: Option<PathBuf>,
    counters: Arc<ServiceCounters>,
}

type ServerRef = Rc<RefCell<Server>>;

/// One client connection.
struct Conn {
    tcp: Tcp,
    peer: SocketAddr,
    server: ServerRef,
    counters: Arc<ServiceCounters>,
    /// Received bytes not parsed yet.
    input: Vec<u8>,
    /// A response is in flight: reading is stopped and input waits.
    busy: bool,
    /// The peer closed its write side.
    read_eof: bool,
    /// Closed (or closing): every pending continuation stops and releases what it holds.
    closed: bool,
    /// The linger timer of a connection being shut down.
    linger: Option<Timer>,
}

type ConnRef = Rc<RefCell<Conn>>;

/// Binds and starts serving; returns the listener handle (close it to stop accepting).
///
/// The listener is labelled `http listen <addr>`, each connection `http peer <addr>`.
///
/// # Errors
/// The bind or listen failure (address in use, permission denied, …).
///
/// # Examples
/// ```no_run
/// use std::sync::Arc;
/// use loopd::engine::{Loop, RunMode};
/// use loopd::observe::ServiceCounters;
/// use loopd::services::http::{start, HttpOptions};
///
/// let mut lp = Loop::new()?;
/// let counters = Arc::new(ServiceCounters::default());
/// let options = HttpOptions { root: ".".into(), counters };
/// let _listener = start(&mut lp, "127.0.0.1:7080".parse()?, options)?;
/// lp.run(RunMode::Default);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(lp: &mut Loop, bind: SocketAddr, options: HttpOptions) -> Result<Tcp, EngineError> {
    let listener = Tcp::new(lp);
    match listener
        .bind(lp, bind)
        .and_then(|()| serve(lp, listener, options))
        .and_then(|()| listener.local_addr(lp))
    {
        Ok(addr) => {
            listener.set_label(lp, format!("http listen {addr}"));
            Ok(listener)
        }
        Err(e) => {
            listener.close(lp);
            Err(e)
        }
    }
}

/// The `http` kind: `root = "DIR"` (default: the current directory).
#[derive(Debug)]
pub struct Http {
    /// The directory served.
    pub root: PathBuf,
}

impl crate::service::Service for Http {
    fn start(
        &self,
        ctx: crate::service::ServiceContext<'_>,
    ) -> Result<(), crate::service::ServiceError> {
        let options = HttpOptions {
            root: self.root.clone(),
            counters: ctx.counters.clone(),
        };
        let listener = ctx.require_listener()?;
        Ok(serve(ctx.lp, listener, options)?)
    }
}

/// Serves static files on an already bound listener (several loops can share a port with
/// `SO_REUSEPORT`, each serving its own listener).
///
/// # Errors
/// Listen failures.
pub fn serve(lp: &mut Loop, listener: Tcp, options: HttpOptions) -> Result<(), EngineError> {
    let server: ServerRef = Rc::new(RefCell::new(Server {
        root: options.root,
        canonical_root: None,
        counters: options.counters,
    }));
    let s = server.clone();
    listener.listen(lp, 1024, move |lp, listener, status| {
        on_connection(lp, listener, status, &s)
    })?;
    // Resolve the root now, so the first request usually finds it ready.
    with_canonical_root(lp, &server, |_, _| {});
    Ok(())
}

fn on_connection(lp: &mut Loop, listener: Tcp, status: io::Result<()>, server: &ServerRef) {
    if let Err(e) = status {
        crate::services::warn_accept_failed("http", &e);
        return;
    }
    let Ok(tcp) = listener.accept(lp) else {
        return;
    };
    // Every accepted connection counts, as in `seq` and `prime`, even one reset before it
    // could be served.
    let counters = server.borrow().counters.clone();
    counters.connection_opened();
    let Ok(peer) = tcp.peer_addr(lp) else {
        // Reset before we got to it.
        counters.connection_closed();
        tcp.close(lp);
        return;
    };
    tcp.set_label(lp, format!("http peer {peer}"));
    // Heads and small bodies go out as soon as they are written.
    let _ = tcp.set_nodelay(lp, true);
    tracing::debug!(%peer, handle_id = %tcp.id(), "http: connection opened");
    let conn = Rc::new(RefCell::new(Conn {
        tcp,
        peer,
        server: server.clone(),
        counters,
        input: Vec::new(),
        busy: false,
        read_eof: false,
        closed: false,
        linger: None,
    }));
    start_reading(lp, &conn);
}

fn start_reading(lp: &mut Loop, conn: &ConnRef) {
    let tcp = conn.borrow().tcp;
    if tcp.is_reading(lp) {
        return;
    }
    let c = conn.clone();
    if tcp
        .read_start(lp, move |lp, _, ev| on_read(lp, &c, ev))
        .is_err()
    {
        close_conn(lp, conn);
    }
}

fn on_read(lp: &mut Loop, conn: &ConnRef, ev: ReadEvent<'_>) {
    {
        let mut c = conn.borrow_mut();
        match ev {
            ReadEvent::Data(bytes) => {
                c.counters.add_bytes_received(bytes.len() as u64);
                c.input.extend_from_slice(bytes);
            }
            ReadEvent::Eof => c.read_eof = true,
            ReadEvent::Error(e) => {
                tracing::debug!(peer = %c.peer, error = %e, "http: read failed");
                drop(c);
                close_conn(lp, conn);
                return;
            }
        }
        if c.busy {
            // Only possible within one read burst; the response's end resumes parsing.
            let tcp = c.tcp;
            drop(c);
            tcp.read_stop(lp);
            return;
        }
    }
    next_request(lp, conn);
}

/// Parses the next request from the input: answers it, waits for more bytes, or ends the
/// connection.
fn next_request(lp: &mut Loop, conn: &ConnRef) {
    let mut c = conn.borrow_mut();
    if c.closed || c.busy {
        return;
    }
    let tcp = c.tcp;
    match parse_request(&c.input) {
        Ok(Some((request, used))) => {
            c.input.drain(..used);
            c.busy = true;
            drop(c);
            tcp.read_stop(lp);
            handle_request(lp, conn, request);
        }
        Ok(None) if c.read_eof => {
            // Nothing more will come: a partial request is dropped with the connection.
            drop(c);
            close_conn(lp, conn);
        }
        Ok(None) => {
            drop(c);
            start_reading(lp, conn);
        }
        Err(e) => {
            c.busy = true;
            c.input.clear();
            let peer = c.peer;
            drop(c);
            tcp.read_stop(lp);
            let status = Status::for_parse_error(e);
            tracing::debug!(%peer, error = ?e, status = status.code(), "http: bad request");
            respond_simple(lp, conn, status, false, false);
        }
    }
}

fn handle_request(lp: &mut Loop, conn: &ConnRef, request: Request) {
    let peer = conn.borrow().peer;
    tracing::debug!(%peer, method = ?request.method, target = %request.target, "http: request");
    let head_only = request.method == Method::Head;
    let keep_alive = request.keep_alive && !request.has_body;
    if let Method::Other(_) = request.method {
        return respond_simple(lp, conn, Status::MethodNotAllowed, false, keep_alive);
    }
    if request.has_body {
        // A body we will not read: answer, then close rather than parse it as requests.
        return respond_simple(lp, conn, Status::PayloadTooLarge, head_only, false);
    }
    let Some(relative) = relative_path(&request.path) else {
        return respond_simple(lp, conn, Status::Forbidden, head_only, keep_alive);
    };
    let mime = content_type(&relative);
    let server = conn.borrow().server.clone();
    let conn = conn.clone();
    with_canonical_root(lp, &server, move |lp, root| {
        if conn.borrow().closed {
            return;
        }
        let root = match root {
            Ok(root) => root,
            Err(e) => {
                tracing::warn!(error = %e, "http: the root directory cannot be resolved");
                return respond_simple(lp, &conn, Status::InternalError, head_only, keep_alive);
            }
        };
        let wanted = root.join(&relative);
        lp.fs_realpath(wanted, move |lp, real| {
            if conn.borrow().closed {
                return;
            }
            let real = match real {
                Ok(real) if real.starts_with(&root) => real,
                Ok(_) => {
                    // A symlink leading out of the root.
                    return respond_simple(lp, &conn, Status::Forbidden, head_only, keep_alive);
                }
                Err(e) => {
                    return respond_simple(lp, &conn, status_for_io(&e), head_only, keep_alive)
                }
            };
            open_checked(lp, conn, real, root, mime, head_only, keep_alive);
        });
    });
}

/// Opens `real` (a path found under `root`) and serves it, checking the open file itself, so
/// that what is served is what was checked whatever the tree does meanwhile: the open does
/// not follow a symlink swapped in for the file (`O_NOFOLLOW`, 403) nor wait on a FIFO
/// (`O_NONBLOCK`); then [`check_open_file`].
fn open_checked(
    lp: &mut Loop,
    conn: ConnRef,
    real: PathBuf,
    root: PathBuf,
    mime: &'static str,
    head_only: bool,
    keep_alive: bool,
) {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    lp.fs_open_with(real, options, move |lp, file| {
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                let status = if e.raw_os_error() == Some(libc::ELOOP) {
                    Status::Forbidden
                } else {
                    status_for_io(&e)
                };
                return respond_simple(lp, &conn, status, head_only, keep_alive);
            }
        };
        if conn.borrow().closed {
            return close_file(lp, file);
        }
        let size = match check_open_file(&file, &root) {
            Ok(size) => size,
            Err(status) => {
                if status == Status::Forbidden {
                    tracing::debug!(peer = %conn.borrow().peer, "http: the file opened is not a regular file under the root");
                }
                close_file(lp, file);
                return respond_simple(lp, &conn, status, head_only, keep_alive);
            }
        };
        let head = response_head(Status::Ok, mime, size, keep_alive, &[]);
        if head_only || size == 0 {
            close_file(lp, file);
            return send_last(lp, &conn, head, keep_alive);
        }
        let body = Body {
            file,
            offset: 0,
            remaining: size,
            keep_alive,
        };
        read_chunk(lp, conn, body, Some(head));
    });
}

/// The open file's size if it is a regular file that lies under `root`: its type and size
/// from `fstat`, its location from `/proc/self/fd/N` (the path of the file actually opened,
/// so a directory swapped for a symlink between the check and the open is caught). Runs on
/// the loop: both read only the kernel's in-memory inode and dentry of an open file, no disk.
fn check_open_file(file: &std::fs::File, root: &Path) -> Result<u64, Status> {
    let meta = file.metadata().map_err(|e| status_for_io(&e))?;
    if !meta.is_file() {
        // Directories (no listing), devices, FIFOs.
        return Err(Status::Forbidden);
    }
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match std::fs::read_link(&fd_path) {
        Ok(actual) if actual.starts_with(root) => Ok(meta.len()),
        Ok(actual) => {
            tracing::warn!(opened = %actual.display(), "http: the file opened is outside the root (the tree changed under the check); refused");
            Err(Status::Forbidden)
        }
        Err(e) => {
            tracing::warn!(error = %e, "http: cannot read {fd_path} to check the file opened (is /proc mounted?)");
            Err(Status::InternalError)
        }
    }
}

/// Calls `f` with the canonical root, resolving it on the pool the first time.
fn with_canonical_root(
    lp: &mut Loop,
    server: &ServerRef,
    f: impl FnOnce(&mut Loop, io::Result<PathBuf>) + 'static,
) {
    let (root, cached) = {
        let s = server.borrow();
        (s.root.clone(), s.canonical_root.clone())
    };
    if let Some(canonical) = cached {
        return f(lp, Ok(canonical));
    }
    let server = server.clone();
    lp.fs_realpath(root, move |lp, result| {
        if let Ok(canonical) = &result {
            server.borrow_mut().canonical_root = Some(canonical.clone());
        }
        f(lp, result)
    });
}

/// A file being streamed: what is left of it, and the connection's fate after it.
struct Body {
    file: FsFile,
    offset: u64,
    remaining: u64,
    keep_alive: bool,
}

/// Reads the next chunk, then writes it (after `head`, on the first one); the write's
/// completion reads the next. Every exit path closes the file.
fn read_chunk(lp: &mut Loop, conn: ConnRef, body: Body, head: Option<Vec<u8>>) {
    if conn.borrow().closed {
        return close_file(lp, body.file);
    }
    let len = body.remaining.min(CHUNK as u64) as usize;
    let file = body.file.clone();
    lp.fs_read(&file, body.offset, len, move |lp, chunk| {
        if conn.borrow().closed {
            return close_file(lp, body.file);
        }
        let chunk = match chunk {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                // The file shrank under us: the promised length cannot be kept.
                tracing::debug!(peer = %conn.borrow().peer, "http: file truncated while served");
                close_file(lp, body.file);
                return close_conn(lp, &conn);
            }
            Err(e) => {
                tracing::warn!(peer = %conn.borrow().peer, error = %e, "http: file read failed");
                close_file(lp, body.file);
                return close_conn(lp, &conn);
            }
        };
        let n = (chunk.len() as u64).min(body.remaining);
        let data = match head {
            Some(mut head) => {
                head.extend_from_slice(&chunk[..n as usize]);
                head
            }
            None => {
                let mut chunk = chunk;
                chunk.truncate(n as usize);
                chunk
            }
        };
        let body = Body {
            offset: body.offset + n,
            remaining: body.remaining - n,
            ..body
        };
        let (tcp, counters) = {
            let c = conn.borrow();
            (c.tcp, c.counters.clone())
        };
        let sent = data.len() as u64;
        // The callback owns the body (and so the file) until the write is done or failed.
        let pending = Rc::new(RefCell::new(Some(body)));
        let p = pending.clone();
        let c = conn.clone();
        let written = tcp.write(
            lp,
            data,
            Some(Box::new(move |lp, result| {
                let Some(body) = p.borrow_mut().take() else {
                    return;
                };
                match result {
                    Ok(()) => {
                        counters.add_bytes_sent(sent);
                        if body.remaining == 0 {
                            let keep_alive = body.keep_alive;
                            close_file(lp, body.file);
                            finish_response(lp, &c, keep_alive);
                        } else {
                            read_chunk(lp, c, body, None);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer = %c.borrow().peer, error = %e, "http: peer gone mid-response");
                        close_file(lp, body.file);
                        close_conn(lp, &c);
                    }
                }
            })),
        );
        if written.is_err() {
            if let Some(body) = pending.borrow_mut().take() {
                close_file(lp, body.file);
            }
            close_conn(lp, &conn);
        }
    });
}

fn close_file(lp: &mut Loop, file: FsFile) {
    lp.fs_close(file, |_, result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "http: close failed");
        }
    });
}

/// A small text response (errors), `Connection: close` unless `keep_alive`.
fn respond_simple(
    lp: &mut Loop,
    conn: &ConnRef,
    status: Status,
    head_only: bool,
    keep_alive: bool,
) {
    let body = format!("{} {}\n", status.code(), status.reason());
    let mut data = response_head(
        status,
        "text/plain; charset=utf-8",
        body.len() as u64,
        keep_alive,
        status.extra_headers(),
    );
    if !head_only {
        data.extend_from_slice(body.as_bytes());
    }
    tracing::debug!(peer = %conn.borrow().peer, status = status.code(), "http: response");
    send_last(lp, conn, data, keep_alive);
}

/// Writes the last bytes of a response, then goes on with the connection.
fn send_last(lp: &mut Loop, conn: &ConnRef, data: Vec<u8>, keep_alive: bool) {
    let (tcp, counters) = {
        let c = conn.borrow();
        (c.tcp, c.counters.clone())
    };
    let sent = data.len() as u64;
    let c = conn.clone();
    let written = tcp.write(
        lp,
        data,
        Some(Box::new(move |lp, result| match result {
            Ok(()) => {
                counters.add_bytes_sent(sent);
                finish_response(lp, &c, keep_alive);
            }
            Err(_) => close_conn(lp, &c),
        })),
    );
    if written.is_err() {
        close_conn(lp, conn);
    }
}

/// The response is fully written: on to the next request, or end the connection.
fn finish_response(lp: &mut Loop, conn: &ConnRef, keep_alive: bool) {
    {
        let mut c = conn.borrow_mut();
        if c.closed {
            return;
        }
        c.busy = false;
    }
    if keep_alive {
        next_request(lp, conn);
    } else {
        shutdown_conn(lp, conn);
    }
}

/// Ends a connection gracefully: FIN after the queued writes, then drain what the peer still
/// sends (so it is not answered with a reset that could destroy the response) until its EOF
/// or [`LINGER`], then close.
fn shutdown_conn(lp: &mut Loop, conn: &ConnRef) {
    let (tcp, read_eof) = {
        let c = conn.borrow();
        (c.tcp, c.read_eof)
    };
    if read_eof {
        return close_conn(lp, conn);
    }
    let c = conn.clone();
    let shut = tcp.shutdown(lp, move |lp, result| {
        if result.is_err() || c.borrow().closed {
            return close_conn(lp, &c);
        }
        let timer = Timer::new(lp);
        c.borrow_mut().linger = Some(timer);
        let cc = c.clone();
        if timer
            .start(lp, LINGER, Duration::ZERO, move |lp, _| close_conn(lp, &cc))
            .is_err()
        {
            return close_conn(lp, &c);
        }
        let cc = c.clone();
        let reading = tcp.read_start(lp, move |lp, _, ev| match ev {
            ReadEvent::Data(bytes) => {
                cc.borrow().counters.add_bytes_received(bytes.len() as u64);
            }
            ReadEvent::Eof | ReadEvent::Error(_) => close_conn(lp, &cc),
        });
        if reading.is_err() {
            close_conn(lp, &c);
        }
    });
    if shut.is_err() {
        close_conn(lp, conn);
    }
}

/// Closes the connection now (idempotent). Continuations still in flight see `closed` and
/// release their file.
fn close_conn(lp: &mut Loop, conn: &ConnRef) {
    let (tcp, linger) = {
        let mut c = conn.borrow_mut();
        if c.closed {
            return;
        }
        c.closed = true;
        c.input = Vec::new();
        c.counters.connection_closed();
        tracing::debug!(peer = %c.peer, "http: connection closed");
        (c.tcp, c.linger.take())
    };
    if let Some(timer) = linger {
        timer.close(lp);
    }
    tcp.close(lp);
}

/// The answer to a failed realpath/stat/open.
fn status_for_io(e: &io::Error) -> Status {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Status::Forbidden,
        _ => Status::NotFound,
    }
}

/// `Content-Type` by file extension (case-insensitive).
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/b.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("x.jpeg")), "image/jpeg");
        assert_eq!(
            content_type(Path::new("Makefile")),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(Path::new("x.tar.gz")),
            "application/octet-stream"
        );
    }
}
