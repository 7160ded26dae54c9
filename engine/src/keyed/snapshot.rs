//! Snapshots of a keyed backend, per key group: what a checkpoint stores of a keyed operator on
//! one shard, and what a restore on any number of shards reads back.
//!
//! A [`BackendSnapshot`] lists the operator's states ([`StateInfo`]) and, for each key group the
//! shard holds, the keys that have state or pending timers: each key's canonical bytes
//! ([`Key::write_canonical`]), its encoded state rows (`state/codec.rs`) and its pending timers of
//! both domains with their place in the registration order. Keys without state and without
//! timers are left out. Because keys are stored by key group, a snapshot taken with N shards
//! restores on M: each new shard restores the groups of its range, from every old shard's
//! snapshot (docs/reliability.md, "Restore").
//!
//! Restoring interns the keys anew (key ids are a shard's own), decodes the rows into the
//! registered states (a state registered later gets its rows then), and registers the timers in
//! their recorded registration order, so that timers of equal timestamps still fire in
//! registration order. Timers of one snapshot keep their order among themselves; with several
//! snapshots (a rescale), those of the earlier snapshot in the list come first at equal
//! timestamps. The watermark is not restored: the backend starts again at the minimum and waits
//! for new watermarks (Flink's behaviour), so restored event-time timers fire only when the
//! input's watermarks reach them, and processing-time timers whose time has passed fire at the
//! next processing-time advance.
//!
//! The encoding is serde's, in postcard's format, behind a format version
//! ([`BackendSnapshot::VERSION`]); decoding arbitrary bytes gives an error, never a panic.

use serde::{Deserialize, Serialize};

use super::KeyedBackend;
use crate::key::{Key, KeyDecodeError, KeyError};
use crate::keygroup::KeyGroup;
use crate::state::{CodecError, StateError, StateInfo};
use crate::time::Timestamp;
use crate::timer::TimerError;

/// A keyed backend's keys, state and timers, by key group: what a checkpoint stores of a keyed
/// operator on one shard ([`KeyedBackend::snapshot`]), and what a restore on any number of shards
/// reads back ([`KeyedBackend::restore`]).
///
/// It lists the operator's states and, per key group, the keys that have state or pending
/// timers (keys with neither are left out): each key's canonical bytes, its encoded state rows,
/// and its pending timers of both domains ranked by registration order. A restore interns the
/// keys anew, decodes the rows into the registered states (a state registered later gets its
/// rows then) and registers the timers in their recorded order, so that equal timestamps still
/// fire in registration order (with several snapshots, a rescale, the earlier snapshot's timers
/// first). Processing-time timers whose time has passed fire at the next processing-time
/// advance; event-time timers wait for new watermarks ([`WatermarkOnRestore`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendSnapshot {
    version: u16,
    watermark: Timestamp,
    processing_time: Timestamp,
    states: Vec<StateInfo>,
    /// Ascending by key group.
    pub(super) groups: Vec<KeyGroupSnapshot>,
}

/// The keys of one key group in a [`BackendSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeyGroupSnapshot {
    pub(super) key_group: u32,
    pub(super) keys: Vec<KeySnapshot>,
}

/// One key: its canonical bytes, its state rows `(state index, encoded row)`, its pending timers
/// `(timestamp, registration order)` per domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeySnapshot {
    pub(super) key: Vec<u8>,
    pub(super) rows: Vec<(u32, Vec<u8>)>,
    pub(super) event_timers: Vec<(Timestamp, u32)>,
    pub(super) processing_timers: Vec<(Timestamp, u32)>,
}

