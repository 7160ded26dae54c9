//! A bounded byte encoder and a decoder that never panics, for checkpoint payloads (manifests now,
//! state snapshots later).
//!
//! Checkpoint bytes are untrusted input (docs/reliability.md §3.1). The [`Decoder`] therefore
//! reads only through bounds-checked slices, uses checked arithmetic for every offset, returns a
//! typed [`DecodeError`] with the offset of the failing read instead of panicking, and never
//! allocates: [`Decoder::bytes`] returns a sub-slice of the input, and [`Decoder::len`] caps a
//! declared length by both the bytes that remain and a caller-given maximum, so a length of
//! `2^64 - 1` read from a file is an error, not an allocation. The [`Encoder`] refuses to grow
//! past its limit, so a writer cannot produce what a reader with the same limit refuses.
//!
//! Encoding: fixed-width integers are little-endian; varints are unsigned LEB128 (at most 10
//! bytes for a `u64`, the last byte's unused bits zero, so every value has one encoding); signed
//! varints are zigzag-encoded first; a byte string is a varint length followed by its bytes.

use std::path::Path;

use super::error::{CheckpointError, CorruptKind};
use crate::varint;

/// A decoding failure: what went wrong, at which offset of the decoded bytes.
///
/// It does not know the file; [`DecodeError::in_file`] places it in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
#[non_exhaustive]
pub struct DecodeError {
    /// The offset, in the decoder's input, of the read that failed.
    pub offset: u64,
    /// What went wrong.
    pub kind: CorruptKind,
}

impl DecodeError {
    /// The error as a [`CheckpointError::Corrupt`] of `file`, whose decoded bytes start at byte
    /// `base` of the file.
    pub fn in_file(self, file: &Path, base: u64) -> CheckpointError {
        CheckpointError::corrupt(file, base.saturating_add(self.offset), self.kind)
    }
}

/// Appends encoded values to a byte vector, refusing to grow past a limit.
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    limit: usize,
}

impl Encoder {
    /// An empty encoder that refuses to hold more than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Encoder { buf: Vec::new(), limit }
    }

    /// The bytes encoded so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The number of bytes encoded so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been encoded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends raw bytes (no length prefix).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] if the result would exceed the limit; nothing is appended.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<&mut Self, CheckpointError> {
        let new_len = self.buf.len().checked_add(bytes.len());
        match new_len {
            Some(n) if n <= self.limit => {
                self.buf.extend_from_slice(bytes);
                Ok(self)
            }
            _ => Err(CheckpointError::TooLarge {
                what: "encoded checkpoint data",
                len: (self.buf.len() as u64).saturating_add(bytes.len() as u64),
                limit: self.limit as u64,
            }),
        }
    }

    /// Appends a byte.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn u8(&mut self, v: u8) -> Result<&mut Self, CheckpointError> {
        self.raw(&[v])
    }

    /// Appends a little-endian `u16`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn u16(&mut self, v: u16) -> Result<&mut Self, CheckpointError> {
        self.raw(&v.to_le_bytes())
    }

    /// Appends a little-endian `u32`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn u32(&mut self, v: u32) -> Result<&mut Self, CheckpointError> {
        self.raw(&v.to_le_bytes())
    }

    /// Appends a little-endian `u64`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn u64(&mut self, v: u64) -> Result<&mut Self, CheckpointError> {
        self.raw(&v.to_le_bytes())
    }

    /// Appends a little-endian `i64`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn i64(&mut self, v: i64) -> Result<&mut Self, CheckpointError> {
        self.raw(&v.to_le_bytes())
    }

    /// Appends an unsigned LEB128 varint.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn varint(&mut self, v: u64) -> Result<&mut Self, CheckpointError> {
        let mut buf = [0; varint::MAX_LEN];
        let n = varint::write(&mut buf, v);
        self.raw(&buf[..n])
    }

    /// Appends a zigzag-encoded signed LEB128 varint.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn varint_i64(&mut self, v: i64) -> Result<&mut Self, CheckpointError> {
        self.varint(varint::zigzag(v))
    }

    /// Appends a varint length followed by the bytes.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::TooLarge`] past the limit.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<&mut Self, CheckpointError> {
        self.varint(bytes.len() as u64)?;
        self.raw(bytes)
    }
}

