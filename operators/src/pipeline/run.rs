//! Running a pipeline on its shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pinwheel_engine::keygroup::{KeyGroups, default_max_key_groups};
use pinwheel_engine::placement::ShardPlacement;
use pinwheel_engine::shard::{ShardError, run_shards};
use pinwheel_engine::time::Clock;

use super::exchange::ExchangeRegistry;
use super::sink::{Sink, catch_panics, drive};
use super::stream::{BuildContext, StreamPlan};
use crate::context::ShardInfo;
use crate::error::PipelineError;
use crate::semantics::Semantics;

/// Settings shared by every stage of a pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) semantics: Semantics,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) placement: ShardPlacement,
    pub(crate) max_key_groups: Option<u32>,
    pub(crate) ring_capacity: usize,
    pub(crate) max_watermark_drift: Option<i64>,
}

/// How far (ms of event time) a source partition may run ahead of its shard's combined watermark
/// by default; see [`Pipeline::watermark_alignment`](super::Pipeline::watermark_alignment).
pub const DEFAULT_MAX_WATERMARK_DRIFT: i64 = 1_000;

/// Messages each exchange ring holds by default.
pub const DEFAULT_RING_CAPACITY: usize = 4096;

impl Env {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Env {
            semantics: Semantics::default(),
            clock,
            placement: ShardPlacement::Unpinned(cores),
            max_key_groups: None,
            ring_capacity: DEFAULT_RING_CAPACITY,
            max_watermark_drift: Some(DEFAULT_MAX_WATERMARK_DRIFT),
        }
    }

    /// The number of shards the placement gives.
    pub(crate) fn shard_count(&self) -> Result<usize, PipelineError> {
        Ok(self.placement.plan().map_err(|e| PipelineError::Config(e.to_string()))?.shards)
    }
}

/// What a run leaves behind: each shard's sink, and the placement note.
#[derive(Debug)]
pub struct ShardedRun<S> {
    /// Each shard's sink, in shard order.
    pub sinks: Vec<S>,
    /// Where pinning degraded (cores missing), why.
    pub placement_note: Option<String>,
}

fn from_shard_error(e: ShardError) -> PipelineError {
    match e {
        ShardError::Panicked { shard, message } => PipelineError::Panicked { shard, message },
        other => PipelineError::Config(other.to_string()),
    }
}

/// Builds and drives `plan` on every shard of `env`, each shard into the sink `sink_factory`
/// makes for it. The first error stops every shard and is returned (an error other than
/// [`PipelineError::Stopped`] wins, so the cause is reported rather than its echo).
pub(crate) fn run_sharded<P, S, SF>(
    plan: &P,
    env: &Env,
    sink_factory: SF,
    stop: &AtomicBool,
) -> Result<ShardedRun<S>, PipelineError>
where
    P: StreamPlan,
    S: Sink<P::Item> + Send,
    SF: Fn(ShardInfo) -> S + Sync,
{
    let shards = env.shard_count()?;
    let max = env.max_key_groups.unwrap_or_else(|| default_max_key_groups(shards));
    let key_groups = KeyGroups::new(max).map_err(|e| PipelineError::Config(e.to_string()))?;
    if shards as u64 > u64::from(max) {
        return Err(PipelineError::Config(format!(
            "{shards} shards but only {max} key groups: every shard needs at least one"
        )));
    }
    let exchanges =
        Arc::new(ExchangeRegistry::new(shards, env.ring_capacity, env.max_watermark_drift));
    let start_time = env.clock.now();
    let run = run_shards(&env.placement, "pinwheel", |scx| {
        let shard = ShardInfo { index: scx.index, count: scx.count };
        let cx = BuildContext {
            shard,
            semantics: env.semantics,
            start_time,
            key_groups,
            exchanges: exchanges.clone(),
            shared: Default::default(),
        };
        // A panic is caught here, not only by the thread runner, so that it stops the other
        // shards too (they would otherwise wait for this shard's end-of-partition markers).
        let result = catch_panics(shard.index, || {
            let mut sink = sink_factory(shard);
            let mut stream = plan.build(&cx)?;
            drive(&mut stream, &mut sink, &*env.clock, Some(stop))?;
            Ok(sink)
        });
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
    })
    .map_err(from_shard_error)?;

    let mut sinks = Vec::with_capacity(shards);
    let mut first_error: Option<PipelineError> = None;
    for r in run.results {
        match r.map_err(from_shard_error).and_then(|r| r) {
            Ok(sink) => sinks.push(sink),
            Err(e) => {
                let replace = match (&first_error, &e) {
                    (None, _) => true,
                    (Some(PipelineError::Stopped), e) => !matches!(e, PipelineError::Stopped),
                    _ => false,
                };
                if replace {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(ShardedRun { sinks, placement_note: run.placement_note }),
    }
}
