//! Side outputs read as streams (Flink's `getSideOutput`).
//!
//! ```text
//!                            ┌─ main buffer ──► MainOutputStream ──► … ──► sink A
//!   upstream ──► process ──► tee (one per shard)
//!                            └─ side buffer ──► SideOutputStream ──► map / key_by / process ──► sink B
//! ```
//!
//! [`DataStream::with_side_outputs`] turns a process stage into a stage shared by several
//! branches: its main output continues as a [`DataStream`], and
//! [`side_output_stream`](DataStream::side_output_stream) gives a side output as another
//! `DataStream`, which can be mapped, filtered, keyed again and processed like any other. Every
//! branch must run in the same [`Job`](super::Job), which feeds each to its own sink, on the same
//! shards:
//!
//! * **Built once per shard.** Each shard builds the process stage once (the first branch to be
//!   built does, through the shard's registry of shared stages) and every branch holds the shard's
//!   *tee*: the stage and one buffer per branch. Whichever branch is polled pulls the stage;
//!   elements for the other branches wait in their buffers.
//! * **Bounded.** A branch buffer holds about [`DEFAULT_BRANCH_BUFFER`] elements (set with
//!   [`branch_buffer`](DataStream::branch_buffer)): while any buffer is full, no branch pulls the
//!   stage, so a branch whose sink is slow holds the others back (backpressure) instead of growing
//!   memory. A buffer can exceed its bound by what one batch of the stage emits to it (side records
//!   arrive a batch at a time), never more. [`BranchStats`] reports the most elements the buffers
//!   of a shard held at once.
//! * **No deadlock.** A branch that waits for a full sibling reports `Pending`, and the job's shard
//!   loop keeps polling every root in turn, so the full buffer drains.
//! * **Timestamps and watermarks.** Side records carry the timestamps of the
//!   [`Semantics`](crate::Semantics) rule; a side output read as a stream is declared when the stage
//!   is built, so it receives every watermark and idle marker (SEMANTICS A2.10), including the
//!   final `i64::MAX`: a keyed stage downstream of a side output has working event-time timers.
//! * **One consumer per tag.** A side output goes to one stream or one callback
//!   ([`side_output`](DataStream::side_output)); a second consumer of the same tag is a
//!   configuration error when the job runs. Side outputs without a consumer are discarded and
//!   counted, as before; the main output of a stage whose main branch is not run is discarded.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::DataStream;
use super::process::{KeyedProcessPlan, ProcessPlan};
use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
use crate::error::PipelineError;
use crate::output::{OutputTag, SideOutputs, StreamElement};

/// Elements each branch buffer of a shared stage holds by default (see the [module docs](self)).
pub const DEFAULT_BRANCH_BUFFER: usize = 1024;

/// How many elements one poll of a side branch pulls for its siblings before it yields.
const PULL_BUDGET: usize = 512;

/// Shared-stage ids: unique per `with_side_outputs` in the process.
static NEXT_STAGE: AtomicU64 = AtomicU64::new(1);

/// One shard's registry of shared stages, built once and held by every branch (graph
/// construction only).
#[derive(Clone, Default)]
pub(crate) struct SharedStages {
    stages: Rc<RefCell<HashMap<u64, Rc<dyn Any>>>>,
}

impl fmt::Debug for SharedStages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedStages({})", self.stages.borrow().len())
    }
}

/// A running process stage whose side outputs can be read as streams: implemented by
/// [`KeyedProcessStream`](super::KeyedProcessStream) and [`ProcessStream`](super::ProcessStream).
pub trait SideOutputStage: Stream {
    /// The stage's side-output buffers, and the taps that empty them into stream branches after
    /// every batch.
    fn side_taps(&mut self) -> (&mut SideTaps, &mut SideOutputs);
}

/// The side outputs of one running process stage that stream branches read (per shard).
#[derive(Default)]
pub struct SideTaps {
    taps: Vec<Box<dyn Tap>>,
}

impl fmt::Debug for SideTaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SideTaps({})", self.taps.len())
    }
}

