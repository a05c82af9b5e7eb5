//! The monotonic clock every loop and thread shares: nanoseconds since the process first asked.
//!
//! One epoch for the whole process lets the loop, the thread pool and the observers compare
//! times without converting, and lets snapshots map monotonic times to wall-clock times.
//! Reads use `quanta` (the CPU's invariant TSC, calibrated once; the OS clock where there is
//! no reliable TSC): the loop reads the clock after every callback, and a TSC read costs a
//! fraction of a `clock_gettime` in a VM. Ticks become nanoseconds by one multiply and a
//! constant shift (quanta's own conversion shifts by a variable amount, which costs several
//! times more on the loop's hottest path).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Epoch {
    clock: quanta::Clock,
    mono: u64,
    /// Nanoseconds per raw tick, as a 32.32 fixed-point number.
    ns_per_tick_fx32: u64,
    wall: SystemTime,
}

/// Fraction bits of [`Epoch::ns_per_tick_fx32`].
const SCALE_SHIFT: u32 = 32;

static EPOCH: OnceLock<Epoch> = OnceLock::new();

fn epoch() -> &'static Epoch {
    EPOCH.get_or_init(calibrate)
}

/// Calibrates the TSC against the OS clock (once per process; spins for a while). Never
/// inlined, so profiles can tell its one-off cost apart (`loopd-bench --callgrind` does).
#[inline(never)]
#[cold]
fn calibrate() -> Epoch {
    let clock = quanta::Clock::new();
    let mono = clock.raw();
    // quanta's calibrated conversion of 2^32 ticks is the scale in 32.32 fixed point
    // (exactly 1.0 when its raw source is already the OS clock in nanoseconds).
    let ns_per_tick_fx32 = clock.delta_as_nanos(0, 1 << SCALE_SHIFT).max(1);
    Epoch {
        clock,
        mono,
        ns_per_tick_fx32,
        wall: SystemTime::now(),
    }
}

/// Monotonic nanoseconds since the process epoch.
#[inline]
pub fn now_ns() -> u64 {
    let e = epoch();
    let ticks = e.clock.raw().saturating_sub(e.mono);
    ((u128::from(ticks) * u128::from(e.ns_per_tick_fx32)) >> SCALE_SHIFT) as u64
}

/// Wall-clock milliseconds since the Unix epoch for a monotonic time from [`now_ns`].
pub fn wall_ms(mono_ns: u64) -> u64 {
    let wall = epoch().wall + Duration::from_nanos(mono_ns);
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Converts a duration to whole nanoseconds, saturating.
#[inline]
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_the_os_clock() {
        let t0 = now_ns();
        let i0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let ours = now_ns() - t0;
        let os = i0.elapsed().as_nanos() as u64;
        assert!(ours >= 45_000_000, "{ours}");
        let diff = ours.abs_diff(os);
        assert!(diff < 5_000_000, "ours {ours} os {os}");
    }

    #[test]
    fn fixed_point_scale_matches_quanta() {
        let e = epoch();
        let raw = e.clock.raw();
        let ours = now_ns();
        let theirs = e.clock.delta_as_nanos(e.mono, raw);
        // Read a moment apart: ours is not earlier, and the two conversions agree within 1 ms.
        assert!(ours + 1_000 >= theirs, "ours {ours} theirs {theirs}");
        assert!(
            ours.abs_diff(theirs) < 1_000_000,
            "ours {ours} theirs {theirs}"
        );
    }
}
