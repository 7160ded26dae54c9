//! Exactly-once output through a failure: a one-minute window sum per key with checkpoints, its
//! results written as exactly-once files, and a function that fails once in the middle of the
//! stream. The job restarts from its newest checkpoint (its restart policy allows three
//! restarts), and the committed files hold every event's value exactly once.
//!
//! ```text
//! cargo run --release -p pinwheel-examples --example exactly_once
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pinwheel::pipeline::{
    Checkpointing, ExactlyOnceFiles, Pipeline, RestartPolicy, WatermarkStrategy,
};
use pinwheel::{
    Collector, Context, FnError, KeyedProcessFunction, OnTimerContext, OpenContext, Timestamp,
};
use pinwheel_examples::{Event, StandardStream, WindowSum};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The window sum, failing once at the event of timestamp 100 s (a stand-in for a crash).
struct FailsOnce {
    inner: WindowSum,
    failed: Arc<AtomicBool>,
}

impl KeyedProcessFunction for FailsOnce {
    type Key = u64;
    type In = Event;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.inner.open(ctx)
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        if e.timestamp == 100_000 && !self.failed.swap(true, Ordering::AcqRel) {
            return Err("a simulated failure".into());
        }
        self.inner.process_element(e, ctx, out)
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        self.inner.on_timer(t, ctx, out)
    }
}

fn main() -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("pinwheel-exactly-once-{}", std::process::id()));
    let (checkpoints, output) = (root.join("checkpoints"), root.join("output"));
    let files = ExactlyOnceFiles::new(&output, |&(key, sum): &(u64, u64), out: &mut Vec<u8>| {
        let _ = writeln!(out, "{key},{sum}");
    })?;
    let pipeline = Pipeline::new().exactly_once(files.committer()).checkpointing(
        Checkpointing::new(&checkpoints)
            .interval(Duration::from_millis(10))
            .restart(RestartPolicy::fixed(3, Duration::from_millis(100))),
    );
    let stream = StandardStream { events: 2_000_000, keys: 1_000, events_per_ms: 10 };
    let failed = Arc::new(AtomicBool::new(false));
    let run = pipeline
        .from_source(stream)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &Event, _| e.timestamp),
        )
        .key_by(|e: &Event| e.key)
        .process(move || FailsOnce { inner: WindowSum::one_minute(), failed: failed.clone() })
        .run_sharded(|shard| files.sink(shard))?;
    let stats = run.checkpoints.unwrap_or_default();
    println!(
        "{} checkpoints, {} restart(s), the last attempt restored checkpoint {:?}",
        stats.completed, stats.restarts, stats.restored_from
    );

    let mut total = 0u64;
    let parts = ExactlyOnceFiles::<(u64, u64)>::committed(&output)?;
    for part in &parts {
        for line in std::fs::read_to_string(part)?.lines() {
            let (_, sum) = line.split_once(',').ok_or_else(|| anyhow::anyhow!("bad line"))?;
            total += sum.parse::<u64>()?;
        }
    }
    let expected: u64 = (0..stream.events).map(|i| i % 100).sum();
    println!("{} committed files, total {total} (input total {expected})", parts.len());
    std::fs::remove_dir_all(&root)?;
    anyhow::ensure!(total == expected, "the output lost or repeated values");
    Ok(())
}
