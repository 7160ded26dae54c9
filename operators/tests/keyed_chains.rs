//! Keyed stages chained through `key_by` again: the second stage's input comes from the first
//! stage's output on every shard, through a second exchange. Nothing here depends on timing.
//! * `keyed_output_keyed_again_is_independent_of_the_shard_count` — per-key results of a
//!   two-stage keyed chain (a running total per user, then event-time windows per region driven
//!   by the first stage's forwarded watermarks) are exact and identical on 1, 2 and 4 shards.

use std::collections::BTreeMap;

use pinwheel_operators::pipeline::{Pipeline, WatermarkStrategy};
use pinwheel_operators::{
    Collector, Context, FnError, KeyedProcessFunction, MapState, MapStateDescriptor,
    OnTimerContext, OpenContext, Timestamp, ValueState, ValueStateDescriptor,
};

/// (user, timestamp, amount).
type Payment = (u64, Timestamp, u64);

const USERS: u64 = 300;
const REGIONS: u64 = 7;
const WINDOW: Timestamp = 50;

fn region(user: u64) -> u64 {
    user % REGIONS
}

fn window_end(ts: Timestamp) -> Timestamp {
    (ts / WINDOW + 1) * WINDOW - 1
}

/// Stage 1, per user: emits (user, running total) for every payment.
#[derive(Default)]
struct RunningTotal {
    total: ValueState<u64>,
}

impl KeyedProcessFunction for RunningTotal {
    type Key = u64;
    type In = Payment;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.total = ctx.value_state(ValueStateDescriptor::new("total"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (user, _, amount): Payment,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        let total = self.total.value(ctx)?.unwrap_or(0) + amount;
        self.total.update(ctx, total)?;
        out.collect((user, total));
        Ok(())
    }
}

/// Stage 2, per region: the largest running total seen in each event-time window, emitted when
/// the watermark passes the window (the records keep the timestamps of stage 1's inputs).
#[derive(Default)]
struct WindowMax {
    max: MapState<Timestamp, u64>,
}

impl KeyedProcessFunction for WindowMax {
    type Key = u64;
    type In = (u64, u64);
    type Out = (u64, Timestamp, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.max = ctx.map_state(MapStateDescriptor::new("max"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, total): (u64, u64),
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let ts = ctx.timestamp().ok_or("records keep their timestamps")?;
        if ts <= ctx.current_watermark() {
            return Err(format!("late record at {ts}").into());
        }
        let end = window_end(ts);
        let max = self.max.get(ctx, &end)?.unwrap_or(0).max(total);
        self.max.put(ctx, end, max)?;
        ctx.timer_service().register_event_time_timer(end)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        out.collect((*ctx.current_key(), t, self.max.get(ctx, &t)?.unwrap_or(0)));
        self.max.remove(ctx, &t)?;
        Ok(())
    }
}

fn payments(n: u64) -> Vec<Payment> {
    (0..n)
        .map(|i| (splitmix64(i) % USERS, (i / 8) as Timestamp, splitmix64(i + n) % 1000))
        .collect()
}

fn model(payments: &[Payment]) -> BTreeMap<(u64, Timestamp), u64> {
    let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
    let mut windows: BTreeMap<(u64, Timestamp), u64> = BTreeMap::new();
    for &(user, ts, amount) in payments {
        let total = totals.entry(user).or_default();
        *total += amount;
        let max = windows.entry((region(user), window_end(ts))).or_default();
        *max = (*max).max(*total);
    }
    windows
}

#[test]
fn keyed_output_keyed_again_is_independent_of_the_shard_count() {
    let input = payments(30_000);
    let expected = model(&input);
    for shards in [1, 2, 4] {
        let out = Pipeline::new()
            .shards(shards)
            .from_iter(input.clone())
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|p: &Payment, _| p.1),
            )
            .key_by(|p: &Payment| p.0)
            .process(RunningTotal::default)
            .name("running-total")
            .key_by(|t: &(u64, u64)| region(t.0))
            .process(WindowMax::default)
            .name("window-max")
            .collect()
            .unwrap();
        let got: BTreeMap<(u64, Timestamp), u64> =
            out.iter().map(|&(r, end, max)| ((r, end), max)).collect();
        assert_eq!(got.len(), out.len(), "one result per region and window, on {shards} shards");
        assert_eq!(got, expected, "on {shards} shards");
    }
}

/// splitmix64 (wrapping arithmetic): a fixed-seed mix for test data.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
