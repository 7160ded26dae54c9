//! The per-shard sinks: each shard counts its own outputs (no channel, no shared counter on the
//! record path), and the driver merges them after the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use pinwheel::pipeline::{FileSink, Sink};
use pinwheel::{MAX_WATERMARK, SinkError, StreamElement};
use pinwheel_examples::HeartbeatOut;

use crate::offcpu::ThreadStat;
use crate::paced::nanos_since;

/// Outputs between two clock reads for the last-output instant (see [`Span`]).
const STAMP_EVERY: u32 = 1024;

/// Outputs between two progress updates of the heartbeat sink.
const PROGRESS_EVERY: u64 = 1024;

/// When one shard's first and last outputs reached its sink, and when its input ended.
///
/// Reading the clock for every output would cost more than counting it, so the first output is
/// stamped exactly and the last one from a clock read every [`STAMP_EVERY`] outputs and at every
/// watermark, idle marker and the end that follows unstamped outputs. Timers fire when a watermark
/// arrives and the keyed operator forwards the watermark right after their outputs, so the stamp
/// is late by at most the forwarding of one watermark.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) first: Option<Instant>,
    pub(crate) last: Option<Instant>,
    pub(crate) finished: Option<Instant>,
    unstamped: u32,
}

impl Span {
    /// An output, without a clock read of its own (mostly).
    #[inline]
    fn output(&mut self) {
        if self.first.is_none() {
            self.output_at(Instant::now());
        } else {
            self.unstamped += 1;
            if self.unstamped >= STAMP_EVERY {
                self.stamp();
            }
        }
    }

    /// An output received at `now` (the caller read the clock anyway).
    #[inline]
    fn output_at(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.unstamped = 0;
    }

    /// A non-record element: stamps the outputs since the last clock read.
    #[inline]
    fn boundary(&mut self) {
        if self.unstamped > 0 {
            self.stamp();
        }
    }

    #[cold]
    fn stamp(&mut self) {
        self.last = Some(Instant::now());
        self.unstamped = 0;
    }

    fn finish(&mut self) {
        self.boundary();
        self.finished = Some(Instant::now());
    }

    /// The shards' spans combined: the earliest first output, the latest last output and end.
    pub(crate) fn merge<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Span {
        let mut all = Span::default();
        for s in spans {
            all.first = min_some(all.first, s.first);
            all.last = all.last.max(s.last);
            all.finished = all.finished.max(s.finished);
        }
        all
    }

    /// Seconds from the first output to the last (0 without outputs).
    pub(crate) fn seconds(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

fn min_some(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One shard's progress figure, alone on its cache lines (the shards write, the bar reads).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Slot(pub(crate) AtomicU64);

/// Where a sink reports progress: events of the input known to be processed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProgressOut<'a> {
    pub(crate) slot: &'a Slot,
    /// `R`: an event-time watermark `w` means the events `< (w + 1) * R` are in.
    pub(crate) events_per_ms: u64,
    /// `N`.
    pub(crate) events: u64,
}

impl ProgressOut<'_> {
    #[inline]
    fn watermark(&self, w: i64) {
        let done = if w == MAX_WATERMARK {
            self.events
        } else {
            (w.max(-1) as u64 + 1).saturating_mul(self.events_per_ms).min(self.events)
        };
        self.slot.0.store(done, Ordering::Relaxed);
    }
}

/// The sink of the event-time jobs (count-with-timeout, window-sum, timer-burst), whose outputs
/// are `(key, value)`: counts them and sums their values, and for count-with-timeout keeps each
/// key's last count.
#[derive(Debug)]
pub(crate) struct CountingSink<'a> {
    pub(crate) outputs: u64,
    /// The sum of the output values.
    pub(crate) sum: u64,
    /// Per key (indexed by key, `K` entries; empty: not kept), the last value emitted for it. A
    /// `u32` halves the memory next to `u64`; the driver keeps it only while `N <= u32::MAX`.
    pub(crate) last: Vec<u32>,
    pub(crate) span: Span,
    progress: Option<ProgressOut<'a>>,
}

impl<'a> CountingSink<'a> {
    /// A sink keeping the last value per key for `keys` keys (0: none kept).
    pub(crate) fn new(keys: usize, progress: Option<ProgressOut<'a>>) -> Self {
        CountingSink { outputs: 0, sum: 0, last: vec![0; keys], span: Span::default(), progress }
    }
}

impl Sink<(u64, u64)> for CountingSink<'_> {
    #[inline]
    fn write(&mut self, element: StreamElement<(u64, u64)>) -> Result<(), SinkError> {
        match element {
            StreamElement::Record { value: (key, value), .. } => {
                self.outputs += 1;
                self.sum += value;
                if !self.last.is_empty() {
                    // A key out of range is a bug upstream: the per-key check reports it.
                    if let Some(slot) = self.last.get_mut(key as usize) {
                        *slot = u32::try_from(value).unwrap_or(u32::MAX);
                    }
                }
                self.span.output();
            }
            StreamElement::Watermark(w) => {
                self.span.boundary();
                if let Some(p) = &self.progress {
                    p.watermark(w);
                }
            }
            StreamElement::Idle | StreamElement::Barrier(_) => self.span.boundary(),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.span.finish();
        Ok(())
    }
}

