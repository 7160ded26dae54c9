//! Heartbeat timeouts on processing time: devices send heartbeats every 10 ms; device `d` falls
//! silent after `d * 100` ms, and each silence longer than the timeout raises one alert. Runs for
//! about a second of wall time.
//!
//! It also shows how to write a source: [`Beats`] never blocks the shard; when the next beat is not
//! due yet it answers [`Status::Idle`] and asks to be woken when it is due, so the shard keeps
//! firing timers meanwhile (and parks when there is nothing else to do).
//!
//! ```text
//! cargo run --release -p pinwheel-examples --example heartbeat
//! ```

use std::time::Instant;

use pinwheel::pipeline::{BuildContext, Pipeline, Stage, StagePlan, Status, Turn};
use pinwheel::{EndOfInputTimers, MAX_WATERMARK, PipelineError, Semantics, StreamElement};
use pinwheel_examples::{Event, Heartbeat, HeartbeatOut};

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
    ended: bool,
}

impl StagePlan for BeatsPlan {
    type Item = Event;
    type Stage = Beats;

    fn build(&self, cx: &BuildContext) -> Result<Beats, PipelineError> {
        // One partition: shard 0 reads it.
        let ticks = if cx.shard().index == 0 { 0 } else { TICKS };
        Ok(Beats { start: cx.start_time(), tick: ticks, ended: false })
    }
}

impl Stage for Beats {
    type Item = Event;

    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<Event>>,
    ) -> Result<Status, PipelineError> {
        if self.tick >= TICKS {
            if !self.ended {
                self.ended = true;
                out.push(StreamElement::Watermark(MAX_WATERMARK));
            }
            return Ok(Status::Done);
        }
        let due = self.start + self.tick as i64 * TICK_MS;
        if cx.now() < due {
            // Not due yet: the shard may park until then.
            cx.wake_at(due);
            return Ok(Status::Idle);
        }
        let at_ms = self.tick as i64 * TICK_MS;
        out.extend(
            (0..DEVICES).filter(|d| at_ms <= *d as i64 * 100).map(|d| {
                StreamElement::untimed(Event { key: d, timestamp: at_ms, value: self.tick })
            }),
        );
        self.tick += 1;
        Ok(Status::Busy)
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
