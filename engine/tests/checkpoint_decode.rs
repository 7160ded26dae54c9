//! Decoding arbitrary checkpoint bytes never panics and never allocates more than a fixed
//! multiple of the input (docs/reliability.md §3.1, test 15's property-test half; the cargo-fuzz
//! half is `engine/fuzz`, run by `scripts/fuzz.sh`).
//!
//! A counting global allocator records the largest single allocation each thread makes, and
//! every case asserts it is at most [`EXPANSION`] times the input's length plus a small
//! constant: a decoder that trusted a length field (`Vec::with_capacity(len_from_file)`, with
//! lengths up to 2^64 - 1) fails here even when the allocation would have succeeded.
//!
//! * `arbitrary_bytes_are_refused_without_panic` (4,000 cases): random bytes as a shard file,
//!   as a manifest, and through every `Decoder` read.
//! * `crc_valid_garbage_reaches_the_deep_checks` (4,000 cases): random bytes almost never pass a
//!   CRC, so these cases fix the CRCs up — a shard file header with random fields (block counts,
//!   sizes and payload lengths up to their maximum, 2^64 - 1), and a manifest with a random body,
//!   including varint counts and lengths up to 2^64 - 1 — to exercise the checks behind the CRC.
//! * `valid_files_mutated` (2,000 cases): a real shard file and manifest with random bytes
//!   overwritten: always refused (CRC-32C detects any damage to one byte; for several bytes the
//!   fixed cases make a 2^-32 escape irrelevant), never a panic.

mod common;

use common::crc32c;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use pinwheel_engine::checkpoint::{
    CheckpointError, CheckpointKind, Decoder, Encoder, Manifest, WriteOptions, manifest_name,
    validate_bytes,
};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the thread-local is a const-initialized `Cell<usize>` without a destructor, so touching it
// never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the largest single allocation it made on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    f();
    LARGEST.with(|l| l.get())
}

/// The allowance over the input's length: error paths, a `PathBuf`, a few small vectors.
const SLACK: usize = 4096;

/// How many bytes of memory one input byte may become. The densest case is a manifest's list of
/// source positions: an empty position is one byte on disk (its length, 0) and one `Vec<u8>` in
/// memory.
const EXPANSION: usize = std::mem::size_of::<Vec<u8>>();

fn decode_everything(bytes: &[u8]) {
    let name = Path::new("fuzz-input");
    let file = validate_bytes(name, bytes);
    if let Err(e) = &file {
        // Every refusal is one of the typed errors of decoding, never an I/O error.
        assert!(
            matches!(
                e,
                CheckpointError::Corrupt { .. } | CheckpointError::UnsupportedVersion { .. }
            ),
            "{e}"
        );
    }
    let manifest = Manifest::decode(name, bytes);
    if let Err(e) = &manifest {
        assert!(
            matches!(
                e,
                CheckpointError::Corrupt { .. }
                    | CheckpointError::UnsupportedVersion { .. }
                    | CheckpointError::Mismatch { .. }
            ),
            "{e}"
        );
    }
    let mut d = Decoder::new(bytes);
    for i in 0.. {
        let ok = match i % 7 {
            0 => d.varint().is_ok(),
            1 => d.bytes(u64::MAX).is_ok(),
            2 => d.len(u64::MAX, 8).is_ok(),
            3 => d.varint_i64().is_ok(),
            4 => d.u32().is_ok(),
            5 => d.u8().is_ok(),
            _ => d.u64().is_ok(),
        };
        if !ok || d.is_at_end() {
            break;
        }
    }
}

fn check(bytes: &[u8]) {
    let largest = largest_allocation(|| decode_everything(bytes));
    assert!(
        largest <= EXPANSION * bytes.len() + SLACK,
        "allocated {largest} bytes for an input of {}",
        bytes.len()
    );
}

