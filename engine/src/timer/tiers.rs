//! The three tiers that hold the entries, in firing order: the overdue tier, the wheel's levels of
//! slot lists with their `occupied` bitmaps, and the far tier ([`Tiers`]); the axis that maps
//! timestamps onto positions ([`axis`], [`timestamp`]) and a position onto its level and slot
//! ([`level_for`], [`slot_for`]); and the wheel's movements: the next-expiration search, cascades,
//! far-tier migrations and [`advance`](TimerWheel::advance). The design is in the
//! [module documentation](super#implementation); comments refer to its invariants by number.

use std::collections::BTreeMap;
use std::mem::{size_of, take};

use super::TimerWheel;
use super::compaction::ListId;
use super::key_index::KeyIndex;
use super::list::{Entry, List, Spares};
use super::lookahead::LOOKAHEAD;
use crate::prefetch::prefetch_index;
use crate::time::Timestamp;

/// Wheel levels (the far tier comes after them).
pub(super) const LEVELS: usize = 6;
/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
pub(super) const SLOTS: usize = 1 << SLOT_BITS;
/// Mask of a slot digit.
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// log2 of the wheel's span: positions equal above this bit are in the same block.
pub(super) const BLOCK_BITS: u32 = SLOT_BITS * LEVELS as u32;

/// A timestamp's position on the `u64` axis (order-preserving: `i64::MIN` is 0, `i64::MAX` is
/// `u64::MAX`).
#[inline]
pub(super) fn axis(ts: Timestamp) -> u64 {
    (ts as u64) ^ (1 << 63)
}

/// The timestamp at a position of the axis (inverse of [`axis`]).
#[inline]
pub(super) fn timestamp(at: u64) -> Timestamp {
    (at ^ (1 << 63)) as i64
}

