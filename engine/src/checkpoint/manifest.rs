//! The manifest: the record, written last, that makes a checkpoint complete
//! (docs/reliability.md §1.2).
//!
//! Layout: `magic "PWHLMANI" (8) | version u16 | reserved u16 = 0 | body length u32 | body |
//! crc32c u32` over everything before it. The body is encoded with the [`codec`](super::codec):
//!
//! ```text
//! checkpoint u64 | kind u8 (0 checkpoint, 1 savepoint) | format_version u16 | shard_count u32
//! | max_key_groups u32 | key_group_function_version u32 | created_unix_ms i64
//! | varint n, n x (shard u32 | key-group start u32 | end u32 | file name (varint len, bytes)
//!                  | size u64 | digest u64 | watermark i64)
//! | varint m, m x source position (varint len, bytes)
//! ```
//!
//! A manifest that decodes is also consistent: one entry per shard, in shard order, each with the
//! key-group range the key-group function assigns it ([`KeyGroups::range_for_shard`]), and a file
//! name that is a plain shard file name of that shard (never a path: a manifest cannot point
//! outside its directory). The version rule is the shard files' (see the module docs of
//! `checkpoint`): versions `1..=MANIFEST_VERSION` are read, any other is
//! [`CheckpointError::UnsupportedVersion`].

use std::path::{Path, PathBuf};

use crc32c::crc32c;

use super::codec::{DecodeError, Decoder, Encoder};
use super::dir::CheckpointDir;
use super::error::{CheckpointError, CorruptKind, MismatchField};
use super::format::{FORMAT_VERSION, MIN_READ_VERSION};
use super::fs::{self, FaultPlan};
use super::names::{FileName, manifest_name, manifest_tmp_name};
use super::reader::ExpectedFile;
use super::writer::{WriteOptions, WrittenFile};
use crate::keygroup::{KEY_GROUP_FUNCTION_VERSION, KeyGroup, KeyGroupRange, KeyGroups};

/// The manifest format version this engine writes (and the newest it reads).
pub const MANIFEST_VERSION: u16 = 1;

/// The largest manifest this engine writes or reads by default: 64 MiB.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The largest opaque source position: 1 MiB.
pub const MAX_SOURCE_POSITION_BYTES: u64 = 1 << 20;

const MAGIC: [u8; 8] = *b"PWHLMANI";
const PREFIX_LEN: usize = 16;
const MAX_FILE_NAME: u64 = 255;
/// The smallest encoding of one shard entry (with an empty name): for capacity bounds.
const MIN_SHARD_ENTRY: usize = 4 + 4 + 4 + 1 + 8 + 8 + 8;

/// Whether a manifest is a periodic checkpoint, which garbage collection may delete, or a
/// savepoint, which it never deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckpointKind {
    /// A periodic checkpoint: retained while among the newest `R`.
    Checkpoint,
    /// A savepoint taken on request: never garbage-collected.
    Savepoint,
}

/// One shard's entry in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestShard {
    /// The shard.
    pub shard: u32,
    /// The key groups it owned.
    pub key_groups: KeyGroupRange,
    /// Its file's name in the checkpoint directory.
    pub file: String,
    /// Its file's size.
    pub size: u64,
    /// Its file's digest.
    pub digest: u64,
    /// The shard's watermark at the barrier.
    pub watermark: i64,
}

impl ManifestShard {
    /// The entry for shard `shard`, owning `key_groups`, whose file was `written`, at
    /// `watermark`.
    pub fn new(
        shard: u32,
        key_groups: KeyGroupRange,
        written: &WrittenFile,
        watermark: i64,
    ) -> Self {
        ManifestShard {
            shard,
            key_groups,
            file: written.file_name(),
            size: written.size,
            digest: written.digest,
            watermark,
        }
    }

    /// The entry for shard `shard` from its recorded parts (for tools and tests that build a
    /// manifest without writing the files).
    pub fn from_parts(
        shard: u32,
        key_groups: KeyGroupRange,
        file: String,
        size: u64,
        digest: u64,
        watermark: i64,
    ) -> Self {
        ManifestShard { shard, key_groups, file, size, digest, watermark }
    }
}

