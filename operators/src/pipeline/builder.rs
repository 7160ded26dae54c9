//! [`Pipeline`]: the settings of a pipeline, and its sources.

use std::sync::Arc;

use pinwheel_engine::exchange::ExchangeSettings;
use pinwheel_engine::placement::ShardPlacement;
use pinwheel_engine::shard::IdlePolicy;
use pinwheel_engine::time::{Clock, SystemClock};

use super::DataStream;
use super::checkpoint::Checkpointing;
use super::commit::Committer;
use super::push::{PushHandle, PushSource, push_source};
use super::source::{ElementSource, IterSource, Source};
use super::stage::StagePlan;
use crate::error::{ConfigError, PipelineError};
use crate::output::StreamElement;
use crate::semantics::Semantics;

/// How far (ms of event time) a source partition may run ahead of its shard's combined watermark
/// by default; see [`Pipeline::watermark_alignment`].
pub const DEFAULT_MAX_WATERMARK_DRIFT: i64 = 1_000;

/// Settings shared by every stage of a pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) semantics: Semantics,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) placement: ShardPlacement,
    pub(crate) max_key_groups: Option<u32>,
    pub(crate) exchange: ExchangeSettings,
    pub(crate) max_watermark_drift: Option<i64>,
    pub(crate) idle: IdlePolicy,
    pub(crate) max_keys_per_shard: usize,
    pub(crate) checkpointing: Option<Checkpointing>,
    /// The committers of the exactly-once sinks (commit.rs).
    pub(crate) committers: Vec<Arc<dyn Committer>>,
}

impl Env {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Env {
            semantics: Semantics::default(),
            clock,
            placement: ShardPlacement::Unpinned(cores),
            max_key_groups: None,
            exchange: ExchangeSettings::default(),
            max_watermark_drift: Some(DEFAULT_MAX_WATERMARK_DRIFT),
            idle: IdlePolicy::default(),
            max_keys_per_shard: usize::MAX,
            checkpointing: None,
            committers: Vec::new(),
        }
    }

    /// The number of shards the placement gives.
    pub(crate) fn shard_count(&self) -> Result<usize, PipelineError> {
        if self.placement == ShardPlacement::Unpinned(0) {
            return Err(ConfigError::NoShards.into());
        }
        Ok(self.placement.plan().map_err(ConfigError::from)?.shards)
    }

    /// True when `other` has the same settings (streams of one job must).
    pub(crate) fn same_settings(&self, other: &Env) -> bool {
        self.placement == other.placement
            && self.semantics == other.semantics
            && self.max_key_groups == other.max_key_groups
            && self.exchange == other.exchange
            && self.max_watermark_drift == other.max_watermark_drift
            && self.idle == other.idle
            && self.max_keys_per_shard == other.max_keys_per_shard
            && self.checkpointing == other.checkpointing
            && self.committers.len() == other.committers.len()
            && self.committers.iter().zip(&other.committers).all(|(a, b)| Arc::ptr_eq(a, b))
            && Arc::ptr_eq(&self.clock, &other.clock)
    }
}

