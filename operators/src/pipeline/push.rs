//! The push source: an unbounded input that the embedding program feeds.
//!
//! [`Pipeline::push_source`](super::Pipeline::push_source) returns a [`PushHandle`] and the stream it feeds. The handle is
//! `Clone + Send + Sync`: any thread may push records (with or without an event timestamp),
//! watermarks and idle markers into a bounded queue, which shard 0 reads as the source's one
//! partition (as [`IterSource`](super::IterSource)); `key_by` spreads the keys over the shards.
//!
//! * **Order.** Elements keep the order in which they were pushed through one handle (and the
//!   order of the queue across handles): the queue is one FIFO.
//! * **Backpressure.** The queue holds `capacity` elements; [`PushHandle::push`] blocks while it is
//!   full, [`PushHandle::try_push`] hands the value back instead.
//! * **End of input.** The input ends when every handle has been dropped (or consumed by
//!   [`PushHandle::finish`]): the source then plays out what is queued, emits the final watermark
//!   `i64::MAX` (every pending event-time timer fires) and ends, and the pipeline drains and
//!   returns. A handle kept alive keeps the pipeline running.
//! * **Stopped pipeline.** Once the pipeline has stopped (finished, failed, cancelled, or dropped
//!   before it ran), pushing fails with an error that hands the value back.
//! * **Idle shard.** When the queue is empty the source reports [`Status::Idle`], so the shard
//!   idles (spins, yields, then parks); every push wakes it (and so does the end of the input).
//!   Reading costs one non-blocking `try_recv` per element; the queue wakes a pusher blocked on a
//!   full queue.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use pinwheel_engine::shard::{ShardWaker, Turn};
use pinwheel_engine::time::{MAX_WATERMARK, Timestamp};

use super::build::BuildContext;
use super::stage::{BATCH, Stage, StagePlan, Status};
use crate::error::{ConfigError, PipelineError};
use crate::output::StreamElement;

/// A push source's two ends: the handle and the plan.
pub(crate) fn push_source<T: Send + 'static>(capacity: usize) -> (PushHandle<T>, PushSource<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let waker = Arc::new(OnceLock::new());
    (PushHandle { tx, waker: waker.clone() }, PushSource { rx: Mutex::new(Some(rx)), waker })
}

/// The pushing end of a [push source](super::Pipeline::push_source). Clone it to push from several
/// threads; the input ends when every clone is gone.
pub struct PushHandle<T> {
    tx: Sender<StreamElement<T>>,
    /// The waker of the shard that reads the queue, once the pipeline runs.
    waker: Arc<OnceLock<ShardWaker>>,
}

impl<T> Clone for PushHandle<T> {
    fn clone(&self) -> Self {
        PushHandle { tx: self.tx.clone(), waker: self.waker.clone() }
    }
}

impl<T> Drop for PushHandle<T> {
    /// The last handle gone ends the input: the reading shard must see it.
    fn drop(&mut self) {
        self.wake();
    }
}

impl<T> fmt::Debug for PushHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushHandle")
            .field("queued", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .finish()
    }
}

impl<T> PushHandle<T> {
    /// Pushes a record without a timestamp, waiting while the queue is full. Fails, handing the
    /// value back, once the pipeline has stopped.
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        self.push_element(StreamElement::untimed(value)).map_err(|e| PushError(record_of(e.0)))
    }

    /// Pushes a record with the event timestamp `timestamp`, waiting while the queue is full.
    /// Fails, handing the value back, once the pipeline has stopped.
    pub fn push_at(&self, value: T, timestamp: Timestamp) -> Result<(), PushError<T>> {
        self.push_element(StreamElement::record(value, timestamp))
            .map_err(|e| PushError(record_of(e.0)))
    }

    /// Pushes a watermark: no record with a timestamp `<= watermark` is expected any more
    /// (watermarks that do not advance are dropped by the operators, docs/semantics.md A2.3). Waits while
    /// the queue is full; fails, handing the watermark back, once the pipeline has stopped.
    pub fn push_watermark(&self, watermark: Timestamp) -> Result<(), PushError<Timestamp>> {
        self.push_element(StreamElement::Watermark(watermark)).map_err(|_| PushError(watermark))
    }

    /// Declares the input idle: it stops holding back downstream watermarks until the next
    /// record or watermark. Waits while the queue is full; fails once the pipeline has stopped.
    pub fn mark_idle(&self) -> Result<(), PushError<()>> {
        self.push_element(StreamElement::Idle).map_err(|_| PushError(()))
    }

    /// Pushes any stream element, waiting while the queue is full. Fails, handing the element
    /// back, once the pipeline has stopped.
    pub fn push_element(
        &self,
        element: StreamElement<T>,
    ) -> Result<(), PushError<StreamElement<T>>> {
        self.tx.send(element).map_err(|e| PushError(e.0))?;
        self.wake();
        Ok(())
    }

    /// Wakes the reading shard, in case it is parked.
    #[inline]
    fn wake(&self) {
        if let Some(waker) = self.waker.get() {
            waker.wake();
        }
    }

    /// Pushes a record without a timestamp if the queue has room; otherwise hands it back at once.
    pub fn try_push(&self, value: T) -> Result<(), TryPushError<T>> {
        self.try_push_element(StreamElement::untimed(value)).map_err(|e| e.map(record_of))
    }

    /// Pushes a record with the event timestamp `timestamp` if the queue has room; otherwise
    /// hands it back at once.
    pub fn try_push_at(&self, value: T, timestamp: Timestamp) -> Result<(), TryPushError<T>> {
        self.try_push_element(StreamElement::record(value, timestamp)).map_err(|e| e.map(record_of))
    }

    /// Pushes any stream element if the queue has room; otherwise hands it back at once.
    pub fn try_push_element(
        &self,
        element: StreamElement<T>,
    ) -> Result<(), TryPushError<StreamElement<T>>> {
        self.tx.try_send(element).map_err(|e| match e {
            TrySendError::Full(e) => TryPushError::Full(e),
            TrySendError::Disconnected(e) => TryPushError::Stopped(e),
        })?;
        self.wake();
        Ok(())
    }

    /// Elements queued and not yet read by the pipeline.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }

    /// Gives up this handle. Once every handle is finished or dropped, the input ends: the
    /// pipeline plays out what is queued, emits the final watermark and drains.
    pub fn finish(self) {}
}

