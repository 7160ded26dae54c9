//! `MapState<K, V>`: a map per key.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::mem;
use std::rc::Rc;

use ahash::RandomState;
use hashbrown::HashTable;

use super::codec::{CodecError, StateValue, decode, encode};
use super::column::{
    Column, ErasedColumn, FrozenColumn, debug_handle, emptied as count_emptied, open, row,
    ttl_mismatch,
};
use super::ttl::{Ttl, purge_expired, read_with_ttl};
use super::{KeyedScope, StateError};
use crate::cow_vec::{CowVec, FrozenVec};
use crate::key::KeyId;
use crate::time::Timestamp;

const KIND: &str = "MapState";

/// One key's map: the entries in a vector (so iteration is a linear scan in a deterministic order)
/// and a hash index from map key to position, as `indexmap` does. With TTL, `stamps` holds one
/// timestamp per entry, in parallel (A3.10.5); without, it stays empty.
///
/// Order: insertion order, except that removing an entry moves the last entry into its place;
/// removing expired entries keeps the order of the others. It never depends on the hasher's seed.
#[derive(Clone)]
pub(super) struct MapRow<K, V> {
    entries: Vec<(K, V)>,
    stamps: Vec<Timestamp>,
    index: HashTable<usize>,
}

impl<K: Eq + Hash, V> MapRow<K, V> {
    fn new() -> Self {
        MapRow { entries: Vec::new(), stamps: Vec::new(), index: HashTable::new() }
    }

    #[inline]
    fn find<Q>(&self, hasher: &RandomState, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = &self.entries;
        self.index
            .find(hasher.hash_one(key), |&i| entries.get(i).is_some_and(|e| e.0.borrow() == key))
            .copied()
    }

    /// Inserts or replaces; with `stamp`, the entry's timestamp becomes it.
    #[inline]
    fn insert(&mut self, hasher: &RandomState, key: K, value: V, stamp: Option<Timestamp>) {
        let hash = hasher.hash_one(&key);
        let MapRow { entries, stamps, index } = self;
        let found = index.find(hash, |&i| entries.get(i).is_some_and(|e| e.0 == key)).copied();
        match found {
            Some(pos) => {
                if let Some(entry) = entries.get_mut(pos) {
                    entry.1 = value;
                }
                if let (Some(stamp), Some(slot)) = (stamp, stamps.get_mut(pos)) {
                    *slot = stamp;
                }
            }
            None => {
                let pos = entries.len();
                entries.push((key, value));
                if let Some(stamp) = stamp {
                    stamps.push(stamp);
                }
                index.insert_unique(hash, pos, |&i| {
                    entries.get(i).map_or(0, |e| hasher.hash_one(&e.0))
                });
            }
        }
    }

    /// Removes the entry at `pos`, moving the last entry into its place.
    fn swap_remove(&mut self, hasher: &RandomState, pos: usize) -> Option<(K, V)> {
        let MapRow { entries, stamps, index } = self;
        let hash = hasher.hash_one(&entries.get(pos)?.0);
        if let Ok(slot) = index.find_entry(hash, |&i| i == pos) {
            slot.remove();
        }
        let last = entries.len() - 1;
        if pos != last {
            if let Some(moved) = entries.get(last) {
                if let Some(slot) = index.find_mut(hasher.hash_one(&moved.0), |&i| i == last) {
                    *slot = pos;
                }
            }
        }
        if pos < stamps.len() {
            stamps.swap_remove(pos);
        }
        Some(entries.swap_remove(pos))
    }

    /// Rebuilds the index after entries were removed in bulk.
    fn reindex(&mut self, hasher: &RandomState) {
        let MapRow { entries, index, .. } = self;
        index.clear();
        for (pos, entry) in entries.iter().enumerate() {
            index.insert_unique(hasher.hash_one(&entry.0), pos, |&i| {
                entries.get(i).map_or(0, |e| hasher.hash_one(&e.0))
            });
        }
    }

    fn memory_bytes(&self) -> usize {
        mem::size_of::<Self>()
            + self.entries.capacity() * mem::size_of::<(K, V)>()
            + self.stamps.capacity() * mem::size_of::<Timestamp>()
            + self.index.allocation_size()
    }
}

/// The column of a map state: per key, `None` (absent: 8 bytes) or a boxed [`MapRow`].
///
/// Invariants: a present row is never empty; `live` is the number of present rows; with TTL, every
/// row's `stamps` has one timestamp per entry, without TTL none.
pub(super) struct MapColumn<K, V> {
    /// Copy-on-write, so that a checkpoint freezes them in O(pages) ([`CowVec`]).
    rows: CowVec<Option<Box<MapRow<K, V>>>>,
    /// One random-seeded hasher for all rows (map keys may come from untrusted input).
    hasher: RandomState,
    ttl: Option<Ttl>,
    live: usize,
}

