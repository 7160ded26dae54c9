//! What travels through the exchange rings, in order: records, watermarks, idleness, checkpoint
//! barriers and the end of a channel.

use crate::keyed::KeyedRecord;
use crate::time::Timestamp;

/// A checkpoint barrier: everything before it on a channel belongs to checkpoint `id`, everything
/// after it to the next one (Chandy–Lamport, aligned as Flink aligns them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointBarrier {
    /// The checkpoint's id (increasing).
    pub id: u64,
}

/// One element of an exchange channel (a ring from one shard to another, or the shard's own
/// local input), and of the router's output to the keyed operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message<K, V> {
    /// A record, with its key, timestamp, routing hash and key group.
    Record(KeyedRecord<K, V>),
    /// No record with a timestamp `<=` this is expected on the channel any more.
    Watermark(Timestamp),
    /// The channel has gone idle: it stops holding back the combined watermark until its next
    /// record or watermark.
    Idle,
    /// A checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// The channel has ended: nothing follows. In the router's output: every channel has ended.
    End,
}

impl<K, V> Message<K, V> {
    /// The routing hash of a record, `None` for the other messages (for the batch prefetch).
    #[inline]
    pub fn record_hash(&self) -> Option<u64> {
        match self {
            Message::Record(r) => Some(r.hash),
            _ => None,
        }
    }
}
