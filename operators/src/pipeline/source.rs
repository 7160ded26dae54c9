//! Sources: iterators and vectors, and explicit element sequences.
//!
//! A bounded source ends with the watermark `i64::MAX` (docs/semantics.md A6.1) and then reports
//! [`Status::Done`]. An iterator source is one partition, read by shard 0; the other shards'
//! partitions are empty (`key_by` spreads the keys over the shards).

use std::sync::{Arc, Mutex};

use pinwheel_engine::exchange::CheckpointBarrier;
use pinwheel_engine::shard::Turn;
use pinwheel_engine::time::MAX_WATERMARK;

use super::build::BuildContext;
use super::checkpoint::Coordinator;
use super::stage::{BATCH, Stage, StagePlan, Status};
use crate::error::{ConfigError, PipelineError};
use crate::output::StreamElement;

/// Every source of a pipeline, as the pipeline wraps it: with checkpoints on, it emits each
/// triggered checkpoint's barrier between two pulls of the source, recording the source's
/// [`position`](Stage::position) there, and builds a restored run's source with
/// [`resume`](StagePlan::resume). Without checkpoints it is the source itself.
#[derive(Debug)]
pub struct Source<P> {
    inner: P,
}

impl<P> Source<P> {
    pub(crate) fn new(inner: P) -> Self {
        Source { inner }
    }
}

/// The running stage of a [`Source`].
#[derive(Debug)]
pub struct SourceStage<S> {
    inner: S,
    checkpoints: Option<SourceCheckpoints>,
}

#[derive(Debug)]
struct SourceCheckpoints {
    coordinator: Arc<Coordinator>,
    shard: usize,
    /// The source's place among the sources the shard builds (the same on every shard, and in
    /// every run of the same job).
    ordinal: u64,
    /// The newest checkpoint whose barrier this partition has emitted.
    last: u64,
    ended: bool,
}

impl<P: StagePlan> StagePlan for Source<P> {
    type Item = P::Item;
    type Stage = SourceStage<P::Stage>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        let ordinal = cx.sources_built.get();
        cx.sources_built.set(ordinal + 1);
        let Some(coordinator) = cx.checkpoints.clone() else {
            return Ok(SourceStage { inner: self.inner.build(cx)?, checkpoints: None });
        };
        let inner = match coordinator.restored_source(ordinal) {
            Some(positions) => self.inner.resume(cx, positions)?,
            None => self.inner.build(cx)?,
        };
        if inner.position().is_none() {
            return Err(ConfigError::NotResumable { shard: cx.shard().index }.into());
        }
        let last = coordinator.base();
        let checkpoints =
            SourceCheckpoints { coordinator, shard: cx.shard().index, ordinal, last, ended: false };
        Ok(SourceStage { inner, checkpoints: Some(checkpoints) })
    }
}

impl<S: Stage> Stage for SourceStage<S> {
    type Item = S::Item;

    #[inline]
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<S::Item>>,
    ) -> Result<Status, PipelineError> {
        let Some(c) = self.checkpoints.as_mut() else {
            return self.inner.pull(cx, out);
        };
        if c.ended {
            return Ok(Status::Done);
        }
        let requested = c.coordinator.requested();
        if requested > c.last && self.inner.checkpointable() {
            c.last = requested;
            // `position` was checked when the stage was built.
            let position = self.inner.position().unwrap_or_default();
            c.coordinator.source_position(requested, c.shard, c.ordinal, &position);
            out.push(StreamElement::Barrier(CheckpointBarrier { id: requested }));
        }
        let status = self.inner.pull(cx, out)?;
        if status == Status::Done {
            c.ended = true;
            let position = self.inner.position().unwrap_or_default();
            c.coordinator.source_ended(c.shard, c.ordinal, position);
        }
        Ok(status)
    }

    fn position(&self) -> Option<Vec<u8>> {
        self.inner.position()
    }

    fn checkpointable(&self) -> bool {
        self.inner.checkpointable()
    }
}

/// Plays out an iterator of stream elements, then `MAX`, then `Done`.
#[derive(Debug)]
pub struct ElementsStage<I> {
    iter: Option<I>,
    /// Elements emitted so far: the position a checkpoint records.
    emitted: u64,
    ended: bool,
}

impl<I> ElementsStage<I> {
    /// A stage over `iter`; `None` is an empty stream (the partitions of other shards), which
    /// only ends: `MAX`, then `Done`.
    pub fn new(iter: Option<I>) -> Self {
        ElementsStage { iter, emitted: 0, ended: false }
    }
}

