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
//! dynamic dispatch per record (see [`stream`]). A pipeline runs on one or more shards
//! ([`Pipeline::shards`], [`Pipeline::placement`]); `key_by` routes each record to the shard that
//! owns its key group through bounded SPSC rings. Results come back collected
//! ([`DataStream::collect`]), through a callback on the calling thread ([`DataStream::for_each`]),
//! in per-shard sinks ([`DataStream::run_sharded`]) or through a channel
//! ([`DataStream::into_channel`]).
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
//! [`Job::spawn`]) can be
//!
//! * stopped at once: [`RunningPipeline::cancel`] / [`RunningJob::cancel`] (or `stop`, then
//!   `join`), which return [`PipelineError::Stopped`] unless the pipeline had already finished;
//! * drained: end the input, then [`RunningPipeline::drain`] (the outputs not yet read) or
//!   [`RunningJob::join`] (the sinks);
//!
//! and an error in a user function stops every shard and comes back from `join`, `drain` or
//! `cancel` as [`PipelineError::Function`], naming the operator, the shard and the phase.
//!
//! ## Several sinks: side outputs as streams
//!
//! A [`Job`] runs several streams of one pipeline together, each into its own sinks, on the same
//! shards (each shard polls every root in turn). With it, a process stage's side outputs become
//! streams ([`side`]): `stage.with_side_outputs()` shares the stage, and
//! [`side_output_stream`](DataStream::side_output_stream) returns a side output as a
//! [`DataStream`] that can be mapped, filtered, keyed again and processed, with its timestamps and
//! every watermark, while the main output continues to its own sink.

mod exchange;
pub mod job;
mod process;
pub mod push;
mod run;
pub mod side;
mod sink;
mod source;
pub mod stream;
mod transform;
mod watermark;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pinwheel_engine::placement::ShardPlacement;
use pinwheel_engine::time::{Clock, SystemClock, Timestamp};

pub use exchange::{ExchangeStream, FLUSH_AT, INBOUND_TURN};
pub use job::{Job, JobRun, ROOT_TURN, RunningJob, SinkId};
pub use process::{KeyedProcessPlan, KeyedProcessStream, ProcessPlan, ProcessStream};
pub use push::{PushError, PushHandle, PushSource, PushStream, TryPushError};
pub use run::{DEFAULT_MAX_WATERMARK_DRIFT, DEFAULT_RING_CAPACITY, ShardedRun};
pub use side::{
    BranchStats, DEFAULT_BRANCH_BUFFER, MainOutputPlan, MainOutputStream, SideOutputPlan,
    SideOutputStage, SideOutputStream, SideTaps,
};
pub use sink::{BatchSink, ChannelSink, ElementSink, FnSink, RunningPipeline, Sink, VecSink};
pub use source::{
    ElementSource, ElementsStream, Event, IterSource, StandardPartition, StandardStream, Untimed,
    splitmix64,
};
pub use stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
pub use transform::{FilterPlan, FilterStream, FlatMapPlan, FlatMapStream, MapPlan, MapStream};
pub use watermark::{
    BoundedOutOfOrderness, DEFAULT_EMIT_INTERVAL, RecordTimestamp, TimestampAssigner,
    WatermarkGenerator, WatermarkOutput, WatermarkStrategy, WatermarksPlan, WatermarksStream,
    WithIdleness,
};

use crate::context::ShardInfo;
use crate::error::PipelineError;
use crate::function::{KeyedProcessFunction, ProcessFunction};
use crate::output::{OutputTag, StreamElement};
use crate::semantics::Semantics;
use process::SideRoutes;
use run::Env;

/// Exchange ids: unique per `key_by` in the process.
static NEXT_EXCHANGE: AtomicU64 = AtomicU64::new(1);

/// The entry point: settings, then a source.
#[derive(Debug, Clone)]
pub struct Pipeline {
    env: Env,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    /// A pipeline with the default [`Semantics`], the system clock, and one unpinned shard per
    /// available core.
    pub fn new() -> Self {
        Pipeline { env: Env::new(Arc::new(SystemClock)) }
    }

    /// Runs on `n` unpinned shards (at least 1). Shorthand for
    /// `placement(ShardPlacement::Unpinned(n))`.
    pub fn shards(self, n: usize) -> Self {
        self.placement(ShardPlacement::Unpinned(n.max(1)))
    }

