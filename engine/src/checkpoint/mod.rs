//! Checkpoint files: the on-disk format of a shard's checkpoint, its durable write protocol, its
//! validation, the manifest that makes a checkpoint complete, and the checkpoint directory
//! (docs/reliability.md §1, §3.1, §3.2).
//!
//! The file layer knows nothing of keyed state or timers: a shard file holds **sections**, each a
//! kind (`u8`) and bytes, which the caller encodes and gets back, validated, in the same order.
//! A keyed operator's [`BackendSnapshot`](crate::keyed::BackendSnapshot) is one section
//! ([`keyed_section`], [`keyed_snapshots`]). The flow of one
//! checkpoint `c`:
//!
//! ```no_run
//! use pinwheel_engine::checkpoint::*;
//! use pinwheel_engine::keygroup::KeyGroups;
//!
//! let dir = CheckpointDir::open_or_create("/var/lib/job/checkpoints")?;
//! dir.remove_leftover_tmp()?; // at start-up
//! let groups = KeyGroups::new(128).unwrap();
//! let range = groups.range_for_shard(0, 1).unwrap();
//! // Each shard writes its file...
//! let meta = ShardFileMeta::new(1, 0, 1, range);
//! let written = write_shard_file(&dir, &meta, &[(1, b"state".as_slice())], &WriteOptions::default())?;
//! // ...then the coordinator writes the manifest, which completes the checkpoint.
//! let shards = vec![ManifestShard::new(0, range, &written, 0)];
//! let manifest = Manifest::new(1, CheckpointKind::Checkpoint, 128, shards, vec![], 0)?;
//! write_manifest(&dir, &manifest, &WriteOptions::default())?;
//! dir.gc(2)?;
//! // On restore: everything is validated before anything is returned.
//! let restored = dir.newest_complete(RestorePolicy::Strict)?.expect("a checkpoint");
//! assert_eq!(restored.files[0].sections, vec![(1, b"state".to_vec())]);
//! # Ok::<(), CheckpointError>(())
//! ```
//!
//! # Implementation
//!
//! ## The directory
//!
//! ```text
//!   checkpoints/                           mode 0700, owned by the process's user, not a symlink
//!   ├── ckpt-00000000000000000041-s0000.dat   shard 0's file of checkpoint 41       (mode 0600)
//!   ├── ckpt-00000000000000000041-s0001.dat
//!   ├── MANIFEST-00000000000000000041         checkpoint 41 is complete
//!   ├── ckpt-00000000000000000042-s0000.dat
//!   ├── ckpt-00000000000000000042-s0001-a0.tmp  shard 1 still writing: 42 is not complete
//!   └── ...
//! ```
//!
//! Names are zero-padded so they sort by checkpoint ([`names`](self) lists them all). Checkpoint
//! `c` is complete if and only if `MANIFEST-{c:020}` exists and validates; on restore, every file
//! it names must also validate with the size and digest it records. A `.tmp` file is never a
//! checkpoint.
//!
//! ## The shard file
//!
//! ```text
//!   ┌────────────┬─────────┬─────────┬─────┬─────────────┬──────────────────────────────────┐
//!   │ header 128 │ block 0 │ block 1 │ ... │ block n - 1 │ footer 36 + 16 n                 │
//!   └────────────┴─────────┴─────────┴─────┴─────────────┴──────────────────────────────────┘
//! ```
//!
//! All integers are little-endian.
//!
//! | header offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `PWHLCKPT` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | header length (128) |
//! | 12 | 4 | flags (0; any other value is refused) |
//! | 16 | 16 | engine version, ASCII, zero-padded |
//! | 32 | 8 | checkpoint id |
//! | 40 | 4 | shard id |
//! | 44 | 4 | shard count |
//! | 48 | 4 + 4 | key-group range, first and last (inclusive) |
//! | 56 | 4 | block size: the largest payload of a block, 16 B ..= 64 KiB |
//! | 60 | 4 | block count `n` |
//! | 64 | 8 | payload length (sum of the block payloads) |
//! | 72 | 8 | file size (must be the real size) |
//! | 80 | 44 | reserved, zero |
//! | 124 | 4 | CRC32C of bytes 0..124 |
//!
//! A **block** is `len u32 | kind u8 | payload (len bytes) | crc u32`, with
//! `crc = crc32c(ctx || len || kind || payload)` and `ctx = checkpoint id u64 | shard u32 |
//! block index u32`, a context that is **not stored**: a block copied from another shard's or
//! another checkpoint's file, or moved to another position, fails its check (RocksDB's context
//! checksums). A section is cut into blocks of `block size` bytes and ends with a shorter block
//! (empty if its length is a multiple of the block size), so sections need no other delimiter.
//!
//! | footer offset | size | field |
//! |---|---|---|
//! | 0 | 8 | footer magic `PWHLFOOT` |
//! | 8 | 4 | block count (= the header's) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | payload length (= the header's) |
//! | 24 | 8 | digest: xxh3-64 over every block's CRC (4 bytes LE each), in order |
//! | 32 | 16 n | block index: per block `offset u64 | len u32 | kind u8 | 3 zero bytes` |
//! | 32 + 16 n | 4 | CRC32C of `checkpoint id u64 | shard u32 |` footer bytes 0 .. 32 + 16 n |
//!
//! **No unprotected byte decides which bytes get checked** (docs/reliability.md §1.4): the
//! footer's place follows from the CRC-checked header (its size, block count and payload length
//! must add up to the real size exactly), and each block's place and length from the
//! CRC-checked index, which must be contiguous; a block's own length and kind must equal its
//! entry. Validation ([`validate_bytes`]) checks, in order: magic, header CRC, version, header
//! fields, declared size = real size, footer CRC and fields, the index, every block CRC, the
//! digest — all before a single section is returned. Every error is a typed
//! [`CheckpointError::Corrupt`] naming the file, the [`CorruptKind`] and an offset inside the
//! damaged structure (the header, the block, the footer or one of their fields).
//!
//! **Why CRC-32C.** It detects every burst of up to 32 bits, so any single damaged byte in a
//! checked region is detected with certainty, and it runs at memory speed with the SSE 4.2 / ARMv8
//! instructions (`crc32c` crate; note that `crc32fast` is CRC-32/IEEE, another polynomial). A
//! block of random garbage passes with probability about 2⁻³². The digest over the block CRCs is
//! what the manifest records per file, binding the files to the checkpoint.
//!
//! **What checksums do not protect against.** Deliberate edits: anyone who can write the
//! directory can rewrite a file and its CRCs consistently, and so controls the restored state
//! (checksums are not authentication; a keyed MAC is future work, §3.1). Nor do they protect a
//! stale but valid checkpoint from being restored if its newer manifest was deleted: the
//! directory's permissions are the protection there.
//!
//! ## The format version, and its compatibility rule
//!
//! [`FORMAT_VERSION`] (1) is the version this engine writes; it reads versions
//! [`MIN_READ_VERSION`]`..=`[`FORMAT_VERSION`]. Any other version — a file from a newer engine,
//! or version 0 — is [`CheckpointError::UnsupportedVersion`], not corruption: the first 12 bytes
//! (magic, version, header length) and the header ending with its CRC32C are fixed in every
//! version, so the header CRC is checked before the version is trusted. A change that an older
//! reader would misread (a field, the block framing, the checksum function) increments the
//! version; a new engine keeps reading every older version it lists, checked against committed
//! golden files (test 16). There is no forward compatibility: an old engine never guesses at a
//! newer file. Manifests follow the same rule with [`MANIFEST_VERSION`], and a manifest records
//! the shard file version of its files and the key-group function's version, both of which a
//! restore checks.
//!
//! ## The write protocol
//!
//! [`write_shard_file`] and [`write_manifest`] (docs/reliability.md §1.1, §1.2):
//!
//! ```text
//!   size = exact size, computed from the sections      (before anything touches the disk)
//!   create  dir/<name>.tmp  O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, then fchmod 0600
//!   posix_fallocate(0, size)                           ENOSPC here is CheckpointError::NoSpace
//!   mmap(MAP_SHARED), write header, blocks, footer through the mapping
//!   msync(MS_SYNC), munmap
//!   fdatasync, close                                   close's error is reported too
//!   rename -> final name
//!   fsync(dir)
//! ```
//!
//! Any error kills the attempt (§1.5): the temporary file is unlinked (and the renamed file,
//! if the directory `fsync` failed), nothing is retried, no descriptor is `fsync`ed twice, and
//! the caller writes a new attempt under a new temporary name. The steps are in [`fs`](self)
//! one function each, the only module of this layer with `unsafe` code (the mapping and two
//! `libc` calls; its ground rules are at its top). Files are never mapped for reading: the
//! reader `read()`s them into owned buffers, capped, because another process could truncate a
//! mapped file under it.
//!
//! ## Fault injection
//!
//! [`WriteOptions::faults`] and [`CheckpointDir::with_faults`] take a [`FaultPlan`]: the k-th I/O
//! step (of any kind, or of one [`IoOp`]) fails with a given `errno`, once or persistently, or
//! aborts the process; every step is counted by kind. The default plan is empty, one untaken
//! branch per system call, so there is no cargo feature to remember.

