//! Test harnesses for users' own functions, in the spirit of Flink's
//! `KeyedOneInputStreamOperatorTestHarness`.
//!
//! A harness runs the **same operator code as the engine**, through the same entry points (the
//! keyed operator on the engine's keyed backend, its batch pipeline and its chunked firing loop),
//! on the current thread, with a manual processing-time clock that moves only when the test says
//! so (no auto-advance) and event time that moves only through explicit watermarks. Outputs are
//! kept in emission order with records and watermarks interleaved, as Flink's `getOutput()` does.
//!
//! After every input call the harness does what a shard does after a callback returns: it fires
//! processing-time timers that are already due (a processing-time timer registered at or before
//! the current processing time fires "as soon as the current callback returns", docs/semantics.md
//! A1.6).
//!
//! ```
//! use pinwheel_operators::harness::KeyedHarness;
//! use pinwheel_operators::{process_fn, Collector, Context, FnError, StreamElement};
//!
//! let f = process_fn(|v: (String, i64), ctx: &mut Context<'_, String>, out: &mut Collector<'_, String>| {
//!     let ts = ctx.timestamp().unwrap_or(0);
//!     ctx.timer_service().register_event_time_timer(ts.saturating_add(10))?;
//!     out.collect(format!("E {}", v.0));
//!     Ok::<(), FnError>(())
//! })
//! .on_timer(|t, ctx, out| {
//!     out.collect(format!("T {} {t}", ctx.current_key()));
//!     Ok(())
//! });
//! let mut h = KeyedHarness::new(f, |v: &(String, i64)| v.0.clone()).unwrap();
//! h.process_element(("a".to_string(), 1), 1).unwrap();
//! h.process_watermark(11).unwrap();
//! assert_eq!(
//!     h.take_output(),
//!     vec![
//!         StreamElement::record("E a".to_string(), 1),
//!         StreamElement::record("T a 11".to_string(), 11),
//!         StreamElement::Watermark(11),
//!     ]
//! );
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use pinwheel_engine::exchange::Message;
pub use pinwheel_engine::keyed::{BackendSnapshot, WatermarkOnRestore};
use pinwheel_engine::keyed::{KeyedRecord, OperatorMetrics};
use pinwheel_engine::keygroup::{KeyGroupError, KeyGroups};
use pinwheel_engine::time::{TimeDomain, Timestamp};

use crate::context::ShardInfo;
use crate::error::{ConfigError, PipelineError};
use crate::function::{KeyedProcessFunction, ProcessFunction};
use crate::operator::{ADVANCE_CHUNK, KeyedInput, KeyedOperator, ProcessOperator};
use crate::output::{OutputTag, StreamElement};
use crate::semantics::Semantics;

/// Settings of a harness.
#[derive(Debug, Clone)]
pub struct HarnessBuilder {
    semantics: Semantics,
    processing_time: Timestamp,
    name: String,
    shard: ShardInfo,
    max_key_groups: u32,
    restore: Vec<BackendSnapshot>,
    watermark_on_restore: WatermarkOnRestore,
    max_keys_per_shard: usize,
}

impl Default for HarnessBuilder {
    fn default() -> Self {
        HarnessBuilder {
            semantics: Semantics::default(),
            processing_time: 0,
            name: "process".to_string(),
            shard: ShardInfo { index: 0, count: 1 },
            max_key_groups: 128,
            restore: Vec::new(),
            watermark_on_restore: WatermarkOnRestore::default(),
            max_keys_per_shard: usize::MAX,
        }
    }
}

impl HarnessBuilder {
    /// Semantic settings (default: [`Semantics::default`]).
    pub fn semantics(mut self, semantics: Semantics) -> Self {
        self.semantics = semantics;
        self
    }

    /// The initial processing time (default 0).
    pub fn processing_time(mut self, t: Timestamp) -> Self {
        self.processing_time = t;
        self
    }

