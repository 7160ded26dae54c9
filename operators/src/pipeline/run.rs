//! Running a job on its shards: on threads of their own, or on the calling thread.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pinwheel_engine::exchange::Exchanges;
use pinwheel_engine::keygroup::{KeyGroups, default_max_key_groups};
use pinwheel_engine::shard::{
    DriveError, ShardError, ShardWaker, Task, drive, panic_message, run_shards,
};
use pinwheel_engine::time::Timestamp;

use super::build::{BuildContext, SharedStages};
use super::builder::Env;
use super::checkpoint::{CheckpointStats, Coordinator};
use super::job::{AnySink, JobPlan, JobRun, RootStage, RootTask};
use super::restart::{RestartPolicy, Restarts, recoverable};
use super::savepoint::Savepoints;
use super::sink::Sink;
use super::stage::StagePlan;
use crate::context::ShardInfo;
use crate::error::{ConfigError, PipelineError};
use crate::operator::site;

/// What every shard of a run shares with the program that started it: the stop flag and every
/// shard's waker (a stop request wakes the parked shards).
#[derive(Debug, Clone)]
pub(crate) struct RunControl {
    stop: Arc<AtomicBool>,
    /// Set when the program asked to stop (not a failure): no restart then.
    stopped_by_program: Arc<AtomicBool>,
    wakers: Arc<[ShardWaker]>,
    key_groups: KeyGroups,
    /// The program's savepoint requests, answered by the checkpoint threads of every attempt.
    pub(crate) savepoints: Arc<Savepoints>,
}

impl RunControl {
    /// Checks the settings of `env` and prepares a run of its shards.
    pub(crate) fn new(env: &Env) -> Result<Self, PipelineError> {
        let shards = env.shard_count()?;
        let max = env.max_key_groups.unwrap_or_else(|| default_max_key_groups(shards));
        let key_groups = KeyGroups::new(max).map_err(ConfigError::from)?;
        // Every shard needs at least one key group.
        key_groups.range_for_shard(0, shards).map_err(ConfigError::from)?;
        env.exchange.validate().map_err(ConfigError::from)?;
        Ok(RunControl {
            stop: Arc::new(AtomicBool::new(false)),
            stopped_by_program: Arc::new(AtomicBool::new(false)),
            wakers: (0..shards).map(|_| ShardWaker::new()).collect(),
            key_groups,
            savepoints: Arc::new(Savepoints::new(env.checkpointing.is_some())),
        })
    }

    /// The program asks every shard to stop at its next loop turn (no restart follows).
    pub(crate) fn stop(&self) {
        self.stopped_by_program.store(true, Ordering::Relaxed);
        self.halt();
    }

    /// Before a restart: clears the stop a failure set; false if the program asked to stop.
    fn rearm(&self) -> bool {
        if self.stopped_by_program.load(Ordering::Relaxed) {
            return false;
        }
        self.stop.store(false, Ordering::Relaxed);
        true
    }

    /// Asks every shard to stop at its next loop turn, and wakes the parked ones.
    fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.wakers.iter() {
            w.wake();
        }
    }

    fn shards(&self) -> usize {
        self.wakers.len()
    }
}

/// Every shard's finished sinks (root by root, in shard order), the placement note, and what
/// the checkpoints did.
pub(crate) struct RunResult {
    per_shard: Vec<Vec<AnySink>>,
    placement_note: Option<String>,
    checkpoints: Option<CheckpointStats>,
}

impl RunResult {
    /// The run's sinks by root, then by shard.
    pub(crate) fn into_job_run(self, job: u64) -> JobRun {
        let roots = self.per_shard.first().map_or(0, Vec::len);
        let mut sinks: Vec<Vec<Option<AnySink>>> = (0..roots).map(|_| Vec::new()).collect();
        for shard_sinks in self.per_shard {
            for (root, sink) in shard_sinks.into_iter().enumerate() {
                sinks[root].push(Some(sink));
            }
        }
        JobRun::new(job, sinks, self.placement_note, self.checkpoints)
    }
}