    /// Where the shards run (default: one unpinned shard per available core). Pinned placements
    /// degrade to unpinned shards where the cores asked for do not exist, and say so in
    /// [`ShardedRun::placement_note`].
    pub fn placement(mut self, placement: ShardPlacement) -> Self {
        self.env.placement = placement;
        self
    }

    /// The number of key groups (default: Flink's rule, at least 128). Fixed for the life of the
    /// job's state: checkpoints depend on it.
    pub fn max_key_groups(mut self, n: u32) -> Self {
        self.env.max_key_groups = Some(n);
        self
    }

    /// Messages each exchange ring holds (default [`DEFAULT_RING_CAPACITY`]).
    pub fn ring_capacity(mut self, n: usize) -> Self {
        self.env.ring_capacity = n.max(1);
        self
    }

    /// Watermark alignment across source partitions (default: on, at most
    /// [`DEFAULT_MAX_WATERMARK_DRIFT`] ms): a shard stops reading its own partition while that
    /// partition's watermark is more than `max_drift` ms of event time ahead of the shard's
    /// combined watermark (the minimum over all partitions). Without it, a partition whose shard
    /// has less to do runs ahead, the combined watermark lags far behind the records, and
    /// event-time results drift from the ideal (windows merge, timeouts are missed). `None` turns
    /// it off (Flink's default; Flink offers it as `WatermarkStrategy::withWatermarkAlignment`).
    /// It has no effect on one shard, and none on partitions without watermarks.
    pub fn watermark_alignment(mut self, max_drift: Option<i64>) -> Self {
        self.env.max_watermark_drift = max_drift.map(|d| d.max(0));
        self
    }

    /// Semantic settings for every operator.
    pub fn semantics(mut self, semantics: Semantics) -> Self {
        self.env.semantics = semantics;
        self
    }

    /// The processing-time clock (default: [`SystemClock`]); tests pass a
    /// [`ManualClock`](pinwheel_engine::time::ManualClock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.env.clock = Arc::new(clock);
        self
    }

    /// A stream of the given values, without timestamps; ends with the final watermark.
    pub fn from_iter<I>(&self, items: I) -> DataStream<IterSource<I::IntoIter>>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
    {
        self.from_source(IterSource::new(items.into_iter()))
    }

    /// A stream of explicit elements: records with or without timestamps, watermarks, idle
    /// markers. The final watermark is added at the end.
    pub fn from_elements<T, I>(&self, elements: I) -> DataStream<ElementSource<I::IntoIter>>
    where
        I: IntoIterator<Item = StreamElement<T>>,
        I::IntoIter: Send + 'static,
    {
        self.from_source(ElementSource::new(elements.into_iter()))
    }

    /// The standard generated stream of PERF.md.
    pub fn from_standard_stream(&self, stream: StandardStream) -> DataStream<StandardStream> {
        self.from_source(stream)
    }

    /// A stream from any source plan.
    pub fn from_source<P: StreamPlan>(&self, plan: P) -> DataStream<P> {
        DataStream { plan, env: self.env.clone() }
    }
}

/// A stream under construction.
#[derive(Debug)]
pub struct DataStream<P> {
    plan: P,
    env: Env,
}

