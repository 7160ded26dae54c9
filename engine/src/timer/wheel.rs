//! [`TimerWheel`]: the production timer store. The design, invariants and complexity are in the
//! [module documentation](super#implementation); comments here refer to its invariants by number.

use std::collections::BTreeMap;
use std::fmt;
use std::mem::size_of;

use hashbrown::HashTable;

use super::{Timer, TimerError};
use crate::key::KeyId;
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
/// Nodes `0..WHEEL_HEADS` are the heads of the slot lists, node `level * 64 + slot`.
const WHEEL_HEADS: u32 = (LEVELS * SLOTS) as u32;
/// "No node".
const NIL: u32 = u32::MAX;
/// The `key_prev` of a list head; a timer node holds `NIL` or a node index there.
const HEAD: u32 = u32::MAX - 1;
/// The `key_next` of a wheel slot head whose cached minimum is only a lower bound (its earliest timer
/// was deleted). `NIL` there means the cached minimum is exact.
const STALE: u32 = 0;
/// The largest slab: indices stay below `HEAD` and `NIL`.
const MAX_NODES: u32 = u32::MAX - 1;
/// The `key` of an overdue list head.
const TIER_OVERDUE: u32 = 0;
/// The `key` of a far list head.
const TIER_FAR: u32 = 1;
/// Estimated heap bytes per `BTreeMap<u64, u32>` entry (leaf nodes of 11 entries, two-thirds full).
const MAP_ENTRY_BYTES: usize = 24;

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

/// The node index of the head of slot `slot` on `level`.
#[inline]
fn wheel_head(level: usize, slot: usize) -> u32 {
    (level * SLOTS + slot) as u32
}

/// The dedup table's hash of a timer: injective input, random-seeded hasher.
#[inline]
fn hash_of(hasher: &ahash::RandomState, key: KeyId, at: u64) -> u64 {
    hasher.hash_one((u128::from(key) << 64) | u128::from(at))
}

/// A slab node: a pending timer, a list head, or a free node.
///
/// The position is stored as two `u32` halves so that the node is 4-byte aligned and 28 bytes long.
#[derive(Clone, Copy)]
struct Node {
    /// Timer: its position. Overdue/far head: the list's position. Wheel head: the smallest position
    /// in its list (`u64::MAX` when empty), exact unless `key_next == STALE`.
    at: [u32; 2],
    /// Timer: its key. Overdue/far head: `TIER_OVERDUE` or `TIER_FAR`.
    key: KeyId,
    /// Previous node of the circular tier list. Free node: unused.
    prev: u32,
    /// Next node of the circular tier list. Free node: the next free node.
    next: u32,
    /// Timer: previous timer of its key (`NIL` for the first). Head: `HEAD`.
    key_prev: u32,
    /// Timer: next timer of its key (`NIL` for the last). Wheel head: `STALE` or `NIL`.
    key_next: u32,
}

const _: () = assert!(size_of::<Node>() == 28);

impl Node {
    /// A node with all links given.
    #[inline]
    fn new(at: u64, key: KeyId, prev: u32, next: u32, key_prev: u32, key_next: u32) -> Node {
        Node { at: [at as u32, (at >> 32) as u32], key, prev, next, key_prev, key_next }
    }

    /// The position (see the field).
    #[inline]
    fn at(&self) -> u64 {
        (u64::from(self.at[1]) << 32) | u64::from(self.at[0])
    }

    #[inline]
    fn set_at(&mut self, at: u64) {
        self.at = [at as u32, (at >> 32) as u32];
    }

    /// True if this timer node is `(key, at)`.
    #[inline]
    fn is(&self, key: KeyId, at: u64) -> bool {
        self.key == key && self.at() == at
    }

    /// The empty head of wheel slot list `index`.
    fn wheel_head(index: u32) -> Node {
        Node::new(u64::MAX, 0, index, index, HEAD, NIL)
    }
}

/// The per-key index entry: the key's first timer node and how many timers it has.
#[derive(Clone, Copy)]
struct KeySlot {
    head: u32,
    count: u32,
}

impl KeySlot {
    const EMPTY: KeySlot = KeySlot { head: NIL, count: 0 };
}

/// A slot whose time has come: the lowest occupied slot, on the lowest non-empty level.
#[derive(Clone, Copy, Debug)]
struct Expiration {
    level: usize,
    slot: usize,
    /// The position where the slot starts (for level 0: its only timestamp).
    deadline: u64,
}

