//! The Prometheus endpoint: a hardened HTTP/1.1 server ([`server`]) on a thread of its own,
//! answering from published snapshots, so it answers while a loop is blocked.
//!
//! - `GET /metrics`: every metric of DESIGN §4 ([`families`]) plus the `process_*` metrics of
//!   the prometheus crate's process collector, in the text format;
//! - `GET /healthz`: `200 ok`, or `503` naming the stall while one longer than the health
//!   threshold is in progress;
//! - `GET /`: a small index.
//!
//! Other paths get 404; other methods 405, bodies 413, oversized heads 431, malformed ones
//! 400 (the limits, timeouts and what is shed: [`server`]).

pub mod families;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{Encoder, TextEncoder};

use super::http1::{Request, Status};
use super::stalls::seconds;
use super::{ObserveError, Shared};
use loopd_engine::instrument::clock::now_ns;
use server::{HttpServer, Limits, Response};

/// The running endpoint.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    server: HttpServer,
}

struct Endpoint {
    shared: Arc<Shared>,
    process: ProcessCollector,
}

impl MetricsServer {
    pub fn start(shared: Arc<Shared>, addr: SocketAddr) -> Result<MetricsServer, ObserveError> {
        let endpoint = Endpoint {
            shared: shared.clone(),
            process: ProcessCollector::for_self(),
        };
        let server = HttpServer::start(
            "loopd-metrics",
            addr,
            Limits::default(),
            Box::new(move |request| endpoint.answer(request)),
            shared.metrics_shed.clone(),
        )?;
        let _ = shared.metrics_addr.set(server.local_addr());
        Ok(MetricsServer { server })
    }

    /// Closes every connection and stops the thread (bounded: nothing waits for a client).
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

const INDEX: &str = "<!doctype html>\n<html><head><title>loopd</title></head><body>\n\
<h1>loopd</h1>\n<ul>\n\
<li><a href=\"/metrics\">/metrics</a> &mdash; Prometheus metrics</li>\n\
<li><a href=\"/healthz\">/healthz</a> &mdash; 200 unless a loop is stalled past the health threshold</li>\n\
</ul>\n</body></html>\n";

impl Endpoint {
    fn answer(&self, request: &Request) -> Response {
        match request.path.as_str() {
            "/metrics" => self.metrics(),
            "/healthz" => self.healthz(),
            "/" => Response {
                status: Status::Ok,
                content_type: "text/html; charset=utf-8",
                body: INDEX.as_bytes().to_vec(),
            },
            path => Response::text(Status::NotFound, format!("not found: {path}\n")),
        }
    }

    fn metrics(&self) -> Response {
        let mut families = families::collect(&self.shared);
        families.extend(self.process.collect());
        let encoder = TextEncoder::new();
        let mut body = Vec::with_capacity(64 * 1024);
        match encoder.encode(&families, &mut body) {
            Ok(()) => Response {
                status: Status::Ok,
                content_type: prometheus::TEXT_FORMAT,
                body,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot encode metrics");
                Response::text(
                    Status::InternalError,
                    format!("cannot encode metrics: {e}\n"),
                )
            }
        }
    }

    fn healthz(&self) -> Response {
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
            Response::text(Status::Ok, "ok\n")
        } else {
            Response::text(Status::ServiceUnavailable, stalled.join("\n") + "\n")
        }
    }
}
