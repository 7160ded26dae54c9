//! Process stages: a keyed process function behind its exchange, and a non-keyed process
//! function on its upstream.

use std::fmt;
use std::sync::Arc;

use pinwheel_engine::key::Key;
use pinwheel_engine::shard::Turn;

use super::build::BuildContext;
use super::exchange::Exchange;
use super::side::{SideCallbacks, SideOutputSource, SideTaps};
use super::stage::{Stage, StagePlan, Status};
use crate::error::{ConfigError, PipelineError};
use crate::function::{KeyedProcessFunction, ProcessFunction};
use crate::operator::{ADVANCE_CHUNK, KeyedOperator, ProcessOperator};
use crate::output::{SideOutputs, StreamElement};

/// A keyed process function: the plan.
pub struct KeyedProcessPlan<P, KS, FF> {
    pub(crate) upstream: P,
    pub(crate) exchange_id: u64,
    pub(crate) key_selector: Arc<KS>,
    pub(crate) factory: Arc<FF>,
    pub(crate) name: Arc<str>,
    pub(crate) side: SideCallbacks,
}

impl<P: fmt::Debug, KS, FF> fmt::Debug for KeyedProcessPlan<P, KS, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedProcessPlan")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// A keyed process function: the running stage.
pub struct KeyedProcessStage<S: Stage, KS, F: KeyedProcessFunction> {
    input: Exchange<S, KS, F::Key>,
    op: KeyedOperator<F>,
    taps: SideTaps,
}

impl<S: Stage, KS, F: KeyedProcessFunction> fmt::Debug for KeyedProcessStage<S, KS, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedProcessStage").field("operator", &self.op).finish_non_exhaustive()
    }
}

impl<P, KS, FF, F> StagePlan for KeyedProcessPlan<P, KS, FF>
where
    P: StagePlan,
    P::Item: Send,
    KS: Fn(&P::Item) -> F::Key + Send + Sync + 'static,
    FF: Fn() -> F + Send + Sync + 'static,
    F: KeyedProcessFunction<In = P::Item>,
    F::Key: Send,
{
    type Item = F::Out;
    type Stage = KeyedProcessStage<P::Stage, KS, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        let before = cx.exchanges_built.get();
        let upstream = self.upstream.build(cx)?;
        // Watermark alignment holds back a source partition that runs ahead; it applies to the
        // exchange right after the sources only. Downstream, the watermarks are already aligned,
        // and holding a shard's input back there would stop it draining the rings of the
        // exchanges before it, which the other shards wait on: a deadlock.
        let after_source = cx.exchanges_built.get() == before;
        // Its place among the keyed operators the shard builds: with its name, its id in
        // checkpoints.
        let place = cx.exchanges_built.get();
        cx.exchanges_built.set(place + 1);
        let input =
            Exchange::new(upstream, self.key_selector.clone(), self.exchange_id, after_source, cx)?;
        let mut op = KeyedOperator::new(
            (self.factory)(),
            self.name.clone(),
            cx.shard,
            cx.semantics,
            cx.start_time,
            cx.max_keys_per_shard,
        )?;
        if let Some(c) = &cx.checkpoints {
            let id: Arc<str> = format!("{place}/{}", self.name).into();
            if let Some(snapshots) = c.restored_keyed(&id) {
                let range = c
                    .key_groups()
                    .range_for_shard(cx.shard.index, cx.shard.count)
                    .map_err(ConfigError::from)?;
                op.restore(
                    snapshots,
                    c.key_groups(),
                    |kg| range.contains(kg),
                    c.watermark_on_restore(),
                )?;
            }
            op.checkpoint_to(c.clone(), id);
        }
        Ok(KeyedProcessStage { input, op, taps: self.side.build() })
    }
}

impl<S, KS, F> Stage for KeyedProcessStage<S, KS, F>
where
    S: Stage<Item = F::In>,
    S::Item: Send + 'static,
    KS: Fn(&F::In) -> F::Key,
    F: KeyedProcessFunction,
    F::Key: Key + Send + Sync,
{
    type Item = F::Out;

    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<Status, PipelineError> {
        if self.op.is_finished() {
            // The end has been processed; the stage ends once its exchange has pushed its last
            // batches (the end of this shard's channel among them) into the other shards' rings.
            return Ok(if self.input.finish() { Status::Done } else { Status::Idle });
        }
        let status = self.step(cx, out)?;
        self.taps.drain(self.op.side_outputs());
        if let Some(t) = self.op.backend().next_processing_timer() {
            cx.wake_at(t);
        }
        if self.op.is_finished() {
            return Ok(if self.input.finish() { Status::Done } else { Status::Busy });
        }
        Ok(status)
    }
}

