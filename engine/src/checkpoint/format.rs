//! The shard file format: header, blocks, footer (docs/reliability.md §1.3, §1.4). Encoding into a
//! buffer of the exact size, and validation of a whole file held in memory.
//!
//! The byte layout is drawn in the module docs (`checkpoint`, "Implementation"); the invariants
//! validation checks, referred to by number below:
//!
//! 1. The header is CRC-valid, of a supported version, and every field holds a value a writer
//!    produces (no flags, zero reserved bytes, `shard < shard_count`, a non-empty key-group
//!    range, a block size in `MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE`).
//! 2. The size the header declares is the real size, and the header's block count and payload
//!    length add up to it exactly (so the footer's place follows from protected bytes only).
//! 3. The footer is CRC-valid (its CRC covers the checkpoint id and shard, so a footer copied
//!    from another file fails), has its magic, and agrees with the header.
//! 4. The block index is contiguous from the end of the header to the footer, no block is longer
//!    than the block size, a section's continuation blocks have its kind, and the last block ends
//!    a section (it is shorter than the block size).
//! 5. Every block's stored length and kind equal its index entry, and its CRC over
//!    `ctx || len || kind || payload`, with `ctx = (checkpoint id, shard, block index)`, matches.
//! 6. The xxh3-64 digest over every block CRC equals the footer's.
//!
//! A section is cut into blocks of `block_size` bytes; its last block is shorter than
//! `block_size` — empty if the section's length is a multiple of it, so an empty section is one
//! empty block. That is how the reader finds where one section ends and the next begins without
//! any extra field.

use std::path::Path;

use crc32c::{crc32c, crc32c_append};
use xxhash_rust::xxh3::Xxh3Default;

use super::error::{CheckpointError, CorruptKind};
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// The shard file format version this engine writes.
pub const FORMAT_VERSION: u16 = 1;

/// The oldest shard file format version this engine reads.
pub const MIN_READ_VERSION: u16 = 1;

/// The largest payload of one block, and the default block size: 64 KiB.
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024;

/// The smallest block size a writer may choose (tests use small blocks to get many of them).
pub const MIN_BLOCK_SIZE: u32 = 16;

pub(crate) const MAGIC: [u8; 8] = *b"PWHLCKPT";
pub(crate) const FOOTER_MAGIC: [u8; 8] = *b"PWHLFOOT";
pub(crate) const HEADER_LEN: usize = 128;
/// `len u32 | kind u8` before the payload, `crc u32` after it.
pub(crate) const BLOCK_OVERHEAD: usize = 9;
/// Footer without its index: magic 8, block count 4, reserved 4, payload length 8, digest 8,
/// CRC 4.
pub(crate) const FOOTER_FIXED: usize = 36;
/// One index entry: offset u64, len u32, kind u8, 3 zero bytes.
pub(crate) const INDEX_ENTRY: usize = 16;
const ENGINE_VERSION_LEN: usize = 16;

// Header field offsets.
const H_VERSION: usize = 8;
const H_HEADER_LEN: usize = 10;
const H_FLAGS: usize = 12;
const H_ENGINE: usize = 16;
const H_CHECKPOINT: usize = 32;
const H_SHARD: usize = 40;
const H_SHARD_COUNT: usize = 44;
const H_KG_START: usize = 48;
const H_KG_END: usize = 52;
const H_BLOCK_SIZE: usize = 56;
const H_BLOCK_COUNT: usize = 60;
const H_PAYLOAD: usize = 64;
const H_FILE_SIZE: usize = 72;
const H_RESERVED: usize = 80;
const H_CRC: usize = HEADER_LEN - 4;

// Footer field offsets, relative to the footer's start.
const F_BLOCK_COUNT: usize = 8;
const F_RESERVED: usize = 12;
const F_PAYLOAD: usize = 16;
const F_DIGEST: usize = 24;
const F_INDEX: usize = 32;

