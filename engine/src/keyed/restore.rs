//! Restoring a keyed backend from encoded snapshots (the bytes of
//! [`BackendSnapshot::to_bytes`] and [`FrozenBackend::encode`](super::FrozenBackend::encode)),
//! read in one pass straight into the backend: no tree of vectors, no copy of a row, each
//! snapshot state resolved to its registered state once. Key groups the shard does not own are
//! skipped (their lengths are read, nothing is decoded). Arbitrary bytes give an error, never a
//! panic; on an error the backend may hold part of the snapshot and must be discarded.

use xxhash_rust::xxh3::xxh3_64;

use super::KeyedBackend;
use super::snapshot::{BackendSnapshot, RestoreStats, SnapshotError, WatermarkOnRestore};
use crate::key::{Key, KeyId};
use crate::keygroup::{KeyGroup, KeyGroups};
use crate::state::{CodecError, RestoreTarget, StateInfo};
use crate::time::{TimeDomain, Timestamp};
use crate::varint;

impl<K: Key> KeyedBackend<K> {
    /// Restores the key groups for which `owns` is true from `snapshots` (one per old shard, in
    /// shard order) into this backend, which must be empty (its function may have registered its
    /// states already). `key_groups` is the job's key-group assignment: every key must hash to the
    /// group it is stored under. The watermark stays at its minimum.
    ///
    /// # Errors
    ///
    /// Any [`SnapshotError`]; the backend may then hold part of the snapshot and must be
    /// discarded.
    pub fn restore<'a>(
        &mut self,
        snapshots: impl IntoIterator<Item = &'a BackendSnapshot>,
        key_groups: &KeyGroups,
        owns: impl Fn(KeyGroup) -> bool,
    ) -> Result<RestoreStats, SnapshotError> {
        self.restore_with(snapshots, key_groups, owns, WatermarkOnRestore::Minimum)
    }

    /// [`restore`](Self::restore), with the watermark starting where `watermark` says.
    pub fn restore_with<'a>(
        &mut self,
        snapshots: impl IntoIterator<Item = &'a BackendSnapshot>,
        key_groups: &KeyGroups,
        owns: impl Fn(KeyGroup) -> bool,
        watermark: WatermarkOnRestore,
    ) -> Result<RestoreStats, SnapshotError> {
        let encoded: Vec<Vec<u8>> = snapshots.into_iter().map(BackendSnapshot::to_bytes).collect();
        self.restore_encoded(encoded.iter().map(Vec::as_slice), key_groups, owns, watermark)
    }

    /// [`restore_with`](Self::restore_with) from encoded snapshots, read in one pass each.
    ///
    /// # Errors
    ///
    /// Any [`SnapshotError`]: [`SnapshotError::Decode`] for bytes that are not a snapshot,
    /// [`SnapshotError::UnsupportedVersion`] for another format version; the backend may then
    /// hold part of the snapshot and must be discarded.
    pub fn restore_encoded<'a>(
        &mut self,
        snapshots: impl IntoIterator<Item = &'a [u8]>,
        key_groups: &KeyGroups,
        owns: impl Fn(KeyGroup) -> bool,
        watermark: WatermarkOnRestore,
    ) -> Result<RestoreStats, SnapshotError> {
        if !self.keys.is_empty()
            || !self.event_timers.is_empty()
            || !self.processing_timers.is_empty()
        {
            return Err(SnapshotError::NotEmpty { keys: self.keys.len() });
        }
        let mut stats = RestoreStats::default();
        let mut checkpointed: Option<Timestamp> = None;
        // (order, domain, key id, timestamp): registered once a snapshot's keys are in.
        let mut timers: Vec<(u32, TimeDomain, KeyId, Timestamp)> = Vec::new();
        for bytes in snapshots {
            let (header, rest) = header(bytes)?;
            checkpointed = Some(checkpointed.map_or(header.1, |w| w.min(header.1)));
            let mut targets = Vec::with_capacity(header.3.len());
            for info in &header.3 {
                targets.push(self.state.restore_target(info)?);
            }
            let mut visit = Restoring { backend: self, key_groups, owns: &owns, targets, stats };
            walk(rest, &mut visit, &mut timers)?;
            stats = visit.stats;
            // Each domain's order is its own store's; sorting both together keeps each in order.
            timers.sort_unstable_by_key(|t| t.0);
            stats.timers += timers.len();
            for (_, domain, id, ts) in timers.drain(..) {
                match domain {
                    TimeDomain::EventTime => self.event_timers.register(id, ts)?,
                    TimeDomain::ProcessingTime => self.processing_timers.register(id, ts)?,
                };
            }
        }
        if let (WatermarkOnRestore::Checkpointed, Some(w)) = (watermark, checkpointed) {
            // No timer fires here: those at or below `w` wait for the next advance, as before.
            self.watermark = self.watermark.max(w);
        }
        self.state.restore_done();
        self.state.refresh_prefetch();
        Ok(stats)
    }

    /// Interns a restored key stored under `stored_group`, checking its group.
    fn restore_key(
        &mut self,
        stored_group: u32,
        bytes: &[u8],
        key_groups: &KeyGroups,
    ) -> Result<KeyId, SnapshotError> {
        let hash = xxh3_64(bytes);
        let actual = key_groups.key_group_of_hash(hash);
        if actual.0 != stored_group {
            return Err(SnapshotError::WrongKeyGroup {
                stored: stored_group,
                actual: actual.0,
                max_key_groups: key_groups.max_key_groups(),
            });
        }
        let key = K::from_canonical(bytes)?;
        let before = self.keys.len();
        let id = self.keys.intern_hashed(key, hash)?;
        if self.keys.len() == before {
            return Err(SnapshotError::DuplicateKey { key_group: stored_group });
        }
        self.set_group(id, actual);
        Ok(id)
    }
}

