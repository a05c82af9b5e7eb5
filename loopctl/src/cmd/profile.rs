//! A stall's profile in the formats people open: a top-functions table, Brendan Gregg's
//! folded stacks (flamegraph.pl, inferno), a flame graph SVG (drawn by `inferno`) and a
//! speedscope file (<https://www.speedscope.app>).

use std::fmt::Write as _;

use proto::{Stall, StallProfile};
use serde_json::{json, Value};

use crate::output::{Align, Cell, Paint, Style, Table};

/// Functions listed by `stalls --profile`.
const TOP: usize = 25;

/// The folded stacks, one `root;…;leaf count` line each, most samples first.
pub fn folded(p: &StallProfile) -> String {
    let mut lines = p.folded();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    for (stack, n) in lines {
        // The format separates frames with `;` (so none may hold one) and the count with
        // the last space (readers split there, so frames may hold spaces, as Rust's
        // `<T as Trait>` paths do).
        let names: Vec<String> = stack.iter().map(|f| f.replace(';', ":")).collect();
        let _ = writeln!(out, "{} {n}", names.join(";"));
    }
    out
}

/// The flame graph of stall `s` as an SVG document (inferno's renderer, the folded stacks as
/// input; widths are sample counts).
///
/// # Errors
/// When inferno cannot render it (e.g. no samples).
pub fn svg(s: &Stall, p: &StallProfile) -> anyhow::Result<String> {
    let folded = folded(p);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!(
        "stall #{} · loop {} · {} {} · {:.0} ms",
        s.id,
        s.loop_index,
        s.target_type,
        s.label.as_deref().unwrap_or(""),
        s.duration_seconds * 1e3
    );
    opts.count_name = "samples".into();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut out)
        .map_err(|e| anyhow::anyhow!("cannot draw the flame graph: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The speedscope file of stall `s`: one sampled profile, each sample weighted by the time
/// to the next one (the last: one interval), in milliseconds.
pub fn speedscope(s: &Stall, p: &StallProfile) -> Value {
    let frames: Vec<Value> = p
        .frames
        .iter()
        .map(|f| json!({"name": f.function, "file": f.file, "line": f.line}))
        .collect();
    let mut samples = Vec::with_capacity(p.samples.len());
    let mut weights = Vec::with_capacity(p.samples.len());
    for (i, sample) in p.samples.iter().enumerate() {
        let Some(stack) = p.stacks.get(sample.stack as usize) else {
            continue;
        };
        let root_first: Vec<u32> = stack.iter().rev().copied().collect();
        samples.push(root_first);
        let next = p.samples.get(i + 1).map(|n| n.at_us);
        let weight_us = next.map_or(p.interval_ms * 1_000, |n| n.saturating_sub(sample.at_us));
        weights.push(weight_us as f64 / 1e3);
    }
    let first = p.samples.first().map_or(0, |s| s.at_us) as f64 / 1e3;
    let end = first + weights.iter().sum::<f64>();
    let name = format!(
        "stall #{} · loop {} · {} {}",
        s.id,
        s.loop_index,
        s.target_type,
        s.label.as_deref().unwrap_or("")
    );
    json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "exporter": format!("loopctl {}", env!("CARGO_PKG_VERSION")),
        "name": name.trim_end(),
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [{
            "type": "sampled",
            "name": name.trim_end(),
            "unit": "milliseconds",
            "startValue": first,
            "endValue": end,
            "samples": samples,
            "weights": weights,
        }],
    })
}

/// The stall's hottest functions: self and total share of its samples.
pub fn render_top(s: &Stall, p: &StallProfile, style: &Style) -> String {
    let mut out = String::new();
    let n = p.samples.len() as u64;
    let _ = writeln!(
        out,
        "{} · {} samples every {} ms{}",
        style.paint(Paint::Bold, &format!("stall #{} profile", s.id)),
        n,
        p.interval_ms,
        if s.samples_dropped > 0 {
            format!(" · {} not kept", s.samples_dropped)
        } else {
            String::new()
        }
    );
    if n == 0 {
        let _ = writeln!(out, "{}", style.paint(Paint::Dim, "no samples"));
        return out;
    }
    let pct = |k: u64| format!("{:.1}%", k as f64 * 100.0 / n as f64);
    let mut t = Table::new(&[
        ("SELF", Align::Right),
        ("TOTAL", Align::Right),
        ("SAMPLES", Align::Right),
        ("FUNCTION", Align::Left),
    ]);
    for f in p.top_functions().into_iter().take(TOP) {
        t.row(vec![
            pct(f.self_samples).into(),
            pct(f.total_samples).into(),
            format!("{}/{}", f.self_samples, f.total_samples).into(),
            Cell::new(f.function, Paint::Cyan),
        ]);
    }
    out.push_str(&t.render(style));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Frame, ProfileSample};

    fn profile() -> StallProfile {
        let f = |n: &str| Frame {
            function: n.into(),
            file: None,
            line: None,
        };
        StallProfile {
            interval_ms: 10,
            frames: vec![f("parse"), f("main"), f("<T as Trait>::regex")],
            stacks: vec![vec![0, 1], vec![2, 1]],
            samples: vec![
                ProfileSample { at_us: 0, stack: 0 },
                ProfileSample {
                    at_us: 10_000,
                    stack: 1,
                },
                ProfileSample {
                    at_us: 20_000,
                    stack: 1,
                },
            ],
        }
    }

    #[test]
    fn folded_lines_are_root_first_with_counts() {
        assert_eq!(
            folded(&profile()),
            "main;<T as Trait>::regex 2\nmain;parse 1\n"
        );
    }

    #[test]
    fn the_flame_graph_is_an_svg_naming_the_frames() {
        let svg = svg(&Stall::default(), &profile()).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..80]);
        assert!(svg.contains("parse") && svg.contains("regex"));
    }

    #[test]
    fn speedscope_has_every_sample_weighted_by_the_gap() {
        let v = speedscope(&Stall::default(), &profile());
        let p = &v["profiles"][0];
        assert_eq!(p["samples"].as_array().unwrap().len(), 3);
        assert_eq!(p["samples"][0], json!([1, 0]));
        assert_eq!(p["weights"], json!([10.0, 10.0, 10.0]));
        assert_eq!(p["endValue"], json!(30.0));
        assert_eq!(v["shared"]["frames"].as_array().unwrap().len(), 3);
    }
}
