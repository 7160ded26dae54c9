//! `ReducingState<T, F>` and `AggregatingState<A>`: one accumulator per key, folded by a user
//! function on every `add`.

use std::fmt;
use std::rc::Rc;

use super::codec::{CodecError, StateValue};
use super::column::{Cells, Column, ErasedColumn, FrozenColumn, Visible, debug_handle, open};
use super::descriptor::{AggregateFunction, ReduceFn, ReduceFunction};
use super::{KeyedScope, StateError};
use crate::key::KeyId;
use crate::time::Timestamp;

const REDUCING: &str = "ReducingState";
const AGGREGATING: &str = "AggregatingState";

/// Delegates [`ErasedColumn`] to the `cells` field.
macro_rules! erased_via_cells {
    () => {
        fn entries(&self) -> usize {
            self.cells.entries()
        }
        fn has_row(&self, key: KeyId) -> bool {
            ErasedColumn::has_row(&self.cells, key)
        }
        fn clear_row(&mut self, key: KeyId) {
            self.cells.clear_row(key);
        }
        fn rows(&self) -> usize {
            self.cells.rows()
        }
        fn sweeps(&self) -> bool {
            self.cells.sweeps()
        }
        fn sweep(&mut self, now: Timestamp, start: usize, end: usize) -> usize {
            self.cells.sweep(now, start, end)
        }
        fn memory_bytes(&self) -> usize {
            self.cells.memory_bytes()
        }
        fn row_regions(&self, out: &mut Vec<crate::prefetch::RowRegion>) {
            self.cells.row_regions(out);
        }
        fn freeze(&mut self) -> Box<dyn FrozenColumn> {
            self.cells.freeze()
        }
        fn decode_row(&mut self, key: KeyId, bytes: &[u8]) -> Result<(), CodecError> {
            self.cells.decode_row(key, bytes)
        }
    };
}

/// The column of a reducing state: the reduced value per key, and the reduce function.
pub(super) struct ReducingColumn<T, F> {
    pub(super) cells: Cells<T>,
    pub(super) function: F,
}

impl<T: StateValue, F> ErasedColumn for ReducingColumn<T, F> {
    erased_via_cells!();
}

/// The column of an aggregating state: the accumulator per key, and the aggregate function.
pub(super) struct AggregatingColumn<A: AggregateFunction> {
    pub(super) cells: Cells<A::Acc>,
    pub(super) function: A,
}

impl<A: AggregateFunction> ErasedColumn for AggregatingColumn<A>
where
    A::Acc: StateValue,
{
    erased_via_cells!();
}

/// One value per key into which every [`add`](Self::add) folds its argument with a reduce
/// function (Flink's `ReducingState`): the first `add` stores its value, later ones store
/// `reduce(stored, value)`; [`get`](Self::get) is `None` when nothing was added (A3.5).
///
/// `F` is the function's type: by default a boxed closure ([`ReduceFn<T>`], one indirect call per
/// `add`), or any [`ReduceFunction<T>`] type through
/// [`ReducingStateDescriptor::from_reduce_function`](super::ReducingStateDescriptor::from_reduce_function).
///
/// Flink's quirk that `add(null)` clears the state on the heap backend (A3.5) has no equivalent:
/// `add` takes a `T`. With TTL an expired value is dropped, and the next `add` starts afresh
/// (A3.10.6). Binding, `Default` (unbound), `Clone` (shared) and scoping work as for
/// [`ValueState`](super::ValueState).
pub struct ReducingState<T, F = ReduceFn<T>> {
    column: Option<Rc<Column<ReducingColumn<T, F>>>>,
}

impl<T, F> ReducingState<T, F> {
    pub(super) fn bound(column: Rc<Column<ReducingColumn<T, F>>>) -> Self {
        ReducingState { column: Some(column) }
    }

    /// The state's name, or `None` for an unbound handle.
    pub fn name(&self) -> Option<&str> {
        self.column.as_deref().map(|c| &*c.name)
    }

    /// Whether the handle was bound by registering the state.
    pub fn is_bound(&self) -> bool {
        self.column.is_some()
    }

    /// Removes the current key's value; other keys keep theirs (A3.7).
    #[inline]
    pub fn clear(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, REDUCING, scope)?;
        col.cells.clear(s.key());
        Ok(())
    }
}

