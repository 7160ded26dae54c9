//! What operators emit: stream elements, the main-output [`Collector`] and typed side outputs.

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use pinwheel_engine::exchange::CheckpointBarrier;
use pinwheel_engine::time::Timestamp;

/// One element of a stream: a record with its optional timestamp, a watermark, or the news that the
/// stream has gone idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamElement<T> {
    /// A record. `timestamp` is `None` for records that have none (Flink's "no timestamp").
    Record {
        /// The record.
        value: T,
        /// Its event timestamp, if it has one.
        timestamp: Option<Timestamp>,
    },
    /// A watermark: no record with a timestamp `<=` it is expected any more.
    Watermark(Timestamp),
    /// Every input of the producing operator is idle; the next record or watermark ends it.
    Idle,
    /// A checkpoint barrier: what came before it belongs to checkpoint `barrier.id`, what follows
    /// to the next one. Sources emit barriers when a checkpoint is triggered; every stage passes
    /// them on in order; sinks that write outside the job act on them (see
    /// [`Sink::on_barrier`](crate::pipeline::Sink::on_barrier)).
    Barrier(CheckpointBarrier),
}

impl<T> StreamElement<T> {
    /// A record with a timestamp.
    pub fn record(value: T, timestamp: Timestamp) -> Self {
        StreamElement::Record { value, timestamp: Some(timestamp) }
    }

    /// A record without a timestamp.
    pub fn untimed(value: T) -> Self {
        StreamElement::Record { value, timestamp: None }
    }

    /// The record's value, if this is a record.
    pub fn value(&self) -> Option<&T> {
        match self {
            StreamElement::Record { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The record's value, if this is a record.
    pub fn into_value(self) -> Option<T> {
        match self {
            StreamElement::Record { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Applies `f` to the record's value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> StreamElement<U> {
        match self {
            StreamElement::Record { value, timestamp } => {
                StreamElement::Record { value: f(value), timestamp }
            }
            StreamElement::Watermark(w) => StreamElement::Watermark(w),
            StreamElement::Idle => StreamElement::Idle,
            StreamElement::Barrier(b) => StreamElement::Barrier(b),
        }
    }
}

/// The main output of a process function.
///
/// Records collected here carry the timestamp Flink gives them (docs/semantics.md A1.13): the input
/// element's timestamp in `process_element`, the timer's timestamp in an event-time `on_timer`, and
/// none in a processing-time `on_timer`.
pub struct Collector<'a, O> {
    out: &'a mut Vec<StreamElement<O>>,
    timestamp: Option<Timestamp>,
}

impl<'a, O> Collector<'a, O> {
    pub(crate) fn new(out: &'a mut Vec<StreamElement<O>>, timestamp: Option<Timestamp>) -> Self {
        Collector { out, timestamp }
    }

    /// Emits `value` with the current output timestamp.
    #[inline]
    pub fn collect(&mut self, value: O) {
        self.out.push(StreamElement::Record { value, timestamp: self.timestamp });
    }

    /// Emits `value` with an explicit timestamp (Flink's `TimestampedCollector.setAbsoluteTimestamp`).
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: O, timestamp: Option<Timestamp>) {
        self.out.push(StreamElement::Record { value, timestamp });
    }

    /// The timestamp `collect` gives records.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }
}

impl<O> fmt::Debug for Collector<'_, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector").field("timestamp", &self.timestamp).finish()
    }
}

/// A typed name for a side output. Two tags are the same output when both their ids and their
/// types are equal (as in Flink).
pub struct OutputTag<T> {
    id: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T: 'static> OutputTag<T> {
    /// A tag named `id`.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        OutputTag { id: id.into(), _type: PhantomData }
    }

    /// The tag's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag { id: self.id.clone(), _type: PhantomData }
    }
}

impl<T> fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputTag<{}>({:?})", std::any::type_name::<T>(), self.id)
    }
}

impl<T> PartialEq for OutputTag<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T> Eq for OutputTag<T> {}

/// One side output's buffer, type-erased so that one operator can hold outputs of several types.
struct SideBuffer {
    id: Arc<str>,
    type_id: TypeId,
    elements: Box<dyn Any>,
    push_watermark: fn(&mut dyn Any, Timestamp),
    push_idle: fn(&mut dyn Any),
    push_barrier: fn(&mut dyn Any, CheckpointBarrier),
    discard: fn(&mut dyn Any) -> u64,
}

fn discard<T: 'static>(buf: &mut dyn Any) -> u64 {
    match buf.downcast_mut::<Vec<StreamElement<T>>>() {
        Some(v) => {
            let records = v.iter().filter(|e| matches!(e, StreamElement::Record { .. })).count();
            v.clear();
            records as u64
        }
        None => 0,
    }
}

