//! `loopctl stalls`: the stall in progress and recent ones, with the loop thread's stack.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use proto::methods::StallsParams;
use proto::{MethodCall, Stall, StallsResult};

use crate::cli::StallsArgs;
use crate::cmd::profile;
use crate::cmd::status::target;
use crate::cmd::{Ctx, UsageError};
use crate::output::{self, Paint, Style};

/// Runs `stalls`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run(ctx: &Ctx, args: &StallsArgs) -> anyhow::Result<()> {
    if let Some(id) = args
        .profile
        .or(args.folded)
        .or(args.speedscope)
        .or(args.svg)
    {
        return run_profile(ctx, args, id);
    }
    let stacks = !args.no_stacks;
    ctx.show(
        MethodCall::Stalls(StallsParams {
            limit: args.limit,
            ..StallsParams::default()
        }),
        |r: &StallsResult, style: &Style, now_ms| render(r, style, now_ms, stacks),
    )
}

/// `--profile`, `--folded` or `--speedscope` for stall `id`.
fn run_profile(ctx: &Ctx, args: &StallsArgs, id: u64) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let value = client.call(MethodCall::Stalls(StallsParams {
        id: Some(id),
        profile: true,
        ..StallsParams::default()
    }))?;
    let r: StallsResult =
        serde_json::from_value(value).context("the daemon's `stalls` answer is malformed")?;
    let Some(stall) = r.in_progress.into_iter().chain(r.recent).next() else {
        anyhow::bail!("the daemon answered without stall {id}");
    };
    let Some(profile) = stall.profile.as_ref() else {
        return Err(UsageError(format!(
            "stall {id} has no profile any more (the last {} closed stalls keep one)",
            proto::STALL_PROFILES_KEPT
        ))
        .into());
    };
    if args.profile.is_some() {
        if ctx.out.json {
            return Ok(ctx.out.json(&stall)?);
        }
        let mut text = render_stall(&stall, &ctx.out.style, false);
        text.push('\n');
        text.push_str(&profile::render_top(&stall, profile, &ctx.out.style));
        return Ok(ctx.out.text(&text)?);
    }
    let (body, what) = if args.folded.is_some() {
        (profile::folded(profile), "folded stacks")
    } else if args.svg.is_some() {
        (profile::svg(&stall, profile)?, "flame graph")
    } else {
        let mut text = serde_json::to_string(&profile::speedscope(&stall, profile))?;
        text.push('\n');
        (text, "speedscope profile")
    };
    match args.output.as_deref() {
        None => Ok(ctx.out.text(&body)?),
        Some(p) if p == Path::new("-") => Ok(ctx.out.text(&body)?),
        Some(path) => {
            std::fs::write(path, &body)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let hint = if args.folded.is_some() {
                "render it: inferno-flamegraph FILE > flame.svg (or flamegraph.pl FILE)"
            } else if args.svg.is_some() {
                "open it in a browser (click a frame to zoom)"
            } else {
                "open it: https://www.speedscope.app → Browse"
            };
            Ok(ctx.out.text(&format!(
                "wrote {} ({what} of stall #{id}, {} samples)\n{hint}\n",
                path.display(),
                profile.samples.len()
            ))?)
        }
    }
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
    if s.samples > 0 {
        let _ = writeln!(
            out,
            "  {} samples{} · hottest: {}",
            s.samples,
            if s.samples_dropped > 0 {
                format!(" ({} not kept)", s.samples_dropped)
            } else {
                String::new()
            },
            style.paint(Paint::Cyan, s.hot_frame.as_deref().unwrap_or("?"))
        );
    }
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
