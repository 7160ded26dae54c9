//! A keyed backend frozen at a checkpoint barrier ([`FrozenBackend`]): on the shard, a copy of
//! its live keys, state rows and timers' key index, which is all the shard pays for; on the
//! checkpoint thread, the snapshot encoded from the copy ([`FrozenBackend::encode`]), key group
//! by key group, straight into one buffer.
//!
//! The encoding is [`BackendSnapshot`]'s (postcard, format version 1) byte for byte, written
//! without building the snapshot's tree of vectors: [`FrozenBackend::snapshot`] builds the tree
//! (for the harness and the tests), and the tests check that both give the same bytes.

use std::collections::BTreeMap;

use super::KeyedBackend;
use super::snapshot::{BackendSnapshot, KeyGroupSnapshot, KeySnapshot, SnapshotError};
use crate::key::{FrozenKeys, Key, KeyId};
use crate::state::FrozenStates;
use crate::time::Timestamp;
use crate::timer::FrozenTimers;

/// A keyed backend's keys, state rows and pending timers as a checkpoint barrier found them,
/// to be encoded off the shard. `Send` when the key type is.
#[derive(Debug)]
pub struct FrozenBackend<K> {
    keys: FrozenKeys<K>,
    /// The key group of each key id.
    groups: Vec<u16>,
    states: FrozenStates,
    event_timers: FrozenTimers,
    processing_timers: FrozenTimers,
    watermark: Timestamp,
    processing_time: Timestamp,
}

/// A frozen backend of any key type: what a checkpoint's writer encodes.
pub trait FrozenSnapshot: Send + std::fmt::Debug {
    /// Appends the snapshot's encoding ([`BackendSnapshot::to_bytes`]'s bytes) to `out`.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::State`] for a state value that does not encode.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError>;
}

impl<K: Key + Send> FrozenSnapshot for FrozenBackend<K> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        FrozenBackend::encode(self, out)
    }
}

impl<K: Key> KeyedBackend<K> {
    /// Freezes the backend for a checkpoint ([`FrozenBackend`]): copies its live keys, every
    /// state's rows and both timer stores' key indexes. Taken between records, never during a
    /// timer advance.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::AdvanceInProgress`] during an advance; [`SnapshotError::State`] if a
    /// state is being accessed (only possible from inside a state callback).
    pub fn freeze(&self) -> Result<FrozenBackend<K>, SnapshotError> {
        if self.advance.is_some() {
            return Err(SnapshotError::AdvanceInProgress);
        }
        Ok(FrozenBackend {
            keys: self.keys.freeze(),
            groups: self.groups.clone(),
            states: self.state.freeze()?,
            event_timers: self.event_timers.freeze(),
            processing_timers: self.processing_timers.freeze(),
            watermark: self.watermark,
            processing_time: self.processing_time,
        })
    }
}

impl<K: Key> FrozenBackend<K> {
    /// The key group of key id `id`.
    fn group(&self, id: KeyId) -> u32 {
        self.groups.get(id as usize).map_or(0, |&g| u32::from(g))
    }

    /// Whether key `id` goes into the snapshot: it has state or a pending timer.
    fn included(&self, id: KeyId) -> bool {
        self.states.has_rows(id)
            || self.event_timers.has_timers(id)
            || self.processing_timers.has_timers(id)
    }

    /// The snapshot as a tree ([`BackendSnapshot`]): every key with state or pending timers, by
    /// key group, its timers ranked by registration order.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::State`] for a state value that does not encode.
    pub fn snapshot(&self) -> Result<BackendSnapshot, SnapshotError> {
        let mut groups: BTreeMap<u32, Vec<KeySnapshot>> = BTreeMap::new();
        let mut scratch = Vec::new();
        for (id, key) in self.keys.iter() {
            if !self.included(id) {
                continue;
            }
            let mut rows = Vec::new();
            self.states.encode_rows(id, &mut scratch, |i, bytes| rows.push((i, bytes.to_vec())))?;
            let mut bytes = Vec::new();
            key.write_canonical(&mut bytes);
            groups.entry(self.group(id)).or_default().push(KeySnapshot {
                key: bytes,
                rows,
                event_timers: timers_in_order(&self.event_timers, id),
                processing_timers: timers_in_order(&self.processing_timers, id),
            });
        }
        let mut ranks = Ranks::default();
        for k in groups.values().flatten() {
            ranks.event.extend(k.event_timers.iter().map(|t| t.1));
            ranks.processing.extend(k.processing_timers.iter().map(|t| t.1));
        }
        ranks.sort();
        for k in groups.values_mut().flatten() {
            k.event_timers.iter_mut().for_each(|t| t.1 = Ranks::rank(&ranks.event, t.1));
            k.processing_timers.iter_mut().for_each(|t| t.1 = Ranks::rank(&ranks.processing, t.1));
        }
        Ok(BackendSnapshot::new(
            self.watermark,
            self.processing_time,
            self.states.states().to_vec(),
            groups
                .into_iter()
                .map(|(key_group, keys)| KeyGroupSnapshot { key_group, keys })
                .collect(),
        ))
    }

