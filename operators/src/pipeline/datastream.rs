//! [`DataStream`]: a stream under construction, and every way to run it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pinwheel_engine::time::Timestamp;

use super::builder::Env;
use super::checkpoint::CheckpointStats;
use super::job::{Job, RunningJob, one_sender_per_shard, take_sender};
use super::keyed_stream::KeyedStream;
use super::process::{KeyedProcessPlan, ProcessPlan};
use super::run::{self, RunControl};
use super::side::{BranchStats, MainOutputPlan, SharedStage, SideCallbacks, SideOutputPlan};
use super::sink::{BatchChannelSink, ChannelSink, ElementSink, FnSink, Sink, VecSink};
use super::stage::StagePlan;
use super::transform::{FilterPlan, FlatMapPlan, MapPlan};
use super::watermark::{TimestampAssigner, WatermarkGenerator, WatermarkStrategy, WatermarksPlan};
use crate::context::ShardInfo;
use crate::error::{ConfigError, PipelineError};
use crate::function::ProcessFunction;
use crate::output::{OutputTag, StreamElement};

/// Exchange ids: unique per `key_by` in the process.
static NEXT_EXCHANGE: AtomicU64 = AtomicU64::new(1);

/// A stream under construction: a plan of stages, and the pipeline's settings.
#[derive(Debug)]
pub struct DataStream<P> {
    pub(crate) plan: P,
    pub(crate) env: Env,
}

/// What a run on separate shards leaves behind: each shard's sink, the placement note, and what
/// the checkpoints did.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShardedRun<S> {
    /// Each shard's sink, in shard order.
    pub sinks: Vec<S>,
    /// Where pinning degraded (cores missing), why.
    pub placement_note: Option<String>,
    /// What the checkpoints did, if they were on.
    pub checkpoints: Option<CheckpointStats>,
}

impl<P: StagePlan> DataStream<P> {
    /// Applies `f` to every record.
    pub fn map<F, U>(self, f: F) -> DataStream<MapPlan<P, F>>
    where
        F: Fn(P::Item) -> U + Send + Sync + 'static,
    {
        DataStream { plan: MapPlan { upstream: self.plan, f: Arc::new(f) }, env: self.env }
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(self, f: F) -> DataStream<FilterPlan<P, F>>
    where
        F: Fn(&P::Item) -> bool + Send + Sync + 'static,
    {
        DataStream { plan: FilterPlan { upstream: self.plan, f: Arc::new(f) }, env: self.env }
    }

    /// Replaces every record by the records `f` returns (each with the input's timestamp).
    pub fn flat_map<F, R>(self, f: F) -> DataStream<FlatMapPlan<P, F>>
    where
        F: Fn(P::Item) -> R + Send + Sync + 'static,
        R: IntoIterator,
    {
        DataStream { plan: FlatMapPlan { upstream: self.plan, f: Arc::new(f) }, env: self.env }
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
        DataStream {
            plan: WatermarksPlan { upstream: self.plan, strategy: Arc::new(strategy) },
            env: self.env,
        }
    }

    /// Partitions the stream by key: keyed state and timers become available to `process`. The
    /// key selector runs once per record.
    pub fn key_by<K, KS>(self, key_selector: KS) -> KeyedStream<P, KS>
    where
        KS: Fn(&P::Item) -> K + Send + Sync + 'static,
    {
        KeyedStream {
            plan: self.plan,
            key_selector: Arc::new(key_selector),
            exchange_id: NEXT_EXCHANGE.fetch_add(1, Ordering::Relaxed),
            env: self.env,
        }
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
            side: SideCallbacks::default(),
        };
        DataStream { plan, env: self.env }
    }

    /// A job of this one stream into per-shard sinks made by `sink_factory`.
    fn job_of<S, SF>(self, sink_factory: SF) -> (Job, super::SinkId<S>)
    where
        P::Stage: 'static,
        S: Sink<P::Item> + Send + 'static,
        SF: Fn(ShardInfo) -> S + Send + Sync + 'static,
    {
        let mut job = Job::new(&super::Pipeline { env: self.env.clone() });
        let id = job.sink(self, sink_factory);
        (job, id)
    }

    /// Runs the pipeline to its end on every shard, each shard writing into its own sink made by
    /// `sink_factory` (on that shard's thread: counting or histogram sinks need no channel, and may
    /// borrow from the caller). Returns the sinks in shard order.
    pub fn run_sharded<S, SF>(self, sink_factory: SF) -> Result<ShardedRun<S>, PipelineError>
    where
        S: Sink<P::Item> + Send,
        SF: Fn(ShardInfo) -> S + Sync,
    {
        let control = RunControl::new(&self.env)?;
        let (sinks, placement_note, checkpoints) =
            run::run_stream(&self.plan, &self.env, &control, sink_factory)?;
        Ok(ShardedRun { sinks, placement_note, checkpoints })
    }

