//! Keys: the [`Key`] trait, dense per-operator key ids and the interner that assigns them.
//!
//! Two hashes with opposite requirements meet here (RELIABILITY.md §2.3):
//!
//! * the **routing hash** ([`Key::canonical_hash`]) picks the key group, is baked into checkpoints
//!   and must therefore be stable and seedless: xxh3-64 of the key's canonical bytes;
//! * the **interner's hash** only finds a key's dense id in memory and is random-seeded
//!   (`ahash::RandomState`), so an adversary cannot aim collisions at a long-running process.
//!   Its output is never persisted.

use std::fmt;
use std::hash::Hash;

use xxhash_rust::xxh3::xxh3_64;

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
}

impl Key for bool {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Key for char {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        (*self as u32).write_canonical(out);
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
}

/// Writes one tuple field: fixed-width fields as-is, others with a length prefix.
fn write_field<K: Key>(k: &K, out: &mut Vec<u8>) {
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    k.write_canonical(out);
    let len = u32::try_from(out.len() - len_at - 4).unwrap_or(u32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

macro_rules! tuple_key {
    ($($name:ident),+) => {
        impl<$($name: Key),+> Key for ($($name,)+) {
            #[allow(non_snake_case)] // the tuple's fields are named after their type parameters
            fn write_canonical(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $(write_field($name, out);)+
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
/// key's hash (a tag) and the key's id; the keys themselves are in a `Vec` indexed by id. A lookup
/// reads the key's home slot, and on a tag match compares the key stored under that id. The hasher
/// is `ahash::RandomState`, seeded randomly per interner, so an adversary cannot aim collisions
/// at a long-running process (RELIABILITY.md section 2.3).
///
/// The table is built for batches: [`hash`](Self::hash) and [`prefetch_slot`](Self::prefetch_slot)
/// for every record of a batch, then [`candidate`](Self::candidate) to learn (almost always) each
/// key's id early enough to prefetch its state rows, then [`intern_hashed`](Self::intern_hashed).
/// The table grows at 3/4 full.
pub struct KeyInterner<K> {
    slots: Vec<u64>,
    mask: usize,
    keys: Vec<K>,
    hasher: ahash::RandomState,
}

/// An empty slot (no valid slot has id `u32::MAX`).
const EMPTY_SLOT: u64 = u64::MAX;
/// Slots of a new table.
const INITIAL_SLOTS: usize = 16;

#[inline]
fn slot_of(tag: u32, id: KeyId) -> u64 {
    (u64::from(tag) << 32) | u64::from(id)
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl<K: Key> KeyInterner<K> {
    /// An empty interner with a fresh random seed.
    pub fn new() -> Self {
        KeyInterner {
            slots: vec![EMPTY_SLOT; INITIAL_SLOTS],
            mask: INITIAL_SLOTS - 1,
            keys: Vec::new(),
            hasher: ahash::RandomState::new(),
        }
    }

    /// The key's hash in this interner (random-seeded; never persist it).
    #[inline]
    pub fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Prefetches the home slot of a key with this hash.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        prefetch_index(&self.slots, hash as usize & self.mask);
    }

    /// The id in the home slot of this hash if its tag matches: the key's id, unless the key is
    /// new, collided further, or shares the tag with another key (rare). For prefetching only.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<KeyId> {
        let slot = self.slots[hash as usize & self.mask];
        (slot != EMPTY_SLOT && (slot >> 32) as u32 == tag_of(hash)).then_some(slot as KeyId)
    }

    /// Prefetches the stored key with id `id` (which a lookup compares against).
    #[inline]
    pub fn prefetch_key(&self, id: KeyId) {
        prefetch_index(&self.keys, id as usize);
    }

    /// The id of `key`, assigning the next id if the key is new.
    #[inline]
    pub fn intern(&mut self, key: K) -> Result<KeyId, KeyError> {
        let hash = self.hash(&key);
        self.intern_hashed(key, hash)
    }

    /// [`intern`](Self::intern) with the key's [`hash`](Self::hash) already computed.
    #[inline]
    pub fn intern_hashed(&mut self, key: K, hash: u64) -> Result<KeyId, KeyError> {
        let tag = tag_of(hash);
        let mut i = hash as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY_SLOT {
                break;
            }
            if (slot >> 32) as u32 == tag && self.keys[slot as KeyId as usize] == key {
                return Ok(slot as KeyId);
            }
            i = (i + 1) & self.mask;
        }
        let id = KeyId::try_from(self.keys.len())
            .ok()
            .filter(|&id| id != KeyId::MAX)
            .ok_or(KeyError::TooManyKeys { limit: u64::from(KeyId::MAX) })?;
        self.slots[i] = slot_of(tag, id);
        self.keys.push(key);
        if self.keys.len() * 4 > self.slots.len() * 3 {
            self.grow();
        }
        Ok(id)
    }

    /// Doubles the table and re-inserts every key.
    #[cold]
    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        self.slots = vec![EMPTY_SLOT; n];
        self.mask = n - 1;
        for (id, key) in self.keys.iter().enumerate() {
            let hash = self.hasher.hash_one(key);
            let mut i = hash as usize & self.mask;
            while self.slots[i] != EMPTY_SLOT {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = slot_of(tag_of(hash), id as KeyId);
        }
    }

    /// The id of `key` if it was seen before.
    pub fn get(&self, key: &K) -> Option<KeyId> {
        let hash = self.hash(key);
        let tag = tag_of(hash);
        let mut i = hash as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY_SLOT {
                return None;
            }
            if (slot >> 32) as u32 == tag && &self.keys[slot as KeyId as usize] == key {
                return Some(slot as KeyId);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The key with id `id`.
    ///
    /// Ids come from [`intern`](Self::intern); an id this interner never gave out returns `None`.
    #[inline]
    pub fn key(&self, id: KeyId) -> Option<&K> {
        self.keys.get(id as usize)
    }

    /// How many distinct keys have been seen.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if no key has been seen.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// All keys in id order.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// Approximate heap bytes held by the table and the key vector (not by the keys' own heap
    /// data, such as a `String`'s bytes).
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
            + self.keys.capacity() * std::mem::size_of::<K>()
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
            let h = i.hash(&k);
            i.prefetch_slot(h);
            assert_eq!(i.intern_hashed(k, h), Ok(k as KeyId));
        }
        let mut exact = 0;
        for k in 0..10_000u64 {
            let h = i.hash(&k);
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
}
