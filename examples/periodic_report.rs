//! A periodic per-key report that re-arms its timer in `on_timer`, every 10 s of event time.
//!
//! ```text
//! cargo run --release -p pinwheel-examples --example periodic_report
//! ```

use pinwheel::pipeline::{Pipeline, WatermarkStrategy};
use pinwheel_examples::{Event, PeriodicReport, StandardStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let stream = StandardStream { events: 500_000, keys: 3, events_per_ms: 10 };
    let reports = Pipeline::new()
        .from_source(stream)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &Event, _| e.timestamp),
        )
        .key_by(|e: &Event| e.key)
        .process(|| PeriodicReport::new(10_000))
        .collect()?;
    for r in &reports {
        println!("t={:>6} ms key {}: {:>6} events, sum {:>8}", r.at, r.key, r.events, r.sum);
    }
    let events: u64 = reports.iter().map(|r| r.events).sum();
    println!("{} reports covering {events} events", reports.len());
    anyhow::ensure!(events == stream.events, "reports lost events");
    Ok(())
}
