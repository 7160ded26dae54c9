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

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

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
/// One hash probe per record: a `hashbrown::HashTable` of ids whose equality check compares against
/// the stored key. The hasher is `ahash::RandomState`, seeded randomly per interner.
pub struct KeyInterner<K> {
    table: HashTable<KeyId>,
    keys: Vec<K>,
    hasher: ahash::RandomState,
}

impl<K: Key> KeyInterner<K> {
    /// An empty interner with a fresh random seed.
    pub fn new() -> Self {
        KeyInterner { table: HashTable::new(), keys: Vec::new(), hasher: ahash::RandomState::new() }
    }

    /// The id of `key`, assigning the next id if the key is new.
    #[inline]
    pub fn intern(&mut self, key: K) -> Result<KeyId, KeyError> {
        let hash = self.hasher.hash_one(&key);
        let keys = &self.keys;
        if let Some(&id) = self.table.find(hash, |&id| keys[id as usize] == key) {
            return Ok(id);
        }
        let id = KeyId::try_from(self.keys.len())
            .ok()
            .filter(|&id| id != KeyId::MAX)
            .ok_or(KeyError::TooManyKeys { limit: u64::from(KeyId::MAX) })?;
        let hasher = &self.hasher;
        let keys = &self.keys;
        self.table.insert_unique(hash, id, |&other| hasher.hash_one(&keys[other as usize]));
        self.keys.push(key);
        Ok(id)
    }

    /// The id of `key` if it was seen before.
    pub fn get(&self, key: &K) -> Option<KeyId> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |&id| &self.keys[id as usize] == key).copied()
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
