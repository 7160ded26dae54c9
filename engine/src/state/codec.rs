//! How state values become bytes for a snapshot, and back: [`StateValue`], the bound every value
//! of a keyed state meets, and the row encoding of the columns.
//!
//! Values are encoded with serde, in postcard's compact format (varint integers, length-prefixed
//! sequences). The encoding of a row is part of the checkpoint format: a change to it is a change
//! of the format version (docs/reliability.md). Decoding never trusts a length: postcard checks
//! every length against the bytes that remain, and serde caps what a sequence preallocates, so
//! arbitrary bytes give an error, never a panic or a huge allocation.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a value kept in keyed state must be: cloneable (reads hand out owned values),
/// serializable, so that a checkpoint can store it and a restore rebuild it (Flink's type
/// serializers), and `Send + Sync`, so that a checkpoint can encode the rows it froze at a
/// barrier on another thread while the shard goes on (the freeze is copy-on-write: the
/// checkpoint thread may clone a row the shard is reading). Implemented for every
/// `Clone + Serialize + DeserializeOwned + Send + Sync + 'static` type: derive
/// `serde::Serialize` and `serde::Deserialize` on your own state types.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StateValue for T {}

/// A state row that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    pub(crate) fn new(what: impl std::fmt::Display) -> Self {
        CodecError(what.to_string())
    }
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    postcard::serialize_with_flavor(value, Append(out)).map_err(CodecError::new)
}

/// postcard's output into a `Vec`, appending in place. Unlike postcard's own `ExtendFlavor` it
/// copies the few bytes of a varint with a loop, not a call to `memcpy` (a sixth of a
/// checkpoint's encoding time when it did).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() <= 16 {
            self.0.reserve(bytes.len());
            bytes.iter().for_each(|&b| self.0.push(b));
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes one `T` that must take exactly all of `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::new)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(CodecError::new(format!("{} bytes left over after the value", rest.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let mut out = vec![9];
        encode(&(Some(5i64), "abc".to_string()), &mut out).unwrap();
        assert_eq!(out[0], 9, "encode appends");
        let back: (Option<i64>, String) = decode(&out[1..]).unwrap();
        assert_eq!(back, (Some(5), "abc".to_string()));
        assert!(decode::<(Option<i64>, String)>(&out).is_err(), "a leading byte shifts the value");
        let mut longer = out[1..].to_vec();
        longer.push(0);
        assert!(decode::<(Option<i64>, String)>(&longer).is_err(), "trailing bytes are an error");
    }

    #[test]
    fn a_huge_declared_length_is_an_error_not_an_allocation() {
        // A varint length of 2^63 followed by nothing.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode::<Vec<u64>>(&bytes).is_err());
        assert!(decode::<String>(&bytes).is_err());
    }
}
