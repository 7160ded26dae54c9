//! The timer store at scale: [`TimerWheel`] next to [`HeapTimers`], a reference store built on
//! `std::collections::BinaryHeap`, for 10,000,000 timers.
//!
//! Every figure is the time of one whole pass over all `N` timers (criterion's `time`), reported
//! with `Throughput::Elements(N)`, so criterion's `thrpt` is operations per second; the per-operation
//! cost is `time / N`. Only the operation is timed: building the store it needs (registering the `N`
//! timers first, for delete and fire) and dropping it afterwards are setup (`iter_batched` with
//! `BatchSize::PerIteration`, one store at a time); duplicate registrations leave the store as it
//! was, so that scenario builds its store once and times passes over it (`iter_custom`).
//!
//! # The timers
//!
//! `N` distinct `(key, timestamp)` pairs, `N = 10,000,000` unless `PINWHEEL_BENCH_TIMERS` says
//! otherwise (`PINWHEEL_BENCH_TIMERS=1000000` for a quick run), from a fixed-seed generator, with
//! random keys among `K = 1,000,000` unless `PINWHEEL_BENCH_TIMER_KEYS` says otherwise:
//!
//! * `cwt` (count-with-timeout's pattern, docs/benchmarks.md): the i-th registration is for a random key at
//!   `ts = i / 10 + 60_000`, the timestamp of event `i` (10 events per ms) plus a minute;
//! * `uniform`: random keys, timestamps uniformly random over one day (`0..86_400_000` ms), in
//!   random order;
//! * `burst` (timer-burst's pattern): keys `0..N` (N distinct keys, numbered in first-seen order as
//!   the key interner does), all at `i64::MAX - 1`.
//!
//! A pair drawn twice is redrawn (another key), so the `N` timers are distinct. With all `N`
//! pending at once, a key has `N / K` timers on average (10 at the defaults; the count-with-timeout
//! job itself keeps under one per key pending, as a key's timers fire a minute after they are set):
//! `PINWHEEL_BENCH_TIMER_KEYS=10000000` gives one per key. Each store starts
//! with its time at 0 (it is polled at 0 before the registrations): in the engine a store's time is
//! the watermark, a little behind the events, and the wheel files timers relative to it.
//!
//! # The scenarios, each for `wheel` and `heap`
//!
//! * `timers/register/{store}/{cwt,uniform}`: register the `N` timers, in order, into an empty store
//!   (the cost includes the stores' growth: their tables and vectors double as they fill).
//! * `timers/delete/{store}/{cwt,uniform}`: delete the `N` pending timers, in a random order.
//! * `timers/fire_stepped/{store}/{cwt,uniform}`: fire the `N` pending timers by advancing the
//!   store's time in steps of 256 timers' worth of time, as the engine's watermark advances every
//!   256 events: the k-th step polls, until it returns nothing, at the (256·k)-th smallest
//!   timestamp (the last step at the largest). For `cwt` that is a watermark every 256
//!   registrations, 25.6 ms; for `uniform`, about every 2.2 s of a day. Each step ends with the
//!   poll that finds nothing due, as the engine's firing loop does.
//! * `timers/fire_burst/{store}`: the timer burst: the `N` pending timers of `burst` (one per key,
//!   all at `i64::MAX - 1`) fired by one jump of the store's time to `i64::MAX` (Flink's end of
//!   input).
//! * `timers/duplicate/{store}/cwt`: register the `N` timers again, in a random order, while they
//!   are all pending: each registration is a no-op (the `(key, timestamp)` is pending), and costs a
//!   lookup.
//!
//! # The reference store
//!
//! [`HeapTimers`] is the usual way to give a binary heap the same contract as the wheel: a min-heap
//! of `(timestamp, seq, key)` (`seq` numbers registrations, so equal timestamps fire in registration
//! order, as in the wheel) plus a hash map of the pending `(key, timestamp)` pairs to the `seq` of
//! their live heap entry (uniqueness, and lazy deletion: a heap entry whose `seq` is not the pair's
//! current one is a tombstone, skipped when it reaches the top). A set of pairs alone would not do:
//! a timer deleted and registered again would fire at its old place in the order. The heap is
//! compacted (tombstones dropped, O(n)) when tombstones outnumber the pending timers, so its memory
//! stays within twice the pending count whatever the churn; that cost is amortized into `delete`.
//! The map hashes with `ahash::RandomState`, as the wheel's dedup table does, and both stores run on
//! mimalloc, the allocator of the engine's binaries. Before measuring, a small run checks that the
//! two stores fire exactly the same timers in the same order, deletions and re-registrations
//! included.
//!
//! # Running
//!
//! ```text
//! cargo bench -p pinwheel-bench --bench timers                                  # N = 10 M
//! PINWHEEL_BENCH_TIMERS=1000000 cargo bench -p pinwheel-bench --bench timers    # quick
//! cargo bench -p pinwheel-bench --bench timers -- fire_burst                    # one scenario
//! ```
//!
//! Ten samples of one pass each (flat sampling, criterion's minimum) after a one-pass warm-up, so at
//! `N = 10 M` criterion warns that it cannot complete 10 samples in the measurement time: expected,
//! each pass is long enough to time on its own. That is 11 passes per benchmark, and for delete and
//! fire 11 stores of 10 M timers to build: at 0.2 to 1.6 µs per operation (the 10 M-timer stores
//! are memory-bound) the full run took about 20 minutes on the project's 2-core machine, the quick
//! one (`N = 1 M`) about a minute and a half. On a machine shared with other work the figures are
//! noisy (the stores, several hundred MB each, are sensitive to cache and memory-bandwidth
//! contention); compare runs made on the same quiet machine.

