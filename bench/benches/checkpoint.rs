//! The three costs of a checkpoint of one shard's keyed backend, for count-with-timeout's state
//! (docs/benchmarks.md): `2K` events of random keys among `K` (a fixed-seed generator), 10 per
//! ms, each updating its key's `CountWithTimestamp` and registering an event-time timer a minute
//! after its timestamp, as the job does, with the watermark following the events (every 1024
//! events) so that the timers of the last minute are pending, about `0.6 K` when `K` is a
//! million. `K = 1,000,000` unless `PINWHEEL_BENCH_CHECKPOINT_KEYS` says otherwise; about 86%
//! of the keys are drawn.
//!
//! * `checkpoint/freeze`: [`KeyedBackend::freeze`], the copy the shard stalls for;
//! * `checkpoint/encode`: [`FrozenBackend::encode`] of one frozen copy, on the checkpoint thread;
//! * `checkpoint/write`: [`write_shard_file`] of the encoded section into a temporary directory
//!   (checksums, the mmap, `fdatasync`, rename, directory sync).
//!
//! Throughput is per key in the backend (`Elements`); the snapshot's size is printed first, so
//! bytes per second follow from it. The allocator is the driver's (mimalloc), whose large pages
//! change what fresh buffers cost.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pinwheel_engine::checkpoint::{
    CheckpointDir, KEYED_SECTION, ShardFileMeta, WriteOptions, keyed_section_frozen,
    write_shard_file,
};
use pinwheel_engine::keyed::{AdvanceStep, BackendSettings, KeyedBackend, KeyedRecord};
use pinwheel_engine::keygroup::{KeyGroup, KeyGroupRange, KeyGroups};
use pinwheel_engine::state::ValueStateDescriptor;
use pinwheel_engine::time::TimeDomain;
use pinwheel_examples::{CountWithTimestamp, MINUTE};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn keys() -> u64 {
    std::env::var("PINWHEEL_BENCH_CHECKPOINT_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// The backend after `keys` events of count-with-timeout.
fn backend(keys: u64, groups: &KeyGroups) -> KeyedBackend<u64> {
    let mut b = KeyedBackend::new(BackendSettings::default(), 0);
    let state =
        b.state_registry().value_state::<CountWithTimestamp>(ValueStateDescriptor::new("myState"));
    let state = state.expect("one state");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2 * keys {
        // xorshift64: a fixed, cheap stream of random keys.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = (i / 10) as i64;
        let r = KeyedRecord::new(x % keys, (), Some(ts), groups);
        b.enter(r.key, r.hash, r.key_group, r.timestamp, |mut cx| {
            let mut c = state.value(&cx.scope).expect("value").unwrap_or(CountWithTimestamp {
                key: r.key,
                count: 0,
                last_modified: 0,
            });
            c.count += 1;
            c.last_modified = ts;
            state.update(&cx.scope, c).expect("update");
            cx.timers.register(TimeDomain::EventTime, ts + MINUTE).expect("register");
        })
        .expect("enter");
        if i % 1024 == 1023 && b.begin_watermark(ts) {
            // The callbacks emit nothing: the job's state stays, its timers go.
            while let AdvanceStep::InProgress =
                b.continue_advance(4096, |_, _, _| Ok::<(), ()>(())).expect("advance")
            {}
        }
    }
    b
}

fn checkpoint(c: &mut Criterion) {
    let groups = KeyGroups::new(128).expect("128 key groups");
    let keys = keys();
    let mut backend = backend(keys, &groups);
    let tmp =
        std::env::temp_dir().join(format!("pinwheel-bench-checkpoint-{}", std::process::id()));
    let dir = CheckpointDir::open_or_create(&tmp).expect("checkpoint dir");

    let mut g = c.benchmark_group("checkpoint");
    g.throughput(Throughput::Elements(backend.num_keys() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    // Each frozen view is dropped before the next freeze, as a checkpoint's is once written
    // (a view still alive at the next freeze would be filled first: a copy, not a freeze).
    g.bench_function("freeze", |b| b.iter(|| drop(black_box(backend.freeze().expect("freeze")))));
    let frozen = backend.freeze().expect("freeze");
    // The first encode fills the view's pages (the checkpoint thread's copy); the encode
    // benchmark below reads them filled.
    let section = keyed_section_frozen("cwt", &frozen).expect("encode");
    println!(
        "checkpoint: {} keys live, {} timers, snapshot {} bytes",
        backend.num_keys(),
        backend.num_timers(TimeDomain::EventTime),
        section.len()
    );
    g.bench_function("encode", |b| {
        b.iter(|| black_box(keyed_section_frozen("cwt", &frozen).expect("encode")));
    });
    let range = KeyGroupRange::new(KeyGroup(0), KeyGroup(127)).expect("range");
    let options = WriteOptions::default();
    let mut id = 0;
    g.bench_function("write", |b| {
        b.iter(|| {
            id += 1;
            let meta = ShardFileMeta::new(id, 0, 1, range);
            let written = write_shard_file(&dir, &meta, &[(KEYED_SECTION, &section)], &options)
                .expect("write");
            std::fs::remove_file(&written.path).expect("remove");
        });
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&tmp);
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
