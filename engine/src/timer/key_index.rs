//! The key index: every key's live timers in one store ([`KeyIndex`]), one [`KeyRecord`] per key
//! id holding its first timers inline and, for a key with three or more, a [`Spill`] set with the
//! others. It is the dedup index and the liveness test of entries (invariant 4): an [`Entry`] is
//! live while its key's record holds its `(at, seq)`. See the
//! [module documentation](super#implementation).

use std::collections::HashMap;
use std::mem::size_of;

use super::list::Entry;
use crate::cow_vec::{CowVec, FrozenVec};
use crate::key::KeyId;

/// The `seq` of an empty inline place of a key record. Sequence numbers run `0..SPILLED`.
pub(super) const NO_SEQ: u32 = u32::MAX;
/// The second `seq` of a key record whose further timers are in a spill set.
pub(super) const SPILLED: u32 = u32::MAX - 1;
/// A key's spill set holds this many timers in place; more turn it into a hash map.
const SPILL_INLINE: usize = 14;

/// A key's live timers in one store: up to two inline; with three or more, the first inline and
/// the others in a spill set. 24 bytes.
///
/// * `seq[0] == NO_SEQ`: no timer.
/// * `seq[1] == NO_SEQ`: one timer, `(at[0], seq[0])`.
/// * `seq[1] == SPILLED`: `(at[0], seq[0])` and the timers of spill set `at[1]` (at least two).
/// * otherwise: two timers.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyRecord {
    pub(super) at: [u64; 2],
    pub(super) seq: [u32; 2],
}

impl KeyRecord {
    const EMPTY: KeyRecord = KeyRecord { at: [0; 2], seq: [NO_SEQ; 2] };
}

/// The timers of a key beyond its first: up to [`SPILL_INLINE`] in place (one read, no
/// allocation), a random-seeded hash map for keys with more.
#[derive(Debug, Clone)]
pub(super) enum Spill {
    Small { len: u32, at: [u64; SPILL_INLINE], seq: [u32; SPILL_INLINE] },
    Large(HashMap<u64, u32, ahash::RandomState>),
}

impl Spill {
    const EMPTY: Spill = Spill::Small { len: 0, at: [0; SPILL_INLINE], seq: [0; SPILL_INLINE] };

    #[inline]
    fn get(&self, wanted: u64) -> Option<u32> {
        match self {
            Spill::Small { len, at, seq } => {
                at[..*len as usize].iter().position(|&a| a == wanted).map(|i| seq[i])
            }
            Spill::Large(m) => m.get(&wanted).copied(),
        }
    }

    /// Inserts a position known to be absent.
    fn insert(&mut self, new_at: u64, new_seq: u32) {
        match self {
            Spill::Small { len, at, seq } if (*len as usize) < SPILL_INLINE => {
                at[*len as usize] = new_at;
                seq[*len as usize] = new_seq;
                *len += 1;
            }
            Spill::Small { len, at, seq } => {
                let mut m: HashMap<u64, u32, ahash::RandomState> =
                    HashMap::with_capacity_and_hasher(SPILL_INLINE * 2, ahash::RandomState::new());
                m.extend(at[..*len as usize].iter().copied().zip(seq.iter().copied()));
                m.insert(new_at, new_seq);
                *self = Spill::Large(m);
            }
            Spill::Large(m) => {
                m.insert(new_at, new_seq);
            }
        }
    }

    fn remove(&mut self, wanted: u64) -> Option<u32> {
        match self {
            Spill::Small { len, at, seq } => {
                let n = *len as usize;
                let i = at[..n].iter().position(|&a| a == wanted)?;
                let found = seq[i];
                at[i] = at[n - 1];
                seq[i] = seq[n - 1];
                *len -= 1;
                Some(found)
            }
            Spill::Large(m) => m.remove(&wanted),
        }
    }

    /// Removes and returns some timer.
    fn pop(&mut self) -> Option<(u64, u32)> {
        match self {
            Spill::Small { len, at, seq } => {
                let n = (*len as usize).checked_sub(1)?;
                *len -= 1;
                Some((at[n], seq[n]))
            }
            Spill::Large(m) => {
                let at = *m.keys().next()?;
                m.remove(&at).map(|seq| (at, seq))
            }
        }
    }

