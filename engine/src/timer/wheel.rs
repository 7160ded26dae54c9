//! [`TimerWheel`]: the production timer store, and its public API. The design, invariants and
//! complexity are in the [module documentation](super#implementation); comments here refer to its
//! invariants by number. The store's parts and their methods are in the sibling files (listed in
//! the [module documentation](super#source-files)).

use std::fmt;

use super::compaction::{Compactor, ListId};
use super::frozen::{FrozenTimers, in_order};
use super::key_index::{KeyIndex, NO_SEQ, SPILLED};
use super::list::Entry;
use super::lookahead::{LOOKAHEAD, Lookahead};
use super::tiers::{BLOCK_BITS, Tiers, axis, timestamp};
use super::{Timer, TimerError};
use crate::key::KeyId;
use crate::prefetch::prefetch_index;
use crate::time::Timestamp;

/// The default bound on pending timers per store.
const DEFAULT_LIMIT: usize = u32::MAX as usize - 1;

/// A point in a store's sequence of registrations ([`TimerWheel::registration_mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationMark {
    epoch: u64,
    seq: u32,
}

/// What the store counts (invariant 4): live timers, stale entries, and a bound on the earliest
/// live timer.
#[derive(Debug)]
pub(super) struct Counts {
    /// Live timers.
    pub(super) len: usize,
    /// Stale entries still in the lists.
    pub(super) stale: usize,
    /// A lower bound of the live positions (meaningless when `len == 0`); exact if `min_exact`.
    pub(super) min: u64,
    pub(super) min_exact: bool,
}

/// The numbering of registrations (invariant 5).
#[derive(Debug)]
struct Sequence {
    /// The next sequence number.
    next: u32,
    /// How many times sequence numbers wrapped.
    epoch: u64,
    /// The sequence number of the entry of the timer `poll` returned last.
    last_fired: u32,
}

/// The production timer store: a hierarchical timing wheel with overdue and far tiers, unique per
/// `(key, timestamp)`, firing in timestamp order and, for equal timestamps, in registration order.
///
/// One per time domain per keyed operator per shard. See the [module documentation](super) for the
/// guarantees and the design.
pub struct TimerWheel {
    /// Every key's live timers.
    pub(super) keys: KeyIndex,
    /// The entries in their tiers, and the wheel's position.
    pub(super) tiers: Tiers,
    /// The store's time: the largest `now` polled, as a position.
    pub(super) time: u64,
    /// Live timers, stale entries, the earliest live position.
    pub(super) counts: Counts,
    /// Sequence numbers.
    seq: Sequence,
    /// The most live timers allowed.
    limit: usize,
    /// The compaction of stale entries.
    pub(super) compaction: Compactor,
    /// The firing loop's look-ahead.
    lookahead: Lookahead,
}

impl TimerWheel {
    /// An empty store; its time starts at `i64::MIN`.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// An empty store that holds at most `limit` pending timers (registering more fails with
    /// [`TimerError::CapacityExceeded`]).
    pub fn with_limit(limit: usize) -> Self {
        TimerWheel {
            keys: KeyIndex::default(),
            tiers: Tiers::new(),
            time: 0,
            counts: Counts { len: 0, stale: 0, min: u64::MAX, min_exact: true },
            seq: Sequence { next: 0, epoch: 0, last_fired: NO_SEQ },
            limit,
            compaction: Compactor::new(),
            lookahead: Lookahead::default(),
        }
    }

    /// Sets the number of stale entries beyond which compaction may start (default 4,096): tests use
    /// tiny values so that compaction runs all the time.
    #[doc(hidden)]
    pub fn with_compaction_threshold(mut self, stale: usize) -> Self {
        self.compaction.threshold = stale;
        self
    }

    /// Sets the next sequence number (tests of the wrap-around).
    #[cfg(test)]
    pub(crate) fn force_next_seq(&mut self, seq: u32) {
        self.seq.next = seq;
    }

    /// Registers the timer `(key, ts)`.
    ///
    /// Returns `Ok(true)` if it was added, `Ok(false)` if that `(key, ts)` is already pending (then
    /// nothing changes). Never fires anything, whatever `ts` is (docs/semantics.md A1.6): a timer at or below
    /// the store's time fires at the next [`poll`](Self::poll) whose `now` reaches it.
    ///
    /// # Errors
    ///
    /// [`TimerError::CapacityExceeded`] when the store already holds its limit of pending timers
    /// ([`with_limit`](Self::with_limit)); the store is unchanged.
    #[inline]
    pub fn register(&mut self, key: KeyId, ts: Timestamp) -> Result<bool, TimerError> {
        let at = axis(ts);
        if self.keys.find(key, at).is_some() {
            return Ok(false);
        }
        if self.counts.len >= self.limit {
            return Err(TimerError::CapacityExceeded { limit: self.limit as u64 });
        }
        let seq = self.next_seq();
        self.keys.insert(key, at, seq);
        self.tiers.push_entry(Entry { at, key, seq });
        if self.counts.len == 0 || at < self.counts.min {
            self.counts.min = at;
            self.counts.min_exact = true;
        }
        self.counts.len += 1;
        Ok(true)
    }

