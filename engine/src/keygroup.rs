//! Key groups: the stable assignment key → key group → shard (Flink's scheme, with a stable hash).
//!
//! # Design
//!
//! Keyed state and timers are partitioned into `max_key_groups` **key groups**, fixed when a job is
//! created and recorded in every checkpoint. A key's group depends only on the key; a shard owns a
//! contiguous range of groups, which depends only on the shard count. So a checkpoint written by N
//! shards can be restored on M: each new shard loads the groups of its new range (docs/architecture.md layer 3,
//! docs/semantics.md A4).
//!
//! ```text
//!   key ──canonical bytes──▶ xxh3_64 (seed 0) ──% max_key_groups──▶ KeyGroup ──kg·shards / max──▶ shard
//!                                                                      (shard i owns [⌈i·max/shards⌉, ⌈(i+1)·max/shards⌉ - 1])
//! ```
//!
//! | step | formula | Flink's counterpart (`KeyGroupRangeAssignment`) |
//! |---|---|---|
//! | key → group | `xxh3_64(canonical bytes) % max` ([`KEY_GROUP_FUNCTION_VERSION`] 1) | `murmurHash(key.hashCode()) % maxParallelism` |
//! | group → shard | `group * shards / max` | `computeOperatorIndexForKeyGroup` |
//! | shard → groups | `[(i*max + shards - 1) / shards, ((i+1)*max - 1) / shards]` | `computeKeyGroupRangeForOperatorIndex` |
//! | default `max` | `min(max(next_pow2(shards + shards/2), 128), 32768)` | `computeDefaultMaxParallelism` |
//!
//! The two shard formulas agree (a group lies in the range of the shard it maps to; tested
//! exhaustively by property tests), the ranges partition `[0, max)`, and their sizes differ by at
//! most one.
//!
//! **Why not Flink's hash.** Flink hashes Java's `hashCode`, which Rust keys do not have; Pinwheel
//! hashes the key's canonical bytes ([`Key::write_canonical`]) with XXH3, whose output is specified
//! and the same on every platform and version (docs/reliability.md §2.3: the routing hash must be
//! stable and seedless; the random-seeded hash of the in-memory tables is a different one). The
//! consequence: a key lands in a different group than it would in Flink, so Pinwheel checkpoints
//! are not Flink savepoints; the *ranges* and *shard* formulas are Flink's exactly.
//!
//! **Skew.** Being seedless, the routing hash can be aimed at: an adversary can pick many keys of
//! one group. That skews load onto one shard, which must then degrade linearly (its in-shard tables
//! are random-seeded), never quadratically.
//!
//! Complexity: every function here is O(1) (one hash of the key's bytes, a few integer operations),
//! except iterating a range.

use xxhash_rust::xxh3::xxh3_64;

use crate::key::Key;

/// The version of the key → key group function, recorded in checkpoints.
///
/// Version 1: `xxh3_64(canonical key bytes, seed 0) % max_key_groups`, where the canonical bytes
/// are those of [`Key::write_canonical`] and the hash is [`Key::canonical_hash`].
///
/// Restoring a checkpoint whose version differs must be refused: every key would be looked up in
/// the wrong group. **Never change the hash, the canonical encoding of any key type, or the
/// formula without bumping this number** (the frozen vectors in this module's tests fail if any of
/// them changes).
pub const KEY_GROUP_FUNCTION_VERSION: u32 = 1;

/// The largest number of key groups: 32768 (`1 << 15`), Flink's `UPPER_BOUND_MAX_PARALLELISM`.
pub const MAX_KEY_GROUPS_UPPER_BOUND: u32 = 1 << 15;

/// The smallest default number of key groups: 128, Flink's `DEFAULT_LOWER_BOUND_MAX_PARALLELISM`.
pub const DEFAULT_MAX_KEY_GROUPS_LOWER_BOUND: u32 = 128;