/// Reads encoded values from a byte slice; every read is bounds-checked and returns an error
/// instead of panicking.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Decoder { input, pos: 0 }
    }

    /// The offset of the next read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The number of bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// Whether every byte has been read.
    pub fn is_at_end(&self) -> bool {
        self.remaining() == 0
    }

    fn error(&self, kind: CorruptKind) -> DecodeError {
        DecodeError { offset: self.pos as u64, kind }
    }

    /// Fails unless every byte has been read: trailing bytes are damage, not padding.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::InvalidValue`] if bytes remain.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_at_end() { Ok(()) } else { Err(self.error(CorruptKind::InvalidValue)) }
    }

    /// Reads `n` raw bytes, borrowed from the input.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] if fewer than `n` bytes remain.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.error(CorruptKind::Truncated))?;
        let slice =
            self.input.get(self.pos..end).ok_or_else(|| self.error(CorruptKind::Truncated))?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.raw(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a byte.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] at the end of the input.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] at the end of the input.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] at the end of the input.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] at the end of the input.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `i64`.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] at the end of the input.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes, in its one canonical encoding.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::Truncated`] at the end of the input; [`CorruptKind::VarintOverflow`] if it
    /// overflows a `u64` or is not minimal (a redundant zero continuation byte).
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        match varint::read(rest) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(varint::Malformed::Truncated) => Err(self.error(CorruptKind::Truncated)),
            Err(varint::Malformed::Overflow) => Err(self.error(CorruptKind::VarintOverflow)),
        }
    }

    /// Reads a zigzag-encoded signed varint.
    ///
    /// # Errors
    ///
    /// As [`Decoder::varint`].
    pub fn varint_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(varint::unzigzag(self.varint()?))
    }

    /// Reads a varint length or count, refusing one above `max` or above the bytes that remain
    /// divided by `min_item_bytes` (the smallest encoding of one item, at least 1): a `len` this
    /// returns is safe to pass to `Vec::with_capacity` for items of at least that size.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::LengthOutOfBounds`] (at the length's offset) if it is too large; errors of
    /// [`Decoder::varint`].
    pub fn len(&mut self, max: u64, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let len = self.varint()?;
        let fits_input = (self.remaining() / min_item_bytes.max(1)) as u64;
        if len > max || len > fits_input {
            return Err(DecodeError { offset: start as u64, kind: CorruptKind::LengthOutOfBounds });
        }
        // len <= remaining <= usize::MAX.
        Ok(len as usize)
    }

    /// Reads a length-prefixed byte string of at most `max` bytes, borrowed from the input.
    ///
    /// # Errors
    ///
    /// [`CorruptKind::LengthOutOfBounds`] if the declared length exceeds `max` or the input;
    /// errors of [`Decoder::varint`].
    pub fn bytes(&mut self, max: u64) -> Result<&'a [u8], DecodeError> {
        let len = self.len(max, 1)?;
        self.raw(len)
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the codec: round trips at the edges of every width, canonical varints, and
    //! the bounds the decoder must enforce (huge declared lengths, truncation, overflow).

    use super::*;

    #[test]
    fn round_trip_edges() {
        let mut e = Encoder::with_limit(1 << 20);
        let values = [0u64, 1, 127, 128, 16383, 16384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
        for v in values {
            e.varint(v).unwrap();
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX] {
            e.varint_i64(v).unwrap().i64(v).unwrap();
        }
        e.u8(7).unwrap().u16(0xBEEF).unwrap().u32(0xDEAD_BEEF).unwrap().u64(u64::MAX).unwrap();
        e.bytes(b"hello").unwrap().bytes(b"").unwrap();
        let bytes = e.into_bytes();
        let mut d = Decoder::new(&bytes);
        for v in values {
            assert_eq!(d.varint().unwrap(), v);
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX] {
            assert_eq!(d.varint_i64().unwrap(), v);
            assert_eq!(d.i64().unwrap(), v);
        }
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u16().unwrap(), 0xBEEF);
        assert_eq!(d.u32().unwrap(), 0xDEAD_BEEF);
        assert_eq!(d.u64().unwrap(), u64::MAX);
        assert_eq!(d.bytes(5).unwrap(), b"hello");
        assert_eq!(d.bytes(0).unwrap(), b"");
        d.finish().unwrap();
        assert_eq!(d.u8().unwrap_err().kind, CorruptKind::Truncated);
    }

    #[test]
    fn huge_declared_length_is_an_error_not_an_allocation() {
        let mut e = Encoder::with_limit(64);
        e.varint(u64::MAX).unwrap().raw(b"abc").unwrap();
        let bytes = e.into_bytes();
        let err = Decoder::new(&bytes).bytes(u64::MAX).unwrap_err();
        assert_eq!(err, DecodeError { offset: 0, kind: CorruptKind::LengthOutOfBounds });
        // Within the input but over the caller's cap.
        let mut e = Encoder::with_limit(64);
        e.bytes(b"abcdef").unwrap();
        let bytes = e.into_bytes();
        assert_eq!(Decoder::new(&bytes).bytes(5).unwrap_err().kind, CorruptKind::LengthOutOfBounds);
        // A count of 8-byte items: 3 items need 24 bytes.
        let mut e = Encoder::with_limit(64);
        e.varint(3).unwrap().raw(&[0; 23]).unwrap();
        let bytes = e.into_bytes();
        assert_eq!(
            Decoder::new(&bytes).len(100, 8).unwrap_err().kind,
            CorruptKind::LengthOutOfBounds
        );
    }

    #[test]
    fn varint_overflow_and_non_canonical_forms_are_refused() {
        // 11 continuation bytes, a 10th byte with more than one bit, a redundant zero byte.
        let long = [0xffu8; 11];
        assert_eq!(Decoder::new(&long).varint().unwrap_err().kind, CorruptKind::VarintOverflow);
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(Decoder::new(&over).varint().unwrap_err().kind, CorruptKind::VarintOverflow);
        assert_eq!(
            Decoder::new(&[0x80, 0x00]).varint().unwrap_err().kind,
            CorruptKind::VarintOverflow
        );
        assert_eq!(Decoder::new(&[0x80]).varint().unwrap_err().kind, CorruptKind::Truncated);
    }

    #[test]
    fn encoder_refuses_to_pass_its_limit() {
        let mut e = Encoder::with_limit(4);
        e.u32(1).unwrap();
        assert!(matches!(e.u8(1), Err(CheckpointError::TooLarge { len: 5, limit: 4, .. })));
        assert_eq!(e.len(), 4);
    }
}
