//! # pinwheel-engine: the runtime under Pinwheel's process functions
//!
//! This crate holds the data structures and machinery that make Flink's `ProcessFunction` model fast;
//! the user-facing API (traits, contexts, the pipeline builder, the test harness) lives in
//! `pinwheel-operators` and is re-exported by the `pinwheel` crate.
//!
//! The layers, bottom up:
//!
//! * [`time`]: event time and processing time as `i64` milliseconds, the [`time::Clock`] trait
//!   (system clock in production, a manual clock in tests) and saturating timestamp arithmetic.
//! * [`key`]: the [`key::Key`] trait, dense per-operator key ids ([`key::KeyId`]) and the
//!   random-seeded [`key::KeyInterner`].
//! * [`timer`]: one hierarchical timing wheel per time domain ([`timer::TimerWheel`]), unique per
//!   (key, timestamp), firing in timestamp order and, for equal timestamps, in registration order.
//! * [`state`]: keyed state as typed columns indexed by key id (value, list, map, reducing,
//!   aggregating), with Flink's TTL options.
//! * [`watermark`]: the per-input watermark valve (strictly increasing, minimum over non-idle
//!   channels).
//! * [`keygroup`]: the stable key → key group → shard assignment (versioned; checkpoints depend on it).
//! * [`exchange`]: bounded lock-free SPSC rings between shards, verified under loom.
//! * [`placement`]: which cores the shard threads run on.
//! * [`prefetch`]: the cache-line prefetch hint the batched hot paths use.
//! * [`checkpoint`]: the checkpoint file format, its durable write protocol and validation, the
//!   manifest and the checkpoint directory (docs/reliability.md §1, §3.1–3.2); not yet wired into
//!   the pipeline.
#![deny(unsafe_code)]
#![deny(missing_docs)]

// Checkpoint files; its `fs` module is one of the five allowed unsafe code.
pub mod checkpoint;
// Copy-on-write rows for the checkpoint freeze; one of the modules allowed unsafe code. Internal:
// its soundness rests on rules about the row types that only the engine's own uses keep.
#[allow(unsafe_code)]
pub(crate) mod cow_vec;
pub mod exchange;
pub mod key;
pub mod keyed;
pub mod keygroup;
pub mod placement;
// Issues the CPU's prefetch hint; one of the five modules allowed unsafe code.
#[allow(unsafe_code)]
pub mod prefetch;
pub mod shard;
pub mod state;
pub mod sync;
pub mod time;
pub mod timer;
pub(crate) mod varint;
pub mod watermark;
