//! The same pipelines give the same per-key results on 1, 2 and 4 shards (4 shards on a 2-core
//! machine runs unpinned). Compared quantities do not depend on watermark timing (docs/benchmarks.md): the
//! last count per key, window-sum totals per key, distinct keys.

use std::collections::HashMap;

use pinwheel::pipeline::{Pipeline, WatermarkStrategy};
use pinwheel_examples::{CountWithTimeout, Event, StandardStream, TimerBurst, WindowSum};

const STREAM: StandardStream = StandardStream { events: 300_000, keys: 20_000, events_per_ms: 10 };

fn strategy() -> WatermarkStrategy<
    pinwheel::pipeline::BoundedOutOfOrderness,
    impl Fn(&Event, Option<i64>) -> i64 + Clone,
> {
    WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|e: &Event, _| e.timestamp)
}

fn events_per_key() -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for i in 0..STREAM.events {
        *m.entry(STREAM.event(i).key).or_default() += 1;
    }
    m
}

fn last_counts(shards: usize) -> HashMap<u64, u64> {
    let out = Pipeline::new()
        .shards(shards)
        .from_source(STREAM)
        .assign_timestamps_and_watermarks(strategy())
        .key_by(|e: &Event| e.key)
        .process(CountWithTimeout::one_minute)
        .collect()
        .unwrap();
    // Within a key, outputs keep their order on every shard count: the last one is the final count.
    let mut last = HashMap::new();
    for (k, c) in out {
        last.insert(k, c);
    }
    last
}

#[test]
fn count_with_timeout_final_counts_match_on_1_2_4_shards() {
    let expected = events_per_key();
    for shards in [1, 2, 4] {
        assert_eq!(last_counts(shards), expected, "{shards} shards");
    }
}

fn window_totals(shards: usize) -> HashMap<u64, u64> {
    let out = Pipeline::new()
        .shards(shards)
        .from_source(STREAM)
        .assign_timestamps_and_watermarks(strategy())
        .key_by(|e: &Event| e.key)
        .process(WindowSum::one_minute)
        .collect()
        .unwrap();
    let mut totals = HashMap::new();
    for (k, s) in out {
        *totals.entry(k).or_default() += s;
    }
    totals
}

#[test]
fn window_sum_totals_match_on_1_2_4_shards() {
    let one = window_totals(1);
    let total: u64 = one.values().sum();
    assert_eq!(total, (0..STREAM.events).map(|i| i % 100).sum::<u64>());
    assert_eq!(window_totals(2), one);
    assert_eq!(window_totals(4), one);
}

#[test]
fn timer_burst_fires_once_per_distinct_key_on_1_2_4_shards() {
    let keys = events_per_key().len();
    for shards in [1, 2, 4] {
        let s = StandardStream { events: 50_000, keys: 50_000, events_per_ms: 10 };
        let out = Pipeline::new()
            .shards(shards)
            .from_source(s)
            .assign_timestamps_and_watermarks(strategy())
            .key_by(|e: &Event| e.key)
            .process(|| TimerBurst)
            .collect()
            .unwrap();
        let distinct: std::collections::HashSet<u64> =
            (0..s.events).map(|i| s.event(i).key).collect();
        assert_eq!(out.len(), distinct.len(), "{shards} shards");
        let _ = keys;
    }
}

#[test]
fn for_each_on_several_shards_sees_every_output() {
    let mut n = 0u64;
    Pipeline::new()
        .shards(3)
        .from_source(STREAM)
        .assign_timestamps_and_watermarks(strategy())
        .key_by(|e: &Event| e.key)
        .process(WindowSum::one_minute)
        .for_each(|(_, s)| n += s)
        .unwrap();
    assert_eq!(n, (0..STREAM.events).map(|i| i % 100).sum::<u64>());
}