    /// Removes the timer `(key, ts)` if it is pending and returns true; otherwise returns false and
    /// does nothing (docs/semantics.md A1.7: deleting a timer that does not exist or already fired is silent).
    pub fn delete(&mut self, key: KeyId, ts: Timestamp) -> bool {
        let at = axis(ts);
        if self.keys.remove(key, at).is_none() {
            return false;
        }
        self.retire(at, 1);
        true
    }

    /// True if the timer `(key, ts)` is pending.
    pub fn contains(&self, key: KeyId, ts: Timestamp) -> bool {
        self.keys.find(key, axis(ts)).is_some()
    }

    /// Removes and returns the next timer due at `now`: the pending timer with the smallest
    /// timestamp, if that timestamp is `<= now`; equal timestamps in registration order (a
    /// re-registration after a delete or after it fired counts as a new registration).
    ///
    /// Callers loop `while let Some(t) = wheel.poll(now)`. Registrations made between two polls are
    /// seen by the next poll, so a timer registered during firing with a timestamp `<= now` fires
    /// in the same loop, including a timestamp smaller than the one just fired and the very same
    /// timestamp (docs/semantics.md A1.10; S07, S09).
    ///
    /// The store's time becomes `max(previous time, now)`. `now` may be smaller than the store's
    /// time (a wall clock that went back): then only timers `<= now` fire.
    pub fn poll(&mut self, now: Timestamp) -> Option<Timer> {
        // How `poll` keeps its promises:
        //
        // * Smallest timestamp first: the tiers are searched in axis order, overdue (all below
        //   `elapsed`), then the wheel's next expiration, then the far tier (invariant 1), and
        //   within the wheel the lowest occupied slot of the lowest non-empty level comes first.
        // * FIFO among equal timestamps: a level-0 list holds all entries of its timestamp, in
        //   registration order (invariant 3), and is consumed from its head.
        // * Timers registered while the caller fires: before firing from a level-0 slot, the wheel
        //   moves to that slot's timestamp (`elapsed = deadline`), so a registration at the same
        //   timestamp is appended to the very list being fired (it fires again in this loop, S09),
        //   and one at a smaller timestamp goes to the overdue tier, which the next poll serves
        //   first (A1.10, S07). `elapsed` never passes a live entry: the wheel steps from one
        //   expiration to the next (a coarse slot is cascaded when its start is reached), and only
        //   `advance` takes it on to `now`, once no live timer is due (the stale entries it passes
        //   are dropped).
        // * Each turn of the loop returns, pops one entry (fired, or dropped if stale) or moves
        //   entries down the tiers (a cascade, a far migration), so the loop ends.
        let now = axis(now);
        if now > self.time {
            self.time = now;
        }
        // `upcoming_key` speaks of the timer after the one this poll returns: forget the last one.
        self.lookahead.key = None;
        loop {
            if self.counts.len == 0 {
                // Every entry left is stale: drop them all at once rather than one per poll.
                self.drop_stale_entries();
                self.advance(now);
                return None;
            }
            if self.counts.min > now {
                // `min` bounds every live position from below (invariant 4): nothing is due. The
                // branches below raise `min` to where the next entries start whenever they find
                // nothing due, so the polls until then are answered here, in O(1).
                self.advance(now);
                return None;
            }
            // Overdue timers are below `elapsed`, so below everything in the wheel and the far
            // tier (invariant 1): the first overdue list holds the earliest entries.
            if let Some((&at, _)) = self.tiers.overdue.first_key_value() {
                if at > now {
                    // Only after the clock went back below an overdue timer. Every live timer
                    // is at or after `at`; no `advance`, as `now` is behind `elapsed`.
                    self.counts.min = self.counts.min.max(at);
                    return None;
                }
                // Popping may drain or free the list's buffer: no compaction pass may be inside it.
                self.settle_compaction(ListId::Overdue(at));
                let list = self.tiers.overdue.get_mut(&at).expect("first key");
                let e =
                    list.pop_front(&mut self.tiers.spares).expect("overdue lists are never empty");
                let ahead = list.get(LOOKAHEAD).map(|a| a.key);
                if list.is_empty() {
                    // Invariant 2: no empty overdue list is kept.
                    self.tiers.overdue.remove(&at);
                }
                if let Some(t) = self.fire_entry(e, ahead) {
                    return Some(t);
                }
                // A stale entry, dropped: look again.
                continue;
            }
            match self.tiers.next_expiration() {
                Some(exp) if exp.deadline > now => {
                    // Nothing due: every entry is at or after the next slot.
                    self.counts.min = self.counts.min.max(exp.deadline);
                    self.advance(now);
                    return None;
                }
                Some(exp) if exp.level == 0 => {
                    // `deadline` is the slot's timestamp: `<= now <= time`. Moving the wheel there
                    // (and not to `now`) keeps every later wheel entry at or after `elapsed`
                    // (invariant 1) and files a registration at this timestamp into this slot.
                    self.tiers.elapsed = exp.deadline;
                    self.settle_compaction(ListId::Slot(exp.slot));
                    let list = &mut self.tiers.slots[exp.slot];
                    let e = list
                        .pop_front(&mut self.tiers.spares)
                        .expect("occupied slots are never empty");
                    let left = list.len();
                    if left == 0 {
                        self.tiers.occupied[0] &= !(1 << exp.slot);
                    }
                    let ahead = self.lookahead.level0(&self.tiers, exp.slot, left);
                    if let Some(t) = self.fire_entry(e, ahead) {
                        return Some(t);
                    }
                }
                // A coarse slot's time has come: spread its entries over the lower levels, then
                // look again (its earliest entries are now on level 0, or lower down).
                Some(exp) => self.cascade(exp),
                None => {
                    // Only far timers: jump to the first one; its list lands on level 0. The wheel
                    // is empty, so the jump needs no cascade (and passes no entry), and a burst of
                    // timers at one far instant fires straight from level 0.
                    let (&at, _) = self.tiers.far.first_key_value()?;
                    if at > now {
                        self.counts.min = self.counts.min.max(at);
                        self.advance(now);
                        return None;
                    }
                    self.tiers.elapsed = at;
                    self.migrate(at >> BLOCK_BITS);
                }
            }
        }
    }

