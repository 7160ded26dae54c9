//! Exchange memory scales with cores: a 64-shard pipeline (4,032 exchange rings) on a machine with
//! any number of cores (unpinned), a million records keyed over 100,000 keys, completes with the
//! process's peak resident memory within 256 MiB. With rings allocated at their full capacity up
//! front, 64 shards took 387 MiB for 10,000 records.
//!
//! This file holds one test, so the process's peak is this pipeline's.

use pinwheel_operators::pipeline::Pipeline;
use pinwheel_operators::{
    Collector, Context, FnError, KeyedProcessFunction, OnTimerContext, OpenContext, Timestamp,
    ValueState, ValueStateDescriptor,
};

/// Peak resident set of this process (`VmHWM`), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A count per key, emitted by an event-time timer at the end of the key's 1,000 ms window.
#[derive(Default)]
struct WindowCount {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for WindowCount {
    type Key = u64;
    type In = (u64, Timestamp);
    type Out = u64;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.count = ctx.value_state(ValueStateDescriptor::new("count"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, ts): (u64, Timestamp),
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, u64>,
    ) -> Result<(), FnError> {
        let n = self.count.value(ctx)?.unwrap_or(0);
        if n == 0 {
            ctx.timer_service().register_event_time_timer(ts.div_euclid(1_000) * 1_000 + 999)?;
        }
        self.count.update(ctx, n + 1)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), FnError> {
        out.collect(self.count.value(ctx)?.unwrap_or(0));
        self.count.clear(ctx)?;
        Ok(())
    }
}

#[test]
fn sixty_four_shards_run_a_million_records_within_256_mib() {
    const SHARDS: usize = 64;
    const EVENTS: u64 = 1_000_000;
    const KEYS: u64 = 100_000;
    const BOUND: u64 = 256 << 20;
    let before = peak_rss_bytes();
    let counts = Pipeline::new()
        .shards(SHARDS)
        .from_iter(
            (0..EVENTS)
                .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS, i as Timestamp / 100)),
        )
        .assign_timestamps_and_watermarks(
            pinwheel_operators::pipeline::WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &(u64, Timestamp), _| e.1),
        )
        .key_by(|e: &(u64, Timestamp)| e.0)
        .process(WindowCount::default)
        .collect()
        .unwrap();
    assert_eq!(counts.iter().sum::<u64>(), EVENTS, "every record counted once");
    if std::env::var_os("PINWHEEL_SANITIZER").is_some() {
        // scripts/asan.sh: shadow memory and quarantined allocations inflate the resident set.
        eprintln!("under a sanitizer: the memory bound is not checked");
        return;
    }
    let Some(peak) = peak_rss_bytes() else {
        eprintln!("no /proc/self/status here: the memory bound is not checked");
        return;
    };
    eprintln!(
        "{SHARDS} shards, {EVENTS} records: peak RSS {} MiB (before the run {} MiB)",
        peak >> 20,
        before.unwrap_or(0) >> 20
    );
    assert!(peak <= BOUND, "peak RSS {} MiB exceeds {} MiB", peak >> 20, BOUND >> 20);
}
