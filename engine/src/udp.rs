//! UDP handles (libuv's `uv_udp_t`): bind, send requests (queued when the socket is full),
//! receive start/stop.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::Location;

use super::handle::{Handle, HandleData, HandleRef, IoCounters};
use super::io_request::{DoneCb, IoRequest, When};
use super::phase::Phase;
use super::target::{HandleType, RequestType};
use super::token;
use super::{EngineError, Loop};

/// Datagrams per readiness event before yielding to other handles.
const RECVS_PER_EVENT: usize = 32;

pub(crate) type RecvCb = Box<dyn FnMut(&mut Loop, Udp, io::Result<(&[u8], SocketAddr)>)>;

/// A send waiting for the socket.
struct QueuedSend {
    io: IoRequest,
    data: Vec<u8>,
    to: SocketAddr,
}

pub(crate) struct UdpData {
    sock: Option<mio::net::UdpSocket>,
    recv_cb: Option<RecvCb>,
    receiving: bool,
    readable_hint: bool,
    sends: VecDeque<QueuedSend>,
    /// Sends to fail with `ECANCELED` in the close phase, before the close callback.
    pub(crate) cancelled: Vec<IoRequest>,
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
    lp.handles
        .open_data_mut::<Box<UdpData>>(r)
        .map(|u| &mut **u)
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
            token::for_handle(self.0)?,
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
        let (now, io_now) = (lp.now_ns, lp.io_now());
        let u = lp.handles.open_data_mut::<Box<UdpData>>(self.0)?;
        let Some(sock) = &u.sock else {
            return Err(EngineError::InvalidState("send needs a bound socket"));
        };
        // Straight to the socket unless earlier sends wait: order holds.
        let sent = if u.sends.is_empty() {
            match sock.send_to(&data, to) {
                Ok(n) => Some(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => Some(Err(e)),
            }
        } else {
            None
        };
        if let Some(Ok(n)) = sent {
            u.io.note(0, n as u64, io_now);
        }
        match sent {
            None => {
                let io = IoRequest::start(&mut lp.requests, RequestType::UdpSend, site, now, cb);
                u.sends.push_back(QueuedSend { io, data, to });
                lp.handles.set_active(self.0, true);
            }
            Some(result) => {
                if cb.is_some() {
                    let io =
                        IoRequest::start(&mut lp.requests, RequestType::UdpSend, site, now, cb);
                    lp.complete_io(io, result.map(|_| ()), When::Pending(self.0));
                } else {
                    // Done at once and nobody waits for it: counted, never listed.
                    lp.count_instant_io(RequestType::UdpSend);
                }
            }
        }
        Ok(())
    }
}

impl Loop {
    fn udp_update_active(&mut self, r: HandleRef) {
        let want = self
            .handles
            .data::<Box<UdpData>>(r)
            .is_some_and(|u| u.receiving || !u.sends.is_empty());
        self.handles.set_active(r, want);
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
            let now = self.io_now();
            let Ok(u) = udp_mut(self, r) else { return true };
            if !u.receiving {
                u.readable_hint = true;
                return true;
            }
            let Some(sock) = &u.sock else { return true };
            let received = match sock.recv_from(buf) {
                Ok((n, from)) => {
                    u.io.note(n as u64, 0, now);
                    Ok((&buf[..n], from))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let udp = Udp(r);
            self.run_handle_callback(
                Phase::Poll,
                r,
                |u: &mut Box<UdpData>| &mut u.recv_cb,
                |lp, f| f(lp, udp, received),
            );
        }
        false
    }

    fn udp_flush(&mut self, r: HandleRef) {
        let mut done = Vec::new();
        let now = self.io_now();
        if let Ok(u) = udp_mut(self, r) {
            let mut written = 0u64;
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
                    done.push((s.io, result));
                }
            }
            if written > 0 {
                u.io.note(0, written, now);
            }
        }
        self.udp_update_active(r);
        for (io, result) in done {
            self.complete_io(io, result, When::Now(Phase::Poll));
        }
    }

    /// Closing a UDP handle: deregisters and closes the socket; queued sends fail with
    /// `ECANCELED` in the close phase.
    pub(crate) fn udp_close(&mut self, r: HandleRef) {
        let registry = self.poll.registry();
        let Some(u) = self.handles.data_mut::<Box<UdpData>>(r) else {
            return;
        };
        if let Some(mut sock) = u.sock.take() {
            let _ = registry.deregister(&mut sock);
        }
        u.receiving = false;
        u.recv_cb = None;
        let sends = u.sends.drain(..).map(|s| s.io);
        u.cancelled.extend(sends);
        self.handles.set_active(r, false);
    }
}
