//! Jobs: streams of one pipeline, each into its own sinks, run together on the same shards — the
//! one way every pipeline runs.
//!
//! A [`Job`] has *roots*: each a [`DataStream`] with a per-shard sink factory ([`Job::sink`],
//! [`Job::collect`], [`Job::channel`]). Every shard builds every root (branches of a shared stage
//! find the shard's one instance of it, see [`side`](super::side)) and the shard's driver gives
//! each root a turn in every loop turn: the root pulls a batch from its chain and writes it into
//! its sink. A root that waits (for input, for a full branch buffer, for a full exchange ring)
//! never keeps the others from running; the chains stay monomorphized (a root costs one dynamic
//! call per turn, not per record). The shard idles only when no root has anything to do.
//!
//! The conveniences of [`DataStream`] are jobs of one root: `collect`, `collect_elements` and
//! `run_sharded` [run](Job::run) one; `into_channel` [spawns](Job::spawn) one and returns its
//! [`RunningJob`]; `for_each` and `run_with` run one on the calling thread when there is one
//! shard.
//!
//! ```
//! use pinwheel_operators::pipeline::{Job, Pipeline};
//!
//! let pipeline = Pipeline::new().shards(2);
//! let evens = pipeline.from_iter(0..10u64).filter(|i| i % 2 == 0);
//! let squares = pipeline.from_iter(0..4u64).map(|i| i * i);
//! let mut job = Job::new(&pipeline);
//! let evens = job.collect(evens);
//! let squares = job.collect(squares);
//! let mut run = job.run()?;
//! assert_eq!(run.take_values(evens), vec![0, 2, 4, 6, 8]);
//! assert_eq!(run.take_values(squares), vec![0, 1, 4, 9]);
//! # Ok::<(), pinwheel_operators::PipelineError>(())
//! ```

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use pinwheel_engine::shard::{Task, TaskStatus, Turn, panic_message};

use super::DataStream;
use super::build::BuildContext;
use super::builder::{Env, Pipeline};
use super::checkpoint::{CheckpointStats, Coordinator};
use super::run::{self, RunControl};
use super::savepoint::SavepointHandle;
use super::sink::{ChannelSink, Disconnected, Sink, VecSink};
use super::stage::{Stage, StagePlan, Status};
use crate::context::ShardInfo;
use crate::error::{ConfigError, Phase, PipelineError, SinkError};
use crate::operator::site;
use crate::output::StreamElement;

/// A finished sink, type-erased until [`JobRun::take`] gives it its type back.
pub(crate) type AnySink = Box<dyn Any + Send>;

/// Job ids, so that a [`SinkId`] is not read from another job's run.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// Streams of one pipeline run together, each into its own sinks; see the [module docs](self).
pub struct Job {
    id: u64,
    env: Env,
    roots: Vec<Box<dyn RootPlan>>,
    /// A configuration error found while roots were added, reported by `run` and `spawn`.
    error: Option<ConfigError>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").field("roots", &self.roots.len()).finish_non_exhaustive()
    }
}

/// Which of a job's roots a sink belongs to: read its sinks from the [`JobRun`] with it.
pub struct SinkId<S> {
    job: u64,
    root: usize,
    _sink: PhantomData<fn() -> S>,
}

impl<S> Clone for SinkId<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for SinkId<S> {}

impl<S> fmt::Debug for SinkId<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkId").field("job", &self.job).field("root", &self.root).finish()
    }
}

impl Job {
    /// An empty job with `pipeline`'s settings (shards, clock, semantics). Every stream added
    /// must come from `pipeline`.
    pub fn new(pipeline: &Pipeline) -> Self {
        Job {
            id: NEXT_JOB.fetch_add(1, Ordering::Relaxed),
            env: pipeline.env.clone(),
            roots: Vec::new(),
            error: None,
        }
    }

    /// Adds `stream` as a root; on every shard its elements go to the sink `sink_factory` makes
    /// there (on the shard's thread). The sinks come back from [`JobRun::take`].
    pub fn sink<P, S, SF>(&mut self, stream: DataStream<P>, sink_factory: SF) -> SinkId<S>
    where
        P: StagePlan,
        P::Stage: 'static,
        S: Sink<P::Item> + Send + 'static,
        SF: Fn(ShardInfo) -> S + Send + Sync + 'static,
    {
        if !stream.env.same_settings(&self.env) {
            self.error.get_or_insert(ConfigError::ForeignStream);
        }
        self.roots.push(Box::new(Root { plan: stream.plan, sink_factory }));
        SinkId { job: self.id, root: self.roots.len() - 1, _sink: PhantomData }
    }

