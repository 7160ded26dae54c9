//! Keyed operators' snapshots in a shard file: one section of kind [`KEYED_SECTION`] per keyed
//! operator of the shard, holding the operator's name and its [`BackendSnapshot`] (keys, state
//! rows and timers by key group). A restore on any shard count reads every shard file of the
//! checkpoint and gives each operator the key groups of its new shard.
//!
//! Section layout: `varint len | operator name (UTF-8) | varint len | snapshot bytes`
//! ([`BackendSnapshot::to_bytes`]). Sections of other kinds are left to their readers.

use std::path::Path;

use super::codec::{Decoder, Encoder};
use super::error::{CheckpointError, CorruptKind};
use super::format::ShardFile;
use crate::keyed::{BackendSnapshot, FrozenSnapshot};

/// The section kind of a keyed operator's snapshot.
pub const KEYED_SECTION: u8 = 1;

/// The longest operator name a section may hold.
const MAX_OPERATOR_NAME: u64 = 4096;

/// The section bytes of operator `operator`'s snapshot.
///
/// # Errors
///
/// [`CheckpointError::TooLarge`] for a name over 4 KiB.
pub fn keyed_section(
    operator: &str,
    snapshot: &BackendSnapshot,
) -> Result<Vec<u8>, CheckpointError> {
    section(operator, &snapshot.to_bytes())
}

/// The section bytes of operator `operator`'s frozen backend, encoded here (on the checkpoint
/// thread, not the shard): the same bytes as [`keyed_section`] of its snapshot.
///
/// # Errors
///
/// [`CheckpointError::TooLarge`] for a name over 4 KiB, [`CheckpointError::Encode`] for a state
/// value that does not encode.
pub fn keyed_section_frozen(
    operator: &str,
    frozen: &dyn FrozenSnapshot,
) -> Result<Vec<u8>, CheckpointError> {
    let snapshot = frozen
        .encoded()
        .map_err(|source| CheckpointError::Encode { operator: operator.to_string(), source })?;
    // The section's framing as `section` writes it, then the snapshot in one copy.
    let len = snapshot.encoded_len();
    let mut e = Encoder::with_limit(usize::MAX);
    e.bytes(checked_name(operator)?.as_bytes())?.varint(len as u64)?;
    let mut out = e.into_bytes();
    out.reserve_exact(len);
    snapshot.write_to(&mut out);
    Ok(out)
}

fn checked_name(operator: &str) -> Result<&str, CheckpointError> {
    if operator.len() as u64 > MAX_OPERATOR_NAME {
        return Err(CheckpointError::TooLarge {
            what: "operator name",
            len: operator.len() as u64,
            limit: MAX_OPERATOR_NAME,
        });
    }
    Ok(operator)
}

fn section(operator: &str, snapshot: &[u8]) -> Result<Vec<u8>, CheckpointError> {
    let mut e = Encoder::with_limit(usize::MAX);
    e.bytes(checked_name(operator)?.as_bytes())?.bytes(snapshot)?;
    Ok(e.into_bytes())
}

/// The keyed snapshots of a validated shard file (`file`, read from `path`), in section order,
/// decoded into trees ([`BackendSnapshot`]; for tools and tests: a restore reads the encoded
/// ones, [`keyed_sections`]).
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] naming the file when a section does not decode (its checksums
/// were right, so the writer wrote something this build cannot read).
pub fn keyed_snapshots(
    path: &Path,
    file: &ShardFile,
) -> Result<Vec<(String, BackendSnapshot)>, CheckpointError> {
    let mut out = Vec::new();
    for (name, at, snapshot) in sections(path, file)? {
        let snapshot = BackendSnapshot::from_bytes(snapshot).map_err(|_| corrupt(path, at))?;
        out.push((name, snapshot));
    }
    Ok(out)
}

/// The keyed snapshots of a validated shard file, encoded, each checked to its last byte
/// ([`BackendSnapshot::check_encoded`]) but not decoded: what a restore gives the operators,
/// which decode their own key groups from them.
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] naming the file when a section is not a snapshot this build
/// reads.
pub fn keyed_sections(
    path: &Path,
    file: &ShardFile,
) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
    let mut out = Vec::new();
    for (name, at, snapshot) in sections(path, file)? {
        BackendSnapshot::check_encoded(snapshot).map_err(|_| corrupt(path, at))?;
        out.push((name, snapshot.to_vec()));
    }
    Ok(out)
}

/// A keyed section: the operator's name, the offset of its snapshot in the section, the
/// snapshot's bytes.
type Section<'f> = (String, u64, &'f [u8]);

/// The keyed sections of `file`.
fn sections<'f>(path: &Path, file: &'f ShardFile) -> Result<Vec<Section<'f>>, CheckpointError> {
    let mut out = Vec::new();
    for (kind, bytes) in &file.sections {
        if *kind != KEYED_SECTION {
            continue;
        }
        let mut d = Decoder::new(bytes);
        let name = d.bytes(MAX_OPERATOR_NAME).map_err(|e| e.in_file(path, 0))?;
        let name = std::str::from_utf8(name).map_err(|_| corrupt(path, 0))?.to_string();
        let at = d.position() as u64;
        let snapshot = d.bytes(u64::MAX).map_err(|e| e.in_file(path, 0))?;
        d.finish().map_err(|e| e.in_file(path, 0))?;
        out.push((name, at, snapshot));
    }
    Ok(out)
}

fn corrupt(path: &Path, offset: u64) -> CheckpointError {
    CheckpointError::Corrupt { file: path.to_path_buf(), offset, kind: CorruptKind::InvalidValue }
}
