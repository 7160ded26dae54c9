//! Micro-benchmarks of the key → key group → shard assignment (`pinwheel_engine::keygroup`).
//!
//! * `keygroup/key_group_of/u64`: `KeyGroups::key_group_of` for `u64` keys (xxh3 of 8 bytes and a
//!   remainder).
//! * `keygroup/key_group_of/string16`: the same for 16-byte `String` keys.
//! * `keygroup/shard_for_key/u64`: key → shard, the per-record routing decision.
//!
//! Each iteration hashes 1024 different keys (throughput is per key), so the compiler cannot fold
//! the work away.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pinwheel_engine::keygroup::KeyGroups;

const KEYS: usize = 1024;

fn key_group_of(c: &mut Criterion) {
    let groups = KeyGroups::new(128).expect("128 key groups");
    let ints: Vec<u64> = (0..KEYS as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let strings: Vec<String> = (0..KEYS).map(|i| format!("user-{i:011}")).collect();
    assert!(strings.iter().all(|s| s.len() == 16));

    let mut g = c.benchmark_group("keygroup/key_group_of");
    g.throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("u64", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in black_box(&ints) {
                acc ^= groups.key_group_of(k).0;
            }
            acc
        });
    });
    g.bench_function("string16", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in black_box(&strings) {
                acc ^= groups.key_group_of(k).0;
            }
            acc
        });
    });
    g.finish();

    let mut g = c.benchmark_group("keygroup/shard_for_key");
    g.throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("u64", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for k in black_box(&ints) {
                acc ^= groups.shard_for_key(k, 4);
            }
            acc
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = key_group_of
}
criterion_main!(benches);
