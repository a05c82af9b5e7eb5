//! `custom-service`: your own line protocol on loopd, beside the built-in services.
//!
//! The `upper` kind answers each line in upper case; the `udp-upper` kind answers each UDP
//! datagram in upper case, on its own `udp` address: a service without a TCP listener (its
//! entry has no `bind`), whose socket the daemon closes when a reload removes it. Registered with [`loopd::Daemon`], it
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
//!
//! [[service]]
//! kind = "udp-upper"       # no `bind`: no TCP listener
//! udp = "127.0.0.1:7091"
//! TOML
//! cargo run --release -p loopd --example custom-service -- --config /tmp/upper.toml
//! printf 'hello\n' | nc -q1 127.0.0.1 7090      # HELLO
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use loopd::engine::{Handle, Loop, ReadEvent, Tcp, Udp};
use loopd::observe::ServiceCounters;
use loopd::service::{
    only_keys, string_option, Service, ServiceContext, ServiceError, ServiceOptions,
};
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
        ctx.require_listener()?
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

/// The `udp-upper` kind as configured: where it receives.
struct UdpUpper {
    addr: SocketAddr,
}

/// Checks the entry's own keys (`udp`, required) and builds the service.
fn udp_upper(options: &ServiceOptions) -> Result<Arc<dyn Service>, String> {
    only_keys(options, &["udp"])?;
    let addr = string_option(options, "udp")?
        .ok_or("`udp` (the address to receive on) is required")?
        .parse()
        .map_err(|_| "`udp` must be an address like 127.0.0.1:7091".to_string())?;
    Ok(Arc::new(UdpUpper { addr }))
}

impl Service for UdpUpper {
    /// Datagrams only: the entry has no `bind`.
    fn needs_listener(&self) -> bool {
        false
    }

    fn start(&self, mut ctx: ServiceContext<'_>) -> Result<(), ServiceError> {
        let socket = Udp::new(ctx.lp);
        // Kept first: the daemon closes it if anything below fails, and when the service
        // stops. (With --loops, each loop binds its own socket: give port 0.)
        ctx.keep(&socket);
        socket.bind(ctx.lp, self.addr)?;
        let addr = socket.local_addr(ctx.lp)?;
        socket.set_label(ctx.lp, format!("udp-upper {addr}"));
        let counters = ctx.counters.clone();
        socket.recv_start(ctx.lp, move |lp, socket, datagram| {
            if let Ok((bytes, from)) = datagram {
                counters.add_bytes_received(bytes.len() as u64);
                counters.add_bytes_sent(bytes.len() as u64);
                let _ = socket.send(lp, bytes.to_ascii_uppercase(), from, None);
            }
        })?;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    loopd::Daemon::builder()
        .service("upper", upper)
        .service("udp-upper", udp_upper)
        .main()
}