/// A key group: an index in `[0, max_key_groups)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyGroup(pub u32);

/// A non-empty, contiguous, inclusive range of key groups: the groups one shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    start: u32,
    end: u32,
}

impl KeyGroupRange {
    /// The range `[start, end]` (both inclusive).
    ///
    /// # Errors
    ///
    /// [`KeyGroupError::EmptyRange`] if `start > end`.
    pub fn new(start: KeyGroup, end: KeyGroup) -> Result<Self, KeyGroupError> {
        if start.0 > end.0 {
            return Err(KeyGroupError::EmptyRange { start: start.0, end: end.0 });
        }
        Ok(KeyGroupRange { start: start.0, end: end.0 })
    }

    /// The first group of the range.
    pub fn start(&self) -> KeyGroup {
        KeyGroup(self.start)
    }

    /// The last group of the range (inclusive).
    pub fn end(&self) -> KeyGroup {
        KeyGroup(self.end)
    }

    /// True if `kg` is in the range.
    pub fn contains(&self, kg: KeyGroup) -> bool {
        self.start <= kg.0 && kg.0 <= self.end
    }

    /// The number of groups in the range (at least 1).
    // A range is never empty, so there is no `is_empty` to pair with `len`.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u32 {
        self.end - self.start + 1
    }

    /// The groups of the range, in increasing order.
    pub fn iter(&self) -> KeyGroupRangeIter {
        KeyGroupRangeIter { inner: self.start..=self.end }
    }
}

impl IntoIterator for KeyGroupRange {
    type Item = KeyGroup;
    type IntoIter = KeyGroupRangeIter;

    fn into_iter(self) -> KeyGroupRangeIter {
        self.iter()
    }
}

impl IntoIterator for &KeyGroupRange {
    type Item = KeyGroup;
    type IntoIter = KeyGroupRangeIter;

    fn into_iter(self) -> KeyGroupRangeIter {
        self.iter()
    }
}

/// The iterator of [`KeyGroupRange::iter`].
#[derive(Debug, Clone)]
pub struct KeyGroupRangeIter {
    inner: std::ops::RangeInclusive<u32>,
}

impl Iterator for KeyGroupRangeIter {
    type Item = KeyGroup;

    fn next(&mut self) -> Option<KeyGroup> {
        self.inner.next().map(KeyGroup)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl DoubleEndedIterator for KeyGroupRangeIter {
    fn next_back(&mut self) -> Option<KeyGroup> {
        self.inner.next_back().map(KeyGroup)
    }
}

impl ExactSizeIterator for KeyGroupRangeIter {}

impl std::iter::FusedIterator for KeyGroupRangeIter {}

/// Errors of the key-group functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyGroupError {
    /// The number of key groups is outside `1..=32768`.
    #[error("max key groups must be in 1..={MAX_KEY_GROUPS_UPPER_BOUND}, not {max_key_groups}")]
    InvalidMaxKeyGroups {
        /// The number asked for.
        max_key_groups: u32,
    },
    /// No shard: a job needs at least one.
    #[error("the shard count must be at least 1")]
    NoShards,
    /// More shards than key groups: some shard would own no group.
    #[error(
        "{shards} shards exceed the {max_key_groups} key groups: each shard needs at least one"
    )]
    TooManyShards {
        /// The shard count.
        shards: usize,
        /// The number of key groups.
        max_key_groups: u32,
    },
    /// A shard index not below the shard count.
    #[error("shard index {shard} is out of range for {shards} shards")]
    ShardOutOfRange {
        /// The shard index.
        shard: usize,
        /// The shard count.
        shards: usize,
    },
    /// A key group not below the number of key groups.
    #[error("key group {key_group} is out of range for {max_key_groups} key groups")]
    KeyGroupOutOfRange {
        /// The key group.
        key_group: u32,
        /// The number of key groups.
        max_key_groups: u32,
    },
    /// A range whose start is after its end.
    #[error("key group range [{start}, {end}] is empty")]
    EmptyRange {
        /// The first group asked for.
        start: u32,
        /// The last group asked for.
        end: u32,
    },
}

