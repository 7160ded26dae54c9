//! The keyed process operator: a [`KeyedProcessFunction`] on the engine's keyed backend.
//!
//! The backend owns the keys, state, timers and times and runs the loops; this adapter builds the
//! function's contexts and collector around each callback, forwards watermarks and idleness to
//! the main and side outputs, and names the operator, shard and phase in errors. The pipeline's
//! keyed stage and the test harness drive it through the same entry points.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use pinwheel_engine::exchange::{CheckpointBarrier, Message};
use pinwheel_engine::keyed::{
    AdvanceStep, BackendSettings, BackendSnapshot, KeyContext, KeyedBackend, OperatorMetrics,
    RestoreStats, WatermarkOnRestore,
};
use pinwheel_engine::keygroup::{KeyGroup, KeyGroups};
use pinwheel_engine::time::{MAX_WATERMARK, TimeDomain, Timestamp};
use pinwheel_engine::timer::Timer;

use super::site::Names;
use crate::context::{Context, OnTimerContext, OpenContext, ShardInfo};
use crate::error::{FnError, Phase, PipelineError};
use crate::function::KeyedProcessFunction;
use crate::output::{Collector, SideOutputs, StreamElement};
use crate::pipeline::checkpoint::Coordinator;
use crate::semantics::{EndOfInputTimers, Origin, Semantics};

/// How many timers a firing loop fires before it hands its outputs on (a burst of ten million
/// timers at one watermark streams out in chunks rather than filling a buffer).
pub(crate) const ADVANCE_CHUNK: usize = 1024;

/// The input of a keyed operator: what the exchange's router delivers.
pub(crate) type KeyedInput<F> =
    VecDeque<Message<<F as KeyedProcessFunction>::Key, <F as KeyedProcessFunction>::In>>;

/// A keyed process function at work on one shard; see the [module docs](self).
pub(crate) struct KeyedOperator<F: KeyedProcessFunction> {
    backend: KeyedBackend<F::Key>,
    function: F,
    side: SideOutputs,
    semantics: Semantics,
    names: Names,
    /// The input has ended: the end completes once the final advance has fired its timers.
    ending: bool,
    finished: bool,
    /// Where snapshots go at checkpoint barriers, and the operator's id in checkpoints.
    checkpoints: Option<(Arc<Coordinator>, Arc<str>)>,
}

