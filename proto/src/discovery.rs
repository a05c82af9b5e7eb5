//! Finding every observable loop on the machine: the sockets in the runtime directory, each
//! asked for its `hello` and `status`.
//!
//! Every endpoint announces itself in one directory (DESIGN §5): the daemon's `control.sock`
//! and each program's `<program>-<pid>.sock` (programs on loopd's library, libuv programs with
//! the agent) live in `$XDG_RUNTIME_DIR/loopd/`, else `/tmp/loopd-<uid>/`. [`discover`] lists
//! the `*.sock` files there and [`probe`]s each: connect, read `hello`, ask `status`, all
//! within a short deadline. A socket nobody listens on (a process that died without removing
//! it) is reported as [`Unreachable::stale`] and left where it is: only its owner's next start
//! replaces it.
//!
//! This lives in `proto`, beside the wire types it reads, because both clients (`loopctl ls`
//! and loop-top's fleet view) need the same directory rule and the same probe, and it needs
//! nothing beyond `std` and the protocol's own codec.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let dir = proto::discovery::runtime_dir();
//! let scan = proto::discovery::discover(&dir, Duration::from_secs(1));
//! for p in &scan.probes {
//!     match &p.outcome {
//!         Ok(a) => println!("{} pid {}: {} loops", a.hello.host.program, a.status.pid, a.status.loops.len()),
//!         Err(u) => println!("{}: {}", p.socket.display(), u.reason),
//!     }
//! }
//! ```

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::methods::HELLO;
use crate::{
    encode, Hello, Id, LineDecoder, Message, MethodCall, Status, MAX_SERVER_LINE_LEN,
    PROTOCOL_VERSION,
};

/// At most this many sockets are probed at once (one short-lived thread each).
pub const MAX_PARALLEL: usize = 32;

/// At most this many sockets of one directory are looked at; the rest are reported as skipped.
pub const MAX_SOCKETS: usize = 1024;

/// The runtime directory of the socket rule: `$XDG_RUNTIME_DIR/loopd`, else
/// `/tmp/loopd-<uid>` (empty variables count as unset). `$LOOPD_SOCKET` names one socket, not
/// a directory, so it plays no part here.
pub fn runtime_dir() -> PathBuf {
    runtime_dir_from(std::env::var_os("XDG_RUNTIME_DIR"), current_uid())
}

/// [`runtime_dir`] with its inputs given.
///
/// # Examples
///
/// ```
/// use std::path::PathBuf;
/// use proto::discovery::runtime_dir_from;
///
/// assert_eq!(runtime_dir_from(Some("/run/user/7".into()), 7), PathBuf::from("/run/user/7/loopd"));
/// assert_eq!(runtime_dir_from(Some("".into()), 7), PathBuf::from("/tmp/loopd-7"));
/// ```
pub fn runtime_dir_from(xdg_runtime_dir: Option<std::ffi::OsString>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("loopd"),
        None => PathBuf::from(format!("/tmp/loopd-{uid}")),
    }
}

/// The uid of this process, read without `unsafe` from the owner of `/proc/self`.
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// What one endpoint answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Its `hello`.
    pub hello: Hello,
    /// Its `status`.
    pub status: Status,
}

/// Why an endpoint did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// In words, e.g. `connection refused: nobody listens (a stale socket)`.
    pub reason: String,
    /// Nobody listens on the socket: its process is gone (the file is left alone).
    pub stale: bool,
}

/// One socket and what came of asking it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The socket's path.
    pub socket: PathBuf,
    /// Its answer, or why there was none.
    pub outcome: Result<Answer, Unreachable>,
}

/// Every socket of a directory, probed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scan {
    /// The directory looked in.
    pub dir: PathBuf,
    /// One per socket, in file-name order.
    pub probes: Vec<Probe>,
    /// The directory could not be read (it does not exist when nothing ever ran).
    pub error: Option<String>,
    /// Sockets beyond [`MAX_SOCKETS`], not probed.
    pub skipped: usize,
}

impl Scan {
    /// The endpoints that answered.
    pub fn answered(&self) -> impl Iterator<Item = (&Path, &Answer)> {
        self.probes
            .iter()
            .filter_map(|p| p.outcome.as_ref().ok().map(|a| (p.socket.as_path(), a)))
    }
}