/// Why a snapshot could not be taken or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A snapshot was asked for in the middle of a timer advance (a barrier waits for the advance
    /// to complete; this is a bug of the caller).
    #[error("a snapshot cannot be taken while timers are firing")]
    AdvanceInProgress,
    /// A restore into a backend that already has keys or timers.
    #[error("a snapshot can only be restored into an empty backend; this one has {keys} keys")]
    NotEmpty {
        /// The keys it has.
        keys: usize,
    },
    /// The bytes are not a snapshot of a supported format version.
    #[error(
        "snapshot format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The bytes do not decode as a snapshot.
    #[error("the snapshot does not decode: {0}")]
    Decode(CodecError),
    /// A key's bytes do not decode as the operator's key type.
    #[error(transparent)]
    Key(#[from] KeyDecodeError),
    /// The restoring shard runs out of key ids.
    #[error(transparent)]
    TooManyKeys(#[from] KeyError),
    /// A state's rows do not fit the registered state.
    #[error(transparent)]
    State(#[from] StateError),
    /// The restored timers do not fit the timer store.
    #[error(transparent)]
    Timer(#[from] TimerError),
    /// A key stored under a key group that its bytes do not hash to: another key-group count, or
    /// damage the checksums did not catch.
    #[error(
        "a key stored in key group {stored} belongs to key group {actual} (of {max_key_groups})"
    )]
    WrongKeyGroup {
        /// The group it was stored in.
        stored: u32,
        /// The group its bytes hash to.
        actual: u32,
        /// The key-group count of the restore.
        max_key_groups: u32,
    },
    /// The same key appears twice among the restored groups.
    #[error("key group {key_group} holds a key that was restored already")]
    DuplicateKey {
        /// Where the second copy was.
        key_group: u32,
    },
    /// A row names a state the snapshot does not list.
    #[error("a row names state number {index}, but the snapshot lists {states} states")]
    UnknownState {
        /// The state number.
        index: u32,
        /// How many the snapshot lists.
        states: usize,
    },
}

/// Where a restored backend's watermark starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatermarkOnRestore {
    /// At the minimum, as in Flink: the first watermark after the restore fires every restored
    /// event-time timer at or below it, including those that were at or below the checkpointed
    /// watermark and waiting for the next advance.
    #[default]
    Minimum,
    /// At the checkpointed watermark (the smallest of the snapshots' when several are merged):
    /// timers wait for a watermark beyond it, exactly as they would have without the restart,
    /// and a replayed watermark at or below it is dropped.
    Checkpointed,
}

/// What a restore brought back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreStats {
    /// Keys restored.
    pub keys: usize,
    /// State rows restored (a list or map counts once per key).
    pub rows: usize,
    /// Pending timers restored, both domains.
    pub timers: usize,
}

impl BackendSnapshot {
    /// The format version this build writes and reads. Version 1: the layout above, postcard.
    pub const VERSION: u16 = 1;

    pub(super) fn new(
        watermark: Timestamp,
        processing_time: Timestamp,
        states: Vec<StateInfo>,
        groups: Vec<KeyGroupSnapshot>,
    ) -> Self {
        BackendSnapshot { version: Self::VERSION, watermark, processing_time, states, groups }
    }

    /// The encoded snapshot (postcard, version first).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Every field is a plain integer, string, byte vector or sequence: postcard cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a snapshot written by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::UnsupportedVersion`] for another format version, [`SnapshotError::Decode`]
    /// for bytes that are not a snapshot.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (version, _): (u16, _) = postcard::take_from_bytes(bytes)
            .map_err(|e| SnapshotError::Decode(CodecError::new(e)))?;
        if version != Self::VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: Self::VERSION,
            });
        }
        let (snapshot, rest): (BackendSnapshot, _) = postcard::take_from_bytes(bytes)
            .map_err(|e| SnapshotError::Decode(CodecError::new(e)))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(CodecError::new(format!(
                "{} bytes left over after the snapshot",
                rest.len()
            ))));
        }
        Ok(snapshot)
    }

    /// The watermark when the snapshot was taken.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The processing time when the snapshot was taken.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// The states it lists.
    pub fn states(&self) -> &[StateInfo] {
        &self.states
    }

    /// The key groups it holds keys of, ascending.
    pub fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_ {
        self.groups.iter().map(|g| KeyGroup(g.key_group))
    }

    /// The keys it holds.
    pub fn num_keys(&self) -> usize {
        self.groups.iter().map(|g| g.keys.len()).sum()
    }

    /// The pending timers it holds, both domains.
    pub fn num_timers(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.keys)
            .map(|k| k.event_timers.len() + k.processing_timers.len())
            .sum()
    }
}

impl<K: Key> KeyedBackend<K> {
    /// A snapshot of every key that has state or pending timers, by key group
    /// ([`BackendSnapshot`]): the backend [frozen](Self::freeze), then built into the tree.
    /// Taken between records, never during a timer advance.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::AdvanceInProgress`] during an advance; [`SnapshotError::State`] if a
    /// state is being accessed (only possible from inside a state callback) or a value does not
    /// encode.
    pub fn snapshot(&mut self) -> Result<BackendSnapshot, SnapshotError> {
        self.freeze()?.snapshot()
    }
}
