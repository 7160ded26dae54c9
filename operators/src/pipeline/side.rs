//! Side outputs: where a process stage's side outputs go (callbacks and streams, one mechanism),
//! and side outputs read as streams (Flink's `getSideOutput`).
//!
//! A process stage writes its side outputs into typed buffers ([`SideOutputs`]); after every pull
//! its taps empty them: each consumed side output has one tap, a callback
//! ([`side_output`](super::DataStream::side_output)) or a stream branch
//! ([`side_output_stream`](super::DataStream::side_output_stream)); records of side outputs
//! without a consumer are discarded and counted, as in Flink.
//!
//! ```text
//!                            ┌─ main buffer ──► MainOutputStage ──► … ──► sink A
//!   upstream ──► process ──► tee (one per shard)
//!                            └─ side buffer ──► SideOutputStage ──► map / key_by / process ──► sink B
//! ```
//!
//! [`with_side_outputs`](super::DataStream::with_side_outputs) turns a process stage into a stage
//! shared by several branches: its main output continues as a [`DataStream`](super::DataStream),
//! and [`side_output_stream`](super::DataStream::side_output_stream) gives a side output as another
//! `DataStream`, which can be mapped, filtered, keyed again and processed like any other. Every
//! branch must run in the same [`Job`](super::Job), which feeds each to its own sink, on the same
//! shards:
//!
//! * **Built once per shard.** Each shard builds the process stage once (the first branch to be
//!   built does, through the shard's registry of shared stages) and every branch holds the shard's
//!   *tee*: the stage and one buffer per branch. Whichever branch is pulled pulls the stage;
//!   elements for the other branches wait in their buffers.
//! * **Bounded.** A branch buffer holds about 1,024 elements (set with
//!   [`branch_buffer`](super::DataStream::branch_buffer)): while any buffer is full, no branch
//!   pulls the stage, so a branch whose sink is slow holds the others back (backpressure) instead
//!   of growing memory. A buffer can exceed its bound by what one pull of the stage emits to it,
//!   never more. [`BranchStats`] reports the most elements the buffers of a shard held at once.
//! * **No deadlock.** A branch that waits for a full sibling reports [`Status::Idle`], and the
//!   job's shard loop keeps pulling every root in turn, so the full buffer drains.
//! * **Timestamps and watermarks.** Side records carry the timestamps of the
//!   [`Semantics`](crate::Semantics) rule; a side output read as a stream is declared when the
//!   stage is built, so it receives every watermark and idle marker (docs/semantics.md A2.10),
//!   including the final `i64::MAX`: a keyed stage downstream of a side output has working
//!   event-time timers.
//! * **One consumer per tag.** A side output goes to one stream or one callback; a second consumer
//!   of the same tag is a configuration error when the job runs. The main output of a stage whose
//!   main branch is not run is discarded.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pinwheel_engine::shard::Turn;
use pinwheel_engine::time::Timestamp;

use super::build::BuildContext;
use super::stage::{Stage, StagePlan, Status};
use crate::error::{ConfigError, PipelineError};
use crate::output::{OutputTag, SideOutputs, StreamElement};

/// Elements each branch buffer of a shared stage holds by default (see the [module docs](self)).
pub const DEFAULT_BRANCH_BUFFER: usize = 1024;

/// Shared-stage ids: unique per `with_side_outputs` in the process.
static NEXT_STAGE: AtomicU64 = AtomicU64::new(1);

/// The callbacks given for a process stage's side outputs, as declared on its plan.
#[derive(Clone, Default)]
pub(crate) struct SideCallbacks {
    taps: Vec<Arc<dyn Fn() -> Box<dyn Tap> + Send + Sync>>,
    /// The id and type of each side output with a callback.
    tags: Vec<(Arc<str>, TypeId)>,
}

impl SideCallbacks {
    /// Side output `tag` goes to `f(value, timestamp)`.
    pub(crate) fn add<T: 'static>(
        &mut self,
        tag: &OutputTag<T>,
        f: impl Fn(T, Option<Timestamp>) + Send + Sync + 'static,
    ) {
        self.tags.push((Arc::from(tag.id()), TypeId::of::<T>()));
        let (tag, f) = (tag.clone(), Arc::new(f));
        self.taps.push(Arc::new(move || {
            Box::new(CallbackTap { tag: tag.clone(), f: f.clone() }) as Box<dyn Tap>
        }));
    }

    /// The side outputs that have a callback: id and type.
    pub(crate) fn tags(&self) -> &[(Arc<str>, TypeId)] {
        &self.tags
    }

    /// The taps of a running stage, starting with these callbacks.
    pub(crate) fn build(&self) -> SideTaps {
        SideTaps { taps: self.taps.iter().map(|make| make()).collect(), unconsumed: 0 }
    }
}

