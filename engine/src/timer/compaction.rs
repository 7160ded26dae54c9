//! Dropping stale entries: the incremental compaction pass that deletes pay for ([`Compactor`],
//! [`Compaction`]), the immediate compactions (`compact_list_now`, `compact_all`), and the
//! wholesale drop when no timer is live. See "Compaction" in the
//! [module documentation](super#implementation); a stale entry is one whose timer the key index no
//! longer holds (invariant 4), and compaction is also what keeps sequence numbers unique when they
//! wrap (invariant 5).
//!
//! A pass walks the tier lists in a fixed order ([`Tiers::list_after`]) and rewrites each one in
//! place with a read and a write cursor, keeping the order of the live entries (invariant 3).
//! Between its steps, other operations may only push to the list it is inside (a push appends
//! after the read cursor and keeps the indices, see `List::grow`); anything else that touches that
//! list first calls [`settle_compaction`](TimerWheel::settle_compaction).

use std::ops::Bound;

use super::TimerWheel;
use super::list::{Entry, List};
use super::lookahead::LOOKAHEAD;
use super::tiers::{LEVELS, SLOTS, Tiers, slot_index};
use crate::prefetch::prefetch_index;

/// Compaction starts once there are more stale entries than this, and more than live timers.
const COMPACT_MIN_STALE: usize = 4096;
/// Entries a compaction pass examines per stale entry a delete creates.
const COMPACT_WORK_PER_DELETE: usize = 4;

/// A tier list, as the compaction cursor names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListId {
    Slot(usize),
    Overdue(u64),
    Far(u64),
}

/// An incremental compaction pass: the list being compacted in place, `read` the next entry to
/// examine, `write` where the next live one goes (absolute indices in the list's `entries`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Compaction {
    pub(super) list: ListId,
    pub(super) read: usize,
    pub(super) write: usize,
}

/// The compaction state of a store: when a pass starts, and the pass in progress.
#[derive(Debug)]
pub(super) struct Compactor {
    /// Compaction starts once stale entries exceed this (and the live timers).
    pub(super) threshold: usize,
    /// The pass in progress, if any.
    pub(super) pass: Option<Compaction>,
}

impl Compactor {
    /// No pass in progress, the default threshold.
    pub(super) fn new() -> Self {
        Compactor { threshold: COMPACT_MIN_STALE, pass: None }
    }

    /// The entries of list `id` that are in it: all of them, except the gap a compaction pass in
    /// progress has left (entries it has examined and either moved down or dropped).
    pub(super) fn entries_of<'a>(
        &self,
        id: ListId,
        list: &'a List,
    ) -> impl Iterator<Item = &'a Entry> {
        let (gap_start, gap_end) = match self.pass {
            Some(c) if c.list == id => (c.write, c.read),
            _ => (list.end(), list.end()),
        };
        list.range(list.head, gap_start.max(list.head)).chain(list.range(gap_end, list.end()))
    }
}

impl Tiers {
    /// The first list in compaction order: wheel slots by index, then overdue, then far lists.
    pub(super) fn first_list(&self) -> Option<ListId> {
        self.list_after(None)
    }

    /// The list after `after` in compaction order (the first one if `None`).
    pub(super) fn list_after(&self, after: Option<ListId>) -> Option<ListId> {
        let from_slot = match after {
            None => Some(0),
            Some(ListId::Slot(i)) => Some(i + 1),
            _ => None,
        };
        if let Some(from) = from_slot {
            for index in from..LEVELS * SLOTS {
                if self.occupied[index / SLOTS] >> (index % SLOTS) & 1 == 1 {
                    return Some(ListId::Slot(index));
                }
            }
        }
        let overdue_from = match after {
            None | Some(ListId::Slot(_)) => Bound::Unbounded,
            Some(ListId::Overdue(at)) => Bound::Excluded(at),
            Some(ListId::Far(_)) => return self.far_after(after),
        };
        if let Some((&at, _)) = self.overdue.range((overdue_from, Bound::Unbounded)).next() {
            return Some(ListId::Overdue(at));
        }
        self.far_after(None)
    }

    fn far_after(&self, after: Option<ListId>) -> Option<ListId> {
        let from = match after {
            Some(ListId::Far(at)) => Bound::Excluded(at),
            _ => Bound::Unbounded,
        };
        self.far.range((from, Bound::Unbounded)).next().map(|(&at, _)| ListId::Far(at))
    }
}

impl TimerWheel {
    /// A cursor at the start of list `id`.
    fn start_of(&mut self, id: ListId) -> Compaction {
        let head = self.list_mut(id).map_or(0, |l| l.head);
        Compaction { list: id, read: head, write: head }
    }

    /// Bookkeeping after `n` live timers, the smallest at `at`, were removed from the key index:
    /// their entries are now stale.
    pub(super) fn retire(&mut self, at: u64, n: usize) {
        self.counts.len -= n;
        self.counts.stale += n;
        if at <= self.counts.min {
            self.counts.min_exact = false;
        }
        if self.compaction.pass.is_none()
            && self.counts.stale > self.compaction.threshold
            && self.counts.stale > self.counts.len
            && let Some(first) = self.tiers.first_list()
        {
            self.compaction.pass = Some(self.start_of(first));
        }
        if self.compaction.pass.is_some() {
            self.compact_step(n.saturating_mul(COMPACT_WORK_PER_DELETE));
        }
    }

