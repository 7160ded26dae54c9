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
use crate::cow_vec::FrozenVec;
use crate::key::{FrozenKeys, Key, KeyId};
use crate::state::FrozenStates;
use crate::time::Timestamp;
use crate::timer::FrozenTimers;
use crate::varint::{self, patch_len, zigzag};

/// A keyed backend's keys, state rows and pending timers as a checkpoint barrier found them,
/// to be encoded off the shard. `Send` when the key type is.
#[derive(Debug)]
pub struct FrozenBackend<K> {
    keys: FrozenKeys<K>,
    /// The key group of each key id.
    groups: FrozenVec<u16>,
    states: FrozenStates,
    event_timers: FrozenTimers,
    processing_timers: FrozenTimers,
    watermark: Timestamp,
    processing_time: Timestamp,
}

/// A frozen backend of any key type: what a checkpoint's writer encodes.
pub trait FrozenSnapshot: Send + std::fmt::Debug {
    /// The snapshot's encoding ([`BackendSnapshot::to_bytes`]'s bytes), in parts.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::State`] for a state value that does not encode.
    fn encoded(&self) -> Result<EncodedSnapshot, SnapshotError>;
}

impl<K: Key + Send + Sync> FrozenSnapshot for FrozenBackend<K> {
    fn encoded(&self) -> Result<EncodedSnapshot, SnapshotError> {
        FrozenBackend::encoded(self)
    }
}

