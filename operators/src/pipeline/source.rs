//! Sources: iterators and vectors, explicit element sequences, and the standard generated stream
//! of PERF.md.
//!
//! A bounded source ends with the watermark `i64::MAX` (SEMANTICS A6.1) and then reports
//! [`Poll::Done`].

use std::sync::Mutex;

use pinwheel_engine::time::{MAX_WATERMARK, Timestamp};

use super::stream::{BuildContext, Poll, PollContext, Stream, StreamPlan};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// Plays out an iterator of stream elements, then `MAX`, then `Done`.
#[derive(Debug)]
pub struct ElementsStream<I> {
    iter: Option<I>,
    ended: bool,
}

impl<I> ElementsStream<I> {
    /// A stream over `iter`; `None` is an empty stream (the partitions of other shards).
    pub fn new(iter: Option<I>) -> Self {
        ElementsStream { iter, ended: false }
    }
}

impl<T, I: Iterator<Item = StreamElement<T>>> Stream for ElementsStream<I> {
    type Item = T;

    #[inline]
    fn poll_next(&mut self, _: &mut PollContext) -> Result<Poll<T>, PipelineError> {
        if let Some(iter) = self.iter.as_mut() {
            if let Some(e) = iter.next() {
                return Ok(Poll::Ready(e));
            }
            self.iter = None;
        }
        if self.ended {
            return Ok(Poll::Done);
        }
        self.ended = true;
        Ok(Poll::Ready(StreamElement::Watermark(MAX_WATERMARK)))
    }
}

/// Wraps plain values as untimed records.
#[derive(Debug)]
pub struct Untimed<I>(I);

impl<T, I: Iterator<Item = T>> Iterator for Untimed<I> {
    type Item = StreamElement<T>;
    #[inline]
    fn next(&mut self) -> Option<StreamElement<T>> {
        self.0.next().map(StreamElement::untimed)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// A source from an iterator: one partition, read by shard 0 (other shards' partitions are empty).
#[derive(Debug)]
pub struct IterSource<I> {
    iter: Mutex<Option<I>>,
}

impl<I> IterSource<I> {
    /// A source reading `iter`.
    pub fn new(iter: I) -> Self {
        IterSource { iter: Mutex::new(Some(iter)) }
    }
}

impl<I> StreamPlan for IterSource<I>
where
    I: Iterator + Send + 'static,
{
    type Item = I::Item;
    type Stream = ElementsStream<Untimed<I>>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        let iter = if cx.shard.index == 0 {
            // A poisoned lock only means another shard panicked while building; the data is intact.
            self.iter.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            None
        };
        Ok(ElementsStream::new(iter.map(Untimed)))
    }
}

/// A source of explicit stream elements (records with or without timestamps, watermarks, idle
/// markers), read by shard 0: tests and replays use it.
#[derive(Debug)]
pub struct ElementSource<I> {
    iter: Mutex<Option<I>>,
}

impl<I> ElementSource<I> {
    /// A source playing `iter`.
    pub fn new(iter: I) -> Self {
        ElementSource { iter: Mutex::new(Some(iter)) }
    }
}

impl<T, I> StreamPlan for ElementSource<I>
where
    I: Iterator<Item = StreamElement<T>> + Send + 'static,
{
    type Item = T;
    type Stream = ElementsStream<I>;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        let iter = if cx.shard.index == 0 {
            self.iter.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            None
        };
        Ok(ElementsStream::new(iter))
    }
}

/// One event of the standard generated stream (PERF.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// `splitmix64(i) mod K`.
    pub key: u64,
    /// `i / R` milliseconds.
    pub timestamp: Timestamp,
    /// `i mod 100`.
    pub value: u64,
}

/// splitmix64, as PERF.md defines it (wrapping arithmetic).
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The standard generated stream of PERF.md: `N` events over `K` keys at `R` events per
/// millisecond of event time. Partition `p` of `P` (one per shard) emits events `p, p+P, p+2P, …`.
///
/// Records carry no timestamp: assign them with a
/// [`WatermarkStrategy`](crate::pipeline::WatermarkStrategy) reading [`Event::timestamp`], as the
/// benchmark jobs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardStream {
    /// `N`: the number of events.
    pub events: u64,
    /// `K`: the number of keys (at least 1).
    pub keys: u64,
    /// `R`: events per millisecond of event time (at least 1).
    pub events_per_ms: u64,
}

impl Default for StandardStream {
    /// PERF.md's defaults: N = 20,000,000, K = 1,000,000, R = 10.
    fn default() -> Self {
        StandardStream { events: 20_000_000, keys: 1_000_000, events_per_ms: 10 }
    }
}

impl StandardStream {
    /// Event `i` of the stream.
    #[inline]
    pub fn event(&self, i: u64) -> Event {
        Event {
            key: splitmix64(i) % self.keys.max(1),
            timestamp: (i / self.events_per_ms.max(1)) as Timestamp,
            value: i % 100,
        }
    }

    /// The events of partition `p` of `parts`, in order.
    pub fn partition(&self, p: u64, parts: u64) -> impl Iterator<Item = Event> + Send + use<> {
        let this = *self;
        (p..this.events).step_by(parts.max(1) as usize).map(move |i| this.event(i))
    }
}

/// The running partition of a [`StandardStream`].
#[derive(Debug)]
pub struct StandardPartition {
    stream: StandardStream,
    next: u64,
    step: u64,
    ended: bool,
}

impl Stream for StandardPartition {
    type Item = Event;

    #[inline]
    fn poll_next(&mut self, _: &mut PollContext) -> Result<Poll<Event>, PipelineError> {
        if self.next < self.stream.events {
            let e = self.stream.event(self.next);
            self.next += self.step;
            return Ok(Poll::Ready(StreamElement::untimed(e)));
        }
        if self.ended {
            return Ok(Poll::Done);
        }
        self.ended = true;
        Ok(Poll::Ready(StreamElement::Watermark(MAX_WATERMARK)))
    }
}

impl StreamPlan for StandardStream {
    type Item = Event;
    type Stream = StandardPartition;

    fn build(&self, cx: &BuildContext) -> Result<Self::Stream, PipelineError> {
        Ok(StandardPartition {
            stream: *self,
            next: cx.shard.index as u64,
            step: cx.shard.count.max(1) as u64,
            ended: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference values of splitmix64 (Vigna's generator seeded with 0, successive states).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn partitions_cover_the_stream_once() {
        let s = StandardStream { events: 1000, keys: 7, events_per_ms: 10 };
        let mut all: Vec<u64> = (0..3).flat_map(|p| s.partition(p, 3)).map(|e| e.value).collect();
        all.sort_unstable();
        assert_eq!(all.len(), 1000);
        assert_eq!(all.iter().sum::<u64>(), (0..1000u64).map(|i| i % 100).sum::<u64>());
        assert_eq!(s.event(25), Event { key: splitmix64(25) % 7, timestamp: 2, value: 25 });
    }
}