    /// Adds `stream` as a root whose record values are collected; read them with
    /// [`JobRun::take_values`].
    pub fn collect<P>(&mut self, stream: DataStream<P>) -> SinkId<VecSink<P::Item>>
    where
        P: StagePlan,
        P::Stage: 'static,
        P::Item: Send + 'static,
    {
        self.sink(stream, |_| VecSink(Vec::new()))
    }

    /// Adds `stream` as a root whose record values go into a bounded channel of `capacity` (a
    /// full channel is backpressure: the shards wait). The channel disconnects once every shard
    /// has finished this root. Read every channel of a job while it runs (from threads of their
    /// own if need be): a full channel nobody reads holds the job.
    pub fn channel<P>(&mut self, stream: DataStream<P>, capacity: usize) -> Receiver<P::Item>
    where
        P: StagePlan,
        P::Stage: 'static,
        P::Item: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let senders = one_sender_per_shard(tx, self.env.shard_count().unwrap_or(1));
        self.sink(stream, move |shard: ShardInfo| ChannelSink::new(take_sender(&senders, shard)));
        rx
    }

    /// The number of roots.
    pub fn roots(&self) -> usize {
        self.roots.len()
    }

    fn into_plan(self) -> Result<(JobPlan, Env, u64), PipelineError> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        Ok((JobPlan { roots: self.roots }, self.env, self.id))
    }

    /// Runs every root to its end on this pipeline's shards (threads of their own) and returns
    /// their sinks. The first error stops every shard and is returned.
    pub fn run(self) -> Result<JobRun, PipelineError> {
        let (plan, env, id) = self.into_plan()?;
        let control = RunControl::new(&env)?;
        run::run_job(&plan, &env, &control).map(|r| r.into_job_run(id))
    }

    /// Starts the job on threads of its own and returns at once; see [`RunningJob`].
    pub fn spawn(self) -> Result<RunningJob, PipelineError> {
        self.spawn_with(crossbeam_channel::never())
    }

    /// [`spawn`](Self::spawn), with the receiver of the job's output channel.
    pub(crate) fn spawn_with<T>(
        self,
        receiver: Receiver<T>,
    ) -> Result<RunningJob<T>, PipelineError> {
        let (plan, env, id) = self.into_plan()?;
        let control = RunControl::new(&env)?;
        let stopper = control.clone();
        let thread = "pinwheel-coordinator";
        let handle = std::thread::Builder::new()
            .name(thread.to_string())
            .spawn(move || run::run_job(&plan, &env, &control).map(|r| r.into_job_run(id)))
            .map_err(|e| PipelineError::Spawn {
                thread: thread.to_string(),
                message: e.to_string(),
            })?;
        Ok(RunningJob { handle: Some(handle), control: stopper, receiver })
    }
}

/// One sender per shard for a channel root, each taken by its shard's sink: no other copy keeps
/// the channel open once every sink has finished.
pub(crate) fn one_sender_per_shard<T>(
    tx: Sender<T>,
    shards: usize,
) -> Mutex<Vec<Option<Sender<T>>>> {
    Mutex::new((0..shards).map(|_| Some(tx.clone())).collect())
}

/// Shard `shard`'s sender of a channel root.
pub(crate) fn take_sender<T>(
    senders: &Mutex<Vec<Option<Sender<T>>>>,
    shard: ShardInfo,
) -> Option<Sender<T>> {
    senders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(shard.index)
        .and_then(Option::take)
}

/// What a job's run leaves behind: every root's sinks.
pub struct JobRun {
    job: u64,
    /// `sinks[root][shard]`.
    sinks: Vec<Vec<Option<AnySink>>>,
    /// Where pinning degraded (cores missing), why.
    pub placement_note: Option<String>,
    /// What the checkpoints did, if they were on.
    pub checkpoints: Option<CheckpointStats>,
}

impl fmt::Debug for JobRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRun")
            .field("roots", &self.sinks.len())
            .field("placement_note", &self.placement_note)
            .finish_non_exhaustive()
    }
}

impl JobRun {
    pub(crate) fn new(
        job: u64,
        sinks: Vec<Vec<Option<AnySink>>>,
        placement_note: Option<String>,
        checkpoints: Option<CheckpointStats>,
    ) -> Self {
        JobRun { job, sinks, placement_note, checkpoints }
    }

