//! Benchmark harness (being built).

fn main() {}
