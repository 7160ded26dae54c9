//! Exchange between shards: bounded, lock-free single-producer single-consumer rings (DESIGN.md,
//! layer 4).
//!
//! The shards are connected by an N x N mesh of [`ring`](ring::ring)s: shard *i* owns the
//! [`Producer`] of ring *(i, j)* and shard *j* owns its [`Consumer`]. A record whose key group
//! belongs to another shard is pushed, in batches ([`Producer::push_batch`]), into the ring towards
//! its owner; the owner drains its inbound rings in batches ([`Consumer::pop_batch`]). Watermarks and
//! checkpoint barriers travel in the same rings as records, so they stay in order with them.
//!
//! **Bounded means backpressure.** A full ring hands the value back ([`PushError::Full`]); the
//! producing shard then stops producing and drains its own inputs instead. No ring ever allocates
//! after construction.
//!
//! **Shutdown.** When either half is dropped the other sees it ([`Producer::is_abandoned`],
//! [`Consumer::is_abandoned`], [`PushError::Abandoned`], [`PopError::Abandoned`]); records still in
//! the ring can be drained by the consumer, and whatever is left when both halves are gone is dropped
//! exactly once.
//!
//! The ring is hand-written (rather than taken from `rtrb`, STYLE.md section 5) so that it runs
//! through the [`crate::sync`] shim and is model-checked under loom (`scripts/loom.sh`,
//! `engine/tests/loom_ring.rs`; RELIABILITY.md test 17). Its module ([`ring`](mod@ring)) is one of the two
//! modules of the project allowed to contain `unsafe` code; its documentation gives the protocol, the
//! memory orderings and the prior art.

// The ring buffer needs raw slot access (uninitialised slots written by one thread and read by
// another); this is one of the two modules allowed unsafe code (STYLE.md section 1, item 5).
#[allow(unsafe_code)]
pub mod ring;

pub use ring::{Consumer, PopError, Producer, PushError, ring};