/// Who wrote a shard file: the identity of the file, recorded in its header and bound into every
/// block's CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardFileMeta {
    /// The checkpoint id.
    pub checkpoint: u64,
    /// The shard that wrote the file.
    pub shard: u32,
    /// The number of shards of the job.
    pub shard_count: u32,
    /// The key groups whose state the file holds.
    pub key_groups: KeyGroupRange,
    /// The write attempt (docs/reliability.md §1.5); only the temporary file's name carries it.
    pub attempt: u32,
}

impl ShardFileMeta {
    /// The identity of shard `shard`'s file of checkpoint `checkpoint`, attempt 0.
    pub fn new(checkpoint: u64, shard: u32, shard_count: u32, key_groups: KeyGroupRange) -> Self {
        ShardFileMeta { checkpoint, shard, shard_count, key_groups, attempt: 0 }
    }

    /// The same identity, for write attempt `attempt`.
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }
}

/// What a validated shard file's header and footer say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardFileInfo {
    /// The checkpoint id.
    pub checkpoint: u64,
    /// The shard that wrote the file.
    pub shard: u32,
    /// The number of shards of the job that wrote it.
    pub shard_count: u32,
    /// The key groups whose state the file holds.
    pub key_groups: KeyGroupRange,
    /// The format version it was written in.
    pub format_version: u16,
    /// The version of the engine that wrote it (informational).
    pub engine_version: String,
    /// The largest payload of one block.
    pub block_size: u32,
    /// The number of blocks.
    pub block_count: u32,
    /// The total payload bytes of all blocks.
    pub payload_len: u64,
    /// The file's size in bytes.
    pub file_size: u64,
    /// The xxh3-64 digest over every block CRC, which the manifest records.
    pub digest: u64,
}

/// A validated shard file: its header data and its sections, in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardFile {
    /// What the header and footer say.
    pub meta: ShardFileInfo,
    /// `(kind, bytes)` of every section, concatenated from its blocks.
    pub sections: Vec<(u8, Vec<u8>)>,
}

/// One block as the writer lays it out or the validator found it.
#[derive(Debug, Clone, Copy)]
struct BlockRef {
    /// Offset of the block's `len` field in the file.
    offset: usize,
    len: usize,
    kind: u8,
}

/// The number of blocks a section of `len` bytes takes: full blocks plus one shorter last block.
fn blocks_of(len: usize, block_size: usize) -> usize {
    len / block_size + 1
}

/// The exact size of the file holding `sections` with blocks of `block_size`, and its block count.
pub(crate) fn planned_size(
    sections: &[(u8, &[u8])],
    block_size: u32,
) -> Result<(u64, u32), CheckpointError> {
    check_block_size(block_size)?;
    let bs = block_size as usize;
    let too_large = |len| CheckpointError::TooLarge { what: "shard file", len, limit: u64::MAX };
    let mut blocks: u64 = 0;
    let mut size: u64 = (HEADER_LEN + FOOTER_FIXED) as u64;
    for (_, data) in sections {
        let n = blocks_of(data.len(), bs) as u64;
        blocks = blocks.checked_add(n).ok_or_else(|| too_large(u64::MAX))?;
        size = n
            .checked_mul((BLOCK_OVERHEAD + INDEX_ENTRY) as u64)
            .and_then(|o| o.checked_add(data.len() as u64))
            .and_then(|o| size.checked_add(o))
            .ok_or_else(|| too_large(u64::MAX))?;
    }
    let blocks = u32::try_from(blocks).map_err(|_| CheckpointError::TooLarge {
        what: "shard file block count",
        len: blocks,
        limit: u64::from(u32::MAX),
    })?;
    Ok((size, blocks))
}

pub(crate) fn check_block_size(block_size: u32) -> Result<(), CheckpointError> {
    if (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        Ok(())
    } else {
        Err(CheckpointError::InvalidArgument(format!(
            "block size {block_size} outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE}"
        )))
    }
}