    /// The operator's name in errors (default `process`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The number of key groups the keys are assigned to (default 128).
    pub fn max_key_groups(mut self, n: u32) -> Self {
        self.max_key_groups = n;
        self
    }

    /// The harness plays shard `index` of `count` (default: shard 0 of 1): its key-group range
    /// is that shard's, which decides what a restore takes from a snapshot, and
    /// `ShardInfo` in `open` says so.
    pub fn shard(mut self, index: usize, count: usize) -> Self {
        self.shard = ShardInfo { index, count };
        self
    }

    /// Restores the keyed state and timers of `snapshots` (taken with
    /// [`KeyedHarness::snapshot`], one per old shard, in shard order) after the function's
    /// `open`, keeping the key groups of this harness's shard ([`shard`](Self::shard)): Flink's
    /// `initializeState`. The watermark starts again at its minimum; processing-time timers
    /// already due at the harness's processing time fire as the harness is built.
    pub fn restore_from(mut self, snapshots: impl IntoIterator<Item = BackendSnapshot>) -> Self {
        self.restore.extend(snapshots);
        self
    }

    /// Where the watermark of a restored harness starts (default: at the minimum, as in Flink).
    pub fn watermark_on_restore(mut self, watermark: WatermarkOnRestore) -> Self {
        self.watermark_on_restore = watermark;
        self
    }

    /// The most live keys the operator may hold, as
    /// [`Pipeline::max_keys_per_shard`](crate::pipeline::Pipeline::max_keys_per_shard).
    pub fn max_keys_per_shard(mut self, limit: usize) -> Self {
        self.max_keys_per_shard = limit;
        self
    }

    /// Builds a keyed harness.
    pub fn keyed<F, KS>(
        self,
        function: F,
        key_selector: KS,
    ) -> Result<KeyedHarness<F, KS>, PipelineError>
    where
        F: KeyedProcessFunction,
        KS: FnMut(&F::In) -> F::Key,
    {
        let key_groups = KeyGroups::new(self.max_key_groups)
            .map_err(|e: KeyGroupError| PipelineError::from(ConfigError::from(e)))?;
        let mut op = KeyedOperator::new(
            function,
            Arc::from(self.name),
            self.shard,
            self.semantics,
            self.processing_time,
            self.max_keys_per_shard,
        )?;
        let restoring = !self.restore.is_empty();
        if restoring {
            let range = key_groups
                .range_for_shard(self.shard.index, self.shard.count)
                .map_err(|e| PipelineError::from(ConfigError::from(e)))?;
            let encoded: Vec<Vec<u8>> =
                self.restore.iter().map(BackendSnapshot::to_bytes).collect();
            op.restore(&encoded, &key_groups, |g| range.contains(g), self.watermark_on_restore)?;
        }
        let mut harness = KeyedHarness {
            op,
            key_selector,
            key_groups,
            input: VecDeque::new(),
            output: Vec::new(),
        };
        if restoring {
            harness.after_callback()?;
        }
        Ok(harness)
    }

    /// Builds a non-keyed harness.
    pub fn non_keyed<F: ProcessFunction>(self, function: F) -> Result<Harness<F>, PipelineError> {
        let op = ProcessOperator::new(
            function,
            Arc::from(self.name),
            self.shard,
            self.semantics,
            self.processing_time,
        )?;
        Ok(Harness { op, output: Vec::new() })
    }
}

/// A harness for a [`KeyedProcessFunction`]; see the [module docs](self).
pub struct KeyedHarness<F: KeyedProcessFunction, KS> {
    op: KeyedOperator<F>,
    key_selector: KS,
    key_groups: KeyGroups,
    /// The operator's input: one message at a time.
    input: KeyedInput<F>,
    output: Vec<StreamElement<F::Out>>,
}

impl<F: KeyedProcessFunction, KS> fmt::Debug for KeyedHarness<F, KS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHarness").field("operator", &self.op).finish_non_exhaustive()
    }
}

