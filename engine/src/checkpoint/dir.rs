//! The checkpoint directory: its security checks (docs/reliability.md §3.2), the list of
//! checkpoints, restore with its policies (§1.6), garbage collection and leftover cleanup (§1.2).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::{CheckpointError, IoOp};
use super::format::ShardFile;
use super::fs::{self, FaultPlan};
use super::manifest::{CheckpointKind, DEFAULT_MAX_MANIFEST_BYTES, Manifest, read_manifest_with};
use super::names::{FileName, manifest_name};
use super::reader::read_shard_file_with;

/// The largest shard file read by default: 16 GiB (a restore holds the files it validated in
/// memory).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 30;

/// What a restore does when the newest checkpoint does not validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RestorePolicy {
    /// Fail with the newest checkpoint's error (the default).
    #[default]
    Strict,
    /// Walk back to the newest checkpoint that validates completely, reporting what was skipped.
    /// Only correct when the sources can replay from that checkpoint's older positions and no
    /// external side effect was committed beyond it (docs/reliability.md §1.6).
    FallbackToPrevious,
}

/// A checkpoint directory whose location and permissions have been checked.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    path: PathBuf,
    faults: FaultPlan,
    max_file_bytes: u64,
    max_manifest_bytes: u64,
}

/// A manifest found in the directory, valid or not.
#[derive(Debug)]
#[non_exhaustive]
pub struct Candidate {
    /// The checkpoint id its name carries.
    pub checkpoint: u64,
    /// The manifest's path.
    pub path: PathBuf,
    /// The decoded manifest, or why it does not validate.
    pub manifest: Result<Manifest, CheckpointError>,
}

/// A checkpoint validated completely — its manifest and every file it names — ready to restore.
#[derive(Debug)]
#[non_exhaustive]
pub struct RestoredCheckpoint {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its shard files, validated, in shard order: restore from these bytes, not by reading the
    /// files again.
    pub files: Vec<ShardFile>,
    /// Newer checkpoints skipped under [`RestorePolicy::FallbackToPrevious`], newest first, with
    /// the reason each was refused (to be logged and counted).
    pub skipped: Vec<(u64, CheckpointError)>,
}

/// What garbage collection did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// The files deleted.
    pub removed: Vec<PathBuf>,
    /// The complete checkpoints kept by the retention count, newest first (savepoints are kept
    /// as well, and not listed here).
    pub kept: Vec<u64>,
    /// Manifests that do not validate, left in place for inspection, with their errors.
    pub invalid: Vec<(u64, CheckpointError)>,
}

