//! A timer store's pending timers frozen at a checkpoint barrier ([`FrozenTimers`]): a copy of
//! its key index (24 bytes per key id, plus the spill sets of keys with three or more timers),
//! taken on the shard and read on the checkpoint thread. The tiers are not copied: the key
//! index alone knows every live timer and its registration order.

use super::key_index::{KeyIndex, NO_SEQ, SPILLED};
use super::tiers::timestamp;
use crate::key::KeyId;
use crate::time::Timestamp;

/// The pending timers of one store, by key, as a barrier found them
/// ([`TimerWheel::freeze`](super::TimerWheel::freeze)).
#[derive(Debug, Clone)]
pub struct FrozenTimers {
    keys: KeyIndex,
    /// The store's next sequence number: the orders count from it.
    next: u32,
    /// How many timers are pending.
    len: usize,
}

impl FrozenTimers {
    pub(super) fn new(keys: KeyIndex, next: u32, len: usize) -> Self {
        FrozenTimers { keys, next, len }
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` has a pending timer.
    pub fn has_timers(&self, key: KeyId) -> bool {
        self.keys.records.get(key as usize).is_some_and(|r| r.seq[0] != NO_SEQ)
    }

    /// Calls `f(timestamp, order)` for each of `key`'s pending timers, in no particular order;
    /// see [`TimerWheel::for_each_of_key_in_order`](super::TimerWheel::for_each_of_key_in_order).
    pub fn for_each_of_key_in_order(&self, key: KeyId, f: impl FnMut(Timestamp, u32)) {
        in_order(&self.keys, self.next, key, f);
    }
}

/// Calls `f(timestamp, order)` for each of `key`'s live timers in `keys`, where `order` ranks
/// them by registration, oldest first, given the store's next sequence number `next`.
pub(super) fn in_order(keys: &KeyIndex, next: u32, key: KeyId, mut f: impl FnMut(Timestamp, u32)) {
    keys.for_each_with_seq(key, |at, seq| {
        // Sequence numbers run 0..SPILLED and wrap; those at or above `next` are older.
        let order = if seq >= next { seq - next } else { seq + (SPILLED - next) };
        f(timestamp(at), order);
    });
}
