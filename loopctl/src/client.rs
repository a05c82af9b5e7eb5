//! A blocking client of the control socket: connect, read `hello`, call methods, read
//! subscription notifications.
//!
//! One request is in flight at a time. Notifications that arrive while waiting for a response
//! (a subscription's pushes) are queued and handed out by [`Client::next_notification`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proto::{
    encode, Hello, Id, LineDecoder, Message, MethodCall, Notification, ServerEvent,
    MAX_SERVER_LINE_LEN, PROTOCOL_VERSION,
};
use serde_json::Value;

/// Why talking to the daemon failed; each kind maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listening at the path (exit 3).
    #[error("no loopd at {path}: {reason}")]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// What to do about it, in words.
        reason: String,
    },
    /// Connecting failed for another reason (exit 3).
    #[error("cannot connect to loopd at {path}: {source}")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The daemon did not answer in time (exit 3).
    #[error(
        "loopd at {path} did not {what} within {}; it may be overloaded or stuck (raise --timeout to wait longer)",
        crate::output::duration(timeout.as_secs_f64())
    )]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// What we were waiting for (`send its hello`, `answer \`status\``).
        what: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The daemon closed the connection (exit 3).
    #[error("loopd at {path} closed the connection{while_}; did it exit or restart?")]
    Closed {
        /// The socket path.
        path: PathBuf,
        /// `while waiting for …`, or empty.
        while_: String,
    },
    /// Reading or writing the socket failed (exit 3).
    #[error("lost the connection to loopd at {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The daemon speaks another protocol version (exit 1).
    #[error(
        "loopd {server_version} at {path} speaks control protocol version {theirs}, but this loopctl {} speaks version {ours}; use the loopctl that came with that loopd",
        env!("CARGO_PKG_VERSION")
    )]
    ProtocolMismatch {
        /// The socket path.
        path: PathBuf,
        /// The daemon's version.
        server_version: String,
        /// The daemon's protocol version.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// The daemon answered with a JSON-RPC error (exit 1).
    #[error("loopd refused `{method}`: {message} (code {code})")]
    Remote {
        /// The method called.
        method: String,
        /// The daemon's message.
        message: String,
        /// The code and its name, e.g. `-32602 invalid params`.
        code: String,
    },
    /// The daemon refused the connection instead of greeting it, e.g. a peer of another
    /// uid (exit 3: this loopctl cannot use that daemon).
    #[error("loopd at {path} refused the connection: {message} (code {code})")]
    Refused {
        /// The socket path.
        path: PathBuf,
        /// The daemon's message.
        message: String,
        /// The code and its name, e.g. `-32004 permission denied`.
        code: String,
    },
    /// The daemon does not offer the method (an older daemon; exit 1).
    #[error("loopd {server_version} does not support `{method}` (it offers: {offered}); upgrade the daemon")]
    Unsupported {
        /// The method.
        method: String,
        /// The daemon's version.
        server_version: String,
        /// The methods it listed in its hello.
        offered: String,
    },
    /// The daemon sent something that is not the protocol (exit 1).
    #[error("unexpected message from loopd at {path}: {detail}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl ClientError {
    /// The process exit code for this error: 3 when the daemon cannot be reached or stops
    /// answering, 1 when it answered with (or as) an error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotRunning { .. }
            | ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Closed { .. }
            | ClientError::Io { .. }
            | ClientError::Refused { .. } => 3,
            ClientError::ProtocolMismatch { .. }
            | ClientError::Remote { .. }
            | ClientError::Unsupported { .. }
            | ClientError::Protocol { .. } => 1,
        }
    }
}

/// The socket path when `--socket` is not given: `$LOOPD_SOCKET`, else
/// `$XDG_RUNTIME_DIR/loopd/control.sock`, else `/tmp/loopd-<uid>/control.sock` (DESIGN §5; empty
/// variables count as unset).
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("LOOPD_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("loopd").join("control.sock");
    }
    // /proc/self belongs to the process's (effective) uid; no unsafe getuid() needed.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    PathBuf::from(format!("/tmp/loopd-{uid}/control.sock"))
}

