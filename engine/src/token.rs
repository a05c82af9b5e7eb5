//! The `mio::Token` of a handle's descriptor: its slot index in the high bits, the low bits of
//! its id below, so a readiness event for a closed handle whose slot was reused is recognised
//! as stale. The two tokens of the loop's own sources (waker, signal pipe) lie beyond every
//! handle's.

use std::io;

use crate::handle::HandleRef;

/// The token of the loop's waker.
pub(crate) const WAKER: mio::Token = mio::Token(usize::MAX);
/// The token of the loop's signal pipe.
pub(crate) const SIGNAL: mio::Token = mio::Token(usize::MAX - 1);

/// Bits of the handle id kept in a token.
const ID_BITS: u32 = 40;
const ID_MASK: usize = (1 << ID_BITS) - 1;
/// Slot indexes a token can carry: the bits above the id, less the top index, which the
/// reserved tokens use.
pub(crate) const SLOTS: u32 = (1 << (usize::BITS - ID_BITS)) - 1;

const _: () = assert!(
    usize::BITS == 64,
    "a token packs a slot index and 40 bits of id into 64 bits"
);
const _: () = assert!(
    WAKER.0 >> ID_BITS >= SLOTS as usize && SIGNAL.0 >> ID_BITS >= SLOTS as usize,
    "the reserved tokens must lie beyond every handle's slot"
);
const _: () = assert!(WAKER.0 != SIGNAL.0);

/// The token to register `r`'s descriptor with.
///
/// # Errors
/// When `r`'s slot index is beyond what a token carries (more than 16 million handles at
/// once): its events could not be told from another handle's.
pub(crate) fn for_handle(r: HandleRef) -> io::Result<mio::Token> {
    if r.slot >= SLOTS {
        return Err(io::Error::other(
            "too many handles on this loop for a poll token",
        ));
    }
    Ok(mio::Token(
        ((r.slot as usize) << ID_BITS) | (r.id as usize & ID_MASK),
    ))
}

/// The slot index a handle's token carries, and the id bits to check the slot's handle
/// against (with [`matches`]).
#[inline]
pub(crate) fn slot_of(token: mio::Token) -> u32 {
    debug_assert!(token != WAKER && token != SIGNAL);
    (token.0 >> ID_BITS) as u32
}

/// Whether `token` was made for the handle with id `id` (not for an earlier handle of the
/// same slot).
#[inline]
pub(crate) fn matches(token: mio::Token, id: u64) -> bool {
    id as usize & ID_MASK == token.0 & ID_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(slot: u32, id: u64) -> HandleRef {
        HandleRef { slot, id }
    }

    #[test]
    fn a_token_names_its_slot_and_its_handle() {
        let r = handle(12, 345);
        let t = for_handle(r).expect("in range");
        assert_eq!(slot_of(t), 12);
        assert!(matches(t, 345));
        assert!(!matches(t, 346), "a later handle of the same slot");
    }

    #[test]
    fn the_last_slot_stays_clear_of_the_reserved_tokens() {
        for id in [0, 1, u64::MAX, u64::MAX - 1] {
            let t = for_handle(handle(SLOTS - 1, id)).expect("last slot");
            assert_ne!(t, WAKER);
            assert_ne!(t, SIGNAL);
        }
        assert!(for_handle(handle(SLOTS, 1)).is_err());
        assert!(for_handle(handle(u32::MAX, 1)).is_err());
    }
}
