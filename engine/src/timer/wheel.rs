//! [`TimerWheel`]: the production timer store. The design, invariants and complexity are in the
//! [module documentation](super#implementation); comments here refer to its invariants by number.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::mem::{size_of, take};
use std::ops::Bound;

use super::{Timer, TimerError};
use crate::key::KeyId;
use crate::prefetch::prefetch_index;
use crate::time::Timestamp;

/// Wheel levels (the far tier comes after them).
const LEVELS: usize = 6;
/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Mask of a slot digit.
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// log2 of the wheel's span: positions equal above this bit are in the same block.
const BLOCK_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// The `seq` of an empty inline place of a key record. Sequence numbers run `0..SPILLED`.
const NO_SEQ: u32 = u32::MAX;
/// The second `seq` of a key record whose further timers are in a spill set.
const SPILLED: u32 = u32::MAX - 1;
/// A key's spill set holds this many timers in place; more turn it into a hash map.
const SPILL_INLINE: usize = 14;
/// Compaction starts once there are more stale entries than this, and more than live timers.
const COMPACT_MIN_STALE: usize = 4096;
/// Entries a compaction pass examines per stale entry a delete creates.
const COMPACT_WORK_PER_DELETE: usize = 4;
/// How far ahead in a list the firing loop and the cascades prefetch.
const LOOKAHEAD: usize = 8;
/// A drained list keeps its buffer up to this many entries; larger buffers are freed.
const KEEP_CAPACITY: usize = 4096;
/// The default bound on pending timers per store.
const DEFAULT_LIMIT: usize = u32::MAX as usize - 1;

/// A timestamp's position on the `u64` axis (order-preserving: `i64::MIN` is 0, `i64::MAX` is
/// `u64::MAX`).
#[inline]
fn axis(ts: Timestamp) -> u64 {
    (ts as u64) ^ (1 << 63)
}

/// The timestamp at a position of the axis (inverse of [`axis`]).
#[inline]
fn timestamp(at: u64) -> Timestamp {
    (at ^ (1 << 63)) as i64
}

