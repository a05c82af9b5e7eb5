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
    /// [`Client::PingPong`] with a pause after each echo, long enough for a server under
    /// valgrind to finish the round trip and go back to waiting for readiness before the
    /// next request arrives. `--callgrind` uses it: without it, whether a slowed-down
    /// server finds the next request already there (one `recv` and no `epoll_wait` per
    /// round trip) or not (a `recv` that would block, then `epoll_wait`) depends on timing,
    /// and the instruction counts swing by 2× from run to run.
    PingPongPaced {
        /// Pause after each echo, microseconds.
        pause_us: u64,
    },
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
    /// Bulk throughput on one connection (libuv's pump): write `n` MiB of a
    /// deterministic pattern in 64 KiB writes while reading the echoes back
    /// concurrently (one non-blocking mio loop), verifying every byte.
    Pump,
    /// Memory per idle connection: [`IDLE_WARM`] warm-up connections, sample the
    /// server's RSS, open `n` more (each echoes one byte, so the server has accepted and
    /// is reading it), sample the RSS again with all of them open and idle, close them all.
    IdleMemory,
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

/// Runs `client` against `addr` (served by process `server_pid`); fails if anything is
/// not echoed exactly or `deadline` passes.
pub fn run(
    client: Client,
    addr: SocketAddr,
    server_pid: u32,
    n: u64,
    conns: u64,
    deadline: Instant,
) -> Result<ClientResult> {
    match client {
        Client::PingPong => ping_pong(addr, n, Duration::ZERO, deadline),
        Client::PingPongPaced { pause_us } => {
            ping_pong(addr, n, Duration::from_micros(pause_us), deadline)
        }
        Client::PingPongMany => ping_pong_many(addr, n, conns, deadline),
        Client::Pound { concurrency } => pound(addr, n, concurrency, deadline),
        Client::Pump => pump(addr, n, deadline),
        Client::IdleMemory => idle_memory(addr, server_pid, n, deadline),
    }
}

pub fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("the client ran out of time");
    }
    Ok(left)
}

