//! What every column shares: the shared cell a handle and the registry both point to, the checks
//! of an access, the type-erased view the registry works through, and the single-value rows of
//! value, reducing and aggregating state.

use std::cell::{RefCell, RefMut};
use std::mem;
use std::rc::Rc;

use super::codec::{CodecError, StateValue, decode, encode};
use super::ttl::Ttl;
use super::{KeyedScope, RegistryId, StateError, StateScope};
use crate::cow_vec::{CowVec, FrozenVec};
use crate::key::KeyId;
use crate::prefetch::RowRegion;
use crate::time::Timestamp;

thread_local! {
    /// State rows emptied on this thread (by a clear, a removal, an expiry), ever.
    static ROWS_EMPTIED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many state rows have been emptied on this thread so far: the keyed backend compares it
/// before and after a callback to learn, without asking every column, whether the callback may
/// have left its key without state (a key is removed once it has no state and no timers).
#[inline]
pub fn rows_emptied() -> u64 {
    ROWS_EMPTIED.with(std::cell::Cell::get)
}

/// Counts `n` rows emptied (every column calls it where its count of live rows goes down).
#[inline]
pub(super) fn emptied(n: usize) {
    ROWS_EMPTIED.with(|c| c.set(c.get().wrapping_add(n as u64)));
}

/// The row index of `key` in every column.
#[inline(always)]
pub(super) fn row(key: KeyId) -> usize {
    // Lossless: KeyId is u32 and the engine supports only targets whose usize is at least 32 bits.
    key as usize
}

/// A column as shared by the registry and the handles: an immutable header (read without
/// borrowing, so that errors can always name the state) and the rows behind a `RefCell`.
///
/// `C` is a concrete column type for a handle and `dyn ErasedColumn` for the registry; both
/// `Rc`s point to the same allocation.
pub(super) struct Column<C: ?Sized> {
    pub(super) name: Box<str>,
    pub(super) registry: RegistryId,
    pub(super) data: RefCell<C>,
}

/// Checks an access and borrows the column: the handle must be bound, belong to the scope's
/// registry, and the column must not be in use already (a reentrant access, for example from the
/// closure of `with_value`, is an error, never a `RefCell` panic).
#[inline]
pub(super) fn open<'a, C, S>(
    column: &'a Option<Rc<Column<C>>>,
    kind: &'static str,
    scope: &S,
) -> Result<(RefMut<'a, C>, StateScope), StateError>
where
    S: KeyedScope + ?Sized,
{
    let Some(column) = column.as_deref() else {
        return Err(StateError::Unbound { kind });
    };
    let scope = scope.state_scope();
    if scope.registry() != column.registry {
        return Err(StateError::ForeignHandle { name: column.name.to_string() });
    }
    match column.data.try_borrow_mut() {
        Ok(data) => Ok((data, scope)),
        Err(_) => Err(StateError::Reentrant { name: column.name.to_string() }),
    }
}

/// The handle's `Debug`: its kind and the state's name, or that it is unbound.
pub(super) fn debug_handle<C>(
    f: &mut std::fmt::Formatter<'_>,
    kind: &str,
    column: &Option<Rc<Column<C>>>,
) -> std::fmt::Result {
    match column {
        Some(column) => f.debug_tuple(kind).field(&column.name).finish(),
        None => write!(f, "{kind}(<unbound>)"),
    }
}

/// What the registry needs from any column, whatever its kind and types: counting, clearing a key,
/// the TTL sweep, memory. Called through `dyn` by the runtime (never per record).
pub(super) trait ErasedColumn {
    /// Rows holding a value (absent rows and empty lists/maps do not count).
    fn entries(&self) -> usize;
    /// Whether `key`'s row holds a value.
    fn has_row(&self, key: KeyId) -> bool;
    /// Clears `key`'s row.
    fn clear_row(&mut self, key: KeyId);
    /// The column's length in rows (the largest key id ever written, plus one).
    fn rows(&self) -> usize;
    /// Whether the background TTL sweep visits this column.
    fn sweeps(&self) -> bool;
    /// Removes what is expired at `now` in the rows `start..end`; returns how many rows it emptied.
    fn sweep(&mut self, now: Timestamp, start: usize, end: usize) -> usize;
    /// Approximate heap bytes held by the column (shallow: the heap data owned by the stored
    /// values themselves, such as a `String`'s bytes, is not counted).
    fn memory_bytes(&self) -> usize;
    /// Appends where the column's rows live (its row vector, and its timestamps with TTL), for
    /// the batch prefetch.
    fn row_regions(&self, out: &mut Vec<RowRegion>);
    /// The column's rows as they are now, for a checkpoint to encode off the shard: a
    /// copy-on-write freeze for single-value rows (`cow_vec.rs`), a copy of the rows for list
    /// and map state (their values are cloned; the column's function and indexes are not).
    fn freeze(&mut self) -> Box<dyn FrozenColumn>;
    /// Replaces `key`'s row with the one `bytes` encodes (a restore).
    fn decode_row(&mut self, key: KeyId, bytes: &[u8]) -> Result<(), CodecError>;
}

/// A column's rows as a snapshot encodes them: frozen at a checkpoint barrier
/// ([`ErasedColumn::freeze`]) and encoded on the checkpoint thread, so the shard pays only for
/// the freeze.
pub(super) trait FrozenColumn: Send {
    /// Whether `key`'s row holds a value.
    fn has_row(&self, key: KeyId) -> bool;
    /// Appends `key`'s row in the snapshot encoding (`state/codec.rs`), with its TTL timestamps;
    /// returns false, appending nothing, when the row is empty.
    fn encode_row(&self, key: KeyId, out: &mut Vec<u8>) -> Result<bool, CodecError>;
}

/// The error of a row whose TTL timestamps do not match its state's TTL setting.
pub(super) fn ttl_mismatch(has_ttl: bool) -> CodecError {
    CodecError::new(if has_ttl {
        "the row has no TTL timestamp but its state has a TTL"
    } else {
        "the row has TTL timestamps but its state has no TTL"
    })
}

/// What a read finds in a single-value row.
pub(super) enum Visible<'a, T> {
    /// Nothing, or an expired value under `NeverReturnExpired` (which the read removed).
    Absent,
    /// An unexpired value (refreshed if the TTL refreshes on reads).
    Live(&'a mut T),
    /// An expired value under `ReturnExpiredIfNotCleanedUp`: removed from the row and handed to
    /// this read, the only one that sees it.
    Expired(T),
}

/// Rows holding at most one value each, with a parallel timestamp per row when TTL is on: the
/// storage of value, reducing and aggregating state.
///
/// Invariants: `stamps` is empty when `ttl` is `None`, else `stamps.len() == rows.len()`;
/// `live` is the number of `Some` rows.
#[derive(Clone)]
pub(super) struct Cells<T> {
    rows: CowVec<Option<T>>,
    stamps: CowVec<Timestamp>,
    ttl: Option<Ttl>,
    live: usize,
}

impl<T> Cells<T> {
    pub(super) fn new(ttl: Option<Ttl>) -> Self {
        Cells { rows: CowVec::new(), stamps: CowVec::new(), ttl, live: 0 }
    }

    /// Grows the column so that row `i` exists.
    #[inline]
    fn grow(&mut self, i: usize) {
        if i >= self.rows.len() {
            let len = i.saturating_add(1);
            self.rows.grow_with(len, || None);
            if self.ttl.is_some() {
                self.stamps.grow_with(len, || 0);
            }
        }
    }

    /// The read path (A3.2, A3.10.4): absent, live (refreshed on read if so configured) or, under
    /// `ReturnExpiredIfNotCleanedUp`, the expired value taken out of the row.
    #[inline(always)]
    pub(super) fn visible(&mut self, key: KeyId, now: Timestamp) -> Visible<'_, T> {
        let i = row(key);
        // An absent row is found without a write access (which would copy a frozen page).
        let Some(slot) = self.rows.get_mut_if(i, Option::is_some) else {
            return Visible::Absent;
        };
        if let (Some(ttl), Some(stamp)) = (&self.ttl, self.stamps.get_mut(i)) {
            if ttl.expired(*stamp, now) {
                let expired = slot.take();
                self.live -= 1;
                emptied(1);
                return match expired {
                    Some(value) if ttl.return_expired => Visible::Expired(value),
                    _ => Visible::Absent,
                };
            }
            if ttl.refresh_on_read {
                *stamp = now;
            }
        }
        match slot {
            Some(value) => Visible::Live(value),
            None => Visible::Absent,
        }
    }

    /// Stores `value` (a write: the timestamp becomes `now`); `None` clears the row.
    #[inline]
    pub(super) fn set(&mut self, key: KeyId, now: Timestamp, value: Option<T>) {
        match value {
            Some(value) => self.put(key, now, value),
            None => self.clear(key),
        }
    }

    /// Stores `value` (a write: the timestamp becomes `now`).
    #[inline]
    pub(super) fn put(&mut self, key: KeyId, now: Timestamp, value: T) {
        let i = row(key);
        self.grow(i);
        if let Some(slot) = self.rows.get_mut(i) {
            if slot.is_none() {
                self.live += 1;
            }
            *slot = Some(value);
            if let Some(stamp) = self.stamps.get_mut(i) {
                *stamp = now;
            }
        }
    }

    /// Takes the unexpired value out of the row, leaving it empty; an expired value is dropped,
    /// whatever the visibility (A3.10.6: the next `add` starts fresh).
    #[inline]
    pub(super) fn take_unexpired(&mut self, key: KeyId, now: Timestamp) -> Option<T> {
        let i = row(key);
        let value = self.rows.get_mut_if(i, Option::is_some)?.take()?;
        self.live -= 1;
        emptied(1);
        match (&self.ttl, self.stamps.get(i)) {
            (Some(ttl), Some(&stamp)) if ttl.expired(stamp, now) => None,
            _ => Some(value),
        }
    }

    /// The unexpired value for an in-place write, with its timestamp refreshed to `now`; an expired
    /// value is dropped (A3.10.6) and `None` returned, as for an absent row.
    #[inline]
    pub(super) fn unexpired_for_write(&mut self, key: KeyId, now: Timestamp) -> Option<&mut T> {
        let i = row(key);
        let slot = self.rows.get_mut_if(i, Option::is_some)?;
        if let (Some(ttl), Some(stamp)) = (&self.ttl, self.stamps.get_mut(i)) {
            if ttl.expired(*stamp, now) {
                *slot = None;
                self.live -= 1;
                emptied(1);
                return None;
            }
            *stamp = now;
        }
        slot.as_mut()
    }

    /// Clears the row (nothing to do beyond the column's length).
    #[inline]
    pub(super) fn clear(&mut self, key: KeyId) {
        if let Some(slot) = self.rows.get_mut_if(row(key), Option::is_some) {
            if slot.take().is_some() {
                self.live -= 1;
                emptied(1);
            }
        }
    }
}

