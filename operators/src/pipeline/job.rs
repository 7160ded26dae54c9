//! Jobs: several streams of one pipeline, each into its own sinks, in one run on the same shards.
//!
//! A [`Job`] has *roots*: each a [`DataStream`] with a per-shard sink factory
//! ([`Job::sink`], [`Job::collect`], [`Job::channel`]). Every shard builds every root (branches of
//! a shared stage find the shard's one instance of it, see [`side`](super::side)) and its loop
//! polls the roots in turn, each for a bounded number of elements per turn, so that a root that
//! waits (for input, for a full branch buffer, for a full exchange ring) never keeps the others
//! from running. The roots' chains stay monomorphized: a root costs one dynamic call per turn, not
//! per record. The loop idles (spin, yield, short sleeps) only when no root has anything to do.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use pinwheel_engine::shard::panic_message;

use super::run::{self, Env};
use super::sink::{Sink, VecSink};
use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
use super::{DataStream, Pipeline};
use crate::context::ShardInfo;
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Elements one root hands to its sink, at most, before the next root's turn.
pub const ROOT_TURN: usize = 1024;

/// A finished sink, type-erased until [`JobRun::take`] gives it its type back.
type AnySink = Box<dyn Any + Send>;

/// Each shard's finished sinks, root by root, stored when its roots have all ended.
type FinishedSinks = Arc<Mutex<Vec<Option<Vec<AnySink>>>>>;

/// Job ids, so that a [`SinkId`] is not read from another job's run.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// Several streams of one pipeline run together, each into its own sinks; see the
/// [module docs](self).
pub struct Job {
    id: u64,
    env: Env,
    roots: Vec<Box<dyn RootPlan>>,
    /// A configuration error found while roots were added, reported by `run` and `spawn`.
    error: Option<String>,
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
        P: StreamPlan,
        P::Stream: 'static,
        S: Sink<P::Item> + Send + 'static,
        SF: Fn(ShardInfo) -> S + Send + Sync + 'static,
    {
        if let Err(e) = self.check_env(&stream.env) {
            self.error.get_or_insert(e);
        }
        self.roots.push(Box::new(Root { plan: stream.plan, sink_factory }));
        SinkId { job: self.id, root: self.roots.len() - 1, _sink: PhantomData }
    }

    /// Adds `stream` as a root whose record values are collected; read them with
    /// [`JobRun::take_values`].
    pub fn collect<P>(&mut self, stream: DataStream<P>) -> SinkId<VecSink<P::Item>>
    where
        P: StreamPlan,
        P::Stream: 'static,
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
        P: StreamPlan,
        P::Stream: 'static,
        P::Item: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        // One sender per shard, taken by its sink: no other copy keeps the channel open.
        let shards = self.env.shard_count().unwrap_or(1);
        let senders: Mutex<Vec<Option<Sender<P::Item>>>> =
            Mutex::new((0..shards).map(|_| Some(tx.clone())).collect());
        drop(tx);
        self.sink(stream, move |shard: ShardInfo| {
            let mut senders = senders.lock().unwrap_or_else(|p| p.into_inner());
            ClosingChannelSink(senders.get_mut(shard.index).and_then(Option::take))
        });
        rx
    }

    /// The number of roots.
    pub fn roots(&self) -> usize {
        self.roots.len()
    }

    fn check_env(&self, env: &Env) -> Result<(), String> {
        let same = env.placement == self.env.placement
            && env.semantics == self.env.semantics
            && env.max_key_groups == self.env.max_key_groups
            && env.ring_capacity == self.env.ring_capacity
            && env.max_watermark_drift == self.env.max_watermark_drift
            && Arc::ptr_eq(&env.clock, &self.env.clock);
        if same {
            Ok(())
        } else {
            Err("a stream added to a job comes from a pipeline with other settings: build every \
                 stream of a job from the Pipeline given to Job::new"
                .to_string())
        }
    }

    fn into_plan(self) -> Result<(JobPlan, Env, u64), PipelineError> {
        if let Some(e) = self.error {
            return Err(PipelineError::Config(e));
        }
        let plan = JobPlan { roots: self.roots, finished: Arc::new(Mutex::new(Vec::new())) };
        Ok((plan, self.env, self.id))
    }

    /// Runs every root to its end on this pipeline's shards (threads of their own) and returns
    /// their sinks. The first error stops every shard and is returned, as for
    /// [`DataStream::run_sharded`].
    pub fn run(self) -> Result<JobRun, PipelineError> {
        let (plan, env, id) = self.into_plan()?;
        run_job(plan, &env, id, &AtomicBool::new(false))
    }

    /// Starts the job on threads of its own and returns at once; see [`RunningJob`].
    pub fn spawn(self) -> Result<RunningJob, PipelineError> {
        let (plan, env, id) = self.into_plan()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("pinwheel-coordinator".to_string())
            .spawn(move || run_job(plan, &env, id, &stop2))
            .map_err(|e| PipelineError::Config(format!("cannot start the job thread: {e}")))?;
        Ok(RunningJob { handle: Some(handle), stop })
    }
}