use std::cmp::Ordering;
use std::collections::hash_map::{self, HashMap};
use std::collections::{BinaryHeap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use pinwheel_engine::key::KeyId;
use pinwheel_engine::time::Timestamp;
use pinwheel_engine::timer::{Timer, TimerWheel};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Timers per scenario unless `PINWHEEL_BENCH_TIMERS` is set.
const DEFAULT_TIMERS: usize = 10_000_000;
/// Distinct keys of the `cwt` and `uniform` timers (docs/benchmarks.md's K) unless
/// `PINWHEEL_BENCH_TIMER_KEYS` is set.
const DEFAULT_KEYS: u32 = 1_000_000;
/// Events per millisecond of the `cwt` timers (docs/benchmarks.md's R).
const EVENTS_PER_MS: usize = 10;
/// count-with-timeout's timeout.
const MINUTE: Timestamp = 60_000;
/// The span of the `uniform` timestamps.
const DAY: u64 = 86_400_000;
/// Timers' worth of time between two watermarks of `fire_stepped`.
const STEP: usize = 256;
/// The store's time before the registrations (the watermark at the start of the stream).
const START: Timestamp = 0;
/// timer-burst's instant.
const BURST_AT: Timestamp = i64::MAX - 1;

/// What the benchmarks need of a timer store: the engine's `TimerWheel` API.
trait TimerStore: Default {
    /// Registers `(key, ts)`; false if it was already pending.
    fn register(&mut self, key: KeyId, ts: Timestamp) -> bool;
    /// Deletes `(key, ts)`; false if it was not pending.
    fn delete(&mut self, key: KeyId, ts: Timestamp) -> bool;
    /// The pending timer with the smallest timestamp (registration order among equals), if `<= now`.
    fn poll(&mut self, now: Timestamp) -> Option<Timer>;
    /// Pending timers.
    fn len(&self) -> usize;
}

impl TimerStore for TimerWheel {
    #[inline]
    fn register(&mut self, key: KeyId, ts: Timestamp) -> bool {
        TimerWheel::register(self, key, ts).expect("fewer than 2^32 timers")
    }

    #[inline]
    fn delete(&mut self, key: KeyId, ts: Timestamp) -> bool {
        TimerWheel::delete(self, key, ts)
    }

    #[inline]
    fn poll(&mut self, now: Timestamp) -> Option<Timer> {
        TimerWheel::poll(self, now)
    }

    fn len(&self) -> usize {
        TimerWheel::len(self)
    }
}

/// The reference store: a `BinaryHeap` min-heap of [`HeapEntry`] with a hash map of the pending
/// `(key, timestamp)` pairs for uniqueness and lazy deletion (see the [crate docs](crate)).
///
/// Costs: `register` one hash probe and a heap push (O(log n), O(1) on average for timestamps that
/// mostly increase); a duplicate `register` one probe; `delete` one probe, plus an O(n) compaction
/// each time tombstones come to outnumber the pending timers (amortized O(1)); `poll` returning a
/// timer a heap pop (O(log n)) and one probe per entry popped, tombstones included.
#[derive(Default)]
struct HeapTimers {
    /// Live entries and tombstones.
    heap: BinaryHeap<HeapEntry>,
    /// The pending timers, each with the `seq` of its live heap entry.
    pending: HashMap<(KeyId, Timestamp), u64, ahash::RandomState>,
    /// The next registration's sequence number.
    next_seq: u64,
}

/// A heap entry: ordered so that `BinaryHeap`'s top is the smallest `(ts, seq)`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct HeapEntry {
    ts: Timestamp,
    seq: u64,
    key: KeyId,
}