impl<P: StreamPlan> DataStream<P> {
    /// Applies `f` to every record.
    pub fn map<F, U>(self, f: F) -> DataStream<MapPlan<P, F>>
    where
        F: Fn(P::Item) -> U + Send + Sync + 'static,
    {
        let env = self.env.clone();
        DataStream { plan: MapPlan { upstream: self.plan, f: Arc::new(f) }, env }
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(self, f: F) -> DataStream<FilterPlan<P, F>>
    where
        F: Fn(&P::Item) -> bool + Send + Sync + 'static,
    {
        let env = self.env.clone();
        DataStream { plan: FilterPlan { upstream: self.plan, f: Arc::new(f) }, env }
    }

    /// Replaces every record by the records `f` returns (each with the input's timestamp).
    pub fn flat_map<F, R>(self, f: F) -> DataStream<FlatMapPlan<P, F>>
    where
        F: Fn(P::Item) -> R + Send + Sync + 'static,
        R: IntoIterator,
    {
        let env = self.env.clone();
        DataStream { plan: FlatMapPlan { upstream: self.plan, f: Arc::new(f) }, env }
    }

    /// Assigns timestamps and generates watermarks.
    pub fn assign_timestamps_and_watermarks<G, A>(
        self,
        strategy: WatermarkStrategy<G, A>,
    ) -> DataStream<WatermarksPlan<P, G, A>>
    where
        G: WatermarkGenerator<P::Item> + Clone + Send + Sync + 'static,
        A: TimestampAssigner<P::Item> + Send + Sync + 'static,
    {
        let env = self.env.clone();
        DataStream {
            plan: WatermarksPlan { upstream: self.plan, strategy: Arc::new(strategy) },
            env,
        }
    }

    /// Partitions the stream by key: keyed state and timers become available to `process`.
    pub fn key_by<K, KS>(self, key_selector: KS) -> KeyedStream<P, KS>
    where
        KS: Fn(&P::Item) -> K + Send + Sync + 'static,
    {
        KeyedStream { plan: self.plan, key_selector: Arc::new(key_selector), env: self.env }
    }

    /// Applies a non-keyed process function, built on the shard by `factory`.
    pub fn process<FF, F>(self, factory: FF) -> DataStream<ProcessPlan<P, FF>>
    where
        FF: Fn() -> F + Send + Sync + 'static,
        F: ProcessFunction<In = P::Item>,
    {
        let plan = ProcessPlan {
            upstream: self.plan,
            factory: Arc::new(factory),
            name: Arc::from("process"),
            side: SideRoutes::default(),
        };
        DataStream { plan, env: self.env }
    }

    /// Runs the pipeline to its end on every shard, each shard writing into its own sink made by
    /// `sink_factory` (on that shard's thread: counting or histogram sinks need no channel).
    /// Returns the sinks in shard order.
    pub fn run_sharded<S, SF>(self, sink_factory: SF) -> Result<ShardedRun<S>, PipelineError>
    where
        S: Sink<P::Item> + Send,
        SF: Fn(ShardInfo) -> S + Sync,
    {
        run::run_sharded(&self.plan, &self.env, sink_factory, &AtomicBool::new(false))
    }

    /// True when the pipeline runs on one unpinned shard: it can then run on the calling thread.
    fn inline(&self) -> bool {
        matches!(self.env.placement, ShardPlacement::Unpinned(1))
    }

    /// Runs a one-shard pipeline to its end on this thread, into `sink`. With more shards, use
    /// [`run_sharded`](Self::run_sharded), [`for_each`](Self::for_each) or
    /// [`into_channel`](Self::into_channel).
    pub fn run_with(self, sink: &mut impl Sink<P::Item>) -> Result<(), PipelineError> {
        if !self.inline() {
            return Err(PipelineError::Config(
                "run_with runs on the calling thread and needs Pipeline::shards(1); \
                 use run_sharded, for_each or into_channel for more shards"
                    .to_string(),
            ));
        }
        sink::catch_panics(0, || {
            let cx = BuildContext {
                shard: ShardInfo { index: 0, count: 1 },
                semantics: self.env.semantics,
                start_time: self.env.clock.now(),
                key_groups: pinwheel_engine::keygroup::KeyGroups::new(
                    self.env.max_key_groups.unwrap_or(128),
                )
                .map_err(|e| PipelineError::Config(e.to_string()))?,
                exchanges: Arc::new(exchange::ExchangeRegistry::new(1, 1, None)),
                shared: Default::default(),
            };
            let mut stream = self.plan.build(&cx)?;
            sink::drive(&mut stream, sink, &*self.env.clock, None)
        })
    }

    /// Runs the pipeline to its end and returns the record values: each shard's outputs in order,
    /// shards one after the other.
    pub fn collect(self) -> Result<Vec<P::Item>, PipelineError>
    where
        P::Item: Send,
    {
        let run = self.run_sharded(|_| VecSink(Vec::new()))?;
        Ok(run.sinks.into_iter().flat_map(|s| s.0).collect())
    }

    /// Runs the pipeline to its end and returns every element: records with their timestamps,
    /// watermarks, idle markers; each shard's elements in order, shards one after the other.
    pub fn collect_elements(self) -> Result<Vec<StreamElement<P::Item>>, PipelineError>
    where
        P::Item: Send,
    {
        let run = self.run_sharded(|_| ElementSink(Vec::new()))?;
        Ok(run.sinks.into_iter().flat_map(|s| s.0).collect())
    }

    /// Runs the pipeline to its end, calling `f` on this thread for every record value. With one
    /// unpinned shard everything runs on this thread; with more, the shards send their outputs
    /// here in batches through a bounded channel (a slow `f` is backpressure).
    pub fn for_each(self, mut f: impl FnMut(P::Item)) -> Result<(), PipelineError>
    where
        P::Item: Send,
    {
        if self.inline() {
            return self.run_with(&mut FnSink(f));
        }
        let (tx, rx) = crossbeam_channel::bounded::<Vec<P::Item>>(64);
        std::thread::scope(|scope| {
            let coordinator = scope.spawn(move || {
                let run = self.run_sharded(|_| BatchSink::new(tx.clone()));
                drop(tx);
                run.map(drop)
            });
            for batch in rx.iter() {
                batch.into_iter().for_each(&mut f);
            }
            coordinator.join().unwrap_or_else(|p| {
                Err(PipelineError::Panicked {
                    shard: 0,
                    message: pinwheel_engine::shard::panic_message(&*p),
                })
            })
        })
    }

    /// Starts the pipeline on threads of its own; its record values arrive on a bounded channel of
    /// `capacity` (a full channel is backpressure: the shards wait).
    pub fn into_channel(self, capacity: usize) -> Result<RunningPipeline<P::Item>, PipelineError>
    where
        P::Item: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("pinwheel-coordinator".to_string())
            .spawn(move || {
                run::run_sharded(&self.plan, &self.env, |_| ChannelSink(tx.clone()), &stop2)
                    .map(drop)
            })
            .map_err(|e| PipelineError::Config(format!("cannot start the pipeline thread: {e}")))?;
        Ok(RunningPipeline::new(rx, handle, stop))
    }
}