/// Where a new timer goes.
#[derive(Clone, Copy)]
enum Tier {
    Overdue,
    Wheel { level: usize, slot: usize },
    Far,
}

/// The production timer store: a hierarchical timing wheel with overdue and far tiers, unique per
/// `(key, timestamp)`, firing in timestamp order and, for equal timestamps, in registration order.
///
/// One per time domain per keyed operator per shard. See the [module documentation](super) for the
/// guarantees and the design.
pub struct TimerWheel {
    /// The slab: wheel slot heads, overdue/far list heads, timers, free nodes.
    nodes: Vec<Node>,
    /// First free node, linked through `next`.
    free: u32,
    /// How many nodes are on the free list.
    free_len: u32,
    /// The largest slab allowed (`MAX_NODES`, smaller in tests).
    node_limit: u32,
    /// Dedup and lookup: node indices of all pending timers, hashed by `(key, at)`.
    table: HashTable<u32>,
    hasher: ahash::RandomState,
    /// Per-key list heads and counts, indexed by key id.
    keys: Vec<KeySlot>,
    /// One bit per non-empty slot, per level.
    occupied: [u64; LEVELS],
    /// Overdue lists by position (all `< elapsed`).
    overdue: BTreeMap<u64, u32>,
    /// Far lists by position (all beyond `elapsed`'s block).
    far: BTreeMap<u64, u32>,
    /// `(at, head)` of the overdue list used last; head `NIL` if none.
    overdue_cache: (u64, u32),
    /// `(at, head)` of the far list used last; head `NIL` if none.
    far_cache: (u64, u32),
    /// The wheel's position: `<= time`; see invariant 1.
    elapsed: u64,
    /// The store's time: the largest `now` polled, as a position.
    time: u64,
    /// The smallest pending position (meaningless when `len == 0`).
    min: u64,
    /// Pending timers.
    len: usize,
}

impl TimerWheel {
    /// An empty store; its time starts at `i64::MIN`.
    pub fn new() -> Self {
        Self::with_node_limit(MAX_NODES)
    }

    /// An empty store whose slab may hold at most `limit` nodes (tests of
    /// [`TimerError::CapacityExceeded`]).
    pub(crate) fn with_node_limit(limit: u32) -> Self {
        debug_assert!((WHEEL_HEADS..=MAX_NODES).contains(&limit));
        TimerWheel {
            nodes: (0..WHEEL_HEADS).map(Node::wheel_head).collect(),
            free: NIL,
            free_len: 0,
            node_limit: limit,
            table: HashTable::new(),
            hasher: ahash::RandomState::new(),
            keys: Vec::new(),
            occupied: [0; LEVELS],
            overdue: BTreeMap::new(),
            far: BTreeMap::new(),
            overdue_cache: (0, NIL),
            far_cache: (0, NIL),
            elapsed: 0,
            time: 0,
            min: u64::MAX,
            len: 0,
        }
    }

    /// Registers the timer `(key, ts)`.
    ///
    /// Returns `Ok(true)` if it was added, `Ok(false)` if that `(key, ts)` is already pending (then
    /// nothing changes). Never fires anything, whatever `ts` is (SEMANTICS A1.6): a timer at or below
    /// the store's time fires at the next [`poll`](Self::poll) whose `now` reaches it.
    ///
    /// # Errors
    ///
    /// [`TimerError::CapacityExceeded`] when the store's `u32` node ids are exhausted (about four
    /// billion pending timers); the store is unchanged.
    pub fn register(&mut self, key: KeyId, ts: Timestamp) -> Result<bool, TimerError> {
        let at = axis(ts);
        let hash = hash_of(&self.hasher, key, at);
        let nodes = &self.nodes;
        if self.table.find(hash, |&i| nodes[i as usize].is(key, at)).is_some() {
            return Ok(false);
        }
        let tier = self.tier_for(at);
        let head = match tier {
            Tier::Wheel { level, slot } => wheel_head(level, slot),
            Tier::Overdue => self.cached_list(true, at),
            Tier::Far => self.cached_list(false, at),
        };
        let needed = if head == NIL { 2 } else { 1 };
        if !self.has_room(needed) {
            return Err(TimerError::CapacityExceeded {
                limit: u64::from(self.node_limit - WHEEL_HEADS),
            });
        }
        let head = match tier {
            Tier::Wheel { level, slot } => {
                self.occupied[level] |= 1 << slot;
                head
            }
            Tier::Overdue => self.list_for(true, at, head),
            Tier::Far => self.list_for(false, at, head),
        };
        if key as usize >= self.keys.len() {
            self.keys.resize(key as usize + 1, KeySlot::EMPTY);
        }
        let first_of_key = self.keys[key as usize].head;
        let idx = self.alloc(Node::new(at, key, NIL, NIL, NIL, first_of_key));
        if first_of_key != NIL {
            self.nodes[first_of_key as usize].key_prev = idx;
        }
        let slot = &mut self.keys[key as usize];
        slot.head = idx;
        slot.count += 1;
        self.push_back(head, idx, at);
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        self.table.insert_unique(hash, idx, |&i| {
            let node = &nodes[i as usize];
            hash_of(hasher, node.key, node.at())
        });
        if self.len == 0 || at < self.min {
            self.min = at;
        }
        self.len += 1;
        Ok(true)
    }