/// A connection to the daemon, after its `hello`.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    timeout: Duration,
    decoder: LineDecoder,
    lines: VecDeque<String>,
    notifications: VecDeque<Notification>,
    next_id: i64,
    hello: Hello,
}

/// The outcome of waiting for the next message with a deadline.
enum Wait {
    Line(String),
    TimedOut,
}

impl Client {
    /// Connects to the daemon at `path` and reads its `hello`, waiting at most `timeout` for it.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotRunning`] / [`ClientError::Connect`] when connecting fails,
    /// [`ClientError::Timeout`] when no hello comes, [`ClientError::ProtocolMismatch`] when the
    /// daemon speaks another protocol version.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        // A Unix-socket connect does not wait for the server to accept (a full backlog aside),
        // so the hello deadline below is what bounds a daemon that accepts but never answers.
        let stream = UnixStream::connect(path).map_err(|e| connect_error(path, e))?;
        let mut client = Client {
            stream,
            path: path.to_owned(),
            timeout,
            decoder: LineDecoder::with_limit(MAX_SERVER_LINE_LEN),
            lines: VecDeque::new(),
            notifications: VecDeque::new(),
            next_id: 1,
            hello: Hello::default(),
        };
        client.read_hello()?;
        Ok(client)
    }

    /// The daemon's `hello`.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_hello(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.timeout;
        let line = match self.wait_line(deadline, "send its hello")? {
            Wait::Line(l) => l,
            Wait::TimedOut => return Err(self.timeout_error("send its hello")),
        };
        let not_hello = |detail: String| ClientError::Protocol {
            path: self.path.clone(),
            detail: format!("expected a `hello` notification first, got {detail}"),
        };
        let message = Message::parse(&line).map_err(|e| not_hello(e.to_string()))?;
        let n = match message {
            Message::Notification(n) => n,
            // An error in place of the hello: the daemon turned this connection away.
            Message::Response(proto::Response {
                outcome: Err(e), ..
            }) => {
                return Err(ClientError::Refused {
                    path: self.path.clone(),
                    message: e.message,
                    code: format!("{} {}", e.code.0, e.code.name()),
                })
            }
            _ => return Err(not_hello(abbreviate(&line))),
        };
        if n.method != proto::methods::HELLO {
            return Err(not_hello(format!("`{}`", n.method)));
        }
        // Check the version before the shape: a future hello may differ in more than that.
        let version = n
            .params
            .as_ref()
            .and_then(|p| p.get("protocol_version"))
            .and_then(Value::as_u64);
        let server_version = n
            .params
            .as_ref()
            .and_then(|p| p.get("server_version"))
            .and_then(Value::as_str)
            .unwrap_or("(unknown version)")
            .to_owned();
        if version != Some(u64::from(PROTOCOL_VERSION)) {
            return Err(ClientError::ProtocolMismatch {
                path: self.path.clone(),
                server_version,
                theirs: version.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX)),
                ours: PROTOCOL_VERSION,
            });
        }
        match ServerEvent::from_notification(n) {
            Ok(ServerEvent::Hello(h)) => {
                self.hello = h;
                Ok(())
            }
            Ok(_) => Err(not_hello("another notification".to_owned())),
            Err(e) => Err(not_hello(e.to_string())),
        }
    }

    /// Calls `call` and returns its raw result.
    ///
    /// # Errors
    ///
    /// [`ClientError::Remote`] for an error answer, [`ClientError::Unsupported`] when the
    /// daemon's hello does not list the method, the connection errors otherwise.
    pub fn call(&mut self, call: MethodCall) -> Result<Value, ClientError> {
        let method = call.name();
        if !self.hello.methods.is_empty() && !self.hello.methods.iter().any(|m| m == method) {
            return Err(ClientError::Unsupported {
                method: method.to_owned(),
                server_version: self.hello.server_version.clone(),
                offered: self.hello.methods.join(", "),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let request = call.into_request(id);
        let bytes = encode(&request).map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            detail: format!("cannot encode the request: {e}"),
        })?;
        self.stream.set_write_timeout(Some(self.timeout)).ok();
        if let Err(e) = self.stream.write_all(&bytes) {
            return Err(self.io_error(e, &format!("send `{method}`")));
        }
        let what = format!("answer `{method}`");
        let deadline = Instant::now() + self.timeout;
        loop {
            let line = match self.wait_line(deadline, &what)? {
                Wait::Line(l) => l,
                Wait::TimedOut => return Err(self.timeout_error(&what)),
            };
            match Message::parse(&line) {
                Ok(Message::Notification(n)) => self.notifications.push_back(n),
                Ok(Message::Response(r)) if r.id == Some(Id::Number(id)) || r.id.is_none() => {
                    return r.outcome.map_err(|e| ClientError::Remote {
                        method: method.to_owned(),
                        message: e.message,
                        code: format!("{} {}", e.code.0, e.code.name()),
                    });
                }
                // An answer to an earlier request we stopped waiting for: skip it.
                Ok(Message::Response(_)) => {}
                Ok(Message::Request(r)) => {
                    return Err(self.protocol_error(format!("a request (`{}`)", r.method)))
                }
                Err(e) => return Err(self.protocol_error(e.to_string())),
            }
        }
    }

    /// The next notification, waiting until `deadline` at the latest (`Ok(None)` then).
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] when the daemon closes the connection, the I/O errors otherwise.
    pub fn next_notification(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Notification>, ClientError> {
        if let Some(n) = self.notifications.pop_front() {
            return Ok(Some(n));
        }
        loop {
            let line = match self.wait_line(deadline, "send updates")? {
                Wait::Line(l) => l,
                Wait::TimedOut => return Ok(None),
            };
            match Message::parse(&line) {
                Ok(Message::Notification(n)) => return Ok(Some(n)),
                Ok(Message::Response(_)) => {}
                Ok(Message::Request(r)) => {
                    return Err(self.protocol_error(format!("a request (`{}`)", r.method)))
                }
                Err(e) => return Err(self.protocol_error(e.to_string())),
            }
        }
    }

    /// The next complete line, reading until `deadline`.
    fn wait_line(&mut self, deadline: Instant, what: &str) -> Result<Wait, ClientError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Wait::Line(line));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Wait::TimedOut);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io_error(e, what))?;
            let n = match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(ClientError::Closed {
                        path: self.path.clone(),
                        while_: format!(" while waiting for it to {what}"),
                    })
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e, what)),
            };
            let mut fatal = None;
            let lines = &mut self.lines;
            self.decoder.feed_with(&buf[..n], |line| match line {
                Ok(l) => lines.push_back(l),
                Err(e) => fatal = Some(e),
            });
            if let Some(e) = fatal {
                return Err(self.protocol_error(e.to_string()));
            }
        }
    }

    /// The error for the daemon not doing `what` within the timeout.
    pub fn timeout_error(&self, what: &str) -> ClientError {
        ClientError::Timeout {
            path: self.path.clone(),
            what: what.to_owned(),
            timeout: self.timeout,
        }
    }

    fn protocol_error(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }

    fn io_error(&self, e: io::Error, what: &str) -> ClientError {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => ClientError::Closed {
                path: self.path.clone(),
                while_: format!(" while waiting for it to {what}"),
            },
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout_error(what),
            _ => ClientError::Io {
                path: self.path.clone(),
                source: e,
            },
        }
    }
}

fn connect_error(path: &Path, e: io::Error) -> ClientError {
    let start = "start it with `loopd`, or point --socket / LOOPD_SOCKET at its socket";
    match e.kind() {
        io::ErrorKind::NotFound => ClientError::NotRunning {
            path: path.to_owned(),
            reason: format!("is it running? ({start})"),
        },
        io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
            path: path.to_owned(),
            reason: format!("connection refused, a stale socket of a daemon that exited? ({start})"),
        },
        io::ErrorKind::PermissionDenied => ClientError::Connect {
            path: path.to_owned(),
            source: io::Error::new(
                e.kind(),
                "permission denied; the socket belongs to another user (run loopctl as the daemon's user)",
            ),
        },
        _ => ClientError::Connect {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// The first 80 characters of `line`, for error messages.
fn abbreviate(line: &str) -> String {
    let mut s: String = line.chars().take(80).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s
}
