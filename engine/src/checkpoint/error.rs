//! The checkpoint layer's error type: every failure names the file (or directory) and, for damage
//! found while validating, the byte offset inside the damaged structure (docs/reliability.md §1.6).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An I/O step of the checkpoint protocol, named in [`CheckpointError::Io`] and counted by the
/// fault hook ([`FaultPlan`](super::FaultPlan)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IoOp {
    /// Creating a temporary file (`O_CREAT | O_EXCL | O_NOFOLLOW`).
    Create,
    /// Forcing a created file's mode to `0600` (`fchmod`), whatever the umask.
    Chmod,
    /// Reserving the file's exact size (`posix_fallocate`).
    Fallocate,
    /// Mapping the file for writing (`mmap`).
    Mmap,
    /// Flushing the mapped pages (`msync(MS_SYNC)`).
    Msync,
    /// Making the file's data durable (`fdatasync`).
    Fdatasync,
    /// Closing the file descriptor (`close`, whose error is reported, not ignored).
    Close,
    /// Publishing the file under its final name (`rename`).
    Rename,
    /// Making a directory entry change durable (`fsync` of the directory).
    FsyncDir,
    /// Opening a file or directory for reading.
    Open,
    /// Reading a file or its metadata.
    Read,
    /// Listing a directory.
    ListDir,
    /// Creating the checkpoint directory.
    CreateDir,
    /// Deleting a file (garbage collection, leftover temporary files).
    Remove,
}

impl IoOp {
    /// Every operation, in protocol order: for tables and loops over the steps.
    pub const ALL: [IoOp; 14] = [
        IoOp::Create,
        IoOp::Chmod,
        IoOp::Fallocate,
        IoOp::Mmap,
        IoOp::Msync,
        IoOp::Fdatasync,
        IoOp::Close,
        IoOp::Rename,
        IoOp::FsyncDir,
        IoOp::Open,
        IoOp::Read,
        IoOp::ListDir,
        IoOp::CreateDir,
        IoOp::Remove,
    ];

    /// The steps of writing one file durably (a shard file or a manifest), in order: the first
    /// nine of [`IoOp::ALL`], `Create` to `FsyncDir`.
    pub const WRITE_STEPS: &'static [IoOp] = IoOp::ALL.split_at(9).0;

    /// The operation's name as it appears in error messages.
    pub fn name(self) -> &'static str {
        match self {
            IoOp::Create => "create",
            IoOp::Chmod => "chmod",
            IoOp::Fallocate => "fallocate",
            IoOp::Mmap => "mmap",
            IoOp::Msync => "msync",
            IoOp::Fdatasync => "fdatasync",
            IoOp::Close => "close",
            IoOp::Rename => "rename",
            IoOp::FsyncDir => "fsync dir",
            IoOp::Open => "open",
            IoOp::Read => "read",
            IoOp::ListDir => "list dir",
            IoOp::CreateDir => "create dir",
            IoOp::Remove => "remove",
        }
    }
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a damaged checkpoint file or manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The first bytes are not the file's magic: not a checkpoint file, or its start is damaged.
    BadMagic,
    /// The header's CRC32C does not match its bytes.
    HeaderCrc,
    /// A header field holds a value no writer produces (a CRC-valid but inconsistent header).
    HeaderField,
    /// The size declared in the header differs from the file's real size.
    SizeMismatch,
    /// A block's CRC32C (over its context, length, kind and payload) does not match.
    BlockCrc,
    /// A block's length or kind disagrees with the footer's CRC-protected block index, or the
    /// index itself is inconsistent (offsets, lengths, section ends).
    BlockIndex,
    /// The footer's magic is wrong.
    FooterMagic,
    /// The footer's CRC32C does not match its bytes.
    FooterCrc,
    /// The footer disagrees with the header (block count, payload length).
    FooterField,
    /// The digest over the block CRCs differs from the one recorded in the footer.
    Digest,
    /// The data ends before the structure being read.
    Truncated,
    /// A length or count is larger than the bytes that remain or than its configured cap.
    LengthOutOfBounds,
    /// A LEB128 varint is longer than its type allows or overflows it.
    VarintOverflow,
    /// The manifest's CRC32C does not match its bytes.
    ManifestCrc,
    /// A CRC-valid value is invalid (an enum tag, a range, a file name, trailing bytes).
    InvalidValue,
}

impl fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CorruptKind::BadMagic => "bad magic",
            CorruptKind::HeaderCrc => "header CRC mismatch",
            CorruptKind::HeaderField => "invalid header field",
            CorruptKind::SizeMismatch => "declared size differs from the file size",
            CorruptKind::BlockCrc => "block CRC mismatch",
            CorruptKind::BlockIndex => "block disagrees with the block index",
            CorruptKind::FooterMagic => "bad footer magic",
            CorruptKind::FooterCrc => "footer CRC mismatch",
            CorruptKind::FooterField => "footer disagrees with the header",
            CorruptKind::Digest => "digest mismatch",
            CorruptKind::Truncated => "truncated",
            CorruptKind::LengthOutOfBounds => "length out of bounds",
            CorruptKind::VarintOverflow => "varint overflow",
            CorruptKind::ManifestCrc => "manifest CRC mismatch",
            CorruptKind::InvalidValue => "invalid value",
        })
    }
}