    /// With no live timer left, every entry is stale: drop them all at once.
    pub(super) fn drop_stale_entries(&mut self) {
        if self.counts.stale == 0 {
            return;
        }
        for level in 0..LEVELS {
            let mut bits = self.tiers.occupied[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.tiers.slots[slot_index(level, slot)].reset(&mut self.tiers.spares);
            }
        }
        self.tiers.occupied = [0; LEVELS];
        self.tiers.overdue.clear();
        self.tiers.far.clear();
        self.counts.stale = 0;
        self.compaction.pass = None;
    }

    /// Examines up to `budget` entries of the running compaction pass.
    ///
    /// Deletes pay for the pass ([`retire`](Self::retire)): [`COMPACT_WORK_PER_DELETE`] entries
    /// per timer deleted, so that no single call stalls however many entries the lists hold. A
    /// pass starts only once stale entries outnumber live timers, so more than half the entries
    /// are stale when it starts: on average the four entries a delete pays for drop two stale ones
    /// or more for the one it creates, and stale entries decrease while the pass runs (the memory
    /// bound of the module docs). A budget that outlasts a list carries on into the next ones.
    fn compact_step(&mut self, mut budget: usize) {
        while budget > 0 {
            let Some(mut c) = self.compaction.pass else { return };
            let (keys, spares, list) = self.parts(c.list);
            let mut removed = 0;
            let finished = match list {
                // Not expected: whatever removes a list settles the pass first, which moves it on.
                None => true,
                Some(list) => {
                    // Re-read on every step: pushes since the last step have appended after
                    // `read`, and they are examined too.
                    let end = list.end();
                    // In place, keeping order (invariant 3): `entries[head..write]` are the live
                    // entries kept so far, `entries[write..read]` a gap of examined ones (moved
                    // down or dropped), `entries[read..]` not examined yet. Nothing is allocated,
                    // and the list stays usable for pushes between steps.
                    while c.read < end && budget > 0 {
                        // The liveness test reads the entry's key record, a random access in a
                        // large key index: prefetch the record of an entry a few places ahead.
                        if let Some(a) = list.at(c.read + LOOKAHEAD) {
                            prefetch_index(&keys.records, a.key as usize);
                        }
                        let Some(&e) = list.at(c.read) else { break };
                        if keys.is_live(&e) {
                            list.set(c.write, e);
                            c.write += 1;
                        } else {
                            removed += 1;
                        }
                        c.read += 1;
                        budget -= 1;
                    }
                    if c.read == end {
                        // The whole list is examined: the gap is at the end, cut it off and give
                        // back the memory of a list that lost most of its entries.
                        list.truncate(c.write, spares);
                        true
                    } else {
                        false
                    }
                }
            };
            self.counts.stale -= removed;
            if finished {
                // Invariant 2: an empty list loses its `occupied` bit or its map entry.
                if self.list_mut(c.list).is_some_and(|l| l.is_empty()) {
                    self.tiers.release_list(c.list);
                }
                // On to the next list in compaction order, unless no stale entry is left (lists
                // created behind the cursor during the pass wait for the next pass).
                self.compaction.pass = match self.tiers.list_after(Some(c.list)) {
                    Some(next) if self.counts.stale > 0 => Some(self.start_of(next)),
                    _ => None,
                };
            } else {
                self.compaction.pass = Some(c);
            }
        }
    }

    /// Before an operation other than a push touches list `id`: if the compaction pass is inside
    /// it, close the gap between the compacted part and the rest, and move the pass to the next
    /// list.
    #[inline(always)]
    pub(super) fn settle_compaction(&mut self, id: ListId) {
        if self.compaction.pass.is_some_and(|c| c.list == id) {
            self.settle_compaction_now(id);
        }
    }

    #[cold]
    fn settle_compaction_now(&mut self, id: ListId) {
        let Some(c) = self.compaction.pass else { return };
        let (_, spares, list) = self.parts(id);
        if let Some(list) = list {
            list.close_gap(c.write, c.read, spares);
        }
        self.compaction.pass = self.tiers.list_after(Some(id)).map(|next| self.start_of(next));
    }

    /// Compacts list `id` entirely, now.
    pub(super) fn compact_list_now(&mut self, id: ListId) {
        // Settle first: a pass in progress inside this list leaves a gap of examined entries
        // that must not be read as entries, even when no stale entry is left.
        self.settle_compaction(id);
        if self.counts.stale == 0 {
            return;
        }
        let (keys, spares, Some(list)) = self.parts(id) else {
            return;
        };
        let before = list.len();
        let head = list.head;
        let mut write = head;
        for read in head..list.end() {
            let Some(&e) = list.at(read) else { break };
            if keys.is_live(&e) {
                list.set(write, e);
                write += 1;
            }
        }
        list.truncate(write, spares);
        let after = list.len();
        let empty = list.is_empty();
        self.counts.stale -= before - after;
        if empty {
            self.tiers.release_list(id);
        }
    }

    /// Drops every stale entry, now (O(entries)).
    pub(super) fn compact_all(&mut self) {
        self.compaction.pass = None;
        let mut next = self.tiers.first_list();
        while let Some(id) = next {
            self.compact_list_now(id);
            next = self.tiers.list_after(Some(id));
        }
        debug_assert_eq!(self.counts.stale, 0);
    }
}