impl CheckpointDir {
    /// Opens the checkpoint directory at `path`, which must exist (to read a checkpoint of it),
    /// with the checks of [`open_or_create`](Self::open_or_create).
    ///
    /// # Errors
    ///
    /// An I/O error naming `path` if it does not exist; those of `open_or_create`.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<CheckpointDir, CheckpointError> {
        let path = path.as_ref();
        std::fs::symlink_metadata(path).map_err(|e| CheckpointError::io(IoOp::Open, path, e))?;
        Self::open_or_create(path)
    }

    /// Opens the checkpoint directory at `path`, creating it (mode `0700`, its parent must exist)
    /// if it does not exist.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Symlink`] if `path` is a symbolic link, [`CheckpointError::NotA`] if it
    /// is not a directory, [`CheckpointError::InsecureDirectory`] if it is group- or
    /// world-writable or not owned by the process's effective user, I/O errors otherwise.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<CheckpointDir, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let faults = FaultPlan::none();
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                    Ok(()) => {
                        // The umask may have cleared bits of 0700 (never added any).
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                            .map_err(|e| CheckpointError::io(IoOp::CreateDir, &path, e))?;
                        // The new directory's entry must survive a crash too (§1.2, "the first
                        // time only").
                        let parent = match path.parent() {
                            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                            _ => PathBuf::from("."),
                        };
                        fs::fsync_dir(&faults, &parent)?;
                    }
                    // Created concurrently by someone else: checked below like any other.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(CheckpointError::io(IoOp::CreateDir, &path, e)),
                }
            }
            Err(e) => return Err(CheckpointError::io(IoOp::Read, &path, e)),
        }
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| CheckpointError::io(IoOp::Read, &path, e))?;
        if meta.file_type().is_symlink() {
            return Err(CheckpointError::Symlink { path });
        }
        if !meta.is_dir() {
            return Err(CheckpointError::NotA { path, expected: "directory" });
        }
        let mode = meta.mode() & 0o7777;
        let euid = fs::effective_uid();
        if mode & 0o022 != 0 || meta.uid() != euid {
            return Err(CheckpointError::InsecureDirectory {
                path,
                mode,
                owner: meta.uid(),
                expected_owner: euid,
            });
        }
        Ok(CheckpointDir {
            path,
            faults,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
        })
    }

    /// The same directory, refusing to read shard files over `max_file_bytes` and manifests
    /// over `max_manifest_bytes`.
    pub fn with_limits(mut self, max_file_bytes: u64, max_manifest_bytes: u64) -> Self {
        self.max_file_bytes = max_file_bytes;
        self.max_manifest_bytes = max_manifest_bytes;
        self
    }

    /// The same directory, with `faults` applied to its own reads, listings and removals.
    pub fn with_faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names in the directory that are checkpoint files, parsed.
    fn entries(&self) -> Result<Vec<(FileName, PathBuf)>, CheckpointError> {
        let list_err = |e| CheckpointError::io(IoOp::ListDir, &self.path, e);
        self.faults.check(IoOp::ListDir).map_err(list_err)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            if let Some(parsed) = name.to_str().and_then(FileName::parse) {
                out.push((parsed, entry.path()));
            }
        }
        Ok(out)
    }

    /// Every manifest in the directory, newest first, decoded and validated (its files are not
    /// read). A manifest that fails validation is listed with its error, never skipped silently.
    ///
    /// # Errors
    ///
    /// I/O errors listing the directory.
    pub fn candidates(&self) -> Result<Vec<Candidate>, CheckpointError> {
        let mut ids: Vec<u64> = self
            .entries()?
            .into_iter()
            .filter_map(|(n, _)| matches!(n, FileName::Manifest { .. }).then(|| n.checkpoint()))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids
            .into_iter()
            .map(|checkpoint| {
                let path = self.path.join(manifest_name(checkpoint));
                let manifest = read_manifest_with(&self.faults, &path, self.max_manifest_bytes)
                    .and_then(|m| {
                        if m.checkpoint == checkpoint {
                            Ok(m)
                        } else {
                            Err(CheckpointError::Mismatch {
                                file: path.clone(),
                                field: super::MismatchField::Checkpoint,
                                expected: checkpoint.to_string(),
                                found: m.checkpoint.to_string(),
                            })
                        }
                    });
                Candidate { checkpoint, path, manifest }
            })
            .collect())
    }

    /// Validates every file `manifest` names, completely, with the size and digest it records,
    /// and returns them in shard order.
    ///
    /// # Errors
    ///
    /// The first file's error: [`CheckpointError::Corrupt`], [`CheckpointError::Mismatch`],
    /// [`CheckpointError::UnsupportedVersion`], I/O errors (a missing file is
    /// [`CheckpointError::Io`] with [`IoOp::Open`]).
    pub fn validate_checkpoint(
        &self,
        manifest: &Manifest,
    ) -> Result<Vec<ShardFile>, CheckpointError> {
        let mut files = Vec::with_capacity(manifest.shards.len());
        for (i, shard) in manifest.shards.iter().enumerate() {
            let expected = manifest.expected_file(i);
            let path = self.path.join(&shard.file);
            files.push(read_shard_file_with(
                &self.faults,
                &path,
                expected.as_ref(),
                self.max_file_bytes,
            )?);
        }
        Ok(files)
    }

    /// The newest checkpoint that validates completely, under `policy`; `None` if the directory
    /// holds no manifest at all.
    ///
    /// # Errors
    ///
    /// Under [`RestorePolicy::Strict`], the newest manifest's error or that of the first of its
    /// files that does not validate; under [`RestorePolicy::FallbackToPrevious`],
    /// [`CheckpointError::NoValidCheckpoint`] if no checkpoint validates. I/O errors listing the
    /// directory in both.
    pub fn newest_complete(
        &self,
        policy: RestorePolicy,
    ) -> Result<Option<RestoredCheckpoint>, CheckpointError> {
        let mut skipped = Vec::new();
        for candidate in self.candidates()? {
            let result = candidate
                .manifest
                .and_then(|m| self.validate_checkpoint(&m).map(|files| (m, files)));
            match (result, policy) {
                (Ok((manifest, files)), _) => {
                    return Ok(Some(RestoredCheckpoint { manifest, files, skipped }));
                }
                (Err(e), RestorePolicy::Strict) => return Err(e),
                (Err(e), _) => skipped.push((candidate.checkpoint, e)),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(CheckpointError::NoValidCheckpoint {
                dir: self.path.clone(),
                skipped: skipped.into_iter().map(|(c, e)| (c, Box::new(e))).collect(),
            })
        }
    }

    /// Checkpoint (or savepoint) `checkpoint` of this directory, validated like
    /// [`newest_complete`](Self::newest_complete) validates the newest: its manifest and every
    /// file it names. For a run that starts from a chosen savepoint.
    ///
    /// # Errors
    ///
    /// The manifest's error (an I/O error naming it if there is none), a mismatch of the id it
    /// records, or that of the first file that does not validate.
    pub fn complete(&self, checkpoint: u64) -> Result<RestoredCheckpoint, CheckpointError> {
        let path = self.path.join(manifest_name(checkpoint));
        let manifest = read_manifest_with(&self.faults, &path, self.max_manifest_bytes)?;
        if manifest.checkpoint != checkpoint {
            return Err(CheckpointError::Mismatch {
                file: path,
                field: super::MismatchField::Checkpoint,
                expected: checkpoint.to_string(),
                found: manifest.checkpoint.to_string(),
            });
        }
        let files = self.validate_checkpoint(&manifest)?;
        Ok(RestoredCheckpoint { manifest, files, skipped: Vec::new() })
    }

    /// Deletes the checkpoints older than the newest `keep` complete ones (`keep >= 2`), so that
    /// a complete checkpoint is always on disk (docs/reliability.md §1.2).
    ///
    /// Completeness is the manifest's: the `keep` newest valid manifests of kind
    /// [`CheckpointKind::Checkpoint`] are kept, and so is everything newer than the oldest of them.
    /// Older checkpoints lose their manifest first (so a crash mid-way never leaves a manifest
    /// naming deleted files), then their shard and temporary files. Savepoints, and manifests that
    /// do not validate (with files of their id), are never deleted. With fewer than `keep`
    /// complete checkpoints nothing is deleted.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidArgument`] if `keep < 2`; I/O errors (files already deleted stay
    /// deleted; a second run finishes the work).
    pub fn gc(&self, keep: usize) -> Result<GcReport, CheckpointError> {
        if keep < 2 {
            return Err(CheckpointError::InvalidArgument(format!(
                "retention of {keep} checkpoints; at least 2 are kept"
            )));
        }
        let mut report = GcReport::default();
        let mut protected = std::collections::BTreeSet::new();
        let mut deletable_manifests = Vec::new();
        for c in self.candidates()? {
            match c.manifest {
                Ok(m) if m.kind == CheckpointKind::Savepoint => {
                    protected.insert(c.checkpoint);
                }
                Ok(_) => {
                    if report.kept.len() < keep {
                        report.kept.push(c.checkpoint);
                    } else {
                        deletable_manifests.push(c.path);
                    }
                }
                Err(e) => {
                    protected.insert(c.checkpoint);
                    report.invalid.push((c.checkpoint, e));
                }
            }
        }
        let Some(&floor) = report.kept.get(keep - 1) else { return Ok(report) };
        for path in deletable_manifests {
            fs::remove(&self.faults, &path)?;
            report.removed.push(path);
        }
        for (name, path) in self.entries()? {
            let c = name.checkpoint();
            let data = !matches!(name, FileName::Manifest { .. });
            if data && c < floor && !protected.contains(&c) {
                fs::remove(&self.faults, &path)?;
                report.removed.push(path);
            }
        }
        if !report.removed.is_empty() {
            fs::fsync_dir(&self.faults, &self.path)?;
        }
        Ok(report)
    }

    /// Deletes every temporary file (`*.tmp` of a shard file or manifest) in the directory: the
    /// remains of attempts that crashed. Call it at start-up, before any writer runs; a temporary
    /// file is never a checkpoint.
    ///
    /// # Errors
    ///
    /// I/O errors listing or deleting.
    pub fn remove_leftover_tmp(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let mut removed = Vec::new();
        for (name, path) in self.entries()? {
            if matches!(name, FileName::ShardTmp { .. } | FileName::ManifestTmp { .. }) {
                fs::remove(&self.faults, &path)?;
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            fs::fsync_dir(&self.faults, &self.path)?;
        }
        Ok(removed)
    }

    /// The next attempt number for shard `shard`'s file of checkpoint `checkpoint`: one past the
    /// largest attempt whose temporary file is in the directory, 0 if there is none. A writer
    /// that keeps its own count in memory passes `max(own, this)`; temporary names are never
    /// reused while a file of that name exists.
    ///
    /// # Errors
    ///
    /// I/O errors listing the directory.
    pub fn next_attempt(&self, checkpoint: u64, shard: u32) -> Result<u32, CheckpointError> {
        let mut next = 0u32;
        for (name, _) in self.entries()? {
            if let FileName::ShardTmp { checkpoint: c, shard: s, attempt } = name {
                if c == checkpoint && s == shard {
                    next = next.max(attempt.saturating_add(1));
                }
            }
        }
        Ok(next)
    }
}
