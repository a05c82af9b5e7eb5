//! Human output: aligned tables, units (µs/ms/s, KiB/MiB), colour only on a terminal; and the
//! `--json` writer.
//!
//! Rendering is pure (`&T` → `String`, given a [`Style`] and the clock) so it can be tested
//! against golden files; only [`Out`] touches stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use serde::Serialize;

use crate::cli::ColorWhen;

/// How to render: with or without ANSI colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Emit ANSI colour codes.
    pub color: bool,
}

/// A colour or emphasis for a piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// As is.
    Plain,
    /// Table headers, titles.
    Bold,
    /// Secondary detail (sites, "-").
    Dim,
    /// Something is wrong now (a stall in progress, a panic).
    Red,
    /// Worth a look (high utilization, busy pool).
    Yellow,
    /// Healthy / active.
    Green,
    /// Names and identifiers.
    Cyan,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Plain => "",
            Paint::Bold => "\x1b[1m",
            Paint::Dim => "\x1b[2m",
            Paint::Red => "\x1b[31m",
            Paint::Yellow => "\x1b[33m",
            Paint::Green => "\x1b[32m",
            Paint::Cyan => "\x1b[36m",
        }
    }
}

impl Style {
    /// Decides colour from `--color`, `NO_COLOR` and whether stdout is a terminal.
    pub fn detect(when: ColorWhen) -> Style {
        let color = match when {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                !matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty())
                    && io::stdout().is_terminal()
            }
        };
        Style { color }
    }

    /// `text` wrapped in `paint`'s colour codes (unchanged without colour).
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        if !self.color || paint == Paint::Plain || text.is_empty() {
            return text.to_owned();
        }
        format!("{}{text}\x1b[0m", paint.code())
    }
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// One table cell: its text and colour.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    paint: Paint,
}

impl Cell {
    /// A cell in `paint`.
    pub fn new(text: impl Into<String>, paint: Paint) -> Cell {
        Cell {
            text: text.into(),
            paint,
        }
    }

    /// An uncoloured cell.
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell::new(text, Paint::Plain)
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::plain(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::plain(text)
    }
}

/// A table with a header row, columns aligned by content width, two spaces apart, no trailing
/// blanks.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these `(header, alignment)` columns.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns.iter().map(|(h, a)| ((*h).to_owned(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row (header first), each ending in `\n`.
    pub fn render(&self, style: &Style) -> String {
        let n = self.columns.len();
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(n).enumerate() {
                widths[i] = widths[i].max(width(&cell.text));
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self
            .columns
            .iter()
            .map(|(h, _)| Cell::new(h.clone(), Paint::Bold))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            // The last non-empty cell ends the line: no padding after it.
            let last = row
                .iter()
                .take(n)
                .rposition(|c| !c.text.is_empty())
                .unwrap_or(0);
            let empty = Cell::plain("");
            let columns = self.columns.iter().zip(&widths).take(last + 1);
            for (i, ((_, align), w)) in columns.enumerate() {
                let cell = row.get(i).unwrap_or(&empty);
                let pad = w.saturating_sub(width(&cell.text));
                let painted = style.paint(cell.paint, &cell.text);
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Left if i == last => line.push_str(&painted),
                    Align::Left => {
                        line.push_str(&painted);
                        line.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(&painted);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Display width of `s`: one column per char (labels are ASCII, units use `µ`).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// `v` rounded to three significant digits and printed without exponent, e.g. `1.25`,
/// `12.5`, `125`.
fn sig3(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let digits = v.abs().log10().floor() as i32; // 0 for 1..10
    let decimals = (2 - digits).max(0) as usize;
    let scale = 10f64.powi(decimals as i32);
    let rounded = (v * scale).round() / scale;
    // Rounding can add a digit (9.996 -> 10.00); print with one decimal less then.
    if rounded.abs().log10().floor() as i32 > digits && decimals > 0 {
        return format!("{rounded:.prec$}", prec = decimals - 1);
    }
    format!("{rounded:.decimals$}")
}

/// A duration in seconds as `850µs`, `12.5ms`, `2.50s`, `2m05s`, `1h02m`, `3d04h`; `-` for a
/// negative or non-finite value.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs == 0.0 {
        return "0s".to_owned();
    }
    // Pick the unit after rounding so 999.9µs prints as 1.00ms, not 1000µs.
    let us = round_sig(secs * 1e6, 3);
    if us < 1.0 {
        return "<1µs".to_owned();
    }
    if us < 1000.0 {
        return format!("{}µs", sig3(us));
    }
    let ms = round_sig(secs * 1e3, 3);
    if ms < 1000.0 {
        return format!("{}ms", sig3(ms));
    }
    let s = round_sig(secs, 3);
    if s < 60.0 {
        return format!("{}s", sig3(s));
    }
    let total = secs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else {
        format!("{m}m{s:02}s")
    }
}

fn round_sig(v: f64, sig: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(sig - 1 - digits);
    (v * scale).round() / scale
}

/// A byte count as `512 B`, `1.50 KiB`, `12.3 MiB`, `4.00 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    for unit in UNITS {
        v /= 1024.0;
        let r = round_sig(v, 3);
        // Stay within three digits: 1000 KiB and up reads better as 0.977 MiB.
        if r < 1000.0 || unit == "PiB" {
            return format!("{} {unit}", sig3(r));
        }
    }
    format!("{n} B")
}

