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

use super::clock;
use super::handle::{Handle, HandleData, HandleRef, IoCounters, CLOSING};
use super::phase::Phase;
use super::request::{RequestData, RequestRef};
use super::target::{HandleType, RequestType, Target};
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
/// Write, shutdown and connect completions.
pub type DoneCb = Box<dyn FnOnce(&mut Loop, io::Result<()>)>;

enum Sock {
    None,
    Bound(Socket),
    Listener(mio::net::TcpListener),
    Stream(mio::net::TcpStream),
}

struct QueuedWrite {
    req: RequestRef,
    data: Vec<u8>,
    offset: usize,
    cb: Option<DoneCb>,
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
    connect: Option<(RequestRef, DoneCb)>,
    shutdown: Option<(RequestRef, DoneCb)>,
    write_shut: bool,
    /// Completions to fail with `ECANCELED` in the close phase, before the close callback.
    cancelled: Vec<(RequestRef, DoneCb)>,
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

fn tcp_mut(lp: &mut Loop, r: HandleRef) -> Result<&mut TcpData, EngineError> {
    match lp.handles.get_mut(r) {
        Some(s) if s.flags & CLOSING != 0 => Err(EngineError::Closed),
        Some(s) => match &mut s.data {
            HandleData::Tcp(t) => Ok(t),
            _ => Err(EngineError::InvalidState("not a tcp handle")),
        },
        None => Err(EngineError::Closed),
    }
}

fn tcp_ref(lp: &Loop, r: HandleRef) -> Option<&TcpData> {
    match lp.handles.get(r).map(|s| &s.data) {
        Some(HandleData::Tcp(t)) => Some(t),
        _ => None,
    }
}

fn ecanceled() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
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
            super::token_for(self.0),
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

