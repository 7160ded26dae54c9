//! Keyed state: typed columns indexed by key id, with Flink's state kinds and TTL
//! (docs/semantics.md A3, docs/architecture.md layer 6).
//!
//! Each keyed operator instance (one user function on one shard) owns a [`StateRegistry`]. Every
//! state the function registers in `open` becomes a **column**: a vector indexed by the dense
//! [`KeyId`] of the shard's keys, so that fixed-size state costs no allocation per record and an
//! access touches adjacent memory. The function keeps a typed handle ([`ValueState`],
//! [`ListState`], [`MapState`], [`ReducingState`], [`AggregatingState`]) and passes the keyed
//! context to every call; the context says which key's row to use and what time it is
//! ([`StateScope`]). Only keyed contexts implement [`KeyedScope`], so state cannot be touched where
//! there is no current key (A3.1, A9.10).
//!
//! ```
//! use pinwheel_engine::state::{StateRegistry, StateScope, ValueStateDescriptor};
//!
//! let mut registry = StateRegistry::new();
//! // In the function's `open`:
//! let count = registry.value_state(ValueStateDescriptor::<u64>::new("count"))?;
//! // Per record, the runtime builds the scope from the current key and processing time:
//! let key_7 = StateScope::new(7, 1_000, registry.id());
//! let n = count.value(&key_7)?.unwrap_or(0);
//! count.update(&key_7, n + 1)?;
//! assert_eq!(count.value(&key_7)?, Some(1));
//! assert_eq!(count.value(&StateScope::new(8, 1_000, registry.id()))?, None);
//! assert_eq!(registry.num_entries(), 1);
//! # Ok::<(), pinwheel_engine::state::StateError>(())
//! ```
//!
//! # Implementation
//!
//! ## Layout
//!
//! | state | row per key | absent row | with TTL |
//! |---|---|---|---|
//! | `ValueState<T>` | `Option<T>` | `None` | a parallel `Vec<Timestamp>`, one per row |
//! | `ListState<T>` | `Vec<T>` | empty, unallocated | a parallel `Vec<Vec<Timestamp>>`, one per element |
//! | `MapState<K, V>` | `Option<Box<row>>`: entries in a `Vec<(K, V)>` plus a hash index | `None` (8 bytes) | a parallel `Vec<Timestamp>` in the row, one per entry |
//! | `ReducingState<T, F>` | `Option<T>`, plus `F` once per column | `None` | as value |
//! | `AggregatingState<A>` | `Option<A::Acc>`, plus `A` once per column | `None` | as value |
//!
//! Timestamps are stored only when TTL is configured, so a state without TTL pays nothing for it.
//!
//! ## Sharing and checks
//!
//! A column lives in an `Rc` shared by the registry and the handles (a function instance and its
//! state never leave their shard thread, so handles are `!Send`). The rows sit behind a `RefCell`;
//! the registry sees every column through an internal object-safe trait (`dyn`, used only to
//! count, clear and sweep), while the handles are fully typed, so the per-record path has no
//! dynamic dispatch. An access checks, in this order, that the handle is bound
//! ([`StateError::Unbound`]), that the scope is of the handle's registry
//! ([`StateError::ForeignHandle`]), and that the column is not already in use
//! ([`StateError::Reentrant`], from `try_borrow_mut`): accessing state never panics. Reading a row
//! beyond a column's length is reading an absent row; writing grows the column.
//!
//! ## Invariants
//!
//! * A present map row is never empty (removing the last entry clears it, A3.4); a present list row
//!   is a non-empty vector.
//! * With TTL, every stored value, element or entry has exactly one timestamp: the processing time
//!   of its last write (or, with `OnReadAndWrite`, of its last successful read).
//! * Each column counts its non-absent rows, so [`StateRegistry::num_entries`] is O(states).
//!
//! ## Complexity
//!
//! Value, reducing and aggregating access: O(1). List `add`: amortized O(1); `get`: O(len).
//! Map point operations: expected O(1); `remove`: O(1) (the last entry moves into the gap).
//! With TTL, a read of a whole list or map is O(len). The background sweep
//! ([`StateRegistry::cleanup_expired`]) is O(budget) rows per call plus the rows' elements.
//!
//! ## Prior art
//!
//! Flink's heap keyed state backend (`HeapValueState`, `HeapListState`, `HeapMapState`, the
//! `Ttl*State` decorators and the incremental cleanup strategy), reorganized as columns in the
//! manner of an entity-component store; the map row follows `indexmap` (entries vector plus an
//! index table), which makes iteration deterministic.

mod codec;
mod column;
mod descriptor;
mod frozen;
mod list;
mod map;
mod reducing;
mod registry;
mod ttl;
mod value;

#[cfg(test)]
mod tests;

