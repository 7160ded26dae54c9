//! Exchange between shards: bounded, lock-free single-producer single-consumer rings (docs/architecture.md,
//! layer 4).
//!
//! The shards are connected by an N x N mesh of [`ring`](ring::ring)s: shard *i* owns the
//! [`Producer`] of ring *(i, j)* and shard *j* owns its [`Consumer`]. A record whose key group
//! belongs to another shard is pushed, in batches ([`Producer::push_batch`]), into the ring towards
//! its owner; the owner drains its inbound rings in batches ([`Consumer::pop_batch`]). Watermarks and
//! checkpoint barriers travel in the same rings as records, so they stay in order with them.
//!
//! **Bounded means backpressure.** A full ring hands the value back ([`PushError::Full`]); the
//! producing shard then stops producing and drains its own inputs instead. The capacity is only a
//! bound: a ring's memory follows what it queues (blocks allocated as messages arrive, and freed or
//! recycled as they are read), so a ring that was never used costs no slot, a lightly used one two
//! blocks of 8 messages whatever its capacity, and a busy one settles on two recycled blocks (sized
//! for its queue and its rate, at most 64 KiB each) without allocating ([`Producer::memory_bytes`]).
//!
//! **Shutdown.** When either half is dropped the other sees it ([`Producer::is_abandoned`],
//! [`Consumer::is_abandoned`], [`PushError::Abandoned`], [`PopError::Abandoned`]); records still in
//! the ring can be drained by the consumer, and whatever is left when both halves are gone is dropped
//! exactly once.
//!
//! The ring is hand-written (rather than taken from the `rtrb` crate) so that it runs
//! through the [`crate::sync`] shim and is model-checked under loom (`scripts/loom.sh`,
//! `engine/tests/loom_ring.rs`; docs/reliability.md test 17). Its module ([`ring`](mod@ring)) is one of the two
//! modules of the project allowed to contain `unsafe` code; its documentation gives the protocol, the
//! memory orderings and the prior art.

// The ring buffer needs raw slot access (uninitialised slots written by one thread and read by
// another); this is one of the two modules allowed unsafe code (docs/conventions.md, "Unsafe code").
#[allow(unsafe_code)]
pub mod ring;

pub use ring::{Consumer, PopError, Producer, PushError, ring};

mod mesh;
mod message;
pub mod router;

pub use mesh::{
    DEFAULT_MEMORY_BUDGET, DEFAULT_RING_CAPACITY, Endpoints, ExchangeError, ExchangeSettings,
    Exchanges, FLUSH_AT, MAX_RING_CAPACITY, MIN_RING_CAPACITY, RingPlan,
};
pub use message::{CheckpointBarrier, Message};
pub use router::{Gate, Router};