fn push_watermark<T: 'static>(buf: &mut dyn Any, w: Timestamp) {
    if let Some(v) = buf.downcast_mut::<Vec<StreamElement<T>>>() {
        v.push(StreamElement::Watermark(w));
    }
}

fn push_idle<T: 'static>(buf: &mut dyn Any) {
    if let Some(v) = buf.downcast_mut::<Vec<StreamElement<T>>>() {
        v.push(StreamElement::Idle);
    }
}

fn push_barrier<T: 'static>(buf: &mut dyn Any, b: CheckpointBarrier) {
    if let Some(v) = buf.downcast_mut::<Vec<StreamElement<T>>>() {
        v.push(StreamElement::Barrier(b));
    }
}

/// The side outputs of one operator.
///
/// A side-output record costs a lookup by tag and a type check (a few comparisons): side outputs are
/// meant for the rarer records (late data, alerts); the main output is the typed fast path.
/// Watermarks reach every side output that exists when they are forwarded (docs/semantics.md A2.10); a
/// consumer that needs all of them declares its tag up front with [`SideOutputs::declare`].
#[derive(Default)]
pub struct SideOutputs {
    buffers: Vec<SideBuffer>,
}

impl SideOutputs {
    fn position<T: 'static>(&self, tag: &OutputTag<T>) -> Option<usize> {
        let type_id = TypeId::of::<T>();
        self.buffers
            .iter()
            .position(|b| b.type_id == type_id && (Arc::ptr_eq(&b.id, &tag.id) || b.id == tag.id))
    }

    /// Makes sure a buffer for `tag` exists, so that it receives every watermark from now on.
    pub fn declare<T: 'static>(&mut self, tag: &OutputTag<T>) -> &mut Vec<StreamElement<T>> {
        let i = match self.position(tag) {
            Some(i) => i,
            None => {
                self.buffers.push(SideBuffer {
                    id: tag.id.clone(),
                    type_id: TypeId::of::<T>(),
                    elements: Box::new(Vec::<StreamElement<T>>::new()),
                    push_watermark: push_watermark::<T>,
                    push_idle: push_idle::<T>,
                    push_barrier: push_barrier::<T>,
                    discard: discard::<T>,
                });
                self.buffers.len() - 1
            }
        };
        match self.buffers[i].elements.downcast_mut::<Vec<StreamElement<T>>>() {
            Some(v) => v,
            // The buffer at `i` was created for exactly this TypeId, so the downcast succeeds.
            None => unreachable!("side output buffer has the type its TypeId says"),
        }
    }

    /// Appends a record to the side output `tag`.
    pub fn push<T: 'static>(&mut self, tag: &OutputTag<T>, value: T, timestamp: Option<Timestamp>) {
        self.declare(tag).push(StreamElement::Record { value, timestamp });
    }

    /// Takes everything buffered for `tag`.
    pub fn take<T: 'static>(&mut self, tag: &OutputTag<T>) -> Vec<StreamElement<T>> {
        match self.position(tag) {
            Some(_) => std::mem::take(self.declare(tag)),
            None => Vec::new(),
        }
    }

    /// Forwards a watermark to every side output.
    pub fn push_watermark(&mut self, w: Timestamp) {
        for b in &mut self.buffers {
            (b.push_watermark)(b.elements.as_mut(), w);
        }
    }

    /// Forwards an idle status to every side output.
    pub fn push_idle(&mut self) {
        for b in &mut self.buffers {
            (b.push_idle)(b.elements.as_mut());
        }
    }

    /// Forwards a checkpoint barrier to every side output.
    pub fn push_barrier(&mut self, b: CheckpointBarrier) {
        for buf in &mut self.buffers {
            (buf.push_barrier)(buf.elements.as_mut(), b);
        }
    }

    /// Empties every side output; returns how many records were discarded.
    pub fn discard_records(&mut self) -> u64 {
        self.buffers.iter_mut().map(|b| (b.discard)(b.elements.as_mut())).sum()
    }

    /// The ids of the side outputs that exist.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.buffers.iter().map(|b| &*b.id)
    }
}

impl fmt::Debug for SideOutputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_outputs_are_typed_by_id_and_type() {
        let mut s = SideOutputs::default();
        let a = OutputTag::<String>::new("late");
        let b = OutputTag::<u64>::new("late");
        s.push(&a, "x".to_string(), Some(1));
        s.push(&b, 7, None);
        s.push_watermark(5);
        assert_eq!(
            s.take(&a),
            vec![StreamElement::record("x".to_string(), 1), StreamElement::Watermark(5)]
        );
        assert_eq!(s.take(&b), vec![StreamElement::untimed(7), StreamElement::Watermark(5)]);
        assert!(s.take(&OutputTag::<u8>::new("other")).is_empty());
    }
}
