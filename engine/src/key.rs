//! Keys: the [`Key`] trait, dense per-shard key ids and the interner that assigns them.
//!
//! Two uses of a key's hash with opposite requirements meet here (docs/reliability.md, section
//! "Keys with pathological hashes"):
//!
//! * the **routing hash** ([`Key::canonical_hash`]) picks the key group, is baked into checkpoints
//!   and must therefore be stable and seedless: xxh3-64 of the key's canonical bytes;
//! * the **interner's table position** only finds a key's dense id in memory and must be
//!   unpredictable, so that an adversary cannot aim collisions at a long-running process: it is a
//!   random-seeded mix of the routing hash (see [`KeyInterner`]), never persisted.
//!
//! The key is hashed once per record (by the exchange); both uses read that one hash.

use std::fmt;
use std::hash::Hash;

use xxhash_rust::xxh3::xxh3_64;

use crate::cow_vec::{CowVec, FrozenVec};
use crate::prefetch::prefetch_index;

/// A dense id for a key within one keyed operator on one shard: the index of the key's row in every
/// state column and the key field of every timer. Ids are assigned in first-seen order from 0.
pub type KeyId = u32;

/// Errors from key handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// More distinct keys reached one keyed operator on one shard than key ids can name.
    #[error("too many distinct keys on one shard: the limit is {limit}")]
    TooManyKeys {
        /// The number of key ids available.
        limit: u64,
    },
}

/// Canonical bytes that do not decode as a key of the expected type (a restore).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDecodeError {
    /// The key type has no decoder ([`Key::from_canonical`] is not implemented for it), so its
    /// keyed state cannot be restored from a checkpoint.
    #[error(
        "keys of type {type_name} cannot be restored: the type does not implement `Key::from_canonical`"
    )]
    Unsupported {
        /// The key type.
        type_name: &'static str,
    },
    /// The bytes are not the canonical bytes of a key of this type.
    #[error("{len} bytes are not the canonical bytes of a {type_name} key")]
    Invalid {
        /// The key type.
        type_name: &'static str,
        /// How many bytes there were.
        len: usize,
    },
}

fn invalid<K>(bytes: &[u8]) -> KeyDecodeError {
    KeyDecodeError::Invalid { type_name: std::any::type_name::<K>(), len: bytes.len() }
}

/// A type usable as a key of a keyed stream.
///
/// Besides `Eq + Hash` (for in-memory lookups) a key has **canonical bytes**: an encoding that is the
/// same on every platform and every compiler version, from which its key group is computed. The
/// provided implementations encode integers little-endian, `bool` as one byte, strings as their
/// UTF-8 bytes, and tuples as the concatenation of their fields, each variable-length field
/// prefixed by its length as a little-endian `u32`.
pub trait Key: Eq + Hash + Clone + fmt::Debug + 'static {
    /// Appends the key's canonical bytes to `out`.
    fn write_canonical(&self, out: &mut Vec<u8>);

    /// The stable routing hash: xxh3-64 (seed 0) of the canonical bytes.
    ///
    /// Implementations may override it for speed but must return exactly
    /// `xxh3_64(canonical bytes)`.
    fn canonical_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(32);
        self.write_canonical(&mut buf);
        xxh3_64(&buf)
    }

    /// Rebuilds a key from its canonical bytes, as a restore from a checkpoint does: the inverse
    /// of [`write_canonical`](Self::write_canonical). Implemented for every provided key type
    /// except `&'static str`; the default returns [`KeyDecodeError::Unsupported`], so a key type
    /// of your own needs it only if its state is to be restored.
    fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let _ = bytes;
        Err(KeyDecodeError::Unsupported { type_name: std::any::type_name::<Self>() })
    }
}