impl<F, KS> KeyedHarness<F, KS>
where
    F: KeyedProcessFunction,
    KS: FnMut(&F::In) -> F::Key,
{
    /// A harness with default settings; `open` has run.
    pub fn new(function: F, key_selector: KS) -> Result<Self, PipelineError> {
        HarnessBuilder::default().keyed(function, key_selector)
    }

    /// Settings for a harness.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// Hands `message` to the operator and fires what it starts, to the end (the pipeline does
    /// the same, a chunk of timers at a time).
    fn deliver(&mut self, message: Message<F::Key, F::In>) -> Result<(), PipelineError> {
        self.input.push_back(message);
        self.op.process(&mut self.input, &mut self.output)?;
        self.complete_advance()
    }

    fn complete_advance(&mut self) -> Result<(), PipelineError> {
        while !self.op.continue_advance(ADVANCE_CHUNK, &mut self.output)? {}
        Ok(())
    }

    /// What a shard does after a callback: fires the processing-time timers already due.
    fn after_callback(&mut self) -> Result<(), PipelineError> {
        let now = self.op.backend().processing_time();
        self.set_processing_time(now)
    }

    /// Processes an element with a timestamp (`h.process_element(v, 5)`) or without one
    /// (`h.process_element(v, None)`).
    pub fn process_element(
        &mut self,
        value: F::In,
        timestamp: impl Into<Option<Timestamp>>,
    ) -> Result<(), PipelineError> {
        let key = (self.key_selector)(&value);
        let record = KeyedRecord::new(key, value, timestamp.into(), &self.key_groups);
        self.deliver(Message::Record(record))?;
        self.after_callback()
    }

    /// Processes a watermark: fires event-time timers `<= watermark`, then forwards it. A watermark
    /// that does not advance is dropped (and counted), as at an operator input.
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<(), PipelineError> {
        self.deliver(Message::Watermark(watermark))?;
        self.after_callback()
    }

    /// Marks the input idle: an idle status is forwarded.
    pub fn mark_idle(&mut self) {
        self.input.push_back(Message::Idle);
        // An idle marker runs no user code: it cannot fail.
        let _ = self.op.process(&mut self.input, &mut self.output);
    }

    /// Sets processing time (never backwards) and fires processing-time timers `<= t`.
    pub fn set_processing_time(&mut self, t: Timestamp) -> Result<(), PipelineError> {
        self.op.begin_processing_time(t);
        self.complete_advance()
    }

    /// Moves processing time forward by `delta` milliseconds.
    pub fn advance_processing_time(&mut self, delta: i64) -> Result<(), PipelineError> {
        let t = self.op.backend().processing_time().saturating_add(delta);
        self.set_processing_time(t)
    }

    /// Ends the input: the final watermark, the end-of-input processing-time rule, `close`.
    /// Later calls do nothing.
    pub fn end_input(&mut self) -> Result<(), PipelineError> {
        if self.op.is_finished() {
            return Ok(());
        }
        self.deliver(Message::End)
    }

    /// A snapshot of the function's keyed state and pending timers, by key group: what a
    /// checkpoint stores for this operator. Restore it with [`HarnessBuilder::restore_from`]
    /// (with the same shard count or another) to test how the function recovers.
    pub fn snapshot(&mut self) -> Result<BackendSnapshot, PipelineError> {
        self.op.snapshot()
    }

    /// Everything emitted on the main output since the last `take_output`, in emission order.
    pub fn take_output(&mut self) -> Vec<StreamElement<F::Out>> {
        std::mem::take(&mut self.output)
    }

    /// The main output so far (not taken).
    pub fn output(&self) -> &[StreamElement<F::Out>] {
        &self.output
    }

    /// The values of the records on the main output so far.
    pub fn output_values(&self) -> Vec<&F::Out> {
        self.output.iter().filter_map(StreamElement::value).collect()
    }

    /// Takes everything emitted on the side output `tag`.
    pub fn take_side_output<T: 'static>(&mut self, tag: &OutputTag<T>) -> Vec<StreamElement<T>> {
        self.op.side_outputs().take(tag)
    }

    /// Declares the side output `tag`, so that it receives every watermark and idle status from
    /// now on, even before its first record (docs/semantics.md A2.10: in a Flink job every side-output edge
    /// exists from the start). A side output that is not declared exists from its first record.
    pub fn declare_side_output<T: 'static>(&mut self, tag: &OutputTag<T>) {
        self.op.side_outputs().declare(tag);
    }

    /// Pending event-time timers, all keys.
    pub fn num_event_time_timers(&self) -> usize {
        self.op.backend().num_timers(TimeDomain::EventTime)
    }

    /// Pending processing-time timers, all keys.
    pub fn num_processing_time_timers(&self) -> usize {
        self.op.backend().num_timers(TimeDomain::ProcessingTime)
    }

    /// (state, key) pairs holding a value.
    pub fn num_keyed_state_entries(&self) -> usize {
        self.op.backend().num_state_entries()
    }

    /// Distinct keys seen.
    pub fn num_keys(&self) -> usize {
        self.op.backend().num_keys()
    }

    /// The pending timers of `key` in `domain`, ascending.
    pub fn registered_timers(&self, key: &F::Key, domain: TimeDomain) -> Vec<Timestamp> {
        self.op.backend().timers_of(key, domain)
    }

    /// The operator's watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.op.backend().watermark()
    }

    /// The operator's processing time.
    pub fn current_processing_time(&self) -> Timestamp {
        self.op.backend().processing_time()
    }

    /// The operator's counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        self.op.metrics()
    }

    /// Approximate heap bytes held by the operator's keys, timers and state.
    pub fn memory_bytes(&self) -> usize {
        self.op.backend().memory_bytes()
    }

    /// The user function.
    pub fn function(&self) -> &F {
        self.op.function()
    }
}

