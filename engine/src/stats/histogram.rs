//! A log-linear latency histogram, cheap enough to record on every loop iteration.
//!
//! Values are nanoseconds. Each power of two is split into four buckets, so any quantile is
//! within 25 % of the truth (typically far better after interpolation), recording is a
//! `leading_zeros` and an add, and a copy is 2 KiB — small enough to publish in a snapshot ten
//! times a second. Bucket edges include every power of two, so Prometheus `le` boundaries at
//! powers of two are exact.

/// Sub-bucket bits: 2 gives four buckets per octave.
const SUB_BITS: u32 = 2;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64`.
const BUCKETS: usize = 256;

/// A histogram of nanosecond values.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("max", &self.max)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

#[inline]
fn bucket_index(v: u64) -> usize {
    if v < SUB_COUNT {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let sub = (v >> (msb - SUB_BITS)) & (SUB_COUNT - 1);
    (((msb - SUB_BITS + 1) as u64) << SUB_BITS | sub) as usize
}

/// The half-open range `[lower, upper)` of values that land in bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB_COUNT {
        return (i, i + 1);
    }
    let msb = (i >> SUB_BITS) as u32 + SUB_BITS - 1;
    let sub = i & (SUB_COUNT - 1);
    let width = 1u64 << (msb - SUB_BITS);
    let lower = (1u64 << msb) | (sub * width);
    (lower, lower.saturating_add(width))
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_index(v)] += 1;
        self.count += 1;
        // Nanoseconds: a u64 sum wraps after 584 years of recorded time.
        self.sum = self.sum.wrapping_add(v);
        if v > self.max {
            self.max = v;
        }
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of all recorded values (wrapping; 584 years of nanoseconds fit).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The largest recorded value (exact), 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    /// The value at quantile `q` in `0.0..=1.0`, interpolated within its bucket and never above
    /// the exact maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if seen + c >= rank {
                let (lo, hi) = bucket_range(i);
                let within = (rank - seen) as f64 / c as f64;
                let v = lo as f64 + (hi - lo) as f64 * within;
                return (v as u64).min(self.max);
            }
            seen += c;
        }
        self.max
    }

    /// Cumulative count for a Prometheus `le` bound that is a power of two: every bucket that
    /// ends at or below `bound_ns`. Powers of two are bucket edges, so this is exact except
    /// for values exactly equal to the bound, which count toward the next bound.
    pub fn cumulative_le(&self, bound_ns: u64) -> u64 {
        let mut total = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if bucket_range(i).1 > bound_ns {
                break;
            }
            total += c;
        }
        total
    }

    /// Adds every value of `other` into `self` (to sum loops into a total).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// Clears every count.
    pub fn reset(&mut self) {
        *self = Histogram::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_ranges_tile_the_line() {
        let mut expected_lower = 0;
        for i in 0..200 {
            let (lo, hi) = bucket_range(i);
            assert_eq!(lo, expected_lower, "bucket {i}");
            assert!(hi > lo);
            assert_eq!(bucket_index(lo), i);
            assert_eq!(bucket_index(hi - 1), i);
            expected_lower = hi;
        }
    }

    #[test]
    fn powers_of_two_are_edges() {
        for p in 2..60 {
            let v = 1u64 << p;
            assert_eq!(bucket_range(bucket_index(v)).0, v);
        }
    }

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.1, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.1, "p99 {p99}");
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn cumulative_counts_at_powers_of_two() {
        let mut h = Histogram::new();
        h.record(1000);
        h.record(1023);
        h.record(1024);
        h.record(5000);
        assert_eq!(h.cumulative_le(1024), 2);
        assert_eq!(h.cumulative_le(512), 0);
        assert_eq!(h.cumulative_le(8192), 4);
    }

    #[test]
    fn empty_is_zero() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.mean(), 0);
    }
}