macro_rules! fixed_width_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn write_canonical(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn canonical_hash(&self) -> u64 {
                xxh3_64(&self.to_le_bytes())
            }
            fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
                bytes.try_into().map(<$t>::from_le_bytes).map_err(|_| invalid::<$t>(bytes))
            }
        }
    )*};
}
fixed_width_key!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl Key for usize {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        // usize is encoded as u64 so that 32- and 64-bit hosts agree.
        (*self as u64).write_canonical(out);
    }
    fn canonical_hash(&self) -> u64 {
        (*self as u64).canonical_hash()
    }
    fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        usize::try_from(u64::from_canonical(bytes)?).map_err(|_| invalid::<usize>(bytes))
    }
}

impl Key for bool {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(invalid::<bool>(bytes)),
        }
    }
}

impl Key for char {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        (*self as u32).write_canonical(out);
    }
    fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        char::from_u32(u32::from_canonical(bytes)?).ok_or_else(|| invalid::<char>(bytes))
    }
}

impl Key for String {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    #[inline]
    fn canonical_hash(&self) -> u64 {
        xxh3_64(self.as_bytes())
    }
    fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid::<String>(bytes))
    }
}

impl Key for &'static str {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    #[inline]
    fn canonical_hash(&self) -> u64 {
        xxh3_64(self.as_bytes())
    }
}

impl Key for Vec<u8> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    #[inline]
    fn canonical_hash(&self) -> u64 {
        xxh3_64(self)
    }
    fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        Ok(bytes.to_vec())
    }
}

/// Writes one tuple field: fixed-width fields as-is, others with a length prefix.
fn write_field<K: Key>(k: &K, out: &mut Vec<u8>) {
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    k.write_canonical(out);
    let len = u32::try_from(out.len() - len_at - 4).unwrap_or(u32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Reads one tuple field written by [`write_field`] off the front of `rest`.
fn read_field<K: Key>(rest: &mut &[u8]) -> Result<K, KeyDecodeError> {
    let whole = *rest;
    let (len, tail) = whole.split_first_chunk::<4>().ok_or_else(|| invalid::<K>(whole))?;
    let len = u32::from_le_bytes(*len) as usize;
    if tail.len() < len {
        return Err(invalid::<K>(whole));
    }
    let (field, tail) = tail.split_at(len);
    *rest = tail;
    K::from_canonical(field)
}

macro_rules! tuple_key {
    ($($name:ident),+) => {
        impl<$($name: Key),+> Key for ($($name,)+) {
            #[allow(non_snake_case)] // the tuple's fields are named after their type parameters
            fn write_canonical(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $(write_field($name, out);)+
            }
            fn from_canonical(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
                let mut rest = bytes;
                let key = ($(read_field::<$name>(&mut rest)?,)+);
                if rest.is_empty() { Ok(key) } else { Err(invalid::<Self>(bytes)) }
            }
        }
    };
}
tuple_key!(A);
tuple_key!(A, B);
tuple_key!(A, B, C);
tuple_key!(A, B, C, D);

/// Assigns dense [`KeyId`]s to keys, in first-seen order, and keeps each key for
/// `current_key()` and for snapshots.
///
/// An open-addressing table with linear probing. A slot is one `u64`: the upper 32 bits of the
/// key's table position (a tag) and the key's id plus one (so that an empty slot is 0, and a new
/// table is zeroed memory, which costs nothing to fill); the keys themselves are in a `Vec`
/// indexed by id.
/// A key's home slot is given by the *top* bits of its position, so the tag holds the home: when
/// the table doubles, every slot is moved by its tag alone, in one sequential pass that reads
/// neither the keys nor their hashes. A lookup reads the key's home slot, and on a tag match
/// compares the key stored under that id.
///
/// **One hash per record.** Every entry point takes the key's routing hash
/// ([`Key::canonical_hash`], which the exchange computes anyway to find the key group), and the
/// table position is a secret-seeded mix of it (a folded multiply with two random 64-bit keys,
/// drawn per interner), so no second hash function runs on the record path. Positions are never
/// persisted. An adversary who cannot see the seed can only aim keys at one probe chain with full
/// 64-bit collisions of XXH3, and fixed-width integer keys cannot collide at all: XXH3 is a
/// bijection on inputs of one length up to 8 bytes.
///
/// The table is built for batches: [`prefetch_slot`](Self::prefetch_slot) for a record some
/// records ahead, then [`candidate`](Self::candidate) to learn (almost always) its key's id early
/// enough to prefetch its state rows, then [`intern_hashed`](Self::intern_hashed). The table grows
/// at 3/4 full, up to 2^32 slots (3.2 billion keys), or up to a configured limit of live keys
/// ([`with_limit`](Self::with_limit)).
///
/// **Keys can be removed** ([`remove`](Self::remove)): the slot is emptied by backward-shift
/// deletion (the slots after it in its probe run move back where their homes allow, so no
/// tombstones are left) and the id goes to a free list, from which the next new key takes it. So
/// the table, the key vector and every column indexed by id stay at the size of the most keys
/// live at once, however many distinct keys pass. The entry of a removed id in the key vector
/// keeps its last key until the id is given out again.
pub struct KeyInterner<K> {
    slots: Vec<u64>,
    /// `64 - log2(slots.len())`: a position's top bits, shifted down by this, are its home slot.
    shift: u32,
    /// While the table grows: the previous table, drained into `slots` a few slots per new key.
    old: Option<Draining>,
    /// The keys by id; copy-on-write, so that a checkpoint freezes them in O(pages).
    keys: CowVec<K>,
    /// Ids of removed keys, given out again before new ones.
    free: Vec<KeyId>,
    /// One bit per id: set while the id names a live key.
    live: CowVec<u64>,
    /// The most live keys allowed.
    limit: usize,
    /// The secret of the position mix.
    seed: [u64; 2],
}

/// The live keys of a [`KeyInterner`] as a checkpoint barrier found them
/// ([`KeyInterner::freeze`]).
#[derive(Debug, Clone)]
pub struct FrozenKeys<K> {
    keys: FrozenVec<K>,
    live: FrozenVec<u64>,
}

impl<K> FrozenKeys<K> {
    /// The key of `id` (live or not: the key vector keeps a removed id's last key).
    pub fn get(&self, id: KeyId) -> Option<&K> {
        self.keys.get(id as usize)
    }

    /// The live keys with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyId, &K)> + '_ {
        live_ids(self.words()).filter_map(move |id| Some((id as KeyId, self.keys.get(id)?)))
    }

    /// How many keys are live.
    pub fn len(&self) -> usize {
        self.words().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.words().all(|w| w == 0)
    }

    /// The live bits, a word (64 ids) at a time.
    fn words(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.live.len()).filter_map(|w| self.live.get(w).copied())
    }
}