/// The default number of key groups for a job with `shards` shards: Flink's
/// `computeDefaultMaxParallelism`, `min(max(next_power_of_two(shards + shards / 2), 128), 32768)`.
///
/// It leaves room to scale out to about 1.5× the shards (and at least to 128) without changing the
/// number of key groups, which can never change once state exists. Any `shards` is accepted
/// (0 gives 128, huge counts saturate at 32768).
pub fn default_max_key_groups(shards: usize) -> u32 {
    let wanted = shards.saturating_add(shards / 2);
    let pow2 = wanted.checked_next_power_of_two().unwrap_or(usize::MAX);
    let bounded = pow2
        .clamp(DEFAULT_MAX_KEY_GROUPS_LOWER_BOUND as usize, MAX_KEY_GROUPS_UPPER_BOUND as usize);
    // In 128..=32768 after the clamp, so the conversion cannot fail.
    u32::try_from(bounded).unwrap_or(MAX_KEY_GROUPS_UPPER_BOUND)
}

/// The key-group assignment for a fixed number of key groups (`max_key_groups`, Flink's "max
/// parallelism"): key → group, group → shard, shard → range of groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroups {
    max: u32,
    /// `log2(max)` when `max` is a power of two (always, for the default), so that `% max`
    /// becomes a mask and `/ max` a shift: the same results, without a 64-bit division.
    pow2_shift: Option<u32>,
    /// `max - 1` when `max` is a power of two, else 0: the mask itself, computed once.
    pow2_mask: u64,
}

impl KeyGroups {
    /// An assignment over `max_key_groups` groups.
    ///
    /// # Errors
    ///
    /// [`KeyGroupError::InvalidMaxKeyGroups`] unless `1 <= max_key_groups <= 32768`.
    pub fn new(max_key_groups: u32) -> Result<Self, KeyGroupError> {
        if max_key_groups == 0 || max_key_groups > MAX_KEY_GROUPS_UPPER_BOUND {
            return Err(KeyGroupError::InvalidMaxKeyGroups { max_key_groups });
        }
        Ok(KeyGroups::with_max(max_key_groups))
    }

    /// Builds the assignment for a `max` already known to be in `1..=32768`.
    fn with_max(max: u32) -> Self {
        let pow2_shift = max.is_power_of_two().then(|| max.trailing_zeros());
        let pow2_mask = if max.is_power_of_two() { u64::from(max) - 1 } else { 0 };
        KeyGroups { max, pow2_shift, pow2_mask }
    }

    /// The assignment with the default number of key groups for `shards` shards
    /// ([`default_max_key_groups`]); never fails.
    pub fn for_shards(shards: usize) -> Self {
        KeyGroups::with_max(default_max_key_groups(shards))
    }

    /// The number of key groups.
    pub fn max_key_groups(&self) -> u32 {
        self.max
    }

    /// The group of a key whose routing hash ([`Key::canonical_hash`]) is `hash`: `hash %
    /// max_key_groups`.
    #[inline]
    pub fn key_group_of_hash(&self, hash: u64) -> KeyGroup {
        // The remainder is below `max`, a `u32`. For a power-of-two `max` the mask is the same
        // remainder (tested against `%` for every kind of `max`); `max = 1` has mask 0 and
        // remainder 0 both ways.
        if self.pow2_shift.is_some() {
            KeyGroup((hash & self.pow2_mask) as u32)
        } else {
            KeyGroup((hash % u64::from(self.max)) as u32)
        }
    }

    /// The group of `key` ([`KEY_GROUP_FUNCTION_VERSION`] 1).
    #[inline]
    pub fn key_group_of<K: Key>(&self, key: &K) -> KeyGroup {
        self.key_group_of_hash(key.canonical_hash())
    }