impl Ord for HeapEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap. `seq` is unique, so `key` never decides.
        (other.ts, other.seq).cmp(&(self.ts, self.seq))
    }
}

impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl HeapTimers {
    /// Drops the tombstones from the heap (O(n): a filter and a rebuild).
    fn compact(&mut self) {
        let pending = &self.pending;
        self.heap.retain(|e| pending.get(&(e.key, e.ts)) == Some(&e.seq));
    }
}

impl TimerStore for HeapTimers {
    #[inline]
    fn register(&mut self, key: KeyId, ts: Timestamp) -> bool {
        match self.pending.entry((key, ts)) {
            hash_map::Entry::Occupied(_) => false,
            hash_map::Entry::Vacant(slot) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                slot.insert(seq);
                self.heap.push(HeapEntry { ts, seq, key });
                true
            }
        }
    }

    #[inline]
    fn delete(&mut self, key: KeyId, ts: Timestamp) -> bool {
        if self.pending.remove(&(key, ts)).is_none() {
            return false;
        }
        // The heap entry stays as a tombstone; compact when they are the majority.
        let tombstones = self.heap.len() - self.pending.len();
        if tombstones > self.pending.len().max(1024) {
            self.compact();
        }
        true
    }

    #[inline]
    fn poll(&mut self, now: Timestamp) -> Option<Timer> {
        while let Some(&top) = self.heap.peek() {
            if top.ts > now {
                return None;
            }
            self.heap.pop();
            if let hash_map::Entry::Occupied(live) = self.pending.entry((top.key, top.ts)) {
                if *live.get() == top.seq {
                    live.remove();
                    return Some(Timer { key: top.key, timestamp: top.ts });
                }
            }
            // A tombstone: that timer was deleted (and maybe registered again, later in the heap).
        }
        None
    }

    fn len(&self) -> usize {
        self.pending.len()
    }
}

/// splitmix64: a small, fast, fixed-seed generator (the workloads are the same in every run).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for these ranges).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The timers of one scenario family, with their precomputed orders.
struct Workload {
    name: &'static str,
    /// Distinct `(key, timestamp)` pairs in registration order.
    timers: Vec<(KeyId, Timestamp)>,
    /// The same pairs in a random order (delete, duplicate); empty where no scenario uses it.
    shuffled: Vec<(KeyId, Timestamp)>,
    /// The successive `now`s of the firing loop; the last is the largest timestamp.
    watermarks: Vec<Timestamp>,
}

impl Workload {
    /// `n` distinct timers for random keys among `keys`, the i-th at `timestamp(i, rng)`.
    fn random(
        name: &'static str,
        n: usize,
        keys: u32,
        seed: u64,
        mut timestamp: impl FnMut(usize, &mut SplitMix64) -> Timestamp,
    ) -> Workload {
        let mut rng = SplitMix64(seed);
        let mut seen = HashSet::with_capacity_and_hasher(n, ahash::RandomState::new());
        let mut timers = Vec::with_capacity(n);
        for i in 0..n {
            let ts = timestamp(i, &mut rng);
            let mut key = rng.below(u64::from(keys)) as KeyId;
            while !seen.insert((key, ts)) {
                key = rng.below(u64::from(keys)) as KeyId;
            }
            timers.push((key, ts));
        }
        drop(seen);
        let mut shuffled = timers.clone();
        rng.shuffle(&mut shuffled);
        let mut sorted: Vec<Timestamp> = timers.iter().map(|&(_, ts)| ts).collect();
        sorted.sort_unstable();
        let watermarks = sorted.chunks(STEP).map(|c| c[c.len() - 1]).collect();
        Workload { name, timers, shuffled, watermarks }
    }

    /// count-with-timeout's timers: the i-th at `i / 10 + 60_000`.
    fn cwt(n: usize, keys: u32) -> Workload {
        Workload::random("cwt", n, keys, 1, |i, _| (i / EVENTS_PER_MS) as Timestamp + MINUTE)
    }

    /// Timestamps uniformly random over a day.
    fn uniform(n: usize, keys: u32) -> Workload {
        Workload::random("uniform", n, keys, 2, |_, rng| rng.below(DAY) as Timestamp)
    }

