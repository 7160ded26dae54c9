//! Helpers shared by the `checkpoint_*` test files: fresh directories under Cargo's target
//! temporary directory (never the system one), and whole checkpoints written the way a
//! coordinator will write them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use pinwheel_engine::checkpoint::{
    CheckpointDir, CheckpointError, CheckpointKind, Manifest, ManifestShard, ShardFileMeta,
    WriteOptions, write_manifest, write_shard_file,
};
use pinwheel_engine::keygroup::KeyGroups;

/// A path that does not exist yet, unique to this process and call, under the target directory.
pub(crate) fn fresh_path(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("checkpoint-tests");
    std::fs::create_dir_all(&root).unwrap();
    let path =
        root.join(format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// A fresh, empty checkpoint directory.
pub(crate) fn fresh_dir(name: &str) -> CheckpointDir {
    CheckpointDir::open_or_create(fresh_path(name)).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The sections shard `shard` of checkpoint `checkpoint` writes in these tests.
pub(crate) fn sections_for(checkpoint: u64, shard: u32) -> Vec<(u8, Vec<u8>)> {
    let seed = checkpoint * 1000 + u64::from(shard);
    vec![(1, bytes(seed, 3000)), (2, bytes(seed + 1, 10)), (3, Vec::new())]
}

/// Writes checkpoint `checkpoint` of `shard_count` shards over 128 key groups, every shard file
/// then the manifest, and returns the manifest.
pub(crate) fn write_checkpoint(
    dir: &CheckpointDir,
    checkpoint: u64,
    shard_count: u32,
    kind: CheckpointKind,
    options: &WriteOptions,
) -> Result<Manifest, CheckpointError> {
    let groups = KeyGroups::new(128).unwrap();
    let mut shards = Vec::new();
    for s in 0..shard_count {
        let range = groups.range_for_shard(s as usize, shard_count as usize).unwrap();
        let sections = sections_for(checkpoint, s);
        let refs: Vec<(u8, &[u8])> = sections.iter().map(|(k, d)| (*k, d.as_slice())).collect();
        let written = write_shard_file(
            dir,
            &ShardFileMeta::new(checkpoint, s, shard_count, range),
            &refs,
            options,
        )?;
        shards.push(ManifestShard::new(s, range, &written, checkpoint as i64 * 10));
    }
    let manifest = Manifest::new(
        checkpoint,
        kind,
        128,
        shards,
        vec![checkpoint.to_le_bytes().to_vec(), b"partition-1".to_vec()],
        1_700_000_000_000,
    )?;
    write_manifest(dir, &manifest, options)?;
    Ok(manifest)
}

/// The names of the files in `dir`, sorted.
pub(crate) fn file_names(dir: &CheckpointDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// CRC32C, for fixing up damaged or random bytes the way a malicious or buggy writer would: the
/// Castagnoli polynomial, reflected, bitwise — independent of the crate under test.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
