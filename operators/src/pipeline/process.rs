//! Process stages: a keyed or non-keyed process function fed by its upstream stage.

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;

use pinwheel_engine::time::{MAX_WATERMARK, Timestamp};

use super::exchange::ExchangeStream;
use super::side::{SideOutputStage, SideTaps};
use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
use crate::error::PipelineError;
use crate::function::{KeyedProcessFunction, ProcessFunction};
use crate::output::{OutputTag, SideOutputs, StreamElement};
use crate::runtime::{KeyedOperator, KeyedRecord, OperatorMetrics, ProcessOperator};

/// How many upstream elements a process stage handles before it hands its outputs on.
pub(crate) const BATCH: usize = 512;

/// How many timers a firing loop fires before it hands its outputs on (a burst of ten million
/// timers at one watermark streams out in chunks rather than filling a buffer).
const ADVANCE_CHUNK: usize = 1024;

type SideHandler = Arc<dyn Fn(&mut SideOutputs) + Send + Sync>;

/// Side outputs that have a consumer, and the count of records that had none.
#[derive(Clone, Default)]
pub(crate) struct SideRoutes {
    handlers: Vec<SideHandler>,
    /// The id and type of each consumed side output.
    tags: Vec<(Arc<str>, TypeId)>,
}

impl SideRoutes {
    pub(crate) fn add<T: 'static>(
        &mut self,
        tag: &OutputTag<T>,
        f: impl Fn(T, Option<Timestamp>) + Send + Sync + 'static,
    ) {
        self.tags.push((Arc::from(tag.id()), TypeId::of::<T>()));
        let tag = tag.clone();
        self.handlers.push(Arc::new(move |side: &mut SideOutputs| {
            for e in side.take(&tag) {
                if let StreamElement::Record { value, timestamp } = e {
                    f(value, timestamp);
                }
            }
        }));
    }

    /// The side outputs that have a consumer: id and type.
    pub(crate) fn tags(&self) -> &[(Arc<str>, TypeId)] {
        &self.tags
    }

    /// Hands side records to their consumers, and counts and discards the rest (a side output
    /// nobody consumes goes nowhere, as in Flink; the count says how much).
    fn route(&self, side: &mut SideOutputs, unconsumed: &mut u64) {
        for h in &self.handlers {
            h(side);
        }
        *unconsumed += side.discard_records();
    }
}

impl fmt::Debug for SideRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SideRoutes({})", self.handlers.len())
    }
}

/// A keyed process function: the plan.
pub struct KeyedProcessPlan<P, KS, FF> {
    pub(crate) upstream: P,
    pub(crate) exchange_id: u64,
    pub(crate) key_selector: Arc<KS>,
    pub(crate) factory: Arc<FF>,
    pub(crate) name: Arc<str>,
    pub(crate) side: SideRoutes,
}

impl<P: fmt::Debug, KS, FF> fmt::Debug for KeyedProcessPlan<P, KS, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedProcessPlan")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// Buffered output of a process stage, handed on element by element.
#[derive(Debug)]
struct OutputBuffer<O> {
    elements: Vec<StreamElement<O>>,
    next: usize,
}

impl<O> OutputBuffer<O> {
    fn new() -> Self {
        OutputBuffer { elements: Vec::with_capacity(BATCH), next: 0 }
    }

    #[inline]
    fn pop(&mut self) -> Option<StreamElement<O>> {
        if self.next < self.elements.len() {
            let e = std::mem::replace(&mut self.elements[self.next], StreamElement::Idle);
            self.next += 1;
            Some(e)
        } else {
            if self.next > 0 {
                self.elements.clear();
                self.next = 0;
            }
            None
        }
    }
}

/// A keyed process function: the running stage.
pub struct KeyedProcessStream<S, KS, F: KeyedProcessFunction> {
    input: S,
    key_selector: Arc<KS>,
    op: KeyedOperator<F>,
    out: OutputBuffer<F::Out>,
    side: SideRoutes,
    /// Side outputs read as streams (per shard; see `side.rs`).
    taps: SideTaps,
    side_unconsumed: u64,
    now: Timestamp,
    done: bool,
    /// The input has ended; the end completes once the final advance has fired its timers.
    ending: bool,
}

impl<S, KS, F: KeyedProcessFunction> fmt::Debug for KeyedProcessStream<S, KS, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedProcessStream").field("operator", &self.op).finish_non_exhaustive()
    }
}

impl<S, KS, F: KeyedProcessFunction> KeyedProcessStream<S, KS, F> {
    /// The operator's counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        self.op.metrics()
    }

    /// Side-output records that no consumer claimed.
    pub fn side_records_unconsumed(&self) -> u64 {
        self.side_unconsumed
    }
}