/// A harness for a non-keyed [`ProcessFunction`].
pub struct Harness<F: ProcessFunction> {
    op: ProcessOperator<F>,
    output: Vec<StreamElement<F::Out>>,
}

impl<F: ProcessFunction> fmt::Debug for Harness<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness").field("operator", &self.op).finish_non_exhaustive()
    }
}

impl<F: ProcessFunction> Harness<F> {
    /// A harness with default settings; `open` has run.
    pub fn new(function: F) -> Result<Self, PipelineError> {
        HarnessBuilder::default().non_keyed(function)
    }

    /// Processes an element with or without a timestamp.
    pub fn process_element(
        &mut self,
        value: F::In,
        timestamp: impl Into<Option<Timestamp>>,
    ) -> Result<(), PipelineError> {
        self.op.process_element(value, timestamp.into(), &mut self.output)
    }

    /// Processes a watermark.
    pub fn process_watermark(&mut self, watermark: Timestamp) {
        self.op.process_watermark(watermark, &mut self.output);
    }

    /// Sets processing time (never backwards).
    pub fn set_processing_time(&mut self, t: Timestamp) {
        self.op.advance_processing_time(t);
    }

    /// Ends the input.
    pub fn end_input(&mut self) -> Result<(), PipelineError> {
        self.op.end_of_input(&mut self.output)
    }

    /// Takes the main output.
    pub fn take_output(&mut self) -> Vec<StreamElement<F::Out>> {
        std::mem::take(&mut self.output)
    }

    /// Takes a side output.
    pub fn take_side_output<T: 'static>(&mut self, tag: &OutputTag<T>) -> Vec<StreamElement<T>> {
        self.op.side_outputs().take(tag)
    }

    /// Declares the side output `tag`, so that it receives every watermark from now on; see
    /// [`KeyedHarness::declare_side_output`].
    pub fn declare_side_output<T: 'static>(&mut self, tag: &OutputTag<T>) {
        self.op.side_outputs().declare(tag);
    }

    /// The operator's counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        self.op.metrics()
    }
}