    /// timer-burst: keys `0..n`, all at `i64::MAX - 1`, fired by one jump to `i64::MAX`.
    fn burst(n: usize) -> Workload {
        let timers = (0..n).map(|k| (k as KeyId, BURST_AT)).collect();
        Workload { name: "burst", timers, shuffled: Vec::new(), watermarks: vec![i64::MAX] }
    }

    fn len(&self) -> usize {
        self.timers.len()
    }
}

/// An empty store whose time is [`START`].
fn empty<S: TimerStore>() -> S {
    let mut store = S::default();
    assert!(store.poll(START).is_none());
    store
}

/// A store holding all of `timers` (setup, not timed).
fn filled<S: TimerStore>(timers: &[(KeyId, Timestamp)]) -> S {
    let mut store = empty::<S>();
    for &(key, ts) in timers {
        store.register(key, ts);
    }
    assert_eq!(store.len(), timers.len());
    store
}

/// Polls at each watermark until nothing is due; returns how many fired and a checksum of them.
#[inline]
fn fire<S: TimerStore>(store: &mut S, watermarks: &[Timestamp]) -> (usize, u64) {
    let (mut fired, mut check) = (0usize, 0u64);
    for &now in watermarks {
        while let Some(t) = store.poll(now) {
            fired += 1;
            check = check.wrapping_mul(31).wrapping_add(u64::from(t.key) ^ t.timestamp as u64);
        }
    }
    (fired, check)
}

/// The timers `store` fires at each of `watermarks`, in order (for the agreement check). A timer of
/// a key divisible by 5 registers, as it fires, one for the neighbouring key a millisecond earlier
/// (behind the store's time: it fires next, in the same loop).
fn fired_sequence<S: TimerStore>(
    store: &mut S,
    watermarks: &[Timestamp],
) -> Vec<(KeyId, Timestamp)> {
    let mut out = Vec::new();
    for &now in watermarks {
        while let Some(t) = store.poll(now) {
            out.push((t.key, t.timestamp));
            if t.key % 5 == 0 {
                store.register(t.key ^ 1, t.timestamp - 1);
            }
        }
    }
    out
}

/// Checks, on a small workload, that [`HeapTimers`] keeps the wheel's contract: same registration
/// and deletion results, same timers fired in the same order, with deletions, re-registrations
/// (which go to the back of their timestamp's order) and registrations during firing.
fn check_reference_agrees() {
    fn run<S: TimerStore>(w: &Workload) -> (Vec<bool>, Vec<(KeyId, Timestamp)>) {
        let mut results = Vec::new();
        let mut store = empty::<S>();
        for &(key, ts) in &w.timers {
            results.push(store.register(key, ts));
        }
        // Delete a third, in random order, some twice; re-register half of those.
        for (i, &(key, ts)) in w.shuffled.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            results.push(store.delete(key, ts));
            if i % 2 == 0 {
                results.push(store.delete(key, ts));
                results.push(store.register(key, ts));
            }
        }
        // Duplicates of a sample.
        for &(key, ts) in w.timers.iter().step_by(7) {
            results.push(store.register(key, ts));
        }
        let half = w.watermarks.len() / 2;
        let mut fired = fired_sequence(&mut store, &w.watermarks[..half]);
        // Registrations behind the time and at it, then the rest.
        for &(key, ts) in w.timers.iter().take(1000) {
            results.push(store.register(key, ts));
        }
        fired.extend(fired_sequence(&mut store, &w.watermarks[half..]));
        results.push(store.len() == 0);
        (results, fired)
    }
    // 10 timers per key and 1 per key on average.
    let workloads = [20_000, 200_000]
        .map(|keys| [Workload::cwt(200_000, keys), Workload::uniform(200_000, keys)]);
    for w in workloads.iter().flatten() {
        let wheel = run::<TimerWheel>(w);
        let heap = run::<HeapTimers>(w);
        assert_eq!(wheel.0, heap.0, "{}: register/delete results differ", w.name);
        assert!(wheel.1 == heap.1, "{}: the stores fire differently", w.name);
        assert!(wheel.1.len() > w.len() / 2, "{}: the check fired too little", w.name);
    }
}

/// Registers `w`'s timers into an empty store.
fn bench_register<S: TimerStore>(g: &mut BenchmarkGroup<'_, WallTime>, store: &str, w: &Workload) {
    g.bench_function(format!("{store}/{}", w.name), |b| {
        b.iter_batched(
            empty::<S>,
            |mut s| {
                let mut added = 0usize;
                for &(key, ts) in &w.timers {
                    added += usize::from(s.register(key, ts));
                }
                assert_eq!(added, w.len());
                s
            },
            BatchSize::PerIteration,
        );
    });
}