/// The keys whose bit is set in `live`, with their ids, in id order (a word of bits at a time).
fn live_keys<'a, K>(keys: &'a [K], live: &'a [u64]) -> impl Iterator<Item = (KeyId, &'a K)> + 'a {
    live_ids(live.iter().copied()).filter_map(move |id| Some((id as KeyId, keys.get(id)?)))
}

/// The ids whose bit is set in the words `live`, in order.
fn live_ids(live: impl Iterator<Item = u64>) -> impl Iterator<Item = usize> {
    live.enumerate().flat_map(move |(w, word)| {
        let mut bits = word;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let id = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(id)
        })
    })
}

/// An empty slot (a valid slot holds its id plus one, never 0).
const EMPTY_SLOT: u64 = 0;
/// A slot of a draining table whose key was removed: occupied for probing, matching no key (its
/// id field is 0, which no valid slot has).
const TOMBSTONE: u64 = 1 << 32;
/// Slots of the draining table moved per new key: the move is done long before the new table
/// fills up (n / 32 new keys drain n slots; the new table has room for 3n / 2 keys), and one
/// insert moves at most 32 slots (about a microsecond).
const DRAIN_PER_INSERT: usize = 32;

/// The previous table while the table grows: slots below `cursor` have been moved to the new
/// table (they are dead here, but still occupied, so probe runs across them stay intact); the
/// others hold keys only this table has. Nothing is inserted here.
struct Draining {
    slots: Vec<u64>,
    shift: u32,
    cursor: usize,
}

