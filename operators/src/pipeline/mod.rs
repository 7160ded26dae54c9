//! The pipeline builder: sources, stateless steps, timestamps and watermarks, `key_by`, process
//! functions and sinks.
//!
//! ```
//! use pinwheel_operators::pipeline::{Pipeline, WatermarkStrategy};
//! use pinwheel_operators::{process_fn, Collector, Context, FnError};
//!
//! let sums = Pipeline::new()
//!     .shards(1)
//!     .from_iter(vec![("a", 1_i64, 10_u64), ("b", 2, 5), ("a", 3, 1)])
//!     .assign_timestamps_and_watermarks(
//!         WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(&str, i64, u64), _| e.1),
//!     )
//!     .key_by(|e: &(&'static str, i64, u64)| e.0)
//!     .process(|| {
//!         process_fn(|e: (&'static str, i64, u64), _ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, u64>| {
//!             out.collect(e.2);
//!             Ok::<(), FnError>(())
//!         })
//!     })
//!     .collect()
//!     .unwrap();
//! assert_eq!(sums, vec![10, 5, 1]);
//! ```
//!
//! Each stage is a generic type wrapping its upstream, so the chain compiles to one loop with no
//! dynamic dispatch per record; stages move batches of elements (see [`Stage`]). A pipeline runs
//! on one or more shards ([`Pipeline::shards`], [`Pipeline::placement`]); `key_by` routes each
//! record to the shard that owns its key group through bounded SPSC rings. Every way of running
//! is a [`Job`]: results come back collected ([`DataStream::collect`]), through a callback on the
//! calling thread ([`DataStream::for_each`]), in per-shard sinks ([`DataStream::run_sharded`]),
//! or through a channel ([`DataStream::into_channel`], which returns the [`RunningJob`]).
//!
//! ## Unbounded pipelines fed by the embedding program
//!
//! [`Pipeline::push_source`] returns a [`PushHandle`] and the stream it feeds. The handle is
//! `Clone + Send + Sync`; [`push`](PushHandle::push), [`push_at`](PushHandle::push_at) (with an
//! event timestamp), [`push_watermark`](PushHandle::push_watermark) and
//! [`mark_idle`](PushHandle::mark_idle) wait while the bounded queue is full (backpressure),
//! [`try_push`](PushHandle::try_push) hands the value back instead, and once the pipeline has
//! stopped every push fails with a [`PushError`] holding the value. Elements keep their push order
//! (the queue is the source's one partition, read by shard 0; `key_by` spreads the keys). The input
//! ends when every handle is dropped or [finished](PushHandle::finish): the pipeline then drains —
//! the final watermark `i64::MAX` fires every event-time timer, every output is flushed — and
//! returns. A pipeline running on threads of its own ([`DataStream::into_channel`],
//! [`Job::spawn`]) is a [`RunningJob`], which can be
//!
//! * stopped at once: [`RunningJob::cancel`] (or `stop`, then `join`), which returns
//!   [`PipelineError::Stopped`](crate::PipelineError::Stopped) unless the pipeline had already
//!   finished;
//! * drained: end the input, then [`RunningJob::drain`] (the outputs not yet read) or
//!   [`RunningJob::join`] (the sinks);
//!
//! and an error in a user function stops every shard and comes back from `join`, `drain` or
//! `cancel` as [`PipelineError::Function`](crate::PipelineError::Function), naming the operator,
//! the shard and the phase.
//!
//! ## Several sinks: side outputs as streams
//!
//! A [`Job`] runs several streams of one pipeline together, each into its own sinks, on the same
//! shards (each shard pulls every root in turn). With it, a process stage's side outputs become
//! streams ([`side`]): `stage.with_side_outputs()` shares the stage, and
//! [`side_output_stream`](DataStream::side_output_stream) returns a side output as a
//! [`DataStream`] that can be mapped, filtered, keyed again and processed, with its timestamps and
//! every watermark, while the main output continues to its own sink.
//!
//! ## Custom sources
//!
//! A source is a [`StagePlan`] (built on every shard: each shard's [`Stage`] reads that shard's
//! partition) given to [`Pipeline::from_source`]. Its stage appends a batch of elements per pull
//! and reports [`Status::Idle`] when it has nothing for now; a source fed from another thread
//! wakes its shard through [`BuildContext::waker`].

mod build;
mod builder;
pub(crate) mod checkpoint;
mod commit;
mod datastream;
mod exchange;
mod file_sink;
pub mod job;
mod keyed_stream;
mod process;
pub mod push;
mod restart;
mod run;
mod savepoint;
pub mod side;
mod sink;
mod source;
mod stage;
mod stalls;
mod transform;
mod watermark;

pub use build::BuildContext;
pub use builder::Pipeline;
pub use checkpoint::{CheckpointStats, Checkpointing};
pub use commit::Committer;
pub use datastream::{DataStream, ShardedRun};
pub use file_sink::{ExactlyOnceFiles, FileSink, FileSinkError};
pub use job::{Job, JobRun, RunningJob, SinkId};
pub use keyed_stream::KeyedStream;
pub use pinwheel_engine::shard::{IdlePolicy, Turn};
pub use push::{PushError, PushHandle, TryPushError};
pub use restart::RestartPolicy;
pub use savepoint::{SavepointError, SavepointHandle};
pub use side::BranchStats;
pub use sink::{Disconnected, ElementSink, FnSink, Sink, VecSink};
pub use source::{ElementSource, ElementsStage, IterSource, Source, SourceStage, Untimed};
pub use stage::{BATCH, Stage, StagePlan, Status};
pub use stalls::Stalls;
pub use watermark::{
    BoundedOutOfOrderness, IDLE_EMIT_INTERVAL_MS, RecordTimestamp, TimestampAssigner,
    WatermarkGenerator, WatermarkOutput, WatermarkStrategy, WithIdleness,
};

/// The defaults of the pipeline's settings, for programs and tests that size things after them.
pub mod defaults {
    pub use super::builder::DEFAULT_MAX_WATERMARK_DRIFT;
    pub use super::side::DEFAULT_BRANCH_BUFFER;
    pub use super::watermark::DEFAULT_EMIT_INTERVAL;
    pub use pinwheel_engine::exchange::{
        DEFAULT_MEMORY_BUDGET as DEFAULT_EXCHANGE_MEMORY, DEFAULT_RING_CAPACITY,
    };
}

/// The stage types behind [`DataStream`]'s type parameter: what each builder method wraps around
/// its upstream, as a plan and as the running stage. Programs rarely name them.
pub mod stages {
    pub use super::process::{KeyedProcessPlan, KeyedProcessStage, ProcessPlan, ProcessStage};
    pub use super::push::{PushSource, PushStage};
    pub use super::side::{MainOutputPlan, MainOutputStage, SideOutputPlan, SideOutputStage};
    pub use super::transform::{
        FilterPlan, FilterStage, FlatMapPlan, FlatMapStage, MapPlan, MapStage,
    };
    pub use super::watermark::{WatermarksPlan, WatermarksStage};
}
