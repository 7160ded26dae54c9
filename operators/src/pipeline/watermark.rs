//! Timestamp assignment and watermark generation (Flink's `WatermarkStrategy` and
//! `TimestampsAndWatermarksOperator`, docs/semantics.md A2.8).
//!
//! * Each record is emitted **before** the generator sees it, so a watermark it causes follows it.
//! * Only strictly increasing watermarks are emitted.
//! * Upstream watermarks are ignored, except the final `i64::MAX`, which is forwarded; upstream
//!   idle markers are swallowed.
//! * "Periodic" emission happens every [`WatermarkStrategy::with_emit_interval`] records (default
//!   [`DEFAULT_EMIT_INTERVAL`]) and whenever the source has nothing more to give for now. Flink emits
//!   every 200 ms of processing time instead; counting records keeps the watermark close behind the
//!   data at any rate, which is what timers want, at the cost of a timer-wheel advance per interval.
//!   While the source has nothing, the stage asks to be looked at again every
//!   [`IDLE_EMIT_INTERVAL_MS`] of processing time, so that generators that act on the passing of
//!   processing time ([`WatermarkStrategy::with_idleness`]) do so on a parked shard.

use std::sync::Arc;

use pinwheel_engine::shard::Turn;
use pinwheel_engine::time::{MAX_WATERMARK, MIN_WATERMARK, Timestamp};

use super::build::BuildContext;
use super::stage::{Stage, StagePlan, Status};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Records between two periodic watermark emissions by default.
pub const DEFAULT_EMIT_INTERVAL: u32 = 256;

/// While its source has nothing, a watermark stage calls its generator's periodic emission at
/// least this often (ms of processing time): Flink's default `autoWatermarkInterval`.
pub const IDLE_EMIT_INTERVAL_MS: i64 = 200;

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

impl WatermarkOutput {
    /// Forgets what was emitted into it (the stage reuses one output for a batch).
    #[inline]
    fn reset(&mut self) {
        self.watermark = None;
        self.idle = false;
        self.active = false;
    }
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
/// use pinwheel_operators::pipeline::WatermarkStrategy;
/// let s = WatermarkStrategy::for_bounded_out_of_orderness(0)
///     .with_timestamp_assigner(|e: &(u64, i64), _| e.1)
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

    /// Calls the generator's periodic emission every `records` records (at least 1; default 256).
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

/// Timestamps and watermarks: the running stage. It works on the upstream's batch in place:
/// records get their timestamps where they are, a watermark is inserted after the record that
/// caused it, upstream watermarks and idle markers are taken out.
#[derive(Debug)]
pub struct WatermarksStage<S: Stage, G, A> {
    upstream: S,
    /// The watermarks (and idle markers) to insert into the batch: after which element.
    inserts: Vec<(usize, StreamElement<S::Item>)>,
    generator: G,
    strategy: Arc<WatermarkStrategy<G, A>>,
    emit: Emitter,
    finished: bool,
}

/// What has been emitted, and when the next periodic emission is due.
#[derive(Debug)]
struct Emitter {
    since_emit: u32,
    emitted: Timestamp,
    idle: bool,
}

impl Emitter {
    /// What a generator's decision calls for: a watermark larger than every one before, or else
    /// the start of idleness.
    #[inline]
    fn apply<T>(&mut self, decided: &WatermarkOutput) -> Option<StreamElement<T>> {
        if let Some(w) = decided.watermark {
            if w > self.emitted {
                self.emitted = w;
                self.idle = false;
                return Some(StreamElement::Watermark(w));
            }
        }
        if decided.idle && !self.idle {
            self.idle = true;
            return Some(StreamElement::Idle);
        }
        None
    }
}

impl<P, G, A> StagePlan for WatermarksPlan<P, G, A>
where
    P: StagePlan,
    G: WatermarkGenerator<P::Item> + Clone + Send + Sync + 'static,
    A: TimestampAssigner<P::Item> + Send + Sync + 'static,
{
    type Item = P::Item;
    type Stage = WatermarksStage<P::Stage, G, A>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        Ok(WatermarksStage {
            upstream: self.upstream.build(cx)?,
            inserts: Vec::new(),
            generator: self.strategy.generator.clone(),
            strategy: self.strategy.clone(),
            emit: Emitter { since_emit: 0, emitted: MIN_WATERMARK, idle: false },
            finished: false,
        })
    }
}