    /// Removes the timer `(key, ts)` if it is pending and returns true; otherwise returns false and
    /// does nothing (SEMANTICS A1.7: deleting a timer that does not exist or already fired is silent).
    pub fn delete(&mut self, key: KeyId, ts: Timestamp) -> bool {
        let at = axis(ts);
        let hash = hash_of(&self.hasher, key, at);
        let nodes = &self.nodes;
        let idx = match self.table.find_entry(hash, |&i| nodes[i as usize].is(key, at)) {
            Ok(entry) => entry.remove().0,
            Err(_) => return false,
        };
        self.detach(idx, at);
        self.unlink_key(idx);
        self.release(idx);
        self.len -= 1;
        if at == self.min && self.len > 0 {
            self.refresh_min();
        }
        true
    }

    /// True if the timer `(key, ts)` is pending.
    pub fn contains(&self, key: KeyId, ts: Timestamp) -> bool {
        let at = axis(ts);
        let hash = hash_of(&self.hasher, key, at);
        self.table.find(hash, |&i| self.nodes[i as usize].is(key, at)).is_some()
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
        if self.len == 0 || self.min > now {
            self.advance(now);
            return None;
        }
        // The earliest timer is due. Overdue timers are below `elapsed`, so below everything in the
        // wheel and the far tier (invariant 1); in the wheel the next expiration holds the earliest.
        loop {
            if let Some((_, &head)) = self.overdue.first_key_value() {
                return Some(self.pop_front(head));
            }
            match self.next_expiration() {
                Some(exp) if exp.level == 0 => {
                    // `deadline` is the slot's timestamp, the minimum, so `<= now <= time`.
                    self.elapsed = exp.deadline;
                    return Some(self.pop_front(wheel_head(0, exp.slot)));
                }
                Some(exp) => self.cascade(exp),
                None => {
                    // Only far timers: jump to the first one; its list lands on level 0.
                    let (&at, _) = self.far.first_key_value()?;
                    self.elapsed = at;
                    self.migrate(at >> BLOCK_BITS);
                }
            }
        }
    }

    /// The store's time: the largest `now` polled so far (`i64::MIN` initially).
    pub fn current_time(&self) -> Timestamp {
        timestamp(self.time)
    }

    /// The earliest pending timestamp, if any timer is pending (for example, how long a shard may
    /// park before its next processing-time timer). O(1).
    pub fn peek_timestamp(&self) -> Option<Timestamp> {
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
        self.keys.get(key as usize).map_or(0, |slot| slot.count as usize)
    }

    /// The timestamps of `key`'s pending timers, ascending. O(k log k) for its k timers.
    pub fn timers_for_key(&self, key: KeyId) -> Vec<Timestamp> {
        let Some(slot) = self.keys.get(key as usize) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(slot.count as usize);
        let mut idx = slot.head;
        while idx != NIL {
            let node = &self.nodes[idx as usize];
            out.push(timestamp(node.at()));
            idx = node.key_next;
        }
        out.sort_unstable();
        out
    }

