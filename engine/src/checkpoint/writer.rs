//! Writing one shard's checkpoint file durably (docs/reliability.md §1.1).

use std::path::PathBuf;

use super::dir::CheckpointDir;
use super::error::CheckpointError;
use super::format::{self, MAX_BLOCK_SIZE, ShardFileMeta};
use super::fs::{self, FaultPlan};
use super::names::{shard_file_name, shard_tmp_name};

/// How checkpoint files are written.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriteOptions {
    /// The largest payload of one block, in
    /// [`MIN_BLOCK_SIZE`](super::MIN_BLOCK_SIZE)`..=`[`MAX_BLOCK_SIZE`]; default 64 KiB. Smaller
    /// blocks only make files larger; tests use them to get many blocks from little data.
    pub block_size: u32,
    /// The fault-injection plan (default: none).
    pub faults: FaultPlan,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { block_size: MAX_BLOCK_SIZE, faults: FaultPlan::none() }
    }
}

impl WriteOptions {
    /// These options with blocks of at most `block_size` payload bytes.
    pub fn with_block_size(mut self, block_size: u32) -> Self {
        self.block_size = block_size;
        self
    }

    /// These options with the fault-injection plan `faults`.
    pub fn with_faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }
}

/// A published shard file: what the manifest records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WrittenFile {
    /// Its path, `dir/ckpt-{c:020}-s{s:04}.dat`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The xxh3-64 digest over its block CRCs.
    pub digest: u64,
}

impl WrittenFile {
    /// The file's name inside the checkpoint directory.
    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Writes `sections` (each a kind and its bytes) as shard `meta.shard`'s file of checkpoint
/// `meta.checkpoint`, durably, and publishes it under its final name.
///
/// The protocol (docs/reliability.md §1.1): the exact size is computed first; the file is created
/// as `ckpt-{c:020}-s{s:04}-a{attempt}.tmp` with `O_EXCL | O_NOFOLLOW` and mode `0600`,
/// reserved with `posix_fallocate`, written through a shared mapping, flushed with `msync`,
/// unmapped, `fdatasync`ed, closed, renamed to `ckpt-{c:020}-s{s:04}.dat`, and the directory is
/// `fsync`ed. Publishing a file does not make a checkpoint: its manifest does.
///
/// # Errors
///
/// [`CheckpointError::NoSpace`] when the disk is full, [`CheckpointError::Io`] naming the failed
/// step otherwise, [`CheckpointError::InvalidArgument`] for a shard outside the shard count or a
/// block size out of range, [`CheckpointError::TooLarge`] for more than `u32::MAX` blocks. On
/// any error no temporary file is left and nothing is published; retry with a new attempt number.
pub fn write_shard_file(
    dir: &CheckpointDir,
    meta: &ShardFileMeta,
    sections: &[(u8, &[u8])],
    options: &WriteOptions,
) -> Result<WrittenFile, CheckpointError> {
    if meta.shard >= meta.shard_count {
        return Err(CheckpointError::InvalidArgument(format!(
            "shard {} of {} shards",
            meta.shard, meta.shard_count
        )));
    }
    let (size, _blocks) = format::planned_size(sections, options.block_size)?;
    let (path, digest) = fs::write_durable(
        &options.faults,
        dir.path(),
        &shard_tmp_name(meta.checkpoint, meta.shard, meta.attempt),
        &shard_file_name(meta.checkpoint, meta.shard),
        size,
        |out| format::encode_into(meta, sections, options.block_size, out),
    )?;
    Ok(WrittenFile { path, size, digest })
}