    /// True when the pipeline runs on one unpinned shard: it can then run on the calling thread.
    fn inline(&self) -> bool {
        matches!(self.env.placement, pinwheel_engine::placement::ShardPlacement::Unpinned(1))
    }

    /// Runs a one-shard pipeline to its end on this thread, into `sink`. With more shards, use
    /// [`run_sharded`](Self::run_sharded), [`for_each`](Self::for_each) or
    /// [`into_channel`](Self::into_channel).
    pub fn run_with(self, sink: &mut impl Sink<P::Item>) -> Result<(), PipelineError> {
        if !self.inline() {
            return Err(ConfigError::NeedsOneShard { method: "run_with" }.into());
        }
        let control = RunControl::new(&self.env)?;
        run::run_here(&self.plan, &self.env, &control, sink)
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
    pub fn for_each<F>(self, mut f: F) -> Result<(), PipelineError>
    where
        P::Item: Send,
        F: FnMut(P::Item),
    {
        if self.inline() {
            return self.run_with(&mut FnSink(f));
        }
        let (tx, rx) = crossbeam_channel::bounded::<Vec<P::Item>>(64);
        std::thread::scope(|scope| {
            let coordinator = scope.spawn(move || {
                let run = self.run_sharded(|_| BatchChannelSink::new(tx.clone()));
                drop(tx);
                run.map(drop)
            });
            for batch in rx.iter() {
                batch.into_iter().for_each(&mut f);
            }
            coordinator.join().unwrap_or_else(|p| {
                Err(PipelineError::Panicked {
                    operator: None,
                    shard: 0,
                    phase: None,
                    message: pinwheel_engine::shard::panic_message(&*p),
                })
            })
        })
    }

    /// Starts the pipeline on threads of its own; its record values arrive on a bounded channel of
    /// `capacity` (a full channel is backpressure: the shards wait), read through the returned
    /// [`RunningJob`].
    pub fn into_channel(self, capacity: usize) -> Result<RunningJob<P::Item>, PipelineError>
    where
        P::Stage: 'static,
        P::Item: Send + 'static,
    {
        let shards = self.env.shard_count()?;
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let senders = one_sender_per_shard(tx, shards);
        let (job, _) = self.job_of(move |shard| ChannelSink::new(take_sender(&senders, shard)));
        job.spawn_with(rx)
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

    /// Shares this keyed process stage between its main output (the returned stream) and side
    /// outputs read as streams ([`side_output_stream`](DataStream::side_output_stream)), in one
    /// [`Job`]. See the [side module docs](super::side). Name the stage and add side-output
    /// callbacks first.
    pub fn with_side_outputs(self) -> DataStream<MainOutputPlan<KeyedProcessPlan<P, KS, FF>>> {
        let claimed = self.plan.side.tags().to_vec();
        DataStream {
            plan: MainOutputPlan { stage: Arc::new(SharedStage::new(self.plan, claimed)) },
            env: self.env,
        }
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

    /// Shares this process stage between its main output (the returned stream) and side outputs
    /// read as streams ([`side_output_stream`](DataStream::side_output_stream)), in one [`Job`].
    /// See the [side module docs](super::side). Name the stage and add side-output callbacks
    /// first.
    pub fn with_side_outputs(self) -> DataStream<MainOutputPlan<ProcessPlan<P, FF>>> {
        let claimed = self.plan.side.tags().to_vec();
        DataStream {
            plan: MainOutputPlan { stage: Arc::new(SharedStage::new(self.plan, claimed)) },
            env: self.env,
        }
    }
}

impl<P> DataStream<MainOutputPlan<P>> {
    /// The side output `tag` of this stage as a stream (Flink's `getSideOutput`): its records,
    /// with the timestamps of the [`Semantics`](crate::Semantics) rule, and every watermark of
    /// the stage. Run it in the same [`Job`] as the main output. A tag can be read by one consumer
    /// only.
    pub fn side_output_stream<T: 'static>(
        &self,
        tag: &OutputTag<T>,
    ) -> DataStream<SideOutputPlan<P, T>> {
        self.plan.stage.claim(tag);
        DataStream {
            plan: SideOutputPlan { stage: self.plan.stage.clone(), tag: tag.clone() },
            env: self.env.clone(),
        }
    }

    /// Elements each branch buffer holds before the stage stops (default 1,024, at least 1);
    /// applies to every branch of the stage.
    pub fn branch_buffer(self, elements: usize) -> Self {
        self.plan.stage.capacity.store(elements.max(1), Ordering::Relaxed);
        self
    }

    /// How full this stage's branch buffers got (updated while it runs).
    pub fn branch_stats(&self) -> Arc<BranchStats> {
        self.plan.stage.stats.clone()
    }
}