impl<I: Iterator> ElementsStage<I> {
    /// A stage over `iter` resuming after its first `skip` elements, which a checkpointed run
    /// emitted (the program must give it the same sequence again).
    fn resumed(iter: Option<I>, skip: u64) -> Self {
        let mut stage = ElementsStage::new(iter);
        if let Some(iter) = stage.iter.as_mut() {
            for _ in 0..skip {
                if iter.next().is_none() {
                    break;
                }
                stage.emitted += 1;
            }
        }
        stage
    }
}

/// The position of an iterator partition: the elements it has emitted, little-endian.
fn decode_count(positions: &[Vec<u8>], cx: &BuildContext) -> Result<u64, PipelineError> {
    // Only partition 0 (shard 0 of the old run) read the iterator.
    match positions.first().map(Vec::as_slice) {
        None | Some([]) => Ok(0),
        Some(bytes) => bytes.try_into().map(u64::from_le_bytes).map_err(|_| {
            ConfigError::CheckpointMismatch {
                checkpoint: cx.checkpoints.as_ref().map_or(0, |c| c.base()),
                reason: "an iterator source's position is not 8 bytes".to_string(),
            }
            .into()
        }),
    }
}

impl<T, I: Iterator<Item = StreamElement<T>>> Stage for ElementsStage<I> {
    type Item = T;

    #[inline]
    fn pull(
        &mut self,
        _: &mut Turn,
        out: &mut Vec<StreamElement<T>>,
    ) -> Result<Status, PipelineError> {
        if self.ended {
            return Ok(Status::Done);
        }
        if let Some(iter) = self.iter.as_mut() {
            let before = out.len();
            out.extend(iter.by_ref().take(BATCH));
            let n = out.len() - before;
            self.emitted += n as u64;
            if n == BATCH {
                return Ok(Status::Busy);
            }
            self.iter = None;
        }
        self.ended = true;
        out.push(StreamElement::Watermark(MAX_WATERMARK));
        Ok(Status::Done)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(self.emitted.to_le_bytes().to_vec())
    }
}

/// Wraps plain values as untimed records.
#[derive(Debug)]
pub struct Untimed<I>(I);

impl<T, I: Iterator<Item = T>> Iterator for Untimed<I> {
    type Item = StreamElement<T>;
    #[inline]
    fn next(&mut self) -> Option<StreamElement<T>> {
        self.0.next().map(StreamElement::untimed)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// The partition of shard 0, taken out of its plan by the first build there.
fn shard_zero<I>(slot: &Mutex<Option<I>>, cx: &BuildContext) -> Option<I> {
    if cx.shard().index == 0 {
        // A poisoned lock only means another shard panicked while building; the data is intact.
        slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    } else {
        None
    }
}

/// A source from an iterator: one partition, read by shard 0 (other shards' partitions are empty).
#[derive(Debug)]
pub struct IterSource<I> {
    iter: Mutex<Option<I>>,
}

impl<I> IterSource<I> {
    /// A source reading `iter`.
    pub fn new(iter: I) -> Self {
        IterSource { iter: Mutex::new(Some(iter)) }
    }
}

impl<I> StagePlan for IterSource<I>
where
    I: Iterator + Send + 'static,
{
    type Item = I::Item;
    type Stage = ElementsStage<Untimed<I>>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        Ok(ElementsStage::new(shard_zero(&self.iter, cx).map(Untimed)))
    }

    fn resume(
        &self,
        cx: &BuildContext,
        positions: &[Vec<u8>],
    ) -> Result<Self::Stage, PipelineError> {
        let skip = decode_count(positions, cx)?;
        Ok(ElementsStage::resumed(shard_zero(&self.iter, cx).map(Untimed), skip))
    }
}

/// A source of explicit stream elements (records with or without timestamps, watermarks, idle
/// markers), read by shard 0: tests and replays use it.
#[derive(Debug)]
pub struct ElementSource<I> {
    iter: Mutex<Option<I>>,
}

impl<I> ElementSource<I> {
    /// A source playing `iter`.
    pub fn new(iter: I) -> Self {
        ElementSource { iter: Mutex::new(Some(iter)) }
    }
}

impl<T, I> StagePlan for ElementSource<I>
where
    I: Iterator<Item = StreamElement<T>> + Send + 'static,
{
    type Item = T;
    type Stage = ElementsStage<I>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        Ok(ElementsStage::new(shard_zero(&self.iter, cx)))
    }

    fn resume(
        &self,
        cx: &BuildContext,
        positions: &[Vec<u8>],
    ) -> Result<Self::Stage, PipelineError> {
        let skip = decode_count(positions, cx)?;
        Ok(ElementsStage::resumed(shard_zero(&self.iter, cx), skip))
    }
}
