//! `FakeLoopd`: a test double of the daemon's end of the control socket.
//!
//! It exists only until the real control server is ready: it speaks the protocol through the
//! `proto` crate (hello first, JSON-RPC answers, subscription pushes) and answers with the
//! fixtures. Tests against the real daemon belong to the workspace `tests/` crate.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use proto::methods::{PingResult, SubscribeResult, UnsubscribeResult};
use proto::{
    encode, ErrorObject, Message, MethodCall, Notification, Request, Response, ServerEvent,
    StallEvent, StallEventKind,
};
use serde_json::Value;

use super::fixtures;

type Answer = dyn Fn(&Request) -> Response + Send + Sync;

/// What the fake daemon does.
pub struct Script {
    /// The hello params sent on connect; `None`: never say hello (a stuck daemon).
    pub hello: Option<Value>,
    /// Answers a request.
    pub answer: Box<Answer>,
    /// Pushed right after answering `subscribe`.
    pub pushes: Vec<Notification>,
    /// Close the connection after the pushes (the daemon exiting).
    pub close_after_pushes: bool,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            hello: Some(serde_json::to_value(fixtures::hello()).unwrap()),
            answer: Box::new(answer_with_fixtures),
            pushes: default_pushes(),
            close_after_pushes: false,
        }
    }
}

/// Three status updates, one handles update, a stall opening and closing.
pub fn default_pushes() -> Vec<Notification> {
    let mut pushes = Vec::new();
    for i in 0..3u64 {
        let mut s = fixtures::status();
        s.as_of_ms += 1000 * (i + 1);
        pushes.push(ServerEvent::Status(Box::new(s)).to_notification());
    }
    pushes.push(ServerEvent::Handles(fixtures::handles()).to_notification());
    for (event, open) in [
        (StallEventKind::Opened, true),
        (StallEventKind::Closed, false),
    ] {
        pushes.push(
            ServerEvent::Stalls(Box::new(StallEvent {
                event,
                stall: fixtures::stall(open),
            }))
            .to_notification(),
        );
    }
    pushes
}

/// The answers of a healthy daemon, from the fixtures; params are validated as the daemon
/// would, so a malformed request from loopctl fails the test.
pub fn answer_with_fixtures(req: &Request) -> Response {
    let call = match MethodCall::from_request(req) {
        Ok(call) => call,
        Err(e) => return Response::error(Some(req.id.clone()), e.to_error_object()),
    };
    let id = req.id.clone();
    match call {
        MethodCall::Ping => Response::result(
            id,
            &PingResult {
                as_of_ms: fixtures::AS_OF_MS,
            },
        ),
        MethodCall::Status => Response::result(id, &fixtures::status()),
        MethodCall::Handles(_) => Response::result(id, &fixtures::handles()),
        MethodCall::Requests(_) => Response::result(id, &fixtures::requests()),
        MethodCall::ThreadPool => Response::result(id, &fixtures::threadpool()),
        MethodCall::Stalls(_) => Response::result(id, &fixtures::stalls()),
        MethodCall::Subscribe(p) => Response::result(
            id,
            &SubscribeResult {
                as_of_ms: fixtures::AS_OF_MS,
                topics: p.topics,
                interval_ms: p.interval_ms.unwrap_or(1000),
            },
        ),
        MethodCall::Unsubscribe(_) => Response::result(
            id,
            &UnsubscribeResult {
                as_of_ms: fixtures::AS_OF_MS,
                topics: vec![],
            },
        ),
        MethodCall::Trace(_) => Response::ok(id, fixtures::trace()),
        MethodCall::ConfigGet => Response::result(id, &fixtures::config()),
        MethodCall::ConfigSet(p) => {
            let mut c = fixtures::config();
            if let Some(n) = p.threadpool_size {
                c.threadpool_size = n;
            }
            if let Some(ms) = p.stall_threshold_ms {
                c.stall_threshold_ms = ms;
            }
            if let Some(f) = p.log_filter {
                c.log_filter = f;
            }
            Response::result(id, &c)
        }
    }
}

/// A fake daemon listening on a fresh socket; removed on drop.
pub struct FakeLoopd {
    /// The socket path.
    pub path: PathBuf,
    dir: PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeLoopd {
    /// A healthy daemon answering with the fixtures.
    pub fn start() -> FakeLoopd {
        FakeLoopd::with(Script::default())
    }

    /// A daemon following `script`, at a fresh path.
    pub fn with(script: Script) -> FakeLoopd {
        let dir = fresh_dir();
        FakeLoopd::at(dir.join("control.sock"), dir, script)
    }

    /// A daemon following `script`, listening at `path`; `dir` is removed on drop.
    pub fn at(path: PathBuf, dir: PathBuf, script: Script) -> FakeLoopd {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen = Arc::clone(&requests);
        // Accepts until the test process ends; each connection gets its own thread.
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let script = Arc::clone(&script);
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve(conn, &script, &seen));
            }
        });
        FakeLoopd {
            path,
            dir,
            requests,
        }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The params of the only request for `method`.
    pub fn params_of(&self, method: &str) -> Value {
        let reqs: Vec<Request> = self
            .requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect();
        assert_eq!(reqs.len(), 1, "requests for {method}: {reqs:?}");
        reqs[0].params.clone().unwrap_or(Value::Null)
    }
}

impl Drop for FakeLoopd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new empty directory under the target's temp dir (short enough for a socket path).
pub fn fresh_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "lc-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn serve(conn: UnixStream, script: &Script, seen: &Mutex<Vec<Request>>) {
    let mut out = conn.try_clone().unwrap();
    let mut send = |line: Vec<u8>| out.write_all(&line).is_ok();
    if let Some(hello) = &script.hello {
        if !send(encode(&Notification::new("hello", Some(hello.clone()))).unwrap()) {
            return;
        }
    }
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let Ok(Message::Request(req)) = Message::parse(&line) else {
            let error = ErrorObject::new(proto::ErrorCode::INVALID_REQUEST, "fake: not a request");
            let _ = send(encode(&Response::error(None, error)).unwrap());
            continue;
        };
        seen.lock().unwrap().push(req.clone());
        let response = (script.answer)(&req);
        let subscribed = req.method == "subscribe" && response.outcome.is_ok();
        if !send(encode(&response).unwrap()) {
            return;
        }
        if subscribed {
            for n in &script.pushes {
                if !send(encode(n).unwrap()) {
                    return;
                }
            }
            if script.close_after_pushes {
                return;
            }
        }
    }
}
