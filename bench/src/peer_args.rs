//! What the Rust peers (`loopd-peer`, `tokio-peer`) share: their command line and the
//! `fs_read` checksum. Included by each binary with `#[path]` (the harness is a binary
//! crate without a library).

use std::path::PathBuf;

use anyhow::{bail, ensure, Context as _, Result};

/// `fs_read`'s checksum samples the bytes at file offsets divisible by this.
pub const SAMPLE_STRIDE: u64 = 64;

/// `fs_read`'s checksum of one chunk read at file offset `offset`: the wrapping sum of
/// its bytes at file offsets divisible by [`SAMPLE_STRIDE`] (the same in every peer).
pub fn sample_sum(offset: u64, data: &[u8]) -> u64 {
    let first = (SAMPLE_STRIDE - offset % SAMPLE_STRIDE) % SAMPLE_STRIDE;
    data.iter()
        .skip(usize::try_from(first).unwrap_or(usize::MAX))
        .step_by(usize::try_from(SAMPLE_STRIDE).unwrap_or(1))
        .fold(0u64, |s, b| s.wrapping_add(u64::from(*b)))
}

/// `PEER SCENARIO [--no-instrument] [--n N] [--inflight K] [--conns C] [--chunk B --file
/// PATH --sum S]`.
pub struct Args {
    pub scenario: String,
    /// Off with `--no-instrument` (only a peer that has instrumentation accepts it).
    pub instrument: bool,
    pub n: u64,
    pub inflight: u64,
    pub conns: u64,
    pub chunk: u64,
    pub file: Option<PathBuf>,
    pub sum: Option<u64>,
}

/// Parses the words after the scenario name; `--no-instrument` only when
/// `has_instrumentation`.
pub fn parse_args(
    scenario: String,
    mut it: impl Iterator<Item = String>,
    has_instrumentation: bool,
) -> Result<Args> {
    let mut args = Args {
        scenario,
        instrument: true,
        n: 0,
        inflight: 1,
        conns: 1,
        chunk: 64 * 1024,
        file: None,
        sum: None,
    };
    while let Some(a) = it.next() {
        if a == "--no-instrument" && has_instrumentation {
            args.instrument = false;
            continue;
        }
        let value = || format!("{a} needs a value");
        match a.as_str() {
            "--file" => args.file = Some(it.next().with_context(value)?.into()),
            "--sum" => {
                let v = it.next().with_context(value)?;
                args.sum = Some(v.parse().context("--sum: not a number")?);
            }
            "--n" | "--inflight" | "--conns" | "--chunk" => {
                let v: u64 = it
                    .next()
                    .with_context(value)?
                    .parse()
                    .with_context(|| format!("{a}: not a number"))?;
                ensure!(v > 0, "{a} must be positive");
                match a.as_str() {
                    "--n" => args.n = v,
                    "--inflight" => args.inflight = v,
                    "--conns" => args.conns = v,
                    _ => args.chunk = v,
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(args.n > 0, "--n is required");
    Ok(args)
}
