//! The state registry of one keyed operator on one shard.

use std::any::{Any, TypeId, type_name};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::rc::Rc;
// Not `crate::sync`: this is a process-wide id counter, not a protocol to model-check, and loom's
// atomics cannot live in a `static`.
use std::sync::atomic::{AtomicU64, Ordering};

use super::codec::{CodecError, StateValue};
use super::column::{Cells, Column, ErasedColumn};
use super::descriptor::{
    AggregateFunction, AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor,
    ReduceFn, ReduceFunction, ReducingStateDescriptor, ValueStateDescriptor,
};
use super::frozen::FrozenStates;
use super::list::ListColumn;
use super::map::MapColumn;
use super::reducing::{AggregatingColumn, ReducingColumn};
use super::ttl::{StateTtlConfig, Ttl};
use super::value::ValueColumn;
use super::{
    AggregatingState, ListState, MapState, ReducingState, RegistryId, StateError, ValueState,
};
use crate::key::KeyId;
use crate::prefetch::RowRegion;
use crate::time::Timestamp;

use serde::{Deserialize, Serialize};

static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(0);

impl RegistryId {
    fn next() -> RegistryId {
        RegistryId(NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// One registered state: its column, seen both type-erased (for the registry's own work) and as
/// `dyn Any` (to hand out typed handles when the same name is registered again).
struct Registered {
    name: String,
    kind: StateKind,
    /// What was registered, for error messages: `ValueState<u64>`, with its TTL if any.
    description: String,
    /// The enabled TTL, if any (part of the state's identity: registering the same name with another
    /// TTL is an error).
    ttl: Option<StateTtlConfig>,
    column: Rc<Column<dyn ErasedColumn>>,
    typed: Rc<dyn Any>,
}

/// The keyed state of one keyed operator instance (one user function on one shard): one typed
/// column per registered state, indexed by [`KeyId`].
///
/// The runtime owns the registry; the user's function registers its states in `open` (through
/// the open context, which calls [`value_state`](Self::value_state) and friends) and keeps the
/// returned handles. The runtime then counts, clears and sweeps through the registry, and builds
/// the [`StateScope`](super::StateScope) of every access from [`id`](Self::id), the current key
/// and the current processing time.
///
/// Registering a name again with the same kind, types and TTL returns a handle to the same state;
/// anything else fails with [`StateError::IncompatibleDescriptor`]. For a reducing or aggregating
/// state registered again, the first registration's function is kept.
pub struct StateRegistry {
    id: RegistryId,
    states: Vec<Registered>,
    /// Where the columns' rows were at the last [`refresh_prefetch`](Self::refresh_prefetch).
    regions: Vec<RowRegion>,
    /// Where the background TTL sweep resumes: index into `states`, then row.
    sweep_state: usize,
    sweep_row: usize,
    /// Rows restored from a snapshot for states not registered (yet): decoded when the state is
    /// registered, kept as they are in the next snapshot otherwise (never silently dropped).
    restored: Vec<Restored>,
}

/// What a snapshot says of one state: enough to check a restore against the registration.
///
/// The value types are not recorded (Rust's type names are not stable across compiler
/// versions): a row that does not decode as the registered type is a restore error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StateInfo {
    /// The state's name.
    pub name: String,
    /// Its kind.
    pub kind: StateKind,
    /// Whether it has a TTL (its rows then carry timestamps).
    pub ttl: bool,
}

/// The kinds of keyed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StateKind {
    /// [`ValueState`].
    Value,
    /// [`ListState`].
    List,
    /// [`MapState`].
    Map,
    /// [`ReducingState`].
    Reducing,
    /// [`AggregatingState`].
    Aggregating,
}

/// Where a restored state's rows go: [`StateRegistry::restore_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The registered state at this place.
    Registered(usize),
    /// Kept for a state not registered (yet), at this place.
    Kept(usize),
}

/// Restored rows of a state that is not registered.
struct Restored {
    info: StateInfo,
    rows: HashMap<KeyId, Vec<u8>>,
}

