//! `loopctl completions SHELL` and `loopctl man`: generated from the clap definition.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::cmd::Ctx;

/// Prints the completion script for `shell`.
///
/// # Errors
///
/// A broken stdout.
pub fn completions(ctx: &Ctx, shell: clap_complete::Shell) -> anyhow::Result<()> {
    // Rendered to memory first: the generators panic on a write error (a closed pipe).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "loopctl", &mut buf);
    ctx.out.text(&String::from_utf8_lossy(&buf))?;
    Ok(())
}

/// Prints the man page (roff).
///
/// # Errors
///
/// A broken stdout.
pub fn man(ctx: &Ctx) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    ctx.out.text(&String::from_utf8_lossy(&buf))?;
    Ok(())
}