impl<K: Eq + Hash, V> MapColumn<K, V> {
    pub(super) fn new(ttl: Option<Ttl>) -> Self {
        MapColumn { rows: CowVec::new(), hasher: RandomState::new(), ttl, live: 0 }
    }

    /// The row of `key`, created (and counted) if absent, and the hasher.
    #[inline]
    fn row_for_write(&mut self, key: KeyId) -> Option<(&mut MapRow<K, V>, &RandomState)> {
        let i = row(key);
        if i >= self.rows.len() {
            self.rows.grow_with(i.saturating_add(1), || None);
        }
        let slot = self.rows.get_mut(i)?;
        if slot.is_none() {
            self.live += 1;
        }
        Some((slot.get_or_insert_with(|| Box::new(MapRow::new())), &self.hasher))
    }

    /// Releases `key`'s row if it became empty.
    #[inline]
    fn release_if_empty(&mut self, key: KeyId) {
        if let Some(slot) = self.rows.get_mut(row(key)) {
            if slot.as_ref().is_some_and(|r| r.entries.is_empty()) {
                *slot = None;
                self.live -= 1;
                count_emptied(1);
            }
        }
    }

    /// A point read of one entry (`get`, `contains`): expiry and refresh apply to that entry only.
    #[inline]
    fn lookup<Q, R>(
        &mut self,
        key: KeyId,
        now: Timestamp,
        map_key: &Q,
        f: impl FnOnce(Option<&V>) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(map) = self.rows.get_mut(row(key)).and_then(|r| r.as_deref_mut()) else {
            return f(None);
        };
        let Some(pos) = map.find(&self.hasher, map_key) else {
            return f(None);
        };
        if let (Some(ttl), Some(stamp)) = (&self.ttl, map.stamps.get_mut(pos)) {
            if ttl.expired(*stamp, now) {
                let return_expired = ttl.return_expired;
                let removed = map.swap_remove(&self.hasher, pos);
                self.release_if_empty(key);
                return match removed {
                    Some((_, value)) if return_expired => f(Some(&value)),
                    _ => f(None),
                };
            }
            if ttl.refresh_on_read {
                *stamp = now;
            }
        }
        f(map.entries.get(pos).map(|e| &e.1))
    }

    /// A read of the whole row (`entries`, `keys`, `values`, `len`, `is_empty`): every entry is
    /// read, so expiry and refresh apply to all of them.
    #[inline]
    fn read<R>(&mut self, key: KeyId, now: Timestamp, f: impl FnOnce(&[(K, V)]) -> R) -> R {
        let Some(map) = self.rows.get_mut(row(key)).and_then(|r| r.as_deref_mut()) else {
            return f(&[]);
        };
        let Some(ttl) = &self.ttl else {
            return f(&map.entries);
        };
        let (result, removed) = read_with_ttl(&mut map.entries, &mut map.stamps, ttl, now, f);
        if removed > 0 {
            map.reindex(&self.hasher);
            self.release_if_empty(key);
        }
        result
    }

    #[inline]
    fn put_all(&mut self, key: KeyId, now: Timestamp, entries: impl IntoIterator<Item = (K, V)>) {
        let stamp = self.ttl.map(|_| now);
        let mut entries = entries.into_iter();
        // Create the row only if there is something to put.
        let Some((k, v)) = entries.next() else {
            return;
        };
        let Some((map, hasher)) = self.row_for_write(key) else {
            return;
        };
        map.insert(hasher, k, v, stamp);
        for (k, v) in entries {
            map.insert(hasher, k, v, stamp);
        }
    }

    #[inline]
    fn put(&mut self, key: KeyId, now: Timestamp, map_key: K, value: V) {
        let stamp = self.ttl.map(|_| now);
        if let Some((map, hasher)) = self.row_for_write(key) {
            map.insert(hasher, map_key, value, stamp);
        }
    }

    #[inline]
    fn remove<Q>(&mut self, key: KeyId, map_key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(map) = self.rows.get_mut(row(key)).and_then(|r| r.as_deref_mut()) else {
            return;
        };
        if let Some(pos) = map.find(&self.hasher, map_key) {
            map.swap_remove(&self.hasher, pos);
            // A3.4: removing the last entry clears the state.
            self.release_if_empty(key);
        }
    }

    #[inline]
    fn clear(&mut self, key: KeyId) {
        if let Some(slot) = self.rows.get_mut(row(key)) {
            if slot.take().is_some() {
                self.live -= 1;
                count_emptied(1);
            }
        }
    }
}

