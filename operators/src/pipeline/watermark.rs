//! Timestamp assignment and watermark generation (Flink's `WatermarkStrategy` and
//! `TimestampsAndWatermarksOperator`, SEMANTICS A2.8).
//!
//! * Each record is emitted **before** the generator sees it, so a watermark it causes follows it.
//! * Only strictly increasing watermarks are emitted.
//! * Upstream watermarks are ignored, except the final `i64::MAX`, which is forwarded; upstream
//!   idle markers are swallowed.
//! * "Periodic" emission happens every [`WatermarkStrategy::with_emit_interval`] records (default
//!   [`DEFAULT_EMIT_INTERVAL`]) and whenever the source has nothing more to give for now. Flink emits
//!   every 200 ms of processing time instead; counting records keeps the watermark close behind the
//!   data at any rate, which is what timers want, at the cost of a timer-wheel advance per interval.

use std::sync::Arc;

use pinwheel_engine::time::{MAX_WATERMARK, MIN_WATERMARK, Timestamp};

use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Records between two periodic watermark emissions by default.
pub const DEFAULT_EMIT_INTERVAL: u32 = 256;

/// Where a [`WatermarkGenerator`] puts what it decides.
#[derive(Debug, Clone)]
pub struct WatermarkOutput {
    watermark: Option<Timestamp>,
    idle: bool,
    active: bool,
    now: Timestamp,
}

impl WatermarkOutput {
    /// An output at processing time `now` into which nothing has been emitted yet. The pipeline
    /// makes one per generator call; tests of a generator make their own and read it with
    /// [`watermark`](Self::watermark) and [`is_idle`](Self::is_idle).
    pub fn new(now: Timestamp) -> Self {
        WatermarkOutput { watermark: None, idle: false, active: false, now }
    }

    /// The largest watermark emitted into this output, if any (the pipeline forwards it only if it
    /// is larger than every watermark forwarded before).
    pub fn watermark(&self) -> Option<Timestamp> {
        self.watermark
    }

    /// True if the generator declared the stream idle (and did not emit or declare it active
    /// after that).
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Emits a watermark (ignored unless it is larger than every one emitted before). Also ends
    /// idleness.
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
        self.idle = false;
        self.active = true;
    }

    /// Declares the stream idle: it stops holding back downstream watermarks.
    pub fn mark_idle(&mut self) {
        self.idle = true;
        self.active = false;
    }

    /// Declares the stream active again.
    pub fn mark_active(&mut self) {
        self.idle = false;
        self.active = true;
    }

    /// Processing time (read once per loop turn), for generators that depend on it.
    pub fn processing_time(&self) -> Timestamp {
        self.now
    }
}

