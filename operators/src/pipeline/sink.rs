//! Sinks: where the elements of a job's streams go.

use std::fmt;

use crossbeam_channel::Sender;

use crate::error::SinkError;
use crate::output::StreamElement;

/// Where the elements of a pipeline's final stream go, on one shard.
///
/// A sink's errors are its own ([`SinkError`], any error, boxed); the pipeline stops on the first
/// one and returns it as [`PipelineError::Sink`](crate::PipelineError::Sink), naming the shard.
pub trait Sink<T> {
    /// Takes one element (records, watermarks and idle markers, in order).
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError>;

    /// Takes a batch of elements, in order, leaving `batch` empty. The default writes them one by
    /// one; a sink that can do better per batch overrides it.
    fn write_batch(&mut self, batch: &mut Vec<StreamElement<T>>) -> Result<(), SinkError> {
        for e in batch.drain(..) {
            self.write(e)?;
        }
        Ok(())
    }

    /// Called at every checkpoint barrier, after the elements before it (and the barrier
    /// itself) have been written: a sink that writes outside the job prepares what it has
    /// written since the previous barrier to become visible once checkpoint `checkpoint`
    /// completes. The default does nothing.
    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called once after the last element.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<T, S: Sink<T> + ?Sized> Sink<T> for &mut S {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        (**self).write(element)
    }

    #[inline]
    fn write_batch(&mut self, batch: &mut Vec<StreamElement<T>>) -> Result<(), SinkError> {
        (**self).write_batch(batch)
    }

    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        (**self).on_barrier(checkpoint)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        (**self).finish()
    }
}

/// Collects record values into a `Vec`.
#[derive(Debug)]
pub struct VecSink<T>(pub Vec<T>);

impl<T> Sink<T> for VecSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        if let StreamElement::Record { value, .. } = element {
            self.0.push(value);
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<StreamElement<T>>) -> Result<(), SinkError> {
        self.0.extend(batch.drain(..).filter_map(StreamElement::into_value));
        Ok(())
    }
}

/// Collects every element (records with timestamps, watermarks, idle markers).
#[derive(Debug)]
pub struct ElementSink<T>(pub Vec<StreamElement<T>>);

impl<T> Sink<T> for ElementSink<T> {
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        self.0.push(element);
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<StreamElement<T>>) -> Result<(), SinkError> {
        self.0.append(batch);
        Ok(())
    }
}

/// Calls a function for every record value.
#[derive(Debug)]
pub struct FnSink<F>(pub F);

impl<T, F: FnMut(T)> Sink<T> for FnSink<F> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        if let StreamElement::Record { value, .. } = element {
            (self.0)(value);
        }
        Ok(())
    }
}

/// The error of a sink whose receiver went away: the pipeline then stops with
/// [`PipelineError::Stopped`](crate::PipelineError::Stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiving end of the output channel was dropped")]
pub struct Disconnected;

/// Sends record values into a bounded channel, a batch at a time (of up to 1,024 values); a
/// full channel blocks the shard (backpressure), a dropped receiver stops the pipeline. The
/// sender is let go of when the sink finishes, so the channel disconnects once every shard's sink
/// has finished.
pub(crate) struct BatchChannelSink<T> {
    /// `None` once finished.
    tx: Option<Sender<Vec<T>>>,
    buf: Vec<T>,
}

impl<T> fmt::Debug for BatchChannelSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchChannelSink").field("buffered", &self.buf.len()).finish()
    }
}

impl<T> BatchChannelSink<T> {
    /// Values per batch.
    const BATCH: usize = 1024;

    /// A sink sending into `tx`.
    pub(crate) fn new(tx: Sender<Vec<T>>) -> Self {
        BatchChannelSink { tx: Some(tx), buf: Vec::new() }
    }

    fn send(&mut self) -> Result<(), SinkError> {
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::BATCH));
        match self.tx.as_ref() {
            Some(tx) => tx.send(batch).map_err(|_| Disconnected.into()),
            None => Err(Disconnected.into()),
        }
    }
}

impl<T> Sink<T> for BatchChannelSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        if let StreamElement::Record { value, .. } = element {
            self.buf.push(value);
            if self.buf.len() >= Self::BATCH {
                self.send()?;
            }
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<StreamElement<T>>) -> Result<(), SinkError> {
        self.buf.extend(batch.drain(..).filter_map(StreamElement::into_value));
        if !self.buf.is_empty() {
            // One message per batch of the stage: latency for the reader, few channel operations.
            self.send()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx = None;
        Ok(())
    }
}

/// Sends record values into a bounded channel, one by one; a full channel blocks the shard
/// (backpressure), a dropped receiver stops the pipeline. The sender is let go of when the sink
/// finishes, so the channel disconnects once every shard's sink has finished.
pub(crate) struct ChannelSink<T> {
    tx: Option<Sender<T>>,
}

impl<T> fmt::Debug for ChannelSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSink").field("open", &self.tx.is_some()).finish()
    }
}

impl<T> ChannelSink<T> {
    /// A sink sending into `tx` (`None`: the sink's root has no channel on this shard).
    pub(crate) fn new(tx: Option<Sender<T>>) -> Self {
        ChannelSink { tx }
    }
}

impl<T> Sink<T> for ChannelSink<T> {
    #[inline]
    fn write(&mut self, element: StreamElement<T>) -> Result<(), SinkError> {
        let StreamElement::Record { value, .. } = element else { return Ok(()) };
        match self.tx.as_ref() {
            Some(tx) => tx.send(value).map_err(|_| Disconnected.into()),
            None => Err(Disconnected.into()),
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.tx = None;
        Ok(())
    }
}