fn block_ctx(checkpoint: u64, shard: u32, index: u32) -> [u8; 16] {
    let mut ctx = [0u8; 16];
    ctx[..8].copy_from_slice(&checkpoint.to_le_bytes());
    ctx[8..12].copy_from_slice(&shard.to_le_bytes());
    ctx[12..].copy_from_slice(&index.to_le_bytes());
    ctx
}

fn footer_ctx(checkpoint: u64, shard: u32) -> [u8; 12] {
    let mut ctx = [0u8; 12];
    ctx[..8].copy_from_slice(&checkpoint.to_le_bytes());
    ctx[8..].copy_from_slice(&shard.to_le_bytes());
    ctx
}

/// The engine version written into headers: the crate version, truncated to 16 ASCII bytes.
fn engine_version_field() -> [u8; ENGINE_VERSION_LEN] {
    let mut field = [0u8; ENGINE_VERSION_LEN];
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    let n = v.len().min(ENGINE_VERSION_LEN);
    field[..n].copy_from_slice(&v[..n]);
    field
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Encodes `sections` into `out`, whose length must be [`planned_size`]'s; returns the digest.
///
/// `out` may hold anything (a fresh mapping is zeroed, a reused buffer is not): every byte is
/// written.
pub(crate) fn encode_into(
    meta: &ShardFileMeta,
    sections: &[(u8, &[u8])],
    block_size: u32,
    out: &mut [u8],
) -> Result<u64, CheckpointError> {
    let (size, block_count) = planned_size(sections, block_size)?;
    if size != out.len() as u64 {
        return Err(CheckpointError::InvalidArgument(format!(
            "output buffer of {} bytes for a file of {size}",
            out.len()
        )));
    }
    if meta.shard >= meta.shard_count {
        return Err(CheckpointError::InvalidArgument(format!(
            "shard {} of {} shards",
            meta.shard, meta.shard_count
        )));
    }
    let bs = block_size as usize;
    let payload_len: u64 = sections.iter().map(|(_, d)| d.len() as u64).sum();
    let n = block_count as usize;
    let footer_start = out.len() - (FOOTER_FIXED + INDEX_ENTRY * n);

    // Header.
    let h = &mut out[..HEADER_LEN];
    h.fill(0);
    put(h, 0, &MAGIC);
    put(h, H_VERSION, &FORMAT_VERSION.to_le_bytes());
    put(h, H_HEADER_LEN, &(HEADER_LEN as u16).to_le_bytes());
    put(h, H_FLAGS, &0u32.to_le_bytes());
    put(h, H_ENGINE, &engine_version_field());
    put(h, H_CHECKPOINT, &meta.checkpoint.to_le_bytes());
    put(h, H_SHARD, &meta.shard.to_le_bytes());
    put(h, H_SHARD_COUNT, &meta.shard_count.to_le_bytes());
    put(h, H_KG_START, &meta.key_groups.start().0.to_le_bytes());
    put(h, H_KG_END, &meta.key_groups.end().0.to_le_bytes());
    put(h, H_BLOCK_SIZE, &block_size.to_le_bytes());
    put(h, H_BLOCK_COUNT, &block_count.to_le_bytes());
    put(h, H_PAYLOAD, &payload_len.to_le_bytes());
    put(h, H_FILE_SIZE, &size.to_le_bytes());
    let crc = crc32c(&h[..H_CRC]);
    put(h, H_CRC, &crc.to_le_bytes());

    // Blocks, and the footer's index as we go.
    let mut digest = Xxh3Default::new();
    let mut pos = HEADER_LEN;
    let mut index: u32 = 0;
    let mut entry_at = footer_start + F_INDEX;
    for (kind, data) in sections {
        let pieces = blocks_of(data.len(), bs);
        for p in 0..pieces {
            let chunk = &data[(p * bs).min(data.len())..((p + 1) * bs).min(data.len())];
            let len = chunk.len();
            put(out, pos, &(len as u32).to_le_bytes());
            out[pos + 4] = *kind;
            put(out, pos + 5, chunk);
            let crc = crc32c_append(
                crc32c(&block_ctx(meta.checkpoint, meta.shard, index)),
                &out[pos..pos + 5 + len],
            );
            put(out, pos + 5 + len, &crc.to_le_bytes());
            digest.update(&crc.to_le_bytes());

            put(out, entry_at, &(pos as u64).to_le_bytes());
            put(out, entry_at + 8, &(len as u32).to_le_bytes());
            put(out, entry_at + 12, &[*kind, 0, 0, 0]);
            entry_at += INDEX_ENTRY;
            pos += BLOCK_OVERHEAD + len;
            index += 1;
        }
    }
    debug_assert_eq!(pos, footer_start);
    debug_assert_eq!(index, block_count);

    // Footer.
    let digest = digest.digest();
    put(out, footer_start, &FOOTER_MAGIC);
    put(out, footer_start + F_BLOCK_COUNT, &block_count.to_le_bytes());
    put(out, footer_start + F_RESERVED, &0u32.to_le_bytes());
    put(out, footer_start + F_PAYLOAD, &payload_len.to_le_bytes());
    put(out, footer_start + F_DIGEST, &digest.to_le_bytes());
    let crc_at = out.len() - 4;
    let crc =
        crc32c_append(crc32c(&footer_ctx(meta.checkpoint, meta.shard)), &out[footer_start..crc_at]);
    put(out, crc_at, &crc.to_le_bytes());
    Ok(digest)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Validates a whole shard file held in memory and returns its sections.
///
/// Every check of the format is made before anything is returned; `name` is the file named in
/// errors. This is what [`read_shard_file`](super::read_shard_file) runs on the bytes it read.
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] naming `name` and an offset inside the damaged structure (the
/// header, a block, the footer or one of their fields), or
/// [`CheckpointError::UnsupportedVersion`].
pub fn validate_bytes(name: &Path, bytes: &[u8]) -> Result<ShardFile, CheckpointError> {
    let (meta, blocks) = validate(name, bytes)?;
    // Invariant 4 makes every section end inside the file; sizes come from validated lengths.
    let mut sections = Vec::new();
    let bs = meta.block_size as usize;
    let mut i = 0;
    while i < blocks.len() {
        let kind = blocks[i].kind;
        let mut j = i;
        let mut len = 0;
        while blocks[j].len == bs {
            len += bs;
            j += 1;
        }
        len += blocks[j].len;
        let mut data = Vec::with_capacity(len);
        for b in &blocks[i..=j] {
            data.extend_from_slice(&bytes[b.offset + 5..b.offset + 5 + b.len]);
        }
        sections.push((kind, data));
        i = j + 1;
    }
    Ok(ShardFile { meta, sections })
}

/// Checks invariants 1–6 and returns the header data and the block list.
fn validate(name: &Path, bytes: &[u8]) -> Result<(ShardFileInfo, Vec<BlockRef>), CheckpointError> {
    let corrupt = |offset: usize, kind| CheckpointError::corrupt(name, offset as u64, kind);
    let len = bytes.len();

    // Invariant 1. Bytes 0..12 (magic, version, header length) and the header's ending in its
    // CRC are the same in every version, so a future version is recognized as such.
    if bytes.get(..MAGIC.len()).is_none_or(|m| m != MAGIC) {
        return Err(if len < MAGIC.len() && MAGIC.starts_with(bytes) {
            corrupt(len, CorruptKind::Truncated)
        } else {
            corrupt(0, CorruptKind::BadMagic)
        });
    }
    if len < H_FLAGS {
        return Err(corrupt(len, CorruptKind::Truncated));
    }
    let header_len = le_u16(bytes, H_HEADER_LEN) as usize;
    if header_len < H_FLAGS + 4 || header_len % 4 != 0 {
        return Err(corrupt(H_HEADER_LEN, CorruptKind::HeaderField));
    }
    if header_len > len {
        return Err(corrupt(H_HEADER_LEN, CorruptKind::Truncated));
    }
    let stored = le_u32(bytes, header_len - 4);
    if crc32c(&bytes[..header_len - 4]) != stored {
        return Err(corrupt(0, CorruptKind::HeaderCrc));
    }
    let version = le_u16(bytes, H_VERSION);
    if !(MIN_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CheckpointError::UnsupportedVersion {
            file: name.to_path_buf(),
            found: version,
            supported: MIN_READ_VERSION..=FORMAT_VERSION,
        });
    }
    if header_len != HEADER_LEN {
        return Err(corrupt(H_HEADER_LEN, CorruptKind::HeaderField));
    }
    let h = &bytes[..HEADER_LEN];
    if le_u32(h, H_FLAGS) != 0 {
        return Err(corrupt(H_FLAGS, CorruptKind::HeaderField));
    }
    if h[H_RESERVED..H_CRC].iter().any(|&b| b != 0) {
        return Err(corrupt(H_RESERVED, CorruptKind::HeaderField));
    }
    let engine = &h[H_ENGINE..H_ENGINE + ENGINE_VERSION_LEN];
    let engine_len = engine.iter().position(|&b| b == 0).unwrap_or(ENGINE_VERSION_LEN);
    if !engine[..engine_len].iter().all(|b| b.is_ascii_graphic())
        || engine[engine_len..].iter().any(|&b| b != 0)
    {
        return Err(corrupt(H_ENGINE, CorruptKind::HeaderField));
    }
    let checkpoint = le_u64(h, H_CHECKPOINT);
    let shard = le_u32(h, H_SHARD);
    let shard_count = le_u32(h, H_SHARD_COUNT);
    if shard >= shard_count {
        return Err(corrupt(H_SHARD, CorruptKind::HeaderField));
    }
    let key_groups =
        KeyGroupRange::new(KeyGroup(le_u32(h, H_KG_START)), KeyGroup(le_u32(h, H_KG_END)))
            .map_err(|_| corrupt(H_KG_START, CorruptKind::HeaderField))?;
    let block_size = le_u32(h, H_BLOCK_SIZE);
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(corrupt(H_BLOCK_SIZE, CorruptKind::HeaderField));
    }
    let block_count = le_u32(h, H_BLOCK_COUNT);
    let payload_len = le_u64(h, H_PAYLOAD);
    let file_size = le_u64(h, H_FILE_SIZE);

    // Invariant 2.
    if file_size != len as u64 {
        return Err(corrupt(H_FILE_SIZE, CorruptKind::SizeMismatch));
    }
    let n = block_count as u64;
    let expected_size = n
        .checked_mul((BLOCK_OVERHEAD + INDEX_ENTRY) as u64)
        .and_then(|s| s.checked_add(payload_len))
        .and_then(|s| s.checked_add((HEADER_LEN + FOOTER_FIXED) as u64));
    if expected_size != Some(file_size) {
        return Err(corrupt(H_BLOCK_COUNT, CorruptKind::HeaderField));
    }
    // All of these fit: their sum is `len`.
    let n = block_count as usize;
    let footer_len = FOOTER_FIXED + INDEX_ENTRY * n;
    let footer_start = len - footer_len;
    let f = &bytes[footer_start..];

    // Invariant 3.
    let stored = le_u32(f, footer_len - 4);
    if crc32c_append(crc32c(&footer_ctx(checkpoint, shard)), &f[..footer_len - 4]) != stored {
        return Err(corrupt(footer_start, CorruptKind::FooterCrc));
    }
    if f[..FOOTER_MAGIC.len()] != FOOTER_MAGIC {
        return Err(corrupt(footer_start, CorruptKind::FooterMagic));
    }
    if le_u32(f, F_BLOCK_COUNT) != block_count || le_u32(f, F_RESERVED) != 0 {
        return Err(corrupt(footer_start + F_BLOCK_COUNT, CorruptKind::FooterField));
    }
    if le_u64(f, F_PAYLOAD) != payload_len {
        return Err(corrupt(footer_start + F_PAYLOAD, CorruptKind::FooterField));
    }
    let digest = le_u64(f, F_DIGEST);

    // Invariant 4: the index alone decides which bytes are checked.
    let bs = block_size as usize;
    let mut blocks = Vec::with_capacity(n);
    let mut pos = HEADER_LEN;
    let mut continues: Option<u8> = None;
    for i in 0..n {
        let at = F_INDEX + INDEX_ENTRY * i;
        let entry_err = corrupt(footer_start + at, CorruptKind::BlockIndex);
        let offset = le_u64(f, at);
        let blen = le_u32(f, at + 8) as usize;
        let kind = f[at + 12];
        if offset != pos as u64 || blen > bs || f[at + 13..at + 16] != [0, 0, 0] {
            return Err(entry_err);
        }
        if continues.is_some_and(|k| k != kind) {
            return Err(entry_err);
        }
        continues = (blen == bs).then_some(kind);
        // pos + 9 + blen <= footer_start is checked after the loop; no overflow: each term is
        // below `len` and there are at most `len / 9` of them.
        blocks.push(BlockRef { offset: pos, len: blen, kind });
        pos = pos.saturating_add(BLOCK_OVERHEAD + blen);
        if pos > footer_start {
            return Err(entry_err);
        }
    }
    if pos != footer_start || continues.is_some() {
        return Err(corrupt(footer_start + F_INDEX, CorruptKind::BlockIndex));
    }

    // Invariant 5.
    let mut hasher = Xxh3Default::new();
    for (i, b) in blocks.iter().enumerate() {
        let stored_len = le_u32(bytes, b.offset) as usize;
        if stored_len != b.len || bytes[b.offset + 4] != b.kind {
            return Err(corrupt(b.offset, CorruptKind::BlockIndex));
        }
        let body = &bytes[b.offset..b.offset + 5 + b.len];
        let crc = crc32c_append(crc32c(&block_ctx(checkpoint, shard, i as u32)), body);
        if crc != le_u32(bytes, b.offset + 5 + b.len) {
            return Err(corrupt(b.offset, CorruptKind::BlockCrc));
        }
        hasher.update(&crc.to_le_bytes());
    }

    // Invariant 6.
    if hasher.digest() != digest {
        return Err(corrupt(footer_start + F_DIGEST, CorruptKind::Digest));
    }

    let engine_version = String::from_utf8_lossy(&engine[..engine_len]).into_owned();
    let meta = ShardFileInfo {
        checkpoint,
        shard,
        shard_count,
        key_groups,
        format_version: version,
        engine_version,
        block_size,
        block_count,
        payload_len,
        file_size,
        digest,
    };
    Ok((meta, blocks))
}

