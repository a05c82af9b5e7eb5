//! The phases of one loop iteration, in libuv's order.

/// A phase of the loop iteration: update time → timers → pending → idle → prepare → poll →
/// check → close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Expired timers run.
    Timers,
    /// I/O callbacks deferred from the previous iteration (write completions, errors).
    Pending,
    /// Idle handles run (and make the poll not block).
    Idle,
    /// Prepare handles run, just before the loop polls.
    Prepare,
    /// The loop waits for I/O and runs I/O, async and thread-pool completion callbacks.
    Poll,
    /// Check handles run, just after the poll.
    Check,
    /// Close callbacks of handles closed during the iteration run.
    Close,
}

impl Phase {
    /// Every phase, in iteration order.
    pub const ALL: [Phase; 7] = [
        Phase::Timers,
        Phase::Pending,
        Phase::Idle,
        Phase::Prepare,
        Phase::Poll,
        Phase::Check,
        Phase::Close,
    ];

    /// The phase's name as used in metrics labels and the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Timers => "timers",
            Phase::Pending => "pending",
            Phase::Idle => "idle",
            Phase::Prepare => "prepare",
            Phase::Poll => "poll",
            Phase::Check => "check",
            Phase::Close => "close",
        }
    }

    /// Position in [`Phase::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(i: u8) -> Option<Phase> {
        Phase::ALL.get(i as usize).copied()
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
