//! The Prometheus endpoint: `tiny_http` on its own threads.
//!
//! - `GET /metrics`: every metric of DESIGN §4 ([`families`]) plus the `process_*` metrics of
//!   the prometheus crate's process collector, in the text format;
//! - `GET /healthz`: `200 ok`, or `503` naming the stall while one longer than the health
//!   threshold is in progress;
//! - `GET /`: a small index.
//!
//! Other paths get 404, other methods 405; `tiny_http` answers malformed requests with 400
//! itself. Requests are served by a few worker threads, so a client that does not read its
//! answer does not hold up the others.

pub mod families;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{Encoder, TextEncoder};
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use super::stalls::seconds;
use super::{ObserveError, Shared};
use crate::engine::clock::now_ns;

/// Worker threads answering HTTP requests.
const WORKERS: usize = 2;
/// How often an idle worker checks for shutdown.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// The running endpoint.
pub(crate) struct MetricsServer {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

struct Endpoint {
    shared: Arc<Shared>,
    process: ProcessCollector,
}

impl MetricsServer {
    pub fn start(shared: Arc<Shared>, addr: SocketAddr) -> Result<MetricsServer, ObserveError> {
        let server = Server::http(addr).map_err(|e| ObserveError::MetricsBind {
            addr,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let _ = shared.metrics_addr.set(bound);
        tracing::debug!(addr = %bound, "metrics endpoint listening");
        let server = Arc::new(server);
        let endpoint = Arc::new(Endpoint {
            shared,
            process: ProcessCollector::for_self(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..WORKERS {
            let (server, endpoint, stop2) = (server.clone(), endpoint.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("loopd-metrics-{i}"))
                .spawn(move || serve(&server, &endpoint, &stop2));
            match spawned {
                Ok(h) => workers.push(h),
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(ObserveError::Thread {
                        name: "loopd-metrics",
                        source,
                    });
                }
            }
        }
        Ok(MetricsServer { stop, workers })
    }

    pub fn shutdown(mut self) {
        self.stop_workers();
    }

    fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn serve(server: &Server, endpoint: &Endpoint, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(RECV_TIMEOUT) {
            Ok(Some(request)) => endpoint.answer(request),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "metrics endpoint: bad connection"),
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn text(status: u16, body: String, content_type: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut r = Response::from_string(body).with_status_code(StatusCode(status));
    if let Some(h) = header("Content-Type", content_type) {
        r.add_header(h);
    }
    r
}

const INDEX: &str = "<!doctype html>\n<html><head><title>loopd</title></head><body>\n\
<h1>loopd</h1>\n<ul>\n\
<li><a href=\"/metrics\">/metrics</a> &mdash; Prometheus metrics</li>\n\
<li><a href=\"/healthz\">/healthz</a> &mdash; 200 unless a loop is stalled past the health threshold</li>\n\
</ul>\n</body></html>\n";

impl Endpoint {
    fn answer(&self, request: Request) {
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let method = request.method().clone();
        let known = matches!(path.as_str(), "/" | "/metrics" | "/healthz");
        let response = if !known {
            text(
                404,
                format!("not found: {path}\n"),
                "text/plain; charset=utf-8",
            )
        } else if method != Method::Get && method != Method::Head {
            let mut r = text(
                405,
                format!("method {method} not allowed; use GET\n"),
                "text/plain; charset=utf-8",
            );
            if let Some(h) = header("Allow", "GET, HEAD") {
                r.add_header(h);
            }
            r
        } else {
            match path.as_str() {
                "/metrics" => self.metrics(),
                "/healthz" => self.healthz(),
                _ => text(200, INDEX.to_string(), "text/html; charset=utf-8"),
            }
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, path = %path, "metrics endpoint: cannot answer");
        }
    }

    fn metrics(&self) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut families = families::collect(&self.shared);
        families.extend(self.process.collect());
        let encoder = TextEncoder::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        match encoder.encode(&families, &mut buf) {
            Ok(()) => {
                let mut r = Response::from_data(buf);
                if let Some(h) = header("Content-Type", encoder.format_type()) {
                    r.add_header(h);
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode metrics");
                text(500, format!("cannot encode metrics: {e}\n"), "text/plain")
            }
        }
    }

    fn healthz(&self) -> Response<std::io::Cursor<Vec<u8>>> {
        let now = now_ns();
        let threshold = seconds(self.shared.health_threshold_ns);
        let stalled: Vec<String> = self
            .shared
            .stalls
            .in_progress(now)
            .into_iter()
            .filter(|s| s.duration_seconds > threshold)
            .map(|s| {
                let id = s
                    .handle_id
                    .or(s.request_id)
                    .map_or(String::new(), |i| format!(" {i}"));
                let label = s.label.map_or(String::new(), |l| format!(" ({l})"));
                format!(
                    "stalled: loop {} blocked for {:.3} s by {}{id}{label} in phase {} (stall {})",
                    s.loop_index, s.duration_seconds, s.target_type, s.phase, s.id
                )
            })
            .collect();
        if stalled.is_empty() {
            text(200, "ok\n".into(), "text/plain; charset=utf-8")
        } else {
            text(503, stalled.join("\n") + "\n", "text/plain; charset=utf-8")
        }
    }
}