mod codec;
mod dir;
mod error;
mod format;
#[allow(unsafe_code)]
mod fs;
mod keyed;
mod manifest;
mod names;
mod reader;
mod writer;

pub use codec::{DecodeError, Decoder, Encoder};
pub use dir::{
    Candidate, CheckpointDir, DEFAULT_MAX_FILE_BYTES, GcReport, RestorePolicy, RestoredCheckpoint,
};
pub use error::{CheckpointError, CorruptKind, IoOp, MismatchField};
pub use format::{
    FORMAT_VERSION, FileLayout, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, MIN_READ_VERSION, ShardFile,
    ShardFileInfo, ShardFileMeta, validate_bytes,
};
pub use fs::{FaultAction, FaultPlan, FaultTrigger};
pub use keyed::{
    KEYED_SECTION, keyed_section, keyed_section_frozen, keyed_sections, keyed_snapshots,
};
pub use manifest::{
    CheckpointKind, DEFAULT_MAX_MANIFEST_BYTES, MANIFEST_VERSION, MAX_SOURCE_POSITION_BYTES,
    Manifest, ManifestShard, read_manifest, write_manifest,
};
pub use names::{manifest_name, manifest_tmp_name, shard_file_name, shard_tmp_name};
pub use reader::{ExpectedFile, read_shard_file};
pub use writer::{WriteOptions, WrittenFile, write_shard_file};
