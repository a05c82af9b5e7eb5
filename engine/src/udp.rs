//! UDP handles (libuv's `uv_udp_t`): bind, send requests (queued when the socket is full),
//! receive start/stop.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::Location;

use super::handle::{Handle, HandleData, HandleRef, IoCounters, CLOSING};
use super::phase::Phase;
use super::request::{RequestData, RequestRef};
use super::target::{HandleType, RequestType, Target};
use super::tcp::DoneCb;
use super::{EngineError, Loop};

/// Datagrams per readiness event before yielding to other handles.
const RECVS_PER_EVENT: usize = 32;

pub(crate) type RecvCb = Box<dyn FnMut(&mut Loop, Udp, io::Result<(&[u8], SocketAddr)>)>;

struct QueuedSend {
    req: RequestRef,
    data: Vec<u8>,
    to: SocketAddr,
    cb: Option<DoneCb>,
}

pub(crate) struct UdpData {
    sock: Option<mio::net::UdpSocket>,
    recv_cb: Option<RecvCb>,
    receiving: bool,
    readable_hint: bool,
    sends: VecDeque<QueuedSend>,
    pub(crate) cancelled: Vec<(RequestRef, DoneCb)>,
    pub(crate) fd: Option<i32>,
    pub(crate) io: IoCounters,
}

/// A UDP socket handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Udp(HandleRef);

impl Handle for Udp {
    fn raw(&self) -> HandleRef {
        self.0
    }
}

fn udp_mut(lp: &mut Loop, r: HandleRef) -> Result<&mut UdpData, EngineError> {
    match lp.handles.get_mut(r) {
        Some(s) if s.flags & CLOSING != 0 => Err(EngineError::Closed),
        Some(s) => match &mut s.data {
            HandleData::Udp(u) => Ok(u),
            _ => Err(EngineError::InvalidState("not a udp handle")),
        },
        None => Err(EngineError::Closed),
    }
}

impl Udp {
    /// Creates an unbound UDP handle.
    #[track_caller]
    pub fn new(lp: &mut Loop) -> Udp {
        let site = Location::caller();
        let data = HandleData::Udp(Box::new(UdpData {
            sock: None,
            recv_cb: None,
            receiving: false,
            readable_hint: false,
            sends: VecDeque::new(),
            cancelled: Vec::new(),
            fd: None,
            io: IoCounters::default(),
        }));
        Udp(lp.handles.insert(HandleType::Udp, data, site, lp.now_ns))
    }

