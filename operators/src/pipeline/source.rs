//! Sources: iterators and vectors, and explicit element sequences.
//!
//! A bounded source ends with the watermark `i64::MAX` (docs/semantics.md A6.1) and then reports
//! [`Status::Done`]. An iterator source is one partition, read by shard 0; the other shards'
//! partitions are empty (`key_by` spreads the keys over the shards).

use std::sync::Mutex;

use pinwheel_engine::shard::Turn;
use pinwheel_engine::time::MAX_WATERMARK;

use super::build::BuildContext;
use super::stage::{BATCH, Stage, StagePlan, Status};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Plays out an iterator of stream elements, then `MAX`, then `Done`.
#[derive(Debug)]
pub struct ElementsStage<I> {
    iter: Option<I>,
    ended: bool,
}

impl<I> ElementsStage<I> {
    /// A stage over `iter`; `None` is an empty stream (the partitions of other shards), which
    /// only ends: `MAX`, then `Done`.
    pub fn new(iter: Option<I>) -> Self {
        ElementsStage { iter, ended: false }
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
            if out.len() - before == BATCH {
                return Ok(Status::Busy);
            }
            self.iter = None;
        }
        self.ended = true;
        out.push(StreamElement::Watermark(MAX_WATERMARK));
        Ok(Status::Done)
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
}
