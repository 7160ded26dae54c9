//! Micro-benchmarks of the exchange ring (`pinwheel_engine::exchange`).
//!
//! * `ring/spsc_single/{capacity}`: one producer thread, one consumer thread, one value per
//!   `push`/`pop`; items per second through the ring.
//! * `ring/spsc_batch/{capacity}/{batch}`: the same with `push_batch`/`pop_batch` of 64, 128 (the
//!   exchange's flush size) or 256 values (the shard loop's way of using the ring).
//! * `ring/std_sync_channel/{capacity}`: `std::sync::mpsc::sync_channel` of the same capacity, one
//!   value per send/recv, as a baseline.
//! * `ring/same_thread/push_pop`: a `push` then a `pop` on one thread: the cost of the operations
//!   themselves, without cross-core traffic.
//! * `ring/same_thread/batch_128`: a `push_batch` of 128 values then a `pop_batch` of 128 on one
//!   thread, through a ring of 4096: the per-value cost of batched transfer, block changes
//!   included, without cross-core traffic (the steadiest figure on a noisy machine).
//!
//! The two-thread benches time whole runs with `iter_custom` (spawn a consumer, push `iters` values
//! or batches, join). A side that finds the ring full or empty spins briefly, then yields. On a
//! machine with 2 cores shared with other work the two threads often do not run at the same time,
//! so the figures are noisy and pessimistic; compare runs made on the same quiet machine.

use std::collections::VecDeque;
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pinwheel_engine::exchange::{PopError, PushError, ring};

/// Spin a little, then yield: what a side does while the other catches up.
fn wait(spins: &mut u32) {
    if *spins < 64 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

/// `n` values, one at a time, from this thread to a consumer thread.
fn run_single(capacity: usize, n: u64) -> Duration {
    let (mut tx, mut rx) = ring::<u64>(capacity);
    let consumer = thread::spawn(move || {
        let mut sum = 0u64;
        let mut got = 0u64;
        let mut spins = 0;
        while got < n {
            match rx.pop() {
                Ok(v) => {
                    sum = sum.wrapping_add(v);
                    got += 1;
                    spins = 0;
                }
                Err(PopError::Empty) => wait(&mut spins),
                Err(PopError::Abandoned) => break,
            }
        }
        black_box(sum);
    });
    let start = Instant::now();
    for i in 0..n {
        let mut v = i;
        let mut spins = 0;
        loop {
            match tx.push(v) {
                Ok(()) => break,
                Err(PushError::Full(back)) => {
                    v = back;
                    wait(&mut spins);
                }
                Err(PushError::Abandoned(_)) => unreachable!("the consumer outlives the pushes"),
            }
        }
    }
    consumer.join().expect("consumer thread");
    start.elapsed()
}

/// `batches` batches of `batch` values from this thread to a consumer thread that pops in batches
/// of up to `batch`.
fn run_batched(capacity: usize, batch: usize, batches: u64) -> Duration {
    let total = batches * batch as u64;
    let (mut tx, mut rx) = ring::<u64>(capacity);
    let consumer = thread::spawn(move || {
        let mut out = Vec::with_capacity(batch);
        let mut sum = 0u64;
        let mut got = 0u64;
        let mut spins = 0;
        while got < total {
            out.clear();
            let n = rx.pop_batch(&mut out, batch);
            if n == 0 {
                wait(&mut spins);
                continue;
            }
            spins = 0;
            got += n as u64;
            sum = out.iter().fold(sum, |s, &v| s.wrapping_add(v));
        }
        black_box(sum);
    });
    let mut pending = VecDeque::with_capacity(batch);
    let start = Instant::now();
    let mut next = 0u64;
    for _ in 0..batches {
        pending.extend(next..next + batch as u64);
        next += batch as u64;
        let mut spins = 0;
        while !pending.is_empty() {
            if tx.push_batch(&mut pending) == 0 {
                wait(&mut spins);
            }
        }
    }
    consumer.join().expect("consumer thread");
    start.elapsed()
}

/// Baseline: `n` values through `std::sync::mpsc::sync_channel(capacity)`.
fn run_std_channel(capacity: usize, n: u64) -> Duration {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(capacity);
    let consumer = thread::spawn(move || {
        let mut sum = 0u64;
        for v in rx.iter() {
            sum = sum.wrapping_add(v);
        }
        black_box(sum);
    });
    let start = Instant::now();
    for i in 0..n {
        tx.send(i).expect("receiver alive");
    }
    drop(tx);
    consumer.join().expect("consumer thread");
    start.elapsed()
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/spsc_single");
    g.throughput(Throughput::Elements(1));
    for capacity in [1024usize, 4096] {
        g.bench_with_input(BenchmarkId::from_parameter(capacity), &capacity, |b, &cap| {
            b.iter_custom(|iters| run_single(cap, iters));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ring/spsc_batch");
    for capacity in [1024usize, 4096] {
        for batch in [64usize, 128, 256] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(
                BenchmarkId::new(capacity.to_string(), batch),
                &(capacity, batch),
                |b, &(cap, batch)| {
                    b.iter_custom(|iters| run_batched(cap, batch, iters));
                },
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("ring/std_sync_channel");
    g.throughput(Throughput::Elements(1));
    g.bench_with_input(BenchmarkId::from_parameter(1024), &1024usize, |b, &cap| {
        b.iter_custom(|iters| run_std_channel(cap, iters));
    });
    g.finish();
}

fn same_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/same_thread");
    g.throughput(Throughput::Elements(1));
    let (mut tx, mut rx) = ring::<u64>(1024);
    g.bench_function("push_pop", |b| {
        b.iter(|| {
            let _ = tx.push(black_box(7));
            black_box(rx.pop())
        });
    });

    g.throughput(Throughput::Elements(128));
    let (mut tx, mut rx) = ring::<u64>(4096);
    let mut pending = VecDeque::with_capacity(128);
    let mut out = Vec::with_capacity(128);
    let mut next = 0u64;
    g.bench_function("batch_128", |b| {
        b.iter(|| {
            pending.extend(next..next + 128);
            next += 128;
            black_box(tx.push_batch(&mut pending));
            out.clear();
            black_box(rx.pop_batch(&mut out, 128));
            black_box(out.last().copied())
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = two_threads, same_thread
}
criterion_main!(benches);
