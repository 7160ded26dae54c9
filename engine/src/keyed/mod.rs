//! The keyed backend: everything a shard keeps for one keyed operator, and the loops that drive it.
//!
//! A [`KeyedBackend`] owns a shard's keys (interned into dense [`KeyId`]s, each with its key
//! group), the operator's state registry, one timer wheel per time domain, the operator's
//! watermark and processing time, and its counters. It knows no user trait: an operator (a keyed
//! process function, a two-input function, a window) is a thin adapter that holds a backend and
//! calls the user's code from the closures it passes in. The pipeline and the test harness drive
//! it through the same entry points:
//!
//! ```text
//! records:          drive(batch, hash_of, each)      the batched prefetch pipeline (batch.rs)
//!   each record:      enter(record, f)               intern the key, f(KeyContext)
//! watermark W:      begin_watermark(W)                drop unless W > current (counted)
//!                   continue_advance(budget, fire)    fire timers <= W in chunks (firing.rs), then
//!                                                     report W for forwarding
//! processing time:  begin_processing_time(T)          likewise for processing-time timers <= T
//! end of input:     begin_watermark(MAX) ... then finish(fire_processing_timers, fire)
//! checkpoint:       freeze()                          copy keys, state rows, timers (frozen.rs),
//!                                                     encoded by key group off the shard
//! restore:          restore(snapshots, groups, owns)  into an empty backend (snapshot.rs)
//! ```
//!
//! The event loop is Flink's (docs/semantics.md, C3): all event-time timers `<= W` fire, in
//! timestamp order (equal timestamps in registration order), before `W` is forwarded; timers that
//! `on_timer` registers at or below `W` fire in the same advance (A1.10). An advance is atomic with
//! respect to the operator's inputs: nothing else may reach the backend until it is complete.
//!
//! A callback that re-registers the timestamp it is firing fires again at once; the advance
//! counts such re-fires per timer ([`BackendSettings::max_timer_refires`]) and stops with
//! [`FireError::TimerLoop`] instead of looping forever, as Flink would.

mod access;
mod batch;
mod firing;
mod frozen;
mod metrics;
mod restore;
mod snapshot;

#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

pub use access::{KeyContext, KeyTimers};
pub use batch::{DATA_AHEAD, SLOT_AHEAD};
pub use firing::{AdvanceStep, FireError};
pub use frozen::{EncodedSnapshot, FrozenBackend, FrozenSnapshot};
pub use metrics::OperatorMetrics;
pub use snapshot::{BackendSnapshot, RestoreStats, SnapshotError, WatermarkOnRestore};

use std::fmt;

use crate::cow_vec::CowVec;
use crate::key::{Key, KeyError, KeyId, KeyInterner};
use crate::keygroup::{KeyGroup, KeyGroups};
use crate::state::{StateRegistry, StateScope, rows_emptied};
use crate::time::{MIN_WATERMARK, TimeDomain, Timestamp};
use crate::timer::TimerWheel;

use firing::Advance;

/// How many rows the TTL sweep visits per processing-time advance.
const TTL_SWEEP_BUDGET: usize = 64;

/// A record on its way to a keyed operator: its key and value, its timestamp, and the key's
/// routing hash and key group, computed once where the record was keyed and carried with it
/// (through the exchange rings, into the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord<K, V> {
    /// The key (the key selector's result).
    pub key: K,
    /// The record.
    pub value: V,
    /// Its timestamp, if it has one.
    pub timestamp: Option<Timestamp>,
    /// The key's routing hash, [`Key::canonical_hash`].
    pub hash: u64,
    /// The key's group.
    pub key_group: KeyGroup,
}

impl<K: Key, V> KeyedRecord<K, V> {
    /// Keys `value` by `key`: hashes the key once and finds its group.
    #[inline]
    pub fn new(key: K, value: V, timestamp: Option<Timestamp>, key_groups: &KeyGroups) -> Self {
        let hash = key.canonical_hash();
        KeyedRecord { key, value, timestamp, hash, key_group: key_groups.key_group_of_hash(hash) }
    }
}

/// The settings of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendSettings {
    /// How many times one timer may fire again within one advance because its callback
    /// re-registered it, before the advance stops with [`FireError::TimerLoop`]; `None`: no limit
    /// (Flink loops forever). Default `Some(10_000)`.
    pub max_timer_refires: Option<u32>,
    /// The most live keys (keys with state or pending timers) the backend holds; one more is a
    /// [`KeyError::TooManyKeys`] error instead of memory running out. Default: no limit but the
    /// key ids' (2^32 - 1).
    pub max_keys: usize,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings { max_timer_refires: Some(10_000), max_keys: usize::MAX }
    }
}

