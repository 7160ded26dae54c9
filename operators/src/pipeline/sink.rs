//! Sinks, and the loop that drives a pipeline into one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use pinwheel_engine::shard::{IdleBackoff, panic_message};
use pinwheel_engine::time::Clock;

use super::stream::{Poll, PollContext, Stream};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Where the elements of a pipeline's final stream go.
pub trait Sink<T> {
    /// Takes one element (records, watermarks and idle markers, in order).
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError>;

    /// Called once after the last element.
    fn finish(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// Collects record values into a `Vec`.
#[derive(Debug)]
pub struct VecSink<T>(pub Vec<T>);

impl<T> Sink<T> for VecSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError> {
        if let StreamElement::Record { value, .. } = element {
            self.0.push(value);
        }
        Ok(())
    }
}

/// Collects every element (records with timestamps, watermarks, idle markers).
#[derive(Debug)]
pub struct ElementSink<T>(pub Vec<StreamElement<T>>);

impl<T> Sink<T> for ElementSink<T> {
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError> {
        self.0.push(element);
        Ok(())
    }
}

/// Calls a function for every record value.
#[derive(Debug)]
pub struct FnSink<F>(pub F);

impl<T, F: FnMut(T)> Sink<T> for FnSink<F> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError> {
        if let StreamElement::Record { value, .. } = element {
            (self.0)(value);
        }
        Ok(())
    }
}

/// Sends record values into a bounded channel; a full channel blocks the pipeline (backpressure),
/// a dropped receiver stops it with [`PipelineError::Stopped`].
#[derive(Debug)]
pub struct ChannelSink<T>(pub crossbeam_channel::Sender<T>);

impl<T> Sink<T> for ChannelSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError> {
        if let StreamElement::Record { value, .. } = element {
            self.0.send(value).map_err(|_| PipelineError::Stopped)?;
        }
        Ok(())
    }
}

/// Sends record values in batches (of up to [`BatchSink::BATCH`]) through a bounded channel: the
/// per-shard sink behind [`DataStream::for_each`](super::DataStream::for_each) on several shards.
#[derive(Debug)]
pub struct BatchSink<T> {
    tx: crossbeam_channel::Sender<Vec<T>>,
    buf: Vec<T>,
}

impl<T> BatchSink<T> {
    /// Values per batch.
    pub const BATCH: usize = 1024;

    /// A sink sending into `tx`.
    pub fn new(tx: crossbeam_channel::Sender<Vec<T>>) -> Self {
        BatchSink { tx, buf: Vec::with_capacity(Self::BATCH) }
    }

    fn send(&mut self) -> Result<(), PipelineError> {
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::BATCH));
        self.tx.send(batch).map_err(|_| PipelineError::Stopped)
    }
}

impl<T> Sink<T> for BatchSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), PipelineError> {
        if let StreamElement::Record { value, .. } = element {
            self.buf.push(value);
            if self.buf.len() >= Self::BATCH {
                self.send()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), PipelineError> {
        if self.buf.is_empty() { Ok(()) } else { self.send() }
    }
}

/// How many elements the loop hands to the sink before it reads the clock again.
const OUTPUTS_PER_TURN: usize = 4096;

/// Drives `stream` to its end into `sink`, reading `clock` once per loop turn. When nothing is
/// ready it spins briefly, then yields, then sleeps up to a millisecond (never past the next
/// processing-time timer a stage asked to be woken for). `stop` ends the run early.
pub(crate) fn drive<S: Stream>(
    stream: &mut S,
    sink: &mut impl Sink<S::Item>,
    clock: &dyn Clock,
    stop: Option<&AtomicBool>,
) -> Result<(), PipelineError> {
    let mut cx = PollContext::new(clock.now());
    let mut backoff = IdleBackoff::new();
    loop {
        cx.set_now(clock.now());
        let mut written = 0;
        let last = loop {
            match stream.poll_next(&mut cx)? {
                Poll::Ready(e) => {
                    sink.write(e)?;
                    written += 1;
                    if written >= OUTPUTS_PER_TURN {
                        break Poll::Yield;
                    }
                }
                other => break other,
            }
        };
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(PipelineError::Stopped);
        }
        match last {
            Poll::Done => return sink.finish(),
            Poll::Pending if written == 0 => {
                backoff.idle(cx.next_wake().map(|t| t.saturating_sub(cx.now())));
            }
            _ => backoff.reset(),
        }
    }
}