impl<K: Eq + Hash + StateValue, V: StateValue> ErasedColumn for MapColumn<K, V> {
    fn entries(&self) -> usize {
        self.live
    }

    fn has_row(&self, key: KeyId) -> bool {
        self.rows.get(row(key)).is_some_and(Option::is_some)
    }

    fn clear_row(&mut self, key: KeyId) {
        self.clear(key);
    }

    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn sweeps(&self) -> bool {
        self.ttl.is_some_and(|t| t.background)
    }

    fn sweep(&mut self, now: Timestamp, start: usize, end: usize) -> usize {
        let Some(ttl) = self.ttl else {
            return 0;
        };
        let end = end.min(self.rows.len());
        let start = start.min(end);
        let mut emptied = 0;
        for slot in self.rows.slice_mut(start, end) {
            let Some(map) = slot.as_deref_mut() else {
                continue;
            };
            if purge_expired(&mut map.entries, &mut map.stamps, &ttl, now) > 0 {
                if map.entries.is_empty() {
                    *slot = None;
                    emptied += 1;
                } else {
                    map.reindex(&self.hasher);
                }
            }
        }
        self.live -= emptied;
        count_emptied(emptied);
        emptied
    }

    fn row_regions(&self, out: &mut Vec<crate::prefetch::RowRegion>) {
        out.push(crate::prefetch::RowRegion::of(&self.rows));
    }

    fn freeze(&mut self) -> Box<dyn FrozenColumn> {
        Box::new(FrozenMap { rows: self.rows.freeze(), ttl: self.ttl.is_some() })
    }

    fn decode_row(&mut self, key: KeyId, bytes: &[u8]) -> Result<(), CodecError> {
        let (entries, stamps): (Vec<(K, V)>, Option<Vec<Timestamp>>) = decode(bytes)?;
        if stamps.is_some() != self.ttl.is_some() {
            return Err(ttl_mismatch(self.ttl.is_some()));
        }
        if stamps.as_ref().is_some_and(|s| s.len() != entries.len()) {
            return Err(CodecError::new(
                "a map row has another number of TTL timestamps than entries",
            ));
        }
        self.clear(key);
        let n = entries.len();
        let mut stamps = stamps.map(Vec::into_iter);
        for (k, v) in entries {
            let stamp = stamps.as_mut().and_then(Iterator::next);
            if let Some((map, hasher)) = self.row_for_write(key) {
                map.insert(hasher, k, v, stamp);
            }
        }
        let stored =
            self.rows.get(row(key)).and_then(|r| r.as_deref()).map_or(0, |m| m.entries.len());
        if stored != n {
            self.clear(key);
            return Err(CodecError::new("a map row holds the same map key twice"));
        }
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        let rows: usize = self.rows.iter().flatten().map(|r| r.memory_bytes()).sum();
        self.rows.capacity() * mem::size_of::<Option<Box<MapRow<K, V>>>>() + rows
    }
}

/// A map per key (Flink's `MapState`). An absent map reads as empty: `get` gives `None`,
/// `contains` false, `is_empty` true, `entries`/`keys`/`values` empty vectors (A3.4). Removing the
/// last entry clears the key's state.
///
/// Binding, `Default` (unbound), `Clone` (shared) and scoping work as for
/// [`ValueState`](super::ValueState). With TTL every entry expires on its own (A3.10.5); `get` and
/// `contains` read one entry, `entries`, `keys`, `values`, `len` and `is_empty` read all of them
/// (so, for example, with `OnReadAndWrite` they refresh every entry).
///
/// **Iteration order** (`entries`, `keys`, `values`) is deterministic: it depends only on the
/// sequence of operations, never on hashing. It is insertion order as long as nothing was removed;
/// [`remove`](Self::remove) moves the most recently inserted entry into the removed one's place.
/// Flink leaves the order unspecified, so code ported from Flink must not rely on it anyway.
pub struct MapState<K, V> {
    column: Option<Rc<Column<MapColumn<K, V>>>>,
}

impl<K, V> MapState<K, V> {
    pub(super) fn bound(column: Rc<Column<MapColumn<K, V>>>) -> Self {
        MapState { column: Some(column) }
    }

    /// The state's name, or `None` for an unbound handle.
    pub fn name(&self) -> Option<&str> {
        self.column.as_deref().map(|c| &*c.name)
    }

    /// Whether the handle was bound by registering the state.
    pub fn is_bound(&self) -> bool {
        self.column.is_some()
    }
}