    /// Deletes every pending timer of `key` and returns how many there were. O(k) for its k timers.
    pub fn delete_all_for_key(&mut self, key: KeyId) -> usize {
        let Some(slot) = self.keys.get_mut(key as usize) else {
            return 0;
        };
        let (mut idx, count) = (slot.head, slot.count as usize);
        *slot = KeySlot::EMPTY;
        let mut min_removed = false;
        while idx != NIL {
            let node = self.nodes[idx as usize];
            let at = node.at();
            let hash = hash_of(&self.hasher, key, at);
            let removed = self.table.find_entry(hash, |&i| i == idx).map(|e| e.remove()).is_ok();
            debug_assert!(removed, "timer {idx} missing from the dedup table");
            self.detach(idx, at);
            self.release(idx);
            min_removed |= at == self.min;
            idx = node.key_next;
        }
        self.len -= count;
        if min_removed && self.len > 0 {
            self.refresh_min();
        }
        count
    }

    /// Calls `f` with every pending timer, in no particular order (for snapshots).
    pub fn for_each(&self, mut f: impl FnMut(Timer)) {
        for &idx in self.table.iter() {
            let node = &self.nodes[idx as usize];
            f(Timer { key: node.key, timestamp: timestamp(node.at()) });
        }
    }

    /// Removes every pending timer. The store's time stays; the memory is kept for reuse.
    pub fn clear(&mut self) {
        self.nodes.truncate(WHEEL_HEADS as usize);
        for (i, node) in self.nodes.iter_mut().enumerate() {
            *node = Node::wheel_head(i as u32);
        }
        self.free = NIL;
        self.free_len = 0;
        self.table.clear();
        self.keys.clear();
        self.occupied = [0; LEVELS];
        self.overdue.clear();
        self.far.clear();
        self.overdue_cache = (0, NIL);
        self.far_cache = (0, NIL);
        self.min = u64::MAX;
        self.len = 0;
    }

    /// Approximate heap bytes held (capacities, not lengths).
    pub fn memory_bytes(&self) -> usize {
        let cap = self.table.capacity();
        // hashbrown keeps at most 7/8 of a power-of-two bucket count full (all of it below 8).
        let buckets = if cap == 0 {
            0
        } else if cap < 8 {
            (cap + 1).next_power_of_two()
        } else {
            (cap * 8 / 7).next_power_of_two()
        };
        self.nodes.capacity() * size_of::<Node>()
            + buckets * (size_of::<u32>() + 1)
            + self.keys.capacity() * size_of::<KeySlot>()
            + (self.overdue.len() + self.far.len()) * MAP_ENTRY_BYTES
    }

    // ---------------------------------------------------------------------------------------------
    // Internals.

    /// The tier a new timer at `at` goes to.
    #[inline]
    fn tier_for(&self, at: u64) -> Tier {
        if at < self.elapsed {
            return Tier::Overdue;
        }
        let level = level_for(self.elapsed, at);
        if level < LEVELS { Tier::Wheel { level, slot: slot_for(at, level) } } else { Tier::Far }
    }

    /// The head of the overdue (or far) list at `at` if it exists, else `NIL`.
    #[inline]
    fn cached_list(&self, overdue: bool, at: u64) -> u32 {
        let (map, cache) =
            if overdue { (&self.overdue, self.overdue_cache) } else { (&self.far, self.far_cache) };
        if cache.1 != NIL && cache.0 == at {
            return cache.1;
        }
        map.get(&at).copied().unwrap_or(NIL)
    }

    /// The head of the overdue (or far) list at `at`: `found`, or a new list (room checked by the
    /// caller). Makes it the tier's cached list.
    fn list_for(&mut self, overdue: bool, at: u64, found: u32) -> u32 {
        let head = if found != NIL {
            found
        } else {
            let tier = if overdue { TIER_OVERDUE } else { TIER_FAR };
            let head = self.alloc(Node::new(at, tier, NIL, NIL, HEAD, NIL));
            let node = &mut self.nodes[head as usize];
            (node.prev, node.next) = (head, head);
            let map = if overdue { &mut self.overdue } else { &mut self.far };
            map.insert(at, head);
            head
        };
        let cache = if overdue { &mut self.overdue_cache } else { &mut self.far_cache };
        *cache = (at, head);
        head
    }

    /// True if `needed` more nodes fit in the slab.
    fn has_room(&self, needed: u32) -> bool {
        let fresh = needed.saturating_sub(self.free_len);
        self.nodes.len() as u64 + u64::from(fresh) <= u64::from(self.node_limit)
    }