    /// Takes the connection announced to the connection callback, as a new handle.
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
        let client = lp.adopt_stream(stream, site)?;
        let _ = peer;
        Ok(client)
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
        let tcp = lp.adopt_stream(stream, site)?;
        let req = lp
            .requests
            .insert(RequestType::Connect, RequestData::Io, site, lp.now_ns);
        tcp_mut(lp, tcp.0)?.connect = Some((req, Box::new(cb)));
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
        t.reading = true;
        if t.readable_hint {
            t.readable_hint = false;
            lp.io_again.push(self.0);
        }
        lp.tcp_update_active(self.0);
        Ok(())
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
    /// `cb` runs when all of it is written (in the pending phase if that was immediate).
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
        let site = Location::caller();
        let now = lp.now_ns;
        let t = tcp_mut(lp, self.0)?;
        if t.write_shut || t.shutdown.is_some() {
            return Err(EngineError::InvalidState("stream is shut down for writing"));
        }
        let Sock::Stream(stream) = &mut t.sock else {
            return Err(EngineError::InvalidState("write needs a connected stream"));
        };
        let mut offset = 0;
        let mut failed = None;
        if t.writes.is_empty() && t.connect.is_none() {
            while offset < data.len() {
                match stream.write(&data[offset..]) {
                    Ok(n) => offset += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        let written = offset as u64;
        let done = offset == data.len() || failed.is_some();
        if !done {
            let req = lp
                .requests
                .insert(RequestType::Write, RequestData::Io, site, now);
            let t = tcp_mut(lp, self.0)?;
            t.write_queue_size += data.len() - offset;
            t.writes.push_back(QueuedWrite {
                req,
                data,
                offset,
                cb,
            });
            lp.tcp_update_active(self.0);
        } else {
            if cb.is_none() {
                // Done at once and nobody waits for it: counted, never listed.
                lp.requests.started[RequestType::Write.index()] += 1;
            }
            if let Some(cb) = cb {
                let req = lp
                    .requests
                    .insert(RequestType::Write, RequestData::Io, site, now);
                let result = failed.map_or(Ok(()), Err);
                lp.defer(
                    Target::Request(RequestType::Write, req.id()),
                    req.slot,
                    Box::new(move |lp| {
                        lp.finish_request(req);
                        cb(lp, result)
                    }),
                );
            }
        }
        lp.note_io(self.0, 0, written);
        Ok(())
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
        let t = tcp_mut(lp, self.0)?;
        if t.write_shut || t.shutdown.is_some() {
            return Err(EngineError::InvalidState("stream is shut down for writing"));
        }
        let Sock::Stream(stream) = &mut t.sock else {
            return Err(EngineError::InvalidState("write needs a connected stream"));
        };
        let mut offset = 0;
        if t.writes.is_empty() && t.connect.is_none() {
            while offset < data.len() {
                match stream.write(&data[offset..]) {
                    Ok(n) => offset += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // WouldBlock, or an error the queued path reports the libuv way.
                    Err(_) => break,
                }
            }
        }
        if offset == data.len() && cb.is_none() {
            lp.requests.started[RequestType::Write.index()] += 1;
            lp.note_io(self.0, 0, offset as u64);
            return Ok(());
        }
        if offset > 0 {
            lp.note_io(self.0, 0, offset as u64);
        }
        self.write(lp, data[offset..].to_vec(), cb)
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
        let t = tcp_mut(lp, self.0)?;
        if t.write_shut || t.shutdown.is_some() {
            return Err(EngineError::InvalidState("already shut down"));
        }
        if !matches!(t.sock, Sock::Stream(_)) {
            return Err(EngineError::InvalidState(
                "shutdown needs a connected stream",
            ));
        }
        let req = lp
            .requests
            .insert(RequestType::Shutdown, RequestData::Io, site, now);
        tcp_mut(lp, self.0)?.shutdown = Some((req, Box::new(cb)));
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

    /// The peer's address.
    ///
    /// # Errors
    /// Not connected.
    pub fn peer_addr(&self, lp: &Loop) -> Result<SocketAddr, EngineError> {
        match tcp_ref(lp, self.0).map(|t| &t.sock) {
            Some(Sock::Stream(s)) => Ok(s.peer_addr()?),
            _ => Err(EngineError::InvalidState("not a connected stream")),
        }
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
        site: &'static Location<'static>,
    ) -> Result<Tcp, EngineError> {
        let r = self.handles.insert(
            HandleType::Tcp,
            HandleData::Tcp(TcpData::new(Sock::None)),
            site,
            self.now_ns,
        );
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, super::token_for(r), mio::Interest::READABLE)
        {
            // Never became a usable handle: free it at once.
            self.handles.remove(r);
            return Err(e.into());
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        if let Some(HandleData::Tcp(t)) = self.handles.get_mut(r).map(|s| &mut s.data) {
            t.fd = Some(fd);
            t.sock = Sock::Stream(stream);
        }
        Ok(Tcp(r))
    }

    /// After any change of a TCP handle's state: its active flag, and its writable interest.
    fn tcp_update_active(&mut self, r: HandleRef) {
        let want = tcp_ref(self, r).is_some_and(|t| t.wants_active());
        self.handles.set_active(r, want);
        let registry = self.poll.registry();
        let Some(HandleData::Tcp(t)) = self.handles.get_mut(r).map(|s| &mut s.data) else {
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
        match registry.reregister(stream, super::token_for(r), interest) {
            Ok(()) => t.writable_interest = want_writable,
            Err(e) => tracing::debug!(handle_id = r.id, error = %e, "reregister failed"),
        }
    }

    /// Counts bytes moved on a handle and notes the activity time.
    pub(crate) fn note_io(&mut self, r: HandleRef, read: u64, written: u64) {
        let now = self.last_clock.max(self.now_ns);
        if let Some(HandleData::Tcp(t)) = self.handles.get_mut(r).map(|s| &mut s.data) {
            t.io.bytes_read += read;
            t.io.bytes_written += written;
            t.io.last_activity_ns = now;
        }
    }

    /// Poll phase: readiness on a TCP handle.
    pub(crate) fn tcp_io(&mut self, r: HandleRef, readable: bool, writable: bool) {
        let Some(slot) = self.handles.get(r) else {
            return;
        };
        if slot.flags & CLOSING != 0 {
            return;
        }
        let listening =
            matches!(&slot.data, HandleData::Tcp(t) if matches!(t.sock, Sock::Listener(_)));
        if listening {
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
            let mut cb = t.connection_cb.take();
            if let Some(f) = cb.as_mut() {
                let server = Tcp(r);
                self.dispatch(
                    Phase::Poll,
                    Target::Handle(HandleType::Tcp, r.id()),
                    r.slot,
                    |lp| f(lp, server, result),
                );
            }
            if let Ok(t) = tcp_mut(self, r) {
                if t.connection_cb.is_none() {
                    t.connection_cb = cb;
                }
            }
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
            let Ok(t) = tcp_mut(self, r) else { return true };
            if !t.reading {
                t.readable_hint = true;
                return true;
            }
            let Sock::Stream(stream) = &mut t.sock else {
                return true;
            };
            let event = match stream.read(buf) {
                Ok(0) => Err(None),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(Some(e)),
            };
            reads += 1;
            let stop = event.is_err();
            if stop {
                t.reading = false;
            }
            let mut cb = t.read_cb.take();
            if let Ok(n) = event {
                self.note_io(r, n as u64, 0);
            } else {
                self.tcp_update_active(r);
            }
            if let Some(f) = cb.as_mut() {
                let tcp = Tcp(r);
                let target = Target::Handle(HandleType::Tcp, r.id());
                match event {
                    Ok(n) => {
                        let data = &buf[..n];
                        self.dispatch(Phase::Poll, target, r.slot, |lp| {
                            f(lp, tcp, ReadEvent::Data(data))
                        })
                    }
                    Err(None) => {
                        self.dispatch(Phase::Poll, target, r.slot, |lp| f(lp, tcp, ReadEvent::Eof))
                    }
                    Err(Some(e)) => self.dispatch(Phase::Poll, target, r.slot, |lp| {
                        f(lp, tcp, ReadEvent::Error(e))
                    }),
                }
            }
            if let Ok(t) = tcp_mut(self, r) {
                if t.read_cb.is_none() {
                    t.read_cb = cb;
                }
            }
            if stop {
                return true;
            }
        }
        false
    }

    fn tcp_writable(&mut self, r: HandleRef) {
        if let Ok(t) = tcp_mut(self, r) {
            if let Some((req, cb)) = t.connect.take() {
                let Sock::Stream(stream) = &t.sock else {
                    return;
                };
                let result = match stream.take_error() {
                    Ok(Some(e)) | Err(e) => Err(e),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            // Spurious: still connecting.
                            t.connect = Some((req, cb));
                            return;
                        }
                        Err(e) => Err(e),
                    },
                };
                self.tcp_update_active(r);
                self.complete_io(req, RequestType::Connect, cb, result);
            }
        }
        let mut done = Vec::new();
        let mut failure = None;
        let mut written = 0u64;
        if let Ok(t) = tcp_mut(self, r) {
            let Sock::Stream(stream) = &mut t.sock else {
                return;
            };
            while let Some(front) = t.writes.front_mut() {
                match stream.write(&front.data[front.offset..]) {
                    Ok(n) => {
                        front.offset += n;
                        t.write_queue_size -= n;
                        written += n as u64;
                        if front.offset == front.data.len() {
                            if let Some(w) = t.writes.pop_front() {
                                done.push((w.req, w.cb));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = &failure {
                // The stream is broken: every queued write fails with the same error.
                for w in t.writes.drain(..) {
                    t.write_queue_size -= w.data.len() - w.offset;
                    done.push((w.req, w.cb));
                }
                tracing::debug!(handle_id = r.id, error = %e, "write failed");
            }
        }
        if written > 0 {
            self.note_io(r, 0, written);
        }
        self.tcp_update_active(r);
        for (req, cb) in done {
            let result = match &failure {
                Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
                None => Ok(()),
            };
            match cb {
                Some(cb) => self.complete_io(req, RequestType::Write, cb, result),
                None => self.finish_request(req),
            }
        }
        self.tcp_try_shutdown(r);
    }

    /// Performs a requested shutdown once the write queue is empty.
    fn tcp_try_shutdown(&mut self, r: HandleRef) {
        let Ok(t) = tcp_mut(self, r) else { return };
        if !t.writes.is_empty() {
            return;
        }
        let Some((req, cb)) = t.shutdown.take() else {
            return;
        };
        let result = match &t.sock {
            Sock::Stream(s) => s.shutdown(Shutdown::Write),
            _ => Err(io::Error::from(io::ErrorKind::NotConnected)),
        };
        t.write_shut = true;
        self.tcp_update_active(r);
        let target = Target::Request(RequestType::Shutdown, req.id());
        self.defer(
            target,
            req.slot,
            Box::new(move |lp| {
                lp.finish_request(req);
                cb(lp, result)
            }),
        );
    }

    /// Completes an I/O request now (poll phase) and runs its callback.
    fn complete_io(
        &mut self,
        req: RequestRef,
        kind: RequestType,
        cb: DoneCb,
        result: io::Result<()>,
    ) {
        self.dispatch(
            Phase::Poll,
            Target::Request(kind, req.id()),
            req.slot,
            move |lp| {
                lp.finish_request(req);
                cb(lp, result)
            },
        );
    }

    /// Closing a TCP handle: deregisters and closes the socket now; queued writes, a pending
    /// connect and a pending shutdown fail with `ECANCELED` in the close phase.
    pub(crate) fn tcp_close(&mut self, r: HandleRef) {
        let Some(slot) = self.handles.get_mut(r) else {
            return;
        };
        let HandleData::Tcp(t) = &mut slot.data else {
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
        let mut cancelled: Vec<(RequestRef, DoneCb)> = Vec::new();
        let mut silent = Vec::new();
        for w in t.writes.drain(..) {
            match w.cb {
                Some(cb) => cancelled.push((w.req, cb)),
                None => silent.push(w.req),
            }
        }
        cancelled.extend(t.connect.take());
        cancelled.extend(t.shutdown.take());
        t.cancelled = cancelled;
        self.handles.set_active(r, false);
        for req in silent {
            self.finish_request(req);
        }
    }

    /// Close phase, before the close callback: fail the handle's cancelled requests (TCP
    /// writes, connect, shutdown; UDP sends) with `ECANCELED`.
    pub(crate) fn run_cancelled(&mut self, r: HandleRef) {
        let cancelled = match self.handles.get_mut(r).map(|s| &mut s.data) {
            Some(HandleData::Tcp(t)) => std::mem::take(&mut t.cancelled),
            Some(HandleData::Udp(u)) => std::mem::take(&mut u.cancelled),
            _ => return,
        };
        for (req, cb) in cancelled {
            let kind = self
                .requests
                .get(req)
                .map_or(RequestType::Write, |s| s.kind);
            self.dispatch(
                Phase::Close,
                Target::Request(kind, req.id()),
                req.slot,
                move |lp| {
                    lp.finish_request(req);
                    cb(lp, Err(ecanceled()))
                },
            );
        }
    }

    /// Removes a finished request, recording its duration.
    pub(crate) fn finish_request(&mut self, req: RequestRef) {
        if let Some(slot) = self.requests.remove(req) {
            if self.instrument {
                let took = clock::now_ns().saturating_sub(slot.created_ns);
                self.stats.request_ns[slot.kind.index()].record(took);
            }
        }
    }
}
