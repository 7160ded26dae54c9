//! Fuzzes the checkpoint decoders (docs/reliability.md test 15): every input must give `Ok` or a
//! typed error, never a panic, an abort or an allocation past libFuzzer's `-rss_limit_mb`.
//!
//! Each input is decoded as it is, as a shard file ([`validate_bytes`]) and as a manifest
//! ([`Manifest::decode`]); then once more with its CRCs fixed up (the shard file's header and
//! footer CRCs, the manifest's length and CRC), because random mutations almost never pass a
//! CRC and the checks behind it would otherwise go unfuzzed.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pinwheel_engine::checkpoint::{Manifest, validate_bytes};

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The input with a valid header CRC, and a valid footer CRC where the header's block count
/// places a footer inside the input.
fn fix_shard_file(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 128 {
        return None;
    }
    let mut b = data.to_vec();
    let crc = crc32c::crc32c(&b[..124]);
    b[124..128].copy_from_slice(&crc.to_le_bytes());
    let blocks = le_u32(&b, 60) as usize;
    let footer_len = blocks.checked_mul(16)?.checked_add(36)?;
    let start = b.len().checked_sub(footer_len)?;
    if start < 128 {
        return Some(b);
    }
    let mut ctx = [0u8; 12];
    ctx.copy_from_slice(&b[32..44]);
    let end = b.len() - 4;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&ctx), &b[start..end]);
    b[end..].copy_from_slice(&crc.to_le_bytes());
    Some(b)
}

/// The input with a manifest's body length and CRC made valid.
fn fix_manifest(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 20 {
        return None;
    }
    let mut b = data.to_vec();
    let body = (b.len() - 20) as u32;
    b[12..16].copy_from_slice(&body.to_le_bytes());
    let end = b.len() - 4;
    let crc = crc32c::crc32c(&b[..end]);
    b[end..].copy_from_slice(&crc.to_le_bytes());
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz-input");
    let _ = validate_bytes(name, data);
    let _ = Manifest::decode(name, data);
    if let Some(fixed) = fix_shard_file(data) {
        let _ = validate_bytes(name, &fixed);
    }
    if let Some(fixed) = fix_manifest(data) {
        let _ = Manifest::decode(name, &fixed);
    }
});
