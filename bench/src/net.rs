//! The clients of the network scenarios. They run in the harness process, the same code
//! for every peer, so only the server (the peer process) differs; the server's CPU time
//! comes from `wait4` once it has served its connections and exited.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

/// The message of the ping-pong scenarios (libuv's `benchmark-ping-pongs.c` sends
/// `"PING"`; the newline makes a capture readable).
pub const PING: &[u8] = b"PING\n";

/// Which client a network scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// One blocking connection (`TCP_NODELAY`): send [`PING`], read the echo back in
    /// full, verify it, send again; `n` round trips.
    PingPong,
    /// `conns` connections, each ping-ponging on its own (send on receipt), driven by
    /// one edge-triggered mio loop; `n` round trips in total.
    PingPongMany,
    /// `n` connections, `concurrency` at a time (one mio loop): connect, send one
    /// byte, read it back, close with a reset (`SO_LINGER` 0, so no `TIME_WAIT` piles
    /// up over many runs), and open the next.
    Pound {
        /// Connections in flight.
        concurrency: usize,
    },
}

/// What a client measured.
#[derive(Debug)]
pub struct ClientResult {
    /// Round trips or connections done.
    pub ops: u64,
    /// Wall seconds from the first send (or connect) to the last echo.
    pub seconds: f64,
    /// Client-side details (connections, bytes verified).
    pub extra: Value,
}

/// Runs `client` against `addr`; fails if anything is not echoed exactly or `deadline`
/// passes.
pub fn run(
    client: Client,
    addr: SocketAddr,
    n: u64,
    conns: u64,
    deadline: Instant,
) -> Result<ClientResult> {
    match client {
        Client::PingPong => ping_pong(addr, n, deadline),
        Client::PingPongMany => ping_pong_many(addr, n, conns, deadline),
        Client::Pound { concurrency } => pound(addr, n, concurrency, deadline),
    }
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("the client ran out of time");
    }
    Ok(left)
}

fn ping_pong(addr: SocketAddr, n: u64, deadline: Instant) -> Result<ClientResult> {
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(remaining(deadline)?))?;
    let mut back = [0u8; PING.len()];
    let start = Instant::now();
    for i in 0..n {
        s.write_all(PING).context("send")?;
        s.read_exact(&mut back)
            .with_context(|| format!("reading echo {i}"))?;
        ensure!(back == PING, "echo {i} was {back:?}, not {PING:?}");
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(s);
    Ok(ClientResult {
        ops: n,
        seconds,
        extra: json!({ "client": "blocking, 1 connection", "message_bytes": PING.len() }),
    })
}

struct Pinger {
    stream: TcpStream,
    got: usize,
    buf: [u8; 64],
}

fn ping_pong_many(addr: SocketAddr, n: u64, conns: u64, deadline: Instant) -> Result<ClientResult> {
    let mut poll = Poll::new()?;
    let mut pingers = Vec::new();
    for i in 0..conns {
        // Connected blocking first, so that the clock starts with every connection up.
        let s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(usize::try_from(i)?), Interest::READABLE)?;
        pingers.push(Pinger {
            stream,
            got: 0,
            buf: [0; 64],
        });
    }
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    for p in &mut pingers {
        if sent < n {
            p.stream.write_all(PING).context("send")?;
            sent += 1;
        }
    }
    while done < n {
        poll.poll(&mut events, Some(remaining(deadline)?))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        for ev in events.iter() {
            let Some(p) = pingers.get_mut(ev.token().0) else {
                continue;
            };
            loop {
                match p.stream.read(&mut p.buf[p.got..]) {
                    Ok(0) => bail!("the server closed connection {}", ev.token().0),
                    Ok(k) => p.got += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("read"),
                }
                ensure!(p.got <= PING.len(), "more bytes echoed than sent");
                if p.got == PING.len() {
                    ensure!(&p.buf[..PING.len()] == PING, "wrong echo {:?}", &p.buf[..5]);
                    p.got = 0;
                    done += 1;
                    if sent < n {
                        // A 5-byte write to an idle socket is taken whole.
                        p.stream.write_all(PING).context("send")?;
                        sent += 1;
                    }
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(pingers);
    Ok(ClientResult {
        ops: n,
        seconds,
        extra: json!({ "client": "one mio loop", "connections": conns, "message_bytes": PING.len() }),
    })
}

enum PoundState {
    Connecting,
    AwaitEcho,
}

struct Pounder {
    stream: TcpStream,
    state: PoundState,
}

fn pound(addr: SocketAddr, n: u64, concurrency: usize, deadline: Instant) -> Result<ClientResult> {
    let mut poll = Poll::new()?;
    // Indexed by connection number (the token), so a late event of a closed connection
    // can never be taken for its successor's.
    let mut conns: Vec<Option<Pounder>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let open = |poll: &mut Poll, conns: &mut Vec<Option<Pounder>>| -> Result<()> {
        let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        poll.registry().register(
            &mut stream,
            Token(conns.len()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Some(Pounder {
            stream,
            state: PoundState::Connecting,
        }));
        Ok(())
    };
    let n_usize = usize::try_from(n)?;
    let start = Instant::now();
    while conns.len() < n_usize.min(concurrency) {
        open(&mut poll, &mut conns)?;
    }
    let mut done = 0usize;
    let mut retire: VecDeque<usize> = VecDeque::new();
    while done < n_usize {
        poll.poll(&mut events, Some(remaining(deadline)?))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        for ev in events.iter() {
            let id = ev.token().0;
            let Some(Some(c)) = conns.get_mut(id) else {
                continue;
            };
            if matches!(c.state, PoundState::Connecting) {
                if let Some(e) = c.stream.take_error()? {
                    return Err(e).with_context(|| format!("connection {id}"));
                }
                match c.stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => return Err(e).with_context(|| format!("connection {id}")),
                }
                c.stream.set_nodelay(true)?;
                c.stream.write_all(b"x").context("send")?;
                c.state = PoundState::AwaitEcho;
            }
            let mut b = [0u8; 8];
            match c.stream.read(&mut b) {
                Ok(1) if b[0] == b'x' => retire.push_back(id),
                Ok(0) => bail!("the server closed connection {id} before echoing"),
                Ok(k) => bail!("connection {id}: wrong echo {:?}", &b[..k]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("connection {id}")),
            }
        }
        while let Some(id) = retire.pop_front() {
            if let Some(mut c) = conns.get_mut(id).and_then(Option::take) {
                poll.registry().deregister(&mut c.stream)?;
                socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO))?;
                drop(c);
                done += 1;
                if conns.len() < n_usize {
                    open(&mut poll, &mut conns)?;
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(ClientResult {
        ops: n,
        seconds,
        extra: json!({
            "client": "one mio loop",
            "concurrency": concurrency,
            "close": "reset (SO_LINGER 0)",
        }),
    })
}
