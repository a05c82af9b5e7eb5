//! `peer-probe`: run by `tests/tests/other_user.rs` as a second user (through `setpriv`). It
//! connects to the control socket named by `$LOOPD_TEST_OTHER_USER_PROBE` and prints what
//! happened on one line: `PROBE-CONNECT-ERROR <kind>` or `PROBE-GOT <what loopd sent>`.
#![allow(clippy::print_stdout)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(path) = std::env::var_os("LOOPD_TEST_OTHER_USER_PROBE") else {
        eprintln!("peer-probe: set LOOPD_TEST_OTHER_USER_PROBE to a socket path");
        return ExitCode::from(2);
    };
    match UnixStream::connect(&path) {
        Err(e) => println!("PROBE-CONNECT-ERROR {:?}", e.kind()),
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let mut got = String::new();
            // The daemon writes its answer and shuts the connection down: read to EOF.
            let _ = s.read_to_string(&mut got);
            println!("PROBE-GOT {}", got.trim_end().replace('\n', "\\n"));
        }
    }
    ExitCode::SUCCESS
}