impl<T, F: ReduceFunction<T>> ReducingState<T, F> {
    /// Folds `value` into the current key's value (stores it if there is none). The reduce
    /// function runs while the state is borrowed: touching this state from inside it fails with
    /// [`StateError::Reentrant`].
    #[inline]
    pub fn add(&self, scope: &(impl KeyedScope + ?Sized), value: T) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, REDUCING, scope)?;
        let ReducingColumn { cells, function } = &mut *col;
        let folded = match cells.take_unexpired(s.key(), s.now()) {
            Some(stored) => function.reduce(stored, value),
            None => value,
        };
        cells.put(s.key(), s.now(), folded);
        Ok(())
    }
}

impl<T: Clone, F> ReducingState<T, F> {
    /// A copy of the current key's value, or `None` when nothing was added (A3.5).
    #[inline]
    pub fn get(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Option<T>, StateError> {
        let (mut col, s) = open(&self.column, REDUCING, scope)?;
        Ok(match col.cells.visible(s.key(), s.now()) {
            Visible::Absent => None,
            Visible::Live(value) => Some(value.clone()),
            Visible::Expired(value) => Some(value),
        })
    }
}

impl<T, F> Default for ReducingState<T, F> {
    /// An unbound handle.
    fn default() -> Self {
        ReducingState { column: None }
    }
}

impl<T, F> Clone for ReducingState<T, F> {
    /// Another handle to the same state.
    fn clone(&self) -> Self {
        ReducingState { column: self.column.clone() }
    }
}

impl<T, F> fmt::Debug for ReducingState<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_handle(f, REDUCING, &self.column)
    }
}

/// One accumulator per key, built by an [`AggregateFunction`] (Flink's `AggregatingState`): the
/// first [`add`](Self::add) creates the accumulator, every `add` adds to it in place, and
/// [`get`](Self::get) returns `result(&accumulator)`, or `None` when nothing was added (A3.6).
///
/// With TTL an expired accumulator is dropped, and the next `add` starts a fresh one (A3.10.6).
/// Binding, `Default` (unbound), `Clone` (shared) and scoping work as for
/// [`ValueState`](super::ValueState).
pub struct AggregatingState<A: AggregateFunction> {
    column: Option<Rc<Column<AggregatingColumn<A>>>>,
}

impl<A: AggregateFunction> AggregatingState<A> {
    pub(super) fn bound(column: Rc<Column<AggregatingColumn<A>>>) -> Self {
        AggregatingState { column: Some(column) }
    }

    /// The state's name, or `None` for an unbound handle.
    pub fn name(&self) -> Option<&str> {
        self.column.as_deref().map(|c| &*c.name)
    }

    /// Whether the handle was bound by registering the state.
    pub fn is_bound(&self) -> bool {
        self.column.is_some()
    }

    /// Adds `value` to the current key's accumulator, creating it first if there is none. The
    /// aggregate function runs while the state is borrowed: touching this state from inside it
    /// fails with [`StateError::Reentrant`].
    #[inline]
    pub fn add(&self, scope: &(impl KeyedScope + ?Sized), value: A::In) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, AGGREGATING, scope)?;
        let AggregatingColumn { cells, function } = &mut *col;
        match cells.unexpired_for_write(s.key(), s.now()) {
            Some(acc) => function.add(value, acc),
            None => {
                let mut acc = function.create_accumulator();
                function.add(value, &mut acc);
                cells.put(s.key(), s.now(), acc);
            }
        }
        Ok(())
    }

    /// The result of the current key's accumulator, or `None` when nothing was added (A3.6).
    #[inline]
    pub fn get(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<Option<A::Out>, StateError> {
        let (mut col, s) = open(&self.column, AGGREGATING, scope)?;
        let AggregatingColumn { cells, function } = &mut *col;
        Ok(match cells.visible(s.key(), s.now()) {
            Visible::Absent => None,
            Visible::Live(acc) => Some(function.result(acc)),
            Visible::Expired(acc) => Some(function.result(&acc)),
        })
    }

    /// Removes the current key's accumulator; other keys keep theirs (A3.7).
    #[inline]
    pub fn clear(&self, scope: &(impl KeyedScope + ?Sized)) -> Result<(), StateError> {
        let (mut col, s) = open(&self.column, AGGREGATING, scope)?;
        col.cells.clear(s.key());
        Ok(())
    }
}

impl<A: AggregateFunction> Default for AggregatingState<A> {
    /// An unbound handle.
    fn default() -> Self {
        AggregatingState { column: None }
    }
}

impl<A: AggregateFunction> Clone for AggregatingState<A> {
    /// Another handle to the same state.
    fn clone(&self) -> Self {
        AggregatingState { column: self.column.clone() }
    }
}

impl<A: AggregateFunction> fmt::Debug for AggregatingState<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_handle(f, AGGREGATING, &self.column)
    }
}
