//! `loopctl handles` and `loopctl requests`: the daemon's objects, filtered, sorted and limited
//! by the daemon.

use proto::methods::{HandlesParams, RequestsParams};
use proto::{HandleInfo, HandleType, HandlesResult, MethodCall, RequestState, RequestsResult};

use crate::cli::{HandlesArgs, RequestsArgs};
use crate::cmd::Ctx;
use crate::output::{self, Align, Cell, Paint, Style, Table};

/// Runs `handles`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run_handles(ctx: &Ctx, args: &HandlesArgs) -> anyhow::Result<()> {
    let params = HandlesParams {
        loop_index: args.loop_index,
        handle_type: args.handle_type.as_deref().map(HandleType::from),
        active: match (args.active, args.inactive) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        sort: args.sort.map(Into::into),
        limit: args.limit,
    };
    ctx.show(MethodCall::Handles(params), render_handles)
}

/// Runs `requests`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run_requests(ctx: &Ctx, args: &RequestsArgs) -> anyhow::Result<()> {
    let params = RequestsParams {
        loop_index: args.loop_index,
        request_type: args.request_type.as_deref().map(Into::into),
        limit: args.limit,
    };
    ctx.show(MethodCall::Requests(params), render_requests)
}

/// `handles` as a table; activity is dated against the snapshot, the snapshot against `now_ms`.
pub fn render_handles(r: &HandlesResult, style: &Style, now_ms: u64) -> String {
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("LOOP", Align::Right),
        ("TYPE", Align::Left),
        ("STATE", Align::Left),
        ("FD", Align::Right),
        ("AGE", Align::Right),
        ("READ", Align::Right),
        ("WRITTEN", Align::Right),
        ("LAST ACTIVE", Align::Right),
        ("LABEL", Align::Left),
        ("SITE", Align::Left),
    ]);
    for h in &r.handles {
        t.row(vec![
            h.id.to_string().into(),
            h.loop_index.to_string().into(),
            Cell::new(h.handle_type.to_string(), Paint::Cyan),
            Cell::new(handle_state(h), state_paint(h)),
            output::opt(h.fd).into(),
            output::duration(h.age_seconds).into(),
            output::bytes(h.bytes_read).into(),
            output::bytes(h.bytes_written).into(),
            h.last_activity_ms
                .map_or_else(|| "-".to_owned(), |t| output::ago(t, r.as_of_ms))
                .into(),
            output::opt(h.label.as_deref()).into(),
            Cell::new(h.site.clone(), Paint::Dim),
        ]);
    }
    let mut out = if t.is_empty() {
        String::new()
    } else {
        t.render(style)
    };
    out.push_str(&footer(
        r.handles.len(),
        r.total,
        "handle",
        r.as_of_ms,
        now_ms,
    ));
    out
}

/// `active`, `inactive`, plus `unref` and `closing` when they apply.
fn handle_state(h: &HandleInfo) -> String {
    let mut s = if h.active { "active" } else { "inactive" }.to_owned();
    if !h.referenced {
        s.push_str(",unref");
    }
    if h.closing {
        s.push_str(",closing");
    }
    s
}

fn state_paint(h: &HandleInfo) -> Paint {
    if h.closing {
        Paint::Yellow
    } else if h.active {
        Paint::Green
    } else {
        Paint::Dim
    }
}

/// `requests` as a table.
pub fn render_requests(r: &RequestsResult, style: &Style, now_ms: u64) -> String {
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("LOOP", Align::Right),
        ("TYPE", Align::Left),
        ("STATE", Align::Left),
        ("HANDLE", Align::Right),
        ("AGE", Align::Right),
        ("LABEL", Align::Left),
        ("SITE", Align::Left),
    ]);
    for q in &r.requests {
        let paint = match q.state {
            RequestState::Running => Paint::Green,
            RequestState::Queued => Paint::Yellow,
            _ => Paint::Dim,
        };
        t.row(vec![
            q.id.to_string().into(),
            q.loop_index.to_string().into(),
            Cell::new(q.request_type.to_string(), Paint::Cyan),
            Cell::new(q.state.to_string(), paint),
            output::opt(q.handle_id).into(),
            output::duration(q.age_seconds).into(),
            output::opt(q.label.as_deref()).into(),
            Cell::new(q.site.clone(), Paint::Dim),
        ]);
    }
    let mut out = if t.is_empty() {
        String::new()
    } else {
        t.render(style)
    };
    out.push_str(&footer(
        r.requests.len(),
        r.total,
        "request",
        r.as_of_ms,
        now_ms,
    ));
    out
}

/// `3 of 5 handles (snapshot 120ms ago)`.
fn footer(shown: usize, total: u64, noun: &str, as_of_ms: u64, now_ms: u64) -> String {
    let plural = if total == 1 { "" } else { "s" };
    let counts = if shown as u64 == total {
        format!("{total} {noun}{plural}")
    } else {
        format!("{shown} of {total} {noun}{plural}")
    };
    format!("{counts} (snapshot {})\n", output::ago(as_of_ms, now_ms))
}