    /// A mark of the registrations made so far, for
    /// [`last_fired_registered_since`](Self::last_fired_registered_since).
    pub fn registration_mark(&self) -> RegistrationMark {
        RegistrationMark { epoch: self.seq.epoch, seq: self.seq.next }
    }

    /// True if the timer the last [`poll`](Self::poll) returned was registered after `mark` was
    /// taken (conservatively true if 2^32 registrations happened since). The firing loop uses it
    /// to find timers that `on_timer` registered during the same advance, the ones that can
    /// re-fire forever (docs/semantics.md A1.10).
    #[inline]
    pub fn last_fired_registered_since(&self, mark: RegistrationMark) -> bool {
        self.seq.epoch != mark.epoch
            || (self.seq.last_fired != NO_SEQ && self.seq.last_fired >= mark.seq)
    }

    /// The key of the timer that will fire a few polls from now, if the last [`poll`](Self::poll)
    /// returned a timer and the store can see one ahead: the firing loop prefetches that key's rows
    /// so that they are in cache when its turn comes. The store has prefetched its own record.
    #[inline]
    pub fn upcoming_key(&self) -> Option<KeyId> {
        self.lookahead.key
    }

    /// Prefetches `key`'s timer record (before a batch of records that may register timers).
    #[inline]
    pub fn prefetch_key(&self, key: KeyId) {
        prefetch_index(&self.keys.records, key as usize);
    }

    /// The store's time: the largest `now` polled so far (`i64::MIN` initially).
    pub fn current_time(&self) -> Timestamp {
        timestamp(self.time)
    }

    /// The earliest pending timestamp, if any timer is pending (for example, how long a shard may
    /// park before its next processing-time timer).
    ///
    /// O(1) unless the earliest timer was deleted or fired since the last call; then the next
    /// list holding a live timer is looked up (and a coarse slot scanned).
    pub fn peek_timestamp(&mut self) -> Option<Timestamp> {
        if self.counts.len == 0 {
            return None;
        }
        if !self.counts.min_exact {
            self.counts.min = self.exact_min();
            self.counts.min_exact = true;
        }
        Some(timestamp(self.counts.min))
    }