/// The entry point: settings, then a source.
///
/// Settings are checked when the pipeline runs; an impossible one (no shard, a ring capacity out
/// of range, more shards than key groups, an exchange budget too small for the shard count) is a
/// [`PipelineError::Config`] naming it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub(crate) env: Env,
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

    /// Runs on `n` unpinned shards (`n = 0` is refused when the pipeline runs). Shorthand for
    /// `placement(ShardPlacement::Unpinned(n))`.
    pub fn shards(self, n: usize) -> Self {
        self.placement(ShardPlacement::Unpinned(n))
    }

    /// Where the shards run (default: one unpinned shard per available core). Pinned placements
    /// degrade to unpinned shards where the cores asked for do not exist, and say so in
    /// [`JobRun::placement_note`](super::JobRun::placement_note).
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

    /// The most messages each exchange ring holds (default 4,096; at most 2^24): the bound of
    /// backpressure between two shards. A ring's memory follows what it holds, not its capacity.
    pub fn ring_capacity(mut self, messages: usize) -> Self {
        self.env.exchange = self.env.exchange.ring_capacity(messages);
        self
    }

    /// The bytes all the rings of one exchange (one `key_by`) may hold at once (default 64 MiB).
    /// The rings' capacity is cut down so that they fit: with 64 shards (4,032 rings) a ring of
    /// 64-byte messages holds 260 of them. A budget too small to give every ring 64 messages is
    /// refused when the pipeline runs.
    pub fn exchange_memory(mut self, bytes: usize) -> Self {
        self.env.exchange = self.env.exchange.memory_budget(bytes);
        self
    }

    /// Watermark alignment across source partitions (default: on, at most 1,000 ms): a shard stops
    /// reading its own partition while that partition's watermark is more than `max_drift` ms of
    /// event time ahead of the shard's combined watermark (the minimum over all partitions).
    /// Without it, a partition whose shard has less to do runs ahead, the combined watermark lags
    /// far behind the records, and event-time results drift from the ideal (windows merge,
    /// timeouts are missed). `None` turns it off (Flink's default; Flink offers it as
    /// `WatermarkStrategy::withWatermarkAlignment`). It has no effect on one shard, and none on
    /// partitions without watermarks. It holds back source partitions only, at the first
    /// `key_by` after them: a later exchange's input already follows aligned watermarks, and
    /// holding it back would stop its shard draining the earlier exchange, which the other shards
    /// wait on.
    pub fn watermark_alignment(mut self, max_drift: Option<i64>) -> Self {
        self.env.max_watermark_drift = max_drift.map(|d| d.max(0));
        self
    }

    /// The most live keys (keys with state or pending timers) each keyed operator may hold on one
    /// shard (default: no limit but the key ids', 2^32 - 1). One more key stops the job with
    /// [`PipelineError::Capacity`] naming the operator and shard, instead of the process running
    /// out of memory. A key whose state is cleared and whose timers have fired is removed, so
    /// the limit bounds the keys live at once, not every key ever seen.
    pub fn max_keys_per_shard(mut self, limit: usize) -> Self {
        self.env.max_keys_per_shard = limit;
        self
    }

    /// Checkpoints (default: off): aligned barriers from the sources, a snapshot of every keyed
    /// operator's keys, state and timers at the barrier, one file per shard and a manifest in
    /// the directory, and a run that starts from the newest complete checkpoint there. Every
    /// source must be able to resume (iterators and element sequences can: the program gives
    /// them the same sequence again; push sources cannot). See
    /// [`Checkpointing`] and docs/reliability.md.
    pub fn checkpointing(mut self, checkpointing: Checkpointing) -> Self {
        self.env.checkpointing = Some(checkpointing);
        self
    }

    /// Registers the committer of an exactly-once sink (such as
    /// [`ExactlyOnceFiles::committer`](super::ExactlyOnceFiles::committer)): before the shards
    /// start, it recovers from the checkpoint the run resumes from; after every complete
    /// checkpoint, it makes visible what the sinks pre-committed at its barriers; without
    /// checkpoints, it makes everything visible once the run has completed. See
    /// [`Committer`] and docs/reliability.md.
    pub fn exactly_once(mut self, committer: Arc<dyn Committer>) -> Self {
        self.env.committers.push(committer);
        self
    }

    /// Semantic settings for every operator.
    pub fn semantics(mut self, semantics: Semantics) -> Self {
        self.env.semantics = semantics;
        self
    }

    /// The processing-time clock (default: [`SystemClock`]); tests pass a
    /// [`ManualClock`](pinwheel_engine::time::ManualClock), which wakes the shards when it is
    /// moved.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.env.clock = Arc::new(clock);
        self
    }

    /// How an idle shard waits for work (default [`IdlePolicy::default`]: spin briefly, yield for
    /// a millisecond, then park until work arrives).
    pub fn idle_policy(mut self, policy: IdlePolicy) -> Self {
        self.env.idle = policy;
        self
    }

    /// A stream of the given values, without timestamps; ends with the final watermark.
    pub fn from_iter<I>(&self, items: I) -> DataStream<Source<IterSource<I::IntoIter>>>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
    {
        self.from_source(IterSource::new(items.into_iter()))
    }

    /// A stream of explicit elements: records with or without timestamps, watermarks, idle
    /// markers. The final watermark is added at the end.
    pub fn from_elements<T, I>(&self, elements: I) -> DataStream<Source<ElementSource<I::IntoIter>>>
    where
        I: IntoIterator<Item = StreamElement<T>>,
        I::IntoIter: Send + 'static,
    {
        self.from_source(ElementSource::new(elements.into_iter()))
    }

    /// A stream from any source plan (a [`StagePlan`] whose stage is built on every shard: each
    /// shard's stage reads that shard's partition). With [checkpoints](Self::checkpointing), the
    /// source must implement [`Stage::position`](super::Stage::position) and
    /// [`StagePlan::resume`].
    pub fn from_source<P: StagePlan>(&self, plan: P) -> DataStream<Source<P>> {
        DataStream { plan: Source::new(plan), env: self.env.clone() }
    }

    /// An unbounded source fed by the embedding program: returns the handle to push into and the
    /// stream it feeds. The queue between them holds `capacity` elements (at least 1): a full
    /// queue blocks [`PushHandle::push`] (backpressure). The input ends when every clone of the
    /// handle is dropped or [finished](PushHandle::finish). See the [push module docs](super::push).
    ///
    /// A few thousand elements is a good capacity: a pusher waits while the queue is full, and
    /// the shard takes the queue's elements a batch at a time.
    ///
    /// ```
    /// use pinwheel_operators::pipeline::Pipeline;
    ///
    /// let (input, stream) = Pipeline::new().shards(1).push_source::<u64>(1024);
    /// let pusher = std::thread::spawn(move || {
    ///     for i in 0..100 {
    ///         input.push(i).expect("the pipeline is running");
    ///     }
    ///     // `input` is dropped here: the input ends and the pipeline drains.
    /// });
    /// let doubled = stream.map(|i| i * 2).collect()?;
    /// pusher.join().unwrap();
    /// assert_eq!(doubled, (0..100).map(|i| i * 2).collect::<Vec<u64>>());
    /// # Ok::<(), pinwheel_operators::PipelineError>(())
    /// ```
    pub fn push_source<T: Send + 'static>(
        &self,
        capacity: usize,
    ) -> (PushHandle<T>, DataStream<Source<PushSource<T>>>) {
        let (handle, source) = push_source(capacity);
        (handle, self.from_source(source))
    }
}
