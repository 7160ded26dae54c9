//! Stateless steps chained into the source: map, filter, flat_map. A function call per record in
//! a loop over the batch, no queue; watermarks and idle markers pass through unchanged.

use std::sync::Arc;

use pinwheel_engine::shard::Turn;

use super::build::BuildContext;
use super::stage::{Stage, StagePlan, Status};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// `map`: the plan.
#[derive(Debug)]
pub struct MapPlan<P, F> {
    pub(crate) upstream: P,
    pub(crate) f: Arc<F>,
}

/// `map`: the running stage.
#[derive(Debug)]
pub struct MapStage<S: Stage, F> {
    upstream: S,
    f: Arc<F>,
    input: Vec<StreamElement<S::Item>>,
}

impl<P, F, U> StagePlan for MapPlan<P, F>
where
    P: StagePlan,
    F: Fn(P::Item) -> U + Send + Sync + 'static,
{
    type Item = U;
    type Stage = MapStage<P::Stage, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        Ok(MapStage { upstream: self.upstream.build(cx)?, f: self.f.clone(), input: Vec::new() })
    }
}

impl<S, F, U> Stage for MapStage<S, F>
where
    S: Stage,
    F: Fn(S::Item) -> U,
{
    type Item = U;

    #[inline]
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<U>>,
    ) -> Result<Status, PipelineError> {
        let status = self.upstream.pull(cx, &mut self.input)?;
        let f = &*self.f;
        out.extend(self.input.drain(..).map(|e| e.map(f)));
        Ok(status)
    }
}

/// `filter`: the plan.
#[derive(Debug)]
pub struct FilterPlan<P, F> {
    pub(crate) upstream: P,
    pub(crate) f: Arc<F>,
}

/// `filter`: the running stage. It pulls straight into the caller's batch and removes what does
/// not pass: no copy.
#[derive(Debug)]
pub struct FilterStage<S, F> {
    upstream: S,
    f: Arc<F>,
}

impl<P, F> StagePlan for FilterPlan<P, F>
where
    P: StagePlan,
    F: Fn(&P::Item) -> bool + Send + Sync + 'static,
{
    type Item = P::Item;
    type Stage = FilterStage<P::Stage, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        Ok(FilterStage { upstream: self.upstream.build(cx)?, f: self.f.clone() })
    }
}

impl<S, F> Stage for FilterStage<S, F>
where
    S: Stage,
    F: Fn(&S::Item) -> bool,
{
    type Item = S::Item;

    #[inline]
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<S::Item>>,
    ) -> Result<Status, PipelineError> {
        let start = out.len();
        let status = self.upstream.pull(cx, out)?;
        // `retain` on the part this pull appended: the kept elements move down in order.
        let mut kept = start;
        for i in start..out.len() {
            let keep = match &out[i] {
                StreamElement::Record { value, .. } => (self.f)(value),
                _ => true,
            };
            if keep {
                out.swap(kept, i);
                kept += 1;
            }
        }
        out.truncate(kept);
        Ok(status)
    }
}

/// `flat_map`: the plan.
#[derive(Debug)]
pub struct FlatMapPlan<P, F> {
    pub(crate) upstream: P,
    pub(crate) f: Arc<F>,
}

/// `flat_map`: the running stage. Each output keeps its input's timestamp.
#[derive(Debug)]
pub struct FlatMapStage<S: Stage, F> {
    upstream: S,
    f: Arc<F>,
    input: Vec<StreamElement<S::Item>>,
}

impl<P, F, R> StagePlan for FlatMapPlan<P, F>
where
    P: StagePlan,
    F: Fn(P::Item) -> R + Send + Sync + 'static,
    R: IntoIterator,
{
    type Item = R::Item;
    type Stage = FlatMapStage<P::Stage, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        Ok(FlatMapStage {
            upstream: self.upstream.build(cx)?,
            f: self.f.clone(),
            input: Vec::new(),
        })
    }
}

impl<S, F, R> Stage for FlatMapStage<S, F>
where
    S: Stage,
    F: Fn(S::Item) -> R,
    R: IntoIterator,
{
    type Item = R::Item;

    #[inline]
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<R::Item>>,
    ) -> Result<Status, PipelineError> {
        let status = self.upstream.pull(cx, &mut self.input)?;
        for e in self.input.drain(..) {
            match e {
                StreamElement::Record { value, timestamp } => out.extend(
                    (self.f)(value)
                        .into_iter()
                        .map(|value| StreamElement::Record { value, timestamp }),
                ),
                StreamElement::Watermark(w) => out.push(StreamElement::Watermark(w)),
                StreamElement::Idle => out.push(StreamElement::Idle),
                StreamElement::Barrier(b) => out.push(StreamElement::Barrier(b)),
            }
        }
        Ok(status)
    }
}
