//! # pinwheel-operators: Flink's process-function model, in Rust
//!
//! The user-facing half of Pinwheel (the `pinwheel` crate re-exports it):
//!
//! * [`KeyedProcessFunction`] and [`ProcessFunction`], with their contexts ([`Context`],
//!   [`OnTimerContext`], [`ProcessContext`]), the [`TimerService`] and the [`Collector`];
//!   [`process_fn`] builds a function from closures;
//! * keyed state handles declared in `open` (re-exported from the engine: [`ValueState`],
//!   [`ListState`], [`MapState`], [`ReducingState`], [`AggregatingState`], with TTL);
//! * typed side outputs ([`OutputTag`]);
//! * the [`pipeline`] builder: sources, map/filter/flat_map, watermark strategies, `key_by`,
//!   `process`, sinks, jobs;
//! * the [`harness`] to unit-test functions with the same code the engine runs;
//! * [`Semantics`]: where Pinwheel differs from Flink, with the Flink-compatible settings.
//!
//! Operators are thin adapters over the engine: a keyed process function runs on the engine's
//! keyed backend (`pinwheel_engine::keyed`), which owns the keys, state, timers and the loops that
//! drive them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod context;
pub mod error;
pub mod function;
pub mod harness;
mod operator;
pub mod output;
pub mod pipeline;
pub mod semantics;

pub use context::{Context, OnTimerContext, OpenContext, ProcessContext, ShardInfo, TimerService};
pub use error::{
    CapacityError, ConfigError, FnError, Phase, PipelineError, SinkError, TimerServiceError,
};
pub use function::{KeyedFn, KeyedProcessFunction, NoTimers, ProcessFunction, process_fn};
pub use output::{Collector, OutputTag, SideOutputs, StreamElement};
pub use pinwheel_engine::keyed::OperatorMetrics;
pub use pinwheel_engine::state::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, KeyedScope, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, ReducingState, ReducingStateDescriptor,
    StateError, StateTtlConfig, StateValue, StateVisibility, UpdateType, ValueState,
    ValueStateDescriptor,
};
pub use pinwheel_engine::time::{
    Clock, MAX_WATERMARK, MIN_WATERMARK, ManualClock, SystemClock, TimeDomain, Timestamp,
};
pub use semantics::{EndOfInputTimers, Semantics, SideOutputTimestamps};
