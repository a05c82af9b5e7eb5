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