/// Decides watermarks from the events it sees (Flink's `WatermarkGenerator`).
pub trait WatermarkGenerator<T> {
    /// Called for every record, after the record has been emitted.
    fn on_event(&mut self, event: &T, timestamp: Timestamp, output: &mut WatermarkOutput);
    /// Called periodically (see the module docs).
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Flink's `BoundedOutOfOrdernessWatermarks`: emits `max timestamp - delay - 1`; `MIN` before the
/// first record.
#[derive(Debug, Clone, Copy)]
pub struct BoundedOutOfOrderness {
    max_timestamp: Timestamp,
    delay: i64,
}

impl BoundedOutOfOrderness {
    /// A generator allowing records up to `delay` ms out of order. A negative delay counts as 0.
    pub fn new(delay: i64) -> Self {
        let delay = delay.max(0);
        BoundedOutOfOrderness {
            max_timestamp: MIN_WATERMARK.saturating_add(delay).saturating_add(1),
            delay,
        }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    #[inline]
    fn on_event(&mut self, _: &T, timestamp: Timestamp, _: &mut WatermarkOutput) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    #[inline]
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(self.max_timestamp.saturating_sub(self.delay).saturating_sub(1));
    }
}

/// Flink's `WatermarksWithIdleness`: marks the stream idle when no record arrived for `timeout` ms
/// of processing time, counted from the first periodic check that saw no activity.
#[derive(Debug, Clone)]
pub struct WithIdleness<G> {
    inner: G,
    timeout: i64,
    activity: bool,
    idle_since: Option<Timestamp>,
}

impl<T, G: WatermarkGenerator<T>> WatermarkGenerator<T> for WithIdleness<G> {
    fn on_event(&mut self, event: &T, timestamp: Timestamp, output: &mut WatermarkOutput) {
        self.inner.on_event(event, timestamp, output);
        self.activity = true;
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        if std::mem::take(&mut self.activity) {
            self.idle_since = None;
        } else {
            let since = *self.idle_since.get_or_insert(output.now);
            if output.now.saturating_sub(since) > self.timeout {
                output.mark_idle();
                return;
            }
        }
        self.inner.on_periodic_emit(output);
    }
}

/// How records get timestamps and how watermarks are made: a generator, an optional timestamp
/// assigner, optional idleness, and the emission interval.
///
/// ```
/// use pinwheel_operators::pipeline::{Event, WatermarkStrategy};
/// let s = WatermarkStrategy::for_bounded_out_of_orderness(0)
///     .with_timestamp_assigner(|e: &Event, _| e.timestamp)
///     .with_idleness(1_000);
/// # let _ = s;
/// ```
#[derive(Debug, Clone)]
pub struct WatermarkStrategy<G, A> {
    generator: G,
    assigner: A,
    emit_interval: u32,
}

/// The default timestamp assigner: keeps the record's timestamp, or `i64::MIN` if it has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

/// Assigns a timestamp to a record, given the timestamp it already has.
pub trait TimestampAssigner<T> {
    /// The record's event timestamp.
    fn assign(&self, record: &T, previous: Option<Timestamp>) -> Timestamp;
}

impl<T> TimestampAssigner<T> for RecordTimestamp {
    #[inline]
    fn assign(&self, _: &T, previous: Option<Timestamp>) -> Timestamp {
        previous.unwrap_or(MIN_WATERMARK)
    }
}

impl<T, F: Fn(&T, Option<Timestamp>) -> Timestamp> TimestampAssigner<T> for F {
    #[inline]
    fn assign(&self, record: &T, previous: Option<Timestamp>) -> Timestamp {
        self(record, previous)
    }
}

impl WatermarkStrategy<BoundedOutOfOrderness, RecordTimestamp> {
    /// Watermarks `max timestamp - delay - 1`.
    pub fn for_bounded_out_of_orderness(delay: i64) -> Self {
        WatermarkStrategy::for_generator(BoundedOutOfOrderness::new(delay))
    }

    /// Watermarks `max timestamp - 1` (bounded out-of-orderness 0).
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(0)
    }
}

impl<G> WatermarkStrategy<G, RecordTimestamp> {
    /// A custom generator (cloned for each source partition).
    pub fn for_generator(generator: G) -> Self {
        WatermarkStrategy {
            generator,
            assigner: RecordTimestamp,
            emit_interval: DEFAULT_EMIT_INTERVAL,
        }
    }
}

impl<G, A> WatermarkStrategy<G, A> {
    /// Takes each record's timestamp from `assigner(record, previous timestamp)`.
    pub fn with_timestamp_assigner<T, B>(self, assigner: B) -> WatermarkStrategy<G, B>
    where
        B: Fn(&T, Option<Timestamp>) -> Timestamp,
    {
        self.with_assigner(assigner)
    }

    /// Like [`with_timestamp_assigner`](Self::with_timestamp_assigner), for any
    /// [`TimestampAssigner`] (e.g. a struct).
    pub fn with_assigner<B>(self, assigner: B) -> WatermarkStrategy<G, B> {
        WatermarkStrategy { generator: self.generator, assigner, emit_interval: self.emit_interval }
    }

    /// Marks the stream idle after `timeout_ms` of processing time without records.
    pub fn with_idleness(self, timeout_ms: i64) -> WatermarkStrategy<WithIdleness<G>, A> {
        WatermarkStrategy {
            generator: WithIdleness {
                inner: self.generator,
                timeout: timeout_ms.max(0),
                activity: false,
                idle_since: None,
            },
            assigner: self.assigner,
            emit_interval: self.emit_interval,
        }
    }

    /// Calls the generator's periodic emission every `records` records (at least 1).
    pub fn with_emit_interval(mut self, records: u32) -> Self {
        self.emit_interval = records.max(1);
        self
    }
}

/// Timestamps and watermarks: the plan.
#[derive(Debug)]
pub struct WatermarksPlan<P, G, A> {
    pub(crate) upstream: P,
    pub(crate) strategy: Arc<WatermarkStrategy<G, A>>,
}

/// Timestamps and watermarks: the running stage.
#[derive(Debug)]
pub struct WatermarksStream<S, G, A> {
    upstream: S,
    generator: G,
    strategy: Arc<WatermarkStrategy<G, A>>,
    since_emit: u32,
    emitted: Timestamp,
    idle: bool,
    queued: Option<Queued>,
    finished: bool,
}