impl BackendSettings {
    /// Sets [`max_timer_refires`](Self::max_timer_refires).
    pub fn max_timer_refires(mut self, limit: Option<u32>) -> Self {
        self.max_timer_refires = limit;
        self
    }

    /// Sets [`max_keys`](Self::max_keys).
    pub fn max_keys(mut self, limit: usize) -> Self {
        self.max_keys = limit;
        self
    }
}

/// One keyed operator's keys, state, timers, times and counters on one shard; see the
/// [module docs](self).
pub struct KeyedBackend<K> {
    keys: KeyInterner<K>,
    /// The key group of each key id (what a checkpoint sorts keys by); copy-on-write, as the
    /// other per-key vectors, so that a freeze copies none of them.
    groups: CowVec<u16>,
    state: StateRegistry,
    event_timers: TimerWheel,
    processing_timers: TimerWheel,
    watermark: Timestamp,
    processing_time: Timestamp,
    /// The firing loop in progress, if any.
    advance: Option<Advance>,
    finished: bool,
    settings: BackendSettings,
    metrics: OperatorMetrics,
}

impl<K: Key> fmt::Debug for KeyedBackend<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBackend")
            .field("keys", &self.keys.len())
            .field("event_timers", &self.event_timers.len())
            .field("processing_timers", &self.processing_timers.len())
            .field("watermark", &self.watermark)
            .field("processing_time", &self.processing_time)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl<K: Key> KeyedBackend<K> {
    /// An empty backend at watermark `i64::MIN` and processing time `processing_time`.
    pub fn new(settings: BackendSettings, processing_time: Timestamp) -> Self {
        KeyedBackend {
            keys: KeyInterner::with_limit(settings.max_keys),
            groups: CowVec::new(),
            state: StateRegistry::new(),
            event_timers: TimerWheel::new(),
            processing_timers: TimerWheel::new(),
            watermark: MIN_WATERMARK,
            processing_time,
            advance: None,
            finished: false,
            settings,
            metrics: OperatorMetrics::default(),
        }
    }

    /// The state registry, where the operator's function declares its states (in `open`).
    pub fn state_registry(&mut self) -> &mut StateRegistry {
        &mut self.state
    }

    /// Processes one record of key `key` (routing hash `hash`, group `key_group`): interns the key,
    /// counts the record (and whether it is late), and calls `f` with the key's context.
    #[inline]
    pub fn enter<R>(
        &mut self,
        key: K,
        hash: u64,
        key_group: KeyGroup,
        timestamp: Option<Timestamp>,
        f: impl FnOnce(KeyContext<'_, K>) -> R,
    ) -> Result<R, KeyError> {
        let (id, new) = self.keys.intern_hashed_new(key, hash)?;
        if new {
            self.set_group(id, key_group);
        }
        self.metrics.records_in += 1;
        if matches!(timestamp, Some(ts) if ts <= self.watermark) {
            self.metrics.late_records += 1;
        }
        let emptied = rows_emptied();
        let r = f(self.context(id, None));
        if new && id.is_power_of_two() {
            // The state columns double as key ids grow: the first row of a new capacity may have
            // moved them. Re-read where they are, for the prefetches.
            self.state.refresh_prefetch();
        }
        self.release_if_empty(id, new || rows_emptied() != emptied);
        Ok(r)
    }

    /// Records the key group of a new key `id` (a fresh id, or one given out again).
    #[inline]
    fn set_group(&mut self, id: KeyId, key_group: KeyGroup) {
        // Key groups are below 32768 (`MAX_KEY_GROUPS_UPPER_BOUND`).
        let group = key_group.0 as u16;
        match self.groups.get_mut(id as usize) {
            Some(g) => *g = group,
            None => self.groups.push(group),
        }
    }

    /// After a callback for key `id`: removes the key if it has no pending timer and no state,
    /// so that memory follows the live keys, not every key ever seen; its id is given out again.
    /// The timer records are read first (they are in cache, and a key with a timer, the common
    /// case, needs nothing more); the state columns are asked only if the key may have no state
    /// (`maybe_empty`): the callback emptied a state row (the rows-emptied count moved), the key
    /// is new, or the operator has no state at all.
    #[inline(always)]
    fn release_if_empty(&mut self, id: KeyId, maybe_empty: bool) {
        if maybe_empty
            && self.event_timers.count_for_key(id) == 0
            && self.processing_timers.count_for_key(id) == 0
        {
            self.release_if_stateless(id);
        }
    }

    /// The rest of [`release_if_empty`](Self::release_if_empty), out of line: the state columns
    /// asked, the key removed.
    #[inline(never)]
    fn release_if_stateless(&mut self, id: KeyId) {
        if !self.state.has_state(id) {
            self.keys.remove(id);
            self.metrics.keys_removed += 1;
        }
    }

    /// The context of key `id`; `firing` is the timer being fired, if any.
    #[inline]
    fn context(&mut self, id: KeyId, firing: Option<(TimeDomain, Timestamp)>) -> KeyContext<'_, K> {
        KeyContext {
            keys: self.keys.keys(),
            scope: StateScope::new(id, self.processing_time, self.state.id()),
            timers: KeyTimers {
                event: &mut self.event_timers,
                processing: &mut self.processing_timers,
                key: id,
                watermark: self.watermark,
                processing_time: self.processing_time,
                accepting: !self.finished,
                firing_at_end_of_time: firing
                    == Some((TimeDomain::EventTime, crate::time::MAX_WATERMARK)),
                metrics: &mut self.metrics,
            },
        }
    }

    /// Prefetches what touching key `id` reads: the stored key, its state rows, its timer records.
    #[inline]
    fn prefetch_key_data(&self, id: KeyId) {
        self.keys.prefetch_key(id);
        self.state.prefetch_row(id);
        self.event_timers.prefetch_key(id);
        self.processing_timers.prefetch_key(id);
    }

    /// The current event-time watermark (`i64::MIN` before the first).
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// The counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        &self.metrics
    }

    /// True once [`finish`](Self::finish) has run.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Pending timers of every key in `domain`.
    pub fn num_timers(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event_timers.len(),
            TimeDomain::ProcessingTime => self.processing_timers.len(),
        }
    }

    /// (state, key) pairs holding a value.
    pub fn num_state_entries(&self) -> usize {
        self.state.num_entries()
    }

    /// Distinct keys seen.
    pub fn num_keys(&self) -> usize {
        self.keys.len()
    }

    /// The live keys (with state or pending timers, or in a callback), with their ids.
    pub fn keys(&self) -> impl Iterator<Item = (KeyId, &K)> + '_ {
        self.keys.iter()
    }

    /// The key group of key `id`, if the id names a live key.
    pub fn key_group(&self, id: KeyId) -> Option<KeyGroup> {
        if !self.keys.is_live(id) {
            return None;
        }
        self.groups.get(id as usize).map(|&g| KeyGroup(u32::from(g)))
    }

    /// The id of `key`, if it was seen.
    pub fn key_id(&self, key: &K) -> Option<KeyId> {
        self.keys.get(key)
    }

    /// The pending timers of `key` in `domain`, ascending.
    pub fn timers_of(&self, key: &K, domain: TimeDomain) -> Vec<Timestamp> {
        let Some(id) = self.keys.get(key) else { return Vec::new() };
        match domain {
            TimeDomain::EventTime => self.event_timers.timers_for_key(id),
            TimeDomain::ProcessingTime => self.processing_timers.timers_for_key(id),
        }
    }

    /// When the shard must wake up next for a processing-time timer: no later than the earliest
    /// pending one (possibly earlier, which only costs a poll that fires nothing).
    pub fn next_processing_timer(&self) -> Option<Timestamp> {
        self.processing_timers.next_due_at_least()
    }

    /// Approximate heap bytes held by the key table, the timers and the state (shallow: not the
    /// heap data of the keys and values themselves).
    pub fn memory_bytes(&self) -> usize {
        self.keys.memory_bytes()
            + self.groups.capacity() * std::mem::size_of::<u16>()
            + self.event_timers.memory_bytes()
            + self.processing_timers.memory_bytes()
            + self.state.memory_bytes()
    }

    /// Moves processing time to `now` (never backwards) and sweeps a few rows of TTL state.
    fn set_processing_time(&mut self, now: Timestamp) {
        self.processing_time = self.processing_time.max(now);
        self.metrics.ttl_rows_swept +=
            self.state.cleanup_expired(self.processing_time, TTL_SWEEP_BUDGET) as u64;
    }
}
