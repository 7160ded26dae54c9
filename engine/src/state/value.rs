//! `ValueState<T>`: one value per key.

use std::fmt;
use std::rc::Rc;

use super::codec::{CodecError, StateValue};
use super::column::{Cells, Column, ErasedColumn, FrozenColumn, Visible, debug_handle, open};
use super::{KeyedScope, StateError};
use crate::key::KeyId;
use crate::time::Timestamp;

const KIND: &str = "ValueState";

/// The column of a value state: `Option<T>` per key (plus a timestamp per key with TTL).
pub(super) struct ValueColumn<T>(pub(super) Cells<T>);

impl<T: StateValue> ErasedColumn for ValueColumn<T> {
    fn entries(&self) -> usize {
        self.0.entries()
    }
    fn has_row(&self, key: KeyId) -> bool {
        ErasedColumn::has_row(&self.0, key)
    }
    fn clear_row(&mut self, key: KeyId) {
        self.0.clear_row(key);
    }
    fn rows(&self) -> usize {
        self.0.rows()
    }
    fn sweeps(&self) -> bool {
        self.0.sweeps()
    }
    fn sweep(&mut self, now: Timestamp, start: usize, end: usize) -> usize {
        self.0.sweep(now, start, end)
    }
    fn memory_bytes(&self) -> usize {
        self.0.memory_bytes()
    }
    fn row_regions(&self, out: &mut Vec<crate::prefetch::RowRegion>) {
        self.0.row_regions(out);
    }
    fn freeze(&mut self) -> Box<dyn FrozenColumn> {
        self.0.freeze()
    }
    fn decode_row(&mut self, key: KeyId, bytes: &[u8]) -> Result<(), CodecError> {
        self.0.decode_row(key, bytes)
    }
}

/// One value per key (Flink's `ValueState`): absent until written, absent again after
/// [`clear`](Self::clear) or `set(None)` (docs/semantics.md A3.2).
///
/// Get a bound handle from [`StateRegistry::value_state`](super::StateRegistry::value_state) (in a
/// process function: `ctx.value_state(..)` in `open`). `Default` makes an **unbound** placeholder,
/// so that a function struct can `#[derive(Default)]`; using it fails with
/// [`StateError::Unbound`]. Clones share the same state.
///
/// Every method takes the keyed context (anything [`KeyedScope`]) and works on the current key's
/// row only (A3.1, A3.7). Values are owned: [`value`](Self::value) returns a clone, so changing it
/// does not change the state until [`update`](Self::update) (A3.8); [`with_value`](Self::with_value)
/// reads without cloning.
///
/// Handles are `!Send`: a function instance lives on one shard.
pub struct ValueState<T> {
    column: Option<Rc<Column<ValueColumn<T>>>>,
}

impl<T> ValueState<T> {
    pub(super) fn bound(column: Rc<Column<ValueColumn<T>>>) -> Self {
        ValueState { column: Some(column) }
    }

    /// The state's name, or `None` for an unbound handle.
    pub fn name(&self) -> Option<&str> {
        self.column.as_deref().map(|c| &*c.name)
    }

    /// Whether the handle was bound by registering the state.
    pub fn is_bound(&self) -> bool {
        self.column.is_some()
    }

    /// Reads the current key's value without cloning it: `f` gets `None` when it is absent (or
    /// expired). Accessing the same state from inside `f` fails with [`StateError::Reentrant`].
    #[inline]
    pub fn with_value<R>(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        f: impl FnOnce(Option<&T>) -> R,
    ) -> Result<R, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(match col.0.visible(s.key(), s.now()) {
            Visible::Absent => f(None),
            Visible::Live(value) => f(Some(value)),
            Visible::Expired(value) => f(Some(&value)),
        })
    }

    /// Sets the current key's value (a write: with TTL its timestamp becomes `now`).
    #[inline]
    pub fn update(&self, scope: &(impl KeyedScope + ?Sized), value: T) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.0.put(s.key(), s.now(), value);
        Ok(())
    }

    /// Sets the current key's value, or clears it with `None` (Flink's `update(null)`, A3.2).
    #[inline]
    pub fn set(
        &self,
        scope: &(impl KeyedScope + ?Sized),
        value: Option<T>,
    ) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.0.set(s.key(), s.now(), value);
        Ok(())
    }

    /// Removes the current key's value; other keys keep theirs (A3.7).
    #[inline]
    pub fn clear(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        col.0.clear(s.key());
        Ok(())
    }
}

impl<T: Clone> ValueState<T> {
    /// The current key's value (a clone), or `None` when it is absent or expired (A3.2, A3.10).
    #[inline]
    pub fn value(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Option<T>, StateError> {
        let (mut col, s) = open(&self.column, KIND, scope)?;
        Ok(match col.0.visible(s.key(), s.now()) {
            Visible::Absent => None,
            Visible::Live(value) => Some(value.clone()),
            Visible::Expired(value) => Some(value),
        })
    }
}

impl<T> Default for ValueState<T> {
    /// An unbound handle.
    fn default() -> Self {
        ValueState { column: None }
    }
}

impl<T> Clone for ValueState<T> {
    /// Another handle to the same state.
    fn clone(&self) -> Self {
        ValueState { column: self.column.clone() }
    }
}

impl<T> fmt::Debug for ValueState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_handle(f, KIND, &self.column)
    }
}