    /// Takes a node from the free list or the end of the slab (room checked by the caller).
    #[inline]
    fn alloc(&mut self, node: Node) -> u32 {
        if self.free != NIL {
            let idx = self.free;
            self.free = self.nodes[idx as usize].next;
            self.free_len -= 1;
            self.nodes[idx as usize] = node;
            idx
        } else {
            let idx = self.nodes.len() as u32;
            debug_assert!(idx < self.node_limit);
            self.nodes.push(node);
            idx
        }
    }

    /// Puts a node (already unlinked from every list) on the free list.
    #[inline]
    fn release(&mut self, idx: u32) {
        let node = &mut self.nodes[idx as usize];
        node.next = self.free;
        node.key_prev = NIL;
        self.free = idx;
        self.free_len += 1;
    }

    /// Appends node `idx` (at `at`) to the list of `head`, keeping a wheel head's cached minimum.
    #[inline]
    fn push_back(&mut self, head: u32, idx: u32, at: u64) {
        let tail = self.nodes[head as usize].prev;
        self.nodes[tail as usize].next = idx;
        let node = &mut self.nodes[idx as usize];
        (node.prev, node.next) = (tail, head);
        let head = &mut self.nodes[head as usize];
        head.prev = idx;
        // Overdue/far heads hold their own position, so this is a no-op for them.
        if at < head.at() {
            head.set_at(at);
        }
    }

    /// Moves the whole non-empty list of `src` to the end of the list of `dst`. O(1).
    fn splice(&mut self, src: u32, dst: u32) {
        let Node { prev: last, next: first, .. } = self.nodes[src as usize];
        let src_min = self.nodes[src as usize].at();
        let tail = self.nodes[dst as usize].prev;
        self.nodes[tail as usize].next = first;
        self.nodes[first as usize].prev = tail;
        self.nodes[last as usize].next = dst;
        let dst = &mut self.nodes[dst as usize];
        dst.prev = last;
        if src_min < dst.at() {
            dst.set_at(src_min);
        }
    }

    /// Unlinks timer `idx` (at `at`) from its tier list, releasing the list if it empties.
    fn detach(&mut self, idx: u32, at: u64) {
        // If it is the cached minimum of a coarse slot, the cache becomes a lower bound.
        if at >= self.elapsed {
            let level = level_for(self.elapsed, at);
            if (1..LEVELS).contains(&level) {
                let head = &mut self.nodes[wheel_head(level, slot_for(at, level)) as usize];
                if head.at() == at {
                    head.key_next = STALE;
                }
            }
        }
        self.unlink(idx);
    }

    /// Unlinks node `idx` from its tier list; releases the list if that emptied it and says so.
    #[inline]
    fn unlink(&mut self, idx: u32) -> bool {
        let Node { prev, next, .. } = self.nodes[idx as usize];
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
        if prev == next && self.nodes[prev as usize].key_prev == HEAD {
            self.release_list(prev);
            true
        } else {
            false
        }
    }

    /// An emptied list: clear the slot's bit, or drop the overdue/far list and free its head.
    fn release_list(&mut self, head: u32) {
        if head < WHEEL_HEADS {
            let (level, slot) = (head as usize / SLOTS, head as usize % SLOTS);
            self.occupied[level] &= !(1 << slot);
            let node = &mut self.nodes[head as usize];
            node.set_at(u64::MAX);
            node.key_next = NIL;
            return;
        }
        let node = self.nodes[head as usize];
        if node.key == TIER_OVERDUE {
            self.overdue.remove(&node.at());
        } else {
            self.far.remove(&node.at());
        }
        self.forget_list(head);
        self.release(head);
    }

    /// Drops a list head from the caches (it is about to be freed).
    #[inline]
    fn forget_list(&mut self, head: u32) {
        if self.overdue_cache.1 == head {
            self.overdue_cache.1 = NIL;
        }
        if self.far_cache.1 == head {
            self.far_cache.1 = NIL;
        }
    }

    /// Unlinks timer `idx` from its key's list.
    #[inline]
    fn unlink_key(&mut self, idx: u32) {
        let Node { key, key_prev, key_next, .. } = self.nodes[idx as usize];
        if key_prev == NIL {
            self.keys[key as usize].head = key_next;
        } else {
            self.nodes[key_prev as usize].key_next = key_next;
        }
        if key_next != NIL {
            self.nodes[key_next as usize].key_prev = key_prev;
        }
        self.keys[key as usize].count -= 1;
    }

