//! The monotonic clock every loop and thread shares: nanoseconds since the process first asked.
//!
//! One epoch for the whole process lets the loop, the thread pool and the observers compare
//! times without converting, and lets snapshots map monotonic times to wall-clock times.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Epoch {
    mono: Instant,
    wall: SystemTime,
}

static EPOCH: OnceLock<Epoch> = OnceLock::new();

fn epoch() -> &'static Epoch {
    EPOCH.get_or_init(|| Epoch {
        mono: Instant::now(),
        wall: SystemTime::now(),
    })
}

/// Monotonic nanoseconds since the process epoch.
#[inline]
pub fn now_ns() -> u64 {
    // `as` cannot truncate for 584 years of uptime.
    epoch().mono.elapsed().as_nanos() as u64
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
