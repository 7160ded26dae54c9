//! The look-ahead of the firing loop ([`Lookahead`]): the key of the timer a few polls ahead, for
//! prefetching. `poll` prefetches that key's record itself, and the firing loop prefetches its
//! state rows ([`TimerWheel::upcoming_key`](super::TimerWheel::upcoming_key)), so that both are in
//! cache when the timer's turn comes. It is only a hint: a wrong key costs a useless prefetch,
//! never a wrong result.

use super::tiers::Tiers;
use crate::key::KeyId;

/// How far ahead in a list the firing loop and the cascades prefetch.
pub(super) const LOOKAHEAD: usize = 8;

/// Where the firing loop looks ahead.
#[derive(Debug, Default)]
pub(super) struct Lookahead {
    /// The key of the entry [`LOOKAHEAD`] places after the one `poll` returned last.
    pub(super) key: Option<KeyId>,
    /// Where that entry was found: (level-0 slot, index after its head).
    at: Option<(usize, usize)>,
}

impl Lookahead {
    /// The key of the entry [`LOOKAHEAD`] places ahead in firing order, after a pop from level-0
    /// slot `slot` that left `left` entries in it: in the same slot, or in the next occupied
    /// level-0 slots (a level-0 slot holds one millisecond, often only a few timers).
    ///
    /// The position found is kept (`at`) and moved on by one entry at the next pop, so a run of
    /// pops over many small slots costs O(1) each; the position is only a hint, re-found when it
    /// no longer points at an entry.
    #[inline]
    pub(super) fn level0(&mut self, tiers: &Tiers, slot: usize, left: usize) -> Option<KeyId> {
        if left > LOOKAHEAD {
            self.at = None;
            return tiers.slots[slot].get(LOOKAHEAD).map(|a| a.key);
        }
        if let Some((s, i)) = self.at
            && s > slot
        {
            let list = &tiers.slots[s];
            if let Some(a) = list.get(i + 1) {
                self.at = Some((s, i + 1));
                return Some(a.key);
            }
            // The next occupied slot after `s`.
            let later = tiers.occupied[0] & (u64::MAX << s << 1);
            if later != 0 {
                let next = later.trailing_zeros() as usize;
                if let Some(a) = tiers.slots[next].get(0) {
                    self.at = Some((next, 0));
                    return Some(a.key);
                }
            }
            self.at = None;
            return None;
        }
        let mut skip = LOOKAHEAD - left;
        let mut later = tiers.occupied[0] & (u64::MAX << slot << 1);
        while later != 0 {
            let next = later.trailing_zeros() as usize;
            let list = &tiers.slots[next];
            if let Some(a) = list.get(skip) {
                self.at = Some((next, skip));
                return Some(a.key);
            }
            skip -= list.len();
            later &= later - 1;
        }
        self.at = None;
        None
    }
}