    /// A timestamp no later than the earliest pending one, if any timer is pending: O(1), for
    /// deciding how long a shard may sleep (waking early only costs a poll that fires nothing).
    #[inline]
    pub fn next_due_at_least(&self) -> Option<Timestamp> {
        (self.counts.len > 0).then(|| timestamp(self.counts.min))
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.counts.len
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.counts.len == 0
    }

    /// How many timers `key` has pending. O(1).
    pub fn count_for_key(&self, key: KeyId) -> usize {
        self.keys.count(key)
    }

    /// The timestamps of `key`'s pending timers, ascending. O(k log k) for its k timers.
    pub fn timers_for_key(&self, key: KeyId) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(self.keys.count(key));
        self.keys.for_each_of(key, |at| out.push(timestamp(at)));
        out.sort_unstable();
        out
    }

    /// Deletes every pending timer of `key` and returns how many there were. O(k) for its k timers.
    pub fn delete_all_for_key(&mut self, key: KeyId) -> usize {
        let (n, smallest) = self.keys.remove_all(key);
        if n > 0 {
            self.retire(smallest, n);
        }
        n
    }

    /// Calls `f(timestamp, order)` for each of `key`'s pending timers, in no particular order, where
    /// `order` ranks the store's pending timers by registration, oldest first (over the last
    /// 2^32 - 2 registrations). A snapshot records it so that a restore registers timers in the
    /// same order, which keeps equal timestamps firing in registration order.
    pub fn for_each_of_key_in_order(&self, key: KeyId, f: impl FnMut(Timestamp, u32)) {
        in_order(&self.keys, self.seq.next, key, f);
    }

    /// The pending timers by key, frozen for a checkpoint to read off the shard: the key index
    /// only (copy-on-write, 24 bytes per key id), not the tiers.
    pub fn freeze(&mut self) -> FrozenTimers {
        FrozenTimers::new(self.keys.freeze(), self.seq.next, self.len())
    }

    /// Calls `f` with every pending timer, in no particular order (for snapshots).
    pub fn for_each(&self, mut f: impl FnMut(Timer)) {
        for key in 0..self.keys.records.len() {
            let key = key as KeyId;
            self.keys.for_each_of(key, |at| f(Timer { key, timestamp: timestamp(at) }));
        }
    }

    /// Removes every pending timer. The store's time stays; small buffers are kept for reuse.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.tiers.clear();
        self.counts.min = u64::MAX;
        self.counts.min_exact = true;
        self.counts.len = 0;
        self.counts.stale = 0;
        self.compaction.pass = None;
        self.lookahead.key = None;
    }

    /// Approximate heap bytes held (capacities, not lengths).
    pub fn memory_bytes(&self) -> usize {
        self.keys.memory_bytes() + self.tiers.memory_bytes()
    }

    // ---------------------------------------------------------------------------------------------
    // Internals.

    /// The next sequence number. When they wrap, stale entries (the only ones whose sequence
    /// number could be handed out again while they exist) are compacted away first.
    #[inline]
    fn next_seq(&mut self) -> u32 {
        if self.seq.next == SPILLED {
            if self.counts.stale > 0 {
                self.compact_all();
            }
            self.seq.next = 0;
            self.seq.epoch += 1;
        }
        let s = self.seq.next;
        self.seq.next += 1;
        s
    }

    /// A popped entry: if it is live, removes its timer and returns it (after prefetching the
    /// record of the entry `ahead`); else it was stale and is dropped.
    #[inline]
    fn fire_entry(&mut self, e: Entry, ahead: Option<KeyId>) -> Option<Timer> {
        if let Some(k) = ahead {
            prefetch_index(&self.keys.records, k as usize);
        }
        if self.keys.take_if_live(&e) {
            self.counts.len -= 1;
            // Every remaining live timer is at or after `e.at`: still a lower bound, exact only if
            // another timer shares the timestamp, which is not known here.
            self.counts.min = e.at;
            self.counts.min_exact = false;
            self.lookahead.key = ahead;
            self.seq.last_fired = e.seq;
            Some(Timer { key: e.key, timestamp: timestamp(e.at) })
        } else {
            self.counts.stale -= 1;
            None
        }
    }
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TimerWheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots: u32 = self.tiers.occupied.iter().map(|o| o.count_ones()).sum();
        f.debug_struct("TimerWheel")
            .field("len", &self.counts.len)
            .field("current_time", &self.current_time())
            .field("next_at_least", &self.next_due_at_least())
            .field("wheel_time", &timestamp(self.tiers.elapsed))
            .field("stale_entries", &self.counts.stale)
            .field("occupied_slots", &slots)
            .field("overdue_lists", &self.tiers.overdue.len())
            .field("far_lists", &self.tiers.far.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}