    /// Removes and returns the first timer of the (non-empty, single-timestamp) list of `head`.
    fn pop_front(&mut self, head: u32) -> Timer {
        let idx = self.nodes[head as usize].next;
        let node = self.nodes[idx as usize];
        let at = node.at();
        debug_assert_eq!(at, self.min);
        let hash = hash_of(&self.hasher, node.key, at);
        let removed = self.table.find_entry(hash, |&i| i == idx).map(|e| e.remove()).is_ok();
        debug_assert!(removed, "timer {idx} missing from the dedup table");
        let emptied = self.unlink(idx);
        self.unlink_key(idx);
        self.release(idx);
        self.len -= 1;
        // The list held every pending timer at `at` (invariant 3): while it is non-empty the
        // minimum stays.
        if emptied && self.len > 0 {
            self.refresh_min();
        }
        Timer { key: node.key, timestamp: timestamp(at) }
    }

    /// Recomputes the smallest pending position (`len > 0`).
    fn refresh_min(&mut self) {
        if let Some((&at, _)) = self.overdue.first_key_value() {
            self.min = at;
        } else if let Some(exp) = self.next_expiration() {
            let head = wheel_head(exp.level, exp.slot) as usize;
            if self.nodes[head].key_next == STALE {
                self.rescan(head as u32);
            }
            self.min = self.nodes[head].at();
        } else if let Some((&at, _)) = self.far.first_key_value() {
            self.min = at;
        }
    }