/// A checkpoint's manifest: which files make it up, and where each source resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Manifest {
    /// The checkpoint id.
    pub checkpoint: u64,
    /// The shard file format version of its files.
    pub format_version: u16,
    /// The number of shards that wrote it.
    pub shard_count: u32,
    /// The number of key groups of the job.
    pub max_key_groups: u32,
    /// The key → key group function's version ([`KEY_GROUP_FUNCTION_VERSION`]).
    pub key_group_function_version: u32,
    /// One entry per shard, in shard order.
    pub shards: Vec<ManifestShard>,
    /// Opaque per source partition positions to replay from.
    pub source_positions: Vec<Vec<u8>>,
    /// When the checkpoint was taken, in Unix milliseconds (informational).
    pub created_unix_ms: i64,
    /// Checkpoint or savepoint.
    pub kind: CheckpointKind,
}

impl Manifest {
    /// The manifest of checkpoint `checkpoint` with these shard entries (in shard order, one per
    /// shard), written by this engine's format and key-group function.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidArgument`] if the entries are inconsistent (see the module docs).
    pub fn new(
        checkpoint: u64,
        kind: CheckpointKind,
        max_key_groups: u32,
        shards: Vec<ManifestShard>,
        source_positions: Vec<Vec<u8>>,
        created_unix_ms: i64,
    ) -> Result<Manifest, CheckpointError> {
        let manifest = Manifest {
            checkpoint,
            format_version: FORMAT_VERSION,
            shard_count: u32::try_from(shards.len()).unwrap_or(u32::MAX),
            max_key_groups,
            key_group_function_version: KEY_GROUP_FUNCTION_VERSION,
            shards,
            source_positions,
            created_unix_ms,
            kind,
        };
        match manifest.inconsistency() {
            Some(why) => Err(CheckpointError::InvalidArgument(why)),
            None => Ok(manifest),
        }
    }

    /// What is inconsistent in the manifest, if anything.
    fn inconsistency(&self) -> Option<String> {
        let groups = match KeyGroups::new(self.max_key_groups) {
            Ok(g) => g,
            Err(e) => return Some(e.to_string()),
        };
        if self.shards.len() != self.shard_count as usize {
            return Some(format!("{} entries for {} shards", self.shards.len(), self.shard_count));
        }
        for (i, s) in self.shards.iter().enumerate() {
            if s.shard as usize != i {
                return Some(format!("entry {i} is for shard {}", s.shard));
            }
            match groups.range_for_shard(i, self.shard_count as usize) {
                Ok(r) if r == s.key_groups => {}
                Ok(r) => {
                    return Some(format!(
                        "shard {i} holds key groups {}..={}, the key-group function assigns {}..={}",
                        s.key_groups.start().0,
                        s.key_groups.end().0,
                        r.start().0,
                        r.end().0
                    ));
                }
                Err(e) => return Some(e.to_string()),
            }
            match FileName::parse(&s.file) {
                Some(FileName::Shard { shard, .. }) if shard == s.shard => {}
                _ => {
                    return Some(format!(
                        "shard {i}'s file name {:?} is not its shard file",
                        s.file
                    ));
                }
            }
        }
        if let Some(p) =
            self.source_positions.iter().find(|p| p.len() as u64 > MAX_SOURCE_POSITION_BYTES)
        {
            return Some(format!("a source position of {} bytes", p.len()));
        }
        None
    }

    /// What shard entry `index`'s file must be.
    pub fn expected_file(&self, index: usize) -> Option<ExpectedFile> {
        let s = self.shards.get(index)?;
        Some(
            ExpectedFile::new(self.checkpoint, s.shard, self.shard_count, s.key_groups)
                .with_size_and_digest(s.size, s.digest)
                .with_format_version(self.format_version),
        )
    }