/// The value of a record element (the handle only builds records for these calls).
fn record_of<T>(element: StreamElement<T>) -> T {
    match element {
        StreamElement::Record { value, .. } => value,
        // `push`, `push_at`, `try_push` and `try_push_at` only ever send records.
        _ => unreachable!("a record was pushed"),
    }
}

/// Pushing failed because the pipeline has stopped (it finished, failed or was cancelled, or it
/// was dropped before it ran). The value is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PushError<T>(pub T);

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushError(..)")
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pipeline has stopped: nothing more can be pushed")
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why [`PushHandle::try_push`] handed its value back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The queue is full (the pipeline is behind); try again later, or use
    /// [`push`](PushHandle::push) to wait.
    Full(T),
    /// The pipeline has stopped.
    Stopped(T),
}

impl<T> TryPushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v) | TryPushError::Stopped(v) => v,
        }
    }

    /// True if the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPushError::Full(_))
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> TryPushError<U> {
        match self {
            TryPushError::Full(v) => TryPushError::Full(f(v)),
            TryPushError::Stopped(v) => TryPushError::Stopped(f(v)),
        }
    }
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("Full(..)"),
            TryPushError::Stopped(_) => f.write_str("Stopped(..)"),
        }
    }
}

impl<T> fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("the push source's queue is full"),
            TryPushError::Stopped(_) => {
                f.write_str("the pipeline has stopped: nothing more can be pushed")
            }
        }
    }
}

impl<T> std::error::Error for TryPushError<T> {}

/// A push source: the plan. Its one partition is read by shard 0 (the other shards' partitions
/// are empty). Made by [`Pipeline::push_source`](super::Pipeline::push_source).
pub struct PushSource<T> {
    rx: Mutex<Option<Receiver<StreamElement<T>>>>,
    waker: Arc<OnceLock<ShardWaker>>,
}

impl<T> fmt::Debug for PushSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushSource").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> StagePlan for PushSource<T> {
    type Item = T;
    type Stage = PushStage<T>;

    fn build(&self, cx: &BuildContext) -> Result<PushStage<T>, PipelineError> {
        let rx = if cx.shard().index == 0 {
            // A poisoned lock only means another shard panicked while building; the data is intact.
            let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
            if rx.is_none() {
                return Err(ConfigError::PushSourceReused.into());
            }
            // Pushes wake this shard from now on (the first run is the only one: see above).
            let _ = self.waker.set(cx.waker().clone());
            rx
        } else {
            None
        };
        Ok(PushStage { rx, ended: false })
    }
}

/// A push source: the running partition.
pub struct PushStage<T> {
    rx: Option<Receiver<StreamElement<T>>>,
    ended: bool,
}

impl<T> fmt::Debug for PushStage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushStage")
            .field("queued", &self.rx.as_ref().map_or(0, Receiver::len))
            .field("ended", &self.ended)
            .finish()
    }
}

impl<T> Stage for PushStage<T> {
    type Item = T;

    #[inline]
    fn pull(
        &mut self,
        _: &mut Turn,
        out: &mut Vec<StreamElement<T>>,
    ) -> Result<Status, PipelineError> {
        if let Some(rx) = self.rx.as_ref() {
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(e) => out.push(e),
                    // Drained for now: the next push wakes the shard.
                    Err(TryRecvError::Empty) => return Ok(Status::Idle),
                    // Every handle is gone and the queue is empty: the input has ended.
                    Err(TryRecvError::Disconnected) => {
                        self.rx = None;
                        break;
                    }
                }
            }
            if self.rx.is_some() {
                return Ok(Status::Busy);
            }
        }
        if self.ended {
            return Ok(Status::Done);
        }
        self.ended = true;
        out.push(StreamElement::Watermark(MAX_WATERMARK));
        Ok(Status::Done)
    }
}