/// The level a timer at `at` belongs to when the wheel is at `elapsed` (tokio's `level_for`);
/// `LEVELS` or more means the far tier. Requires `at >= elapsed`.
#[inline]
pub(super) fn level_for(elapsed: u64, at: u64) -> usize {
    let masked = (elapsed ^ at) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

/// The slot of `at` on `level`.
#[inline]
pub(super) fn slot_for(at: u64, level: usize) -> usize {
    ((at >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize
}

/// The index of slot `slot` of `level` in [`Tiers::slots`].
#[inline]
pub(super) fn slot_index(level: usize, slot: usize) -> usize {
    level * SLOTS + slot
}

/// A slot whose time has come: the lowest occupied slot, on the lowest non-empty level.
#[derive(Clone, Copy, Debug)]
pub(super) struct Expiration {
    pub(super) level: usize,
    pub(super) slot: usize,
    /// The position where the slot starts (for level 0: its only timestamp).
    pub(super) deadline: u64,
}

/// Every entry of the store, each in the list of its tier (invariant 1), and the wheel's position
/// that decides the tiers.
#[derive(Debug)]
pub(super) struct Tiers {
    /// The wheel's slot lists, `level * 64 + slot`.
    pub(super) slots: Box<[List]>,
    /// One bit per non-empty slot, per level.
    pub(super) occupied: [u64; LEVELS],
    /// Overdue lists by position (all `< elapsed`), one timestamp each.
    pub(super) overdue: BTreeMap<u64, List>,
    /// Far lists by position (all beyond `elapsed`'s block), one timestamp each.
    pub(super) far: BTreeMap<u64, List>,
    /// Big buffers for reuse.
    pub(super) spares: Spares,
    /// The wheel's position: `<= time`; see invariant 1.
    pub(super) elapsed: u64,
}

impl Tiers {
    /// Empty tiers, the wheel at position 0.
    pub(super) fn new() -> Self {
        Tiers {
            slots: (0..LEVELS * SLOTS).map(|_| List::default()).collect(),
            occupied: [0; LEVELS],
            overdue: BTreeMap::new(),
            far: BTreeMap::new(),
            spares: Spares::default(),
            elapsed: 0,
        }
    }

    /// Files a new entry in its tier (invariant 1).
    #[inline]
    pub(super) fn push_entry(&mut self, e: Entry) {
        if e.at < self.elapsed {
            self.overdue.entry(e.at).or_default().push(e, &mut self.spares);
            return;
        }
        let level = level_for(self.elapsed, e.at);
        if level < LEVELS {
            let slot = slot_for(e.at, level);
            self.occupied[level] |= 1 << slot;
            self.slots[slot_index(level, slot)].push(e, &mut self.spares);
        } else {
            self.far.entry(e.at).or_default().push(e, &mut self.spares);
        }
    }

    /// The next slot due: the lowest occupied slot on the lowest non-empty level. O(levels).
    pub(super) fn next_expiration(&self) -> Option<Expiration> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let now_slot = slot_for(self.elapsed, level) as u32;
            debug_assert_eq!(occupied & !(u64::MAX << now_slot), 0, "slot behind the wheel");
            debug_assert!(
                level == 0 || occupied & (1 << now_slot) == 0,
                "coarse slot at the wheel"
            );
            let slot = occupied.trailing_zeros();
            let level_start = self.elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
            let deadline = level_start + (u64::from(slot) << shift);
            return Some(Expiration { level, slot: slot as usize, deadline });
        }
        None
    }

    /// An emptied list: clear its slot's bit or remove it from its map.
    pub(super) fn release_list(&mut self, id: ListId) {
        match id {
            ListId::Slot(i) => {
                self.slots[i].reset(&mut self.spares);
                self.occupied[i / SLOTS] &= !(1 << (i % SLOTS));
            }
            ListId::Overdue(at) => {
                if let Some(mut list) = self.overdue.remove(&at) {
                    list.release(&mut self.spares);
                }
            }
            ListId::Far(at) => {
                if let Some(mut list) = self.far.remove(&at) {
                    list.release(&mut self.spares);
                }
            }
        }
    }

    /// Empties every list; small buffers are kept for reuse. The wheel's position stays.
    pub(super) fn clear(&mut self) {
        for list in self.slots.iter_mut() {
            list.reset(&mut self.spares);
        }
        self.occupied = [0; LEVELS];
        self.overdue.clear();
        self.far.clear();
    }

    /// Approximate heap bytes held by the lists and the spare buffers (capacities, not lengths).
    pub(super) fn memory_bytes(&self) -> usize {
        // A BTreeMap entry costs about its key and value plus a share of its node.
        let map_entry = size_of::<u64>() + size_of::<List>() + 8;
        self.spares.memory_bytes()
            + self.slots.len() * size_of::<List>()
            + self.slots.iter().map(List::capacity_bytes).sum::<usize>()
            + self
                .overdue
                .values()
                .chain(self.far.values())
                .map(List::capacity_bytes)
                .sum::<usize>()
            + (self.overdue.len() + self.far.len()) * map_entry
    }
}

impl TimerWheel {
    /// The list `id`, if it exists.
    pub(super) fn list_mut(&mut self, id: ListId) -> Option<&mut List> {
        self.parts(id).2
    }

    /// The key index, the spare buffers and the list `id` (if it exists), borrowed together: for
    /// walking a list while testing its entries' liveness or recycling its buffer.
    pub(super) fn parts(&mut self, id: ListId) -> (&KeyIndex, &mut Spares, Option<&mut List>) {
        let tiers = &mut self.tiers;
        let list = match id {
            ListId::Slot(i) => Some(&mut tiers.slots[i]),
            ListId::Overdue(at) => tiers.overdue.get_mut(&at),
            ListId::Far(at) => tiers.far.get_mut(&at),
        };
        (&self.keys, &mut tiers.spares, list)
    }

    /// The smallest live position (`len > 0`). Drops the stale entries it walks over at the front
    /// of lists, and compacts a coarse slot it has to scan.
    pub(super) fn exact_min(&mut self) -> u64 {
        while let Some((&at, _)) = self.tiers.overdue.first_key_value() {
            if self.settle_front(ListId::Overdue(at)) {
                return at;
            }
        }
        for level in 0..LEVELS {
            let mut bits = self.tiers.occupied[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let index = slot_index(level, slot);
                if level == 0 {
                    if self.settle_front(ListId::Slot(index)) {
                        return self.tiers.slots[index].get(0).expect("non-empty").at;
                    }
                } else {
                    // A coarse slot mixes timestamps: its minimum takes a scan, which must see
                    // live entries only (a stale entry's position is no timer's). Compacting the
                    // slot first drops the stale ones (and closes a compaction pass's gap).
                    self.compact_list_now(ListId::Slot(index));
                    if let Some(m) = self.tiers.slots[index].iter().map(|e| e.at).min() {
                        return m;
                    }
                }
            }
        }
        while let Some((&at, _)) = self.tiers.far.first_key_value() {
            if self.settle_front(ListId::Far(at)) {
                return at;
            }
        }
        unreachable!("len > 0 but no live entry")
    }

    /// Drops stale entries from the front of a single-timestamp list; returns whether a live
    /// entry remains (the list is released if not).
    fn settle_front(&mut self, id: ListId) -> bool {
        self.settle_compaction(id);
        loop {
            let Some(list) = self.list_mut(id) else { return false };
            let Some(&e) = list.get(0) else {
                self.tiers.release_list(id);
                return false;
            };
            if self.keys.is_live(&e) {
                return true;
            }
            let (_, spares, list) = self.parts(id);
            list.and_then(|l| l.pop_front(spares));
            self.counts.stale -= 1;
        }
    }

    /// Moves the wheel to the start of a coarse slot and redistributes its entries to lower levels,
    /// in list order (invariant 3), dropping stale ones on the way.
    pub(super) fn cascade(&mut self, exp: Expiration) {
        debug_assert!(exp.level > 0);
        self.tiers.elapsed = exp.deadline;
        let index = slot_index(exp.level, exp.slot);
        self.settle_compaction(ListId::Slot(index));
        let mut list = take(&mut self.tiers.slots[index]);
        self.tiers.occupied[exp.level] &= !(1 << exp.slot);
        // Without stale entries every entry is live: skip the key-record reads altogether.
        let check = self.counts.stale > 0;
        for run in list.runs() {
            for (i, e) in run.iter().enumerate() {
                if check {
                    if let Some(a) = run.get(i + LOOKAHEAD) {
                        prefetch_index(&self.keys.records, a.key as usize);
                    }
                    if !self.keys.is_live(e) {
                        self.counts.stale -= 1;
                        continue;
                    }
                }
                let level = level_for(self.tiers.elapsed, e.at);
                debug_assert!(level < exp.level);
                let slot = slot_for(e.at, level);
                self.tiers.occupied[level] |= 1 << slot;
                self.tiers.slots[slot_index(level, slot)].push(*e, &mut self.tiers.spares);
            }
        }
        list.reset(&mut self.tiers.spares);
        // Nothing lands on a coarse slot at the wheel's own digit: hand the buffer back for reuse.
        self.tiers.slots[index] = list;
    }

    /// The wheel (empty until now) has entered `block`: move that block's far lists into it. Far
    /// lists that `elapsed` has already passed can only hold stale entries (an idle jump past
    /// them): they are dropped.
    pub(super) fn migrate(&mut self, block: u64) {
        while let Some(entry) = self.tiers.far.first_entry() {
            let at = *entry.key();
            if at >> BLOCK_BITS > block {
                break;
            }
            self.settle_compaction(ListId::Far(at));
            let list = self.tiers.far.remove(&at).expect("first entry");
            if at < self.tiers.elapsed {
                debug_assert!(list.iter().all(|e| !self.keys.is_live(e)));
                self.counts.stale -= list.len();
                continue;
            }
            let level = level_for(self.tiers.elapsed, at);
            debug_assert!(level < LEVELS && at >= self.tiers.elapsed);
            let slot = slot_for(at, level);
            self.tiers.occupied[level] |= 1 << slot;
            // The whole list moves, in order, into a slot that holds no entry at `at` (invariant 3).
            self.tiers.slots[slot_index(level, slot)].append(list, &mut self.tiers.spares);
        }
    }

    /// Moves the wheel towards `now` when nothing is due at `now`, cascading the coarse slots that
    /// start at or before it, so that registrations near `now` land on low levels (and never in the
    /// far tier once `now` is in a new block).
    pub(super) fn advance(&mut self, now: u64) {
        if now <= self.tiers.elapsed {
            return;
        }
        loop {
            match self.tiers.next_expiration() {
                Some(exp) if exp.deadline <= now => {
                    if exp.level == 0 {
                        // Only stale entries can be due when `advance` runs: drop them.
                        let index = slot_index(0, exp.slot);
                        debug_assert!(
                            self.tiers.slots[index].iter().all(|e| !self.keys.is_live(e))
                        );
                        self.settle_compaction(ListId::Slot(index));
                        self.counts.stale -= self.tiers.slots[index].len();
                        self.tiers.release_list(ListId::Slot(index));
                    } else {
                        self.cascade(exp);
                    }
                }
                Some(_) => {
                    // The wheel is not empty, so `now` is before its next slot, in its block.
                    self.tiers.elapsed = now;
                    return;
                }
                None => {
                    let block = self.tiers.elapsed >> BLOCK_BITS;
                    self.tiers.elapsed = now;
                    if now >> BLOCK_BITS != block {
                        self.migrate(now >> BLOCK_BITS);
                    }
                    return;
                }
            }
        }
    }
}