impl<K: Key> KeyedBackend<K> {
    /// Freezes the backend for a checkpoint ([`FrozenBackend`]): freezes its live keys, every
    /// state's rows and both timer stores' key indexes. Taken between records, never during a
    /// timer advance.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::AdvanceInProgress`] during an advance; [`SnapshotError::State`] if a
    /// state is being accessed (only possible from inside a state callback).
    pub fn freeze(&mut self) -> Result<FrozenBackend<K>, SnapshotError> {
        if self.advance.is_some() {
            return Err(SnapshotError::AdvanceInProgress);
        }
        Ok(FrozenBackend {
            keys: self.keys.freeze(),
            groups: self.groups.freeze(),
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
        let mut ranks = SortedOrders::default();
        for k in groups.values().flatten() {
            ranks.event.extend(k.event_timers.iter().map(|t| t.1));
            ranks.processing.extend(k.processing_timers.iter().map(|t| t.1));
        }
        ranks.sort();
        for k in groups.values_mut().flatten() {
            k.event_timers.iter_mut().for_each(|t| t.1 = SortedOrders::rank(&ranks.event, t.1));
            k.processing_timers
                .iter_mut()
                .for_each(|t| t.1 = SortedOrders::rank(&ranks.processing, t.1));
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
    /// without building the tree ([`encoded`](Self::encoded), then one copy).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::State`] for a state value that does not encode.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        let encoded = self.encoded()?;
        out.reserve(encoded.encoded_len());
        encoded.write_to(out);
        Ok(())
    }

    /// The snapshot's encoding in parts ([`EncodedSnapshot`]): its length is known before it is
    /// written out, so that a checkpoint file's section can be framed and filled in one copy.
    ///
    /// Both passes go through the keys in id order, so that the copies are read front to back
    /// (a walk in key-group order would jump between them at random): the first finds the keys
    /// to write, counts them per key group and ranks every timer, the second appends each key's
    /// entry to its group's buffer, which is sized from its first entry.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::State`] for a state value that does not encode.
    pub fn encoded(&self) -> Result<EncodedSnapshot, SnapshotError> {
        let stores = [&self.event_timers, &self.processing_timers];
        // Pass 1: the included keys with their timer counts, how many keys per group, and each
        // domain's timers, `(timestamp, order)`, in the order pass 2 meets them (so that pass 2
        // reads them front to back instead of the key index's spill sets again, at random).
        let mut ids: Vec<(KeyId, [u32; 2])> = Vec::with_capacity(self.keys.len());
        let mut counts: Vec<u64> = Vec::new();
        let mut walked: [Vec<(Timestamp, u32)>; 2] = stores.map(|s| Vec::with_capacity(s.len()));
        for (id, _) in self.keys.iter() {
            let mut n = [0u32; 2];
            for d in 0..2 {
                let before = walked[d].len();
                stores[d].for_each_of_key_in_order(id, |ts, o| walked[d].push((ts, o)));
                n[d] = (walked[d].len() - before) as u32;
            }
            if n == [0, 0] && !self.states.has_rows(id) {
                continue;
            }
            ids.push((id, n));
            let g = self.group(id) as usize;
            if g >= counts.len() {
                counts.resize(g + 1, 0);
            }
            counts[g] += 1;
        }
        let ranks = [Ranks::new(&walked[0]), Ranks::new(&walked[1])];

        // Pass 2: each key's entry, appended to its group's buffer.
        let mut groups: Vec<Vec<u8>> = vec![Vec::new(); counts.len()];
        let mut timers = Vec::new();
        let mut next = [0usize; 2];
        for &(id, n) in &ids {
            let g = self.group(id) as usize;
            let buf = &mut groups[g];
            let at = buf.len();
            buf.push(0);
            if let Some(k) = self.keys.get(id) {
                k.write_canonical(buf);
            }
            // The key's length prefix, now that it is known.
            patch_len(buf, at, buf.len() - at - 1);
            self.states.encode_rows_into(id, buf)?;
            for d in 0..2 {
                let (from, to) = (next[d], next[d] + n[d] as usize);
                next[d] = to;
                varint::put(buf, u64::from(n[d]));
                if let [(ts, o)] = walked[d][from..to] {
                    varint::put(buf, zigzag(ts));
                    varint::put(buf, u64::from(ranks[d].rank(from, o)));
                    continue;
                }
                timers.clear();
                timers.extend(
                    (from..to).map(|p| {
                        (walked[d][p].0, walked[d][p].1, ranks[d].rank(p, walked[d][p].1))
                    }),
                );
                timers.sort_unstable_by_key(|t| t.1);
                for &(ts, _, rank) in &timers {
                    varint::put(buf, zigzag(ts));
                    varint::put(buf, u64::from(rank));
                }
            }
            if at == 0 {
                // The group's first entry: room for the rest at its size and a quarter, so that
                // the buffer rarely grows (and is copied) again.
                let rest = counts[g].saturating_sub(1) as usize;
                buf.reserve(rest.saturating_mul(buf.len() + buf.len() / 4 + 1));
            }
        }

        // The header as postcard writes the snapshot struct's first fields, then the groups.
        let header =
            (BackendSnapshot::VERSION, self.watermark, self.processing_time, self.states.states());
        // Integers, strings and plain enums: postcard cannot fail.
        let mut head = postcard::to_allocvec(&header).unwrap_or_default();
        varint::put(&mut head, counts.iter().filter(|&&c| c > 0).count() as u64);
        let groups = groups
            .into_iter()
            .zip(counts)
            .enumerate()
            .filter(|(_, (_, count))| *count > 0)
            .map(|(group, (bytes, count))| {
                let mut prefix = Vec::with_capacity(20);
                varint::put(&mut prefix, group as u64);
                varint::put(&mut prefix, count);
                (prefix, bytes)
            })
            .collect();
        Ok(EncodedSnapshot { head, groups })
    }
}

/// A frozen backend's snapshot encoding, in parts ([`FrozenBackend::encoded`]): the bytes of
/// [`BackendSnapshot::to_bytes`], of a known length, written out by
/// [`write_to`](Self::write_to).
#[derive(Debug)]
pub struct EncodedSnapshot {
    /// The header fields and the number of key groups.
    head: Vec<u8>,
    /// Each key group's prefix (its number and key count) and its keys' entries.
    groups: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EncodedSnapshot {
    /// The encoding's length in bytes.
    pub fn encoded_len(&self) -> usize {
        self.head.len() + self.groups.iter().map(|(p, b)| p.len() + b.len()).sum::<usize>()
    }

    /// Appends the encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        for (prefix, bytes) in &self.groups {
            out.extend_from_slice(prefix);
            out.extend_from_slice(bytes);
        }
    }
}

/// The rank of every pending timer of one domain among the snapshot's timers, by registration
/// order: a snapshot depends only on the order of the pending timers, not on how many
/// registrations came before them. Orders are distinct (one per registration).
enum Ranks {
    /// Orders spanning little more than the timers: a bit per order from the lowest, `low`, and
    /// the number of set bits before each word, so that a rank is a popcount.
    Dense { low: u32, bits: Vec<u64>, before: Vec<u32> },
    /// Orders spread thin (an old timer among many newer registrations): each timer's rank by
    /// its place in pass 1's walk, from a sort.
    Sparse(Vec<u32>),
}

impl Ranks {
    /// The most bitmap bits per timer for which the dense form is used (above a floor of 4,096
    /// bits): then the bitmap takes at most 4 bytes per timer and its counts (a `u32` per 64
    /// bits) at most 2, against the 12 bytes per timer of the sort's.
    const DENSE_BITS_PER_TIMER: u64 = 32;

    /// The ranks of the timers `walked`, `(timestamp, order)` in pass 1's walk.
    fn new(walked: &[(Timestamp, u32)]) -> Self {
        let orders = || walked.iter().map(|t| t.1);
        let low = orders().min().unwrap_or(0);
        let span = orders().max().map_or(0, |m| u64::from(m - low) + 1);
        if span <= Self::DENSE_BITS_PER_TIMER * walked.len() as u64 + 4096 {
            let mut bits = vec![0u64; span.div_ceil(64) as usize];
            for o in orders() {
                let o = o - low;
                bits[(o >> 6) as usize] |= 1 << (o & 63);
            }
            let mut seen = 0;
            let before = bits
                .iter()
                .map(|w| {
                    let b = seen;
                    seen += w.count_ones();
                    b
                })
                .collect();
            return Ranks::Dense { low, bits, before };
        }
        // `(order << 32) | place`, sorted by order, gives each place its rank.
        let mut places: Vec<u64> =
            orders().enumerate().map(|(place, o)| (u64::from(o) << 32) | place as u64).collect();
        places.sort_unstable();
        let mut ranks = vec![0u32; places.len()];
        for (rank, p) in places.iter().enumerate() {
            ranks[(p & u64::from(u32::MAX)) as usize] = rank as u32;
        }
        Ranks::Sparse(ranks)
    }

    /// The rank of the timer of order `order`, met at `place` in pass 1's walk.
    fn rank(&self, place: usize, order: u32) -> u32 {
        match self {
            Ranks::Dense { low, bits, before } => {
                let order = order - low;
                let (w, b) = ((order >> 6) as usize, order & 63);
                before[w] + (bits[w] & ((1u64 << b) - 1)).count_ones()
            }
            Ranks::Sparse(ranks) => ranks[place],
        }
    }
}

/// Every snapshot timer's registration order, per domain, sorted: a timer's rank is its place
/// here (the tree's ranks, [`FrozenBackend::snapshot`]).
#[derive(Default)]
struct SortedOrders {
    event: Vec<u32>,
    processing: Vec<u32>,
}

impl SortedOrders {
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