impl<F: KeyedProcessFunction> std::fmt::Debug for KeyedOperator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedOperator")
            .field("name", &self.names.name)
            .field("shard", &self.names.shard)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl<F: KeyedProcessFunction> KeyedOperator<F> {
    /// Builds the operator and runs the function's `open`.
    pub(crate) fn new(
        mut function: F,
        name: Arc<str>,
        shard: ShardInfo,
        semantics: Semantics,
        processing_time: Timestamp,
        max_keys: usize,
    ) -> Result<Self, PipelineError> {
        let names = Names::register(name, shard.index);
        let settings = BackendSettings::default()
            .max_timer_refires(semantics.max_timer_refires)
            .max_keys(max_keys);
        let mut backend = KeyedBackend::new(settings, processing_time);
        names.site.enter(Phase::Open);
        let mut ctx =
            OpenContext { registry: Some(backend.state_registry()), shard, operator: &names.name };
        function.open(&mut ctx).map_err(|e| names.function(Phase::Open, e))?;
        Ok(KeyedOperator {
            backend,
            function,
            side: SideOutputs::default(),
            semantics,
            names,
            ending: false,
            finished: false,
            checkpoints: None,
        })
    }

    /// Processes the messages of `input` in order, popping each (records through the backend's
    /// batch prefetch pipeline), until `input` is empty, or a watermark's timers do not all fire
    /// within one chunk: then the advance is left in progress ([`is_advancing`](Self::is_advancing))
    /// and the rest of `input` waits for [`continue_advance`](Self::continue_advance) to complete it.
    pub(crate) fn process(
        &mut self,
        input: &mut KeyedInput<F>,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        debug_assert!(!self.backend.is_advancing(), "input during an advance");
        let KeyedOperator {
            backend,
            function,
            side,
            semantics,
            names,
            ending,
            finished,
            checkpoints,
        } = self;
        names.site.enter(Phase::ProcessElement);
        // Whether it stopped early shows in `is_advancing` and `is_finished`.
        let _stopped = backend.drive(
            input,
            Message::record_hash,
            |backend, message| -> Result<_, PipelineError> {
                match message {
                    Message::Record(r) => {
                        let ts = r.timestamp;
                        let value = r.value;
                        backend
                            .enter(r.key, r.hash, r.key_group, ts, |key| {
                                let mut ctx = Context::new(
                                    key,
                                    ts,
                                    Origin::Element,
                                    semantics.side_output_timestamps,
                                    side,
                                );
                                let mut collector = Collector::new(out, ts);
                                function.process_element(value, &mut ctx, &mut collector)
                            })
                            .map_err(|e| names.capacity(e))?
                            .map_err(|e| names.function(Phase::ProcessElement, e))?;
                    }
                    Message::Watermark(w) => {
                        let started = backend.begin_watermark(w);
                        if started
                            && !advance(
                                backend,
                                function,
                                side,
                                semantics,
                                names,
                                out,
                                ADVANCE_CHUNK,
                            )?
                        {
                            return Ok(ControlFlow::Break(()));
                        }
                        // Back from the timers' user code.
                        names.site.enter(Phase::ProcessElement);
                    }
                    Message::Idle => {
                        out.push(StreamElement::Idle);
                        side.push_idle();
                    }
                    Message::End => {
                        *ending = true;
                        // Due processing-time timers first, then the final watermark; the end
                        // completes once its timers have fired.
                        backend.begin_processing_time(backend.processing_time());
                        while !advance(
                            backend,
                            function,
                            side,
                            semantics,
                            names,
                            out,
                            ADVANCE_CHUNK,
                        )? {}
                        if backend.watermark() < MAX_WATERMARK
                            && backend.begin_watermark(MAX_WATERMARK)
                            && !advance(
                                backend,
                                function,
                                side,
                                semantics,
                                names,
                                out,
                                ADVANCE_CHUNK,
                            )?
                        {
                            return Ok(ControlFlow::Break(()));
                        }
                        finish(backend, function, semantics, names, side, out)?;
                        *finished = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    // The router has aligned the barrier: everything before it on every channel
                    // is in the state, nothing after it. No advance is in progress here (an
                    // advance stops the input until it completes).
                    Message::Barrier(b) => {
                        on_barrier(backend, checkpoints.as_ref(), names, b, side, out)?;
                    }
                    // `Message` is non-exhaustive in the engine; there is nothing else to receive.
                    _ => {}
                }
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(())
    }

    /// Moves processing time to `now` (never backwards) and starts firing the processing-time
    /// timers due then, if any (continue with [`continue_advance`](Self::continue_advance)).
    pub(crate) fn begin_processing_time(&mut self, now: Timestamp) {
        self.backend.begin_processing_time(now);
    }

    /// Fires up to `budget` timers of the advance in progress; returns true when no advance is
    /// left (an event-time advance has then forwarded its watermark; the final one of an ending
    /// operator has then finished it).
    pub(crate) fn continue_advance(
        &mut self,
        budget: usize,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<bool, PipelineError> {
        let KeyedOperator { backend, function, side, semantics, names, ending, finished, .. } =
            self;
        if !advance(backend, function, side, semantics, names, out, budget)? {
            return Ok(false);
        }
        if *ending && !*finished && backend.watermark() == MAX_WATERMARK {
            finish(backend, function, semantics, names, side, out)?;
            *finished = true;
        }
        Ok(true)
    }

    /// True while an advance has timers left to fire.
    pub(crate) fn is_advancing(&self) -> bool {
        self.backend.is_advancing()
    }

    /// True once the input has ended and `close` has run.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The backend: keys, state, timers, times and counters.
    pub(crate) fn backend(&self) -> &KeyedBackend<F::Key> {
        &self.backend
    }

    /// The counters.
    pub(crate) fn metrics(&self) -> &OperatorMetrics {
        self.backend.metrics()
    }

    /// The side outputs' buffers.
    pub(crate) fn side_outputs(&mut self) -> &mut SideOutputs {
        &mut self.side
    }

    /// The user function.
    pub(crate) fn function(&self) -> &F {
        &self.function
    }

    /// A snapshot of the operator's keyed state and timers, by key group (between inputs).
    pub(crate) fn snapshot(&mut self) -> Result<BackendSnapshot, PipelineError> {
        self.backend.snapshot().map_err(|e| self.names.snapshot(e))
    }

    /// Sends this operator's snapshots to `coordinator` at every checkpoint barrier, under `id`.
    pub(crate) fn checkpoint_to(&mut self, coordinator: Arc<Coordinator>, id: Arc<str>) {
        self.checkpoints = Some((coordinator, id));
    }

    /// Restores the key groups `owns` selects from `snapshots` into this operator, which has
    /// opened but seen no input.
    pub(crate) fn restore(
        &mut self,
        snapshots: &[Vec<u8>],
        key_groups: &KeyGroups,
        owns: impl Fn(KeyGroup) -> bool,
        watermark: WatermarkOnRestore,
    ) -> Result<RestoreStats, PipelineError> {
        self.backend
            .restore_encoded(snapshots.iter().map(Vec::as_slice), key_groups, owns, watermark)
            .map_err(|e| self.names.snapshot(e))
    }
}

/// At an aligned barrier: the snapshot goes to the coordinator (with checkpoints on), the barrier
/// to the main and side outputs. Out of line: rare, and kept out of the record loop's code.
#[cold]
#[inline(never)]
fn on_barrier<K: pinwheel_engine::key::Key + Send + Sync, O>(
    backend: &mut KeyedBackend<K>,
    checkpoints: Option<&(Arc<Coordinator>, Arc<str>)>,
    names: &Names,
    b: CheckpointBarrier,
    side: &mut SideOutputs,
    out: &mut Vec<StreamElement<O>>,
) -> Result<(), PipelineError> {
    if let Some((coordinator, id)) = checkpoints {
        let started = Instant::now();
        let frozen = backend.freeze().map_err(|e| names.snapshot(e))?;
        coordinator.keyed_frozen(b.id, names.shard, id, Box::new(frozen), started);
    }
    out.push(StreamElement::Barrier(b));
    side.push_barrier(b);
    Ok(())
}

/// Continues the backend's advance for up to `budget` timers; returns true once it is complete
/// (an event-time advance has then forwarded its watermark to the main and side outputs).
fn advance<F: KeyedProcessFunction>(
    backend: &mut KeyedBackend<F::Key>,
    function: &mut F,
    side: &mut SideOutputs,
    semantics: &Semantics,
    names: &Names,
    out: &mut Vec<StreamElement<F::Out>>,
    budget: usize,
) -> Result<bool, PipelineError> {
    if let Some(domain) = backend.advancing() {
        names.site.enter(Phase::OnTimer(domain));
    }
    let step = backend
        .continue_advance(budget, |key, timer, domain| {
            on_timer(function, side, semantics, out, key, timer, domain)
        })
        .map_err(|e| names.fire(e))?;
    Ok(match step {
        AdvanceStep::InProgress => false,
        AdvanceStep::Complete { watermark } => {
            if let Some(w) = watermark {
                out.push(StreamElement::Watermark(w));
                side.push_watermark(w);
            }
            true
        }
    })
}

/// Calls the function's `on_timer` for `timer`.
#[inline]
fn on_timer<F: KeyedProcessFunction>(
    function: &mut F,
    side: &mut SideOutputs,
    semantics: &Semantics,
    out: &mut Vec<StreamElement<F::Out>>,
    key: KeyContext<'_, F::Key>,
    timer: Timer,
    domain: TimeDomain,
) -> Result<(), (TimeDomain, FnError)> {
    // The main output's timestamp (A1.13): the timer's in event time, none in processing time.
    let out_ts = match domain {
        TimeDomain::EventTime => Some(timer.timestamp),
        TimeDomain::ProcessingTime => None,
    };
    let ctx = Context::new(
        key,
        Some(timer.timestamp),
        Origin::Timer(domain),
        semantics.side_output_timestamps,
        side,
    );
    let mut ctx = OnTimerContext::new(ctx, domain);
    let mut collector = Collector::new(out, out_ts);
    function.on_timer(timer.timestamp, &mut ctx, &mut collector).map_err(|e| (domain, e))
}

/// The end of input, once the final watermark has fired every event-time timer: the backend's end
/// (processing-time timers dropped or fired as the semantics say), then `close`.
fn finish<F: KeyedProcessFunction>(
    backend: &mut KeyedBackend<F::Key>,
    function: &mut F,
    semantics: &Semantics,
    names: &Names,
    side: &mut SideOutputs,
    out: &mut Vec<StreamElement<F::Out>>,
) -> Result<(), PipelineError> {
    let fire = semantics.end_of_input_timers == EndOfInputTimers::Fire;
    names.site.enter(Phase::OnTimer(TimeDomain::ProcessingTime));
    backend
        .finish(fire, |key, timer, domain| {
            on_timer(function, side, semantics, out, key, timer, domain)
        })
        .map_err(|e| names.fire(e))?;
    names.site.enter(Phase::Close);
    function.close().map_err(|e| names.function(Phase::Close, e))
}