/// The level a timer at `at` belongs to when the wheel is at `elapsed` (tokio's `level_for`);
/// `LEVELS` or more means the far tier. Requires `at >= elapsed`.
#[inline]
fn level_for(elapsed: u64, at: u64) -> usize {
    let masked = (elapsed ^ at) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

/// The slot of `at` on `level`.
#[inline]
fn slot_for(at: u64, level: usize) -> usize {
    ((at >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize
}

/// The index of slot `slot` of `level` in `TimerWheel::slots`.
#[inline]
fn slot_index(level: usize, slot: usize) -> usize {
    level * SLOTS + slot
}

/// One registration as it sits in a tier list: 16 bytes. It is *live* while its key's record
/// holds `(at, seq)`; a delete only edits the record, so the entry turns *stale* and is dropped
/// when the lists reach it (invariant 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    at: u64,
    key: KeyId,
    seq: u32,
}

/// Big list buffers kept for reuse: a slot list that grew to hundreds of thousands of entries is
/// drained by a cascade while the next one is filling up; handing its buffer over avoids freeing
/// and re-growing it (with the page faults of fresh memory) every few seconds of event time.
#[derive(Debug, Default)]
struct Spares(Vec<Vec<Entry>>);

impl Spares {
    /// Buffers kept at most.
    const MAX: usize = 4;

    /// Keeps `buf` if it is among the largest few.
    fn give(&mut self, mut buf: Vec<Entry>) {
        buf.clear();
        if self.0.len() < Self::MAX {
            self.0.push(buf);
        } else if let Some(smallest) = self.0.iter_mut().min_by_key(|b| b.capacity())
            && smallest.capacity() < buf.capacity()
        {
            *smallest = buf;
        }
    }

    /// The largest buffer, if it holds more than `capacity` entries.
    fn take_bigger(&mut self, capacity: usize) -> Option<Vec<Entry>> {
        let (i, _) = self.0.iter().enumerate().max_by_key(|(_, b)| b.capacity())?;
        (self.0[i].capacity() > capacity).then(|| self.0.swap_remove(i))
    }

    fn memory_bytes(&self) -> usize {
        self.0.iter().map(|b| b.capacity() * size_of::<Entry>()).sum()
    }
}

/// A FIFO of entries on a `Vec`: pushed at the back, consumed from `head`.
#[derive(Debug, Default)]
struct List {
    entries: Vec<Entry>,
    head: usize,
}

impl List {
    #[inline]
    fn is_empty(&self) -> bool {
        self.head == self.entries.len()
    }

    #[inline]
    fn len(&self) -> usize {
        self.entries.len() - self.head
    }

    #[inline]
    fn push(&mut self, e: Entry, spares: &mut Spares) {
        if self.entries.len() == self.entries.capacity() && self.entries.capacity() >= KEEP_CAPACITY
        {
            self.grow(spares);
        }
        self.entries.push(e);
    }

    /// A full big buffer: move to a bigger spare if there is one (indices stay the same, so a
    /// compaction pass inside this list is not disturbed).
    #[cold]
    fn grow(&mut self, spares: &mut Spares) {
        if let Some(mut buf) = spares.take_bigger(self.entries.capacity()) {
            buf.extend_from_slice(&self.entries);
            spares.give(std::mem::replace(&mut self.entries, buf));
        }
    }

    /// The entry `i` places after the head.
    #[inline]
    fn get(&self, i: usize) -> Option<&Entry> {
        self.entries.get(self.head + i)
    }

    #[inline]
    fn pop_front(&mut self, spares: &mut Spares) -> Option<Entry> {
        let e = *self.entries.get(self.head)?;
        self.head += 1;
        if self.head == self.entries.len() {
            self.reset(spares);
        } else if self.head >= KEEP_CAPACITY && self.head * 2 >= self.entries.len() {
            // A list that is consumed while it grows (re-registrations at the instant being
            // fired): drop the consumed prefix, amortised O(1).
            self.entries.drain(..self.head);
            self.head = 0;
        }
        Some(e)
    }

    /// The live part.
    fn as_slice(&self) -> &[Entry] {
        &self.entries[self.head..]
    }

    /// Empties the list, keeping a small buffer for reuse and handing a big one to `spares`.
    fn reset(&mut self, spares: &mut Spares) {
        self.head = 0;
        if self.entries.capacity() > KEEP_CAPACITY {
            spares.give(take(&mut self.entries));
        } else {
            self.entries.clear();
        }
    }

    /// Appends every entry of `other`, taking its buffer when this list is empty.
    fn append(&mut self, mut other: List, spares: &mut Spares) {
        if self.is_empty() {
            let mut old = std::mem::replace(self, other);
            old.reset(spares);
        } else {
            self.entries.extend_from_slice(other.as_slice());
            other.reset(spares);
        }
    }

    /// Gives back memory after a compaction emptied most of the buffer.
    fn shrink(&mut self) {
        if self.entries.capacity() > KEEP_CAPACITY
            && self.entries.len() * 4 < self.entries.capacity()
        {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    fn capacity_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
    }
}

/// A key's live timers in one store: up to two inline; with three or more, the first inline and
/// the others in a spill set. 24 bytes.
///
/// * `seq[0] == NO_SEQ`: no timer.
/// * `seq[1] == NO_SEQ`: one timer, `(at[0], seq[0])`.
/// * `seq[1] == SPILLED`: `(at[0], seq[0])` and the timers of spill set `at[1]` (at least two).
/// * otherwise: two timers.
#[derive(Clone, Copy, Debug)]
struct KeyRecord {
    at: [u64; 2],
    seq: [u32; 2],
}

impl KeyRecord {
    const EMPTY: KeyRecord = KeyRecord { at: [0; 2], seq: [NO_SEQ; 2] };
}

/// The timers of a key beyond its first: up to [`SPILL_INLINE`] in place (one read, no
/// allocation), a random-seeded hash map for keys with more.
#[derive(Debug)]
enum Spill {
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

    fn len(&self) -> usize {
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

/// Every key's live timers: the dedup index and the liveness test of entries.
#[derive(Debug, Default)]
struct KeyIndex {
    records: Vec<KeyRecord>,
    spills: Vec<Spill>,
    free_spills: Vec<u32>,
}

impl KeyIndex {
    #[inline]
    fn record(&self, key: KeyId) -> KeyRecord {
        self.records.get(key as usize).copied().unwrap_or(KeyRecord::EMPTY)
    }

    /// The sequence number of `key`'s live timer at `at`, if it has one.
    #[inline]
    fn find(&self, key: KeyId, at: u64) -> Option<u32> {
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
    fn is_live(&self, e: &Entry) -> bool {
        self.find(e.key, e.at) == Some(e.seq)
    }

    /// Adds a live timer known to be absent.
    #[inline]
    fn insert(&mut self, key: KeyId, at: u64, seq: u32) {
        let i = key as usize;
        if i >= self.records.len() {
            self.records.resize(i + 1, KeyRecord::EMPTY);
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
    fn remove(&mut self, key: KeyId, at: u64) -> Option<u32> {
        let r = self.records.get_mut(key as usize)?;
        if r.seq[0] == NO_SEQ {
            return None;
        }
        if r.at[0] == at {
            let seq = r.seq[0];
            match r.seq[1] {
                NO_SEQ => r.seq[0] = NO_SEQ,
                SPILLED => {
                    let s = r.at[1] as usize;
                    (r.at[0], r.seq[0]) =
                        self.spills[s].pop().expect("spill sets hold two or more");
                    self.unspill_if_single(key);
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
                let seq = self.spills[r.at[1] as usize].remove(at)?;
                self.unspill_if_single(key);
                Some(seq)
            }
            second if r.at[1] == at => {
                r.seq[1] = NO_SEQ;
                Some(second)
            }
            _ => None,
        }
    }

    /// A spill set down to one timer: move it inline and free the set.
    fn unspill_if_single(&mut self, key: KeyId) {
        let r = &mut self.records[key as usize];
        let s = r.at[1] as usize;
        if self.spills[s].len() == 1 {
            (r.at[1], r.seq[1]) = self.spills[s].pop().expect("one left");
            self.spills[s].clear();
            self.free_spills.push(s as u32);
        }
    }

    /// Removes `e`'s timer if `e` is its live entry; returns whether it was.
    #[inline]
    fn take_if_live(&mut self, e: &Entry) -> bool {
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

    fn count(&self, key: KeyId) -> usize {
        let r = self.record(key);
        match r.seq {
            [NO_SEQ, _] => 0,
            [_, NO_SEQ] => 1,
            [_, SPILLED] => 1 + self.spills[r.at[1] as usize].len(),
            _ => 2,
        }
    }

    /// Calls `f(at)` for each of `key`'s live timers, in no particular order.
    fn for_each_of(&self, key: KeyId, mut f: impl FnMut(u64)) {
        let r = self.record(key);
        if r.seq[0] == NO_SEQ {
            return;
        }
        f(r.at[0]);
        match r.seq[1] {
            NO_SEQ => {}
            SPILLED => self.spills[r.at[1] as usize].for_each(|at, _| f(at)),
            _ => f(r.at[1]),
        }
    }

    /// Removes every live timer of `key`; returns how many there were and the smallest position.
    fn remove_all(&mut self, key: KeyId) -> (usize, u64) {
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

    fn clear(&mut self) {
        self.records.clear();
        self.spills.clear();
        self.free_spills.clear();
    }

    fn memory_bytes(&self) -> usize {
        self.records.capacity() * size_of::<KeyRecord>()
            + self.spills.capacity() * size_of::<Spill>()
            + self.spills.iter().map(Spill::memory_bytes).sum::<usize>()
            + self.free_spills.capacity() * size_of::<u32>()
    }
}

/// A point in a store's sequence of registrations ([`TimerWheel::registration_mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationMark {
    epoch: u64,
    seq: u32,
}

/// A slot whose time has come: the lowest occupied slot, on the lowest non-empty level.
#[derive(Clone, Copy, Debug)]
struct Expiration {
    level: usize,
    slot: usize,
    /// The position where the slot starts (for level 0: its only timestamp).
    deadline: u64,
}

/// A tier list, as the compaction cursor names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListId {
    Slot(usize),
    Overdue(u64),
    Far(u64),
}

/// An incremental compaction pass: the list being compacted in place, `read` the next entry to
/// examine, `write` where the next live one goes (absolute indices in the list's `entries`).
#[derive(Clone, Copy, Debug)]
struct Compaction {
    list: ListId,
    read: usize,
    write: usize,
}

/// The production timer store: a hierarchical timing wheel with overdue and far tiers, unique per
/// `(key, timestamp)`, firing in timestamp order and, for equal timestamps, in registration order.
///
/// One per time domain per keyed operator per shard. See the [module documentation](super) for the
/// guarantees and the design.
pub struct TimerWheel {
    /// Every key's live timers.
    keys: KeyIndex,
    /// The wheel's slot lists, `level * 64 + slot`.
    slots: Box<[List]>,
    /// One bit per non-empty slot, per level.
    occupied: [u64; LEVELS],
    /// Overdue lists by position (all `< elapsed`), one timestamp each.
    overdue: BTreeMap<u64, List>,
    /// Far lists by position (all beyond `elapsed`'s block), one timestamp each.
    far: BTreeMap<u64, List>,
    /// Big buffers for reuse.
    spares: Spares,
    /// The wheel's position: `<= time`; see invariant 1.
    elapsed: u64,
    /// The store's time: the largest `now` polled, as a position.
    time: u64,
    /// A lower bound of the live positions (meaningless when `len == 0`); exact if `min_exact`.
    min: u64,
    min_exact: bool,
    /// Live timers.
    len: usize,
    /// Stale entries still in the lists.
    stale: usize,
    /// The next sequence number.
    seq: u32,
    /// How many times sequence numbers wrapped.
    epoch: u64,
    /// The sequence number of the entry of the timer `poll` returned last.
    last_fired_seq: u32,
    /// The most live timers allowed.
    limit: usize,
    /// Compaction starts once stale entries exceed this (and the live timers).
    compact_at: usize,
    compaction: Option<Compaction>,
    /// The key of the entry [`LOOKAHEAD`] places after the one `poll` returned last.
    ahead: Option<KeyId>,
    /// Where that entry was found: (level-0 slot, index after its head).
    ahead_at: Option<(usize, usize)>,
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
            slots: (0..LEVELS * SLOTS).map(|_| List::default()).collect(),
            occupied: [0; LEVELS],
            overdue: BTreeMap::new(),
            far: BTreeMap::new(),
            spares: Spares::default(),
            elapsed: 0,
            time: 0,
            min: u64::MAX,
            min_exact: true,
            len: 0,
            stale: 0,
            seq: 0,
            epoch: 0,
            last_fired_seq: NO_SEQ,
            limit,
            compact_at: COMPACT_MIN_STALE,
            compaction: None,
            ahead: None,
            ahead_at: None,
        }
    }

    /// Sets the number of stale entries beyond which compaction may start (default 4,096): tests use
    /// tiny values so that compaction runs all the time.
    #[doc(hidden)]
    pub fn with_compaction_threshold(mut self, stale: usize) -> Self {
        self.compact_at = stale;
        self
    }

    /// Sets the next sequence number (tests of the wrap-around).
    #[cfg(test)]
    pub(crate) fn force_next_seq(&mut self, seq: u32) {
        self.seq = seq;
    }

    /// Registers the timer `(key, ts)`.
    ///
    /// Returns `Ok(true)` if it was added, `Ok(false)` if that `(key, ts)` is already pending (then
    /// nothing changes). Never fires anything, whatever `ts` is (SEMANTICS A1.6): a timer at or below
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
        if self.len >= self.limit {
            return Err(TimerError::CapacityExceeded { limit: self.limit as u64 });
        }
        let seq = self.next_seq();
        self.keys.insert(key, at, seq);
        self.push_entry(Entry { at, key, seq });
        if self.len == 0 || at < self.min {
            self.min = at;
            self.min_exact = true;
        }
        self.len += 1;
        Ok(true)
    }

    /// Removes the timer `(key, ts)` if it is pending and returns true; otherwise returns false and
    /// does nothing (SEMANTICS A1.7: deleting a timer that does not exist or already fired is silent).
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
    /// timestamp (SEMANTICS A1.10; S07, S09).
    ///
    /// The store's time becomes `max(previous time, now)`. `now` may be smaller than the store's
    /// time (a wall clock that went back): then only timers `<= now` fire.
    pub fn poll(&mut self, now: Timestamp) -> Option<Timer> {
        let now = axis(now);
        if now > self.time {
            self.time = now;
        }
        self.ahead = None;
        loop {
            if self.len == 0 {
                self.drop_stale_entries();
                self.advance(now);
                return None;
            }
            if self.min > now {
                self.advance(now);
                return None;
            }
            // Overdue timers are below `elapsed`, so below everything in the wheel and the far
            // tier (invariant 1): the first overdue list holds the earliest entries.
            if let Some((&at, _)) = self.overdue.first_key_value() {
                if at > now {
                    // Only after the clock went back below an overdue timer.
                    self.min = self.min.max(at);
                    return None;
                }
                self.settle_compaction(ListId::Overdue(at));
                let list = self.overdue.get_mut(&at).expect("first key");
                let e = list.pop_front(&mut self.spares).expect("overdue lists are never empty");
                let ahead = list.get(LOOKAHEAD).map(|a| a.key);
                if list.is_empty() {
                    self.overdue.remove(&at);
                }
                if let Some(t) = self.fire_entry(e, ahead) {
                    return Some(t);
                }
                continue;
            }
            match self.next_expiration() {
                Some(exp) if exp.deadline > now => {
                    // Nothing due: every entry is at or after the next slot.
                    self.min = self.min.max(exp.deadline);
                    self.advance(now);
                    return None;
                }
                Some(exp) if exp.level == 0 => {
                    // `deadline` is the slot's timestamp: `<= now <= time`.
                    self.elapsed = exp.deadline;
                    self.settle_compaction(ListId::Slot(exp.slot));
                    let list = &mut self.slots[exp.slot];
                    let e =
                        list.pop_front(&mut self.spares).expect("occupied slots are never empty");
                    let left = list.len();
                    if left == 0 {
                        self.occupied[0] &= !(1 << exp.slot);
                    }
                    let ahead = self.level0_ahead(exp.slot, left);
                    if let Some(t) = self.fire_entry(e, ahead) {
                        return Some(t);
                    }
                }
                Some(exp) => self.cascade(exp),
                None => {
                    // Only far timers: jump to the first one; its list lands on level 0.
                    let (&at, _) = self.far.first_key_value()?;
                    if at > now {
                        self.min = self.min.max(at);
                        self.advance(now);
                        return None;
                    }
                    self.elapsed = at;
                    self.migrate(at >> BLOCK_BITS);
                }
            }
        }
    }

    /// The key of the entry [`LOOKAHEAD`] places ahead in firing order, after a pop from level-0
    /// slot `slot` that left `left` entries in it: in the same slot, or in the next occupied
    /// level-0 slots (a level-0 slot holds one millisecond, often only a few timers).
    ///
    /// The position found is kept (`ahead_at`) and moved on by one entry at the next pop, so a run
    /// of pops over many small slots costs O(1) each; the position is only a hint, re-found when
    /// it no longer points at an entry.
    #[inline]
    fn level0_ahead(&mut self, slot: usize, left: usize) -> Option<KeyId> {
        if left > LOOKAHEAD {
            self.ahead_at = None;
            return self.slots[slot].get(LOOKAHEAD).map(|a| a.key);
        }
        if let Some((s, i)) = self.ahead_at
            && s > slot
        {
            let list = &self.slots[s];
            if let Some(a) = list.get(i + 1) {
                self.ahead_at = Some((s, i + 1));
                return Some(a.key);
            }
            // The next occupied slot after `s`.
            let later = self.occupied[0] & (u64::MAX << s << 1);
            if later != 0 {
                let next = later.trailing_zeros() as usize;
                if let Some(a) = self.slots[next].get(0) {
                    self.ahead_at = Some((next, 0));
                    return Some(a.key);
                }
            }
            self.ahead_at = None;
            return None;
        }
        let mut skip = LOOKAHEAD - left;
        let mut later = self.occupied[0] & (u64::MAX << slot << 1);
        while later != 0 {
            let next = later.trailing_zeros() as usize;
            let list = &self.slots[next];
            if let Some(a) = list.get(skip) {
                self.ahead_at = Some((next, skip));
                return Some(a.key);
            }
            skip -= list.len();
            later &= later - 1;
        }
        self.ahead_at = None;
        None
    }

    /// A mark of the registrations made so far, for
    /// [`last_fired_registered_since`](Self::last_fired_registered_since).
    pub fn registration_mark(&self) -> RegistrationMark {
        RegistrationMark { epoch: self.epoch, seq: self.seq }
    }

    /// True if the timer the last [`poll`](Self::poll) returned was registered after `mark` was
    /// taken (conservatively true if 2^32 registrations happened since). The firing loop uses it
    /// to find timers that `on_timer` registered during the same advance, the ones that can
    /// re-fire forever (SEMANTICS A1.10).
    pub fn last_fired_registered_since(&self, mark: RegistrationMark) -> bool {
        self.epoch != mark.epoch
            || (self.last_fired_seq != NO_SEQ && self.last_fired_seq >= mark.seq)
    }

    /// The key of the timer that will fire a few polls from now, if the last [`poll`](Self::poll)
    /// returned a timer and the store can see one ahead: the firing loop prefetches that key's rows
    /// so that they are in cache when its turn comes. The store has prefetched its own record.
    #[inline]
    pub fn upcoming_key(&self) -> Option<KeyId> {
        self.ahead
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
        if self.len == 0 {
            return None;
        }
        if !self.min_exact {
            self.min = self.exact_min();
            self.min_exact = true;
        }
        Some(timestamp(self.min))
    }

    /// A timestamp no later than the earliest pending one, if any timer is pending: O(1), for
    /// deciding how long a shard may sleep (waking early only costs a poll that fires nothing).
    #[inline]
    pub fn next_due_at_least(&self) -> Option<Timestamp> {
        (self.len > 0).then(|| timestamp(self.min))
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        for list in self.slots.iter_mut() {
            list.reset(&mut self.spares);
        }
        self.occupied = [0; LEVELS];
        self.overdue.clear();
        self.far.clear();
        self.min = u64::MAX;
        self.min_exact = true;
        self.len = 0;
        self.stale = 0;
        self.compaction = None;
        self.ahead = None;
    }

    /// Approximate heap bytes held (capacities, not lengths).
    pub fn memory_bytes(&self) -> usize {
        // A BTreeMap entry costs about its key and value plus a share of its node.
        let map_entry = size_of::<u64>() + size_of::<List>() + 8;
        self.keys.memory_bytes()
            + self.spares.memory_bytes()
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

    // ---------------------------------------------------------------------------------------------
    // Internals.

    /// The next sequence number. When they wrap, stale entries (the only ones whose sequence
    /// number could be handed out again while they exist) are compacted away first.
    #[inline]
    fn next_seq(&mut self) -> u32 {
        if self.seq == SPILLED {
            if self.stale > 0 {
                self.compact_all();
            }
            self.seq = 0;
            self.epoch += 1;
        }
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// Files a new entry in its tier (invariant 1).
    #[inline]
    fn push_entry(&mut self, e: Entry) {
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

    /// Bookkeeping after `n` live timers, the smallest at `at`, were removed from the key index:
    /// their entries are now stale.
    fn retire(&mut self, at: u64, n: usize) {
        self.len -= n;
        self.stale += n;
        if at <= self.min {
            self.min_exact = false;
        }
        if self.compaction.is_none()
            && self.stale > self.compact_at
            && self.stale > self.len
            && let Some(first) = self.first_list()
        {
            self.compaction = Some(self.start_of(first));
        }
        if self.compaction.is_some() {
            self.compact_step(n.saturating_mul(COMPACT_WORK_PER_DELETE));
        }
    }

    /// A popped entry: if it is live, removes its timer and returns it (after prefetching the
    /// record of the entry `ahead`); else it was stale and is dropped.
    #[inline]
    fn fire_entry(&mut self, e: Entry, ahead: Option<KeyId>) -> Option<Timer> {
        if let Some(k) = ahead {
            prefetch_index(&self.keys.records, k as usize);
        }
        if self.keys.take_if_live(&e) {
            self.len -= 1;
            // Every remaining live timer is at or after `e.at`: still a lower bound, exact only if
            // another timer shares the timestamp, which is not known here.
            self.min = e.at;
            self.min_exact = false;
            self.ahead = ahead;
            self.last_fired_seq = e.seq;
            Some(Timer { key: e.key, timestamp: timestamp(e.at) })
        } else {
            self.stale -= 1;
            None
        }
    }

    /// With no live timer left, every entry is stale: drop them all at once.
    fn drop_stale_entries(&mut self) {
        if self.stale == 0 {
            return;
        }
        for level in 0..LEVELS {
            let mut bits = self.occupied[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.slots[slot_index(level, slot)].reset(&mut self.spares);
            }
        }
        self.occupied = [0; LEVELS];
        self.overdue.clear();
        self.far.clear();
        self.stale = 0;
        self.compaction = None;
    }

    /// The smallest live position (`len > 0`). Drops the stale entries it walks over at the front
    /// of lists, and compacts a coarse slot it has to scan.
    fn exact_min(&mut self) -> u64 {
        while let Some((&at, _)) = self.overdue.first_key_value() {
            if self.settle_front(ListId::Overdue(at)) {
                return at;
            }
        }
        for level in 0..LEVELS {
            let mut bits = self.occupied[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let index = slot_index(level, slot);
                if level == 0 {
                    if self.settle_front(ListId::Slot(index)) {
                        return self.slots[index].get(0).expect("non-empty").at;
                    }
                } else {
                    self.compact_list_now(ListId::Slot(index));
                    if let Some(m) = self.slots[index].as_slice().iter().map(|e| e.at).min() {
                        return m;
                    }
                }
            }
        }
        while let Some((&at, _)) = self.far.first_key_value() {
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
                self.release_list(id);
                return false;
            };
            if self.keys.is_live(&e) {
                return true;
            }
            let (_, spares, list) = self.parts(id);
            list.and_then(|l| l.pop_front(spares));
            self.stale -= 1;
        }
    }

    /// The list `id`, if it exists.
    fn list_mut(&mut self, id: ListId) -> Option<&mut List> {
        self.parts(id).2
    }

    /// The key index, the spare buffers and the list `id` (if it exists), borrowed together: for
    /// walking a list while testing its entries' liveness or recycling its buffer.
    fn parts(&mut self, id: ListId) -> (&KeyIndex, &mut Spares, Option<&mut List>) {
        let list = match id {
            ListId::Slot(i) => Some(&mut self.slots[i]),
            ListId::Overdue(at) => self.overdue.get_mut(&at),
            ListId::Far(at) => self.far.get_mut(&at),
        };
        (&self.keys, &mut self.spares, list)
    }

    /// An emptied list: clear its slot's bit or remove it from its map.
    fn release_list(&mut self, id: ListId) {
        match id {
            ListId::Slot(i) => {
                self.slots[i].reset(&mut self.spares);
                self.occupied[i / SLOTS] &= !(1 << (i % SLOTS));
            }
            ListId::Overdue(at) => {
                self.overdue.remove(&at);
            }
            ListId::Far(at) => {
                self.far.remove(&at);
            }
        }
    }

    /// The next slot due: the lowest occupied slot on the lowest non-empty level. O(levels).
    fn next_expiration(&self) -> Option<Expiration> {
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

    /// Moves the wheel to the start of a coarse slot and redistributes its entries to lower levels,
    /// in list order (invariant 3), dropping stale ones on the way.
    fn cascade(&mut self, exp: Expiration) {
        debug_assert!(exp.level > 0);
        self.elapsed = exp.deadline;
        let index = slot_index(exp.level, exp.slot);
        self.settle_compaction(ListId::Slot(index));
        let mut list = take(&mut self.slots[index]);
        self.occupied[exp.level] &= !(1 << exp.slot);
        let entries = list.as_slice();
        let check = self.stale > 0;
        for (i, e) in entries.iter().enumerate() {
            if check {
                if let Some(a) = entries.get(i + LOOKAHEAD) {
                    prefetch_index(&self.keys.records, a.key as usize);
                }
                if !self.keys.is_live(e) {
                    self.stale -= 1;
                    continue;
                }
            }
            let level = level_for(self.elapsed, e.at);
            debug_assert!(level < exp.level);
            let slot = slot_for(e.at, level);
            self.occupied[level] |= 1 << slot;
            self.slots[slot_index(level, slot)].push(*e, &mut self.spares);
        }
        list.reset(&mut self.spares);
        // Nothing lands on a coarse slot at the wheel's own digit: hand the buffer back for reuse.
        self.slots[index] = list;
    }

    /// The wheel (empty until now) has entered `block`: move that block's far lists into it. Far
    /// lists that `elapsed` has already passed can only hold stale entries (an idle jump past
    /// them): they are dropped.
    fn migrate(&mut self, block: u64) {
        while let Some(entry) = self.far.first_entry() {
            let at = *entry.key();
            if at >> BLOCK_BITS > block {
                break;
            }
            self.settle_compaction(ListId::Far(at));
            let list = self.far.remove(&at).expect("first entry");
            if at < self.elapsed {
                debug_assert!(list.as_slice().iter().all(|e| !self.keys.is_live(e)));
                self.stale -= list.len();
                continue;
            }
            let level = level_for(self.elapsed, at);
            debug_assert!(level < LEVELS && at >= self.elapsed);
            let slot = slot_for(at, level);
            self.occupied[level] |= 1 << slot;
            self.slots[slot_index(level, slot)].append(list, &mut self.spares);
        }
    }

    /// Moves the wheel towards `now` when nothing is due at `now`, cascading the coarse slots that
    /// start at or before it, so that registrations near `now` land on low levels (and never in the
    /// far tier once `now` is in a new block).
    fn advance(&mut self, now: u64) {
        if now <= self.elapsed {
            return;
        }
        loop {
            match self.next_expiration() {
                Some(exp) if exp.deadline <= now => {
                    if exp.level == 0 {
                        // Only stale entries can be due when `advance` runs: drop them.
                        let index = slot_index(0, exp.slot);
                        debug_assert!(
                            self.slots[index].as_slice().iter().all(|e| !self.keys.is_live(e))
                        );
                        self.settle_compaction(ListId::Slot(index));
                        self.stale -= self.slots[index].len();
                        self.release_list(ListId::Slot(index));
                    } else {
                        self.cascade(exp);
                    }
                }
                Some(_) => {
                    // The wheel is not empty, so `now` is before its next slot, in its block.
                    self.elapsed = now;
                    return;
                }
                None => {
                    let block = self.elapsed >> BLOCK_BITS;
                    self.elapsed = now;
                    if now >> BLOCK_BITS != block {
                        self.migrate(now >> BLOCK_BITS);
                    }
                    return;
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Compaction of stale entries (invariant 5).

    /// The first list in compaction order: wheel slots by index, then overdue, then far lists.
    fn first_list(&self) -> Option<ListId> {
        self.list_after(None)
    }

    /// The list after `after` in compaction order (the first one if `None`).
    fn list_after(&self, after: Option<ListId>) -> Option<ListId> {
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

    /// A cursor at the start of list `id`.
    fn start_of(&mut self, id: ListId) -> Compaction {
        let head = self.list_mut(id).map_or(0, |l| l.head);
        Compaction { list: id, read: head, write: head }
    }

    /// Examines up to `budget` entries of the running compaction pass.
    fn compact_step(&mut self, mut budget: usize) {
        while budget > 0 {
            let Some(mut c) = self.compaction else { return };
            let (keys, _, list) = self.parts(c.list);
            let mut removed = 0;
            let finished = match list {
                None => true,
                Some(list) => {
                    let end = list.entries.len();
                    while c.read < end && budget > 0 {
                        if let Some(a) = list.entries.get(c.read + LOOKAHEAD) {
                            prefetch_index(&keys.records, a.key as usize);
                        }
                        let e = list.entries[c.read];
                        if keys.is_live(&e) {
                            list.entries[c.write] = e;
                            c.write += 1;
                        } else {
                            removed += 1;
                        }
                        c.read += 1;
                        budget -= 1;
                    }
                    if c.read == end {
                        list.entries.truncate(c.write);
                        list.shrink();
                        true
                    } else {
                        false
                    }
                }
            };
            self.stale -= removed;
            if finished {
                if self.list_mut(c.list).is_some_and(|l| l.is_empty()) {
                    self.release_list(c.list);
                }
                self.compaction = match self.list_after(Some(c.list)) {
                    Some(next) if self.stale > 0 => Some(self.start_of(next)),
                    _ => None,
                };
            } else {
                self.compaction = Some(c);
            }
        }
    }

    /// Before an operation other than a push touches list `id`: if the compaction pass is inside
    /// it, close the gap between the compacted part and the rest, and move the pass to the next
    /// list.
    #[inline(always)]
    fn settle_compaction(&mut self, id: ListId) {
        if self.compaction.is_some_and(|c| c.list == id) {
            self.settle_compaction_now(id);
        }
    }

    #[cold]
    fn settle_compaction_now(&mut self, id: ListId) {
        let Some(c) = self.compaction else { return };
        if let Some(list) = self.list_mut(id) {
            let end = list.entries.len();
            list.entries.copy_within(c.read..end, c.write);
            list.entries.truncate(c.write + (end - c.read));
        }
        self.compaction = self.list_after(Some(id)).map(|next| self.start_of(next));
    }

    /// Compacts list `id` entirely, now.
    fn compact_list_now(&mut self, id: ListId) {
        // Settle first: a pass in progress inside this list leaves a gap of examined entries
        // that must not be read as entries, even when no stale entry is left.
        self.settle_compaction(id);
        if self.stale == 0 {
            return;
        }
        let (keys, _, Some(list)) = self.parts(id) else {
            return;
        };
        let before = list.len();
        let head = list.head;
        let mut write = head;
        for read in head..list.entries.len() {
            let e = list.entries[read];
            if keys.is_live(&e) {
                list.entries[write] = e;
                write += 1;
            }
        }
        list.entries.truncate(write);
        list.shrink();
        let after = list.len();
        let empty = list.is_empty();
        self.stale -= before - after;
        if empty {
            self.release_list(id);
        }
    }

    /// Drops every stale entry, now (O(entries)).
    fn compact_all(&mut self) {
        self.compaction = None;
        let mut next = self.first_list();
        while let Some(id) = next {
            self.compact_list_now(id);
            next = self.list_after(Some(id));
        }
        debug_assert_eq!(self.stale, 0);
    }

    /// The entries of list `id` that are in it: all of them, except the gap a compaction pass in
    /// progress has left (entries it has examined and either moved down or dropped).
    fn entries_of<'a>(&self, id: ListId, list: &'a List) -> impl Iterator<Item = &'a Entry> {
        let (gap_start, gap_end) = match self.compaction {
            Some(c) if c.list == id => (c.write, c.read),
            _ => (list.entries.len(), list.entries.len()),
        };
        list.entries[list.head..gap_start.max(list.head)].iter().chain(&list.entries[gap_end..])
    }

    /// Checks every structural invariant of the store (O(n)); panics with a description on the
    /// first violation. For tests (the property tests call it after every operation).
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        assert!(self.elapsed <= self.time, "elapsed {} beyond time {}", self.elapsed, self.time);
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
                let list = &self.slots[slot_index(level, slot)];
                let bit = self.occupied[level] >> slot & 1 == 1;
                assert_eq!(bit, !list.is_empty(), "occupied bit of level {level} slot {slot}");
                if level > 0 && !list.is_empty() {
                    assert_ne!(slot, slot_for(self.elapsed, level), "coarse slot at the wheel");
                }
                for e in self.entries_of(ListId::Slot(slot_index(level, slot)), list) {
                    assert!(e.at >= self.elapsed, "wheel entry {} behind {}", e.at, self.elapsed);
                    assert_eq!(
                        (level_for(self.elapsed, e.at), slot_for(e.at, level)),
                        (level, slot)
                    );
                    if level == 0 {
                        assert_eq!(e.at, list.as_slice()[0].at, "level-0 slot mixes times");
                    }
                    check_entry(e, &mut live);
                }
            }
        }
        for (overdue, map) in [(true, &self.overdue), (false, &self.far)] {
            for (&at, list) in map {
                assert!(!list.is_empty(), "empty list kept at {at}");
                if overdue {
                    assert!(at < self.elapsed, "overdue {at} not behind elapsed {}", self.elapsed);
                } else {
                    assert!(at > self.elapsed && level_for(self.elapsed, at) >= LEVELS, "far {at}");
                }
                let id = if overdue { ListId::Overdue(at) } else { ListId::Far(at) };
                for e in self.entries_of(id, list) {
                    assert_eq!(e.at, at, "list at {at} holds {e:?}");
                    check_entry(e, &mut live);
                }
            }
        }
        assert_eq!(live.len(), self.len, "live entries vs len");
        assert_eq!(entries - live.len(), self.stale, "stale entries");
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
        assert_eq!(indexed, self.len, "timers in the key index");
        if self.len > 0 {
            assert!(self.min <= min, "min bound {} above the minimum {min}", self.min);
            if self.min_exact {
                assert_eq!(self.min, min, "exact minimum");
            }
        }
        if let Some(c) = self.compaction {
            let list = match c.list {
                ListId::Slot(i) => Some(&self.slots[i]),
                ListId::Overdue(at) => self.overdue.get(&at),
                ListId::Far(at) => self.far.get(&at),
            };
            let list = list.expect("the compaction pass is inside an existing list");
            assert!(list.head <= c.write && c.write <= c.read, "compaction cursor {c:?}");
            assert!(c.read <= list.entries.len(), "compaction cursor {c:?} beyond the list");
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
        let slots: u32 = self.occupied.iter().map(|o| o.count_ones()).sum();
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("current_time", &self.current_time())
            .field("next_at_least", &self.next_due_at_least())
            .field("wheel_time", &timestamp(self.elapsed))
            .field("stale_entries", &self.stale)
            .field("occupied_slots", &slots)
            .field("overdue_lists", &self.overdue.len())
            .field("far_lists", &self.far.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}
