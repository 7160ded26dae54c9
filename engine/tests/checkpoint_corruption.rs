//! Damaged and mismatched checkpoint files are always refused (docs/reliability.md tests 12 and
//! 14), with a typed error that names the file and an offset inside the damaged structure.
//!
//! * `corrupt_every_byte_detected` (test 12), on a file of about 64 KiB with 4 KiB blocks:
//!   XOR 0xFF at every offset; truncation at every length; each 4 KiB page zeroed; two blocks
//!   swapped; each block, the header and the footer transplanted from another shard's and from
//!   another checkpoint's file at the same position; a header claiming a larger size (with its
//!   CRC fixed up, and with the file really grown); 10,000 random single-bit flips and 1,000
//!   random multi-byte damages. 100 % must be detected, without a panic. For the single-byte
//!   and page cases the error's offset must lie in the damaged structure (header, block or
//!   footer), which catches a validator that detects damage late or blames the wrong place.
//!   Validation runs in memory (`validate_bytes`, what the reader runs), so the 65 k cases do
//!   not touch the disk.
//! * `mixed_or_mismatched_checkpoints_rejected` (test 14): a manifest naming a file of another
//!   checkpoint id (copied in place, or named), another shard count, another shard, another
//!   key-group range, a wrong size, a wrong digest; a future shard file format version, a future
//!   manifest version, another key-group function version. Each must be refused with its
//!   specific error kind (a generic "corrupt" would hide which guarantee failed).

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};

use common::{crc32c, fresh_dir, write_checkpoint};
use pinwheel_engine::checkpoint::{
    CheckpointError, CheckpointKind, CorruptKind, FORMAT_VERSION, FileLayout, MANIFEST_VERSION,
    Manifest, ManifestShard, MismatchField, RestorePolicy, ShardFileMeta, WriteOptions,
    manifest_name, read_manifest, shard_file_name, validate_bytes, write_manifest,
    write_shard_file,
};
use pinwheel_engine::keygroup::{KeyGroup, KeyGroupRange, KeyGroups};

const BLOCK: u32 = 4096;

/// The sections of the test file: about 64 KiB, with a section spanning several blocks, one
/// that is an exact multiple of the block size, an empty one and two of the same kind in a row.
fn sections() -> Vec<(u8, Vec<u8>)> {
    vec![
        (1, common::bytes(1, 20_000)),
        (2, common::bytes(2, 3 * BLOCK as usize)),
        (2, common::bytes(3, 17)),
        (3, Vec::new()),
        (4, common::bytes(4, 30_000)),
    ]
}

/// Writes the test file for `checkpoint` / `shard` and returns its path and bytes.
fn test_file(
    dir: &pinwheel_engine::checkpoint::CheckpointDir,
    checkpoint: u64,
    shard: u32,
) -> (PathBuf, Vec<u8>) {
    let range = KeyGroups::new(128).unwrap().range_for_shard(shard as usize, 4).unwrap();
    let sections = sections();
    let refs: Vec<(u8, &[u8])> = sections.iter().map(|(k, d)| (*k, d.as_slice())).collect();
    let options = WriteOptions::default().with_block_size(BLOCK);
    let written =
        write_shard_file(dir, &ShardFileMeta::new(checkpoint, shard, 4, range), &refs, &options)
            .unwrap();
    let bytes = std::fs::read(&written.path).unwrap();
    (written.path, bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Header,
    Block(usize),
    Footer,
}

fn part_of(layout: &FileLayout, offset: u64) -> Part {
    if layout.header.contains(&offset) {
        return Part::Header;
    }
    if let Some(i) = layout.blocks.iter().position(|b| b.contains(&offset)) {
        return Part::Block(i);
    }
    assert!(layout.footer.contains(&offset), "offset {offset} outside the file");
    Part::Footer
}

fn range_of(layout: &FileLayout, part: Part) -> Range<u64> {
    match part {
        Part::Header => layout.header.clone(),
        Part::Block(i) => layout.blocks[i].clone(),
        Part::Footer => layout.footer.clone(),
    }
}

/// Validates `bytes` and returns the offset of the `Corrupt` error, failing on anything else.
fn corrupt_offset(name: &Path, bytes: &[u8], what: &str) -> u64 {
    match validate_bytes(name, bytes) {
        Err(CheckpointError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, name, "{what}: the error must name the file");
            offset
        }
        Err(other) => panic!("{what}: expected Corrupt, got {other}"),
        Ok(_) => panic!("{what}: damage not detected"),
    }
}

