//! `custom-service`: your own line protocol on loopd, beside the built-in services.
//!
//! The `upper` kind answers each line in upper case. Registered with [`loopd::Daemon`], it
//! gets everything the `loopd` binary has: the same flags, environment variables, config file
//! and signals; the metrics endpoint (`loopd_service_*{service="upper"}`), the control socket
//! (`loopctl status` lists it with its counters, `loopctl handles` its labelled connections),
//! the stall watchdog and `--loops`.
//!
//! ```sh
//! cat > /tmp/upper.toml <<'TOML'
//! [[service]]
//! kind = "upper"
//! bind = "127.0.0.1:7090"
//! max_line = 1024          # the kind's own key (optional)
//!
//! [[service]]
//! kind = "seq"
//! bind = "127.0.0.1:7070"
//! TOML
//! cargo run --release -p loopd --example custom-service -- --config /tmp/upper.toml
//! printf 'hello\n' | nc -q1 127.0.0.1 7090      # HELLO
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use loopd::engine::{Handle, Loop, ReadEvent, Tcp};
use loopd::observe::ServiceCounters;
use loopd::service::{only_keys, Service, ServiceContext, ServiceError, ServiceOptions};
use loopd::services::flow::write_with_backpressure;

/// The `upper` kind as configured: the longest line it accepts.
struct Upper {
    max_line: usize,
}

/// Checks the entry's own keys (`max_line`, optional) and builds the service.
fn upper(options: &ServiceOptions) -> Result<Arc<dyn Service>, String> {
    only_keys(options, &["max_line"])?;
    let max_line = match options.get("max_line") {
        None => 4096,
        Some(toml::Value::Integer(n)) if (1..=1 << 20).contains(n) => *n as usize,
        Some(other) => return Err(format!("`max_line` must be 1..=1048576, not {other}")),
    };
    Ok(Arc::new(Upper { max_line }))
}

impl Service for Upper {
    fn start(&self, ctx: ServiceContext<'_>) -> Result<(), ServiceError> {
        let counters = ctx.counters.clone();
        let max_line = self.max_line;
        ctx.listener
            .listen(ctx.lp, 1024, move |lp, server, status| {
                if status.is_err() {
                    return; // out of file descriptors: the engine retries the accept
                }
                if let Ok(client) = server.accept(lp) {
                    serve(lp, client, counters.clone(), max_line);
                }
            })?;
        Ok(())
    }
}

/// One connection: lines in, the same lines in upper case out.
fn serve(lp: &mut Loop, client: Tcp, counters: Arc<ServiceCounters>, max_line: usize) {
    if let Ok(peer) = client.peer_addr(lp) {
        client.set_label(lp, format!("upper peer {peer}"));
    }
    counters.connection_opened();
    let line = Rc::new(RefCell::new(Vec::new()));
    let reading = client.read_start(lp, move |lp, client, ev| match ev {
        ReadEvent::Data(bytes) => {
            counters.add_bytes_received(bytes.len() as u64);
            let mut out = Vec::new();
            let mut line = line.borrow_mut();
            for &b in bytes {
                line.push(b.to_ascii_uppercase());
                if b == b'\n' {
                    out.append(&mut line);
                } else if line.len() > max_line {
                    out.extend_from_slice(b"error: line too long\n");
                    line.clear();
                }
            }
            if !out.is_empty() {
                counters.add_bytes_sent(out.len() as u64);
                if write_with_backpressure(lp, client, out).is_err() {
                    counters.connection_closed();
                    client.close(lp);
                }
            }
        }
        ReadEvent::Eof => {
            // The answers already queued go out first, then the connection ends.
            counters.connection_closed();
            if client.shutdown(lp, move |lp, _| client.close(lp)).is_err() {
                client.close(lp);
            }
        }
        ReadEvent::Error(_) => {
            counters.connection_closed();
            client.close(lp);
        }
    });
    if reading.is_err() {
        client.close(lp);
    }
}

fn main() -> std::process::ExitCode {
    loopd::Daemon::builder().service("upper", upper).main()
}
