//! The pull protocol between stages of a pipeline.
//!
//! A pipeline is a chain of stages, each a generic type wrapping its upstream (like iterator
//! adapters), so the whole chain on a shard is one monomorphized function: no queue and no dynamic
//! dispatch between a source and the keyed operator it feeds.
//!
//! A stage is described by a [`StreamPlan`] (`Send`, built by the pipeline builder) and runs as the
//! [`Stream`] that the plan builds on the shard that runs it, so user functions need not be `Send`.

use std::sync::Arc;

use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_engine::time::Timestamp;

use super::exchange::ExchangeRegistry;
use super::side::SharedStages;
use crate::context::ShardInfo;
use crate::error::PipelineError;
use crate::output::StreamElement;
use crate::semantics::Semantics;

/// What polling a stream gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    /// The next element.
    Ready(StreamElement<T>),
    /// Work was done but nothing is ready yet; poll again soon (after re-reading the clock).
    Yield,
    /// Nothing to do until more input arrives or time passes.
    Pending,
    /// The stream has ended; it will only return `Done` from now on.
    Done,
}

/// What a stage sees of the shard loop while it is polled.
#[derive(Debug, Clone)]
pub struct PollContext {
    now: Timestamp,
    wake_at: Option<Timestamp>,
}

impl PollContext {
    /// A context at processing time `now`.
    pub fn new(now: Timestamp) -> Self {
        PollContext { now, wake_at: None }
    }

    /// Processing time, read once per loop turn.
    #[inline]
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Starts a new loop turn at `now`.
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
        self.wake_at = None;
    }

    /// Asks the loop to poll again no later than processing time `t` (a pending timer).
    #[inline]
    pub fn wake_at(&mut self, t: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
    }

    /// The earliest wake-up asked for during this turn.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.wake_at
    }
}

/// What a plan needs to know to build its stage on a shard.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The shard the stage runs on.
    pub shard: ShardInfo,
    /// Semantic settings.
    pub semantics: Semantics,
    /// Processing time when the pipeline starts.
    pub start_time: Timestamp,
    /// The key-group assignment of this run.
    pub key_groups: KeyGroups,
    pub(crate) exchanges: Arc<ExchangeRegistry>,
    /// This shard's shared stages (process stages read by several branches).
    pub(crate) shared: SharedStages,
}

/// A running stage: yields elements when polled.
pub trait Stream {
    /// The element type.
    type Item;

    /// Polls for the next element.
    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<Self::Item>, PipelineError>;
}

/// The description of a stage, from which each shard builds its running [`Stream`].
pub trait StreamPlan: Send + Sync + 'static {
    /// The element type.
    type Item;
    /// The running stage.
    type Stream: Stream<Item = Self::Item>;

    /// Builds the stage for `cx.shard`.
    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError>;
}