    /// Binds to `addr` (port 0 picks one).
    ///
    /// # Errors
    /// Already bound, or the OS error.
    pub fn bind(&self, lp: &mut Loop, addr: SocketAddr) -> Result<(), EngineError> {
        if udp_mut(lp, self.0)?.sock.is_some() {
            return Err(EngineError::InvalidState("already bound"));
        }
        let mut sock = mio::net::UdpSocket::bind(addr)?;
        lp.poll.registry().register(
            &mut sock,
            super::token_for(self.0),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        let u = udp_mut(lp, self.0)?;
        u.fd = Some(fd);
        u.sock = Some(sock);
        Ok(())
    }

    /// The bound address.
    ///
    /// # Errors
    /// Not bound.
    pub fn local_addr(&self, lp: &mut Loop) -> Result<SocketAddr, EngineError> {
        match &udp_mut(lp, self.0)?.sock {
            Some(s) => Ok(s.local_addr()?),
            None => Err(EngineError::InvalidState("not bound")),
        }
    }

    /// Delivers each datagram (or receive error) to `cb`.
    ///
    /// # Errors
    /// Not bound, or closing.
    pub fn recv_start(
        &self,
        lp: &mut Loop,
        cb: impl FnMut(&mut Loop, Udp, io::Result<(&[u8], SocketAddr)>) + 'static,
    ) -> Result<(), EngineError> {
        let u = udp_mut(lp, self.0)?;
        if u.sock.is_none() {
            return Err(EngineError::InvalidState("recv_start needs a bound socket"));
        }
        u.recv_cb = Some(Box::new(cb));
        u.receiving = true;
        if std::mem::take(&mut u.readable_hint) {
            lp.io_again.push(self.0);
        }
        lp.handles.set_active(self.0, true);
        Ok(())
    }

    /// Stops receiving; datagrams wait in the kernel (and are dropped when it is full).
    pub fn recv_stop(&self, lp: &mut Loop) {
        if let Ok(u) = udp_mut(lp, self.0) {
            u.receiving = false;
            lp.udp_update_active(self.0);
        }
    }

    /// Sends `data` to `to`: at once if the socket takes it, else queued in order. `cb` runs
    /// when sent (in the pending phase if that was immediate).
    ///
    /// # Errors
    /// Not bound, or closing.
    #[track_caller]
    pub fn send(
        &self,
        lp: &mut Loop,
        data: Vec<u8>,
        to: SocketAddr,
        cb: Option<DoneCb>,
    ) -> Result<(), EngineError> {
        let site = Location::caller();
        let now = lp.now_ns;
        let u = udp_mut(lp, self.0)?;
        let Some(sock) = &u.sock else {
            return Err(EngineError::InvalidState("send needs a bound socket"));
        };
        let immediate = if u.sends.is_empty() {
            match sock.send_to(&data, to) {
                Ok(n) => Some(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => Some(Err(e)),
            }
        } else {
            None
        };
        let req = lp
            .requests
            .insert(RequestType::UdpSend, RequestData::Io, site, now);
        match immediate {
            Some(result) => {
                if let Ok(n) = &result {
                    lp.udp_note(self.0, 0, *n as u64);
                }
                let result = result.map(|_| ());
                lp.defer(
                    Target::Request(RequestType::UdpSend, req.id()),
                    req.slot,
                    Box::new(move |lp| {
                        lp.finish_request(req);
                        if let Some(cb) = cb {
                            cb(lp, result)
                        }
                    }),
                );
            }
            None => {
                udp_mut(lp, self.0)?
                    .sends
                    .push_back(QueuedSend { req, data, to, cb });
                lp.handles.set_active(self.0, true);
            }
        }
        Ok(())
    }
}

impl Loop {
    fn udp_update_active(&mut self, r: HandleRef) {
        let want = match self.handles.get(r).map(|s| &s.data) {
            Some(HandleData::Udp(u)) => u.receiving || !u.sends.is_empty(),
            _ => false,
        };
        self.handles.set_active(r, want);
    }

    fn udp_note(&mut self, r: HandleRef, read: u64, written: u64) {
        let now = self.last_clock.max(self.now_ns);
        if let Some(HandleData::Udp(u)) = self.handles.get_mut(r).map(|s| &mut s.data) {
            u.io.bytes_read += read;
            u.io.bytes_written += written;
            u.io.last_activity_ns = now;
        }
    }

    /// Poll phase: readiness on a UDP handle.
    pub(crate) fn udp_io(&mut self, r: HandleRef, readable: bool, writable: bool) {
        if writable {
            self.udp_flush(r);
        }
        if readable {
            let mut buf = std::mem::take(&mut self.read_buf);
            let drained = self.udp_recv_burst(r, &mut buf);
            self.read_buf = buf;
            if !drained {
                self.io_again.push(r);
            }
        }
    }

    fn udp_recv_burst(&mut self, r: HandleRef, buf: &mut [u8]) -> bool {
        for _ in 0..RECVS_PER_EVENT {
            let Ok(u) = udp_mut(self, r) else { return true };
            if !u.receiving {
                u.readable_hint = true;
                return true;
            }
            let Some(sock) = &u.sock else { return true };
            let result = match sock.recv_from(buf) {
                Ok((n, from)) => Ok((n, from)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let mut cb = u.recv_cb.take();
            if let Ok((n, _)) = &result {
                self.udp_note(r, *n as u64, 0);
            }
            if let Some(f) = cb.as_mut() {
                let target = Target::Handle(HandleType::Udp, r.id());
                let udp = Udp(r);
                let data = &buf[..];
                self.dispatch(Phase::Poll, target, r.slot, move |lp| match result {
                    Ok((n, from)) => f(lp, udp, Ok((&data[..n], from))),
                    Err(e) => f(lp, udp, Err(e)),
                });
            }
            if let Ok(u) = udp_mut(self, r) {
                if u.recv_cb.is_none() {
                    u.recv_cb = cb;
                }
            }
        }
        false
    }

    fn udp_flush(&mut self, r: HandleRef) {
        let mut done = Vec::new();
        let mut written = 0u64;
        if let Ok(u) = udp_mut(self, r) {
            let Some(sock) = &u.sock else { return };
            while let Some(front) = u.sends.front() {
                let result = match sock.send_to(&front.data, front.to) {
                    Ok(n) => {
                        written += n as u64;
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => Err(e),
                };
                if let Some(s) = u.sends.pop_front() {
                    done.push((s.req, s.cb, result));
                }
            }
        }
        if written > 0 {
            self.udp_note(r, 0, written);
        }
        self.udp_update_active(r);
        for (req, cb, result) in done {
            match cb {
                Some(cb) => self.dispatch(
                    Phase::Poll,
                    Target::Request(RequestType::UdpSend, req.id()),
                    req.slot,
                    move |lp| {
                        lp.finish_request(req);
                        cb(lp, result)
                    },
                ),
                None => self.finish_request(req),
            }
        }
    }

    /// Closing a UDP handle: deregisters and closes the socket; queued sends fail with
    /// `ECANCELED` in the close phase.
    pub(crate) fn udp_close(&mut self, r: HandleRef) {
        let registry = self.poll.registry();
        let Some(HandleData::Udp(u)) = self.handles.get_mut(r).map(|s| &mut s.data) else {
            return;
        };
        if let Some(mut sock) = u.sock.take() {
            let _ = registry.deregister(&mut sock);
        }
        u.receiving = false;
        u.recv_cb = None;
        let mut silent = Vec::new();
        for s in u.sends.drain(..) {
            match s.cb {
                Some(cb) => u.cancelled.push((s.req, cb)),
                None => silent.push(s.req),
            }
        }
        self.handles.set_active(r, false);
        for req in silent {
            self.finish_request(req);
        }
    }
}
