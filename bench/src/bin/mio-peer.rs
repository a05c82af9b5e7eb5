//! `mio-peer echo [--n N] [--conns C]`: the floor of the network scenarios — a raw
//! `mio` echo server with no event-loop library around it, our own code.
//!
//! Edge-triggered, as mio is: each socket is registered once for reading and writing;
//! on readiness it reads until `WouldBlock` into one reused buffer and writes each
//! chunk straight back; whatever the socket does not take is kept and flushed on the
//! next writable event (reads pause meanwhile). Prints the port on stdout (first line),
//! serves `conns` connections, closes the listener after the last accept and exits when
//! every connection has closed. Exits 3 for any other scenario (the harness shows n/a).
#![allow(clippy::print_stdout)]

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, ensure, Context as _, Result};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const EXIT_UNSUPPORTED: u8 = 3;
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written back (the socket's send buffer was full).
    pending: Vec<u8>,
}

fn main() -> ExitCode {
    let mut it = std::env::args().skip(1);
    let scenario = it.next().unwrap_or_default();
    if scenario != "echo" {
        eprintln!("mio-peer: no scenario {scenario:?} (only echo)");
        return ExitCode::from(EXIT_UNSUPPORTED);
    }
    let mut conns = 1u64;
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0);
        match (a.as_str(), v) {
            ("--conns", Some(v)) => conns = v,
            ("--n" | "--inflight", Some(_)) => {}
            _ => {
                eprintln!("mio-peer: bad argument {a}\nusage: mio-peer echo [--n N] [--conns C]");
                return ExitCode::from(64);
            }
        }
    }
    match serve(conns) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mio-peer: echo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(conns_wanted: u64) -> Result<()> {
    let mut poll = Poll::new().context("creating the poll")?;
    let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .context("binding 127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let mut listener = Some(TcpListener::from_std(std_listener));
    let port = match &mut listener {
        Some(l) => {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
            l.local_addr()?.port()
        }
        None => bail!("no listener"),
    };
    println!("{port}");

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut open = 0u64;
    let mut accepted = 0u64;
    let mut closed = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    while listener.is_some() || open > 0 {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                let Some(l) = &listener else { continue };
                loop {
                    match l.accept() {
                        Ok((mut stream, _)) => {
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry().register(
                                &mut stream,
                                Token(slot),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            conns[slot] = Some(Conn {
                                stream,
                                pending: Vec::new(),
                            });
                            open += 1;
                            accepted += 1;
                            if accepted == conns_wanted {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e).context("accept"),
                    }
                }
                if accepted == conns_wanted {
                    if let Some(mut l) = listener.take() {
                        poll.registry().deregister(&mut l)?;
                    }
                }
                continue;
            }
            let slot = ev.token().0;
            let Some(Some(conn)) = conns.get_mut(slot) else {
                continue;
            };
            if serve_conn(conn, &mut buf).is_err() {
                if let Some(mut c) = conns[slot].take() {
                    poll.registry().deregister(&mut c.stream)?;
                }
                free.push(slot);
                open -= 1;
                closed += 1;
            }
        }
    }
    ensure!(
        accepted == conns_wanted && closed == conns_wanted,
        "accepted {accepted}, closed {closed} of {conns_wanted} connections"
    );
    println!("{{\"accepted\":{accepted}}}");
    Ok(())
}

/// Flushes what is pending, then reads until `WouldBlock`, echoing each chunk.
/// `Err` means the connection is done (EOF or an error) and is to be closed.
fn serve_conn(conn: &mut Conn, buf: &mut [u8]) -> io::Result<()> {
    if !conn.pending.is_empty() {
        let n = write_some(&mut conn.stream, &conn.pending)?;
        conn.pending.drain(..n);
        if !conn.pending.is_empty() {
            return Ok(()); // still full: wait for the next writable edge
        }
    }
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let w = write_some(&mut conn.stream, &buf[..n])?;
        if w < n {
            conn.pending.extend_from_slice(&buf[w..n]);
            return Ok(()); // reads pause until the writable edge flushes this
        }
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < data.len() {
        match stream.write(&data[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}
