//! Shard placement (being written).