fn run_job(plan: JobPlan, env: &Env, id: u64, stop: &AtomicBool) -> Result<JobRun, PipelineError> {
    let roots = plan.roots.len();
    let finished = plan.finished.clone();
    let run = run::run_sharded(&plan, env, |_| NoSink, stop)?;
    drop(plan);
    let per_shard = std::mem::take(&mut *finished.lock().unwrap_or_else(|p| p.into_inner()));
    let mut sinks: Vec<Vec<Option<AnySink>>> = (0..roots).map(|_| Vec::new()).collect();
    for shard_sinks in per_shard {
        for (root, sink) in shard_sinks.into_iter().flatten().enumerate() {
            sinks[root].push(Some(sink));
        }
    }
    Ok(JobRun { job: id, sinks, placement_note: run.placement_note })
}

/// What a job's run leaves behind: every root's sinks.
pub struct JobRun {
    job: u64,
    /// `sinks[root][shard]`.
    sinks: Vec<Vec<Option<AnySink>>>,
    /// Where pinning degraded (cores missing), why.
    pub placement_note: Option<String>,
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

/// A job running on threads of its own (from [`Job::spawn`]): stop it at once, or wait for it
/// to drain.
///
/// * **Drain:** end the inputs (drop or [finish](super::PushHandle::finish) every push handle;
///   bounded sources end by themselves), then [`join`](Self::join): every source plays out what it
///   has, the final watermark fires every event-time timer, every root's outputs reach its sinks,
///   and `join` returns the sinks.
/// * **Stop at once:** [`stop`](Self::stop) or [`cancel`](Self::cancel): the shards stop at their
///   next loop turn; what is in flight is dropped.
/// * **Errors:** the first error of a user function or sink stops every shard and is what `join`
///   returns ([`PipelineError::Function`] names the operator, the shard and the phase).
#[derive(Debug)]
pub struct RunningJob {
    handle: Option<JoinHandle<Result<JobRun, PipelineError>>>,
    stop: Arc<AtomicBool>,
}

impl RunningJob {
    /// Asks every shard to stop at once (pending outputs are not produced). A shard waiting on a
    /// full channel sees it once the channel is read or its receiver dropped.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// True once the job has ended (then [`join`](Self::join) does not wait).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the job to end, and returns its sinks or the error that ended it
    /// ([`PipelineError::Stopped`] after [`stop`](Self::stop)). It ends when every root has ended:
    /// for push sources, once every handle is gone.
    pub fn join(mut self) -> Result<JobRun, PipelineError> {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(p)) => Err(PipelineError::Panicked { shard: 0, message: panic_message(&*p) }),
            None => Err(PipelineError::Stopped),
        }
    }

    /// Stops the job at once and waits for its threads. Returns the sinks if the job had already
    /// finished, [`PipelineError::Stopped`] if it was cut short, or the error that had ended it.
    pub fn cancel(self) -> Result<JobRun, PipelineError> {
        self.stop();
        self.join()
    }
}

/// A root as added: its plan and sink factory, type-erased.
trait RootPlan: Send + Sync {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn RootRun>, PipelineError>;
}

struct Root<P, SF> {
    plan: P,
    sink_factory: SF,
}

impl<P, S, SF> RootPlan for Root<P, SF>
where
    P: StreamPlan,
    P::Stream: 'static,
    S: Sink<P::Item> + Send + 'static,
    SF: Fn(ShardInfo) -> S + Send + Sync + 'static,
{
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn RootRun>, PipelineError> {
        let sink = (self.sink_factory)(cx.shard);
        let stream = self.plan.build(cx)?;
        Ok(Box::new(RootStream { stream, sink }))
    }
}