impl<P, KS, FF> DataStream<KeyedProcessPlan<P, KS, FF>> {
    /// Names the operator (in errors and metrics).
    pub fn name(mut self, name: &str) -> Self {
        self.plan.name = Arc::from(name);
        self
    }

    /// Sends the records of side output `tag` to `f(value, timestamp)`. Records of side outputs
    /// without a consumer are discarded (as in Flink) and counted.
    pub fn side_output<T: 'static>(
        mut self,
        tag: &OutputTag<T>,
        f: impl Fn(T, Option<Timestamp>) + Send + Sync + 'static,
    ) -> Self {
        self.plan.side.add(tag, f);
        self
    }
}

impl<P, FF> DataStream<ProcessPlan<P, FF>> {
    /// Names the operator (in errors and metrics).
    pub fn name(mut self, name: &str) -> Self {
        self.plan.name = Arc::from(name);
        self
    }

    /// Sends the records of side output `tag` to `f(value, timestamp)`.
    pub fn side_output<T: 'static>(
        mut self,
        tag: &OutputTag<T>,
        f: impl Fn(T, Option<Timestamp>) + Send + Sync + 'static,
    ) -> Self {
        self.plan.side.add(tag, f);
        self
    }
}

/// A stream partitioned by key.
#[derive(Debug)]
pub struct KeyedStream<P, KS> {
    plan: P,
    key_selector: Arc<KS>,
    env: Env,
}

impl<P: StreamPlan, KS> KeyedStream<P, KS> {
    /// Applies a keyed process function. `factory` builds one instance per shard, on the shard
    /// (so the function need not be `Send`): pass `MyFn::default` or `|| MyFn::new(..)`.
    pub fn process<FF, F>(self, factory: FF) -> DataStream<KeyedProcessPlan<P, KS, FF>>
    where
        KS: Fn(&P::Item) -> F::Key + Send + Sync + 'static,
        FF: Fn() -> F + Send + Sync + 'static,
        F: KeyedProcessFunction<In = P::Item>,
    {
        let plan = KeyedProcessPlan {
            upstream: self.plan,
            exchange_id: NEXT_EXCHANGE.fetch_add(1, Ordering::Relaxed),
            key_selector: self.key_selector,
            factory: Arc::new(factory),
            name: Arc::from("keyed-process"),
            side: SideRoutes::default(),
        };
        DataStream { plan, env: self.env }
    }
}