/// The `*.sock` files of `dir` that are sockets, in file-name order.
///
/// # Errors
///
/// When `dir` cannot be read.
pub fn list_sockets(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if path.extension() != Some(std::ffi::OsStr::new("sock")) {
            continue;
        }
        // `file_type` does not follow symlinks: a link is not one of our sockets.
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Lists the sockets of `dir` and probes each (in parallel, [`MAX_PARALLEL`] at a time), each
/// within `timeout`.
pub fn discover(dir: &Path, timeout: Duration) -> Scan {
    let mut scan = Scan {
        dir: dir.to_owned(),
        ..Scan::default()
    };
    let mut sockets = match list_sockets(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            scan.error = Some(format!(
                "{} does not exist (no loopd or agent has run as this user)",
                dir.display()
            ));
            return scan;
        }
        Err(e) => {
            scan.error = Some(format!("cannot read {}: {e}", dir.display()));
            return scan;
        }
    };
    if sockets.len() > MAX_SOCKETS {
        scan.skipped = sockets.len() - MAX_SOCKETS;
        sockets.truncate(MAX_SOCKETS);
    }
    scan.probes = probe_all(&sockets, timeout);
    scan
}

/// Probes every socket of `sockets` ([`MAX_PARALLEL`] at a time), in their order.
pub fn probe_all(sockets: &[PathBuf], timeout: Duration) -> Vec<Probe> {
    let mut out = Vec::with_capacity(sockets.len());
    for chunk in sockets.chunks(MAX_PARALLEL) {
        std::thread::scope(|s| {
            let running: Vec<_> = chunk
                .iter()
                .map(|path| (path, s.spawn(move || probe(path, timeout))))
                .collect();
            for (path, t) in running {
                out.push(t.join().unwrap_or_else(|_| Probe {
                    socket: path.clone(),
                    outcome: Err(Unreachable {
                        reason: "the probe failed".into(),
                        stale: false,
                    }),
                }));
            }
        });
    }
    out
}

/// Connects to `socket`, reads its `hello` and asks for `status`, all within `timeout`.
pub fn probe(socket: &Path, timeout: Duration) -> Probe {
    Probe {
        socket: socket.to_owned(),
        outcome: ask(socket, timeout),
    }
}

fn unreachable(reason: impl Into<String>) -> Unreachable {
    Unreachable {
        reason: reason.into(),
        stale: false,
    }
}

fn ask(socket: &Path, timeout: Duration) -> Result<Answer, Unreachable> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket).map_err(|e| connect_error(socket, &e))?;
    let mut reader = Lines {
        decoder: LineDecoder::with_limit(MAX_SERVER_LINE_LEN),
        pending: Vec::new(),
        deadline,
    };
    let hello = loop {
        let line = reader.next(&mut stream, "send its hello")?;
        match Message::parse(&line) {
            Ok(Message::Notification(n)) if n.method == HELLO => {
                let h: Hello = n
                    .params
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| unreachable(format!("unreadable hello: {e}")))?
                    .unwrap_or_default();
                break h;
            }
            Ok(Message::Response(r)) => {
                let why = match r.outcome {
                    Err(e) => e.message,
                    Ok(_) => "an answer before its hello".into(),
                };
                return Err(unreachable(format!("refused the connection: {why}")));
            }
            Ok(_) => continue,
            Err(e) => return Err(unreachable(format!("does not speak the protocol: {e}"))),
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(unreachable(format!(
            "speaks control protocol version {} (this client speaks {PROTOCOL_VERSION})",
            hello.protocol_version
        )));
    }
    let request = MethodCall::Status.into_request(Id::Number(1));
    let bytes = encode(&request).map_err(|e| unreachable(e.to_string()))?;
    stream
        .set_write_timeout(Some(left(deadline)))
        .and_then(|()| stream.write_all(&bytes))
        .map_err(|e| unreachable(format!("cannot ask for status: {e}")))?;
    loop {
        let line = reader.next(&mut stream, "answer `status`")?;
        match Message::parse(&line) {
            Ok(Message::Response(r)) if r.id == Some(Id::Number(1)) => {
                let value = r
                    .outcome
                    .map_err(|e| unreachable(format!("refused `status`: {}", e.message)))?;
                let status: Status = serde_json::from_value(value)
                    .map_err(|e| unreachable(format!("unreadable status: {e}")))?;
                return Ok(Answer { hello, status });
            }
            Ok(_) => continue,
            Err(e) => return Err(unreachable(format!("does not speak the protocol: {e}"))),
        }
    }
}