/// A shard file header with the given fields and a valid CRC, followed by `tail`.
fn header(fields: &[(usize, u64, usize)], tail: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 128];
    h[..8].copy_from_slice(b"PWHLCKPT");
    h[8..10].copy_from_slice(&1u16.to_le_bytes());
    h[10..12].copy_from_slice(&128u16.to_le_bytes());
    h[16..21].copy_from_slice(b"0.1.0");
    for &(at, value, width) in fields {
        h[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
    let crc = crc32c(&h[..124]);
    h[124..].copy_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(tail);
    h
}

/// A manifest with this body and a valid prefix and CRC.
fn manifest(body: &[u8]) -> Vec<u8> {
    let mut m = b"PWHLMANI".to_vec();
    m.extend_from_slice(&1u16.to_le_bytes());
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    let crc = crc32c(&m);
    m.extend_from_slice(&crc.to_le_bytes());
    m
}

fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::from(u32::MAX)),
        0u64..70_000,
        any::<u64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes);
        prop_assert!(validate_bytes(Path::new("x"), &bytes).is_err());
    }

    #[test]
    fn crc_valid_garbage_reaches_the_deep_checks(
        shard in extreme_u64(), count in extreme_u64(), kg in extreme_u64(),
        block_size in prop_oneof![Just(16u64), Just(65536), extreme_u64()],
        blocks in extreme_u64(), payload in extreme_u64(), size in extreme_u64(),
        tail in prop::collection::vec(any::<u8>(), 0..400),
        use_real_size in any::<bool>(),
        body_ints in prop::collection::vec(extreme_u64(), 0..12),
        body_tail in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let size = if use_real_size { 128 + tail.len() as u64 } else { size };
        let fields = [(40, shard, 4), (44, count, 4), (48, kg, 4), (52, kg.rotate_left(7), 4),
            (56, block_size, 4), (60, blocks, 4), (64, payload, 8), (72, size, 8)];
        let file = header(&fields, &tail);
        check(&file);
        prop_assert!(validate_bytes(Path::new("x"), &file).is_err());

        let mut body = Encoder::with_limit(1 << 20);
        body.u64(7).unwrap().u8(0).unwrap().u16(1).unwrap().u32(body_ints.len() as u32).unwrap();
        body.u32(128).unwrap().u32(1).unwrap().i64(0).unwrap();
        for v in &body_ints {
            body.varint(*v).unwrap();
        }
        body.raw(&body_tail).unwrap();
        check(&manifest(body.as_bytes()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn valid_files_mutated(edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let (file, manifest) = real_files();
        for original in [file, manifest] {
            // The valid file itself: its sections are allocated, within the same bound.
            check(&original);
            let mut bytes = original.clone();
            for (at, x) in &edits {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            check(&bytes);
            if bytes != original {
                prop_assert!(validate_bytes(Path::new("x"), &bytes).is_err());
                prop_assert!(Manifest::decode(Path::new("m"), &bytes).is_err());
            }
        }
    }
}

/// The case proptest found: a manifest of many empty source positions decodes, and its list is
/// the largest allocation, one `Vec<u8>` per input byte — at the bound, not over it.
#[test]
fn many_empty_source_positions_stay_within_the_bound() {
    let mut body = Encoder::with_limit(1 << 20);
    body.u64(7).unwrap().u8(0).unwrap().u16(1).unwrap().u32(0).unwrap();
    body.u32(128).unwrap().u32(1).unwrap().i64(0).unwrap();
    body.varint(0).unwrap().varint(4000).unwrap();
    body.raw(&[0; 4000]).unwrap();
    let bytes = manifest(body.as_bytes());
    let largest = largest_allocation(|| {
        let m = Manifest::decode(Path::new("m"), &bytes).unwrap();
        assert_eq!(m.source_positions.len(), 4000);
        assert!(m.source_positions.iter().all(Vec::is_empty));
    });
    assert!(largest >= 4000 * EXPANSION, "the list itself is {largest} bytes");
    check(&bytes);
}

/// A real shard file and a real manifest, written once per thread.
fn real_files() -> (Vec<u8>, Vec<u8>) {
    thread_local! {
        static FILES: (Vec<u8>, Vec<u8>) = {
            let dir = common::fresh_dir("decode");
            let m = common::write_checkpoint(&dir, 3, 1, CheckpointKind::Checkpoint, &WriteOptions::default().with_block_size(256)).unwrap();
            let file = std::fs::read(dir.path().join(&m.shards[0].file)).unwrap();
            let manifest = std::fs::read(dir.path().join(manifest_name(3))).unwrap();
            (file, manifest)
        };
    }
    FILES.with(|f| f.clone())
}