impl<S, G, A> Stage for WatermarksStage<S, G, A>
where
    S: Stage,
    G: WatermarkGenerator<S::Item>,
    A: TimestampAssigner<S::Item>,
{
    type Item = S::Item;

    #[inline]
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<S::Item>>,
    ) -> Result<Status, PipelineError> {
        if self.finished {
            return Ok(Status::Done);
        }
        let start = out.len();
        let status = self.upstream.pull(cx, out)?;
        let WatermarksStage { generator, strategy, emit, inserts, .. } = self;
        let interval = strategy.emit_interval;
        let mut decided = WatermarkOutput::new(cx.now());
        // One pass over the batch, in place: records get their timestamps; what must go in
        // between (a watermark after the record that caused it) is noted, and so is whether any
        // upstream marker must go.
        let mut drop_markers = false;
        // Where the upstream's final watermark is, if it is forwarded from this batch.
        let mut final_at = None;
        for (i, e) in out[start..].iter_mut().enumerate() {
            match e {
                StreamElement::Record { value, timestamp } => {
                    // The record goes out before the generator sees it, so a watermark it causes
                    // follows it.
                    let ts = strategy.assigner.assign(value, *timestamp);
                    *timestamp = Some(ts);
                    decided.reset();
                    generator.on_event(value, ts, &mut decided);
                    emit.since_emit += 1;
                    if emit.since_emit >= interval {
                        emit.since_emit = 0;
                        generator.on_periodic_emit(&mut decided);
                    }
                    // A record ends idleness downstream by itself.
                    emit.idle = false;
                    if let Some(e) = emit.apply(&decided) {
                        inserts.push((start + i + 1, e));
                    }
                }
                StreamElement::Watermark(w)
                    if *w == MAX_WATERMARK && emit.emitted < MAX_WATERMARK =>
                {
                    // One last periodic emission, then MAX. (Flink calls onPeriodicEmit once more
                    // in finish(), but that runs after MAX has gone through, so there it emits
                    // nothing; here the last watermark the data justifies goes out before the end
                    // of event time, like any emission when the source has nothing more to give.)
                    decided.reset();
                    generator.on_periodic_emit(&mut decided);
                    if let Some(v) = decided.watermark.filter(|&v| v > emit.emitted) {
                        inserts.push((start + i, StreamElement::Watermark(v)));
                    }
                    emit.emitted = MAX_WATERMARK;
                    emit.idle = false;
                    final_at = Some(start + i);
                }
                // Other upstream watermarks are ignored (A2.8), and upstream idleness swallowed.
                StreamElement::Watermark(_) | StreamElement::Idle => drop_markers = true,
                // Barriers pass in place.
                StreamElement::Barrier(_) => {}
            }
        }
        if drop_markers {
            // Rare (sources with watermarks of their own): mark the dropped ones, shifting the
            // insert positions past them.
            let mut kept = start;
            let mut next_insert = 0;
            for i in start..out.len() {
                while next_insert < inserts.len() && inserts[next_insert].0 == i {
                    inserts[next_insert].0 = kept;
                    next_insert += 1;
                }
                let keep =
                    matches!(out[i], StreamElement::Record { .. } | StreamElement::Barrier(_))
                        || final_at == Some(i);
                if keep {
                    out.swap(kept, i);
                    kept += 1;
                }
            }
            for insert in &mut inserts[next_insert..] {
                insert.0 = kept;
            }
            out.truncate(kept);
        }
        // Watermarks go in from the back, so the positions noted stay right.
        while let Some((at, e)) = inserts.pop() {
            out.insert(at, e);
        }
        match status {
            Status::Idle => {
                // The source has nothing for now: a periodic emission.
                decided.reset();
                generator.on_periodic_emit(&mut decided);
                emit.since_emit = 0;
                if let Some(e) = emit.apply(&decided) {
                    out.push(e);
                }
                cx.wake_at(cx.now().saturating_add(IDLE_EMIT_INTERVAL_MS));
            }
            Status::Done => self.finished = true,
            Status::Busy => {}
        }
        Ok(status)
    }
}
