#![allow(dead_code)] // shared by several examples; each uses a part
//! `--name value` flags for the examples (each example includes this file with `#[path]`).

/// The value of `--name` as a number, or `default`.
pub fn number(name: &str, default: u64) -> u64 {
    value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The value of `--name`, if given.
pub fn value(name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == flag {
            return args.next();
        }
    }
    None
}

/// Whether the bare flag `--name` is given.
pub fn flag(name: &str) -> bool {
    let flag = format!("--{name}");
    std::env::args().skip(1).any(|a| a == flag)
}

/// `--bind ADDR`, default `127.0.0.1:0` (a free port, printed by the example).
pub fn bind() -> Result<std::net::SocketAddr, std::net::AddrParseError> {
    value("bind")
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
}

/// A loop, observed as `loopd::observe_loops` does (keep the handle alive).
pub fn observed_loop(
) -> Result<(loopd::engine::Loop, loopd::observe::ObserveHandle), Box<dyn std::error::Error>> {
    let lp = loopd::engine::Loop::new()?;
    let observed = loopd::observe_loops(&[&lp])?;
    Ok((lp, observed))
}