#[derive(Debug, Clone, Copy)]
enum Queued {
    Watermark(Timestamp),
    Idle,
}

impl<P, G, A> StreamPlan for WatermarksPlan<P, G, A>
where
    P: StreamPlan,
    G: WatermarkGenerator<P::Item> + Clone + Send + Sync + 'static,
    A: TimestampAssigner<P::Item> + Send + Sync + 'static,
{
    type Item = P::Item;
    type Stream = WatermarksStream<P::Stream, G, A>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        Ok(WatermarksStream {
            upstream: self.upstream.build(cx)?,
            generator: self.strategy.generator.clone(),
            strategy: self.strategy.clone(),
            since_emit: 0,
            emitted: MIN_WATERMARK,
            idle: false,
            queued: None,
            finished: false,
        })
    }
}

impl<S, G, A> WatermarksStream<S, G, A> {
    /// Turns a generator's decision into at most one queued element.
    fn apply(&mut self, out: &WatermarkOutput) {
        if let Some(w) = out.watermark {
            if w > self.emitted {
                self.emitted = w;
                self.idle = false;
                self.queued = Some(Queued::Watermark(w));
                return;
            }
        }
        if out.idle && !self.idle {
            self.idle = true;
            self.queued = Some(Queued::Idle);
        }
    }
}

impl<S, G, A> Stream for WatermarksStream<S, G, A>
where
    S: Stream,
    G: WatermarkGenerator<S::Item>,
    A: TimestampAssigner<S::Item>,
{
    type Item = S::Item;

    #[inline]
    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<S::Item>, PipelineError> {
        if let Some(q) = self.queued.take() {
            return Ok(Poll::Ready(match q {
                Queued::Watermark(w) => StreamElement::Watermark(w),
                Queued::Idle => StreamElement::Idle,
            }));
        }
        if self.finished {
            return Ok(Poll::Done);
        }
        loop {
            match self.upstream.poll_next(cx)? {
                Poll::Ready(StreamElement::Record { value, timestamp }) => {
                    let ts = self.strategy.assigner.assign(&value, timestamp);
                    let mut out = WatermarkOutput::new(cx.now());
                    self.generator.on_event(&value, ts, &mut out);
                    self.since_emit += 1;
                    if self.since_emit >= self.strategy.emit_interval {
                        self.since_emit = 0;
                        self.generator.on_periodic_emit(&mut out);
                    }
                    // A record ends idleness downstream by itself.
                    self.idle = false;
                    self.apply(&out);
                    return Ok(Poll::Ready(StreamElement::Record { value, timestamp: Some(ts) }));
                }
                Poll::Ready(StreamElement::Watermark(w)) => {
                    if w == MAX_WATERMARK && self.emitted < MAX_WATERMARK {
                        // One last periodic emission, then MAX. (Flink calls onPeriodicEmit once
                        // more in finish(), but that runs after MAX has gone through, so there it
                        // emits nothing; here the last watermark the data justifies goes out
                        // before the end of event time, like any emission when the source has
                        // nothing more to give.)
                        let mut out = WatermarkOutput::new(cx.now());
                        self.generator.on_periodic_emit(&mut out);
                        let last = out.watermark.filter(|&v| v > self.emitted);
                        self.emitted = MAX_WATERMARK;
                        self.idle = false;
                        return Ok(Poll::Ready(match last {
                            Some(v) => {
                                self.queued = Some(Queued::Watermark(MAX_WATERMARK));
                                StreamElement::Watermark(v)
                            }
                            None => StreamElement::Watermark(MAX_WATERMARK),
                        }));
                    }
                    // Other upstream watermarks are ignored (A2.8).
                }
                Poll::Ready(StreamElement::Idle) => {}
                Poll::Pending => {
                    let mut out = WatermarkOutput::new(cx.now());
                    self.generator.on_periodic_emit(&mut out);
                    self.since_emit = 0;
                    self.apply(&out);
                    return Ok(match self.queued.take() {
                        Some(Queued::Watermark(w)) => Poll::Ready(StreamElement::Watermark(w)),
                        Some(Queued::Idle) => Poll::Ready(StreamElement::Idle),
                        None => Poll::Pending,
                    });
                }
                Poll::Yield => return Ok(Poll::Yield),
                Poll::Done => {
                    self.finished = true;
                    return Ok(Poll::Done);
                }
            }
        }
    }
}