/// The build context shard `index` of a run of `env` would get, for tests of how plans build.
#[cfg(test)]
pub(crate) fn test_context(env: &Env, index: usize) -> Result<BuildContext, PipelineError> {
    let control = RunControl::new(env)?;
    Ok(Shared::new(env, &control, 1)?.context(ShardInfo { index, count: control.shards() }))
}

/// Everything the shards of one run share.
struct Shared<'a> {
    env: &'a Env,
    control: &'a RunControl,
    exchanges: Arc<Exchanges>,
    start_time: Timestamp,
    checkpoints: Option<Arc<Coordinator>>,
}

impl<'a> Shared<'a> {
    /// The shared structures of a run of `roots` roots; with checkpoints on, the newest complete
    /// checkpoint is read (and validated) here, before any shard builds.
    fn new(env: &'a Env, control: &'a RunControl, roots: usize) -> Result<Self, PipelineError> {
        let checkpoints = match &env.checkpointing {
            Some(settings) => Some(Coordinator::open(
                settings,
                control.key_groups,
                roots,
                control.wakers.clone(),
                env.committers.clone(),
                control.stop.clone(),
                control.savepoints.clone(),
            )?),
            None => {
                // No checkpoint to resume from: a fresh start for every exactly-once sink.
                for c in &env.committers {
                    c.recover(None).map_err(|source| PipelineError::Commit { source })?;
                }
                None
            }
        };
        Ok(Shared {
            env,
            control,
            exchanges: Arc::new(Exchanges::new(env.exchange, control.wakers.clone())),
            start_time: env.clock.now(),
            checkpoints,
        })
    }

    /// Runs `f` with the checkpoint thread running, if checkpoints are on; returns `f`'s result
    /// and the checkpoints' figures (an error of the checkpoints wins over a stop it caused).
    fn with_checkpoints<R>(
        &self,
        f: impl FnOnce() -> Result<R, PipelineError>,
    ) -> Result<(R, Option<CheckpointStats>), PipelineError> {
        let Some(c) = &self.checkpoints else {
            let r = f()?;
            // Without checkpoints, the exactly-once sinks' output is visible once the run is over.
            for c in &self.env.committers {
                c.commit(u64::MAX).map_err(|source| PipelineError::Commit { source })?;
            }
            return Ok((r, None));
        };
        let thread = c.start()?;
        let result = f();
        let stats = c.finish(thread, result.is_ok());
        match (result, stats) {
            (Ok(r), Ok(stats)) => Ok((r, Some(stats))),
            (Err(PipelineError::Stopped), Err(e)) | (Ok(_), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
        }
    }

    /// The build context of `shard`.
    fn context(&self, shard: ShardInfo) -> BuildContext {
        BuildContext {
            shard,
            semantics: self.env.semantics,
            start_time: self.start_time,
            key_groups: self.control.key_groups,
            max_watermark_drift: self.env.max_watermark_drift,
            max_keys_per_shard: self.env.max_keys_per_shard,
            exchanges: self.exchanges.clone(),
            shared: SharedStages::default(),
            exchanges_built: Cell::new(0),
            sources_built: Cell::new(0),
            checkpoints: self.checkpoints.clone(),
        }
    }

    /// Runs `f` (which builds and drives a shard's tasks) on `shard`'s thread. A panic is caught
    /// here, not only by the thread runner, so that it stops the other shards too (they would
    /// otherwise wait for this shard's end-of-partition markers), and reported with the operator
    /// and phase that were running.
    fn guarded<R>(
        &self,
        shard: ShardInfo,
        f: impl FnOnce() -> Result<R, PipelineError>,
    ) -> Result<R, PipelineError> {
        site::reset();
        let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
            let (operator, phase) = site::current();
            Err(PipelineError::Panicked {
                operator,
                shard: shard.index,
                phase,
                message: panic_message(&*payload),
            })
        });
        if result.is_err() {
            self.control.halt();
        }
        result
    }

    /// Drives `tasks` to their end on the calling thread, the thread of `shard`.
    fn drive<T: Task<Error = PipelineError>>(
        &self,
        shard: ShardInfo,
        tasks: &mut [T],
    ) -> Result<(), PipelineError> {
        drive(
            tasks,
            &*self.env.clock,
            &self.control.wakers[shard.index],
            &self.control.stop,
            self.env.idle,
        )
        .map_err(|e| match e {
            DriveError::Task(e) => e,
            DriveError::Stopped => PipelineError::Stopped,
        })
    }

    /// After `shard` has built: every operator state of the restored checkpoint has found its
    /// operator (every shard builds the same operators, so shard 0 checks for all).
    fn check_restored(&self, shard: ShardInfo) -> Result<(), PipelineError> {
        let Some(c) = &self.checkpoints else { return Ok(()) };
        c.shard_built();
        if shard.index == 0 { c.check_claimed() } else { Ok(()) }
    }

    /// Builds every root of the job on `shard` and drives them to their end.
    fn run_shard(&self, plan: &JobPlan, shard: ShardInfo) -> Result<Vec<AnySink>, PipelineError> {
        let cx = self.context(shard);
        let mut tasks = plan.roots.iter().map(|r| r.build(&cx)).collect::<Result<Vec<_>, _>>()?;
        drop(cx);
        self.check_restored(shard)?;
        self.drive(shard, &mut tasks)?;
        Ok(tasks.into_iter().map(RootTask::into_sink).collect())
    }
}

