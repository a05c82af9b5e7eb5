//! The phases of one loop iteration, in libuv's order.

use crate::names::named_enum;

named_enum!(
    /// A phase of the loop iteration: update time → timers → pending → idle → prepare → poll →
    /// check → close.
    pub enum Phase {
        /// Expired timers run.
        Timers => "timers",
        /// I/O callbacks deferred from the previous iteration (write completions, errors).
        Pending => "pending",
        /// Idle handles run (and make the poll not block).
        Idle => "idle",
        /// Prepare handles run, just before the loop polls.
        Prepare => "prepare",
        /// The loop waits for I/O and runs I/O, async and thread-pool completion callbacks.
        Poll => "poll",
        /// Check handles run, just after the poll.
        Check => "check",
        /// Close callbacks of handles closed during the iteration run.
        Close => "close",
    }
);