    /// The sinks of root `id`, in shard order. Each sink is handed out once: taking them again
    /// gives an empty `Vec`.
    ///
    /// # Panics
    ///
    /// If `id` belongs to another job.
    pub fn take<S: 'static>(&mut self, id: SinkId<S>) -> Vec<S> {
        assert_eq!(id.job, self.job, "SinkId of another job");
        self.sinks[id.root]
            .iter_mut()
            .filter_map(Option::take)
            .map(|sink| match sink.downcast::<S>() {
                Ok(s) => *s,
                // A SinkId<S> is only made for a root whose sinks are S.
                Err(_) => unreachable!("a root's sinks have its SinkId's type"),
            })
            .collect()
    }

    /// The record values collected by root `id` (made by [`Job::collect`]): each shard's values
    /// in order, shards one after the other.
    ///
    /// # Panics
    ///
    /// If `id` belongs to another job.
    pub fn take_values<T: 'static>(&mut self, id: SinkId<VecSink<T>>) -> Vec<T> {
        self.take(id).into_iter().flat_map(|s| s.0).collect()
    }
}

/// A job running on threads of its own: stop it at once, or wait for it to drain; for a job made
/// by [`DataStream::into_channel`](super::DataStream::into_channel), read its output too.
///
/// * **Drain:** end the inputs (drop or [finish](super::PushHandle::finish) every push handle;
///   bounded sources end by themselves), then [`join`](Self::join) (or [`drain`](Self::drain), for
///   the outputs not yet read): every source plays out what it has, the final watermark fires every
///   event-time timer, every root's outputs reach its sinks.
/// * **Stop at once:** [`stop`](Self::stop) or [`cancel`](Self::cancel): the shards stop at their
///   next loop turn (a parked shard is woken for it); what is in flight is dropped, and pushing
///   into the job's push sources fails from then on.
/// * **Errors:** the first error of a user function or sink stops every shard and is what `join`,
///   `drain` and `cancel` return ([`PipelineError::Function`] names the operator, the shard and the
///   phase).
#[derive(Debug)]
pub struct RunningJob<T = Infallible> {
    handle: Option<JoinHandle<Result<JobRun, PipelineError>>>,
    control: RunControl,
    receiver: Receiver<T>,
}

impl<T> RunningJob<T> {
    /// The output channel (of a job made by `into_channel`; for other jobs it never receives). It
    /// disconnects when the job ends.
    pub fn receiver(&self) -> &Receiver<T> {
        &self.receiver
    }

    /// Blocks for the next output; `None` once the job has ended and everything was read.
    pub fn recv(&self) -> Option<T> {
        self.receiver.recv().ok()
    }

    /// Waits at most `timeout` for the next output.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout)
    }

    /// Iterates over the outputs until the job ends.
    pub fn iter(&self) -> crossbeam_channel::Iter<'_, T> {
        self.receiver.iter()
    }

    /// Asks every shard to stop at once (pending outputs are not produced); then
    /// [`join`](Self::join) returns [`PipelineError::Stopped`], unless the job had already ended.
    /// A shard waiting on a full channel sees it once the channel is read or its receiver dropped.
    pub fn stop(&self) {
        self.control.stop();
    }

    /// Asks for a savepoint (the job needs [`Pipeline::checkpointing`]):
    /// the next checkpoint, triggered at once if none is in flight, is written as a savepoint,
    /// which retention never deletes. [`SavepointHandle::wait`] returns its id once its manifest
    /// is durable (and the exactly-once output before its barriers is committed). A job started on
    /// the same checkpoint directory resumes from the newest complete checkpoint or savepoint,
    /// on any shard count; [`Checkpointing::restore_from`](super::Checkpointing::restore_from)
    /// starts a job in a new directory from a chosen savepoint. The savepoint is deleted only by
    /// deleting its files.
    pub fn savepoint(&self) -> SavepointHandle {
        self.control.savepoints.request()
    }

    /// True once the job has ended (its last outputs may still be in the channel).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the job to end, and returns its sinks or the error that ended it
    /// ([`PipelineError::Stopped`] after [`stop`](Self::stop)). It ends when every root has ended:
    /// for push sources, once every handle is gone. Outputs not yet read are dropped.
    pub fn join(mut self) -> Result<JobRun, PipelineError> {
        let handle = self.handle.take();
        // Unread outputs are dropped: a shard blocked on the full channel must not wait for us.
        drop(std::mem::replace(&mut self.receiver, crossbeam_channel::never()));
        match handle.map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(p)) => Err(PipelineError::Panicked {
                operator: None,
                shard: 0,
                phase: None,
                message: panic_message(&*p),
            }),
            None => Err(PipelineError::Stopped),
        }
    }

    /// Waits for the job to finish on its own and returns the outputs not yet read, in order of
    /// arrival, or the error that ended it.
    pub fn drain(self) -> Result<Vec<T>, PipelineError> {
        let rest: Vec<T> = self.receiver.iter().collect();
        self.join().map(drop).map(|()| rest)
    }

    /// Stops the job at once and waits for its threads. Returns the sinks if the job had already
    /// finished, [`PipelineError::Stopped`] if it was cut short, or the error that had ended it.
    pub fn cancel(self) -> Result<JobRun, PipelineError> {
        self.stop();
        self.join()
    }
}