impl Draining {
    /// The slot index holding a key of position `position` for which `is` is true, if it is
    /// still here (not yet moved).
    #[inline]
    fn find(&self, position: u64, mut is: impl FnMut(KeyId) -> bool) -> Option<usize> {
        let tag = tag_of(position);
        let mask = self.slots.len() - 1;
        let mut i = (position >> self.shift) as usize;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY_SLOT {
                return None;
            }
            if i >= self.cursor && slot as u32 != 0 && tag_of(slot) == tag && is(id_of(slot)) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }
}
/// log2 of the slots of a new table.
const INITIAL_BITS: u32 = 4;
/// log2 of the most slots a table has: the home must fit in the 32-bit tag.
const MAX_BITS: u32 = 32;

/// The slot of key `id` whose position has tag `tag` (`id < u32::MAX`).
#[inline]
fn slot_of(tag: u32, id: KeyId) -> u64 {
    (u64::from(tag) << 32) | u64::from(id + 1)
}

/// The key id in a full slot.
#[inline(always)]
fn id_of(slot: u64) -> KeyId {
    (slot as u32).wrapping_sub(1)
}

#[inline]
fn tag_of(position: u64) -> u32 {
    (position >> 32) as u32
}

/// The 128-bit product of `a` and `b`, folded to 64 bits (aHash's and wyhash's mixing step).
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Two fresh random 64-bit keys (from aHash's per-instance random state).
fn random_seed() -> [u64; 2] {
    let state = ahash::RandomState::new();
    // The multiplier must be odd for the mix to use every bit of the hash.
    [state.hash_one(0x5eed_u64), state.hash_one(0xfeed_u64) | 1]
}

impl<K: Key> KeyInterner<K> {
    /// An empty interner with a fresh random seed.
    pub fn new() -> Self {
        Self::with_limit(usize::MAX)
    }

    /// An empty interner that holds at most `limit` live keys: interning one more fails with
    /// [`KeyError::TooManyKeys`] (a memory bound that gives a typed error before memory runs out).
    pub fn with_limit(limit: usize) -> Self {
        KeyInterner {
            slots: vec![EMPTY_SLOT; 1 << INITIAL_BITS],
            shift: 64 - INITIAL_BITS,
            old: None,
            keys: CowVec::new(),
            free: Vec::new(),
            live: CowVec::new(),
            limit,
            seed: random_seed(),
        }
    }

    /// The table position of a key with routing hash `hash` (secret-seeded; never persist it).
    #[inline(always)]
    fn position(&self, hash: u64) -> u64 {
        folded_multiply(hash ^ self.seed[0], self.seed[1])
    }

    /// The home slot of a position.
    #[inline(always)]
    fn home(&self, position: u64) -> usize {
        (position >> self.shift) as usize
    }

    #[inline(always)]
    fn next(&self, i: usize) -> usize {
        (i + 1) & (self.slots.len() - 1)
    }

    /// Prefetches the home slot of a key with routing hash `hash`.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        prefetch_index(&self.slots, self.home(self.position(hash)));
    }

    /// The id in the home slot of this routing hash if its tag matches: the key's id, unless the
    /// key is new, collided further, or shares the tag with another key (rare). For prefetching
    /// only.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<KeyId> {
        let position = self.position(hash);
        let slot = self.slots[self.home(position)];
        (slot != EMPTY_SLOT && tag_of(slot) == tag_of(position)).then_some(id_of(slot))
    }

    /// Prefetches the stored key with id `id` (which a lookup compares against).
    #[inline]
    pub fn prefetch_key(&self, id: KeyId) {
        prefetch_index(&self.keys, id as usize);
    }

    /// The id of `key`, assigning the next id if the key is new.
    #[inline]
    pub fn intern(&mut self, key: K) -> Result<KeyId, KeyError> {
        let hash = key.canonical_hash();
        self.intern_hashed(key, hash)
    }

    /// [`intern`](Self::intern) with the key's routing hash ([`Key::canonical_hash`]) already
    /// computed. A new key gets the id of a removed key if there is one, else the next id (ids
    /// are handed out densely, in order).
    #[inline(always)]
    pub fn intern_hashed(&mut self, key: K, hash: u64) -> Result<KeyId, KeyError> {
        self.intern_hashed_new(key, hash).map(|(id, _)| id)
    }

    /// [`intern_hashed`](Self::intern_hashed), also saying whether the key is new.
    #[inline(always)]
    pub fn intern_hashed_new(&mut self, key: K, hash: u64) -> Result<(KeyId, bool), KeyError> {
        debug_assert_eq!(hash, key.canonical_hash(), "intern_hashed with another key's hash");
        let position = self.position(hash);
        let tag = tag_of(position);
        let mut i = self.home(position);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY_SLOT {
                break;
            }
            if tag_of(slot) == tag && self.keys[id_of(slot) as usize] == key {
                return Ok((id_of(slot), false));
            }
            i = self.next(i);
        }
        if let Some(id) = self.find_draining(position, &key) {
            return Ok((id, false));
        }
        self.insert_new(key, tag, i).map(|id| (id, true))
    }

    /// The id of `key` (of position `position`) if the draining table still holds it.
    #[inline]
    fn find_draining(&self, position: u64, key: &K) -> Option<KeyId> {
        let old = self.old.as_ref()?;
        let keys = &self.keys;
        old.find(position, |id| &keys[id as usize] == key).map(|i| id_of(old.slots[i]))
    }

    /// Gives a new key an id (a free one if there is one, else the next), in the empty slot `i`
    /// its probe ended at.
    #[inline]
    fn insert_new(&mut self, key: K, tag: u32, i: usize) -> Result<KeyId, KeyError> {
        let live = self.len();
        if live >= self.limit {
            return Err(KeyError::TooManyKeys { limit: self.limit as u64 });
        }
        let full = live * 4 >= self.slots.len() * 3 && 64 - self.shift == MAX_BITS;
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = key;
                id
            }
            None => {
                let id = KeyId::try_from(self.keys.len())
                    .ok()
                    .filter(|&id| id != KeyId::MAX && !full)
                    .ok_or(KeyError::TooManyKeys { limit: u64::from(KeyId::MAX) })?;
                self.keys.push(key);
                if id % 64 == 0 {
                    self.live.push(0);
                }
                id
            }
        };
        self.slots[i] = slot_of(tag, id);
        self.live[id as usize / 64] |= 1 << (id % 64);
        if self.old.is_some() {
            self.drain(DRAIN_PER_INSERT);
        } else if (live + 1) * 4 > self.slots.len() * 3 && 64 - self.shift < MAX_BITS {
            self.grow();
        }
        Ok(id)
    }

    /// Removes the key with id `id` (a key without state and timers); its id is given out again to
    /// a later new key. Returns false if the id names no live key.
    #[inline]
    pub fn remove(&mut self, id: KeyId) -> bool {
        if !self.is_live(id) {
            return false;
        }
        let position = self.position(self.keys[id as usize].canonical_hash());
        if let Some(old) = self.old.as_mut() {
            if let Some(at) = old.find(position, |other| other == id) {
                // Still in the draining table: only lookups read it, so a tombstone keeps its
                // probe runs intact.
                old.slots[at] = TOMBSTONE;
                self.live[id as usize / 64] &= !(1 << (id % 64));
                self.free.push(id);
                return true;
            }
        }
        let mut i = self.home(position);
        while id_of(self.slots[i]) != id {
            // The key is in the table: its probe run reaches its slot before an empty one.
            debug_assert_ne!(self.slots[i], EMPTY_SLOT, "a live key missing from the table");
            i = self.next(i);
        }
        // Backward-shift deletion: move each later slot of the run back into the hole, unless
        // its home lies cyclically after the hole (then it would be unreachable from its home).
        let mask = self.slots.len() - 1;
        let tag_shift = self.shift - 32;
        let mut hole = i;
        let mut j = self.next(hole);
        while self.slots[j] != EMPTY_SLOT {
            let home = (tag_of(self.slots[j]) >> tag_shift) as usize;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = self.next(j);
        }
        self.slots[hole] = EMPTY_SLOT;
        self.live[id as usize / 64] &= !(1 << (id % 64));
        self.free.push(id);
        true
    }

    /// Whether `id` names a live key.
    #[inline]
    pub fn is_live(&self, id: KeyId) -> bool {
        self.live.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// The live keys with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyId, &K)> + '_ {
        live_keys(&self.keys, &self.live)
    }

    /// The live keys frozen for a checkpoint to read off the shard: the key vector and the live
    /// bits, copy-on-write (`cow_vec.rs`: O(pages) here); not the table.
    pub fn freeze(&mut self) -> FrozenKeys<K> {
        FrozenKeys { keys: self.keys.freeze(), live: self.live.freeze() }
    }

    /// Starts doubling the table: a new table of twice the slots (zeroed memory, which costs
    /// nothing until touched) takes new keys, and the old one is drained into it a few slots per
    /// new key ([`DRAIN_PER_INSERT`]), so no insert pays for moving the whole table (at 12 M keys
    /// that was hundreds of milliseconds in one insert, with both tables alive anyway).
    #[cold]
    fn grow(&mut self) {
        debug_assert!(self.old.is_none(), "grow while draining");
        let doubled = vec![EMPTY_SLOT; self.slots.len() * 2];
        let slots = std::mem::replace(&mut self.slots, doubled);
        self.old = Some(Draining { slots, shift: self.shift, cursor: 0 });
        self.shift -= 1;
    }

    /// Moves up to `n` slots of the draining table to their homes in the new one, found from
    /// their tags (the top bits of their positions); drops the draining table once it is empty.
    fn drain(&mut self, n: usize) {
        let Some(old) = self.old.as_mut() else { return };
        // The home in the new table: the tag's top `64 - shift` bits (at most 32 of them).
        let tag_shift = self.shift - 32;
        let mask = self.slots.len() - 1;
        let end = (old.cursor + n).min(old.slots.len());
        for &slot in &old.slots[old.cursor..end] {
            if slot as u32 == 0 {
                continue; // empty, or a tombstone
            }
            let mut i = (tag_of(slot) >> tag_shift) as usize;
            while self.slots[i] != EMPTY_SLOT {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
        old.cursor = end;
        if end == old.slots.len() {
            self.old = None;
        }
    }

    /// The id of `key` if it was seen before.
    pub fn get(&self, key: &K) -> Option<KeyId> {
        let position = self.position(key.canonical_hash());
        let tag = tag_of(position);
        let mut i = self.home(position);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY_SLOT {
                return self.find_draining(position, key);
            }
            if tag_of(slot) == tag && &self.keys[id_of(slot) as usize] == key {
                return Some(id_of(slot));
            }
            i = self.next(i);
        }
    }

    /// The key with id `id`.
    ///
    /// Ids come from [`intern`](Self::intern); an id this interner never gave out, or whose key
    /// was removed, returns `None`.
    #[inline]
    pub fn key(&self, id: KeyId) -> Option<&K> {
        self.is_live(id).then(|| &self.keys[id as usize])
    }

    /// How many keys are live (interned and not removed).
    pub fn len(&self) -> usize {
        self.keys.len() - self.free.len()
    }

    /// True if no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key vector, indexed by id: what a callback's `current_key()` reads. The entry of a
    /// removed id holds its last key until the id is given out again; [`iter`](Self::iter) lists
    /// the live keys only.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// Approximate heap bytes held by the table and the key vector (not by the keys' own heap
    /// data, such as a `String`'s bytes).
    pub fn memory_bytes(&self) -> usize {
        (self.slots.capacity() + self.old.as_ref().map_or(0, |o| o.slots.capacity()))
            * std::mem::size_of::<u64>()
            + self.keys.capacity() * std::mem::size_of::<K>()
            + self.free.capacity() * std::mem::size_of::<KeyId>()
            + self.live.capacity() * std::mem::size_of::<u64>()
    }
}