pub use codec::{CodecError, StateValue};
pub use column::rows_emptied;
pub use descriptor::{
    AggregateFunction, AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor,
    ReduceFn, ReduceFunction, ReducingStateDescriptor, ValueStateDescriptor,
};
pub use frozen::FrozenStates;
pub use list::ListState;
pub use map::MapState;
pub use reducing::{AggregatingState, ReducingState};
pub use registry::{RestoreTarget, StateInfo, StateKind, StateRegistry};
pub use ttl::{StateTtlConfig, StateVisibility, UpdateType};
pub use value::ValueState;

use crate::key::KeyId;
use crate::time::Timestamp;

/// Identifies one [`StateRegistry`] (one keyed operator instance), unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistryId(u64);

/// What a state access needs: the current key's row, the processing time (for TTL), and the
/// registry the handle must belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateScope {
    key: KeyId,
    now: Timestamp,
    registry: RegistryId,
}

impl StateScope {
    /// The scope of an access to `key`'s state at processing time `now`, in `registry`.
    #[inline]
    pub fn new(key: KeyId, now: Timestamp, registry: RegistryId) -> Self {
        StateScope { key, now, registry }
    }

    /// The current key's id.
    #[inline]
    pub fn key(&self) -> KeyId {
        self.key
    }

    /// The processing time that TTL is checked against.
    #[inline]
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The registry the accessed state must belong to.
    #[inline]
    pub fn registry(&self) -> RegistryId {
        self.registry
    }
}

/// A context with a current key, through which keyed state is accessed: implemented by the keyed
/// contexts (`Context`, `OnTimerContext`) of `pinwheel-operators`. Contexts without a current key
/// do not implement it, so keyed state cannot be used there.
pub trait KeyedScope {
    /// The current key, processing time and registry.
    fn state_scope(&self) -> StateScope;
}

impl KeyedScope for StateScope {
    #[inline]
    fn state_scope(&self) -> StateScope {
        *self
    }
}

/// Errors from keyed state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A handle was used before it was bound: a `Default` handle is only a placeholder.
    #[error(
        "this {kind} handle is not bound to any state: it was used before being registered. \
         Register the state in the function's `open` and keep the handle it returns, e.g. \
         `self.count = ctx.value_state(ValueStateDescriptor::new(\"count\"))?;`"
    )]
    Unbound {
        /// The handle's kind, e.g. `ValueState`.
        kind: &'static str,
    },
    /// A handle was used with the context of another operator (or another instance of the same
    /// operator) than the one it was registered in.
    #[error(
        "state \"{name}\" belongs to another operator instance: a state handle can only be used by \
         the function instance that registered it in its `open`, with that instance's context"
    )]
    ForeignHandle {
        /// The state's name.
        name: String,
    },
    /// The state was accessed while already in use: from inside the closure given to one of its
    /// own methods (`with_value`, `with_list`, a reduce or aggregate function, an `add_all`
    /// iterator), directly or through a clone of the handle.
    #[error(
        "state \"{name}\" was accessed while it was already being accessed (for example from \
         inside the closure passed to `with_value` or `with_list` on the same state); finish the \
         first access, then start the next"
    )]
    Reentrant {
        /// The state's name.
        name: String,
    },
    /// A state name was registered again with another kind, other types or another TTL.
    #[error(
        "state \"{name}\" is already registered as {existing}; it cannot be registered again as \
         {requested} (a name can be registered again only with the same kind, types and TTL)"
    )]
    IncompatibleDescriptor {
        /// The state's name.
        name: String,
        /// What was registered first, e.g. `ValueState<u64>`.
        existing: String,
        /// What the failing registration asked for.
        requested: String,
    },
    /// A state was registered with a TTL that is not positive.
    #[error("state \"{name}\": the TTL must be positive, but it is {ttl_ms} ms")]
    InvalidTtl {
        /// The state's name.
        name: String,
        /// The TTL given, in milliseconds.
        ttl_ms: i64,
    },
    /// Keyed state was declared by a function that has no key (Flink: "Keyed state can only be
    /// used on a 'keyed stream', i.e., after a 'keyBy()' operation"). Raised by the runtime.
    #[error(
        "keyed state can only be used in a keyed function, after `key_by`: this function has no \
         current key (Flink: \"Keyed state can only be used on a 'keyed stream', i.e., after a \
         'keyBy()' operation\")"
    )]
    NoKeyedContext,
    /// A snapshot's rows of a state could not be restored into (or encoded from) the registered
    /// state: another kind, a TTL on one side only, or bytes that do not decode as its type.
    #[error("state \"{name}\" cannot be restored: {reason}")]
    Restore {
        /// The state's name.
        name: String,
        /// What did not match.
        reason: String,
    },
}
