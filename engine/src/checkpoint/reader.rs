//! Reading and validating one shard's checkpoint file (docs/reliability.md §1.6, §3.1).

use std::path::Path;

use super::error::{CheckpointError, MismatchField};
use super::format::{ShardFile, ShardFileInfo, validate_bytes};
use super::fs::{self, FaultPlan};
use crate::keygroup::KeyGroupRange;

/// What a shard file must be, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedFile {
    /// The checkpoint id.
    pub checkpoint: u64,
    /// The shard.
    pub shard: u32,
    /// The shard count.
    pub shard_count: u32,
    /// The key-group range.
    pub key_groups: KeyGroupRange,
    /// The format version, if the manifest records one.
    pub format_version: Option<u16>,
    /// The size, if known.
    pub size: Option<u64>,
    /// The digest, if known.
    pub digest: Option<u64>,
}

impl ExpectedFile {
    /// A file of checkpoint `checkpoint` written by shard `shard` of `shard_count`, holding
    /// `key_groups`; size, digest and format version unchecked.
    pub fn new(checkpoint: u64, shard: u32, shard_count: u32, key_groups: KeyGroupRange) -> Self {
        ExpectedFile {
            checkpoint,
            shard,
            shard_count,
            key_groups,
            format_version: None,
            size: None,
            digest: None,
        }
    }

    /// The same expectation, also requiring this size and digest.
    pub fn with_size_and_digest(mut self, size: u64, digest: u64) -> Self {
        self.size = Some(size);
        self.digest = Some(digest);
        self
    }

    /// The same expectation, also requiring this format version.
    pub fn with_format_version(mut self, version: u16) -> Self {
        self.format_version = Some(version);
        self
    }

    /// Checks a validated file's header data against this expectation.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Mismatch`] naming the first property that differs, in the order
    /// checkpoint, shard, shard count, key groups, format version, size, digest.
    pub fn check(&self, file: &Path, meta: &ShardFileInfo) -> Result<(), CheckpointError> {
        fn differ(
            file: &Path,
            field: MismatchField,
            expected: impl ToString,
            found: impl ToString,
        ) -> CheckpointError {
            CheckpointError::Mismatch {
                file: file.to_path_buf(),
                field,
                expected: expected.to_string(),
                found: found.to_string(),
            }
        }
        let range = |r: &KeyGroupRange| format!("{}..={}", r.start().0, r.end().0);
        if meta.checkpoint != self.checkpoint {
            return Err(differ(file, MismatchField::Checkpoint, self.checkpoint, meta.checkpoint));
        }
        if meta.shard != self.shard {
            return Err(differ(file, MismatchField::Shard, self.shard, meta.shard));
        }
        if meta.shard_count != self.shard_count {
            return Err(differ(
                file,
                MismatchField::ShardCount,
                self.shard_count,
                meta.shard_count,
            ));
        }
        if meta.key_groups != self.key_groups {
            return Err(differ(
                file,
                MismatchField::KeyGroups,
                range(&self.key_groups),
                range(&meta.key_groups),
            ));
        }
        if let Some(v) = self.format_version.filter(|&v| v != meta.format_version) {
            return Err(differ(file, MismatchField::FormatVersion, v, meta.format_version));
        }
        if let Some(size) = self.size.filter(|&s| s != meta.file_size) {
            return Err(differ(file, MismatchField::Size, size, meta.file_size));
        }
        if let Some(digest) = self.digest.filter(|&d| d != meta.digest) {
            return Err(differ(
                file,
                MismatchField::Digest,
                format!("{digest:#018x}"),
                format!("{:#018x}", meta.digest),
            ));
        }
        Ok(())
    }
}

/// Reads the shard file at `path` into memory (never more than `max_bytes`), validates all of
/// it, checks it against `expected` if given, and returns its sections.
///
/// The file is read with `read()` into an owned buffer, never mapped: another process could
/// truncate a mapped file under the reader (`SIGBUS`). Nothing is returned before every check
/// passed; a symlink is refused.
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] (naming the file and an offset in the damaged structure),
/// [`CheckpointError::UnsupportedVersion`], [`CheckpointError::Mismatch`],
/// [`CheckpointError::TooLarge`] (over `max_bytes`), [`CheckpointError::Symlink`] or
/// [`CheckpointError::Io`].
pub fn read_shard_file(
    path: &Path,
    expected: Option<&ExpectedFile>,
    max_bytes: u64,
) -> Result<ShardFile, CheckpointError> {
    read_shard_file_with(&FaultPlan::none(), path, expected, max_bytes)
}

pub(crate) fn read_shard_file_with(
    faults: &FaultPlan,
    path: &Path,
    expected: Option<&ExpectedFile>,
    max_bytes: u64,
) -> Result<ShardFile, CheckpointError> {
    let bytes = fs::read_file(faults, path, max_bytes)?;
    let file = validate_bytes(path, &bytes)?;
    if let Some(expected) = expected {
        expected.check(path, &file.meta)?;
    }
    Ok(file)
}