impl SideTaps {
    /// From now on, side output `tag` goes into `buffer`. The tag is declared at once, so it
    /// receives every watermark from here on (SEMANTICS A2.10).
    fn add<T: 'static>(
        &mut self,
        side: &mut SideOutputs,
        tag: &OutputTag<T>,
        buffer: Rc<BranchBuffer<T>>,
    ) {
        side.declare(tag);
        self.taps.push(Box::new(TagTap { tag: tag.clone(), buffer }));
    }

    /// Moves every tapped side output into its branch buffer (once per batch).
    #[inline]
    pub(crate) fn drain(&mut self, side: &mut SideOutputs) {
        for tap in &mut self.taps {
            tap.drain(side);
        }
    }
}

trait Tap {
    fn drain(&mut self, side: &mut SideOutputs);
}

struct TagTap<T> {
    tag: OutputTag<T>,
    buffer: Rc<BranchBuffer<T>>,
}

impl<T: 'static> Tap for TagTap<T> {
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
    #[inline]
    fn pop(&self) -> Option<StreamElement<T>> {
        let mut queue = self.queue.borrow_mut();
        let e = queue.pop_front();
        if e.is_some() {
            self.len.set(queue.len());
        }
        e
    }
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
struct SharedStage<P> {
    id: u64,
    plan: P,
    capacity: AtomicUsize,
    /// Side outputs that have a consumer (a stream branch or a callback): id and type.
    claimed: Mutex<Vec<(Arc<str>, TypeId)>>,
    /// A configuration error found while the branches were declared, reported when they run.
    conflict: Mutex<Option<String>>,
    stats: Arc<BranchStats>,
}

impl<P> SharedStage<P> {
    fn new(plan: P, claimed: Vec<(Arc<str>, TypeId)>) -> Self {
        SharedStage {
            id: NEXT_STAGE.fetch_add(1, Ordering::Relaxed),
            plan,
            capacity: AtomicUsize::new(DEFAULT_BRANCH_BUFFER),
            claimed: Mutex::new(claimed),
            conflict: Mutex::new(None),
            stats: Arc::new(BranchStats::default()),
        }
    }

    fn claim<T: 'static>(&self, tag: &OutputTag<T>) {
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        let key = (Arc::<str>::from(tag.id()), TypeId::of::<T>());
        if claimed.contains(&key) {
            let mut conflict = self.conflict.lock().unwrap_or_else(|p| p.into_inner());
            conflict.get_or_insert_with(|| {
                format!(
                    "side output {:?} has two consumers: read each side output through one \
                     stream or one callback",
                    tag.id()
                )
            });
        } else {
            claimed.push(key);
        }
    }
}

impl<P: StreamPlan> SharedStage<P>
where
    P::Stream: SideOutputStage + 'static,
{
    /// This shard's tee: built by the first branch that asks, shared by the others.
    fn tee(&self, cx: &BuildContext) -> Result<Rc<RefCell<Tee<P::Stream>>>, PipelineError> {
        if let Some(conflict) = self.conflict.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(PipelineError::Config(conflict));
        }
        let existing = cx.shared.stages.borrow().get(&self.id).cloned();
        if let Some(any) = existing {
            return any.downcast::<RefCell<Tee<P::Stream>>>().map_err(|_| {
                PipelineError::Config(format!("shared stage {}: a branch of another type", self.id))
            });
        }
        // Not holding the registry while building: the stage's upstream may hold shared stages.
        let stream = self.plan.build(cx)?;
        let tee = Rc::new(RefCell::new(Tee {
            stream,
            main: None,
            side_lens: Vec::new(),
            capacity: self.capacity.load(Ordering::Relaxed).max(1),
            done: false,
            peak: 0,
            stats: self.stats.clone(),
        }));
        cx.shared.stages.borrow_mut().insert(self.id, tee.clone());
        Ok(tee)
    }
}

/// One shard's shared process stage and its branch buffers.
struct Tee<S: Stream> {
    stream: S,
    /// The main branch's buffer; `None` while no main branch is built (its output is discarded).
    main: Option<VecDeque<StreamElement<S::Item>>>,
    /// The length of every side branch's buffer.
    side_lens: Vec<Rc<Cell<usize>>>,
    capacity: usize,
    done: bool,
    peak: usize,
    stats: Arc<BranchStats>,
}

