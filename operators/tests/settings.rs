//! Impossible settings are typed errors, never a silent substitute or an abort:
//! * `ring_capacity_out_of_range_is_a_config_error` — `ring_capacity(1 << 40)` used to abort the
//!   process with a failed allocation of 26 TB; 0 is refused too.
//! * `no_shard_is_a_config_error` — `shards(0)` used to become 1 silently.
//! * `an_exchange_budget_too_small_for_the_shards_is_a_config_error` — 1,000 shards with the
//!   default budget would need 4 GB of rings: refused with the figures, not attempted.
//! * `more_shards_than_key_groups_is_a_config_error`.

use pinwheel_engine::exchange::ExchangeError;
use pinwheel_engine::keygroup::KeyGroupError;
use pinwheel_operators::pipeline::Pipeline;
use pinwheel_operators::{ConfigError, PipelineError};

fn keyed_sum(pipeline: Pipeline) -> Result<Vec<u64>, PipelineError> {
    pipeline
        .from_iter(0..1000u64)
        .key_by(|v: &u64| v % 10)
        .process(|| {
            pinwheel_operators::process_fn(
                |v: u64,
                 _: &mut pinwheel_operators::Context<'_, u64>,
                 out: &mut pinwheel_operators::Collector<'_, u64>| {
                    out.collect(v);
                    Ok::<(), pinwheel_operators::FnError>(())
                },
            )
        })
        .collect()
}

#[test]
fn ring_capacity_out_of_range_is_a_config_error() {
    for shards in [1, 2] {
        for capacity in [1usize << 40, 0] {
            let r = keyed_sum(Pipeline::new().shards(shards).ring_capacity(capacity));
            match r {
                Err(PipelineError::Config(ConfigError::Exchange(
                    ExchangeError::RingCapacity { requested, .. },
                ))) => assert_eq!(requested, capacity),
                other => panic!("{shards} shards, capacity {capacity}: {other:?}"),
            }
        }
    }
    // The largest accepted capacity runs (the rings' memory follows what they hold).
    let max = pinwheel_engine::exchange::MAX_RING_CAPACITY;
    let mut out = keyed_sum(Pipeline::new().shards(2).ring_capacity(max)).unwrap();
    out.sort_unstable();
    assert_eq!(out, (0..1000).collect::<Vec<u64>>());
}

#[test]
fn no_shard_is_a_config_error() {
    let r = keyed_sum(Pipeline::new().shards(0));
    assert!(matches!(r, Err(PipelineError::Config(ConfigError::NoShards))), "{r:?}");
    let r = Pipeline::new().shards(0).from_iter(0..3u64).map(|v| v + 1).collect();
    assert!(matches!(r, Err(PipelineError::Config(ConfigError::NoShards))), "{r:?}");
}

#[test]
fn an_exchange_budget_too_small_for_the_shards_is_a_config_error() {
    // 200 shards: 39,800 rings; 1 MiB cannot give each of them 64 messages.
    let r = keyed_sum(Pipeline::new().shards(200).exchange_memory(1 << 20));
    match r {
        Err(PipelineError::Config(ConfigError::Exchange(ExchangeError::BudgetTooSmall {
            shards,
            rings,
            budget,
            ..
        }))) => assert_eq!((shards, rings, budget), (200, 39_800, 1 << 20)),
        other => panic!("expected a budget error, got {other:?}"),
    }
}

#[test]
fn more_shards_than_key_groups_is_a_config_error() {
    let r = keyed_sum(Pipeline::new().shards(8).max_key_groups(4));
    assert!(
        matches!(
            r,
            Err(PipelineError::Config(ConfigError::KeyGroups(KeyGroupError::TooManyShards {
                shards: 8,
                max_key_groups: 4
            })))
        ),
        "{r:?}"
    );
}