/// Where the structures of a valid shard file lie: for tests that damage one structure and check
/// that the error points into it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileLayout {
    /// The header's byte range.
    pub header: std::ops::Range<u64>,
    /// Every block's byte range (length, kind, payload and CRC), in order.
    pub blocks: Vec<std::ops::Range<u64>>,
    /// The footer's byte range (including the block index and its CRC).
    pub footer: std::ops::Range<u64>,
}

impl FileLayout {
    /// The layout of a valid shard file.
    ///
    /// # Errors
    ///
    /// Those of [`validate_bytes`] if the file is not valid.
    pub fn of(name: &Path, bytes: &[u8]) -> Result<FileLayout, CheckpointError> {
        let (meta, blocks) = validate(name, bytes)?;
        let footer_start = meta.file_size - (FOOTER_FIXED + INDEX_ENTRY * blocks.len()) as u64;
        Ok(FileLayout {
            header: 0..HEADER_LEN as u64,
            blocks: blocks
                .iter()
                .map(|b| b.offset as u64..(b.offset + BLOCK_OVERHEAD + b.len) as u64)
                .collect(),
            footer: footer_start..meta.file_size,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the format: the planned size is the encoded size, sections are cut into
    //! blocks as documented (exact multiples end in an empty block), a future version is a typed
    //! error, and a header re-signed with a wrong size is refused.

    use super::*;

    fn meta() -> ShardFileMeta {
        ShardFileMeta::new(7, 1, 4, KeyGroupRange::new(KeyGroup(32), KeyGroup(63)).unwrap())
    }

    fn encode(sections: &[(u8, &[u8])], bs: u32) -> Vec<u8> {
        let (size, _) = planned_size(sections, bs).unwrap();
        let mut out = vec![0xAA; size as usize];
        encode_into(&meta(), sections, bs, &mut out).unwrap();
        out
    }

    #[test]
    fn sections_split_into_blocks_and_back() {
        let a = vec![1u8; 64];
        let b = vec![2u8; 65];
        let sections: [(u8, &[u8]); 5] = [(1, &a), (1, &[]), (2, &b), (1, &a[..3]), (9, &a[..16])];
        let bytes = encode(&sections, 16);
        let file = validate_bytes(Path::new("x"), &bytes).unwrap();
        // 64 = 4 full + 1 empty, 0 = 1, 65 = 4 full + 1 of 1, 3 = 1, 16 = 1 full + 1 empty.
        assert_eq!(file.meta.block_count, 5 + 1 + 5 + 1 + 2);
        let got: Vec<(u8, &[u8])> = file.sections.iter().map(|(k, d)| (*k, d.as_slice())).collect();
        assert_eq!(got, sections);
        assert_eq!(file.meta.checkpoint, 7);
        assert_eq!(file.meta.engine_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn empty_file_has_no_blocks() {
        let bytes = encode(&[], MAX_BLOCK_SIZE);
        assert_eq!(bytes.len(), HEADER_LEN + FOOTER_FIXED);
        let file = validate_bytes(Path::new("x"), &bytes).unwrap();
        assert!(file.sections.is_empty());
    }

    fn resign_header(bytes: &mut [u8]) {
        let crc = crc32c(&bytes[..H_CRC]);
        bytes[H_CRC..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn future_version_is_unsupported_not_corrupt() {
        let mut bytes = encode(&[(1, b"abc")], 64);
        bytes[H_VERSION..H_VERSION + 2].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        resign_header(&mut bytes);
        let err = validate_bytes(Path::new("f"), &bytes).unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { found, .. } if found == FORMAT_VERSION + 1),
            "{err}"
        );
    }

    #[test]
    fn resigned_header_with_larger_size_is_refused() {
        let mut bytes = encode(&[(1, b"abc")], 64);
        let size = bytes.len() as u64 + 4096;
        bytes[H_FILE_SIZE..H_FILE_SIZE + 8].copy_from_slice(&size.to_le_bytes());
        resign_header(&mut bytes);
        let err = validate_bytes(Path::new("f"), &bytes).unwrap_err();
        assert_eq!(err.corrupt_kind(), Some(CorruptKind::SizeMismatch));
        // The same, with the file really grown by garbage (SQLite's case): the footer is no
        // longer at the end.
        bytes.resize(size as usize, 0x5A);
        let err = validate_bytes(Path::new("f"), &bytes).unwrap_err();
        assert!(err.corrupt_kind().is_some(), "{err}");
    }

    #[test]
    fn shard_outside_shard_count_is_refused_by_the_encoder() {
        let mut m = meta();
        m.shard = 4;
        let (size, _) = planned_size(&[], 64).unwrap();
        let mut out = vec![0; size as usize];
        assert!(matches!(
            encode_into(&m, &[], 64, &mut out),
            Err(CheckpointError::InvalidArgument(_))
        ));
    }
}