/// A root as added: its plan and sink factory, type-erased.
pub(crate) trait RootPlan: Send + Sync {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn RootTask>, PipelineError>;
}

struct Root<P, SF> {
    plan: P,
    sink_factory: SF,
}

impl<P, S, SF> RootPlan for Root<P, SF>
where
    P: StagePlan,
    P::Stage: 'static,
    S: Sink<P::Item> + Send + 'static,
    SF: Fn(ShardInfo) -> S + Send + Sync + 'static,
{
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn RootTask>, PipelineError> {
        let sink = (self.sink_factory)(cx.shard());
        let stage = self.plan.build(cx)?;
        Ok(Box::new(RootStage::new(stage, sink, cx)))
    }
}

/// A root running on a shard: a task of the shard's driver.
pub(crate) trait RootTask: Task<Error = PipelineError> {
    /// The sink, for the run's result.
    fn into_sink(self: Box<Self>) -> AnySink;
}

/// A root's chain and sink on one shard: each turn pulls a batch from the chain into the sink.
pub(crate) struct RootStage<St: Stage, S> {
    stage: St,
    sink: S,
    batch: Vec<StreamElement<St::Item>>,
    shard: usize,
    /// With checkpoints on: where the root acknowledges barriers, and the part of a batch
    /// that follows a barrier.
    checkpoints: Option<Arc<Coordinator>>,
    rest: Vec<StreamElement<St::Item>>,
}

impl<St: Stage, S> RootStage<St, S> {
    pub(crate) fn new(stage: St, sink: S, cx: &BuildContext) -> Self {
        RootStage {
            stage,
            sink,
            batch: Vec::new(),
            shard: cx.shard().index,
            checkpoints: cx.checkpoints.clone(),
            rest: Vec::new(),
        }
    }

    /// The sink, once the root has run.
    pub(crate) fn into_parts(self) -> S {
        self.sink
    }

    fn sink_error(&self, e: SinkError) -> PipelineError {
        if e.is::<Disconnected>() {
            PipelineError::Stopped
        } else {
            PipelineError::Sink { shard: self.shard, source: e }
        }
    }
}

impl<St, S> Task for RootStage<St, S>
where
    St: Stage,
    S: Sink<St::Item>,
{
    type Error = PipelineError;

    #[inline]
    fn turn(&mut self, cx: &mut Turn) -> Result<TaskStatus, PipelineError> {
        let status = self.stage.pull(cx, &mut self.batch)?;
        let wrote = !self.batch.is_empty();
        if wrote {
            site::leave(Some(Phase::Sink));
            let written = match &self.checkpoints {
                None => self.sink.write_batch(&mut self.batch),
                Some(_) => self.write_with_barriers(),
            };
            if let Err(e) = written {
                return Err(self.sink_error(e));
            }
        }
        Ok(match status {
            Status::Done => {
                site::leave(Some(Phase::Sink));
                if let Err(e) = self.sink.finish() {
                    return Err(self.sink_error(e));
                }
                if let Some(c) = &self.checkpoints {
                    c.root_finished(self.shard);
                }
                TaskStatus::Done
            }
            Status::Idle if !wrote => TaskStatus::Idle,
            _ => TaskStatus::Busy,
        })
    }
}

impl<St, S> RootStage<St, S>
where
    St: Stage,
    S: Sink<St::Item>,
{
    /// Writes the batch into the sink, stopping at every barrier: what precedes it is written,
    /// the sink acts on it ([`Sink::on_barrier`]), and the root acknowledges it.
    fn write_with_barriers(&mut self) -> Result<(), SinkError> {
        while let Some(at) = self.batch.iter().position(|e| matches!(e, StreamElement::Barrier(_)))
        {
            self.rest.extend(self.batch.drain(at + 1..));
            let Some(StreamElement::Barrier(b)) = self.batch.pop() else {
                unreachable!("the element at `at` is a barrier")
            };
            self.sink.write_batch(&mut self.batch)?;
            self.sink.write(StreamElement::Barrier(b))?;
            self.sink.on_barrier(b.id)?;
            if let Some(c) = &self.checkpoints {
                c.root_barrier(b.id, self.shard);
            }
            std::mem::swap(&mut self.batch, &mut self.rest);
        }
        self.sink.write_batch(&mut self.batch)
    }
}

impl<St, S> RootTask for RootStage<St, S>
where
    St: Stage,
    S: Sink<St::Item> + Send + 'static,
{
    fn into_sink(self: Box<Self>) -> AnySink {
        Box::new(self.sink)
    }
}

/// Every root of a job.
pub(crate) struct JobPlan {
    pub(crate) roots: Vec<Box<dyn RootPlan>>,
}
