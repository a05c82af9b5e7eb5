//! TCP handles (libuv's `uv_tcp_t` with the `uv_stream_t` operations): listen/accept,
//! connect, read start/stop, queued writes with a visible queue size, shutdown, close.
//!
//! Sockets are registered once for both readiness kinds (mio is edge-triggered), so pausing
//! and resuming reads, or queueing writes, costs no `epoll_ctl`. Readiness seen while reads
//! are paused is remembered and served on `read_start`. A read burst is capped (as libuv's 32
//! reads) and resumed in the next poll phase, so one busy peer cannot starve the others.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::Location;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

use super::handle::{Handle, HandleData, HandleRef, IoCounters};
use super::io_request::{DoneCb, IoRequest, When};
use super::phase::Phase;
use super::target::{HandleType, RequestType};
use super::token;
use super::{EngineError, Loop};

/// Reads per readiness event before yielding to other handles.
const READS_PER_EVENT: usize = 32;

/// What a read callback receives.
#[derive(Debug)]
pub enum ReadEvent<'a> {
    /// Bytes that arrived (valid during the callback only).
    Data(&'a [u8]),
    /// The peer closed its side; reading has stopped.
    Eof,
    /// The read failed; reading has stopped.
    Error(io::Error),
}

pub(crate) type ConnectionCb = Box<dyn FnMut(&mut Loop, Tcp, io::Result<()>)>;
pub(crate) type ReadCb = Box<dyn FnMut(&mut Loop, Tcp, ReadEvent<'_>)>;

enum Sock {
    None,
    Bound(Socket),
    Listener(mio::net::TcpListener),
    Stream(mio::net::TcpStream),
}

/// A write waiting for the socket: `data[offset..]` is still to go.
struct QueuedWrite {
    io: IoRequest,
    data: Vec<u8>,
    offset: usize,
}

pub(crate) struct TcpData {
    sock: Sock,
    connection_cb: Option<ConnectionCb>,
    accepted: Option<(mio::net::TcpStream, SocketAddr)>,
    read_cb: Option<ReadCb>,
    /// `read_start` was called (the callback may be out while it runs).
    read_started: bool,
    reading: bool,
    /// Readable readiness arrived while not reading.
    readable_hint: bool,
    writes: VecDeque<QueuedWrite>,
    write_queue_size: usize,
    connect: Option<IoRequest>,
    shutdown: Option<IoRequest>,
    write_shut: bool,
    /// Requests to fail with `ECANCELED` in the close phase, before the close callback.
    pub(crate) cancelled: Vec<IoRequest>,
    /// The peer's address: from the accept, or once a connect succeeded (kept, so it is known
    /// even after the peer reset the connection).
    peer: Option<SocketAddr>,
    pub(crate) fd: Option<i32>,
    pub(crate) io: IoCounters,
    /// Registered for writable readiness: only while writes wait or a connect is pending,
    /// so a stream whose writes complete at once gets no writable wake-ups (the kernel
    /// reports one after every ACK otherwise).
    writable_interest: bool,
}

impl TcpData {
    fn new(sock: Sock) -> Box<TcpData> {
        Box::new(TcpData {
            sock,
            connection_cb: None,
            accepted: None,
            read_cb: None,
            read_started: false,
            reading: false,
            readable_hint: false,
            writes: VecDeque::new(),
            write_queue_size: 0,
            connect: None,
            shutdown: None,
            write_shut: false,
            cancelled: Vec::new(),
            peer: None,
            fd: None,
            io: IoCounters::default(),
            writable_interest: false,
        })
    }

    fn wants_active(&self) -> bool {
        matches!(self.sock, Sock::Listener(_))
            || self.reading
            || !self.writes.is_empty()
            || self.connect.is_some()
            || self.shutdown.is_some()
    }
}

/// A TCP listener or stream handle.
///
/// # Examples
/// ```
/// use loopd_engine::{Handle, Loop, ReadEvent, RunMode, Tcp};
///
/// let mut lp = Loop::new()?;
/// let server = Tcp::new(&mut lp);
/// server.bind(&mut lp, "127.0.0.1:0".parse().unwrap())?;
/// server.listen(&mut lp, 128, |lp, server, status| {
///     if status.is_err() { return; }
///     let Ok(client) = server.accept(lp) else { return };
///     let _ = client.read_start(lp, |lp, client, ev| match ev {
///         ReadEvent::Data(bytes) => { let _ = client.write(lp, bytes.to_vec(), None); }
///         _ => client.close(lp),
///     });
/// })?;
/// # server.close(&mut lp);
/// # lp.run(RunMode::Default);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tcp(HandleRef);

impl Handle for Tcp {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

// The data is boxed (a TCP handle's state is large; the slot stays small): typed access
// goes to the box, which is never null, so a lookup does not test it.
fn tcp_mut(lp: &mut Loop, r: HandleRef) -> Result<&mut TcpData, EngineError> {
    lp.handles
        .open_data_mut::<Box<TcpData>>(r)
        .map(|t| &mut **t)
}

fn tcp_ref(lp: &Loop, r: HandleRef) -> Option<&TcpData> {
    lp.handles.data::<Box<TcpData>>(r).map(|t| &**t)
}

/// The bytes of a write: owned ones are queued as they are if the socket does not take them
/// all at once; borrowed ones are copied then (only the remainder).
trait WriteBytes: AsRef<[u8]> {
    /// What is left after the first `written` bytes, to queue: the bytes and the offset in
    /// them where the rest starts.
    fn into_rest(self, written: usize) -> (Vec<u8>, usize);
}

impl WriteBytes for Vec<u8> {
    fn into_rest(self, written: usize) -> (Vec<u8>, usize) {
        (self, written)
    }
}

impl WriteBytes for &[u8] {
    fn into_rest(self, written: usize) -> (Vec<u8>, usize) {
        (self[written..].to_vec(), 0)
    }
}

/// Where the connection callback lives between calls ([`Loop::run_handle_callback`]).
fn connection_cb(t: &mut Box<TcpData>) -> &mut Option<ConnectionCb> {
    &mut t.connection_cb
}

/// Where the read callback lives between calls.
fn read_cb(t: &mut Box<TcpData>) -> &mut Option<ReadCb> {
    &mut t.read_cb
}

/// Writes as much of `data` as the socket takes now. Returns how much it took and the error
/// that stopped it, if one did (a full socket is no error).
#[inline(always)]
fn write_now(stream: &mut mio::net::TcpStream, data: &[u8]) -> (usize, Option<io::Error>) {
    let mut offset = 0;
    while offset < data.len() {
        match stream.write(&data[offset..]) {
            Ok(n) => offset += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (offset, Some(e)),
        }
    }
    (offset, None)
}

/// The same error again, for every write a broken stream fails.
fn same_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

impl Tcp {
    /// Creates a TCP handle with no socket yet (bind + listen, or use [`Tcp::connect`]).
    #[track_caller]
    pub fn new(lp: &mut Loop) -> Tcp {
        let site = Location::caller();
        Tcp(lp.handles.insert(
            HandleType::Tcp,
            HandleData::Tcp(TcpData::new(Sock::None)),
            site,
            lp.now_ns,
        ))
    }

    /// Binds to `addr` (with `SO_REUSEADDR`).
    ///
    /// # Errors
    /// The OS error (address in use, permission denied, …).
    pub fn bind(&self, lp: &mut Loop, addr: SocketAddr) -> Result<(), EngineError> {
        self.bind_with(lp, addr, false)
    }

    /// Binds to `addr`, with `SO_REUSEPORT` when `reuse_port` (several loops sharing a port).
    ///
    /// # Errors
    /// The OS error.
    pub fn bind_with(
        &self,
        lp: &mut Loop,
        addr: SocketAddr,
        reuse_port: bool,
    ) -> Result<(), EngineError> {
        let t = tcp_mut(lp, self.0)?;
        if !matches!(t.sock, Sock::None) {
            return Err(EngineError::InvalidState("already bound"));
        }
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        t.sock = Sock::Bound(socket);
        Ok(())
    }

    /// Lets this user's other sockets bind the address this handle holds (sets
    /// `SO_REUSEPORT` on it; once they listen too, the kernel spreads connections over them).
    /// Bind alone first, then share: a port another process holds then fails to bind, even if
    /// that process shares it with `SO_REUSEPORT`, and no other process can slip in before
    /// this handle holds the port.
    ///
    /// # Errors
    /// Not bound or listening, or the OS error.
    pub fn share_port(&self, lp: &mut Loop) -> Result<(), EngineError> {
        let t = tcp_mut(lp, self.0)?;
        match &t.sock {
            Sock::Bound(s) => s.set_reuse_port(true)?,
            Sock::Listener(l) => SockRef::from(l).set_reuse_port(true)?,
            Sock::None | Sock::Stream(_) => {
                return Err(EngineError::InvalidState(
                    "share_port needs a bound or listening handle",
                ))
            }
        }
        Ok(())
    }

    /// Starts listening; `cb` runs for each incoming connection, and should call
    /// [`Tcp::accept`].
    ///
    /// # Errors
    /// Not bound, or the OS error.
    pub fn listen(
        &self,
        lp: &mut Loop,
        backlog: i32,
        cb: impl FnMut(&mut Loop, Tcp, io::Result<()>) + 'static,
    ) -> Result<(), EngineError> {
        let t = tcp_mut(lp, self.0)?;
        let Sock::Bound(socket) = std::mem::replace(&mut t.sock, Sock::None) else {
            return Err(EngineError::InvalidState(
                "listen needs a bound, unconnected handle",
            ));
        };
        if let Err(e) = socket.listen(backlog) {
            t.sock = Sock::Bound(socket);
            return Err(e.into());
        }
        let std_listener: std::net::TcpListener = socket.into();
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        lp.poll.registry().register(
            &mut listener,
            token::for_handle(self.0)?,
            mio::Interest::READABLE,
        )?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let t = tcp_mut(lp, self.0)?;
        t.sock = Sock::Listener(listener);
        t.connection_cb = Some(Box::new(cb));
        t.fd = Some(fd);
        lp.handles.set_active(self.0, true);
        // Connections may already wait in the backlog.
        lp.io_again.push(self.0);
        Ok(())
    }

    /// Takes the connection announced to the connection callback, as a new handle that
    /// knows its peer's address ([`Tcp::peer_addr`]).
    ///
    /// # Errors
    /// [`EngineError::InvalidState`] when no connection is waiting.
    #[track_caller]
    pub fn accept(&self, lp: &mut Loop) -> Result<Tcp, EngineError> {
        let site = Location::caller();
        let t = tcp_mut(lp, self.0)?;
        let Some((stream, peer)) = t.accepted.take() else {
            return Err(EngineError::InvalidState("no connection to accept"));
        };
        lp.adopt_stream(stream, Some(peer), site)
    }

    /// Connects to `addr`; `cb` runs when connected or failed. Returns the new handle.
    ///
    /// # Errors
    /// The OS error of creating the socket.
    #[track_caller]
    pub fn connect(
        lp: &mut Loop,
        addr: SocketAddr,
        cb: impl FnOnce(&mut Loop, io::Result<()>) + 'static,
    ) -> Result<Tcp, EngineError> {
        let site = Location::caller();
        let stream = mio::net::TcpStream::connect(addr)?;
        let tcp = lp.adopt_stream(stream, None, site)?;
        let now = lp.now_ns;
        let t = lp.handles.open_data_mut::<Box<TcpData>>(tcp.0)?;
        let connect = IoRequest::waited_for(&mut lp.requests, RequestType::Connect, site, now, cb);
        t.connect = Some(connect);
        lp.tcp_update_active(tcp.0);
        Ok(tcp)
    }

    /// Starts delivering reads to `cb` (libuv's `uv_read_start`; Node's `resume()`).
    ///
    /// # Errors
    /// Not a connected stream, or closing.
    pub fn read_start(
        &self,
        lp: &mut Loop,
        cb: impl FnMut(&mut Loop, Tcp, ReadEvent<'_>) + 'static,
    ) -> Result<(), EngineError> {
        let t = tcp_mut(lp, self.0)?;
        if !matches!(t.sock, Sock::Stream(_)) {
            return Err(EngineError::InvalidState(
                "read_start needs a connected stream",
            ));
        }
        t.read_cb = Some(Box::new(cb));
        t.read_started = true;
        self.read_resume(lp)
    }

    /// Resumes reads with the callback given to the last [`Tcp::read_start`] (Node's
    /// `resume()` after `pause()`).
    ///
    /// # Errors
    /// Never started, not a connected stream, or closing.
    pub fn read_resume(&self, lp: &mut Loop) -> Result<(), EngineError> {
        let t = tcp_mut(lp, self.0)?;
        if !t.read_started || !matches!(t.sock, Sock::Stream(_)) {
            return Err(EngineError::InvalidState(
                "read_resume needs an earlier read_start",
            ));
        }
        if !t.reading {
            t.reading = true;
            if t.readable_hint {
                t.readable_hint = false;
                lp.io_again.push(self.0);
            }
            lp.tcp_update_active(self.0);
        }
        Ok(())
    }

    /// Stops delivering reads; data stays in the kernel, which pushes back on the peer
    /// (libuv's `uv_read_stop`; Node's `pause()`).
    pub fn read_stop(&self, lp: &mut Loop) {
        if let Ok(t) = tcp_mut(lp, self.0) {
            t.reading = false;
            lp.tcp_update_active(self.0);
        }
    }

    /// Whether reads are being delivered.
    pub fn is_reading(&self, lp: &Loop) -> bool {
        tcp_ref(lp, self.0).is_some_and(|t| t.reading)
    }

    /// Writes `data`: at once as far as the socket takes it, the rest queued in order.
    /// `cb` runs when all of it is written (in the pending phase if that was immediate), or
    /// with the error that broke the stream.
    ///
    /// # Errors
    /// Closing, not connected, or shut down for writing.
    #[track_caller]
    pub fn write(
        &self,
        lp: &mut Loop,
        data: Vec<u8>,
        cb: Option<DoneCb>,
    ) -> Result<(), EngineError> {
        self.write_from(lp, data, cb, Location::caller())
    }

    /// Writes a borrowed slice: as [`Tcp::write`], but without an allocation when the socket
    /// takes all of it at once (the common case); only a remainder that must wait is copied.
    ///
    /// # Errors
    /// Closing, not connected, or shut down for writing.
    #[track_caller]
    pub fn write_slice(
        &self,
        lp: &mut Loop,
        data: &[u8],
        cb: Option<DoneCb>,
    ) -> Result<(), EngineError> {
        self.write_from(lp, data, cb, Location::caller())
    }

    /// The one write path of [`Tcp::write`] and [`Tcp::write_slice`]: straight to the socket
    /// unless earlier writes (or the connect) wait, so order holds; what the socket does not
    /// take is queued ([`WriteBytes`]).
    #[inline]
    fn write_from(
        &self,
        lp: &mut Loop,
        data: impl WriteBytes,
        cb: Option<DoneCb>,
        site: &'static Location<'static>,
    ) -> Result<(), EngineError> {
        let now = lp.io_now();
        let t = lp.handles.open_data_mut::<Box<TcpData>>(self.0)?;
        if t.write_shut || t.shutdown.is_some() {
            return Err(EngineError::InvalidState("stream is shut down for writing"));
        }
        let Sock::Stream(stream) = &mut t.sock else {
            return Err(EngineError::InvalidState("write needs a connected stream"));
        };
        let bytes = data.as_ref();
        let len = bytes.len();
        let (written, failed) = if t.writes.is_empty() && t.connect.is_none() {
            write_now(stream, bytes)
        } else {
            (0, None)
        };
        if written > 0 {
            t.io.note(0, written as u64, now);
        }
        if written == len && cb.is_none() {
            // The common case: all taken at once and nobody waits. Counted, never listed.
            lp.count_instant_io(RequestType::Write);
        } else {
            let io = IoRequest::start(&mut lp.requests, RequestType::Write, site, lp.now_ns, cb);
            if written == len || failed.is_some() {
                if let Some(e) = &failed {
                    tracing::debug!(handle_id = self.0.id, error = %e, "write failed");
                }
                lp.complete_io(io, failed.map_or(Ok(()), Err), When::Pending(self.0));
            } else {
                let (rest, offset) = data.into_rest(written);
                t.write_queue_size += rest.len() - offset;
                t.writes.push_back(QueuedWrite {
                    io,
                    data: rest,
                    offset,
                });
                lp.tcp_update_active(self.0);
            }
        }
        Ok(())
    }

    /// Bytes queued and not yet written (libuv's `write_queue_size`): the backpressure gauge.
    pub fn write_queue_size(&self, lp: &Loop) -> usize {
        tcp_ref(lp, self.0).map_or(0, |t| t.write_queue_size)
    }

    /// Shuts the write side after the queued writes (half-close); `cb` runs when done.
    ///
    /// # Errors
    /// Closing, not connected, or already shut down.
    #[track_caller]
    pub fn shutdown(
        &self,
        lp: &mut Loop,
        cb: impl FnOnce(&mut Loop, io::Result<()>) + 'static,
    ) -> Result<(), EngineError> {
        let site = Location::caller();
        let now = lp.now_ns;
        let t = lp.handles.open_data_mut::<Box<TcpData>>(self.0)?;
        if t.write_shut || t.shutdown.is_some() {
            return Err(EngineError::InvalidState("already shut down"));
        }
        if !matches!(t.sock, Sock::Stream(_)) {
            return Err(EngineError::InvalidState(
                "shutdown needs a connected stream",
            ));
        }
        let shutdown =
            IoRequest::waited_for(&mut lp.requests, RequestType::Shutdown, site, now, cb);
        t.shutdown = Some(shutdown);
        lp.tcp_update_active(self.0);
        lp.tcp_try_shutdown(self.0);
        Ok(())
    }

    /// Disables or enables Nagle's algorithm.
    ///
    /// # Errors
    /// No socket, or the OS error.
    pub fn set_nodelay(&self, lp: &mut Loop, on: bool) -> Result<(), EngineError> {
        match &tcp_mut(lp, self.0)?.sock {
            Sock::Stream(s) => Ok(s.set_nodelay(on)?),
            _ => Err(EngineError::InvalidState("not a connected stream")),
        }
    }

    /// Enables TCP keepalive with the given idle time, or disables it with `None`.
    ///
    /// # Errors
    /// No socket, or the OS error.
    pub fn set_keepalive(&self, lp: &mut Loop, idle: Option<Duration>) -> Result<(), EngineError> {
        let t = tcp_mut(lp, self.0)?;
        let sock = match &t.sock {
            Sock::Stream(s) => SockRef::from(s),
            _ => return Err(EngineError::InvalidState("not a connected stream")),
        };
        match idle {
            Some(d) => sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(d))?,
            None => sock.set_keepalive(false)?,
        }
        Ok(())
    }

    /// The local address.
    ///
    /// # Errors
    /// No socket, or the OS error.
    pub fn local_addr(&self, lp: &Loop) -> Result<SocketAddr, EngineError> {
        match tcp_ref(lp, self.0).map(|t| &t.sock) {
            Some(Sock::Listener(l)) => Ok(l.local_addr()?),
            Some(Sock::Stream(s)) => Ok(s.local_addr()?),
            Some(Sock::Bound(s)) => s
                .local_addr()?
                .as_socket()
                .ok_or(EngineError::InvalidState("not an inet socket")),
            _ => Err(EngineError::InvalidState("no socket")),
        }
    }

    /// The peer's address, as the accept or the connect learned it: known for as long as
    /// the handle exists, even once the peer has reset the connection.
    ///
    /// # Errors
    /// Not an accepted stream, nor a connected one.
    pub fn peer_addr(&self, lp: &Loop) -> Result<SocketAddr, EngineError> {
        tcp_ref(lp, self.0)
            .and_then(|t| t.peer)
            .ok_or(EngineError::InvalidState("not a connected stream"))
    }

    /// Takes the stream's pending error (`SO_ERROR`), if any. Once the peer's EOF has been
    /// read, reads only ever return EOF again: a reset that follows (the peer closed
    /// entirely, and our data reached its closed socket) shows only here.
    ///
    /// # Errors
    /// Not a connected stream, or the OS error of asking.
    pub fn take_error(&self, lp: &Loop) -> Result<Option<io::Error>, EngineError> {
        match tcp_ref(lp, self.0).map(|t| &t.sock) {
            Some(Sock::Stream(s)) => Ok(s.take_error()?),
            _ => Err(EngineError::InvalidState("not a connected stream")),
        }
    }
}

impl Loop {
    fn adopt_stream(
        &mut self,
        mut stream: mio::net::TcpStream,
        peer: Option<SocketAddr>,
        site: &'static Location<'static>,
    ) -> Result<Tcp, EngineError> {
        let r = self.handles.insert(
            HandleType::Tcp,
            HandleData::Tcp(TcpData::new(Sock::None)),
            site,
            self.now_ns,
        );
        let registered = token::for_handle(r).and_then(|token| {
            self.poll
                .registry()
                .register(&mut stream, token, mio::Interest::READABLE)
        });
        if let Err(e) = registered {
            // Never became a usable handle: free it at once.
            self.handles.remove(r);
            return Err(e.into());
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        if let Some(t) = self.handles.data_mut::<Box<TcpData>>(r) {
            t.fd = Some(fd);
            t.sock = Sock::Stream(stream);
            t.peer = peer;
        }
        Ok(Tcp(r))
    }

    /// After any change of a TCP handle's state: its active flag, and its writable interest.
    fn tcp_update_active(&mut self, r: HandleRef) {
        let want = tcp_ref(self, r).is_some_and(|t| t.wants_active());
        self.handles.set_active(r, want);
        let registry = self.poll.registry();
        let Some(t) = self.handles.data_mut::<Box<TcpData>>(r) else {
            return;
        };
        let want_writable = !t.writes.is_empty() || t.connect.is_some();
        if want_writable == t.writable_interest {
            return;
        }
        let Sock::Stream(stream) = &mut t.sock else {
            return;
        };
        let interest = if want_writable {
            mio::Interest::READABLE | mio::Interest::WRITABLE
        } else {
            mio::Interest::READABLE
        };
        let reregistered =
            token::for_handle(r).and_then(|token| registry.reregister(stream, token, interest));
        match reregistered {
            Ok(()) => t.writable_interest = want_writable,
            Err(e) => tracing::debug!(handle_id = r.id, error = %e, "reregister failed"),
        }
    }

    /// Poll phase: readiness on a TCP handle.
    #[inline]
    pub(crate) fn tcp_io(&mut self, r: HandleRef, readable: bool, writable: bool) {
        let Ok(t) = tcp_mut(self, r) else {
            return;
        };
        if matches!(t.sock, Sock::Listener(_)) {
            if readable {
                self.tcp_accept_ready(r);
            }
            return;
        }
        if writable {
            self.tcp_writable(r);
        }
        if readable {
            self.tcp_readable(r);
        }
    }

    fn tcp_accept_ready(&mut self, r: HandleRef) {
        loop {
            let Ok(t) = tcp_mut(self, r) else { return };
            if t.accepted.is_some() {
                // The callback has not taken the previous connection: wait for accept().
                return;
            }
            let Sock::Listener(listener) = &t.sock else {
                return;
            };
            let result = match listener.accept() {
                Ok(conn) => {
                    t.accepted = Some(conn);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            self.run_handle_callback(Phase::Poll, r, connection_cb, |lp, f| f(lp, Tcp(r), result));
            if failed {
                // EMFILE and friends: try again next iteration rather than spin here.
                self.io_again_later.push(r);
                return;
            }
        }
    }

    fn tcp_readable(&mut self, r: HandleRef) {
        let mut buf = std::mem::take(&mut self.read_buf);
        let drained = self.tcp_read_burst(r, &mut buf);
        self.read_buf = buf;
        if !drained {
            // Still readable after a full burst: continue next poll phase.
            self.io_again.push(r);
        }
    }

    /// Reads and delivers up to [`READS_PER_EVENT`] chunks. Returns `false` when the burst
    /// ended with the socket possibly still readable.
    fn tcp_read_burst(&mut self, r: HandleRef, buf: &mut [u8]) -> bool {
        let mut reads = 0;
        while reads < READS_PER_EVENT {
            let now = self.io_now();
            let Ok(t) = tcp_mut(self, r) else { return true };
            if !t.reading {
                t.readable_hint = true;
                return true;
            }
            let Sock::Stream(stream) = &mut t.sock else {
                return true;
            };
            let read = match stream.read(buf) {
                Ok(0) => Err(None),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(Some(e)),
            };
            reads += 1;
            let stop = read.is_err();
            let event = match read {
                Ok(n) => {
                    t.io.note(n as u64, 0, now);
                    ReadEvent::Data(&buf[..n])
                }
                Err(e) => {
                    t.reading = false;
                    self.tcp_update_active(r);
                    e.map_or(ReadEvent::Eof, ReadEvent::Error)
                }
            };
            self.run_handle_callback(Phase::Poll, r, read_cb, |lp, f| f(lp, Tcp(r), event));
            if stop {
                return true;
            }
        }
        false
    }

    fn tcp_writable(&mut self, r: HandleRef) {
        self.tcp_connected(r);
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut failure = None;
        let now = self.io_now();
        if let Ok(t) = tcp_mut(self, r) {
            let Sock::Stream(stream) = &mut t.sock else {
                return;
            };
            let mut written = 0;
            while let Some(front) = t.writes.front_mut() {
                let (n, error) = write_now(stream, &front.data[front.offset..]);
                front.offset += n;
                t.write_queue_size -= n;
                written += n;
                if let Some(e) = error {
                    failure = Some(e);
                    break;
                }
                if front.offset < front.data.len() {
                    // The socket is full: the rest waits for the next writable edge.
                    break;
                }
                if let Some(w) = t.writes.pop_front() {
                    done.push(w.io);
                }
            }
            if let Some(e) = &failure {
                // The stream is broken: every write still queued fails with the same error.
                for w in t.writes.drain(..) {
                    t.write_queue_size -= w.data.len() - w.offset;
                    failed.push(w.io);
                }
                tracing::debug!(handle_id = r.id, error = %e, "write failed");
            }
            if written > 0 {
                t.io.note(0, written as u64, now);
            }
        }
        self.tcp_update_active(r);
        for io in done {
            self.complete_io(io, Ok(()), When::Now(Phase::Poll));
        }
        if let Some(e) = &failure {
            for io in failed {
                self.complete_io(io, Err(same_error(e)), When::Now(Phase::Poll));
            }
        }
        self.tcp_try_shutdown(r);
    }

    /// Writable readiness during a connect: completes it, unless it was spurious.
    fn tcp_connected(&mut self, r: HandleRef) {
        let Ok(t) = tcp_mut(self, r) else { return };
        let Sock::Stream(stream) = &t.sock else {
            return;
        };
        if t.connect.is_none() {
            return;
        }
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(peer) => {
                    t.peer = Some(peer);
                    Ok(())
                }
                // Spurious: still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        let Some(io) = t.connect.take() else { return };
        self.tcp_update_active(r);
        self.complete_io(io, result, When::Now(Phase::Poll));
    }

    /// Performs a requested shutdown once the write queue is empty.
    fn tcp_try_shutdown(&mut self, r: HandleRef) {
        let Ok(t) = tcp_mut(self, r) else { return };
        if !t.writes.is_empty() {
            return;
        }
        let Some(io) = t.shutdown.take() else {
            return;
        };
        let result = match &t.sock {
            Sock::Stream(s) => s.shutdown(Shutdown::Write),
            _ => Err(io::Error::from(io::ErrorKind::NotConnected)),
        };
        t.write_shut = true;
        self.tcp_update_active(r);
        self.complete_io(io, result, When::Pending(r));
    }

    /// Closing a TCP handle: closes the socket now; queued writes, a pending connect and a
    /// pending shutdown fail with `ECANCELED` in the close phase.
    pub(crate) fn tcp_close(&mut self, r: HandleRef) {
        let Some(t) = self.handles.data_mut::<Box<TcpData>>(r) else {
            return;
        };
        // Dropping the socket closes its descriptor, which takes it out of the epoll set:
        // no `epoll_ctl` needed (events already returned for it are recognised as stale by
        // their token).
        drop(std::mem::replace(&mut t.sock, Sock::None));
        t.accepted = None;
        t.reading = false;
        t.read_cb = None;
        t.connection_cb = None;
        t.write_queue_size = 0;
        let writes = t.writes.drain(..).map(|w| w.io);
        let cancelled = writes.chain(t.connect.take()).chain(t.shutdown.take());
        t.cancelled = cancelled.collect();
        self.handles.set_active(r, false);
    }
}