impl StateRegistry {
    /// An empty registry with a fresh, process-unique [`RegistryId`].
    pub fn new() -> Self {
        StateRegistry {
            id: RegistryId::next(),
            states: Vec::new(),
            regions: Vec::new(),
            sweep_state: 0,
            sweep_row: 0,
            restored: Vec::new(),
        }
    }

    /// This registry's id: every [`StateScope`](super::StateScope) used with its handles must carry
    /// it.
    pub fn id(&self) -> RegistryId {
        self.id
    }

    /// Registers (or finds again) the state `name` whose column has type `C`.
    fn register<C: ErasedColumn + 'static>(
        &mut self,
        name: &str,
        kind: StateKind,
        requested: String,
        ttl: Option<&StateTtlConfig>,
        make: impl FnOnce(Option<Ttl>) -> C,
    ) -> Result<Rc<Column<C>>, StateError> {
        let ttl = ttl.filter(|t| t.is_enabled()).copied();
        if let Some(config) = &ttl {
            if config.ttl_ms() <= 0 {
                return Err(StateError::InvalidTtl {
                    name: name.to_string(),
                    ttl_ms: config.ttl_ms(),
                });
            }
        }
        let requested = describe(requested, ttl.as_ref());
        if let Some(existing) = self.states.iter().find(|s| s.name == name) {
            if existing.ttl == ttl {
                // The `TypeId` check: the downcast succeeds only for the very same column type,
                // which encodes the state's kind and all its types.
                if let Ok(column) = Rc::clone(&existing.typed).downcast::<Column<C>>() {
                    return Ok(column);
                }
            }
            return Err(StateError::IncompatibleDescriptor {
                name: name.to_string(),
                existing: existing.description.clone(),
                requested,
            });
        }
        let column = Rc::new(Column {
            name: name.into(),
            registry: self.id,
            data: RefCell::new(make(Ttl::from_config(ttl.as_ref()))),
        });
        if let Some(at) = self.restored.iter().position(|r| r.info.name == name) {
            let restored = self.restored.swap_remove(at);
            let registered = StateInfo { name: name.to_string(), kind, ttl: ttl.is_some() };
            let mut data = column.data.borrow_mut();
            let result = check_restore(&restored.info, &registered).and_then(|()| {
                restored.rows.iter().try_for_each(|(&key, bytes)| {
                    data.decode_row(key, bytes).map_err(|e| restore_error(name, key, e))
                })
            });
            if let Err(e) = result {
                // Nothing half-restored stays behind: the rows go back to waiting.
                drop(data);
                self.restored.push(restored);
                return Err(e);
            }
        }
        self.states.push(Registered {
            name: name.to_string(),
            kind,
            description: requested,
            ttl,
            column: column.clone(),
            typed: column.clone(),
        });
        Ok(column)
    }

    /// Registers a [`ValueState`] (Flink's `getState`).
    pub fn value_state<T: StateValue>(
        &mut self,
        descriptor: ValueStateDescriptor<T>,
    ) -> Result<ValueState<T>, StateError> {
        let requested = format!("ValueState<{}>", type_name::<T>());
        let column = self.register(
            &descriptor.name,
            StateKind::Value,
            requested,
            descriptor.ttl.as_ref(),
            |ttl| ValueColumn(Cells::new(ttl)),
        )?;
        Ok(ValueState::bound(column))
    }

    /// Registers a [`ListState`] (Flink's `getListState`).
    pub fn list_state<T: StateValue>(
        &mut self,
        descriptor: ListStateDescriptor<T>,
    ) -> Result<ListState<T>, StateError> {
        let requested = format!("ListState<{}>", type_name::<T>());
        let column = self.register(
            &descriptor.name,
            StateKind::List,
            requested,
            descriptor.ttl.as_ref(),
            ListColumn::new,
        )?;
        Ok(ListState::bound(column))
    }

    /// Registers a [`MapState`] (Flink's `getMapState`).
    pub fn map_state<K: Eq + Hash + StateValue, V: StateValue>(
        &mut self,
        descriptor: MapStateDescriptor<K, V>,
    ) -> Result<MapState<K, V>, StateError> {
        let requested = format!("MapState<{}, {}>", type_name::<K>(), type_name::<V>());
        let column = self.register(
            &descriptor.name,
            StateKind::Map,
            requested,
            descriptor.ttl.as_ref(),
            MapColumn::new,
        )?;
        Ok(MapState::bound(column))
    }

    /// Registers a [`ReducingState`] (Flink's `getReducingState`). With the default function type
    /// ([`ReduceFn`](super::ReduceFn)) registering the name again with another closure returns the
    /// same state, which keeps the first closure.
    pub fn reducing_state<T: StateValue, F: ReduceFunction<T> + 'static>(
        &mut self,
        descriptor: ReducingStateDescriptor<T, F>,
    ) -> Result<ReducingState<T, F>, StateError> {
        let requested = if TypeId::of::<F>() == TypeId::of::<ReduceFn<T>>() {
            format!("ReducingState<{}>", type_name::<T>())
        } else {
            format!("ReducingState<{}, {}>", type_name::<T>(), type_name::<F>())
        };
        let ReducingStateDescriptor { name, ttl, function, .. } = descriptor;
        let column = self.register(&name, StateKind::Reducing, requested, ttl.as_ref(), |ttl| {
            ReducingColumn { cells: Cells::new(ttl), function }
        })?;
        Ok(ReducingState::bound(column))
    }

    /// Registers an [`AggregatingState`] (Flink's `getAggregatingState`).
    pub fn aggregating_state<A: AggregateFunction + 'static>(
        &mut self,
        descriptor: AggregatingStateDescriptor<A>,
    ) -> Result<AggregatingState<A>, StateError>
    where
        A::Acc: StateValue,
    {
        let requested = format!("AggregatingState<{}>", type_name::<A>());
        let AggregatingStateDescriptor { name, ttl, function } = descriptor;
        let column =
            self.register(&name, StateKind::Aggregating, requested, ttl.as_ref(), |ttl| {
                AggregatingColumn { cells: Cells::new(ttl), function }
            })?;
        Ok(AggregatingState::bound(column))
    }

    /// The number of (state, key) pairs holding a value: Flink's test-harness
    /// `numKeyedStateEntries()`. A list or map counts once per key, whatever its length. Expired
    /// entries count until a read or the sweep removes them (A3.10.7). O(number of states).
    pub fn num_entries(&self) -> usize {
        self.states
            .iter()
            .filter_map(|s| s.column.data.try_borrow().ok())
            .map(|c| c.entries())
            .sum()
    }

    /// True if no state is registered and none waits for its registration: then no key has
    /// state.
    #[inline]
    pub fn is_stateless(&self) -> bool {
        self.states.is_empty() && self.restored.is_empty()
    }

    /// Whether any state holds a value for `key`.
    #[inline]
    pub fn has_state(&self, key: KeyId) -> bool {
        for state in &self.states {
            // A column in use (only from inside a state access) counts as holding state.
            match state.column.data.try_borrow() {
                Ok(column) if !column.has_row(key) => {}
                _ => return true,
            }
        }
        !self.restored.is_empty() && self.restored.iter().any(|r| r.rows.contains_key(&key))
    }

    /// Clears `key`'s row in every state.
    ///
    /// A column that is borrowed at that moment (only possible if this is called from inside a
    /// state access, which the runtime never does) is skipped.
    pub fn clear_key(&mut self, key: KeyId) {
        for state in &self.states {
            if let Ok(mut column) = state.column.data.try_borrow_mut() {
                column.clear_row(key);
            }
        }
    }

    /// The incremental background TTL cleanup (A3.10.7): visits at most `budget` rows of the
    /// states that have TTL with background cleanup, resuming where the previous call stopped and
    /// wrapping around, and removes what is expired at `now` (whatever the visibility). Returns the
    /// number of rows it emptied (by how much [`num_entries`](Self::num_entries) went down);
    /// expired list elements and map entries in rows that keep unexpired ones are removed too, but
    /// not counted.
    ///
    /// A call visits each row at most once, so a budget larger than the number of rows costs no
    /// more than a full pass. States without TTL are skipped at no cost to the budget.
    pub fn cleanup_expired(&mut self, now: Timestamp, budget: usize) -> usize {
        let n = self.states.len();
        if budget == 0 || n == 0 {
            return 0;
        }
        let (mut state, mut start) =
            if self.sweep_state < n { (self.sweep_state, self.sweep_row) } else { (0, 0) };
        let mut left = budget;
        let mut removed = 0;
        // One full cycle at most: the states after the cursor, then those before it, then the
        // cursor's state again, from row 0 up to where this call started in it.
        let first_start = start;
        for step in 0..=n {
            let wrapped_to_first = step == n;
            if let Ok(mut column) = self.states[state].column.data.try_borrow_mut() {
                if column.sweeps() {
                    let rows = column.rows();
                    let limit = if wrapped_to_first { first_start.min(rows) } else { rows };
                    if start < limit {
                        let end = limit.min(start.saturating_add(left));
                        removed += column.sweep(now, start, end);
                        left -= end - start;
                        start = end;
                        if left == 0 {
                            break;
                        }
                    }
                }
            }
            if wrapped_to_first {
                break;
            }
            state = (state + 1) % n;
            start = 0;
        }
        self.sweep_state = state;
        self.sweep_row = start;
        removed
    }

    /// Re-reads where every column's rows are, for [`prefetch_row`](Self::prefetch_row): once per
    /// batch of records (columns move when they grow). O(number of states).
    pub fn refresh_prefetch(&mut self) {
        self.regions.clear();
        for state in &self.states {
            if let Ok(column) = state.column.data.try_borrow() {
                column.row_regions(&mut self.regions);
            }
        }
    }

    /// Prefetches `key`'s row in every column (as of the last
    /// [`refresh_prefetch`](Self::refresh_prefetch); a stale region only wastes the hint).
    #[inline]
    pub fn prefetch_row(&self, key: KeyId) {
        for region in &self.regions {
            region.prefetch(key as usize);
        }
    }

    /// Every state's rows frozen for a checkpoint, encoded later off the shard
    /// ([`FrozenStates`]): the registered states in registration order, then those restored but
    /// not registered.
    ///
    /// # Errors
    ///
    /// [`StateError::Reentrant`] if a state is being accessed (only possible from inside a state
    /// callback).
    pub fn freeze(&self) -> Result<FrozenStates, StateError> {
        let mut registered = Vec::with_capacity(self.states.len());
        for state in &self.states {
            let Ok(mut column) = state.column.data.try_borrow_mut() else {
                return Err(StateError::Reentrant { name: state.name.clone() });
            };
            let info =
                StateInfo { name: state.name.clone(), kind: state.kind, ttl: state.ttl.is_some() };
            registered.push((info, column.freeze()));
        }
        let restored = self.restored.iter().map(|r| (r.info.clone(), r.rows.clone())).collect();
        Ok(FrozenStates::new(registered, restored))
    }

    /// Where the rows of the snapshot's state `info` go ([`restore_row`](Self::restore_row)):
    /// the registered state of that name (its kind and TTL must match), or, for a state not
    /// registered (yet), a place that keeps them for a later registration. Resolved once per
    /// snapshot state, not per row.
    ///
    /// # Errors
    ///
    /// [`StateError::Restore`] when the registered state does not match.
    pub fn restore_target(&mut self, info: &StateInfo) -> Result<RestoreTarget, StateError> {
        if let Some(i) = self.states.iter().position(|s| s.name == info.name) {
            let state = &self.states[i];
            let registered =
                StateInfo { name: state.name.clone(), kind: state.kind, ttl: state.ttl.is_some() };
            check_restore(info, &registered)?;
            return Ok(RestoreTarget::Registered(i));
        }
        match self.restored.iter().position(|r| r.info.name == info.name) {
            Some(i) => {
                check_restore(info, &self.restored[i].info)?;
                Ok(RestoreTarget::Kept(i))
            }
            None => {
                self.restored.push(Restored { info: info.clone(), rows: HashMap::new() });
                Ok(RestoreTarget::Kept(self.restored.len() - 1))
            }
        }
    }

    /// Restores `key`'s row, encoded in `bytes`, into `target`: decoded into the registered
    /// state, or kept as it is for a later registration.
    ///
    /// # Errors
    ///
    /// [`StateError::Restore`] when the row does not decode as the registered state's.
    pub fn restore_row(
        &mut self,
        target: RestoreTarget,
        key: KeyId,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        match target {
            RestoreTarget::Registered(i) => {
                let state = &self.states[i];
                let Ok(mut column) = state.column.data.try_borrow_mut() else {
                    return Err(StateError::Reentrant { name: state.name.clone() });
                };
                column.decode_row(key, bytes).map_err(|e| restore_error(&state.name, key, e))
            }
            RestoreTarget::Kept(i) => {
                self.restored[i].rows.insert(key, bytes.to_vec());
                Ok(())
            }
        }
    }

    /// After a restore: forgets the places of states not registered that received no row (a
    /// shard that owns none of their keys lists no such state in its snapshots).
    pub fn restore_done(&mut self) {
        self.restored.retain(|r| !r.rows.is_empty());
    }

    /// The registered states' names, in registration order.
    pub fn state_names(&self) -> Vec<String> {
        self.states.iter().map(|s| s.name.clone()).collect()
    }

    /// Approximate heap bytes held by the states: the columns' rows, timestamps, list and map
    /// storage (shallow: heap data owned by the stored values, such as a `String`'s bytes, is not
    /// counted). O(keys) for list and map states.
    pub fn memory_bytes(&self) -> usize {
        self.states
            .iter()
            .filter_map(|s| s.column.data.try_borrow().ok())
            .map(|c| c.memory_bytes())
            .sum()
    }
}

