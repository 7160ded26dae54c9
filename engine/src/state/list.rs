//! `ListState<T>`: a list of values per key.

use std::fmt;
use std::mem;
use std::rc::Rc;

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

const KIND: &str = "ListState";

/// The column of a list state: a `Vec<T>` per key (empty = absent, no allocation), and with TTL a
/// parallel `Vec<Timestamp>` per key, one timestamp per element (A3.10.5).
///
/// Invariants: `stamps` is empty without TTL, else `stamps.len() == rows.len()` and every
/// `stamps[i].len() == rows[i].len()`; `live` is the number of non-empty rows.
pub(super) struct ListColumn<T> {
    /// Copy-on-write, so that a checkpoint freezes them in O(pages) ([`CowVec`]).
    rows: CowVec<Vec<T>>,
    stamps: CowVec<Vec<Timestamp>>,
    ttl: Option<Ttl>,
    live: usize,
}

impl<T> ListColumn<T> {
    pub(super) fn new(ttl: Option<Ttl>) -> Self {
        ListColumn { rows: CowVec::new(), stamps: CowVec::new(), ttl, live: 0 }
    }

    #[inline]
    fn grow(&mut self, i: usize) {
        if i >= self.rows.len() {
            let len = i.saturating_add(1);
            self.rows.grow_with(len, Vec::new);
            if self.ttl.is_some() {
                self.stamps.grow_with(len, Vec::new);
            }
        }
    }

    /// The read path: `f` sees the row (after or before removing expired elements, per the
    /// visibility), then an emptied row is released.
    #[inline]
    fn read<R>(&mut self, key: KeyId, now: Timestamp, f: impl FnOnce(&[T]) -> R) -> R {
        let i = row(key);
        let Some(items) = self.rows.get_mut(i) else {
            return f(&[]);
        };
        let (Some(ttl), Some(stamps)) = (&self.ttl, self.stamps.get_mut(i)) else {
            return f(items);
        };
        if items.is_empty() {
            return f(&[]);
        }
        let (result, _) = read_with_ttl(items, stamps, ttl, now, f);
        if items.is_empty() {
            *items = Vec::new();
            *stamps = Vec::new();
            self.live -= 1;
            count_emptied(1);
        }
        result
    }

    #[inline]
    fn add_all(&mut self, key: KeyId, now: Timestamp, values: impl IntoIterator<Item = T>) {
        let i = row(key);
        self.grow(i);
        let Some(items) = self.rows.get_mut(i) else {
            return;
        };
        let before = items.len();
        items.extend(values);
        let added = items.len() - before;
        if before == 0 && added > 0 {
            self.live += 1;
        }
        if let Some(stamps) = self.stamps.get_mut(i) {
            stamps.resize(items.len(), now);
        }
    }

    #[inline]
    fn add(&mut self, key: KeyId, now: Timestamp, value: T) {
        let i = row(key);
        self.grow(i);
        let Some(items) = self.rows.get_mut(i) else {
            return;
        };
        if items.is_empty() {
            self.live += 1;
        }
        items.push(value);
        if let Some(stamps) = self.stamps.get_mut(i) {
            stamps.push(now);
        }
    }

    #[inline]
    fn replace(&mut self, key: KeyId, now: Timestamp, values: Vec<T>) {
        if values.is_empty() {
            self.clear(key);
            return;
        }
        let i = row(key);
        self.grow(i);
        let Some(items) = self.rows.get_mut(i) else {
            return;
        };
        if items.is_empty() {
            self.live += 1;
        }
        *items = values;
        if let Some(stamps) = self.stamps.get_mut(i) {
            stamps.clear();
            stamps.resize(items.len(), now);
        }
    }

    #[inline]
    fn clear(&mut self, key: KeyId) {
        let i = row(key);
        if let Some(items) = self.rows.get_mut(i) {
            if !items.is_empty() {
                self.live -= 1;
                count_emptied(1);
            }
            // Release the memory: clearing is how state is given back.
            *items = Vec::new();
            if let Some(stamps) = self.stamps.get_mut(i) {
                *stamps = Vec::new();
            }
        }
    }
}

impl<T: StateValue> ErasedColumn for ListColumn<T> {
    fn entries(&self) -> usize {
        self.live
    }

    fn has_row(&self, key: KeyId) -> bool {
        self.rows.get(row(key)).is_some_and(|r| !r.is_empty())
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
        let stamps = self.stamps.slice_mut(start, end);
        for (items, stamps) in self.rows.slice_mut(start, end).iter_mut().zip(stamps) {
            if !items.is_empty() && purge_expired(items, stamps, &ttl, now) > 0 && items.is_empty()
            {
                *items = Vec::new();
                *stamps = Vec::new();
                emptied += 1;
            }
        }
        self.live -= emptied;
        count_emptied(emptied);
        emptied
    }

    fn row_regions(&self, out: &mut Vec<crate::prefetch::RowRegion>) {
        out.push(crate::prefetch::RowRegion::of(&self.rows));
        if !self.stamps.is_empty() {
            out.push(crate::prefetch::RowRegion::of(&self.stamps));
        }
    }