    /// Empties the set.
    fn clear(&mut self) {
        *self = Spill::EMPTY;
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Spill::Small { len, .. } => *len as usize,
            Spill::Large(m) => m.len(),
        }
    }

    fn for_each(&self, mut f: impl FnMut(u64, u32)) {
        match self {
            Spill::Small { len, at, seq } => {
                (0..*len as usize).for_each(|i| f(at[i], seq[i]));
            }
            Spill::Large(m) => m.iter().for_each(|(&at, &seq)| f(at, seq)),
        }
    }

    /// Heap bytes beyond the set itself.
    fn memory_bytes(&self) -> usize {
        match self {
            Spill::Small { .. } => 0,
            // hashbrown: one control byte per bucket, at most 7/8 of the buckets full.
            Spill::Large(m) => m.capacity() * 8 / 7 * (size_of::<(u64, u32)>() + 1),
        }
    }
}

/// Calls `f(at, seq)` for each timer of the record `r` (whose spill set, if any, `spill` finds
/// by its index).
fn record_timers<'a>(
    r: KeyRecord,
    spill: impl FnOnce(usize) -> Option<&'a Spill>,
    mut f: impl FnMut(u64, u32),
) {
    if r.seq[0] == NO_SEQ {
        return;
    }
    f(r.at[0], r.seq[0]);
    match r.seq[1] {
        NO_SEQ => {}
        SPILLED => spill(r.at[1] as usize).expect("a spilled record's set").for_each(f),
        _ => f(r.at[1], r.seq[1]),
    }
}

/// The spill set of the record `r` down to one timer: move it inline and free the set.
#[inline]
fn unspill_if_single(r: &mut KeyRecord, spill: &mut Spill, free: &mut Vec<u32>) {
    if spill.len() == 1 {
        let s = r.at[1] as u32;
        (r.at[1], r.seq[1]) = spill.pop().expect("one left");
        spill.clear();
        free.push(s);
    }
}

/// A [`KeyIndex`] frozen at a checkpoint barrier ([`KeyIndex::freeze`]).
#[derive(Debug, Clone)]
pub(super) struct FrozenKeyIndex {
    records: FrozenVec<KeyRecord>,
    spills: FrozenVec<Spill>,
}

impl FrozenKeyIndex {
    /// Whether `key` has a live timer.
    pub(super) fn has_timers(&self, key: KeyId) -> bool {
        self.records.get(key as usize).is_some_and(|r| r.seq[0] != NO_SEQ)
    }

    /// As [`KeyIndex::for_each_with_seq`].
    pub(super) fn for_each_with_seq(&self, key: KeyId, f: impl FnMut(u64, u32)) {
        let r = self.records.get(key as usize).copied().unwrap_or(KeyRecord::EMPTY);
        record_timers(r, |s| self.spills.get(s), f);
    }
}

/// Every key's live timers: the dedup index and the liveness test of entries.
#[derive(Debug, Default, Clone)]
pub(super) struct KeyIndex {
    pub(super) records: CowVec<KeyRecord>,
    pub(super) spills: CowVec<Spill>,
    pub(super) free_spills: Vec<u32>,
}

impl KeyIndex {
    #[inline]
    fn record(&self, key: KeyId) -> KeyRecord {
        self.records.get(key as usize).copied().unwrap_or(KeyRecord::EMPTY)
    }

    /// The sequence number of `key`'s live timer at `at`, if it has one.
    #[inline]
    pub(super) fn find(&self, key: KeyId, at: u64) -> Option<u32> {
        let r = self.record(key);
        if r.seq[0] == NO_SEQ {
            return None;
        }
        if r.at[0] == at {
            return Some(r.seq[0]);
        }
        match r.seq[1] {
            NO_SEQ => None,
            SPILLED => self.spills[r.at[1] as usize].get(at),
            seq => (r.at[1] == at).then_some(seq),
        }
    }

    /// True if `e` is the entry of a live timer.
    #[inline]
    pub(super) fn is_live(&self, e: &Entry) -> bool {
        self.find(e.key, e.at) == Some(e.seq)
    }

    /// Adds a live timer known to be absent.
    #[inline]
    pub(super) fn insert(&mut self, key: KeyId, at: u64, seq: u32) {
        let i = key as usize;
        if i >= self.records.len() {
            self.records.grow_with(i + 1, || KeyRecord::EMPTY);
        }
        let r = &mut self.records[i];
        if r.seq[0] == NO_SEQ {
            (r.at[0], r.seq[0]) = (at, seq);
            return;
        }
        match r.seq[1] {
            NO_SEQ => (r.at[1], r.seq[1]) = (at, seq),
            SPILLED => self.spills[r.at[1] as usize].insert(at, seq),
            second => {
                let s = match self.free_spills.pop() {
                    Some(s) => s,
                    None => {
                        self.spills.push(Spill::EMPTY);
                        (self.spills.len() - 1) as u32
                    }
                };
                let spill = &mut self.spills[s as usize];
                spill.insert(r.at[1], second);
                spill.insert(at, seq);
                (r.at[1], r.seq[1]) = (u64::from(s), SPILLED);
            }
        }
    }