impl fmt::Debug for SideCallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SideCallbacks({})", self.taps.len())
    }
}

/// The consumers of one running process stage's side outputs (per shard).
pub(crate) struct SideTaps {
    taps: Vec<Box<dyn Tap>>,
    /// Side records that had no consumer, discarded.
    unconsumed: u64,
}

impl fmt::Debug for SideTaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideTaps")
            .field("taps", &self.taps.len())
            .field("unconsumed", &self.unconsumed)
            .finish()
    }
}

impl SideTaps {
    /// From now on, side output `tag` goes into `buffer`. The tag is declared at once, so it
    /// receives every watermark from here on (A2.10).
    fn add_branch<T: 'static>(
        &mut self,
        side: &mut SideOutputs,
        tag: &OutputTag<T>,
        buffer: Rc<BranchBuffer<T>>,
    ) {
        side.declare(tag);
        self.taps.push(Box::new(BranchTap { tag: tag.clone(), buffer }));
    }

    /// Moves every side output to its consumer, and discards (and counts) the records of the
    /// others. Once per pull of the stage.
    #[inline]
    pub(crate) fn drain(&mut self, side: &mut SideOutputs) {
        for tap in &mut self.taps {
            tap.drain(side);
        }
        self.unconsumed += side.discard_records();
    }
}

/// A consumer of one side output.
pub(crate) trait Tap {
    fn drain(&mut self, side: &mut SideOutputs);
}

struct CallbackTap<T, F> {
    tag: OutputTag<T>,
    f: Arc<F>,
}

impl<T: 'static, F: Fn(T, Option<Timestamp>)> Tap for CallbackTap<T, F> {
    fn drain(&mut self, side: &mut SideOutputs) {
        for e in side.declare(&self.tag).drain(..) {
            if let StreamElement::Record { value, timestamp } = e {
                (self.f)(value, timestamp);
            }
        }
    }
}

struct BranchTap<T> {
    tag: OutputTag<T>,
    buffer: Rc<BranchBuffer<T>>,
}

impl<T: 'static> Tap for BranchTap<T> {
    fn drain(&mut self, side: &mut SideOutputs) {
        let elements = side.declare(&self.tag);
        if !elements.is_empty() {
            let mut queue = self.buffer.queue.borrow_mut();
            queue.extend(elements.drain(..));
            self.buffer.len.set(queue.len());
        }
    }
}

/// One side branch's buffer on one shard.
struct BranchBuffer<T> {
    queue: RefCell<VecDeque<StreamElement<T>>>,
    /// The queue's length, also held by the tee (which checks every buffer before pulling).
    len: Rc<Cell<usize>>,
}

impl<T> BranchBuffer<T> {
    /// Moves everything buffered into `out`.
    #[inline]
    fn take_into(&self, out: &mut Vec<StreamElement<T>>) -> bool {
        let mut queue = self.queue.borrow_mut();
        if queue.is_empty() {
            return false;
        }
        out.extend(queue.drain(..));
        self.len.set(0);
        true
    }
}

/// A running process stage whose side outputs can be read as streams: its taps and buffers.
pub(crate) trait SideOutputSource: Stage {
    /// The stage's side-output buffers, and the taps that empty them after every pull.
    fn side_taps(&mut self) -> (&mut SideTaps, &mut SideOutputs);
}

/// How full the branch buffers of a shared stage got.
#[derive(Debug, Default)]
pub struct BranchStats {
    peak: AtomicUsize,
}