/// What a [`walk`] of an encoded snapshot's groups does with what it reads.
trait Visit<'a> {
    /// A key of `group`: the id it is restored under, or None to skip its rows and timers.
    fn key(&mut self, group: u32, key: &'a [u8]) -> Result<Option<KeyId>, SnapshotError>;
    /// A row of state `index` for a restored key.
    fn row(&mut self, id: KeyId, index: u32, row: &'a [u8]) -> Result<(), SnapshotError>;
}

/// Reads the groups of an encoded snapshot (what follows its [`header`]) to their end, handing
/// keys and rows to `visit` and the restored keys' timers to `timers`.
fn walk<'a>(
    body: &'a [u8],
    visit: &mut impl Visit<'a>,
    timers: &mut Vec<(u32, TimeDomain, KeyId, Timestamp)>,
) -> Result<(), SnapshotError> {
    let mut r = Reader(body);
    for _ in 0..r.varint()? {
        let group = r.u32()?;
        for _ in 0..r.varint()? {
            let key = r.bytes()?;
            let id = visit.key(group, key)?;
            for _ in 0..r.varint()? {
                let index = r.u32()?;
                let row = r.bytes()?;
                if let Some(id) = id {
                    visit.row(id, index, row)?;
                }
            }
            for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
                for _ in 0..r.varint()? {
                    let ts = r.i64()?;
                    let order = r.u32()?;
                    if let Some(id) = id {
                        timers.push((order, domain, id, ts));
                    }
                }
            }
        }
    }
    if r.0.is_empty() {
        Ok(())
    } else {
        Err(decode(format!("{} bytes left over after the snapshot", r.0.len())))
    }
}

/// A restore's visitor: owned groups' keys interned, their rows decoded into their states.
struct Restoring<'b, K, F> {
    backend: &'b mut KeyedBackend<K>,
    key_groups: &'b KeyGroups,
    owns: &'b F,
    targets: Vec<RestoreTarget>,
    stats: RestoreStats,
}

impl<'a, K: Key, F: Fn(KeyGroup) -> bool> Visit<'a> for Restoring<'_, K, F> {
    fn key(&mut self, group: u32, key: &'a [u8]) -> Result<Option<KeyId>, SnapshotError> {
        if !(self.owns)(KeyGroup(group)) {
            return Ok(None);
        }
        self.stats.keys += 1;
        self.backend.restore_key(group, key, self.key_groups).map(Some)
    }

    fn row(&mut self, id: KeyId, index: u32, row: &'a [u8]) -> Result<(), SnapshotError> {
        let states = self.targets.len();
        let target = *self
            .targets
            .get(index as usize)
            .ok_or(SnapshotError::UnknownState { index, states })?;
        self.backend.state.restore_row(target, id, row)?;
        self.stats.rows += 1;
        Ok(())
    }
}

/// A validation's visitor: reads everything, restores nothing.
struct Checking;

impl<'a> Visit<'a> for Checking {
    fn key(&mut self, _: u32, _: &'a [u8]) -> Result<Option<KeyId>, SnapshotError> {
        Ok(None)
    }

    fn row(&mut self, _: KeyId, _: u32, _: &'a [u8]) -> Result<(), SnapshotError> {
        Ok(())
    }
}

impl BackendSnapshot {
    /// Checks that `bytes` are an encoded snapshot of this build's format version, to its last
    /// byte, without decoding its rows or building anything (what a restore checks before any
    /// shard builds).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::UnsupportedVersion`], or [`SnapshotError::Decode`] for bytes that are
    /// not a snapshot.
    pub fn check_encoded(bytes: &[u8]) -> Result<(), SnapshotError> {
        let (_, body) = header(bytes)?;
        walk(body, &mut Checking, &mut Vec::new())
    }
}

/// The fields before the groups: version, watermark, processing time, states.
type Header = (u16, Timestamp, Timestamp, Vec<StateInfo>);

/// A snapshot's header, after checking its version, and the bytes after it.
fn header(bytes: &[u8]) -> Result<(Header, &[u8]), SnapshotError> {
    let (version, _): (u16, _) = postcard::take_from_bytes(bytes).map_err(decode)?;
    if version != BackendSnapshot::VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: BackendSnapshot::VERSION,
        });
    }
    postcard::take_from_bytes(bytes).map_err(decode)
}

fn decode(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Decode(CodecError::new(e))
}

/// Reads postcard's encoding of the snapshot's groups, a field at a time.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// An unsigned LEB128 varint of at most 64 bits.
    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let (v, n) = varint::read(self.0).map_err(|_| decode("a truncated or overlong varint"))?;
        self.0 = &self.0[n..];
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        u32::try_from(self.varint()?).map_err(|_| decode("a 32-bit field out of range"))
    }

    /// A zigzag-encoded signed integer.
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(varint::unzigzag(self.varint()?))
    }

    /// A length-prefixed byte string, borrowed.
    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = self.varint()?;
        let len = usize::try_from(len).ok().filter(|&l| l <= self.0.len());
        let Some(len) = len else {
            return Err(decode("a length beyond the end of the snapshot"));
        };
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(bytes)
    }
}