    /// The group of a key given by its canonical bytes: `xxh3_64(bytes) % max_key_groups`.
    #[inline]
    pub fn key_group_of_bytes(&self, canonical_bytes: &[u8]) -> KeyGroup {
        self.key_group_of_hash(xxh3_64(canonical_bytes))
    }

    fn check_shards(&self, shards: usize) -> Result<(), KeyGroupError> {
        if shards == 0 {
            return Err(KeyGroupError::NoShards);
        }
        if shards > self.max as usize {
            return Err(KeyGroupError::TooManyShards { shards, max_key_groups: self.max });
        }
        Ok(())
    }

    /// The groups shard `shard` of `shards` owns: `[(shard*max + shards - 1) / shards,
    /// ((shard+1)*max - 1) / shards]` (Flink's `computeKeyGroupRangeForOperatorIndex`).
    ///
    /// # Errors
    ///
    /// [`KeyGroupError::NoShards`], [`KeyGroupError::TooManyShards`] (more shards than groups), or
    /// [`KeyGroupError::ShardOutOfRange`] (`shard >= shards`).
    pub fn range_for_shard(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<KeyGroupRange, KeyGroupError> {
        self.check_shards(shards)?;
        if shard >= shards {
            return Err(KeyGroupError::ShardOutOfRange { shard, shards });
        }
        // shards <= max <= 2^15 and shard < shards: every product below is < 2^31.
        let (i, p, max) = (shard as u64, shards as u64, u64::from(self.max));
        let start = (i * max).div_ceil(p);
        let end = ((i + 1) * max - 1) / p;
        Ok(KeyGroupRange { start: start as u32, end: end as u32 })
    }

    /// The shard that owns `kg` among `shards`: `kg * shards / max` (Flink's
    /// `computeOperatorIndexForKeyGroup`), computed in `u64` so it cannot overflow.
    ///
    /// This is the per-record routing step, so it does not return a `Result`. Its contract is
    /// `kg < max_key_groups` (true of every group this type computes) and `1 <= shards <=
    /// max_key_groups` (check it once with [`range_for_shard`](Self::range_for_shard) or
    /// [`try_shard_for_key_group`](Self::try_shard_for_key_group) when the shard count is set).
    /// Outside it the function still does not panic in release builds: the result is clamped to
    /// `shards - 1` (0 when `shards` is 0); debug builds assert the contract.
    #[inline]
    pub fn shard_for_key_group(&self, kg: KeyGroup, shards: usize) -> usize {
        debug_assert!(
            kg.0 < self.max,
            "key group {} out of range for {} key groups",
            kg.0,
            self.max
        );
        debug_assert!(
            shards >= 1 && shards <= self.max as usize,
            "{shards} shards for {} key groups",
            self.max
        );
        if kg.0 < self.max && shards.wrapping_sub(1) < self.max as usize {
            // In contract: kg < max <= 2^15 and shards <= max, so the product is < 2^30 and the
            // quotient < shards; 32-bit arithmetic, and a shift for a power-of-two `max`.
            let product = kg.0 * shards as u32;
            let shard = match self.pow2_shift {
                Some(shift) => product >> shift,
                None => product / self.max,
            };
            return shard as usize;
        }
        // Out of contract: u64 arithmetic cannot overflow for kg < 2^32 and shards < 2^32; larger
        // shard counts saturate; the result is clamped to an existing shard.
        let shard = u64::from(kg.0).saturating_mul(shards as u64) / u64::from(self.max);
        usize::try_from(shard).unwrap_or(usize::MAX).min(shards.saturating_sub(1))
    }

    /// [`shard_for_key_group`](Self::shard_for_key_group) with its contract checked.
    ///
    /// # Errors
    ///
    /// [`KeyGroupError::NoShards`], [`KeyGroupError::TooManyShards`], or
    /// [`KeyGroupError::KeyGroupOutOfRange`] (`kg >= max_key_groups`).
    pub fn try_shard_for_key_group(
        &self,
        kg: KeyGroup,
        shards: usize,
    ) -> Result<usize, KeyGroupError> {
        self.check_shards(shards)?;
        if kg.0 >= self.max {
            return Err(KeyGroupError::KeyGroupOutOfRange {
                key_group: kg.0,
                max_key_groups: self.max,
            });
        }
        Ok(self.shard_for_key_group(kg, shards))
    }

    /// The shard that owns `key` among `shards`: [`shard_for_key_group`](Self::shard_for_key_group)
    /// of [`key_group_of`](Self::key_group_of), with the same contract on `shards`.
    #[inline]
    pub fn shard_for_key<K: Key>(&self, key: &K, shards: usize) -> usize {
        self.shard_for_key_group(self.key_group_of(key), shards)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn kg128() -> KeyGroups {
        KeyGroups::new(128).unwrap()
    }

    fn ranges(max: u32, shards: usize) -> Vec<(u32, u32)> {
        let g = KeyGroups::new(max).unwrap();
        (0..shards)
            .map(|i| {
                let r = g.range_for_shard(i, shards).unwrap();
                (r.start().0, r.end().0)
            })
            .collect()
    }

    /// Frozen vectors: the key groups of fixed keys under [`KEY_GROUP_FUNCTION_VERSION`] 1. If this
    /// test fails, the hash, a key type's canonical encoding or the formula changed: that breaks
    /// every existing checkpoint, so bump the version instead of editing the numbers.
    #[test]
    fn frozen_key_group_vectors_version_1() {
        assert_eq!(KEY_GROUP_FUNCTION_VERSION, 1);
        let g128 = kg128();
        let gmax = KeyGroups::new(32768).unwrap();
        // (routing hash, group for 128 groups, group for 32768 groups), checked against the
        // reference C implementation of XXH3 (python-xxhash) on the same canonical bytes.
        // `u64::MAX` and `-1i64` share their canonical bytes (eight 0xff), hence their group.
        macro_rules! case {
            ($key:expr, $hash:expr, $g128:expr, $gmax:expr) => {{
                let key = $key;
                let got =
                    (key.canonical_hash(), g128.key_group_of(&key).0, gmax.key_group_of(&key).0);
                assert_eq!(got, ($hash, $g128, $gmax), "{}", stringify!($key));
            }};
        }
        case!(0u64, 0xc77b_3abb_6f87_acd9, 89, 11481);
        case!(1u64, 0x2fbc_5935_64db_792e, 46, 31022);
        case!(42u64, 0xd5a6_f8c8_38df_27c8, 72, 10184);
        case!(u64::MAX, 0x5111_c7e4_7d78_4413, 19, 17427);
        case!(-1i64, 0x5111_c7e4_7d78_4413, 19, 17427);
        case!(7u32, 0x57ae_4481_1628_c14c, 76, 16716);
        case!("a", 0xe6c6_32b6_1e96_4e1f, 31, 19999);
        case!("a".to_string(), 0xe6c6_32b6_1e96_4e1f, 31, 19999);
        case!("user-1".to_string(), 0x7c76_15c1_1438_e5c9, 73, 26057);
        case!(String::new(), 0x2d06_8005_38d3_94c2, 66, 5314);
        case!(Vec::<u8>::new(), 0x2d06_8005_38d3_94c2, 66, 5314);
        case!(("a".to_string(), 1u32), 0x65cd_13de_717f_ec5f, 95, 27743);
        // The hash-level entry point agrees.
        assert_eq!(g128.key_group_of_hash(0x65cd_13de_717f_ec5f), KeyGroup(95));
        assert_eq!(gmax.key_group_of_bytes(b"user-1"), KeyGroup(26057));
    }

    #[test]
    fn flink_range_vectors() {
        // docs/semantics.md C1.
        assert_eq!(ranges(128, 3), [(0, 42), (43, 85), (86, 127)]);
        assert_eq!(ranges(128, 5), [(0, 25), (26, 51), (52, 76), (77, 102), (103, 127)]);
        assert_eq!(ranges(128, 1), [(0, 127)]);
        assert_eq!(ranges(128, 128).len(), 128);
        // And C1's group → subtask columns for maxP 128 (the groups are Flink's, the formula ours).
        let g = kg128();
        for (kg, p2, p3, p4) in [
            (81, 1, 1, 2),
            (22, 0, 0, 0),
            (62, 0, 1, 1),
            (104, 1, 2, 3),
            (41, 0, 0, 1),
            (121, 1, 2, 3),
        ] {
            assert_eq!(g.shard_for_key_group(KeyGroup(kg), 2), p2);
            assert_eq!(g.shard_for_key_group(KeyGroup(kg), 3), p3);
            assert_eq!(g.shard_for_key_group(KeyGroup(kg), 4), p4);
        }
    }

    #[test]
    fn flink_default_max_key_groups() {
        // docs/semantics.md C1: computeDefaultMaxParallelism.
        for (shards, max) in
            [(1, 128), (2, 128), (85, 128), (86, 256), (200, 512), (1000, 2048), (30000, 32768)]
        {
            assert_eq!(default_max_key_groups(shards), max, "shards {shards}");
        }
        assert_eq!(default_max_key_groups(0), 128);
        assert_eq!(default_max_key_groups(usize::MAX), 32768);
        assert_eq!(default_max_key_groups(usize::MAX / 2 + 7), 32768);
        assert_eq!(KeyGroups::for_shards(86).max_key_groups(), 256);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            KeyGroups::new(0),
            Err(KeyGroupError::InvalidMaxKeyGroups { max_key_groups: 0 })
        );
        assert_eq!(
            KeyGroups::new(32769),
            Err(KeyGroupError::InvalidMaxKeyGroups { max_key_groups: 32769 })
        );
        assert!(KeyGroups::new(1).is_ok() && KeyGroups::new(32768).is_ok());
        let g = kg128();
        assert_eq!(g.range_for_shard(0, 0), Err(KeyGroupError::NoShards));
        assert_eq!(
            g.range_for_shard(0, 129),
            Err(KeyGroupError::TooManyShards { shards: 129, max_key_groups: 128 })
        );
        assert_eq!(
            g.range_for_shard(3, 3),
            Err(KeyGroupError::ShardOutOfRange { shard: 3, shards: 3 })
        );
        assert_eq!(g.try_shard_for_key_group(KeyGroup(0), 0), Err(KeyGroupError::NoShards));
        assert_eq!(
            g.try_shard_for_key_group(KeyGroup(128), 2),
            Err(KeyGroupError::KeyGroupOutOfRange { key_group: 128, max_key_groups: 128 })
        );
        assert_eq!(
            g.try_shard_for_key_group(KeyGroup(u32::MAX), usize::MAX),
            Err(KeyGroupError::TooManyShards { shards: usize::MAX, max_key_groups: 128 })
        );
        assert_eq!(
            KeyGroupRange::new(KeyGroup(5), KeyGroup(4)),
            Err(KeyGroupError::EmptyRange { start: 5, end: 4 })
        );
        assert_eq!(
            KeyGroupError::TooManyShards { shards: 200, max_key_groups: 128 }.to_string(),
            "200 shards exceed the 128 key groups: each shard needs at least one"
        );
    }

    /// Out of contract, debug builds assert; release builds clamp instead of routing to a shard
    /// that does not exist.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "out of range"))]
    fn shard_for_key_group_out_of_contract() {
        let g = kg128();
        assert_eq!(g.shard_for_key_group(KeyGroup(1000), 4), 3);
        // An absurd shard count: the product saturates, the result is still below `shards`.
        assert!(g.shard_for_key_group(KeyGroup(u32::MAX), usize::MAX) < usize::MAX);
        assert_eq!(g.shard_for_key_group(KeyGroup(5), 0), 0);
    }

    #[test]
    fn range_basics() {
        let r = KeyGroupRange::new(KeyGroup(3), KeyGroup(6)).unwrap();
        assert_eq!(r.len(), 4);
        assert!(r.contains(KeyGroup(3)) && r.contains(KeyGroup(6)));
        assert!(!r.contains(KeyGroup(2)) && !r.contains(KeyGroup(7)));
        assert_eq!(r.iter().map(|k| k.0).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!(r.iter().len(), 4);
        assert_eq!(r.into_iter().next_back(), Some(KeyGroup(6)));
        let single = KeyGroupRange::new(KeyGroup(u32::MAX), KeyGroup(u32::MAX)).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!((&single).into_iter().count(), 1);
    }

    #[test]
    fn bytes_and_keys_agree() {
        let g = KeyGroups::new(1000).unwrap();
        let key = ("user".to_string(), 7u64);
        let mut bytes = Vec::new();
        key.write_canonical(&mut bytes);
        assert_eq!(g.key_group_of(&key), g.key_group_of_bytes(&bytes));
        assert_eq!(g.shard_for_key(&key, 7), g.shard_for_key_group(g.key_group_of(&key), 7));
        assert_eq!(
            g.try_shard_for_key_group(g.key_group_of(&key), 7),
            Ok(g.shard_for_key(&key, 7))
        );
    }

    proptest! {
        /// The ranges partition `[0, max)` in order, their sizes differ by at most one, and
        /// `shard_for_key_group` agrees with `range_for_shard` for every group.
        #[test]
        fn ranges_partition_and_agree(max in 1u32..=32768, shards_seed in any::<u32>()) {
            let shards = (shards_seed % max) as usize + 1;
            let g = KeyGroups::new(max).unwrap();
            let mut next = 0u32;
            let (mut smallest, mut largest) = (u32::MAX, 0);
            for i in 0..shards {
                let r = g.range_for_shard(i, shards).unwrap();
                prop_assert_eq!(r.start().0, next);
                smallest = smallest.min(r.len());
                largest = largest.max(r.len());
                for kg in r.iter() {
                    prop_assert_eq!(g.shard_for_key_group(kg, shards), i);
                }
                next = r.end().0 + 1;
            }
            prop_assert_eq!(next, max);
            prop_assert!(largest - smallest <= 1);
        }

        /// The power-of-two fast paths give exactly `hash % max` and `kg * shards / max`.
        #[test]
        fn fast_paths_equal_the_formulas(hash in any::<u64>(), max in 1u32..=32768, pow2 in 0u32..=15, seed in any::<u32>()) {
            for max in [max, 1 << pow2] {
                let g = KeyGroups::new(max).unwrap();
                let kg = g.key_group_of_hash(hash);
                prop_assert_eq!(u64::from(kg.0), hash % u64::from(max));
                let shards = (seed % max) as usize + 1;
                let want = u64::from(kg.0) * shards as u64 / u64::from(max);
                prop_assert_eq!(g.shard_for_key_group(kg, shards) as u64, want);
            }
        }

        /// Any key's group is in range, and its shard owns the group.
        #[test]
        fn keys_land_in_range(key in any::<u64>(), name in ".{0,24}", max in 1u32..=32768, shards_seed in any::<u32>()) {
            let shards = (shards_seed % max) as usize + 1;
            let g = KeyGroups::new(max).unwrap();
            for kg in [g.key_group_of(&key), g.key_group_of(&name), g.key_group_of(&(name.clone(), key))] {
                prop_assert!(kg.0 < max);
                let shard = g.shard_for_key_group(kg, shards);
                prop_assert_eq!(g.try_shard_for_key_group(kg, shards), Ok(shard));
                prop_assert!(g.range_for_shard(shard, shards).unwrap().contains(kg));
            }
        }
    }
}