    /// The encoded manifest.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past [`DEFAULT_MAX_MANIFEST_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        let limit = DEFAULT_MAX_MANIFEST_BYTES as usize;
        let mut body = Encoder::with_limit(limit - PREFIX_LEN - 4);
        body.u64(self.checkpoint)?
            .u8(match self.kind {
                CheckpointKind::Checkpoint => 0,
                CheckpointKind::Savepoint => 1,
            })?
            .u16(self.format_version)?
            .u32(self.shard_count)?
            .u32(self.max_key_groups)?
            .u32(self.key_group_function_version)?
            .i64(self.created_unix_ms)?
            .varint(self.shards.len() as u64)?;
        for s in &self.shards {
            body.u32(s.shard)?
                .u32(s.key_groups.start().0)?
                .u32(s.key_groups.end().0)?
                .bytes(s.file.as_bytes())?
                .u64(s.size)?
                .u64(s.digest)?
                .i64(s.watermark)?;
        }
        body.varint(self.source_positions.len() as u64)?;
        for p in &self.source_positions {
            body.bytes(p)?;
        }
        let body = body.into_bytes();
        let mut out = Encoder::with_limit(limit);
        out.raw(&MAGIC)?.u16(MANIFEST_VERSION)?.u16(0)?.u32(body.len() as u32)?.raw(&body)?;
        let crc = crc32c(out.as_bytes());
        out.u32(crc)?;
        Ok(out.into_bytes())
    }

    /// Decodes and validates a manifest; `name` is the file named in errors.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Corrupt`] (with the offset of the damage), [`CheckpointError::UnsupportedVersion`]
    /// for a manifest version or a shard file format version this engine does not read,
    /// [`CheckpointError::Mismatch`] for another key-group function version.
    pub fn decode(name: &Path, bytes: &[u8]) -> Result<Manifest, CheckpointError> {
        let corrupt = |offset: usize, kind| CheckpointError::corrupt(name, offset as u64, kind);
        if bytes.get(..MAGIC.len()).is_none_or(|m| m != MAGIC) {
            return Err(corrupt(0, CorruptKind::BadMagic));
        }
        if bytes.len() < PREFIX_LEN + 4 {
            return Err(corrupt(bytes.len(), CorruptKind::Truncated));
        }
        let body_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        if body_len.checked_add(PREFIX_LEN + 4) != Some(bytes.len()) {
            return Err(corrupt(12, CorruptKind::SizeMismatch));
        }
        let crc_at = bytes.len() - 4;
        let stored = u32::from_le_bytes([
            bytes[crc_at],
            bytes[crc_at + 1],
            bytes[crc_at + 2],
            bytes[crc_at + 3],
        ]);
        if crc32c(&bytes[..crc_at]) != stored {
            return Err(corrupt(0, CorruptKind::ManifestCrc));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if !(1..=MANIFEST_VERSION).contains(&version) {
            return Err(CheckpointError::UnsupportedVersion {
                file: name.to_path_buf(),
                found: version,
                supported: 1..=MANIFEST_VERSION,
            });
        }
        if bytes[10..12] != [0, 0] {
            return Err(corrupt(10, CorruptKind::InvalidValue));
        }
        let manifest = decode_body(&bytes[PREFIX_LEN..crc_at])
            .map_err(|e| e.in_file(name, PREFIX_LEN as u64))?;
        if !(MIN_READ_VERSION..=FORMAT_VERSION).contains(&manifest.format_version) {
            return Err(CheckpointError::UnsupportedVersion {
                file: name.to_path_buf(),
                found: manifest.format_version,
                supported: MIN_READ_VERSION..=FORMAT_VERSION,
            });
        }
        if manifest.key_group_function_version != KEY_GROUP_FUNCTION_VERSION {
            return Err(CheckpointError::Mismatch {
                file: name.to_path_buf(),
                field: MismatchField::KeyGroupFunction,
                expected: KEY_GROUP_FUNCTION_VERSION.to_string(),
                found: manifest.key_group_function_version.to_string(),
            });
        }
        if manifest.inconsistency().is_some() {
            return Err(corrupt(PREFIX_LEN, CorruptKind::InvalidValue));
        }
        Ok(manifest)
    }
}