impl<K: Key> Default for KeyInterner<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for KeyInterner<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyInterner").field("keys", &self.keys.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_in_first_seen_order() {
        let mut i = KeyInterner::new();
        assert_eq!(i.intern("b".to_string()), Ok(0));
        assert_eq!(i.intern("a".to_string()), Ok(1));
        assert_eq!(i.intern("b".to_string()), Ok(0));
        assert_eq!(i.key(1).map(String::as_str), Some("a"));
        assert_eq!(i.get(&"a".to_string()), Some(1));
        assert_eq!(i.get(&"z".to_string()), None);
        assert_eq!(i.key(7), None);
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn many_keys_round_trip() {
        let mut i = KeyInterner::new();
        for k in 0..100_000u64 {
            assert_eq!(i.intern(k * 7919), Ok(k as KeyId));
        }
        for k in 0..100_000u64 {
            assert_eq!(i.get(&(k * 7919)), Some(k as KeyId));
        }
    }

    #[test]
    fn colliding_home_slots_and_the_batch_api() {
        let mut i = KeyInterner::new();
        // Enough keys for several doublings, so that home slots collide and probes run on.
        for k in 0..10_000u64 {
            let h = k.canonical_hash();
            i.prefetch_slot(h);
            assert_eq!(i.intern_hashed(k, h), Ok(k as KeyId));
        }
        let mut exact = 0;
        for k in 0..10_000u64 {
            let h = k.canonical_hash();
            if let Some(c) = i.candidate(h) {
                i.prefetch_key(c);
                // A candidate is a hint: right for most keys, never required to be.
                exact += usize::from(c == k as KeyId);
            }
            assert_eq!(i.intern(k), Ok(k as KeyId), "an existing key keeps its id");
        }
        assert!(exact > 5_000, "home-slot candidates right for only {exact} keys");
        assert_eq!(i.get(&10_000), None);
        assert!(i.memory_bytes() >= 10_000 * 16);
    }

    #[test]
    fn canonical_bytes_are_fixed() {
        let mut b = Vec::new();
        0x0102_0304u32.write_canonical(&mut b);
        assert_eq!(b, [4, 3, 2, 1]);
        b.clear();
        ("ab".to_string(), 1u8).write_canonical(&mut b);
        assert_eq!(b, [2, 0, 0, 0, b'a', b'b', 1, 0, 0, 0, 1]);
        // The override and the default agree.
        let mut buf = Vec::new();
        42u64.write_canonical(&mut buf);
        assert_eq!(42u64.canonical_hash(), xxh3_64(&buf));
        assert_eq!("user-1".to_string().canonical_hash(), xxh3_64(b"user-1"));
    }

    /// Interning and removing against a `HashMap` model: every live key keeps its id, a removed
    /// key is gone, ids are reused before new ones are handed out, probe runs stay intact.
    #[test]
    fn removal_against_a_model() {
        use proptest::prelude::*;
        use std::collections::HashMap;
        proptest!(ProptestConfig::with_cases(300), |(ops in prop::collection::vec((0u64..200, any::<bool>()), 0..2_000))| {
            let mut i = KeyInterner::new();
            let mut model: HashMap<u64, KeyId> = HashMap::new();
            let mut free: Vec<KeyId> = Vec::new();
            let mut next: KeyId = 0;
            for (key, remove) in ops {
                if remove {
                    let removed = model.remove(&key);
                    let id = i.get(&key);
                    prop_assert_eq!(id, removed);
                    if let Some(id) = id {
                        prop_assert!(i.remove(id));
                        prop_assert!(!i.remove(id), "removing twice");
                        free.push(id);
                    }
                } else {
                    let want = *model.entry(key).or_insert_with(|| free.pop().unwrap_or_else(|| { next += 1; next - 1 }));
                    prop_assert_eq!(i.intern(key), Ok(want));
                }
                prop_assert_eq!(i.len(), model.len());
            }
            for (&key, &id) in &model {
                prop_assert_eq!(i.get(&key), Some(id));
                prop_assert_eq!(i.key(id), Some(&key));
            }
            prop_assert_eq!(i.iter().count(), model.len());
            prop_assert!(i.keys().len() <= 200, "ids are reused: at most one per distinct key");
        });
    }

    /// Growth drains the old table a few slots per new key: lookups, inserts and removals in
    /// the middle of a drain (and across several drains) agree with the model.
    #[test]
    fn removal_and_lookup_while_the_table_drains() {
        use std::collections::HashMap;
        let mut i = KeyInterner::new();
        let mut model: HashMap<u64, KeyId> = HashMap::new();
        let mut draining_seen = 0;
        for n in 0..200_000u64 {
            let key = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let id = i.intern(key).unwrap();
            model.insert(key, id);
            draining_seen += usize::from(i.old.is_some());
            if n % 3 == 0 {
                // Remove a key inserted a while ago (often still in the draining table).
                let old_key = (n / 2).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                if let Some(id) = model.remove(&old_key) {
                    assert!(i.remove(id));
                }
            }
            if n % 1_000 == 0 {
                for (k, &id) in model.iter().take(50) {
                    assert_eq!(i.get(k), Some(id));
                    assert_eq!(i.intern(*k), Ok(id), "an existing key is found, not added again");
                }
            }
        }
        assert!(draining_seen > 4_000, "the test ran inside drains: {draining_seen}");
        assert_eq!(i.len(), model.len());
        for (k, &id) in &model {
            assert_eq!(i.get(k), Some(id));
        }
    }

    #[test]
    fn the_limit_counts_live_keys() {
        let mut i = KeyInterner::with_limit(2);
        assert_eq!(i.intern(1u64), Ok(0));
        assert_eq!(i.intern(2u64), Ok(1));
        assert_eq!(i.intern(3u64), Err(KeyError::TooManyKeys { limit: 2 }));
        assert_eq!(i.intern(2u64), Ok(1), "an existing key is not new");
        assert!(i.remove(0));
        assert_eq!(i.intern(3u64), Ok(0), "a removed key's id is given out again");
        assert_eq!(i.get(&1), None);
    }

    fn round_trip<K: Key>(k: K) {
        let mut b = Vec::new();
        k.write_canonical(&mut b);
        assert_eq!(K::from_canonical(&b), Ok(k.clone()), "{k:?}");
        // One byte more or less is never the same key.
        b.push(0);
        assert_ne!(K::from_canonical(&b), Ok(k.clone()), "{k:?} with a byte more");
    }

    #[test]
    fn canonical_bytes_decode_back() {
        round_trip(0x0102_0304u32);
        round_trip(-5i64);
        round_trip(u128::MAX);
        round_trip(usize::MAX);
        round_trip(true);
        round_trip('€');
        round_trip("user-1".to_string());
        round_trip(("ab".to_string(), 1u8));
        round_trip((1u64, ("x".to_string(), false), -3i32, 'z'));
        assert!(matches!(bool::from_canonical(&[2]), Err(KeyDecodeError::Invalid { .. })));
        assert!(String::from_canonical(&[0xff]).is_err());
        assert!(<(u8, u8)>::from_canonical(&[9, 0, 0, 0, 1]).is_err(), "a length past the end");
        assert_eq!(
            <&'static str>::from_canonical(b"x"),
            Err(KeyDecodeError::Unsupported { type_name: "&str" })
        );
        assert!(Vec::<u8>::from_canonical(&[]).is_ok());
    }
}