#[test]
fn corrupt_every_byte_detected() {
    let dir = fresh_dir("corrupt");
    let (path, original) = test_file(&dir, 10, 1);
    let layout = FileLayout::of(&path, &original).unwrap();
    assert!((60_000..70_000).contains(&original.len()), "{} bytes", original.len());
    assert!(layout.blocks.len() >= 16, "{} blocks", layout.blocks.len());
    let mut bytes = original.clone();

    // XOR 0xFF at every offset: detected, located in the damaged structure.
    for o in 0..bytes.len() {
        bytes[o] ^= 0xFF;
        let e = corrupt_offset(&path, &bytes, &format!("byte {o}"));
        bytes[o] ^= 0xFF;
        assert_eq!(
            part_of(&layout, e),
            part_of(&layout, o as u64),
            "byte {o} blamed on offset {e}"
        );
    }
    assert_eq!(bytes, original);

    // Truncation at every length.
    for len in 0..bytes.len() {
        let e = corrupt_offset(&path, &bytes[..len], &format!("truncated to {len}"));
        assert!(e <= len.max(128) as u64, "truncated to {len}: offset {e}");
    }

    // Each 4 KiB page zeroed: the error lies in a structure overlapping the page.
    for start in (0..bytes.len()).step_by(4096) {
        let end = (start + 4096).min(bytes.len());
        let mut damaged = original.clone();
        damaged[start..end].fill(0);
        let e = corrupt_offset(&path, &damaged, &format!("page at {start}"));
        let r = range_of(&layout, part_of(&layout, e));
        assert!(
            r.start < end as u64 && (start as u64) < r.end,
            "page {start}..{end} blamed on {e}"
        );
    }

    // Two full blocks of the same length swapped, and two adjacent blocks of different lengths.
    let full: Vec<usize> = (0..layout.blocks.len())
        .filter(|&i| layout.blocks[i].end - layout.blocks[i].start == u64::from(BLOCK) + 9)
        .collect();
    assert!(full.len() >= 4);
    let (a, b) = (layout.blocks[full[0]].clone(), layout.blocks[full[3]].clone());
    let mut swapped = original.clone();
    let block_a = original[a.start as usize..a.end as usize].to_vec();
    swapped.copy_within(b.start as usize..b.end as usize, a.start as usize);
    swapped[b.start as usize..b.end as usize].copy_from_slice(&block_a);
    let e = corrupt_offset(&path, &swapped, "swapped equal blocks");
    assert_eq!(part_of(&layout, e), Part::Block(full[0]));
    let uneven = (0..layout.blocks.len() - 1)
        .find(|&i| {
            let len = |j: usize| layout.blocks[j].end - layout.blocks[j].start;
            len(i) != len(i + 1)
        })
        .unwrap();
    let (x, y) = (layout.blocks[uneven].clone(), layout.blocks[uneven + 1].clone());
    let mut swapped = original.clone();
    let mut region = original[y.start as usize..y.end as usize].to_vec();
    region.extend_from_slice(&original[x.start as usize..x.end as usize]);
    swapped[x.start as usize..y.end as usize].copy_from_slice(&region);
    corrupt_offset(&path, &swapped, "swapped uneven blocks");

    // Transplants from another shard's and another checkpoint's file with the same layout.
    let other = fresh_dir("corrupt-other");
    for (what, (_, donor)) in
        [("shard 2", test_file(&other, 10, 2)), ("checkpoint 11", test_file(&other, 11, 1))]
    {
        assert_eq!(donor.len(), original.len());
        assert_eq!(FileLayout::of(Path::new("donor"), &donor).unwrap().blocks, layout.blocks);
        let mut parts: Vec<Part> = (0..layout.blocks.len()).map(Part::Block).collect();
        parts.extend([Part::Header, Part::Footer]);
        for part in parts {
            let r = range_of(&layout, part);
            let (s, e) = (r.start as usize, r.end as usize);
            if donor[s..e] == original[s..e] {
                continue; // an identical block would not be a transplant
            }
            let mut damaged = original.clone();
            damaged[s..e].copy_from_slice(&donor[s..e]);
            corrupt_offset(&path, &damaged, &format!("{part:?} from {what}"));
        }
        // Every block's bytes differ (their CRCs cover different contexts).
        for r in &layout.blocks {
            assert_ne!(
                donor[r.clone().start as usize..r.end as usize],
                original[r.start as usize..r.end as usize]
            );
        }
    }

    // A header claiming a larger size: CRC left alone, CRC fixed up, file really grown.
    let mut bigger = original.clone();
    let size = original.len() as u64 + 4096;
    bigger[72..80].copy_from_slice(&size.to_le_bytes());
    assert_eq!(
        validate_bytes(&path, &bigger).unwrap_err().corrupt_kind(),
        Some(CorruptKind::HeaderCrc)
    );
    let crc = crc32c(&bigger[..124]);
    bigger[124..128].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        validate_bytes(&path, &bigger).unwrap_err().corrupt_kind(),
        Some(CorruptKind::SizeMismatch)
    );
    bigger.resize(size as usize, 0x33);
    corrupt_offset(&path, &bigger, "grown file");

    // Random damage, from a fixed seed so a failure reproduces.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..10_000 {
        let bit = (next() % (bytes.len() as u64 * 8)) as usize;
        bytes[bit / 8] ^= 1 << (bit % 8);
        let e = corrupt_offset(&path, &bytes, &format!("bit flip {i} at bit {bit}"));
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(part_of(&layout, e), part_of(&layout, (bit / 8) as u64));
    }
    for i in 0..1_000 {
        let mut damaged = original.clone();
        for _ in 0..2 + next() % 7 {
            let o = (next() % damaged.len() as u64) as usize;
            damaged[o] ^= (next() % 255 + 1) as u8;
        }
        corrupt_offset(&path, &damaged, &format!("multi-byte damage {i}"));
    }
    assert_eq!(bytes, original);
    assert!(validate_bytes(&path, &original).is_ok());
}