/// Deletes `w`'s pending timers in a random order.
fn bench_delete<S: TimerStore>(g: &mut BenchmarkGroup<'_, WallTime>, store: &str, w: &Workload) {
    g.bench_function(format!("{store}/{}", w.name), |b| {
        b.iter_batched(
            || filled::<S>(&w.timers),
            |mut s| {
                let mut deleted = 0usize;
                for &(key, ts) in &w.shuffled {
                    deleted += usize::from(s.delete(key, ts));
                }
                assert_eq!((deleted, s.len()), (w.len(), 0));
                s
            },
            BatchSize::PerIteration,
        );
    });
}

/// Fires `w`'s pending timers at its watermarks.
fn bench_fire<S: TimerStore>(g: &mut BenchmarkGroup<'_, WallTime>, id: String, w: &Workload) {
    g.bench_function(id, |b| {
        b.iter_batched(
            || filled::<S>(&w.timers),
            |mut s| {
                let (fired, check) = fire(&mut s, &w.watermarks);
                assert_eq!((fired, s.len()), (w.len(), 0));
                black_box(check);
                s
            },
            BatchSize::PerIteration,
        );
    });
}

/// Registers `w`'s timers, all pending, again in a random order. That changes nothing, so one
/// filled store (built on first use, not timed) serves every pass.
fn bench_duplicate<S: TimerStore>(g: &mut BenchmarkGroup<'_, WallTime>, store: &str, w: &Workload) {
    let mut filled_store: Option<S> = None;
    g.bench_function(format!("{store}/{}", w.name), |b| {
        let s = filled_store.get_or_insert_with(|| filled::<S>(&w.timers));
        b.iter_custom(|passes| {
            let start = Instant::now();
            for _ in 0..passes {
                let mut added = 0usize;
                for &(key, ts) in &w.shuffled {
                    added += usize::from(s.register(key, ts));
                }
                assert_eq!(added, 0);
            }
            start.elapsed()
        });
        assert_eq!(s.len(), w.len());
    });
}

/// A group of whole-pass benchmarks over `n` timers.
fn group<'a>(c: &'a mut Criterion, name: &str, n: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(format!("timers/{name}"));
    g.throughput(Throughput::Elements(n as u64));
    g.sampling_mode(SamplingMode::Flat);
    g
}

/// The number in environment variable `name` (`_` and `,` separators allowed), else `default`.
fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.replace(['_', ','], "").parse().unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
    })
}

fn timers(c: &mut Criterion) {
    let n = env_number("PINWHEEL_BENCH_TIMERS", DEFAULT_TIMERS);
    let keys = env_number("PINWHEEL_BENCH_TIMER_KEYS", DEFAULT_KEYS as usize);
    let keys = u32::try_from(keys).expect("PINWHEEL_BENCH_TIMER_KEYS: at most 2^32 - 1 keys");
    check_reference_agrees();
    eprintln!("timers: generating {n} timers per workload, keys among {keys}");
    let random = [Workload::cwt(n, keys), Workload::uniform(n, keys)];
    let burst = Workload::burst(n);

    let mut g = group(c, "register", n);
    for w in &random {
        bench_register::<TimerWheel>(&mut g, "wheel", w);
        bench_register::<HeapTimers>(&mut g, "heap", w);
    }
    g.finish();

    let mut g = group(c, "delete", n);
    for w in &random {
        bench_delete::<TimerWheel>(&mut g, "wheel", w);
        bench_delete::<HeapTimers>(&mut g, "heap", w);
    }
    g.finish();

    let mut g = group(c, "fire_stepped", n);
    for w in &random {
        bench_fire::<TimerWheel>(&mut g, format!("wheel/{}", w.name), w);
        bench_fire::<HeapTimers>(&mut g, format!("heap/{}", w.name), w);
    }
    g.finish();

    let mut g = group(c, "fire_burst", n);
    bench_fire::<TimerWheel>(&mut g, "wheel".into(), &burst);
    bench_fire::<HeapTimers>(&mut g, "heap".into(), &burst);
    g.finish();

    let mut g = group(c, "duplicate", n);
    bench_duplicate::<TimerWheel>(&mut g, "wheel", &random[0]);
    bench_duplicate::<HeapTimers>(&mut g, "heap", &random[0]);
    g.finish();
}

fn config() -> Criterion {
    // One pass over 10 M timers takes from a fraction of a second to a few seconds: one pass of
    // warm-up, then ten samples of (usually) one pass each.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = timers
}
criterion_main!(benches);