/// A ratio in 0..=1 as a percentage, `25.0%`.
pub fn percent(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "-".to_owned();
    }
    format!("{:.1}%", ratio * 100.0)
}

/// A rate per second: one decimal below 1000, whole numbers above.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() {
        "-".to_owned()
    } else if per_second < 1000.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

/// How long before `now_ms` the instant `then_ms` was: `120ms ago`; `just now` for a
/// timestamp at or after `now_ms` (clocks of two processes).
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    if then_ms >= now_ms {
        return "just now".to_owned();
    }
    format!("{} ago", duration((now_ms - then_ms) as f64 / 1e3))
}

/// A unix-ms timestamp as UTC, `2023-11-14 22:13:20.000Z`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// The UTC time of day of a unix-ms timestamp, `22:13:20`.
pub fn utc_time(ms: u64) -> String {
    let rem = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `Some(v)` as text, `None` as `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A title line, bold on a terminal.
pub fn title(style: &Style, text: &str) -> String {
    let mut s = style.paint(Paint::Bold, text);
    s.push('\n');
    s
}

/// `key value` lines with the keys aligned.
pub fn pairs(style: &Style, rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let pad = " ".repeat(w - width(k));
        let _ = writeln!(out, "{}{pad}  {v}", style.paint(Paint::Bold, k));
    }
    out
}

/// Where command output goes: stdout, as text or as JSON.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json`: print raw results.
    pub json: bool,
    /// Colour or not.
    pub style: Style,
}

impl Out {
    /// Writes `text` as is to stdout.
    ///
    /// # Errors
    ///
    /// The write error (a broken pipe is reported as such; `main` exits 0 quietly on it).
    pub fn text(&self, text: &str) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    }

    /// Writes `value` as one pretty-printed JSON document.
    ///
    /// # Errors
    ///
    /// As [`Out::text`].
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    }

    /// Writes `value` as one compact JSON line (NDJSON).
    ///
    /// # Errors
    ///
    /// As [`Out::text`].
    pub fn json_line<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        serde_json::to_writer(&mut stdout, value)?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            (0.0, "0s"),
            (1e-9, "<1µs"),
            (1e-6, "1.00µs"),
            (0.000_85, "850µs"),
            (0.000_999_9, "1.00ms"),
            (0.0125, "12.5ms"),
            (0.25, "250ms"),
            (0.9999, "1.00s"),
            (2.5, "2.50s"),
            (59.9, "59.9s"),
            (59.99, "1m00s"),
            (125.0, "2m05s"),
            (3720.0, "1h02m"),
            (273_600.0, "3d04h"),
            (-1.0, "-"),
            (f64::NAN, "-"),
        ];
        for (secs, want) in cases {
            assert_eq!(duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn byte_counts() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (10 * 1024 + 300, "10.3 KiB"),
            (1_048_575, "1.00 MiB"),
            (1_024_000, "0.977 MiB"),
            (5 * 1024 * 1024 * 1024, "5.00 GiB"),
        ];
        for (n, want) in cases {
            assert_eq!(bytes(n), want, "{n}");
        }
    }

    #[test]
    fn other_units() {
        assert_eq!(percent(0.25), "25.0%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(rate(99.54), "99.5");
        assert_eq!(rate(123_456.7), "123457");
        assert_eq!(ago(1000, 1250), "250ms ago");
        assert_eq!(ago(2000, 1000), "just now");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123Z");
        assert_eq!(utc(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000Z");
        assert_eq!(utc_time(1_700_000_000_123), "22:13:20");
    }

    #[test]
    fn table_aligns_without_trailing_blanks() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("X", Align::Left),
        ]);
        t.row(vec!["a".into(), "100".into(), "".into()]);
        t.row(vec!["long name".into(), "1".into(), "x".into()]);
        assert_eq!(
            t.render(&Style::default()),
            "NAME         N  X\na          100\nlong name    1  x\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        t.row(vec![Cell::new("x", Paint::Red), "y".into()]);
        let plain = t.render(&Style { color: false });
        assert!(!plain.contains('\x1b'));
        let coloured = t.render(&Style { color: true });
        assert!(coloured.contains("\x1b[31mx\x1b[0m  y"), "{coloured:?}");
        assert!(coloured.starts_with("\x1b[1mA\x1b[0m  \x1b[1mB\x1b[0m"));
    }
}
