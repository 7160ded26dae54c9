//! The pull protocol between the stages of a pipeline.
//!
//! A pipeline is a chain of stages, each a generic type wrapping its upstream (like iterator
//! adapters), so the whole chain on a shard is one monomorphized function: no queue and no
//! dynamic dispatch between a source and the keyed operator it feeds. Stages move **batches**: a
//! pull appends a bounded batch of elements (records, watermarks, idle markers) to the caller's
//! buffer, so per-record work in a stage is a tight loop over a batch and per-batch work (a clock
//! read, a check) is paid once per batch.
//!
//! A stage is described by a [`StagePlan`] (`Send`, built by the pipeline builder) and runs as the
//! [`Stage`] that the plan builds on the shard that runs it, so user functions need not be `Send`.
//! Custom sources implement both.

use pinwheel_engine::shard::Turn;

use super::build::BuildContext;
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Input elements a stage handles per pull, about: stages pull their upstream in batches of
/// this many elements.
pub const BATCH: usize = 256;

/// What a pull came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Status {
    /// The stage may have more right away: pull again soon.
    Busy,
    /// Nothing more until input arrives or time passes. A stage that waits for something the
    /// engine does not see (neither its upstream, nor the exchange rings, nor a push source, nor
    /// processing time) asks to be woken: [`Turn::wake_at`] a processing time, or hand
    /// [`Turn::waker`] to whoever produces its data. Unwoken, a parked shard looks again after a
    /// backstop of about 50 ms.
    Idle,
    /// The stream has ended: everything has been appended (a bounded source's last element is
    /// the watermark `i64::MAX`); every later pull appends nothing and returns `Done`.
    Done,
}

/// A running stage: appends elements to a batch when pulled.
pub trait Stage {
    /// The element type.
    type Item;

    /// Appends the next elements to `out`: about [`BATCH`] at most (a stage that expands its
    /// input, such as a `flat_map` or a burst of timers, may append more, but a bounded number).
    /// `cx` gives the processing time of this loop turn.
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<Self::Item>>,
    ) -> Result<Status, PipelineError>;

    /// For a source: its position after the elements it has emitted so far, which every
    /// checkpoint records at its barrier so that a restored run resumes right after them (see
    /// [`StagePlan::resume`]); the bytes are the source's own. `None` (the default): the stage
    /// cannot resume, and a pipeline with checkpoints refuses it as a source.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// For a source: whether [`position`](Self::position) describes exactly what it has emitted
    /// right now. A resumed source that is still skipping, interleaved with new elements, what
    /// the run it resumes had emitted, can say false: a checkpoint's barrier then waits for a
    /// later pull (the other inputs' barriers are held until it comes). The default: true.
    fn checkpointable(&self) -> bool {
        true
    }
}

/// The description of a stage, from which each shard builds its running [`Stage`].
pub trait StagePlan: Send + Sync + 'static {
    /// The element type.
    type Item;
    /// The running stage.
    type Stage: Stage<Item = Self::Item>;

    /// Builds the stage for `cx.shard()`.
    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError>;

    /// For a source: builds the stage of `cx.shard()` resuming from a checkpoint. `positions`
    /// holds the [`position`](Stage::position) every partition of the checkpointed run had
    /// reached, in the order of that run's shards, which may have been more or fewer than now:
    /// the stage emits what no old partition had emitted yet of what is now its own. The
    /// default refuses ([`ConfigError::NotResumable`](crate::ConfigError::NotResumable)).
    fn resume(
        &self,
        cx: &BuildContext,
        positions: &[Vec<u8>],
    ) -> Result<Self::Stage, PipelineError> {
        let _ = positions;
        Err(crate::error::ConfigError::NotResumable { shard: cx.shard().index }.into())
    }
}