impl<P, KS, FF, F> StreamPlan for KeyedProcessPlan<P, KS, FF>
where
    P: StreamPlan,
    P::Item: Send,
    KS: Fn(&P::Item) -> F::Key + Send + Sync + 'static,
    FF: Fn() -> F + Send + Sync + 'static,
    F: KeyedProcessFunction<In = P::Item>,
{
    type Item = F::Out;
    type Stream = KeyedProcessStream<ExchangeStream<P::Stream, KS>, KS, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        let upstream = self.upstream.build(cx)?;
        let endpoints = if cx.shard.count > 1 {
            Some(cx.exchanges.endpoints::<P::Item>(self.exchange_id, cx.shard.index)?)
        } else {
            None
        };
        let input = ExchangeStream::new(
            upstream,
            self.key_selector.clone(),
            cx.key_groups,
            cx.shard.index,
            cx.shard.count,
            endpoints,
            cx.exchanges.max_drift,
        );
        let op = KeyedOperator::new(
            (self.factory)(),
            self.name.clone(),
            cx.shard,
            cx.semantics,
            cx.start_time,
        )?;
        Ok(KeyedProcessStream {
            input,
            key_selector: self.key_selector.clone(),
            op,
            out: OutputBuffer::new(),
            side: self.side.clone(),
            taps: SideTaps::default(),
            side_unconsumed: 0,
            now: cx.start_time,
            done: false,
            ending: false,
        })
    }
}

impl<S, KS, F> Stream for KeyedProcessStream<S, KS, F>
where
    S: Stream<Item = F::In>,
    KS: Fn(&F::In) -> F::Key,
    F: KeyedProcessFunction,
{
    type Item = F::Out;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<F::Out>, PipelineError> {
        if let Some(e) = self.out.pop() {
            return Ok(Poll::Ready(e));
        }
        if self.done {
            return Ok(Poll::Done);
        }
        let buf = &mut self.out.elements;
        let mut result = Poll::Yield;
        if self.op.is_advancing() {
            // A firing loop in progress (a timer burst): its next chunk, before any new input.
            if self.op.continue_advance(ADVANCE_CHUNK, buf)? && self.ending {
                self.op.end_of_input(buf)?;
                self.done = true;
                result = Poll::Done;
            }
        } else {
            result = self.step(cx)?;
        }
        self.taps.drain(self.op.side_outputs());
        self.side.route(self.op.side_outputs(), &mut self.side_unconsumed);
        if let Some(t) = self.op.next_processing_timer() {
            cx.wake_at(t);
        }
        Ok(match self.out.pop() {
            Some(e) => Poll::Ready(e),
            None => result,
        })
    }
}

impl<S, KS, F> KeyedProcessStream<S, KS, F>
where
    S: Stream<Item = F::In>,
    KS: Fn(&F::In) -> F::Key,
    F: KeyedProcessFunction,
{
    /// One turn with no firing loop in progress: processing time, then up to [`BATCH`] input
    /// elements. A watermark (or the end of input) whose timers do not all fire within one chunk
    /// ends the turn with the advance in progress; `poll_next` continues it first.
    fn step(&mut self, cx: &mut PollContext) -> Result<Poll<F::Out>, PipelineError> {
        let buf = &mut self.out.elements;
        // Processing time: fires the timers due at the turn's clock reading, including timers
        // registered at or before it since (they fire as soon as the current callbacks are done,
        // SEMANTICS A1.6), whether or not the clock moved.
        self.now = cx.now();
        self.op.begin_processing_time(self.now);
        if !self.op.continue_advance(ADVANCE_CHUNK, buf)? {
            return Ok(Poll::Yield);
        }
        let mut result = Poll::Yield;
        // Records go through the operator's prefetch pipeline; anything else first flushes it, so
        // the operator sees every element in its order.
        for _ in 0..BATCH {
            match self.input.poll_next(cx)? {
                Poll::Ready(StreamElement::Record { value, timestamp }) => {
                    let key = (self.key_selector)(&value);
                    let hash = self.op.key_hash(&key);
                    self.op.push_record(KeyedRecord { key, hash, value, timestamp }, buf)?;
                }
                other => {
                    self.op.flush(buf)?;
                    match other {
                        Poll::Ready(StreamElement::Watermark(w)) => {
                            if self.op.begin_watermark(w)
                                && !self.op.continue_advance(ADVANCE_CHUNK, buf)?
                            {
                                return Ok(Poll::Yield);
                            }
                        }
                        Poll::Ready(StreamElement::Idle) => self.op.process_idle(buf),
                        Poll::Ready(StreamElement::Record { .. }) => unreachable!("handled above"),
                        Poll::Yield => break,
                        Poll::Pending => {
                            result = Poll::Pending;
                            break;
                        }
                        Poll::Done => {
                            // Due processing-time timers first, then the final watermark; the end
                            // of input completes once its timers have fired.
                            self.ending = true;
                            self.op.begin_processing_time(self.now);
                            while !self.op.continue_advance(ADVANCE_CHUNK, buf)? {}
                            if self.op.current_watermark() < MAX_WATERMARK
                                && self.op.begin_watermark(MAX_WATERMARK)
                                && !self.op.continue_advance(ADVANCE_CHUNK, buf)?
                            {
                                return Ok(Poll::Yield);
                            }
                            self.op.end_of_input(buf)?;
                            self.done = true;
                            return Ok(Poll::Done);
                        }
                    }
                }
            }
        }
        self.op.flush(buf)?;
        self.op.begin_processing_time(self.now);
        if !self.op.continue_advance(ADVANCE_CHUNK, buf)? {
            return Ok(Poll::Yield);
        }
        Ok(result)
    }
}