impl BranchStats {
    /// The most elements the branch buffers of one shard (main and side buffers together) held
    /// at once, over every shard and every run of the stage.
    pub fn peak_buffered(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// What every branch of a shared stage knows about it.
pub(crate) struct SharedStage<P> {
    id: u64,
    plan: P,
    pub(crate) capacity: AtomicUsize,
    /// Side outputs that have a consumer (a stream branch or a callback): id and type.
    claimed: Mutex<Vec<(Arc<str>, TypeId)>>,
    /// A configuration error found while the branches were declared, reported when they run.
    conflict: Mutex<Option<ConfigError>>,
    pub(crate) stats: Arc<BranchStats>,
}

impl<P> SharedStage<P> {
    pub(crate) fn new(plan: P, claimed: Vec<(Arc<str>, TypeId)>) -> Self {
        SharedStage {
            id: NEXT_STAGE.fetch_add(1, Ordering::Relaxed),
            plan,
            capacity: AtomicUsize::new(DEFAULT_BRANCH_BUFFER),
            claimed: Mutex::new(claimed),
            conflict: Mutex::new(None),
            stats: Arc::new(BranchStats::default()),
        }
    }

    /// Records that `tag` gets a stream consumer; a second consumer is a configuration error.
    pub(crate) fn claim<T: 'static>(&self, tag: &OutputTag<T>) {
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (Arc::<str>::from(tag.id()), TypeId::of::<T>());
        if claimed.contains(&key) {
            let mut conflict = self.conflict.lock().unwrap_or_else(PoisonError::into_inner);
            conflict.get_or_insert_with(|| ConfigError::SideOutputConsumedTwice {
                tag: tag.id().to_string(),
            });
        } else {
            claimed.push(key);
        }
    }
}

impl<P: StagePlan> SharedStage<P>
where
    P::Stage: SideOutputSource + 'static,
{
    /// This shard's tee: built by the first branch that asks, shared by the others.
    fn tee(&self, cx: &BuildContext) -> Result<Rc<RefCell<Tee<P::Stage>>>, PipelineError> {
        if let Some(conflict) = self.conflict.lock().unwrap_or_else(PoisonError::into_inner).clone()
        {
            return Err(conflict.into());
        }
        if let Some(any) = cx.shared.get(self.id) {
            // The registry holds this stage's tee under its id: the type is the stage's own.
            let tee = any
                .downcast::<RefCell<Tee<P::Stage>>>()
                .unwrap_or_else(|_| unreachable!("a shared stage's tee has its stage's type"));
            // Built once, but upstream of every branch: count its exchanges for each.
            cx.exchanges_built.set(cx.exchanges_built.get() + tee.borrow().exchanges);
            return Ok(tee);
        }
        // Not holding the registry while building: the stage's upstream may hold shared stages.
        let before = cx.exchanges_built.get();
        let stage = self.plan.build(cx)?;
        let exchanges = cx.exchanges_built.get() - before;
        let tee = Rc::new(RefCell::new(Tee {
            stage,
            main: None,
            side_lens: Vec::new(),
            capacity: self.capacity.load(Ordering::Relaxed).max(1),
            done: false,
            peak: 0,
            stats: self.stats.clone(),
            scratch: Vec::new(),
            exchanges,
        }));
        cx.shared.insert(self.id, tee.clone());
        Ok(tee)
    }
}

/// One shard's shared process stage and its branch buffers.
struct Tee<S: Stage> {
    stage: S,
    /// The main branch's buffer; `None` while no main branch is built (its output is discarded).
    main: Option<Vec<StreamElement<S::Item>>>,
    /// The length of every side branch's buffer.
    side_lens: Vec<Rc<Cell<usize>>>,
    capacity: usize,
    done: bool,
    peak: usize,
    stats: Arc<BranchStats>,
    /// Where a pull on behalf of a side branch puts the main output when there is no main branch.
    scratch: Vec<StreamElement<S::Item>>,
    /// The exchanges the stage and its upstream hold (see `BuildContext::exchanges_built`).
    exchanges: u64,
}

impl<S: Stage> Tee<S> {
    /// Elements buffered for the side branches.
    #[inline]
    fn side_buffered(&self) -> usize {
        self.side_lens.iter().map(|l| l.get()).sum()
    }

    /// True while some branch buffer is full: nobody pulls the stage until it drains.
    #[inline]
    fn full(&self) -> bool {
        self.main.as_ref().is_some_and(|m| m.len() >= self.capacity)
            || self.side_lens.iter().any(|l| l.get() >= self.capacity)
    }

    /// Pulls the stage once, its main output into the main buffer (or discarded), its side
    /// outputs into their buffers (by the stage's taps). Records the buffers' high-water mark.
    fn pull_stage(&mut self, cx: &mut Turn) -> Result<Status, PipelineError> {
        let Tee { stage, main, scratch, .. } = self;
        let status = match main.as_mut() {
            Some(main) => stage.pull(cx, main)?,
            None => {
                let status = stage.pull(cx, scratch)?;
                scratch.clear();
                status
            }
        };
        if status == Status::Done {
            self.done = true;
        }
        let total = self.side_buffered() + self.main.as_ref().map_or(0, Vec::len);
        if total > self.peak {
            self.peak = total;
            self.stats.peak.fetch_max(total, Ordering::Relaxed);
        }
        Ok(status)
    }
}

/// The main output of a process stage shared with side-output streams: the plan. Made by
/// [`DataStream::with_side_outputs`](super::DataStream::with_side_outputs).
pub struct MainOutputPlan<P> {
    pub(crate) stage: Arc<SharedStage<P>>,
}

impl<P> fmt::Debug for MainOutputPlan<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MainOutputPlan").field("stage", &self.stage.id).finish_non_exhaustive()
    }
}

