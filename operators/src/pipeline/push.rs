//! The push source: an unbounded input that the embedding program feeds.
//!
//! [`Pipeline::push_source`] returns a [`PushHandle`] and the stream it feeds. The handle is
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
//! * **Idle shard.** When the queue is empty the source reports [`Poll::Pending`], so the shard
//!   loop idles (spin, yield, then sleeps of at most 500 µs). Reading costs one non-blocking
//!   `try_recv` per element; the queue wakes a pusher blocked on a full queue.

use std::fmt;
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use pinwheel_engine::time::{MAX_WATERMARK, Timestamp};

use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
use super::{DataStream, Pipeline};
use crate::error::PipelineError;
use crate::output::StreamElement;

impl Pipeline {
    /// An unbounded source fed by the embedding program: returns the handle to push into and the
    /// stream it feeds. The queue between them holds `capacity` elements (at least 1): a full
    /// queue blocks [`PushHandle::push`] (backpressure). The input ends when every clone of the
    /// handle is dropped or [finished](PushHandle::finish). See the [module docs](self).
    ///
    /// A few thousand elements is a good capacity: a shard that finds the queue empty idles (for
    /// up to 500 µs at a time once it has spun and yielded), so a tiny queue caps the throughput.
    ///
    /// ```
    /// use pinwheel_operators::pipeline::Pipeline;
    ///
    /// let (input, stream) = Pipeline::new().shards(1).push_source::<u64>(1024);
    /// let pusher = std::thread::spawn(move || {
    ///     for i in 0..100 {
    ///         input.push(i).expect("the pipeline is running");
    ///     }
    ///     // `input` is dropped here: the input ends and the pipeline drains.
    /// });
    /// let doubled = stream.map(|i| i * 2).collect()?;
    /// pusher.join().unwrap();
    /// assert_eq!(doubled, (0..100).map(|i| i * 2).collect::<Vec<u64>>());
    /// # Ok::<(), pinwheel_operators::PipelineError>(())
    /// ```
    pub fn push_source<T: Send + 'static>(
        &self,
        capacity: usize,
    ) -> (PushHandle<T>, DataStream<PushSource<T>>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (PushHandle { tx }, self.from_source(PushSource { rx: Mutex::new(Some(rx)) }))
    }
}

/// The pushing end of a [push source](Pipeline::push_source). Clone it to push from several
/// threads; the input ends when every clone is gone.
pub struct PushHandle<T> {
    tx: Sender<StreamElement<T>>,
}

impl<T> Clone for PushHandle<T> {
    fn clone(&self) -> Self {
        PushHandle { tx: self.tx.clone() }
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
    /// (watermarks that do not advance are dropped by the operators, SEMANTICS A2.3). Waits while
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
        self.tx.send(element).map_err(|e| PushError(e.0))
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
        })
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
/// are empty). Made by [`Pipeline::push_source`].
pub struct PushSource<T> {
    rx: Mutex<Option<Receiver<StreamElement<T>>>>,
}

impl<T> fmt::Debug for PushSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushSource").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> StreamPlan for PushSource<T> {
    type Item = T;
    type Stream = PushStream<T>;

    fn build(&self, cx: &BuildContext) -> Result<PushStream<T>, PipelineError> {
        let rx = if cx.shard.index == 0 {
            // A poisoned lock only means another shard panicked while building; the data is intact.
            let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
            if rx.is_none() {
                return Err(PipelineError::Config(
                    "a push source can be run once: its queue was already taken by another run"
                        .to_string(),
                ));
            }
            rx
        } else {
            None
        };
        Ok(PushStream { rx, ended: false })
    }
}

/// A push source: the running partition.
pub struct PushStream<T> {
    rx: Option<Receiver<StreamElement<T>>>,
    ended: bool,
}

impl<T> fmt::Debug for PushStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushStream")
            .field("queued", &self.rx.as_ref().map_or(0, Receiver::len))
            .field("ended", &self.ended)
            .finish()
    }
}

impl<T> Stream for PushStream<T> {
    type Item = T;

    #[inline]
    fn poll_next(&mut self, _: &mut PollContext) -> Result<Poll<T>, PipelineError> {
        if let Some(rx) = self.rx.as_ref() {
            match rx.try_recv() {
                Ok(e) => return Ok(Poll::Ready(e)),
                Err(TryRecvError::Empty) => return Ok(Poll::Pending),
                // Every handle is gone and the queue is empty: the input has ended.
                Err(TryRecvError::Disconnected) => self.rx = None,
            }
        }
        if self.ended {
            return Ok(Poll::Done);
        }
        self.ended = true;
        Ok(Poll::Ready(StreamElement::Watermark(MAX_WATERMARK)))
    }
}
