//! `loopctl stalls`: the stall in progress and recent ones, with the loop thread's stack.

use std::fmt::Write as _;

use proto::methods::StallsParams;
use proto::{MethodCall, Stall, StallsResult};

use crate::cli::StallsArgs;
use crate::cmd::status::target;
use crate::cmd::Ctx;
use crate::output::{self, Paint, Style};

/// Runs `stalls`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run(ctx: &Ctx, args: &StallsArgs) -> anyhow::Result<()> {
    let stacks = !args.no_stacks;
    ctx.show(
        MethodCall::Stalls(StallsParams { limit: args.limit }),
        |r: &StallsResult, style: &Style, now_ms| render(r, style, now_ms, stacks),
    )
}

/// `stalls` as text: in-progress stalls first, then recent ones newest first.
pub fn render(r: &StallsResult, style: &Style, now_ms: u64, stacks: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} in progress · {} shown · {} since start · snapshot {}",
        style.paint(Paint::Bold, "STALLS"),
        r.in_progress.len(),
        r.recent.len(),
        r.total,
        output::ago(r.as_of_ms, now_ms)
    );
    for s in r.in_progress.iter().chain(&r.recent) {
        out.push('\n');
        out.push_str(&render_stall(s, style, stacks));
    }
    out
}

/// One stall: a headline, its attribution and (optionally) its stack, innermost frame first.
pub fn render_stall(s: &Stall, style: &Style, stack: bool) -> String {
    let mut out = String::new();
    let (state, paint) = if s.in_progress {
        ("IN PROGRESS", Paint::Red)
    } else {
        ("closed", Paint::Yellow)
    };
    let _ = writeln!(
        out,
        "{} {} · {}{} (threshold {})",
        style.paint(Paint::Bold, &format!("stall #{}", s.id)),
        style.paint(paint, state),
        output::duration(s.duration_seconds),
        if s.in_progress { " so far" } else { "" },
        output::duration(s.threshold_ms as f64 / 1e3)
    );
    let _ = writeln!(
        out,
        "  loop {} · phase {} · {} · started {}",
        s.loop_index,
        s.phase,
        target(s),
        output::utc(s.started_at_ms)
    );
    if !stack {
        return out;
    }
    if s.stack.is_empty() {
        let why = s.stack_error.as_deref().unwrap_or("none sampled");
        let _ = writeln!(out, "  stack: {}", style.paint(Paint::Dim, why));
        return out;
    }
    let _ = writeln!(out, "  stack (innermost first):");
    let w = (s.stack.len().saturating_sub(1)).to_string().len();
    for (i, f) in s.stack.iter().enumerate() {
        let at = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("  {file}:{line}"),
            (Some(file), None) => format!("  {file}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "    {i:>w$}  {}{}",
            style.paint(Paint::Cyan, &f.function),
            style.paint(Paint::Dim, &at)
        );
    }
    out
}