impl<S: Stream> Tee<S> {
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

    /// Records the buffers' high-water mark.
    #[inline]
    fn note_peak(&mut self, side_buffered: usize) {
        let total = side_buffered + self.main.as_ref().map_or(0, VecDeque::len);
        if total > self.peak {
            self.peak = total;
            self.stats.peak.fetch_max(total, Ordering::Relaxed);
        }
    }
}

/// The main output of a process stage shared with side-output streams: the plan. Made by
/// [`DataStream::with_side_outputs`].
pub struct MainOutputPlan<P> {
    stage: Arc<SharedStage<P>>,
}

impl<P> fmt::Debug for MainOutputPlan<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MainOutputPlan").field("stage", &self.stage.id).finish_non_exhaustive()
    }
}

/// A side output of a shared process stage, read as a stream: the plan. Made by
/// [`DataStream::side_output_stream`].
pub struct SideOutputPlan<P, T> {
    stage: Arc<SharedStage<P>>,
    tag: OutputTag<T>,
}

impl<P, T> fmt::Debug for SideOutputPlan<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideOutputPlan")
            .field("stage", &self.stage.id)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl<P> StreamPlan for MainOutputPlan<P>
where
    P: StreamPlan,
    P::Stream: SideOutputStage + 'static,
{
    type Item = P::Item;
    type Stream = MainOutputStream<P::Stream>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        let tee = self.stage.tee(cx)?;
        tee.borrow_mut().main.get_or_insert_with(VecDeque::new);
        Ok(MainOutputStream { tee })
    }
}

impl<P, T> StreamPlan for SideOutputPlan<P, T>
where
    P: StreamPlan,
    P::Stream: SideOutputStage + 'static,
    T: 'static,
{
    type Item = T;
    type Stream = SideOutputStream<P::Stream, T>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        let tee = self.stage.tee(cx)?;
        let len = Rc::new(Cell::new(0));
        let buffer =
            Rc::new(BranchBuffer { queue: RefCell::new(VecDeque::new()), len: len.clone() });
        {
            let mut t = tee.borrow_mut();
            t.side_lens.push(len);
            let (taps, side) = t.stream.side_taps();
            taps.add(side, &self.tag, buffer.clone());
        }
        Ok(SideOutputStream { tee, buffer })
    }
}

/// The main output of a shared process stage: the running branch.
pub struct MainOutputStream<S: Stream> {
    tee: Rc<RefCell<Tee<S>>>,
}

impl<S: Stream> fmt::Debug for MainOutputStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MainOutputStream").finish_non_exhaustive()
    }
}

impl<S: Stream> Stream for MainOutputStream<S> {
    type Item = S::Item;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<S::Item>, PipelineError> {
        let mut tee = self.tee.borrow_mut();
        if let Some(e) = tee.main.as_mut().and_then(VecDeque::pop_front) {
            return Ok(Poll::Ready(e));
        }
        if tee.done {
            return Ok(Poll::Done);
        }
        if tee.full() {
            // A side branch is behind: wait for it (the shard loop polls it meanwhile).
            return Ok(Poll::Pending);
        }
        let before = tee.side_buffered();
        let polled = tee.stream.poll_next(cx)?;
        let after = tee.side_buffered();
        if after > before {
            tee.note_peak(after);
        }
        Ok(match polled {
            Poll::Ready(e) => Poll::Ready(e),
            Poll::Done => {
                tee.done = true;
                Poll::Done
            }
            // Work was done for the side branches: not idle.
            Poll::Pending if after > before => Poll::Yield,
            other => other,
        })
    }
}

/// A side output of a shared process stage: the running branch.
pub struct SideOutputStream<S: Stream, T> {
    tee: Rc<RefCell<Tee<S>>>,
    buffer: Rc<BranchBuffer<T>>,
}

impl<S: Stream, T> fmt::Debug for SideOutputStream<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideOutputStream")
            .field("buffered", &self.buffer.len.get())
            .finish_non_exhaustive()
    }
}

