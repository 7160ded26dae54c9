//! A timer store's pending timers frozen at a checkpoint barrier ([`FrozenTimers`]): its key
//! index frozen copy-on-write (24 bytes per key id, and the spill sets of keys with three or
//! more timers, copied a page at a time by whichever of the shard and the checkpoint thread
//! needs the page first), read on the checkpoint thread. The tiers are not frozen: the key
//! index alone knows every live timer and its registration order.

use super::key_index::{FrozenKeyIndex, KeyIndex, SPILLED};
use super::tiers::timestamp;
use crate::key::KeyId;
use crate::time::Timestamp;

/// The pending timers of one store, by key, as a barrier found them
/// ([`TimerWheel::freeze`](super::TimerWheel::freeze)).
#[derive(Debug, Clone)]
pub struct FrozenTimers {
    keys: FrozenKeyIndex,
    /// The store's next sequence number: the orders count from it.
    next: u32,
    /// How many timers are pending.
    len: usize,
}

impl FrozenTimers {
    pub(super) fn new(keys: FrozenKeyIndex, next: u32, len: usize) -> Self {
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
        self.keys.has_timers(key)
    }

    /// Calls `f(timestamp, order)` for each of `key`'s pending timers, in no particular order;
    /// see [`TimerWheel::for_each_of_key_in_order`](super::TimerWheel::for_each_of_key_in_order).
    pub fn for_each_of_key_in_order(&self, key: KeyId, f: impl FnMut(Timestamp, u32)) {
        self.keys.for_each_with_seq(key, ranked(self.next, f));
    }
}

/// Calls `f(timestamp, order)` for each of `key`'s live timers in `keys`, where `order` ranks
/// them by registration, oldest first, given the store's next sequence number `next`.
pub(super) fn in_order(keys: &KeyIndex, next: u32, key: KeyId, f: impl FnMut(Timestamp, u32)) {
    keys.for_each_with_seq(key, ranked(next, f));
}

/// `f` called with a timer's timestamp and its registration rank instead of its position and
/// sequence number.
fn ranked(next: u32, mut f: impl FnMut(Timestamp, u32)) -> impl FnMut(u64, u32) {
    move |at, seq| {
        // Sequence numbers run 0..SPILLED and wrap; those at or above `next` are older.
        let order = if seq >= next { seq - next } else { seq + (SPILLED - next) };
        f(timestamp(at), order);
    }
}