impl<T: StateValue> ErasedColumn for Cells<T> {
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
        let mut removed = 0;
        let stamps = self.stamps.get(start..).unwrap_or(&[]);
        for (slot, &stamp) in self.rows.slice_mut(start, end).iter_mut().zip(stamps) {
            if slot.is_some() && ttl.expired(stamp, now) {
                *slot = None;
                removed += 1;
            }
        }
        self.live -= removed;
        emptied(removed);
        removed
    }

    fn memory_bytes(&self) -> usize {
        self.rows.capacity() * mem::size_of::<Option<T>>()
            + self.stamps.capacity() * mem::size_of::<Timestamp>()
    }

    fn row_regions(&self, out: &mut Vec<RowRegion>) {
        out.push(RowRegion::of(&self.rows));
        if !self.stamps.is_empty() {
            out.push(RowRegion::of(&self.stamps));
        }
    }

    fn freeze(&mut self) -> Box<dyn FrozenColumn> {
        Box::new(FrozenCells { rows: self.rows.freeze(), stamps: self.stamps.freeze() })
    }

    fn decode_row(&mut self, key: KeyId, bytes: &[u8]) -> Result<(), CodecError> {
        let (stamp, value): (Option<Timestamp>, T) = decode(bytes)?;
        if stamp.is_some() != self.ttl.is_some() {
            return Err(ttl_mismatch(self.ttl.is_some()));
        }
        self.put(key, stamp.unwrap_or(0), value);
        Ok(())
    }
}

/// [`Cells`] frozen at a barrier: copy-on-write views of its rows and timestamps.
struct FrozenCells<T> {
    rows: FrozenVec<Option<T>>,
    stamps: FrozenVec<Timestamp>,
}

impl<T: StateValue> FrozenColumn for FrozenCells<T> {
    fn has_row(&self, key: KeyId) -> bool {
        self.rows.get(row(key)).is_some_and(Option::is_some)
    }

    fn encode_row(&self, key: KeyId, out: &mut Vec<u8>) -> Result<bool, CodecError> {
        let i = row(key);
        let Some(Some(value)) = self.rows.get(i) else {
            return Ok(false);
        };
        encode(&(self.stamps.get(i), value), out)?;
        Ok(true)
    }
}
