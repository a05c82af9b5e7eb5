//! `loopd`: the daemon binary — the built-in services behind loopd's flags
//! ([`loopd::Daemon`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    loopd::Daemon::builder().main()
}