    /// Removes `key`'s timer at `at`; returns its sequence number if it was live.
    #[inline]
    pub(super) fn remove(&mut self, key: KeyId, at: u64) -> Option<u32> {
        // Found without a write access (which would copy a frozen page) if there is no timer.
        let r = self.records.get_mut_if(key as usize, |r| r.seq[0] != NO_SEQ)?;
        if r.at[0] == at {
            let seq = r.seq[0];
            match r.seq[1] {
                NO_SEQ => r.seq[0] = NO_SEQ,
                SPILLED => {
                    let spill = &mut self.spills[r.at[1] as usize];
                    (r.at[0], r.seq[0]) = spill.pop().expect("spill sets hold two or more");
                    unspill_if_single(r, spill, &mut self.free_spills);
                }
                second => {
                    (r.at[0], r.seq[0]) = (r.at[1], second);
                    r.seq[1] = NO_SEQ;
                }
            }
            return Some(seq);
        }
        match r.seq[1] {
            NO_SEQ => None,
            SPILLED => {
                let spill = &mut self.spills[r.at[1] as usize];
                let seq = spill.remove(at)?;
                unspill_if_single(r, spill, &mut self.free_spills);
                Some(seq)
            }
            second if r.at[1] == at => {
                r.seq[1] = NO_SEQ;
                Some(second)
            }
            _ => None,
        }
    }

    /// Removes `e`'s timer if `e` is its live entry; returns whether it was.
    #[inline]
    pub(super) fn take_if_live(&mut self, e: &Entry) -> bool {
        // The common case in one read: the key's only timer, inline, is this entry.
        if let Some(r) = self.records.get_mut(e.key as usize)
            && r.seq == [e.seq, NO_SEQ]
            && r.at[0] == e.at
        {
            r.seq[0] = NO_SEQ;
            return true;
        }
        if self.is_live(e) {
            self.remove(e.key, e.at);
            true
        } else {
            false
        }
    }

    pub(super) fn count(&self, key: KeyId) -> usize {
        let r = self.record(key);
        match r.seq {
            [NO_SEQ, _] => 0,
            [_, NO_SEQ] => 1,
            [_, SPILLED] => 1 + self.spills[r.at[1] as usize].len(),
            _ => 2,
        }
    }

    /// Calls `f(at)` for each of `key`'s live timers, in no particular order.
    pub(super) fn for_each_of(&self, key: KeyId, mut f: impl FnMut(u64)) {
        self.for_each_with_seq(key, |at, _| f(at));
    }

    /// Calls `f(at, seq)` for each of `key`'s live timers, in no particular order.
    pub(super) fn for_each_with_seq(&self, key: KeyId, f: impl FnMut(u64, u32)) {
        record_timers(self.record(key), |s| self.spills.get(s), f);
    }

    /// The index as it is now, for a checkpoint to read off the shard: the records and the
    /// spill sets (of keys with three or more timers) frozen copy-on-write (`cow_vec.rs`).
    pub(super) fn freeze(&mut self) -> FrozenKeyIndex {
        FrozenKeyIndex { records: self.records.freeze(), spills: self.spills.freeze() }
    }

    /// Removes every live timer of `key`; returns how many there were and the smallest position.
    pub(super) fn remove_all(&mut self, key: KeyId) -> (usize, u64) {
        let (mut n, mut min) = (0, u64::MAX);
        self.for_each_of(key, |at| {
            n += 1;
            min = min.min(at);
        });
        if n > 0 {
            let r = &mut self.records[key as usize];
            if r.seq[1] == SPILLED {
                let s = r.at[1] as usize;
                self.spills[s].clear();
                self.free_spills.push(s as u32);
            }
            *r = KeyRecord::EMPTY;
        }
        (n, min)
    }

    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.spills.clear();
        self.free_spills.clear();
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.records.capacity() * size_of::<KeyRecord>()
            + self.spills.capacity() * size_of::<Spill>()
            + self.spills.iter().map(Spill::memory_bytes).sum::<usize>()
            + self.free_spills.capacity() * size_of::<u32>()
    }
}