    fn freeze(&mut self) -> Box<dyn FrozenColumn> {
        Box::new(FrozenList { rows: self.rows.freeze(), stamps: self.stamps.freeze() })
    }

    fn decode_row(&mut self, key: KeyId, bytes: &[u8]) -> Result<(), CodecError> {
        let (items, stamps): (Vec<T>, Option<Vec<Timestamp>>) = decode(bytes)?;
        if stamps.is_some() != self.ttl.is_some() {
            return Err(ttl_mismatch(self.ttl.is_some()));
        }
        if stamps.as_ref().is_some_and(|s| s.len() != items.len()) {
            return Err(CodecError::new(
                "a list row has another number of TTL timestamps than items",
            ));
        }
        self.replace(key, 0, items);
        if let (Some(stamps), Some(slot)) = (stamps, self.stamps.get_mut(row(key))) {
            *slot = stamps;
        }
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        let items: usize = self.rows.iter().map(|r| r.capacity() * mem::size_of::<T>()).sum();
        let stamps: usize =
            self.stamps.iter().map(|s| s.capacity() * mem::size_of::<Timestamp>()).sum();
        self.rows.capacity() * mem::size_of::<Vec<T>>()
            + self.stamps.capacity() * mem::size_of::<Vec<Timestamp>>()
            + items
            + stamps
    }
}

/// A list of values per key (Flink's `ListState`). Reading an absent list gives an empty one,
/// never an error (A3.3), and [`update`](Self::update) with an empty vector clears it.
///
/// Binding, `Default` (unbound), `Clone` (shared) and scoping work as for
/// [`ValueState`](super::ValueState). With TTL every element expires on its own (A3.10.5): an
/// [`add`](Self::add) stamps only the element it appends.
pub struct ListState<T> {
    column: Option<Rc<Column<ListColumn<T>>>>,
}

impl<T> ListState<T> {
    pub(super) fn bound(column: Rc<Column<ListColumn<T>>>) -> Self {
        ListState { column: Some(column) }
    }

    /// The state's name, or `None` for an unbound handle.
    pub fn name(&self) -> Option<&str> {
        self.column.as_deref().map(|c| &*c.name)
    }

    /// Whether the handle was bound by registering the state.
    pub fn is_bound(&self) -> bool {
        self.column.is_some()
    }

    /// Reads the current key's list without cloning it (an empty slice when absent). Accessing the
    /// same state from inside `f` fails with [`StateError::Reentrant`].
    #[inline]
    pub fn with_list<R>(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        f: impl FnOnce(&[T]) -> R,
    ) -> Result<R, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(col.read(s.key(), s.now(), f))
    }

    /// Appends `value` to the current key's list.
    #[inline]
    pub fn add(&self, scope: &(impl KeyedScope + ?Sized), value: T) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.add(s.key(), s.now(), value);
        Ok(())
    }

    /// Appends every value of `values` to the current key's list. The iterator runs while the state
    /// is borrowed: if it touches this state itself, that access fails with
    /// [`StateError::Reentrant`].
    #[inline]
    pub fn add_all(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        values: impl IntoIterator<Item = T>,
    ) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.add_all(s.key(), s.now(), values);
        Ok(())
    }

    /// Replaces the current key's list with `values` (no copy); an empty vector clears it (A3.3).
    #[inline]
    pub fn update(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        values: Vec<T>,
    ) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.replace(s.key(), s.now(), values);
        Ok(())
    }

    /// Removes the current key's list; other keys keep theirs (A3.7).
    #[inline]
    pub fn clear(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.clear(s.key());
        Ok(())
    }
}

impl<T: Clone> ListState<T> {
    /// A copy of the current key's list: empty, never absent, when nothing is stored (A3.3).
    #[inline]
    pub fn get(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Vec<T>, StateError> {
        self.with_list(scope, <[T]>::to_vec)
    }
}

impl<T> Default for ListState<T> {
    /// An unbound handle.
    fn default() -> Self {
        ListState { column: None }
    }
}

impl<T> Clone for ListState<T> {
    /// Another handle to the same state.
    fn clone(&self) -> Self {
        ListState { column: self.column.clone() }
    }
}

impl<T> fmt::Debug for ListState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_handle(f, KIND, &self.column)
    }
}

/// A [`ListColumn`] frozen at a barrier: copy-on-write views of its rows and timestamps (a
/// page the shard writes after the freeze is copied then, once; the others are read in place).
struct FrozenList<T> {
    rows: FrozenVec<Vec<T>>,
    stamps: FrozenVec<Vec<Timestamp>>,
}

impl<T: StateValue> FrozenColumn for FrozenList<T> {
    fn has_row(&self, key: KeyId) -> bool {
        self.rows.get(row(key)).is_some_and(|r| !r.is_empty())
    }

    fn encode_row(&self, key: KeyId, out: &mut Vec<u8>) -> Result<bool, CodecError> {
        let i = row(key);
        let Some(items) = self.rows.get(i).filter(|r| !r.is_empty()) else {
            return Ok(false);
        };
        encode(&(items, self.stamps.get(i)), out)?;
        Ok(true)
    }
}