/// Runs `f`, turning a panic into [`PipelineError::Panicked`] (a user function panicked; with
/// `panic = "abort"` in the embedding program this cannot be caught).
pub(crate) fn catch_panics<R>(
    shard: usize,
    f: impl FnOnce() -> Result<R, PipelineError>,
) -> Result<R, PipelineError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(PipelineError::Panicked { shard, message: panic_message(&*payload) }),
    }
}

/// A pipeline running on threads of its own, sending its records into a bounded channel (from
/// [`DataStream::into_channel`](super::DataStream::into_channel)).
///
/// * **Drain:** end the input (drop or [finish](super::PushHandle::finish) every push handle;
///   bounded sources end by themselves), then [`drain`](Self::drain) (or read [`iter`](Self::iter)
///   to its end and [`join`](Self::join)): the source plays out what it has, the final watermark
///   fires every event-time timer, and every output arrives.
/// * **Stop at once:** [`stop`](Self::stop), or [`cancel`](Self::cancel) to stop and wait: the
///   shards stop at their next loop turn; what is in flight is dropped, and pushing into the
///   pipeline's push sources fails from then on.
/// * **Errors:** the first error of a user function stops every shard; `join`, `drain` and
///   `cancel` return it ([`PipelineError::Function`] names the operator, the shard and the phase).
#[derive(Debug)]
pub struct RunningPipeline<T> {
    receiver: crossbeam_channel::Receiver<T>,
    handle: Option<JoinHandle<Result<(), PipelineError>>>,
    stop: Arc<AtomicBool>,
}

impl<T> RunningPipeline<T> {
    pub(crate) fn new(
        receiver: crossbeam_channel::Receiver<T>,
        handle: JoinHandle<Result<(), PipelineError>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        RunningPipeline { receiver, handle: Some(handle), stop }
    }

    /// The output channel. It disconnects when the pipeline ends.
    pub fn receiver(&self) -> &crossbeam_channel::Receiver<T> {
        &self.receiver
    }

    /// Blocks for the next output; `None` once the pipeline has ended and everything was read.
    pub fn recv(&self) -> Option<T> {
        self.receiver.recv().ok()
    }

    /// Iterates over the outputs until the pipeline ends.
    pub fn iter(&self) -> crossbeam_channel::Iter<'_, T> {
        self.receiver.iter()
    }

    /// Asks the pipeline to stop at once (pending outputs are not produced); then
    /// [`join`](Self::join) returns [`PipelineError::Stopped`], unless the pipeline had already
    /// ended.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// True once the pipeline has ended (its last outputs may still be in the channel).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the pipeline at once and waits for its threads. Returns `Ok(())` if it had already
    /// finished, [`PipelineError::Stopped`] if it was cut short, or the error that had ended it.
    /// Outputs not yet read are dropped.
    pub fn cancel(self) -> Result<(), PipelineError> {
        self.stop();
        self.join()
    }

    /// Waits for the pipeline to finish on its own and returns the outputs not yet read, in
    /// order of arrival, or the error that ended it. It finishes when its input ends: for a push
    /// source, once every handle is dropped or finished (until then this waits).
    pub fn drain(self) -> Result<Vec<T>, PipelineError> {
        let rest: Vec<T> = self.receiver.iter().collect();
        self.join().map(|()| rest)
    }

    /// Waits for the pipeline to end and returns how it ended. Outputs not yet read are dropped.
    pub fn join(mut self) -> Result<(), PipelineError> {
        let handle = self.handle.take();
        drop(std::mem::replace(&mut self.receiver, crossbeam_channel::never()));
        match handle.map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(p)) => Err(PipelineError::Panicked { shard: 0, message: panic_message(&*p) }),
            None => Ok(()),
        }
    }
}
