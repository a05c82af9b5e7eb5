//! `loopctl ping`: does the daemon answer, and how fast.

use std::time::Instant;

use proto::methods::PingResult;
use proto::MethodCall;

use crate::cmd::{decode, Ctx};
use crate::output;

/// Runs `ping`.
///
/// # Errors
///
/// The client's errors, or a broken stdout.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let start = Instant::now();
    let value = client.call(MethodCall::Ping)?;
    let rtt = start.elapsed();
    if ctx.out.json {
        ctx.out.json(&value)?;
        return Ok(());
    }
    let _: PingResult = decode(&client, proto::methods::PING, value)?;
    let hello = client.hello();
    ctx.out.text(&format!(
        "pong from loopd {} (pid {}, protocol {}) at {} in {}\n",
        hello.server_version,
        hello.pid,
        hello.protocol_version,
        client.path().display(),
        output::duration(rtt.as_secs_f64())
    ))?;
    Ok(())
}
