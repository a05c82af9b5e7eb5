//! loopctl: the command-line client of the loopd control socket.
//!
//! `main` maps the outcome of [`run`] to the documented exit codes: 0 ok (also on a broken
//! pipe), 1 the daemon answered with an error, 2 usage, 3 cannot reach the daemon.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::io;
use std::process::ExitCode;

use clap::Parser;

mod cli;
mod client;
mod cmd;
mod output;

#[cfg(test)]
mod golden_tests;

use cli::Cli;
use client::ClientError;
use cmd::UsageError;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Parses the command line and runs the subcommand.
fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return Ok(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)));
        }
    };
    cmd::run(cli)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `e` as one line on stderr and picks the exit code.
fn report(e: &anyhow::Error) -> ExitCode {
    if let Some(client) = e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        eprintln!("loopctl: {client}");
        return ExitCode::from(client.exit_code());
    }
    if is_broken_pipe(e) {
        // `loopctl handles | head -1`: the reader has all it wanted.
        return ExitCode::SUCCESS;
    }
    eprintln!("loopctl: {e:#}");
    if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        return ExitCode::from(2);
    }
    ExitCode::FAILURE
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