fn decode_body(body: &[u8]) -> Result<Manifest, DecodeError> {
    let mut d = Decoder::new(body);
    let checkpoint = d.u64()?;
    let at = d.position();
    let kind = match d.u8()? {
        0 => CheckpointKind::Checkpoint,
        1 => CheckpointKind::Savepoint,
        _ => return Err(DecodeError { offset: at as u64, kind: CorruptKind::InvalidValue }),
    };
    let format_version = d.u16()?;
    let shard_count = d.u32()?;
    let max_key_groups = d.u32()?;
    let key_group_function_version = d.u32()?;
    let created_unix_ms = d.i64()?;
    let n = d.len(u64::from(shard_count), MIN_SHARD_ENTRY)?;
    let mut shards = Vec::with_capacity(n);
    for _ in 0..n {
        let shard = d.u32()?;
        let at = d.position();
        let (start, end) = (d.u32()?, d.u32()?);
        let key_groups = KeyGroupRange::new(KeyGroup(start), KeyGroup(end))
            .map_err(|_| DecodeError { offset: at as u64, kind: CorruptKind::InvalidValue })?;
        let at = d.position();
        let file = std::str::from_utf8(d.bytes(MAX_FILE_NAME)?)
            .map_err(|_| DecodeError { offset: at as u64, kind: CorruptKind::InvalidValue })?
            .to_owned();
        let (size, digest, watermark) = (d.u64()?, d.u64()?, d.i64()?);
        shards.push(ManifestShard { shard, key_groups, file, size, digest, watermark });
    }
    let m = d.len(u64::MAX, 1)?;
    let mut source_positions = Vec::with_capacity(m);
    for _ in 0..m {
        source_positions.push(d.bytes(MAX_SOURCE_POSITION_BYTES)?.to_vec());
    }
    d.finish()?;
    Ok(Manifest {
        checkpoint,
        format_version,
        shard_count,
        max_key_groups,
        key_group_function_version,
        shards,
        source_positions,
        created_unix_ms,
        kind,
    })
}

/// Writes `manifest` durably as `MANIFEST-{c:020}` in `dir`, which completes the checkpoint:
/// `MANIFEST-{c:020}.tmp` is created with `O_EXCL` and mode `0600`, written, flushed and
/// `fdatasync`ed (the same steps as a shard file), renamed, and the directory is `fsync`ed.
/// Only `options.faults` applies.
///
/// # Errors
///
/// As [`write_shard_file`](super::write_shard_file); a leftover `MANIFEST-{c:020}.tmp` (from a
/// crash) makes the create fail: remove leftovers at start-up with
/// [`CheckpointDir::remove_leftover_tmp`].
pub fn write_manifest(
    dir: &CheckpointDir,
    manifest: &Manifest,
    options: &WriteOptions,
) -> Result<PathBuf, CheckpointError> {
    if let Some(why) = manifest.inconsistency() {
        return Err(CheckpointError::InvalidArgument(why));
    }
    let bytes = manifest.encode()?;
    let (path, ()) = fs::write_durable(
        &options.faults,
        dir.path(),
        &manifest_tmp_name(manifest.checkpoint),
        &manifest_name(manifest.checkpoint),
        bytes.len() as u64,
        |out| {
            out.copy_from_slice(&bytes);
            Ok(())
        },
    )?;
    Ok(path)
}

/// Reads and validates the manifest at `path`, refusing one over `max_bytes`.
///
/// # Errors
///
/// Those of [`Manifest::decode`], and I/O errors.
pub fn read_manifest(path: &Path, max_bytes: u64) -> Result<Manifest, CheckpointError> {
    read_manifest_with(&FaultPlan::none(), path, max_bytes)
}

pub(crate) fn read_manifest_with(
    faults: &FaultPlan,
    path: &Path,
    max_bytes: u64,
) -> Result<Manifest, CheckpointError> {
    let bytes = fs::read_file(faults, path, max_bytes)?;
    Manifest::decode(path, &bytes)
}