/// What one turn of a root did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// It made progress (or wants to be polled again soon).
    Busy,
    /// Nothing to do until input arrives or time passes.
    Idle,
    /// Its stream ended and its sink is finished.
    Done,
}

/// A root running on a shard: its chain and its sink.
trait RootRun {
    /// Moves up to `budget` elements from the stream into the sink.
    fn turn(&mut self, cx: &mut PollContext, budget: usize) -> Result<Turn, PipelineError>;
    /// The sink, for the run's result.
    fn into_sink(self: Box<Self>) -> AnySink;
}

struct RootStream<St, S> {
    stream: St,
    sink: S,
}

impl<St, S> RootRun for RootStream<St, S>
where
    St: Stream,
    S: Sink<St::Item> + Send + 'static,
{
    fn turn(&mut self, cx: &mut PollContext, budget: usize) -> Result<Turn, PipelineError> {
        let mut written = 0;
        loop {
            match self.stream.poll_next(cx)? {
                Poll::Ready(e) => {
                    self.sink.write(e)?;
                    written += 1;
                    if written >= budget {
                        return Ok(Turn::Busy);
                    }
                }
                Poll::Yield => return Ok(Turn::Busy),
                Poll::Pending => return Ok(if written > 0 { Turn::Busy } else { Turn::Idle }),
                Poll::Done => {
                    self.sink.finish()?;
                    return Ok(Turn::Done);
                }
            }
        }
    }

    fn into_sink(self: Box<Self>) -> AnySink {
        Box::new(self.sink)
    }
}

/// Every root of a job, as one plan: on each shard, a stream that yields nothing and whose
/// polling runs one turn of every root. The shard loop (`sink::drive`) then idles, wakes for
/// timers and stops exactly as for one root.
struct JobPlan {
    roots: Vec<Box<dyn RootPlan>>,
    finished: FinishedSinks,
}

impl StreamPlan for JobPlan {
    type Item = Infallible;
    type Stream = JobStream;

    fn build(&self, cx: &BuildContext) -> Result<JobStream, PipelineError> {
        let roots = self.roots.iter().map(|r| r.build(cx)).collect::<Result<Vec<_>, _>>()?;
        Ok(JobStream {
            done: vec![false; roots.len()],
            open: roots.len(),
            roots,
            shard: cx.shard.index,
            finished: self.finished.clone(),
        })
    }
}

/// A job's roots on one shard.
struct JobStream {
    roots: Vec<Box<dyn RootRun>>,
    done: Vec<bool>,
    open: usize,
    shard: usize,
    finished: FinishedSinks,
}

impl Stream for JobStream {
    type Item = Infallible;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<Infallible>, PipelineError> {
        if self.open == 0 {
            return Ok(Poll::Done);
        }
        let mut busy = false;
        for (root, done) in self.roots.iter_mut().zip(self.done.iter_mut()) {
            if *done {
                continue;
            }
            match root.turn(cx, ROOT_TURN)? {
                Turn::Busy => busy = true,
                Turn::Idle => {}
                Turn::Done => {
                    *done = true;
                    self.open -= 1;
                    busy = true;
                }
            }
        }
        if self.open > 0 {
            return Ok(if busy { Poll::Yield } else { Poll::Pending });
        }
        let sinks = std::mem::take(&mut self.roots).into_iter().map(RootRun::into_sink).collect();
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if finished.len() <= self.shard {
            finished.resize_with(self.shard + 1, || None);
        }
        finished[self.shard] = Some(sinks);
        Ok(Poll::Done)
    }
}

/// The sink of a job's stream, which yields nothing.
struct NoSink;

impl Sink<Infallible> for NoSink {
    fn write(&mut self, _: StreamElement<Infallible>) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// Sends record values into a channel and lets go of its sender when its root ends.
struct ClosingChannelSink<T>(Option<Sender<T>>);

impl<T> Sink<T> for ClosingChannelSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError> {
        let StreamElement::Record { value, .. } = element else { return Ok(()) };
        match self.0.as_ref() {
            Some(tx) => tx.send(value).map_err(|_| PipelineError::Stopped),
            None => Err(PipelineError::Config("a channel root has no sender on this shard".into())),
        }
    }

    fn finish(&mut self) -> Result<(), PipelineError> {
        self.0 = None;
        Ok(())
    }
}