    /// Appends the snapshot's encoding to `out`: the bytes of
    /// [`snapshot`](Self::snapshot)`()?.`[`to_bytes`](BackendSnapshot::to_bytes)`()`, written
    /// without building the tree. Both passes go through the keys in id order, so that the
    /// copies are read front to back (a walk in key-group order would jump between them at
    /// random): the first finds the keys to write and ranks every timer, the second appends each
    /// key's entry to its group's buffer; the groups are then concatenated in order.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::State`] for a state value that does not encode.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        let stores = [&self.event_timers, &self.processing_timers];
        // Pass 1: the included keys, and each domain's timers' ranks, in the order pass 2 meets
        // them (`(order << 32) | place`, sorted by order, gives each place its rank).
        let mut ids = Vec::new();
        let mut places: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for (id, _) in self.keys.iter() {
            if !self.included(id) {
                continue;
            }
            ids.push(id);
            for (store, places) in stores.iter().zip(&mut places) {
                store.for_each_of_key_in_order(id, |_, o| {
                    places.push((u64::from(o) << 32) | places.len() as u64);
                });
            }
        }
        let ranks = places.map(|mut places| {
            places.sort_unstable();
            let mut ranks = vec![0u32; places.len()];
            for (rank, p) in places.iter().enumerate() {
                ranks[(p & u64::from(u32::MAX)) as usize] = rank as u32;
            }
            ranks
        });

        // Pass 2: each key's entry, appended to its group's buffer.
        let mut groups: Vec<(u64, Vec<u8>)> = Vec::new();
        let (mut row, mut rows, mut timers) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = [0usize; 2];
        for &id in &ids {
            let g = self.group(id) as usize;
            if g >= groups.len() {
                groups.resize_with(g + 1, Default::default);
            }
            let (count, buf) = &mut groups[g];
            *count += 1;
            let at = buf.len();
            varint(buf, 0);
            if let Some(k) = self.keys.get(id) {
                k.write_canonical(buf);
            }
            // The key's length prefix, now that it is known (one byte for keys under 128 bytes).
            let len = buf.len() - at - 1;
            if len >= 0x80 {
                let mut prefix = Vec::new();
                varint(&mut prefix, len as u64);
                buf.splice(at..at + 1, prefix);
            } else {
                buf[at] = len as u8;
            }
            rows.clear();
            let mut n = 0;
            self.states.encode_rows(id, &mut row, |i, bytes| {
                n += 1;
                varint(&mut rows, u64::from(i));
                varint(&mut rows, bytes.len() as u64);
                rows.extend_from_slice(bytes);
            })?;
            varint(buf, n);
            buf.extend_from_slice(&rows);
            for d in 0..2 {
                timers.clear();
                stores[d].for_each_of_key_in_order(id, |ts, o| {
                    timers.push((ts, o, ranks[d][next[d]]));
                    next[d] += 1;
                });
                timers.sort_unstable_by_key(|t| t.1);
                varint(buf, timers.len() as u64);
                for &(ts, _, rank) in &timers {
                    varint(buf, zigzag(ts));
                    varint(buf, u64::from(rank));
                }
            }
        }

        // The header as postcard writes the snapshot struct's first fields, then the groups.
        let header =
            (BackendSnapshot::VERSION, self.watermark, self.processing_time, self.states.states());
        // Integers, strings and plain enums: postcard cannot fail.
        out.extend_from_slice(&postcard::to_allocvec(&header).unwrap_or_default());
        out.reserve(groups.iter().map(|g| g.1.len() + 20).sum());
        varint(out, groups.iter().filter(|g| g.0 > 0).count() as u64);
        for (group, (count, bytes)) in groups.iter().enumerate().filter(|(_, g)| g.0 > 0) {
            varint(out, group as u64);
            varint(out, *count);
            out.extend_from_slice(bytes);
        }
        Ok(())
    }
}

/// Every snapshot timer's registration order, per domain, sorted: a timer's rank is its place
/// here, so that a snapshot depends only on the order of the pending timers, not on how many
/// registrations came before them.
#[derive(Default)]
struct Ranks {
    event: Vec<u32>,
    processing: Vec<u32>,
}

impl Ranks {
    fn sort(&mut self) {
        self.event.sort_unstable();
        self.processing.sort_unstable();
    }

    fn rank(sorted: &[u32], order: u32) -> u32 {
        // Orders are distinct (one per registration): the search finds it.
        sorted.binary_search(&order).unwrap_or(0) as u32
    }
}

/// `key`'s pending timers in `store`, as `(timestamp, registration order)`, by order.
fn timers_in_order(store: &FrozenTimers, key: KeyId) -> Vec<(Timestamp, u32)> {
    let mut out = Vec::new();
    store.for_each_of_key_in_order(key, |ts, order| out.push((ts, order)));
    out.sort_unstable_by_key(|t| t.1);
    out
}

/// Appends `v` as postcard writes an unsigned integer: LEB128, seven bits a byte, low first.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A signed integer as postcard maps it before its varint: zigzag, small magnitudes small.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