    /// Recomputes the exact minimum of a wheel slot list.
    fn rescan(&mut self, head: u32) {
        let mut min = u64::MAX;
        let mut idx = self.nodes[head as usize].next;
        while idx != head {
            let node = &self.nodes[idx as usize];
            min = min.min(node.at());
            idx = node.next;
        }
        let head = &mut self.nodes[head as usize];
        head.set_at(min);
        head.key_next = NIL;
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

    /// Moves the wheel to the start of a coarse slot and redistributes its timers to lower levels,
    /// in list order (invariant 3).
    fn cascade(&mut self, exp: Expiration) {
        debug_assert!(exp.level > 0);
        self.elapsed = exp.deadline;
        let head = wheel_head(exp.level, exp.slot);
        let mut idx = self.nodes[head as usize].next;
        self.nodes[head as usize] = Node::wheel_head(head);
        self.occupied[exp.level] &= !(1 << exp.slot);
        while idx != head {
            let node = &self.nodes[idx as usize];
            let (next, at) = (node.next, node.at());
            let level = level_for(self.elapsed, at);
            debug_assert!(level < exp.level);
            let slot = slot_for(at, level);
            self.occupied[level] |= 1 << slot;
            self.push_back(wheel_head(level, slot), idx, at);
            idx = next;
        }
    }

    /// The wheel (empty until now) has entered `block`: splice that block's far lists into it.
    fn migrate(&mut self, block: u64) {
        while let Some(entry) = self.far.first_entry() {
            debug_assert!(*entry.key() >> BLOCK_BITS >= block, "far timer behind the wheel");
            if *entry.key() >> BLOCK_BITS != block {
                break;
            }
            let (at, src) = entry.remove_entry();
            let level = level_for(self.elapsed, at);
            debug_assert!(level < LEVELS && at >= self.elapsed);
            let slot = slot_for(at, level);
            self.occupied[level] |= 1 << slot;
            self.splice(src, wheel_head(level, slot));
            self.forget_list(src);
            self.release(src);
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
                Some(exp) if exp.deadline <= now => self.cascade(exp),
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

    /// Checks every structural invariant of the store (O(n)); panics with a description on the
    /// first violation. For tests (the property tests call it after every operation).
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        assert!(self.elapsed <= self.time, "elapsed {} beyond time {}", self.elapsed, self.time);
        let mut seen = 0usize;
        let mut min = u64::MAX;
        let timer = |idx: u32, at: u64| {
            let node = &self.nodes[idx as usize];
            assert_ne!(node.key_prev, HEAD, "head {idx} inside a list");
            assert_eq!(node.at(), at);
            let hash = hash_of(&self.hasher, node.key, at);
            assert_eq!(self.table.find(hash, |&i| i == idx), Some(&idx), "{idx} not in the table");
        };
        // Walks a circular list, checking its links; returns its timer nodes.
        let walk = |head: u32| -> Vec<u32> {
            let mut out = Vec::new();
            let mut prev = head;
            let mut idx = self.nodes[head as usize].next;
            while idx != head {
                assert_eq!(self.nodes[idx as usize].prev, prev, "broken prev link at {idx}");
                out.push(idx);
                assert!(out.len() <= self.len, "list of {head} does not close");
                prev = idx;
                idx = self.nodes[idx as usize].next;
            }
            assert_eq!(self.nodes[head as usize].prev, prev, "broken tail link of {head}");
            out
        };
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let head = wheel_head(level, slot);
                let list = walk(head);
                let bit = self.occupied[level] >> slot & 1 == 1;
                assert_eq!(bit, !list.is_empty(), "occupied bit of level {level} slot {slot}");
                let head_node = &self.nodes[head as usize];
                assert_eq!(head_node.key_prev, HEAD);
                let mut slot_min = u64::MAX;
                for &idx in &list {
                    let at = self.nodes[idx as usize].at();
                    assert!(at >= self.elapsed, "wheel timer {at} behind elapsed {}", self.elapsed);
                    assert_eq!((level_for(self.elapsed, at), slot_for(at, level)), (level, slot));
                    if level == 0 {
                        assert_eq!(
                            at,
                            self.nodes[list[0] as usize].at(),
                            "level-0 slot mixes times"
                        );
                    }
                    timer(idx, at);
                    slot_min = slot_min.min(at);
                }
                if level > 0 && !list.is_empty() {
                    assert_ne!(slot, slot_for(self.elapsed, level), "coarse slot at the wheel");
                }
                if head_node.key_next == STALE {
                    assert!(level > 0 && head_node.at() <= slot_min, "stale bound above the min");
                } else {
                    assert_eq!(head_node.key_next, NIL);
                    assert_eq!(
                        head_node.at(),
                        slot_min,
                        "cached minimum of level {level} slot {slot}"
                    );
                }
                seen += list.len();
                min = min.min(slot_min);
            }
        }
        for (overdue, map) in [(true, &self.overdue), (false, &self.far)] {
            for (&at, &head) in map {
                let node = &self.nodes[head as usize];
                assert_eq!((node.key_prev, node.at()), (HEAD, at), "map head {head}");
                assert_eq!(node.key, if overdue { TIER_OVERDUE } else { TIER_FAR });
                if overdue {
                    assert!(at < self.elapsed, "overdue {at} not behind elapsed {}", self.elapsed);
                } else {
                    assert!(at > self.elapsed && level_for(self.elapsed, at) >= LEVELS, "far {at}");
                }
                let list = walk(head);
                assert!(!list.is_empty(), "empty list kept at {at}");
                for &idx in &list {
                    timer(idx, at);
                }
                seen += list.len();
                min = min.min(at);
            }
        }
        for (cache, map) in [(self.overdue_cache, &self.overdue), (self.far_cache, &self.far)] {
            assert!(cache.1 == NIL || map.get(&cache.0) == Some(&cache.1), "stale cache {cache:?}");
        }
        assert_eq!(seen, self.len, "timers in lists");
        assert_eq!(self.table.len(), self.len, "timers in the table");
        if self.len > 0 {
            assert_eq!(self.min, min, "cached minimum");
        }
        let mut by_key = 0usize;
        for (key, slot) in self.keys.iter().enumerate() {
            let (mut prev, mut idx, mut count) = (NIL, slot.head, 0u32);
            while idx != NIL {
                let node = &self.nodes[idx as usize];
                assert_eq!((node.key as usize, node.key_prev), (key, prev), "key list of {key}");
                count += 1;
                assert!(count as usize <= self.len, "key list of {key} does not end");
                prev = idx;
                idx = node.key_next;
            }
            assert_eq!(count, slot.count, "count of key {key}");
            by_key += count as usize;
        }
        assert_eq!(by_key, self.len, "timers in key lists");
        let (mut free, mut idx) = (0u32, self.free);
        while idx != NIL {
            free += 1;
            assert!(free <= self.free_len, "free list does not end");
            idx = self.nodes[idx as usize].next;
        }
        assert_eq!(free, self.free_len, "free list length");
        let heads = WHEEL_HEADS as usize + self.overdue.len() + self.far.len();
        assert_eq!(self.nodes.len(), heads + self.len + free as usize, "slab accounting");
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
            .field("next", &self.peek_timestamp())
            .field("wheel_time", &timestamp(self.elapsed))
            .field("occupied_slots", &slots)
            .field("overdue_lists", &self.overdue.len())
            .field("far_lists", &self.far.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}