/// An event-time job's sink: the [`CountingSink`], and with `--output` the shard's exactly-once
/// files too.
pub(crate) struct WithFiles<'p> {
    pub(crate) counting: CountingSink<'p>,
    pub(crate) files: Option<FileSink<(u64, u64)>>,
}

impl Sink<(u64, u64)> for WithFiles<'_> {
    #[inline]
    fn write(&mut self, element: StreamElement<(u64, u64)>) -> Result<(), SinkError> {
        if let Some(files) = &mut self.files {
            files.write(element.clone())?;
        }
        self.counting.write(element)
    }

    fn write_batch(&mut self, batch: &mut Vec<StreamElement<(u64, u64)>>) -> Result<(), SinkError> {
        if let Some(files) = &mut self.files {
            for e in batch.iter() {
                files.write(e.clone())?;
            }
        }
        self.counting.write_batch(batch)
    }

    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        if let Some(files) = &mut self.files {
            files.on_barrier(checkpoint)?;
        }
        self.counting.on_barrier(checkpoint)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(files) = &mut self.files {
            files.finish()?;
        }
        self.counting.finish()
    }
}

/// Latencies are recorded in nanoseconds up to an hour (3 significant digits).
const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

/// The heartbeat job's sink: takes the latency of every forwarded event (receipt time minus the
/// emit stamp the source put in [`Event::timestamp`](pinwheel_examples::Event::timestamp)) into
/// an hdrhistogram, and counts the timeouts.
#[derive(Debug)]
pub(crate) struct LatencySink<'a> {
    epoch: Instant,
    /// Forwarded events ([`HeartbeatOut::Seen`]).
    pub(crate) forwarded: u64,
    /// The sum of the forwarded events' values.
    pub(crate) sum: u64,
    /// [`HeartbeatOut::Timeout`] outputs.
    pub(crate) timeouts: u64,
    /// Every forwarded event's latency, ns.
    pub(crate) all: Histogram<u64>,
    /// The latencies after the first `warmup` forwarded events of this shard, ns.
    pub(crate) later: Histogram<u64>,
    warmup: u64,
    pub(crate) span: Span,
    progress: Option<&'a Slot>,
    /// The shard thread's scheduler counters at its first output.
    stat_at_start: Option<ThreadStat>,
    /// What the operating system took from the shard thread from its first output to the end.
    pub(crate) offcpu: Option<ThreadStat>,
}

impl<'a> LatencySink<'a> {
    /// A sink measuring from `epoch`; `warmup` forwarded events are left out of `later`.
    pub(crate) fn new(epoch: Instant, warmup: u64, progress: Option<&'a Slot>) -> Self {
        LatencySink {
            epoch,
            forwarded: 0,
            sum: 0,
            timeouts: 0,
            all: latency_histogram(),
            later: latency_histogram(),
            warmup,
            span: Span::default(),
            progress,
            stat_at_start: None,
            offcpu: None,
        }
    }
}

impl Sink<HeartbeatOut> for LatencySink<'_> {
    #[inline]
    fn write(&mut self, element: StreamElement<HeartbeatOut>) -> Result<(), SinkError> {
        match element {
            StreamElement::Record { value: HeartbeatOut::Seen(event), .. } => {
                // The receipt time of every output is the measurement itself: one clock read per
                // record is inherent here (a vDSO read on the TSC clocksource, no system call).
                let now = Instant::now();
                let emitted = u64::try_from(event.timestamp).unwrap_or(0);
                let latency = nanos_since(self.epoch, now).saturating_sub(emitted);
                self.all.saturating_record(latency);
                if self.forwarded >= self.warmup {
                    self.later.saturating_record(latency);
                }
                if self.forwarded == 0 {
                    self.stat_at_start = ThreadStat::now();
                }
                self.forwarded += 1;
                self.sum += event.value;
                self.span.output_at(now);
                if self.forwarded % PROGRESS_EVERY == 0 {
                    if let Some(slot) = self.progress {
                        slot.0.store(self.forwarded, Ordering::Relaxed);
                    }
                }
            }
            StreamElement::Record { value: HeartbeatOut::Timeout(_), .. } => {
                self.timeouts += 1;
                self.span.output();
            }
            StreamElement::Watermark(_) | StreamElement::Idle | StreamElement::Barrier(_) => {
                self.span.boundary()
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.span.finish();
        self.offcpu = self.stat_at_start.and_then(|s| ThreadStat::now().map(|now| now.since(s)));
        if let Some(slot) = self.progress {
            slot.0.store(self.forwarded, Ordering::Relaxed);
        }
        Ok(())
    }
}