/// What a run leaves: each shard's result in shard order, the placement note, and what the
/// checkpoints did.
type Finished<R> = (Vec<R>, Option<String>, Option<CheckpointStats>);

/// Runs `per_shard` on every shard of `env`, each on a thread of its own, and returns each
/// shard's result in shard order. The first error stops every shard and is returned (an error
/// other than [`PipelineError::Stopped`] wins, so the cause is reported rather than its echo).
fn run_threads<R, F>(
    env: &Env,
    control: &RunControl,
    roots: usize,
    per_shard: F,
) -> Result<Finished<R>, PipelineError>
where
    R: Send,
    F: Fn(&Shared<'_>, ShardInfo) -> Result<R, PipelineError> + Sync,
{
    with_restarts(
        env,
        control,
        || {
            let shared = Shared::new(env, control, roots)?;
            let ((results, note), checkpoints) =
                shared.with_checkpoints(|| collect_shards(&shared, env, control, &per_shard))?;
            Ok((results, note, checkpoints))
        },
        |r| r.2.as_mut(),
    )
}

/// Runs `attempt` until it succeeds, fails for good, or fails once more than the checkpoints'
/// [`RestartPolicy`] allows (restart.rs); each attempt restores the newest complete checkpoint.
fn with_restarts<T>(
    env: &Env,
    control: &RunControl,
    mut attempt: impl FnMut() -> Result<T, PipelineError>,
    stats: impl Fn(&mut T) -> Option<&mut CheckpointStats>,
) -> Result<T, PipelineError> {
    let policy = env.checkpointing.as_ref().map_or(RestartPolicy::none(), |c| c.restart);
    let mut restarts = Restarts::new(policy);
    let result = loop {
        match attempt() {
            Ok(mut r) => {
                if let Some(s) = stats(&mut r) {
                    s.restarts = restarts.taken();
                }
                break Ok(r);
            }
            Err(e) if recoverable(&e) && policy.max_restarts > 0 => {
                if !restarts.allow(Instant::now()) {
                    let restarts = restarts.taken();
                    break Err(PipelineError::RestartsExhausted { restarts, last: Box::new(e) });
                }
                if !control.rearm() {
                    break Err(e);
                }
                std::thread::sleep(restarts.backoff());
            }
            Err(e) => break Err(e),
        }
    };
    // No attempt follows: savepoints still requested will not be taken.
    control.savepoints.end();
    result
}

/// Runs `per_shard` on every shard's thread; see [`run_threads`].
fn collect_shards<R, F>(
    shared: &Shared<'_>,
    env: &Env,
    control: &RunControl,
    per_shard: &F,
) -> Result<(Vec<R>, Option<String>), PipelineError>
where
    R: Send,
    F: Fn(&Shared<'_>, ShardInfo) -> Result<R, PipelineError> + Sync,
{
    let run = run_shards(&env.placement, "pinwheel", |scx| {
        let shard = ShardInfo { index: scx.index, count: scx.count };
        shared.guarded(shard, || per_shard(shared, shard))
    })
    .map_err(from_shard_error)?;
    let mut results = Vec::with_capacity(control.shards());
    let mut first_error: Option<PipelineError> = None;
    for r in run.results {
        match r.map_err(from_shard_error).and_then(|r| r) {
            Ok(r) => results.push(r),
            Err(e) => {
                let replace = match &first_error {
                    None => true,
                    Some(PipelineError::Stopped) => !matches!(e, PipelineError::Stopped),
                    Some(_) => false,
                };
                if replace {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((results, run.placement_note)),
    }
}

fn from_shard_error(e: ShardError) -> PipelineError {
    match e {
        ShardError::Spawn { shard, message } => {
            PipelineError::Spawn { thread: format!("pinwheel-shard-{shard}"), message }
        }
        ShardError::Panicked { shard, message } => {
            PipelineError::Panicked { operator: None, shard, phase: None, message }
        }
        ShardError::Placement(e) => ConfigError::from(e).into(),
        other => {
            PipelineError::Spawn { thread: "pinwheel".to_string(), message: other.to_string() }
        }
    }
}

/// Runs every root of `plan` on every shard of `env`, each shard on a thread of its own.
pub(crate) fn run_job(
    plan: &JobPlan,
    env: &Env,
    control: &RunControl,
) -> Result<RunResult, PipelineError> {
    let (per_shard, placement_note, checkpoints) =
        run_threads(env, control, plan.roots.len(), |shared, shard| shared.run_shard(plan, shard))?;
    Ok(RunResult { per_shard, placement_note, checkpoints })
}

/// Runs the one stream of `plan` on every shard of `env`, each shard on a thread of its own,
/// into the sink `sink_factory` makes there; returns the sinks in shard order. The sinks may
/// borrow from the caller (the shard threads are scoped).
pub(crate) fn run_stream<P, S, SF>(
    plan: &P,
    env: &Env,
    control: &RunControl,
    sink_factory: SF,
) -> Result<Finished<S>, PipelineError>
where
    P: StagePlan,
    S: Sink<P::Item> + Send,
    SF: Fn(ShardInfo) -> S + Sync,
{
    run_threads(env, control, 1, |shared, shard| {
        let cx = shared.context(shard);
        let stage = plan.build(&cx)?;
        let mut task = [RootStage::new(stage, sink_factory(shard), &cx)];
        drop(cx);
        shared.check_restored(shard)?;
        shared.drive(shard, &mut task)?;
        let [task] = task;
        Ok(task.into_parts())
    })
}

/// Runs a one-shard pipeline of `plan` into `sink` on the calling thread (the sink need not be
/// `Send` nor `'static`: it never leaves this thread).
pub(crate) fn run_here<P, S>(
    plan: &P,
    env: &Env,
    control: &RunControl,
    sink: &mut S,
) -> Result<(), PipelineError>
where
    P: StagePlan,
    S: Sink<P::Item>,
{
    debug_assert_eq!(control.shards(), 1, "run_here needs one shard");
    let shard = ShardInfo { index: 0, count: 1 };
    // A restart hands the same sink the replay from the restored checkpoint.
    with_restarts(
        env,
        control,
        || {
            let shared = Shared::new(env, control, 1)?;
            shared.with_checkpoints(|| {
                shared.guarded(shard, || {
                    let cx = shared.context(shard);
                    let stage = plan.build(&cx)?;
                    let mut task = [RootStage::new(stage, &mut *sink, &cx)];
                    drop(cx);
                    shared.check_restored(shard)?;
                    shared.drive(shard, &mut task)
                })
            })
        },
        |_| None,
    )
    .map(|((), _)| ())
}