/// Checks that a snapshot's state can be restored into a registered one.
fn check_restore(snapshot: &StateInfo, registered: &StateInfo) -> Result<(), StateError> {
    if snapshot.kind == registered.kind && snapshot.ttl == registered.ttl {
        return Ok(());
    }
    let show =
        |i: &StateInfo| format!("{:?}State{}", i.kind, if i.ttl { " with a TTL" } else { "" });
    Err(StateError::Restore {
        name: registered.name.clone(),
        reason: format!(
            "the snapshot holds a {}, the function registers a {}",
            show(snapshot),
            show(registered)
        ),
    })
}

fn restore_error(name: &str, key: KeyId, e: CodecError) -> StateError {
    StateError::Restore { name: name.to_string(), reason: format!("the row of key id {key}: {e}") }
}

/// The description of a registration, for [`StateError::IncompatibleDescriptor`].
fn describe(kind_and_types: String, ttl: Option<&StateTtlConfig>) -> String {
    match ttl {
        None => kind_and_types,
        Some(t) => format!(
            "{kind_and_types} with a TTL of {} ms ({:?}, {:?}{})",
            t.ttl_ms(),
            t.refresh_policy(),
            t.visibility(),
            if t.cleanup_in_background() { "" } else { ", no background cleanup" }
        ),
    }
}

impl Default for StateRegistry {
    fn default() -> Self {
        StateRegistry::new()
    }
}

impl fmt::Debug for StateRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateRegistry")
            .field("id", &self.id)
            .field("states", &self.states.iter().map(|s| &s.description).collect::<Vec<_>>())
            .field("entries", &self.num_entries())
            .finish()
    }
}