impl<S, KS, F> KeyedProcessStage<S, KS, F>
where
    S: Stage<Item = F::In>,
    S::Item: Send + 'static,
    KS: Fn(&F::In) -> F::Key,
    F: KeyedProcessFunction,
    F::Key: Key + Send + Sync,
{
    /// One pull: a firing loop in progress (a timer burst) goes on first, a chunk at a time; then
    /// processing time (timers due at this turn's clock reading, including those registered at or
    /// before it since, A1.6); then the input, a batch at a time; then processing time again,
    /// for the timers the batch registered at or before now.
    fn step(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<Status, PipelineError> {
        if self.op.is_advancing() && !self.op.continue_advance(ADVANCE_CHUNK, out)? {
            return Ok(Status::Busy);
        }
        if self.op.is_finished() {
            return Ok(Status::Busy);
        }
        self.op.begin_processing_time(cx.now());
        if !self.op.continue_advance(ADVANCE_CHUNK, out)? {
            return Ok(Status::Busy);
        }
        let mut status = Status::Busy;
        if self.input.ready().is_empty() {
            status = self.input.fill(cx)?;
        }
        if !self.input.ready().is_empty() {
            status = Status::Busy;
            self.op.process(self.input.ready(), out)?;
        }
        if self.op.is_advancing() || self.op.is_finished() {
            return Ok(Status::Busy);
        }
        self.op.begin_processing_time(cx.now());
        if !self.op.continue_advance(ADVANCE_CHUNK, out)? {
            return Ok(Status::Busy);
        }
        Ok(status)
    }
}

impl<S, KS, F> SideOutputSource for KeyedProcessStage<S, KS, F>
where
    S: Stage<Item = F::In>,
    S::Item: Send + 'static,
    KS: Fn(&F::In) -> F::Key,
    F: KeyedProcessFunction,
    F::Key: Key + Send + Sync,
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
    pub(crate) side: SideCallbacks,
}

impl<P: fmt::Debug, FF> fmt::Debug for ProcessPlan<P, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPlan").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A non-keyed process function: the running stage.
pub struct ProcessStage<S: Stage, F: ProcessFunction> {
    upstream: S,
    input: Vec<StreamElement<S::Item>>,
    op: ProcessOperator<F>,
    taps: SideTaps,
    done: bool,
}

impl<S: Stage, F: ProcessFunction> fmt::Debug for ProcessStage<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessStage").field("operator", &self.op).finish_non_exhaustive()
    }
}

impl<P, FF, F> StagePlan for ProcessPlan<P, FF>
where
    P: StagePlan,
    FF: Fn() -> F + Send + Sync + 'static,
    F: ProcessFunction<In = P::Item>,
{
    type Item = F::Out;
    type Stage = ProcessStage<P::Stage, F>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        let upstream = self.upstream.build(cx)?;
        let op = ProcessOperator::new(
            (self.factory)(),
            self.name.clone(),
            cx.shard,
            cx.semantics,
            cx.start_time,
        )?;
        Ok(ProcessStage { upstream, input: Vec::new(), op, taps: self.side.build(), done: false })
    }
}

impl<S, F> Stage for ProcessStage<S, F>
where
    S: Stage<Item = F::In>,
    F: ProcessFunction,
{
    type Item = F::Out;

    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<Status, PipelineError> {
        if self.done {
            return Ok(Status::Done);
        }
        self.op.advance_processing_time(cx.now());
        let status = self.upstream.pull(cx, &mut self.input)?;
        self.done = self.op.process(&mut self.input, status == Status::Done, out)?;
        self.taps.drain(self.op.side_outputs());
        Ok(if self.done { Status::Done } else { status })
    }
}

impl<S, F> SideOutputSource for ProcessStage<S, F>
where
    S: Stage<Item = F::In>,
    F: ProcessFunction,
{
    fn side_taps(&mut self) -> (&mut SideTaps, &mut SideOutputs) {
        (&mut self.taps, self.op.side_outputs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, run};
    use crate::{Collector, Context};

    /// Forwards every record.
    struct Forward;

    impl KeyedProcessFunction for Forward {
        type Key = u64;
        type In = u64;
        type Out = u64;

        fn process_element(
            &mut self,
            value: u64,
            _: &mut Context<'_, u64>,
            out: &mut Collector<'_, u64>,
        ) -> Result<(), crate::FnError> {
            out.collect(value);
            Ok(())
        }
    }

    #[test]
    fn watermark_alignment_holds_the_exchange_after_the_sources_only() {
        // A second exchange holding its shard's input back would stop that shard draining the
        // rings of the first, which the other shards wait on (a deadlock seen in about one run of
        // ten of a keyed -> keyed pipeline on two shards).
        let stream = Pipeline::new()
            .shards(2)
            .from_iter(0..10u64)
            .key_by(|v: &u64| *v)
            .process(|| Forward)
            .key_by(|v: &u64| v % 3)
            .process(|| Forward);
        let cx = run::test_context(&stream.env, 0).unwrap();
        let second = stream.plan.build(&cx).unwrap();
        let first = second.input.upstream();
        assert_eq!(first.input.max_watermark_drift(), Some(1_000), "after the source: aligned");
        assert_eq!(second.input.max_watermark_drift(), None, "after another exchange: not");
    }
}