fn ping_pong(addr: SocketAddr, n: u64, pause: Duration, deadline: Instant) -> Result<ClientResult> {
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
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(s);
    Ok(ClientResult {
        ops: n,
        seconds,
        extra: json!({
            "client": "blocking, 1 connection",
            "message_bytes": PING.len(),
            "pause_us": pause.as_micros(),
        }),
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

/// Bytes per write of the pump client (the size of a bulk sender's writes, and of
/// libuv's and our peers' read buffers).
pub const PUMP_CHUNK: usize = 64 * 1024;

/// The period of the pump's byte pattern: prime, so it is never a multiple of a chunk,
/// and a lost, duplicated or reordered chunk (or any shorter slice) shows as wrong bytes.
const PATTERN_PERIOD: usize = 251;

/// The pump's pattern from stream offset `pos` on, `len` bytes (at most
/// [`PUMP_CHUNK`]), as a slice of `pattern` (which is `PUMP_CHUNK + PATTERN_PERIOD` long).
fn pattern_at(pattern: &[u8], pos: u64, len: usize) -> &[u8] {
    // The remainder is below 251, so the cast cannot truncate.
    let start = (pos % PATTERN_PERIOD as u64) as usize;
    &pattern[start..start + len]
}

fn make_pattern() -> Vec<u8> {
    (0..PUMP_CHUNK + PATTERN_PERIOD)
        .map(|i| u8::try_from(i % PATTERN_PERIOD).unwrap_or(0))
        .collect()
}

/// One `poll` until `deadline` (an interrupted wait is no error).
pub fn poll_once(poll: &mut Poll, events: &mut Events, deadline: Instant) -> Result<()> {
    match poll.poll(events, Some(remaining(deadline)?)) {
        Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e).context("poll"),
        _ => Ok(()),
    }
}

fn pump(addr: SocketAddr, mib: u64, deadline: Instant) -> Result<ClientResult> {
    let total = mib * 1024 * 1024;
    let pattern = make_pattern();
    let s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_nonblocking(true)?;
    let mut stream = TcpStream::from_std(s);
    let mut poll = Poll::new()?;
    poll.registry().register(
        &mut stream,
        Token(0),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; PUMP_CHUNK];
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut writes, mut short_writes) = (0u64, 0u64);
    let start = Instant::now();
    // Edge-triggered: every wake-up writes until the socket refuses and reads until it
    // is empty, whichever side woke us.
    while received < total {
        while sent < total {
            let in_chunk = usize::try_from(sent % PUMP_CHUNK as u64)?;
            let left = usize::try_from((total - sent).min((PUMP_CHUNK - in_chunk) as u64))?;
            match stream.write(pattern_at(&pattern, sent, left)) {
                Ok(0) => bail!("the server stopped taking data"),
                Ok(k) => {
                    writes += 1;
                    if k < left {
                        short_writes += 1;
                    }
                    sent += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("write"),
            }
        }
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    bail!("the server closed the connection after {received} of {total} bytes")
                }
                Ok(k) => {
                    ensure!(
                        received + k as u64 <= sent,
                        "more bytes echoed than sent ({} > {sent})",
                        received + k as u64
                    );
                    ensure!(
                        buf[..k] == *pattern_at(&pattern, received, k),
                        "wrong bytes echoed at offset {received}..{}",
                        received + k as u64
                    );
                    received += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("read"),
            }
        }
        if received < total {
            poll_once(&mut poll, &mut events, deadline)?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(stream);
    Ok(ClientResult {
        ops: mib,
        seconds,
        extra: json!({
            "client": "one mio loop, writing and reading concurrently",
            "bytes": total,
            "write_bytes": PUMP_CHUNK,
            "writes": writes,
            "short_writes": short_writes,
            "verified": "every byte (a period-251 pattern)",
        }),
    })
}

/// VmRSS of process `pid`, in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Opens `n` connections to `addr`, at most `concurrency` connecting at a time, each
/// sending `send` once connected and waiting for the one byte `expect`; returns them open
/// (and idle) once every one has had its answer, i.e. the server has accepted each and is
/// reading it. An echo server: `send` `b"m"`, `expect` `b'm'`; loopd's seq service greets
/// every connection with `*`: `send` `b""`, `expect` `b'*'`.
pub fn open_confirmed(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    (send, expect): (&[u8], u8),
    deadline: Instant,
) -> Result<Vec<TcpStream>> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    // Connection i has token i; `None` once echoed (moved to `done`).
    let mut conns: Vec<Option<(TcpStream, bool)>> = Vec::with_capacity(n);
    let mut done: Vec<TcpStream> = Vec::with_capacity(n);
    let mut in_flight = 0usize;
    while done.len() < n {
        while conns.len() < n && in_flight < concurrency {
            let mut stream = TcpStream::connect(addr).with_context(|| {
                format!("connect {addr} (connection {} of {n})", conns.len() + 1)
            })?;
            poll.registry().register(
                &mut stream,
                Token(conns.len()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Some((stream, false)));
            in_flight += 1;
        }
        poll_once(&mut poll, &mut events, deadline)?;
        for ev in events.iter() {
            let id = ev.token().0;
            let Some(slot) = conns.get_mut(id) else {
                continue;
            };
            let Some((stream, sent)) = slot.as_mut() else {
                continue;
            };
            if !*sent {
                if let Some(e) = stream.take_error()? {
                    return Err(e).with_context(|| format!("connection {id}"));
                }
                match stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => return Err(e).with_context(|| format!("connection {id}")),
                }
                stream.write_all(send).context("send")?;
                *sent = true;
            }
            let mut b = [0u8; 8];
            match stream.read(&mut b) {
                Ok(1) if b[0] == expect => {
                    if let Some((mut stream, _)) = slot.take() {
                        poll.registry().deregister(&mut stream)?;
                        done.push(stream);
                        in_flight -= 1;
                    }
                }
                Ok(0) => bail!("the server closed connection {id} before answering"),
                Ok(k) => bail!("connection {id}: answered {:?}, not {expect:?}", &b[..k]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("connection {id}")),
            }
        }
    }
    Ok(done)
}

/// Connections `idle_memory` opens (and keeps open) before its baseline, and how many of
/// the measured ones connect at a time. The scenario's `conns` is n + this.
pub const IDLE_WARM: usize = 100;

fn idle_memory(addr: SocketAddr, pid: u32, n: u64, deadline: Instant) -> Result<ClientResult> {
    let n_usize = usize::try_from(n)?;
    // IDLE_WARM connections first, opened the way the measured ones will be (as many
    // connecting at a time), so that whatever the server allocates once, and the
    // allocator's high-water mark of per-read buffers in flight (libuv's echo mallocs
    // 64 KiB per read), are in the baseline; they stay open.
    let warm = open_confirmed(addr, IDLE_WARM, IDLE_WARM, (b"m", b'm'), deadline)?;
    std::thread::sleep(Duration::from_millis(100));
    let before = rss_kib(pid)?;
    let start = Instant::now();
    let conns = open_confirmed(addr, n_usize, IDLE_WARM, (b"m", b'm'), deadline)?;
    let seconds = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    let with = rss_kib(pid)?;
    drop(conns);
    drop(warm);
    let delta = i128::from(with) - i128::from(before);
    let per_conn = delta as f64 * 1024.0 / n as f64;
    Ok(ClientResult {
        ops: n,
        seconds,
        extra: json!({
            "client": "one mio loop, 100 connecting at a time, 1 byte echoed each, then idle",
            "warm_connections": IDLE_WARM,
            "rss_before_kib": before,
            "rss_with_kib": with,
            "bytes_per_connection": per_conn,
            "bytes_per_op": per_conn,
        }),
    })
}
