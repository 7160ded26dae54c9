//! A one-minute tumbling sum per key, built on an event-time timer, on a small generated stream.
//!
//! ```text
//! cargo run --release -p pinwheel-examples --example window_sum
//! ```

use pinwheel::pipeline::{Pipeline, WatermarkStrategy};
use pinwheel_examples::{Event, StandardStream, WindowSum};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let stream = StandardStream { events: 2_000_000, keys: 1_000, events_per_ms: 10 };
    let sums = Pipeline::new()
        .from_source(stream)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &Event, _| e.timestamp),
        )
        .key_by(|e: &Event| e.key)
        .process(WindowSum::one_minute)
        .collect()?;
    for (key, sum) in sums.iter().take(5) {
        println!("key {key:>4}: window sum {sum}");
    }
    let total: u64 = sums.iter().map(|(_, s)| s).sum();
    let expected: u64 = (0..stream.events).map(|i| i % 100).sum();
    println!("{} window sums, total {total} (input total {expected})", sums.len());
    anyhow::ensure!(total == expected, "window sums lost or invented values");
    Ok(())
}
