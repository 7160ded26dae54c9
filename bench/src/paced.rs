//! The heartbeat job's source: docs/benchmarks.md's standard stream, paced to a rate of events per second of
//! wall time, each event stamped with the moment it leaves the source.

use std::time::Instant;

use pinwheel::pipeline::{BATCH, BuildContext, Stage, StagePlan, Status, Turn};
use pinwheel::{ConfigError, MAX_WATERMARK, PipelineError, StreamElement};
use pinwheel_examples::{Event, StandardStream};

/// Nanoseconds from `epoch` to `at` (0 if `at` is earlier).
#[inline]
pub(crate) fn nanos_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The standard stream at `rate` events per second in total: partition `p` of `P` (one per shard)
/// emits its events (`p, p+P, p+2P, ...`, as [`StandardStream`]) at `rate / P` per second, the
/// `n`-th of them not before `start + n / (rate / P)`, where `start` is the partition's first poll.
/// A partition that falls behind catches up in a burst (as Flink's paced source does).
///
/// Each event leaves untimed (heartbeat runs on processing time, without watermarks), and its
/// [`Event::timestamp`] field carries, instead of `i / R`, the nanoseconds from `epoch` to the
/// moment it left the source: the sink takes its receipt time minus that. The job function
/// ([`pinwheel_examples::Heartbeat`]) never reads the field, it only forwards the event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacedStream {
    /// The stream (its `events_per_ms` is unused: no event time here).
    pub(crate) stream: StandardStream,
    /// Events per second, over all partitions.
    pub(crate) rate: f64,
    /// The common time origin of emit and receipt stamps.
    pub(crate) epoch: Instant,
}

/// One running partition of a [`PacedStream`].
#[derive(Debug)]
pub(crate) struct PacedPartition {
    stream: StandardStream,
    epoch: Instant,
    /// The next event's index in the stream.
    next: u64,
    step: u64,
    /// Events emitted by this partition.
    sent: u64,
    ns_per_event: f64,
    /// Nanoseconds since `epoch` of the first poll.
    start_ns: Option<u64>,
    ended: bool,
}

impl StagePlan for PacedStream {
    type Item = Event;
    type Stage = PacedPartition;

    fn build(&self, cx: &BuildContext) -> Result<PacedPartition, PipelineError> {
        let shard = cx.shard();
        let parts = shard.count.max(1) as u64;
        if !(self.rate.is_finite() && self.rate > 0.0) {
            let reason = format!("must be > 0, got {}", self.rate);
            return Err(ConfigError::Invalid { setting: "rate", reason }.into());
        }
        Ok(PacedPartition {
            stream: self.stream,
            epoch: self.epoch,
            next: shard.index as u64,
            step: parts,
            sent: 0,
            ns_per_event: 1e9 * parts as f64 / self.rate,
            start_ns: None,
            ended: false,
        })
    }
}

impl Stage for PacedPartition {
    type Item = Event;

    #[inline]
    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<Event>>,
    ) -> Result<Status, PipelineError> {
        for _ in 0..BATCH {
            if self.next >= self.stream.events {
                if !self.ended {
                    self.ended = true;
                    out.push(StreamElement::Watermark(MAX_WATERMARK));
                }
                return Ok(Status::Done);
            }
            // One clock read per event: for an emitted event it is inherent to the measurement
            // (it is the event's emit stamp, and the pacing check). On this machine's TSC
            // clocksource it is a vDSO read, not a system call.
            let now_ns = nanos_since(self.epoch, Instant::now());
            let start = *self.start_ns.get_or_insert(now_ns);
            let due = start.saturating_add((self.sent as f64 * self.ns_per_event) as u64);
            if now_ns < due {
                // Not due yet: let the shard idle, but not past the millisecond the event is due
                // in (wake-ups are in whole milliseconds of processing time; within the current
                // one the shard spins and yields instead of parking).
                let wait_ms = i64::try_from((due - now_ns) / 1_000_000).unwrap_or(i64::MAX);
                cx.wake_at(cx.now().saturating_add(wait_ms));
                return Ok(Status::Idle);
            }
            let mut event = self.stream.event(self.next);
            event.timestamp = i64::try_from(now_ns).unwrap_or(i64::MAX);
            self.next += self.step;
            self.sent += 1;
            out.push(StreamElement::untimed(event));
        }
        Ok(Status::Busy)
    }
}