/// Which property of a file disagrees with what the manifest (or the caller) expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MismatchField {
    /// The checkpoint id.
    Checkpoint,
    /// The shard id.
    Shard,
    /// The shard count.
    ShardCount,
    /// The key-group range.
    KeyGroups,
    /// The file's size.
    Size,
    /// The digest over the file's block CRCs.
    Digest,
    /// The shard file format version.
    FormatVersion,
    /// The key → key group function's version.
    KeyGroupFunction,
}

impl fmt::Display for MismatchField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MismatchField::Checkpoint => "checkpoint id",
            MismatchField::Shard => "shard",
            MismatchField::ShardCount => "shard count",
            MismatchField::KeyGroups => "key-group range",
            MismatchField::Size => "size",
            MismatchField::Digest => "digest",
            MismatchField::FormatVersion => "format version",
            MismatchField::KeyGroupFunction => "key-group function version",
        })
    }
}

/// A failure of the checkpoint layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// An I/O step failed; the attempt that ran it is abandoned (docs/reliability.md §1.5).
    #[error("checkpoint I/O: {op} {}: {source}", path.display())]
    Io {
        /// The file or directory the step was applied to.
        path: PathBuf,
        /// The step.
        op: IoOp,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file system has no room for the file (`ENOSPC`, reported by `posix_fallocate` before
    /// anything is written through the mapping, so never as `SIGBUS`).
    #[error("checkpoint I/O: no space left for {} ({op}): {source}", path.display())]
    NoSpace {
        /// The file that could not be written.
        path: PathBuf,
        /// The step that reported it.
        op: IoOp,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file or manifest is damaged; `offset` lies inside the damaged structure.
    #[error("corrupt checkpoint file {} at byte {offset}: {kind}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// A byte offset inside the damaged structure (header, block, footer, field).
        offset: u64,
        /// What is wrong.
        kind: CorruptKind,
    },
    /// The file was written in a format version this reader does not read.
    #[error(
        "checkpoint file {} has format version {found}; this engine reads versions {}..={}",
        file.display(), supported.start(), supported.end()
    )]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version the file declares.
        found: u16,
        /// The versions this reader accepts.
        supported: std::ops::RangeInclusive<u16>,
    },
    /// A valid file does not belong where it was found: its checkpoint id, shard, shard count,
    /// key-group range, size or digest differs from what the manifest records.
    #[error("checkpoint file {} does not match its manifest: {field} is {found}, expected {expected}", file.display())]
    Mismatch {
        /// The file.
        file: PathBuf,
        /// The property that differs.
        field: MismatchField,
        /// What the manifest (or caller) expects.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The checkpoint directory could be read or written by others, or belongs to another user.
    #[error(
        "insecure checkpoint directory {}: mode {mode:o}, owner uid {owner} (need no group/world write and owner uid {expected_owner})",
        path.display()
    )]
    InsecureDirectory {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// The process's effective user id.
        expected_owner: u32,
    },
    /// A path that must be a real directory or file is a symbolic link (never followed).
    #[error("refusing to follow the symbolic link {}", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A path that must be a directory (or a regular file) is something else.
    #[error("{} is not a {expected}", path.display())]
    NotA {
        /// The path.
        path: PathBuf,
        /// `"directory"` or `"regular file"`.
        expected: &'static str,
    },
    /// A length exceeds its configured cap (a file larger than the reader's limit, an encoder
    /// past its limit, a block size out of range).
    #[error("{what} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The cap.
        limit: u64,
    },
    /// A keyed operator's state, frozen at a barrier, does not encode (a state value that serde
    /// refuses): the checkpoint is not written.
    #[error("the state of operator `{operator}` does not encode: {source}")]
    Encode {
        /// The operator's id in the checkpoint.
        operator: String,
        /// Why.
        source: crate::keyed::SnapshotError,
    },
    /// A caller's argument is invalid (a shard outside the shard count, retention below 2).
    #[error("invalid checkpoint argument: {0}")]
    InvalidArgument(String),
    /// No checkpoint in the directory validates (under [`RestorePolicy::FallbackToPrevious`](super::RestorePolicy)).
    #[error("no valid checkpoint in {}: {} candidates, all invalid", dir.display(), skipped.len())]
    NoValidCheckpoint {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Every candidate, newest first, with the reason it was refused.
        skipped: Vec<(u64, Box<CheckpointError>)>,
    },
}

impl CheckpointError {
    /// An I/O error of `op` on `path`; `ENOSPC` becomes [`CheckpointError::NoSpace`].
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            CheckpointError::NoSpace { path, op, source }
        } else if op == IoOp::Open && source.raw_os_error() == Some(libc::ELOOP) {
            CheckpointError::Symlink { path }
        } else {
            CheckpointError::Io { path, op, source }
        }
    }

    /// Damage of `kind` in `file` at `offset`.
    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, kind: CorruptKind) -> Self {
        CheckpointError::Corrupt { file: file.into(), offset, kind }
    }

    /// The corruption kind, if this is a [`CheckpointError::Corrupt`]: for tests and reports.
    pub fn corrupt_kind(&self) -> Option<CorruptKind> {
        match self {
            CheckpointError::Corrupt { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