impl<S: Stream, T> Stream for SideOutputStream<S, T> {
    type Item = T;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<T>, PipelineError> {
        let mut pulled = 0;
        loop {
            if let Some(e) = self.buffer.pop() {
                return Ok(Poll::Ready(e));
            }
            let mut tee = self.tee.borrow_mut();
            if tee.done {
                return Ok(Poll::Done);
            }
            if tee.full() || pulled >= PULL_BUDGET {
                // A sibling is behind (the shard loop polls it meanwhile), or this turn is over.
                return Ok(if pulled > 0 { Poll::Yield } else { Poll::Pending });
            }
            let before = tee.side_buffered();
            let polled = tee.stream.poll_next(cx)?;
            let after = tee.side_buffered();
            match polled {
                Poll::Ready(e) => {
                    pulled += 1;
                    // The main branch's element waits in its buffer (discarded if it has none).
                    if let Some(main) = tee.main.as_mut() {
                        main.push_back(e);
                    }
                    tee.note_peak(after);
                }
                Poll::Done => tee.done = true,
                Poll::Yield | Poll::Pending => {
                    let grew = after > before;
                    if grew {
                        tee.note_peak(after);
                    }
                    if self.buffer.len.get() > 0 {
                        continue;
                    }
                    // Work done for a sibling is not idleness.
                    let busy = grew || pulled > 0 || matches!(polled, Poll::Yield);
                    return Ok(if busy { Poll::Yield } else { Poll::Pending });
                }
            }
        }
    }
}

impl<P, KS, FF> DataStream<KeyedProcessPlan<P, KS, FF>> {
    /// Shares this keyed process stage between its main output (the returned stream) and side
    /// outputs read as streams ([`side_output_stream`](DataStream::side_output_stream)), in one
    /// [`Job`](super::Job). See the [side module docs](super::side). Name the stage and add
    /// side-output callbacks first.
    pub fn with_side_outputs(self) -> DataStream<MainOutputPlan<KeyedProcessPlan<P, KS, FF>>> {
        let claimed = self.plan.side.tags().to_vec();
        DataStream {
            plan: MainOutputPlan { stage: Arc::new(SharedStage::new(self.plan, claimed)) },
            env: self.env,
        }
    }
}

impl<P, FF> DataStream<ProcessPlan<P, FF>> {
    /// Shares this process stage between its main output (the returned stream) and side outputs
    /// read as streams ([`side_output_stream`](DataStream::side_output_stream)), in one
    /// [`Job`](super::Job). See the [side module docs](super::side). Name the stage and add
    /// side-output callbacks first.
    pub fn with_side_outputs(self) -> DataStream<MainOutputPlan<ProcessPlan<P, FF>>> {
        let claimed = self.plan.side.tags().to_vec();
        DataStream {
            plan: MainOutputPlan { stage: Arc::new(SharedStage::new(self.plan, claimed)) },
            env: self.env,
        }
    }
}

impl<P> DataStream<MainOutputPlan<P>> {
    /// The side output `tag` of this stage as a stream (Flink's `getSideOutput`): its records,
    /// with the timestamps of the [`Semantics`](crate::Semantics) rule, and every watermark of
    /// the stage. Run it in the same [`Job`](super::Job) as the main output. A tag can be read by
    /// one consumer only.
    pub fn side_output_stream<T: 'static>(
        &self,
        tag: &OutputTag<T>,
    ) -> DataStream<SideOutputPlan<P, T>> {
        self.plan.stage.claim(tag);
        DataStream {
            plan: SideOutputPlan { stage: self.plan.stage.clone(), tag: tag.clone() },
            env: self.env.clone(),
        }
    }

    /// Elements each branch buffer holds before the stage stops (default
    /// [`DEFAULT_BRANCH_BUFFER`], at least 1); applies to every branch of the stage.
    pub fn branch_buffer(self, elements: usize) -> Self {
        self.plan.stage.capacity.store(elements.max(1), Ordering::Relaxed);
        self
    }

    /// How full this stage's branch buffers got (updated while it runs).
    pub fn branch_stats(&self) -> Arc<BranchStats> {
        self.plan.stage.stats.clone()
    }
}