/// A side output of a shared process stage, read as a stream: the plan. Made by
/// [`DataStream::side_output_stream`](super::DataStream::side_output_stream).
pub struct SideOutputPlan<P, T> {
    pub(crate) stage: Arc<SharedStage<P>>,
    pub(crate) tag: OutputTag<T>,
}

impl<P, T> fmt::Debug for SideOutputPlan<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideOutputPlan")
            .field("stage", &self.stage.id)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl<P> StagePlan for MainOutputPlan<P>
where
    P: StagePlan,
    P::Stage: SideOutputSource + 'static,
{
    type Item = P::Item;
    type Stage = MainOutputStage<P::Stage>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        let tee = self.stage.tee(cx)?;
        tee.borrow_mut().main.get_or_insert_with(Vec::new);
        Ok(MainOutputStage { tee })
    }
}

impl<P, T> StagePlan for SideOutputPlan<P, T>
where
    P: StagePlan,
    P::Stage: SideOutputSource + 'static,
    T: 'static,
{
    type Item = T;
    type Stage = SideOutputStage<P::Stage, T>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stage, PipelineError> {
        let tee = self.stage.tee(cx)?;
        let len = Rc::new(Cell::new(0));
        let buffer =
            Rc::new(BranchBuffer { queue: RefCell::new(VecDeque::new()), len: len.clone() });
        {
            let mut t = tee.borrow_mut();
            t.side_lens.push(len);
            let (taps, side) = t.stage.side_taps();
            taps.add_branch(side, &self.tag, buffer.clone());
        }
        Ok(SideOutputStage { tee, buffer })
    }
}

/// The main output of a shared process stage: the running branch.
pub struct MainOutputStage<S: Stage> {
    tee: Rc<RefCell<Tee<S>>>,
}

impl<S: Stage> fmt::Debug for MainOutputStage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MainOutputStage").finish_non_exhaustive()
    }
}

impl<S: Stage> Stage for MainOutputStage<S> {
    type Item = S::Item;

    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<S::Item>>,
    ) -> Result<Status, PipelineError> {
        let mut tee = self.tee.borrow_mut();
        if let Some(main) = tee.main.as_mut()
            && !main.is_empty()
        {
            out.append(main);
            return Ok(if tee.done { Status::Done } else { Status::Busy });
        }
        if tee.done {
            return Ok(Status::Done);
        }
        if tee.full() {
            // A side branch is behind: wait for it (the shard loop pulls it meanwhile).
            return Ok(Status::Idle);
        }
        let before = tee.side_buffered();
        let status = tee.pull_stage(cx)?;
        let grew = tee.side_buffered() > before;
        if let Some(main) = tee.main.as_mut() {
            out.append(main);
        }
        Ok(match status {
            // Work was done for the side branches: not idle.
            Status::Idle if grew => Status::Busy,
            other => other,
        })
    }
}

/// A side output of a shared process stage: the running branch.
pub struct SideOutputStage<S: Stage, T> {
    tee: Rc<RefCell<Tee<S>>>,
    buffer: Rc<BranchBuffer<T>>,
}

impl<S: Stage, T> fmt::Debug for SideOutputStage<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideOutputStage")
            .field("buffered", &self.buffer.len.get())
            .finish_non_exhaustive()
    }
}

impl<S: Stage, T> Stage for SideOutputStage<S, T> {
    type Item = T;

    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<T>>,
    ) -> Result<Status, PipelineError> {
        if self.buffer.take_into(out) {
            return Ok(Status::Busy);
        }
        let mut tee = self.tee.borrow_mut();
        if tee.done {
            return Ok(Status::Done);
        }
        if tee.full() {
            // A sibling is behind (the shard loop pulls it meanwhile).
            return Ok(Status::Idle);
        }
        let before = tee.side_buffered();
        let status = tee.pull_stage(cx)?;
        let grew = tee.side_buffered() > before;
        let main_has = tee.main.as_ref().is_some_and(|m| !m.is_empty());
        drop(tee);
        let got = self.buffer.take_into(out);
        Ok(match status {
            Status::Done if got => Status::Busy,
            Status::Done => Status::Done,
            // Work done for a sibling is not idleness.
            Status::Idle if !(got || grew || main_has) => Status::Idle,
            _ => Status::Busy,
        })
    }
}
