//! The non-keyed process operator: a [`ProcessFunction`] with its times and side outputs.

use std::sync::Arc;

use pinwheel_engine::keyed::OperatorMetrics;
use pinwheel_engine::time::{MAX_WATERMARK, MIN_WATERMARK, Timestamp};

use super::site::Names;
use crate::context::{OpenContext, ProcessContext, ShardInfo, TimerService};
use crate::error::{Phase, PipelineError};
use crate::function::ProcessFunction;
use crate::output::{Collector, SideOutputs, StreamElement};
use crate::semantics::{Origin, Semantics};

/// A non-keyed process function at work on one shard.
pub(crate) struct ProcessOperator<F: ProcessFunction> {
    function: F,
    names: Names,
    semantics: Semantics,
    side: SideOutputs,
    watermark: Timestamp,
    processing_time: Timestamp,
    finished: bool,
    metrics: OperatorMetrics,
}

impl<F: ProcessFunction> std::fmt::Debug for ProcessOperator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessOperator")
            .field("name", &self.names.name)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

impl<F: ProcessFunction> ProcessOperator<F> {
    /// Builds the operator and runs `open`.
    pub(crate) fn new(
        mut function: F,
        name: Arc<str>,
        shard: ShardInfo,
        semantics: Semantics,
        processing_time: Timestamp,
    ) -> Result<Self, PipelineError> {
        let names = Names::register(name, shard.index);
        names.site.enter(Phase::Open);
        let mut ctx = OpenContext { registry: None, shard, operator: &names.name };
        function.open(&mut ctx).map_err(|e| names.function(Phase::Open, e))?;
        Ok(ProcessOperator {
            function,
            names,
            semantics,
            side: SideOutputs::default(),
            watermark: MIN_WATERMARK,
            processing_time,
            finished: false,
            metrics: OperatorMetrics::default(),
        })
    }

    /// Processes the elements of `input` in order (draining it). Returns true once the end of
    /// input has been processed (`close` has run); `done` says whether the input ended after these
    /// elements.
    pub(crate) fn process(
        &mut self,
        input: &mut Vec<StreamElement<F::In>>,
        done: bool,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<bool, PipelineError> {
        self.names.site.enter(Phase::ProcessElement);
        for e in input.drain(..) {
            match e {
                StreamElement::Record { value, timestamp } => {
                    self.process_element(value, timestamp, out)?;
                }
                StreamElement::Watermark(w) => {
                    self.process_watermark(w, out);
                }
                StreamElement::Idle => self.process_idle(out),
                // A non-keyed process function has no checkpointed state: the barrier passes.
                StreamElement::Barrier(b) => {
                    out.push(StreamElement::Barrier(b));
                    self.side.push_barrier(b);
                }
            }
        }
        if done {
            self.end_of_input(out)?;
        }
        Ok(self.finished)
    }

    /// Processes one element.
    #[inline]
    pub(crate) fn process_element(
        &mut self,
        value: F::In,
        timestamp: Option<Timestamp>,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        self.metrics.records_in += 1;
        if matches!(timestamp, Some(ts) if ts <= self.watermark) {
            self.metrics.late_records += 1;
        }
        let mut ctx = ProcessContext::new(
            timestamp,
            self.semantics.side_output_timestamps.of(Origin::Element, timestamp),
            TimerService::times_only(self.watermark, self.processing_time),
            &mut self.side,
        );
        let mut collector = Collector::new(out, timestamp);
        let r = self.function.process_element(value, &mut ctx, &mut collector);
        r.map_err(|e| self.names.function(Phase::ProcessElement, e))
    }

    /// Forwards a watermark if it advances this operator's watermark.
    pub(crate) fn process_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> bool {
        if watermark <= self.watermark {
            self.metrics.watermarks_dropped += 1;
            return false;
        }
        self.watermark = watermark;
        out.push(StreamElement::Watermark(watermark));
        self.side.push_watermark(watermark);
        true
    }

    /// Forwards an idle status.
    pub(crate) fn process_idle(&mut self, out: &mut Vec<StreamElement<F::Out>>) {
        out.push(StreamElement::Idle);
        self.side.push_idle();
    }

    /// Moves processing time forward.
    pub(crate) fn advance_processing_time(&mut self, now: Timestamp) {
        self.processing_time = self.processing_time.max(now);
    }

    /// Ends the input: forwards `i64::MAX` and runs `close`. Later calls do nothing.
    pub(crate) fn end_of_input(
        &mut self,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        if self.finished {
            return Ok(());
        }
        if self.watermark < MAX_WATERMARK {
            self.process_watermark(MAX_WATERMARK, out);
        }
        self.finished = true;
        self.names.site.enter(Phase::Close);
        let r = self.function.close();
        r.map_err(|e| self.names.function(Phase::Close, e))
    }

    /// The counters.
    pub(crate) fn metrics(&self) -> &OperatorMetrics {
        &self.metrics
    }

    /// The side outputs' buffers.
    pub(crate) fn side_outputs(&mut self) -> &mut SideOutputs {
        &mut self.side
    }
}
