//! Stateless steps chained into the source: map, filter, flat_map. A function call per record, no
//! queue; watermarks and idle markers pass through unchanged.

use std::sync::Arc;

use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
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
pub struct MapStream<S, F> {
    upstream: S,
    f: Arc<F>,
}

impl<P, F, U> StreamPlan for MapPlan<P, F>
where
    P: StreamPlan,
    F: Fn(P::Item) -> U + Send + Sync + 'static,
{
    type Item = U;
    type Stream = MapStream<P::Stream, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        Ok(MapStream { upstream: self.upstream.build(cx)?, f: self.f.clone() })
    }
}

impl<S, F, U> Stream for MapStream<S, F>
where
    S: Stream,
    F: Fn(S::Item) -> U,
{
    type Item = U;

    #[inline]
    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<U>, PipelineError> {
        Ok(match self.upstream.poll_next(cx)? {
            Poll::Ready(e) => Poll::Ready(e.map(&*self.f)),
            Poll::Yield => Poll::Yield,
            Poll::Pending => Poll::Pending,
            Poll::Done => Poll::Done,
        })
    }
}

/// `filter`: the plan.
#[derive(Debug)]
pub struct FilterPlan<P, F> {
    pub(crate) upstream: P,
    pub(crate) f: Arc<F>,
}

/// `filter`: the running stage.
#[derive(Debug)]
pub struct FilterStream<S, F> {
    upstream: S,
    f: Arc<F>,
}

impl<P, F> StreamPlan for FilterPlan<P, F>
where
    P: StreamPlan,
    F: Fn(&P::Item) -> bool + Send + Sync + 'static,
{
    type Item = P::Item;
    type Stream = FilterStream<P::Stream, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        Ok(FilterStream { upstream: self.upstream.build(cx)?, f: self.f.clone() })
    }
}

impl<S, F> Stream for FilterStream<S, F>
where
    S: Stream,
    F: Fn(&S::Item) -> bool,
{
    type Item = S::Item;

    #[inline]
    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<S::Item>, PipelineError> {
        loop {
            match self.upstream.poll_next(cx)? {
                Poll::Ready(StreamElement::Record { value, timestamp }) => {
                    if (self.f)(&value) {
                        return Ok(Poll::Ready(StreamElement::Record { value, timestamp }));
                    }
                }
                other => return Ok(other),
            }
        }
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
pub struct FlatMapStream<S, F, I> {
    upstream: S,
    f: Arc<F>,
    current: Option<(I, Option<i64>)>,
}

impl<P, F, R> StreamPlan for FlatMapPlan<P, F>
where
    P: StreamPlan,
    F: Fn(P::Item) -> R + Send + Sync + 'static,
    R: IntoIterator,
{
    type Item = R::Item;
    type Stream = FlatMapStream<P::Stream, F, R::IntoIter>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        Ok(FlatMapStream { upstream: self.upstream.build(cx)?, f: self.f.clone(), current: None })
    }
}

impl<S, F, R> Stream for FlatMapStream<S, F, R::IntoIter>
where
    S: Stream,
    F: Fn(S::Item) -> R,
    R: IntoIterator,
{
    type Item = R::Item;

    #[inline]
    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<R::Item>, PipelineError> {
        loop {
            if let Some((iter, timestamp)) = self.current.as_mut() {
                if let Some(value) = iter.next() {
                    return Ok(Poll::Ready(StreamElement::Record { value, timestamp: *timestamp }));
                }
                self.current = None;
            }
            match self.upstream.poll_next(cx)? {
                Poll::Ready(StreamElement::Record { value, timestamp }) => {
                    self.current = Some(((self.f)(value).into_iter(), timestamp));
                }
                Poll::Ready(StreamElement::Watermark(w)) => {
                    return Ok(Poll::Ready(StreamElement::Watermark(w)));
                }
                Poll::Ready(StreamElement::Idle) => return Ok(Poll::Ready(StreamElement::Idle)),
                Poll::Yield => return Ok(Poll::Yield),
                Poll::Pending => return Ok(Poll::Pending),
                Poll::Done => return Ok(Poll::Done),
            }
        }
    }
}
