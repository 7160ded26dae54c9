//! Round trips of the checkpoint layer (docs/reliability.md test 16, first half):
//!
//! * `shard_file_roundtrip` (proptest, 48 cases): random sections — kinds, sizes 0..200 KiB,
//!   exact multiples of the block size, sections spanning many blocks, several sections of the
//!   same kind in a row — written with `write_shard_file` at random block sizes and read back
//!   with `read_shard_file`: identical metadata and sections, in order. Catches block splitting
//!   and section boundaries that merge or drop sections, off-by-one sizes, and a planned size
//!   that differs from what the encoder writes.
//! * `manifest_roundtrip` (proptest, 256 cases): random manifests encode and decode to the same
//!   value. Catches fields encoded in the wrong order or width, and signed values mangled.
//! * `written_files_are_exact_and_published`: the published name, size on disk = declared size,
//!   mode 0600, no temporary file left after a successful write, and a manifest written and read
//!   back through the directory.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::fresh_dir;
use pinwheel_engine::checkpoint::{
    CheckpointKind, ExpectedFile, MAX_BLOCK_SIZE, Manifest, ManifestShard, ShardFileMeta,
    WriteOptions, read_manifest, read_shard_file, shard_file_name, write_manifest,
    write_shard_file,
};
use pinwheel_engine::keygroup::{KeyGroup, KeyGroupRange, KeyGroups};
use proptest::prelude::*;

fn section() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let len = prop_oneof![
        3 => 0usize..2000,
        1 => Just(0usize),
        1 => Just(MAX_BLOCK_SIZE as usize),
        1 => Just(2 * MAX_BLOCK_SIZE as usize),
        2 => 0usize..200 * 1024,
    ];
    (any::<u8>(), len, any::<u8>()).prop_map(|(kind, len, fill)| {
        (kind, (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(fill)).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn shard_file_roundtrip(
        sections in prop::collection::vec(section(), 0..6),
        block_size in prop_oneof![Just(16u32), Just(1000), Just(4096), Just(MAX_BLOCK_SIZE)],
        checkpoint in any::<u64>(),
        (shard_count, shard) in (1u32..8).prop_flat_map(|n| (Just(n), 0..n)),
    ) {
        let dir = fresh_dir("roundtrip");
        let range = KeyGroups::new(128).unwrap().range_for_shard(shard as usize, shard_count as usize).unwrap();
        let meta = ShardFileMeta::new(checkpoint, shard, shard_count, range);
        let refs: Vec<(u8, &[u8])> = sections.iter().map(|(k, d)| (*k, d.as_slice())).collect();
        let options = WriteOptions::default().with_block_size(block_size);
        let written = write_shard_file(&dir, &meta, &refs, &options).unwrap();
        let expected = ExpectedFile::new(checkpoint, shard, shard_count, range)
            .with_size_and_digest(written.size, written.digest);
        let file = read_shard_file(&written.path, Some(&expected), u64::MAX).unwrap();
        prop_assert_eq!(&file.sections, &sections);
        prop_assert_eq!(file.meta.checkpoint, checkpoint);
        prop_assert_eq!(file.meta.shard, shard);
        prop_assert_eq!(file.meta.shard_count, shard_count);
        prop_assert_eq!(file.meta.key_groups, range);
        prop_assert_eq!(file.meta.block_size, block_size);
        prop_assert_eq!(file.meta.file_size, written.size);
        prop_assert_eq!(file.meta.digest, written.digest);
        prop_assert_eq!(file.meta.payload_len, sections.iter().map(|(_, d)| d.len() as u64).sum::<u64>());
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn manifest_roundtrip(
        checkpoint in any::<u64>(),
        savepoint in any::<bool>(),
        max_key_groups in prop_oneof![Just(1u32), Just(128), 1u32..=32768],
        digests in prop::collection::vec((any::<u64>(), any::<u64>(), any::<i64>()), 1..16),
        positions in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6),
        created in any::<i64>(),
    ) {
        let shard_count = (digests.len() as u32).min(max_key_groups).max(1);
        let groups = KeyGroups::new(max_key_groups).unwrap();
        let shards: Vec<ManifestShard> = (0..shard_count)
            .map(|s| {
                let range = groups.range_for_shard(s as usize, shard_count as usize).unwrap();
                let (size, digest, watermark) = digests[s as usize];
                ManifestShard::from_parts(s, range, shard_file_name(checkpoint, s), size, digest, watermark)
            })
            .collect();
        let kind = if savepoint { CheckpointKind::Savepoint } else { CheckpointKind::Checkpoint };
        let m = Manifest::new(checkpoint, kind, max_key_groups, shards, positions, created).unwrap();
        let bytes = m.encode().unwrap();
        prop_assert_eq!(Manifest::decode(std::path::Path::new("m"), &bytes).unwrap(), m.clone());
    }
}

#[test]
fn written_files_are_exact_and_published() {
    let dir = fresh_dir("published");
    let range1 = KeyGroupRange::new(KeyGroup(64), KeyGroup(127)).unwrap();
    let data = common::bytes(1, 100_000);
    let written = write_shard_file(
        &dir,
        &ShardFileMeta::new(42, 1, 2, range1).with_attempt(3),
        &[(7, &data)],
        &WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(common::file_names(&dir), vec![shard_file_name(42, 1)]);
    assert_eq!(written.path, dir.path().join("ckpt-00000000000000000042-s0001.dat"));
    let meta = std::fs::metadata(&written.path).unwrap();
    assert_eq!(meta.len(), written.size);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let range0 = KeyGroupRange::new(KeyGroup(0), KeyGroup(63)).unwrap();
    let first = write_shard_file(
        &dir,
        &ShardFileMeta::new(42, 0, 2, range0),
        &[],
        &WriteOptions::default(),
    )
    .unwrap();
    let shards =
        vec![ManifestShard::new(0, range0, &first, -5), ManifestShard::new(1, range1, &written, 9)];
    let m =
        Manifest::new(42, CheckpointKind::Checkpoint, 128, shards, vec![b"x".to_vec()], 0).unwrap();
    let path = write_manifest(&dir, &m, &WriteOptions::default()).unwrap();
    assert_eq!(path, dir.path().join("MANIFEST-00000000000000000042"));
    assert_eq!(read_manifest(&path, u64::MAX).unwrap(), m);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(common::file_names(&dir).iter().all(|n| !n.ends_with(".tmp")));
}
