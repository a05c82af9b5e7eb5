//! Numbers → short text: durations, bytes, bars, sparklines.

/// A duration in seconds, short: `850µs`, `12.3ms`, `2.50s`, `1m05s`, `1h02m`, `-` if unknown.
pub fn secs(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".into();
    }
    if s == 0.0 {
        return "0".into();
    }
    if s < 1e-3 {
        return format!("{:.0}µs", s * 1e6);
    }
    if s < 1.0 {
        let ms = s * 1e3;
        return if ms < 10.0 {
            format!("{ms:.2}ms")
        } else if ms < 100.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        };
    }
    if s < 60.0 {
        return if s < 10.0 {
            format!("{s:.2}s")
        } else {
            format!("{s:.1}s")
        };
    }
    let total = s as u64;
    if total < 3600 {
        format!("{}m{:02}s", total / 60, total % 60)
    } else if total < 86_400 {
        format!("{}h{:02}m", total / 3600, (total % 3600) / 60)
    } else {
        format!("{}d{:02}h", total / 86_400, (total % 86_400) / 3600)
    }
}

/// Milliseconds between two unix-ms times as a duration (`-` when `then` is unknown/future).
pub fn since(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 || then_ms > now_ms.saturating_add(1000) {
        return "-".into();
    }
    secs(now_ms.saturating_sub(then_ms) as f64 / 1000.0)
}

/// Bytes, short: `512`, `1.5K`, `3.2M`, `4.0G`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return n.to_string();
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if v < 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// A count, short: `999`, `12.3k`, `4.5M`.
pub fn count(n: u64) -> String {
    if n < 10_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{:.1}G", n as f64 / 1e9)
    }
}

/// A ratio 0..=1 as a percentage: `25%`.
pub fn pct(r: f64) -> String {
    if !r.is_finite() {
        return "-".into();
    }
    format!("{:.0}%", (r * 100.0).clamp(0.0, 100.0))
}

/// A horizontal bar `width` cells wide, filled to `frac` (0..=1) with eighth-cell precision.
pub fn bar(frac: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (frac * width as f64 * 8.0).round() as usize;
    let full = (eighths / 8).min(width);
    let mut s = "█".repeat(full);
    if full < width {
        let part = eighths % 8;
        s.push(if part == 0 { '░' } else { PARTS[part] });
        s.push_str(&"░".repeat(width - full - 1));
    }
    s
}

/// A sparkline of the last `width` values, scaled to their maximum but at least `floor` (so
/// small, even values draw low rather than as a full bar).
pub fn spark(values: &[f64], width: usize, floor: f64) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    let vals = &values[start..];
    let max = vals
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(floor, f64::max);
    let mut s: String = " ".repeat(width.saturating_sub(vals.len()));
    for v in vals {
        let level = if max > 0.0 && v.is_finite() && *v > 0.0 {
            ((v / max) * 7.0).round() as usize
        } else {
            0
        };
        s.push(LEVELS[level.min(7)]);
    }
    s
}

/// A replay offset: `m:ss.s`.
pub fn offset(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}.{}", s / 60, s % 60, (ms % 1000) / 100)
}

/// Cuts `s` to at most `max` characters, ending in `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(secs(0.0), "0");
        assert_eq!(secs(0.00085), "850µs");
        assert_eq!(secs(0.0123), "12.3ms");
        assert_eq!(secs(0.2), "200ms");
        assert_eq!(secs(2.5), "2.50s");
        assert_eq!(secs(65.0), "1m05s");
        assert_eq!(secs(3720.0), "1h02m");
        assert_eq!(secs(f64::NAN), "-");
    }

    #[test]
    fn bars_and_sparks_have_their_width() {
        for f in [0.0, 0.01, 0.5, 0.99, 1.0, 7.0, f64::NAN] {
            assert_eq!(bar(f, 10).chars().count(), 10, "{f}");
        }
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(spark(&[0.0, 1.0, 0.5], 5, 0.0), "  ▁█▅");
        assert_eq!(spark(&[1.0; 20], 5, 0.0).chars().count(), 5);
        assert_eq!(spark(&[0.001; 3], 3, 0.01), "▂▂▂");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(offset(75_250), "1:15.2");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
