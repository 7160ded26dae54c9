//! [`TimerWheel::assert_invariants`]: the structural invariants of the
//! [module documentation](super#invariants), checked in O(n) for the tests.

use super::TimerWheel;
use super::compaction::ListId;
use super::key_index::{NO_SEQ, SPILLED};
use super::list::Entry;
use super::tiers::{LEVELS, SLOTS, level_for, slot_for, slot_index};
use crate::key::KeyId;

impl TimerWheel {
    /// Checks every structural invariant of the store (O(n)); panics with a description on the
    /// first violation. For tests (the property tests call it after every operation).
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        assert!(
            self.tiers.elapsed <= self.time,
            "elapsed {} beyond time {}",
            self.tiers.elapsed,
            self.time
        );
        let mut live = std::collections::HashSet::new();
        let mut entries = 0usize;
        let mut min = u64::MAX;
        let mut check_entry = |e: &Entry, live: &mut std::collections::HashSet<(KeyId, u64)>| {
            entries += 1;
            if self.keys.is_live(e) {
                assert!(live.insert((e.key, e.at)), "two live entries for {e:?}");
                min = min.min(e.at);
            }
        };
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let list = &self.tiers.slots[slot_index(level, slot)];
                let bit = self.tiers.occupied[level] >> slot & 1 == 1;
                assert_eq!(bit, !list.is_empty(), "occupied bit of level {level} slot {slot}");
                if level > 0 && !list.is_empty() {
                    assert_ne!(
                        slot,
                        slot_for(self.tiers.elapsed, level),
                        "coarse slot at the wheel"
                    );
                }
                for e in self.compaction.entries_of(ListId::Slot(slot_index(level, slot)), list) {
                    assert!(
                        e.at >= self.tiers.elapsed,
                        "wheel entry {} behind {}",
                        e.at,
                        self.tiers.elapsed
                    );
                    assert_eq!(
                        (level_for(self.tiers.elapsed, e.at), slot_for(e.at, level)),
                        (level, slot)
                    );
                    if level == 0 {
                        assert_eq!(
                            e.at,
                            list.get(0).expect("non-empty").at,
                            "level-0 slot mixes times"
                        );
                    }
                    check_entry(e, &mut live);
                }
            }
        }
        for (overdue, map) in [(true, &self.tiers.overdue), (false, &self.tiers.far)] {
            for (&at, list) in map {
                assert!(!list.is_empty(), "empty list kept at {at}");
                if overdue {
                    assert!(
                        at < self.tiers.elapsed,
                        "overdue {at} not behind elapsed {}",
                        self.tiers.elapsed
                    );
                } else {
                    assert!(
                        at > self.tiers.elapsed && level_for(self.tiers.elapsed, at) >= LEVELS,
                        "far {at}"
                    );
                }
                let id = if overdue { ListId::Overdue(at) } else { ListId::Far(at) };
                for e in self.compaction.entries_of(id, list) {
                    assert_eq!(e.at, at, "list at {at} holds {e:?}");
                    check_entry(e, &mut live);
                }
            }
        }
        assert_eq!(live.len(), self.counts.len, "live entries vs len");
        assert_eq!(entries - live.len(), self.counts.stale, "stale entries");
        let mut indexed = 0usize;
        for (key, r) in self.keys.records.iter().enumerate() {
            let key = key as KeyId;
            if r.seq[0] == NO_SEQ {
                assert_eq!(r.seq[1], NO_SEQ, "a second timer without a first: key {key}");
            }
            if r.seq[1] == SPILLED {
                let spill = &self.keys.spills[r.at[1] as usize];
                assert!(spill.len() >= 2, "spill set of key {key} holds {}", spill.len());
                assert!(!self.keys.free_spills.contains(&(r.at[1] as u32)), "free spill in use");
            }
            let mut seen = Vec::new();
            self.keys.for_each_of(key, |at| seen.push(at));
            assert_eq!(seen.len(), self.keys.count(key));
            for at in &seen {
                assert!(live.contains(&(key, *at)), "timer ({key}, {at}) has no live entry");
            }
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), self.keys.count(key), "duplicate timers of key {key}");
            indexed += seen.len();
        }
        assert_eq!(indexed, self.counts.len, "timers in the key index");
        if self.counts.len > 0 {
            assert!(
                self.counts.min <= min,
                "min bound {} above the minimum {min}",
                self.counts.min
            );
            if self.counts.min_exact {
                assert_eq!(self.counts.min, min, "exact minimum");
            }
        }
        if let Some(c) = self.compaction.pass {
            let list = match c.list {
                ListId::Slot(i) => Some(&self.tiers.slots[i]),
                ListId::Overdue(at) => self.tiers.overdue.get(&at),
                ListId::Far(at) => self.tiers.far.get(&at),
            };
            let list = list.expect("the compaction pass is inside an existing list");
            assert!(list.head <= c.write && c.write <= c.read, "compaction cursor {c:?}");
            assert!(c.read <= list.end(), "compaction cursor {c:?} beyond the list");
        }
    }
}
