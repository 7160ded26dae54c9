//! # Pinwheel
//!
//! Apache Flink's `ProcessFunction` model — keyed state, event-time and processing-time timers,
//! watermarks, side outputs — on a shard-per-core engine. This is the one crate to import:
//!
//! * the user API (process functions, contexts, state, side outputs, the pipeline builder, the test
//!   harness) from `pinwheel-operators`, at the top level;
//! * the engine (`pinwheel-engine`) under [`engine`], for its data structures and clocks.
//!
//! Start with the README (below) and [`pipeline`].
#![forbid(unsafe_code)]
#![doc = include_str!("../../README.md")]

pub use pinwheel_engine as engine;
pub use pinwheel_operators::*;