impl<K: Eq + Hash, V> MapState<K, V> {
    /// Whether the current key's map has an entry for `key` (a read of that entry).
    #[inline]
    pub fn contains<Q>(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        key: &Q,
    ) -> Result<bool, StateError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.lookup(s.key(), s.now(), key, |v| v.is_some()))
    }

    /// Reads the value for `key` without cloning it (`None` when absent).
    #[inline]
    pub fn with_value<Q, R>(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        key: &Q,
        f: impl FnOnce(Option<&V>) -> R,
    ) -> Result<R, StateError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.lookup(s.key(), s.now(), key, f))
    }

    /// Inserts or replaces the entry for `key` in the current key's map (with TTL, a write of that
    /// entry).
    #[inline]
    pub fn put(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        key: K,
        value: V,
    ) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.put(s.key(), s.now(), key, value);
        Ok(())
    }

    /// Puts every entry of `entries`. The iterator runs while the state is borrowed: if it touches
    /// this state itself, that access fails with [`StateError::Reentrant`].
    #[inline]
    pub fn put_all(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.put_all(s.key(), s.now(), entries);
        Ok(())
    }

    /// Removes the entry for `key`, if any; removing the last entry clears the key's map (A3.4).
    #[inline]
    pub fn remove<Q>(&self, scope: &(impl KeyedScope + ?Sized), key: &Q) -> Result<(), StateError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.remove(s.key(), key);
        Ok(())
    }

    /// Whether the current key's map has no entry (true when absent, A3.4).
    #[inline]
    pub fn is_empty(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<bool, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.read(s.key(), s.now(), <[(K, V)]>::is_empty))
    }

    /// The number of entries in the current key's map.
    #[inline]
    pub fn len(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<usize, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.read(s.key(), s.now(), <[(K, V)]>::len))
    }

    /// Calls `f` on every entry of the current key's map, in iteration order, without cloning.
    /// Accessing the same state from inside `f` fails with [`StateError::Reentrant`].
    #[inline]
    pub fn for_each(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        mut f: impl FnMut(&K, &V),
    ) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.read(s.key(), s.now(), |entries| entries.iter().for_each(|(k, v)| f(k, v)));
        Ok(())
    }

    /// Removes the current key's map; other keys keep theirs (A3.7).
    #[inline]
    pub fn clear(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.clear(s.key());
        Ok(())
    }
}

impl<K: Eq + Hash, V: Clone> MapState<K, V> {
    /// A copy of the value for `key`, or `None` when absent (A3.4).
    #[inline]
    pub fn get<Q>(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        key: &Q,
    ) -> Result<Option<V>, StateError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with_value(scope, key, |v| v.cloned())
    }

    /// Copies of the current key's values, in iteration order (empty when absent).
    #[inline]
    pub fn values(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Vec<V>, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.read(s.key(), s.now(), |e| e.iter().map(|(_, v)| v.clone()).collect()))
    }
}

impl<K: Eq + Hash + Clone, V> MapState<K, V> {
    /// Copies of the current key's map keys, in iteration order (empty when absent).
    #[inline]
    pub fn keys(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Vec<K>, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.read(s.key(), s.now(), |e| e.iter().map(|(k, _)| k.clone()).collect()))
    }
}

impl<K: Eq + Hash + Clone, V: Clone> MapState<K, V> {
    /// Copies of the current key's entries, in iteration order (empty when absent).
    #[inline]
    pub fn entries(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Vec<(K, V)>, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.read(s.key(), s.now(), <[(K, V)]>::to_vec))
    }
}

impl<K, V> Default for MapState<K, V> {
    /// An unbound handle.
    fn default() -> Self {
        MapState { column: None }
    }
}

impl<K, V> Clone for MapState<K, V> {
    /// Another handle to the same state.
    fn clone(&self) -> Self {
        MapState { column: self.column.clone() }
    }
}

impl<K, V> fmt::Debug for MapState<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_handle(f, KIND, &self.column)
    }
}

/// A map column frozen at a checkpoint barrier: a copy-on-write view of its rows (a page the
/// shard writes after the freeze is copied then, once; the others are read in place).
struct FrozenMap<K, V> {
    rows: FrozenVec<Option<Box<MapRow<K, V>>>>,
    ttl: bool,
}

impl<K: StateValue, V: StateValue> FrozenColumn for FrozenMap<K, V> {
    fn has_row(&self, key: KeyId) -> bool {
        self.rows.get(row(key)).is_some_and(Option::is_some)
    }

    fn encode_row(&self, key: KeyId, out: &mut Vec<u8>) -> Result<bool, CodecError> {
        let Some(map) = self.rows.get(row(key)).and_then(Option::as_deref) else {
            return Ok(false);
        };
        encode(&(&map.entries, self.ttl.then_some(&map.stamps)), out)?;
        Ok(true)
    }
}
