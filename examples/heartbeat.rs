//! Heartbeat timeouts on processing time: devices send heartbeats every 10 ms; device `d` falls
//! silent after `d * 100` ms, and each silence longer than the timeout raises one alert. Runs for
//! about a second of wall time.
//!
//! It also shows how to write a source: [`Beats`] never blocks the shard; when the next beat is not
//! due yet it answers [`Poll::Pending`], so the shard keeps firing timers meanwhile.
//!
//! ```text
//! cargo run --release -p pinwheel-examples --example heartbeat
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use pinwheel::pipeline::{BuildContext, Event, Pipeline, Poll, PollContext, Stream, StreamPlan};
use pinwheel::{EndOfInputTimers, MAX_WATERMARK, PipelineError, Semantics, StreamElement};
use pinwheel_examples::{Heartbeat, HeartbeatOut};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEVICES: u64 = 10;
const TICKS: u64 = 100;
const TICK_MS: i64 = 10;
const TIMEOUT_MS: i64 = 100;

/// The source's description (built on the shard that runs it).
struct BeatsPlan;

/// The running source: one beat per live device every tick of processing time.
struct Beats {
    start: i64,
    tick: u64,
    ready: VecDeque<Event>,
    ended: bool,
}

impl StreamPlan for BeatsPlan {
    type Item = Event;
    type Stream = Beats;

    fn build(&self, cx: &BuildContext) -> Result<Beats, PipelineError> {
        // One partition: shard 0 reads it.
        let ticks = if cx.shard.index == 0 { 0 } else { TICKS };
        Ok(Beats { start: cx.start_time, tick: ticks, ready: VecDeque::new(), ended: false })
    }
}

impl Stream for Beats {
    type Item = Event;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<Event>, PipelineError> {
        if let Some(e) = self.ready.pop_front() {
            return Ok(Poll::Ready(StreamElement::untimed(e)));
        }
        if self.tick >= TICKS {
            if self.ended {
                return Ok(Poll::Done);
            }
            self.ended = true;
            return Ok(Poll::Ready(StreamElement::Watermark(MAX_WATERMARK)));
        }
        let due = self.start + self.tick as i64 * TICK_MS;
        if cx.now() < due {
            cx.wake_at(due);
            return Ok(Poll::Pending);
        }
        let at_ms = self.tick as i64 * TICK_MS;
        self.ready.extend((0..DEVICES).filter(|d| at_ms <= *d as i64 * 100).map(|d| Event {
            key: d,
            timestamp: at_ms,
            value: self.tick,
        }));
        self.tick += 1;
        Ok(Poll::Yield)
    }
}

fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    let mut seen = 0u64;
    let mut alerts = Vec::new();
    Pipeline::new()
        // Fire pending timeouts when the input ends instead of dropping them (FLINK-18647).
        .semantics(Semantics::default().end_of_input_timers(EndOfInputTimers::Fire))
        .from_source(BeatsPlan)
        .key_by(|e: &Event| e.key)
        .process(|| Heartbeat::new(TIMEOUT_MS))
        .for_each(|out| match out {
            HeartbeatOut::Seen(_) => seen += 1,
            HeartbeatOut::Timeout(device) => {
                println!("{:>5} ms: device {device} timed out", start.elapsed().as_millis());
                alerts.push(device);
            }
        })?;
    println!("{seen} heartbeats, {} alerts", alerts.len());
    alerts.sort_unstable();
    anyhow::ensure!(
        alerts == (0..DEVICES).collect::<Vec<_>>(),
        "every device falls silent exactly once: {alerts:?}"
    );
    Ok(())
}