fn assert_mismatch(
    result: Result<impl std::fmt::Debug, CheckpointError>,
    field: MismatchField,
    what: &str,
) {
    match result {
        Err(CheckpointError::Mismatch { field: f, .. }) if f == field => {}
        other => panic!("{what}: expected a {field} mismatch, got {other:?}"),
    }
}

fn assert_unsupported(
    result: Result<impl std::fmt::Debug, CheckpointError>,
    found: u16,
    what: &str,
) {
    match result {
        Err(CheckpointError::UnsupportedVersion { found: f, .. }) if f == found => {}
        other => panic!("{what}: expected UnsupportedVersion {found}, got {other:?}"),
    }
}

#[test]
fn mixed_or_mismatched_checkpoints_rejected() {
    let dir = fresh_dir("mixed");
    let options = WriteOptions::default();
    let m1 = write_checkpoint(&dir, 1, 2, CheckpointKind::Checkpoint, &options).unwrap();
    let m2 = write_checkpoint(&dir, 2, 2, CheckpointKind::Checkpoint, &options).unwrap();
    let four = fresh_dir("mixed-four");
    write_checkpoint(&four, 2, 4, CheckpointKind::Checkpoint, &options).unwrap();
    assert_eq!(dir.validate_checkpoint(&m2).unwrap().len(), 2);
    let file =
        |d: &pinwheel_engine::checkpoint::CheckpointDir, c, s| d.path().join(shard_file_name(c, s));
    let s0 = file(&dir, 2, 0);
    let good = std::fs::read(&s0).unwrap();
    let restore = |bytes: &[u8]| std::fs::write(&s0, bytes).unwrap();

    // A file of another checkpoint id, copied under this checkpoint's name.
    std::fs::copy(file(&dir, 1, 0), &s0).unwrap();
    assert_mismatch(
        dir.validate_checkpoint(&m2),
        MismatchField::Checkpoint,
        "copied from checkpoint 1",
    );
    assert_mismatch(
        dir.newest_complete(RestorePolicy::Strict).map(|_| ()),
        MismatchField::Checkpoint,
        "restore with a file of checkpoint 1",
    );
    restore(&good);

    // A manifest naming checkpoint 1's file, with its true size and digest.
    let mut named = m2.clone();
    let s1 = &m1.shards[0];
    named.shards[0] =
        ManifestShard::from_parts(0, s1.key_groups, s1.file.clone(), s1.size, s1.digest, 0);
    assert_mismatch(
        dir.validate_checkpoint(&named),
        MismatchField::Checkpoint,
        "naming checkpoint 1's file",
    );

    // A file of another shard count (shard 0 of 4), and of another shard (shard 1).
    std::fs::copy(file(&four, 2, 0), &s0).unwrap();
    assert_mismatch(dir.validate_checkpoint(&m2), MismatchField::ShardCount, "shard 0 of 4");
    std::fs::copy(file(&dir, 2, 1), &s0).unwrap();
    assert_mismatch(
        dir.validate_checkpoint(&m2),
        MismatchField::Shard,
        "shard 1's file as shard 0's",
    );
    restore(&good);

    // A file of another key-group range.
    std::fs::remove_file(&s0).unwrap();
    let odd = KeyGroupRange::new(KeyGroup(0), KeyGroup(10)).unwrap();
    write_shard_file(&dir, &ShardFileMeta::new(2, 0, 2, odd), &[(1, b"x")], &options).unwrap();
    assert_mismatch(dir.validate_checkpoint(&m2), MismatchField::KeyGroups, "key groups 0..=10");
    restore(&good);

    // A manifest with a wrong size, or a wrong digest.
    let mut wrong = m2.clone();
    wrong.shards[0].size += 1;
    assert_mismatch(dir.validate_checkpoint(&wrong), MismatchField::Size, "wrong size");
    let mut wrong = m2.clone();
    wrong.shards[1].digest ^= 1;
    assert_mismatch(dir.validate_checkpoint(&wrong), MismatchField::Digest, "wrong digest");

    // A shard file of a future format version (its header CRC fixed up).
    let mut future = good.clone();
    future[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32c(&future[..124]);
    future[124..128].copy_from_slice(&crc.to_le_bytes());
    restore(&future);
    assert_unsupported(dir.validate_checkpoint(&m2), FORMAT_VERSION + 1, "future shard file");
    restore(&good);

    // A manifest recording a future shard file format version.
    let mut future = m2.clone();
    future.checkpoint = 3;
    future.format_version = FORMAT_VERSION + 1;
    let path = write_manifest(&dir, &future, &options).unwrap();
    assert_unsupported(
        read_manifest(&path, u64::MAX),
        FORMAT_VERSION + 1,
        "manifest of future files",
    );
    std::fs::remove_file(&path).unwrap();

    // A manifest of a future manifest version, and of another key-group function.
    let mut bytes = m2.encode().unwrap();
    bytes[8..10].copy_from_slice(&(MANIFEST_VERSION + 1).to_le_bytes());
    let n = bytes.len();
    let crc = crc32c(&bytes[..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_unsupported(
        Manifest::decode(Path::new("m"), &bytes),
        MANIFEST_VERSION + 1,
        "future manifest",
    );
    let mut other_function = m2.clone();
    other_function.key_group_function_version += 1;
    let bytes = other_function.encode().unwrap();
    assert_mismatch(
        Manifest::decode(Path::new("m"), &bytes),
        MismatchField::KeyGroupFunction,
        "key-group function",
    );

    // A manifest whose name and content disagree (MANIFEST-4 holding checkpoint 2).
    std::fs::copy(dir.path().join(manifest_name(2)), dir.path().join(manifest_name(4))).unwrap();
    let newest = dir.candidates().unwrap().into_iter().next().unwrap();
    assert_eq!(newest.checkpoint, 4);
    assert_mismatch(newest.manifest, MismatchField::Checkpoint, "MANIFEST-4 holding checkpoint 2");
    std::fs::remove_file(dir.path().join(manifest_name(4))).unwrap();

    // Intact again: the checkpoint restores.
    let restored = dir.newest_complete(RestorePolicy::Strict).unwrap().unwrap();
    assert_eq!(restored.manifest, m2);
    assert_eq!(restored.files[0].sections, common::sections_for(2, 0));
}