impl<S, KS, F> SideOutputStage for KeyedProcessStream<S, KS, F>
where
    S: Stream<Item = F::In>,
    KS: Fn(&F::In) -> F::Key,
    F: KeyedProcessFunction,
{
    fn side_taps(&mut self) -> (&mut SideTaps, &mut SideOutputs) {
        (&mut self.taps, self.op.side_outputs())
    }
}

/// A non-keyed process function: the plan.
pub struct ProcessPlan<P, FF> {
    pub(crate) upstream: P,
    pub(crate) factory: Arc<FF>,
    pub(crate) name: Arc<str>,
    pub(crate) side: SideRoutes,
}

impl<P: fmt::Debug, FF> fmt::Debug for ProcessPlan<P, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPlan").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A non-keyed process function: the running stage.
pub struct ProcessStream<S, F: ProcessFunction> {
    input: S,
    op: ProcessOperator<F>,
    out: OutputBuffer<F::Out>,
    side: SideRoutes,
    /// Side outputs read as streams (per shard; see `side.rs`).
    taps: SideTaps,
    side_unconsumed: u64,
    done: bool,
}

impl<S, F: ProcessFunction> fmt::Debug for ProcessStream<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessStream").field("operator", &self.op).finish_non_exhaustive()
    }
}

impl<P, FF, F> StreamPlan for ProcessPlan<P, FF>
where
    P: StreamPlan,
    FF: Fn() -> F + Send + Sync + 'static,
    F: ProcessFunction<In = P::Item>,
{
    type Item = F::Out;
    type Stream = ProcessStream<P::Stream, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        let input = self.upstream.build(cx)?;
        let op = ProcessOperator::new(
            (self.factory)(),
            self.name.clone(),
            cx.shard,
            cx.semantics,
            cx.start_time,
        )?;
        Ok(ProcessStream {
            input,
            op,
            out: OutputBuffer::new(),
            side: self.side.clone(),
            taps: SideTaps::default(),
            side_unconsumed: 0,
            done: false,
        })
    }
}

impl<S, F> Stream for ProcessStream<S, F>
where
    S: Stream<Item = F::In>,
    F: ProcessFunction,
{
    type Item = F::Out;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<F::Out>, PipelineError> {
        if let Some(e) = self.out.pop() {
            return Ok(Poll::Ready(e));
        }
        if self.done {
            return Ok(Poll::Done);
        }
        self.op.advance_processing_time(cx.now());
        let buf = &mut self.out.elements;
        let mut result = Poll::Yield;
        for _ in 0..BATCH {
            match self.input.poll_next(cx)? {
                Poll::Ready(StreamElement::Record { value, timestamp }) => {
                    self.op.process_element(value, timestamp, buf)?;
                }
                Poll::Ready(StreamElement::Watermark(w)) => {
                    self.op.process_watermark(w, buf);
                }
                Poll::Ready(StreamElement::Idle) => self.op.process_idle(buf),
                Poll::Yield => break,
                Poll::Pending => {
                    result = Poll::Pending;
                    break;
                }
                Poll::Done => {
                    self.op.end_of_input(buf)?;
                    self.done = true;
                    result = Poll::Done;
                    break;
                }
            }
        }
        self.taps.drain(self.op.side_outputs());
        self.side.route(self.op.side_outputs(), &mut self.side_unconsumed);
        Ok(match self.out.pop() {
            Some(e) => Poll::Ready(e),
            None => result,
        })
    }
}

impl<S, F> SideOutputStage for ProcessStream<S, F>
where
    S: Stream<Item = F::In>,
    F: ProcessFunction,
{
    fn side_taps(&mut self) -> (&mut SideTaps, &mut SideOutputs) {
        (&mut self.taps, self.op.side_outputs())
    }
}