/// The time left until `deadline`, never zero (a zero timeout means "none" to the socket).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn connect_error(socket: &Path, e: &io::Error) -> Unreachable {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Unreachable {
            reason: "connection refused: nobody listens (a stale socket; left in place)".into(),
            stale: true,
        },
        io::ErrorKind::NotFound => unreachable(format!("{} is gone", socket.display())),
        io::ErrorKind::PermissionDenied => {
            unreachable("permission denied: the socket belongs to another user")
        }
        _ => unreachable(format!("cannot connect: {e}")),
    }
}

/// Lines read from the socket until a deadline.
struct Lines {
    decoder: LineDecoder,
    pending: Vec<String>,
    deadline: Instant,
}

impl Lines {
    fn next(&mut self, stream: &mut UnixStream, what: &str) -> Result<String, Unreachable> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let timed_out = || unreachable(format!("did not {what} in time"));
            if Instant::now() >= self.deadline {
                return Err(timed_out());
            }
            stream
                .set_read_timeout(Some(left(self.deadline)))
                .map_err(|e| unreachable(e.to_string()))?;
            let n = match stream.read(&mut buf) {
                Ok(0) => {
                    return Err(unreachable(format!(
                        "closed the connection before it would {what}"
                    )))
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreachable(format!("lost the connection: {e}"))),
            };
            for line in self.decoder.feed(&buf[..n]) {
                match line {
                    Ok(l) => self.pending.push(l),
                    Err(e) => return Err(unreachable(format!("does not speak the protocol: {e}"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("proto-discovery-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fake endpoint answering one connection: hello, then `status` with `pid`.
    fn serve_one(listener: UnixListener, pid: u32) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let hello = crate::Notification::new(
                "hello",
                Some(
                    serde_json::json!({"protocol_version": PROTOCOL_VERSION, "pid": pid, "loops": 2,
                    "host": {"kind": "agent", "program": "node"}}),
                ),
            );
            s.write_all(&encode(&hello).unwrap()).unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.contains("\"status\""), "{line}");
            let status = serde_json::json!({"pid": pid, "loops": [{"loop": 0}, {"loop": 1}]});
            let answer = crate::Response::ok(Id::Number(1), status);
            s.write_all(&encode(&answer).unwrap()).unwrap();
        })
    }

    #[test]
    fn finds_live_and_stale_sockets_and_ignores_other_files() {
        let dir = temp_dir("scan");
        let live = UnixListener::bind(dir.join("node-77.sock")).unwrap();
        let server = serve_one(live, 77);
        drop(UnixListener::bind(dir.join("control.sock")).unwrap()); // stale: file stays
        std::fs::write(dir.join("notes.sock"), "not a socket").unwrap();
        drop(UnixListener::bind(dir.join("other.socket")).unwrap());

        let scan = discover(&dir, Duration::from_secs(10));
        server.join().unwrap();
        assert_eq!(scan.error, None);
        let names: Vec<_> = scan
            .probes
            .iter()
            .map(|p| p.socket.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["control.sock", "node-77.sock"]);
        let stale = scan.probes[0].outcome.as_ref().unwrap_err();
        assert!(stale.stale, "{stale:?}");
        assert!(
            dir.join("control.sock").exists(),
            "a stale socket is never deleted"
        );
        let (_, a) = scan.answered().next().unwrap();
        assert_eq!(a.hello.host.kind, "agent");
        assert_eq!(a.status.pid, 77);
        assert_eq!(a.status.loops.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_silent_endpoint_times_out_and_a_missing_directory_is_said() {
        let dir = temp_dir("silent");
        let _listener = UnixListener::bind(dir.join("mute.sock")).unwrap();
        let started = Instant::now();
        let p = probe(&dir.join("mute.sock"), Duration::from_millis(200));
        let u = p.outcome.unwrap_err();
        assert!(u.reason.contains("hello"), "{u:?}");
        assert!(!u.stale);
        assert!(started.elapsed() < Duration::from_secs(5));
        let scan = discover(&dir.join("nope"), Duration::from_millis(200));
        assert!(scan.error.unwrap().contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
