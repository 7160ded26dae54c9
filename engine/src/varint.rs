//! LEB128 varints, the one home of the integer encoding every checkpoint byte format uses: the
//! checkpoint files' codec (`checkpoint::codec`), the snapshot sections the keyed backend writes
//! (`keyed::frozen`, `state::frozen`) and reads back (`keyed::restore`). Seven bits a byte, low
//! first, as postcard writes unsigned integers; signed ones zigzag-mapped first.

/// The most bytes a `u64` takes.
pub(crate) const MAX_LEN: usize = 10;

/// Appends `v`. Byte by byte rather than through [`write`] and a slice copy: the snapshot
/// encoders call it for every field, and a short copy costs a `memcpy` call.
#[inline]
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` into `buf`; returns how many bytes it took.
#[inline]
pub(crate) fn write(buf: &mut [u8; MAX_LEN], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    n + 1
}

/// Writes `len` as a varint over the one byte reserved for it at `at`: in place when it fits in
/// a byte (under 128, nearly always), otherwise by inserting the varint's further bytes.
#[inline]
pub(crate) fn patch_len(out: &mut Vec<u8>, at: usize, len: usize) {
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        patch_long_len(out, at, len);
    }
}

#[cold]
fn patch_long_len(out: &mut Vec<u8>, at: usize, len: usize) {
    let mut buf = [0; MAX_LEN];
    let n = write(&mut buf, len as u64);
    out.splice(at..=at, buf[..n].iter().copied());
}

/// Why bytes do not start with a varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The bytes end inside it.
    Truncated,
    /// It overflows a `u64`, or is not in its one shortest form (a redundant zero byte last).
    Overflow,
}

/// The varint at the start of `bytes` and its length in bytes. Only the shortest form of a value
/// is accepted, so that every value has exactly one encoding.
#[inline]
pub(crate) fn read(bytes: &[u8]) -> Result<(u64, usize), Malformed> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(MAX_LEN) {
        let bits = u64::from(b & 0x7f);
        // The 10th byte may carry only the top bit of a u64.
        if i == MAX_LEN - 1 && bits > 1 {
            return Err(Malformed::Overflow);
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(Malformed::Overflow);
            }
            return Ok((v, i + 1));
        }
    }
    if bytes.len() < MAX_LEN { Err(Malformed::Truncated) } else { Err(Malformed::Overflow) }
}

/// Maps a signed integer to an unsigned one with small magnitudes small (0, -1, 1, -2, ...).
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_value_round_trips_in_its_shortest_form(v in any::<u64>(), s in any::<i64>()) {
            let mut out = Vec::new();
            put(&mut out, v);
            let mut buf = [0; MAX_LEN];
            let n = write(&mut buf, v);
            prop_assert_eq!(&buf[..n], &out[..]);
            prop_assert_eq!(out.len(), (64 - v.leading_zeros() as usize).div_ceil(7).max(1));
            prop_assert_eq!(read(&out), Ok((v, out.len())));
            prop_assert_eq!(unzigzag(zigzag(s)), s);
        }

        #[test]
        fn arbitrary_bytes_read_as_a_value_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((v, n)) = read(&bytes) {
                let mut out = Vec::new();
                put(&mut out, v);
                prop_assert_eq!(&bytes[..n], &out[..], "only the shortest form is read");
            }
        }
    }

    #[test]
    fn malformed_forms_are_named() {
        assert_eq!(read(&[]), Err(Malformed::Truncated));
        assert_eq!(read(&[0x80]), Err(Malformed::Truncated));
        assert_eq!(read(&[0x80, 0x00]), Err(Malformed::Overflow));
        assert_eq!(
            read(&[0xff; 9].iter().copied().chain([0x02]).collect::<Vec<_>>()),
            Err(Malformed::Overflow)
        );
        assert_eq!(
            read(&[0xff; 9].iter().copied().chain([0x01]).collect::<Vec<_>>()),
            Ok((u64::MAX, 10))
        );
        assert_eq!(read(&[0xff; 11]), Err(Malformed::Overflow));
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
