//! Two-thread stress tests of the exchange ring: many values through a small ring, with random
//! single and batched operations on both sides.
//!
//! The same tests run under loom (`RUSTFLAGS="--cfg loom"`) with a handful of values (STYLE.md
//! section 1, item 7), through `pinwheel_engine::sync::{model, thread}`; the exhaustive loom models
//! are in `loom_ring.rs`.
//!
//! * `random_batches_keep_order_without_loss_or_duplicates`: catches any lost, duplicated or
//!   reordered value under real concurrency, including across millions of index wraps.
//! * `every_value_dropped_once_when_the_consumer_quits_early`: catches leaks and double drops when
//!   a consumer leaves mid-stream with values in the ring.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU8 as StdAtomicU8;
use std::sync::atomic::Ordering::SeqCst;

use pinwheel_engine::exchange::{PopError, PushError, ring};
use pinwheel_engine::sync::{model, thread};

/// Values sent through the ring.
const N: u64 = if cfg!(loom) { 4 } else { 1_000_000 };
/// The ring's capacity.
const CAPACITY: usize = if cfg!(loom) { 2 } else { 64 };
/// The largest batch either side asks for (larger than the ring, so batches are also cut short).
const MAX_BATCH: u64 = if cfg!(loom) { 3 } else { 100 };

/// xorshift64*: a small deterministic generator, so a failure can be replayed from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `1..=max`.
    fn batch(&mut self, max: u64) -> usize {
        (self.next() % max + 1) as usize
    }
}

#[test]
fn random_batches_keep_order_without_loss_or_duplicates() {
    model(|| {
        let (mut tx, mut rx) = ring::<u64>(CAPACITY);
        let producer = thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut next = 0u64;
            let mut pending = VecDeque::with_capacity(MAX_BATCH as usize);
            while next < N || !pending.is_empty() {
                if rng.next() % 2 == 0 && pending.is_empty() {
                    // A single push.
                    match tx.push(next) {
                        Ok(()) => next += 1,
                        Err(PushError::Full(_)) => thread::yield_now(),
                        Err(PushError::Abandoned(_)) => panic!("consumer gone"),
                    }
                } else {
                    // Top the batch up to a random size and push what fits.
                    let want = rng.batch(MAX_BATCH);
                    while pending.len() < want && next < N {
                        pending.push_back(next);
                        next += 1;
                    }
                    if tx.push_batch(&mut pending) == 0 {
                        thread::yield_now();
                    }
                }
            }
        });

        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut expect = 0u64;
        let mut out = Vec::with_capacity(MAX_BATCH as usize);
        loop {
            if rng.next() % 2 == 0 {
                match rx.pop() {
                    Ok(v) => {
                        assert_eq!(v, expect, "out of order, lost or duplicated");
                        expect += 1;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(PopError::Abandoned) => break,
                }
            } else {
                out.clear();
                let n = rx.pop_batch(&mut out, rng.batch(MAX_BATCH));
                assert_eq!(n, out.len());
                for &v in &out {
                    assert_eq!(v, expect, "out of order, lost or duplicated");
                    expect += 1;
                }
                if n == 0 {
                    if rx.is_abandoned() && rx.is_empty() {
                        break;
                    }
                    thread::yield_now();
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(expect, N, "values lost");
        assert_eq!(rx.pop(), Err(PopError::Abandoned));
    });
}

/// A value that counts its drops in a shared table (plain `std` atomics: instrumentation, not part
/// of the protocol under test).
struct Tracked {
    id: usize,
    drops: std::sync::Arc<Vec<StdAtomicU8>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        assert_eq!(self.drops[self.id].fetch_add(1, SeqCst), 0, "value {} dropped twice", self.id);
    }
}

#[test]
fn every_value_dropped_once_when_the_consumer_quits_early() {
    model(|| {
        let n = if cfg!(loom) { 3 } else { 200_000 };
        let quit_after = n / 2;
        let drops = std::sync::Arc::new((0..n).map(|_| StdAtomicU8::new(0)).collect::<Vec<_>>());
        let (mut tx, mut rx) = ring::<Tracked>(CAPACITY);
        let d = std::sync::Arc::clone(&drops);
        let producer = thread::spawn(move || {
            let mut rng = Rng(7);
            let mut pending = VecDeque::new();
            let mut next = 0;
            while next < n || !pending.is_empty() {
                let want = rng.batch(MAX_BATCH);
                while pending.len() < want && next < n {
                    pending.push_back(Tracked { id: next, drops: std::sync::Arc::clone(&d) });
                    next += 1;
                }
                if tx.push_batch(&mut pending) == 0 {
                    if tx.is_abandoned() {
                        // The consumer left: whatever is still pending is dropped with `pending`.
                        break;
                    }
                    thread::yield_now();
                }
            }
            // Values never created are marked as dropped, so the final check covers all ids.
            for id in next..n {
                d[id].fetch_add(1, SeqCst);
            }
        });
        let mut taken = 0;
        while taken < quit_after {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v.id, taken);
                    taken += 1;
                }
                Err(_) => thread::yield_now(),
            }
        }
        drop(rx);
        producer.join().unwrap();
        for (id, c) in drops.iter().enumerate() {
            assert_eq!(c.load(SeqCst), 1, "value {id} dropped {} times", c.load(SeqCst));
        }
    });
}
