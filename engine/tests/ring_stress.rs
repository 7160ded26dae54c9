//! Two-thread stress tests of the exchange ring: many values through a small ring, with random
//! single and batched operations on both sides.
//!
//! The same tests run under loom (`RUSTFLAGS="--cfg loom"`) with a handful of values
//! (docs/conventions.md, "Concurrency"), through `pinwheel_engine::sync::{model, thread}`; the
//! exhaustive loom models are in `loom_ring.rs`.
//!
//! * `random_batches_keep_order_without_loss_or_duplicates`: catches any lost, duplicated or
//!   reordered value under real concurrency, including across hundreds of thousands of block
//!   changes in a small ring.
//! * `random_batches_through_a_large_ring_cross_many_blocks`: the same through a ring whose
//!   capacity spans many 512-slot blocks, with batches larger than a block, so that block sizes
//!   change, the spare is recycled and freed, and a batch crosses several blocks.
//! * `every_value_dropped_once_when_the_consumer_quits_early`: catches leaks and double drops when
//!   a consumer leaves mid-stream with values in the ring.
//! * `memory_bytes_is_what_the_allocator_sees` and `a_busy_ring_stops_allocating` (not under
//!   loom): a counting global allocator checks that `memory_bytes` is exactly the bytes the ring's
//!   blocks take, that a new ring of a huge capacity allocates only its shared header, that
//!   dropping the halves gives everything back, and that a busy ring reaches a steady state in
//!   which it allocates nothing. (They check bounds that hold whatever block sizes the producer
//!   picks, or use a ring whose queue alone asks for its largest blocks: tests never depend on
//!   timing, and block sizes follow the rate too.)
//!
//! Under Miri the sizes are scaled down (`cfg!(miri)`), as the crossbeam tests do.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU8 as StdAtomicU8;
use std::sync::atomic::Ordering::SeqCst;

use pinwheel_engine::exchange::{PopError, PushError, ring};
use pinwheel_engine::sync::{model, thread};

/// Values sent through the ring.
const N: u64 = if cfg!(loom) {
    4
} else if cfg!(miri) {
    3_000
} else {
    1_000_000
};
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
    random_batches(CAPACITY, MAX_BATCH, N);
}

#[test]
fn random_batches_through_a_large_ring_cross_many_blocks() {
    if cfg!(loom) {
        // Under loom every block has 1 or 2 slots: this is the test above with more room.
        random_batches(3, 4, 4);
    } else if cfg!(miri) {
        random_batches(1_500, 700, 6_000);
    } else {
        random_batches(5_000, 1_300, 4_000_000);
    }
}

/// `n` values from a producer thread to the consumer (this thread) through a ring of `capacity`,
/// each side choosing at random between single operations and batches of `1..=max_batch`.
fn random_batches(capacity: usize, max_batch: u64, n: u64) {
    model(move || {
        let (mut tx, mut rx) = ring::<u64>(capacity);
        let producer = thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut next = 0u64;
            let mut pending = VecDeque::with_capacity(max_batch as usize);
            while next < n || !pending.is_empty() {
                if rng.next() % 2 == 0 && pending.is_empty() {
                    // A single push.
                    match tx.push(next) {
                        Ok(()) => next += 1,
                        Err(PushError::Full(_)) => thread::yield_now(),
                        Err(PushError::Abandoned(_)) => panic!("consumer gone"),
                    }
                } else {
                    // Top the batch up to a random size and push what fits.
                    let want = rng.batch(max_batch);
                    while pending.len() < want && next < n {
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
        let mut out = Vec::with_capacity(max_batch as usize);
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
                let got = rx.pop_batch(&mut out, rng.batch(max_batch));
                assert_eq!(got, out.len());
                for &v in &out {
                    assert_eq!(v, expect, "out of order, lost or duplicated");
                    expect += 1;
                }
                if got == 0 {
                    if rx.is_abandoned() && rx.is_empty() {
                        break;
                    }
                    thread::yield_now();
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(expect, n, "values lost");
        assert_eq!(rx.pop(), Err(PopError::Abandoned));
        // Drained: one block and the spare are left, however far the queue grew (blocks have at
        // most 64 KiB of slots, and no more slots than the capacity).
        let drained = rx.memory_bytes();
        let block = 16 + capacity.min(8192) * size_of::<u64>();
        assert!(drained <= 2 * block, "{drained} bytes after the drain");
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
        let n = if cfg!(loom) {
            3
        } else if cfg!(miri) {
            1_000
        } else {
            200_000
        };
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

/// A global allocator that counts, per thread, the allocations made and the bytes live, so that a
/// single-threaded test can see exactly what the ring allocates (other tests run on other threads).
#[cfg(not(loom))]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub(crate) struct Counting;

    thread_local! {
        // `const`-initialised and without a destructor: usable from inside the allocator.
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    /// Bytes allocated and not yet freed by this thread (frees of another thread's allocations
    /// count where they happen).
    pub(crate) fn live_bytes() -> isize {
        LIVE.with(Cell::get)
    }

    /// Allocations made by this thread so far.
    pub(crate) fn allocations() -> u64 {
        ALLOCS.with(Cell::get)
    }

    fn count(bytes: isize, allocs: u64) {
        // `try_with`: nothing to count once the thread's locals are gone.
        let _ = LIVE.try_with(|c| c.set(c.get() + bytes));
        let _ = ALLOCS.try_with(|c| c.set(c.get() + allocs));
    }

    // SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
    // guarantees are ours; the counting touches only thread-local cells and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as isize, 1);
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-(layout.size() as isize), 0);
            // SAFETY: as above, for `dealloc`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as isize, 1);
            // SAFETY: as above, for `alloc_zeroed`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size as isize - layout.size() as isize, 1);
            // SAFETY: as above, for `realloc`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(not(loom))]
#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[cfg(not(loom))]
#[test]
fn memory_bytes_is_what_the_allocator_sees() {
    use counting::live_bytes;

    // Everything this test allocates besides the ring is allocated up front.
    let mut out: Vec<u64> = Vec::with_capacity(8192);

    let before = live_bytes();
    let (mut tx, mut rx) = ring::<u64>(1 << 40);
    // Only the shared header (one `Arc` allocation of a few cache lines), not the capacity.
    let header = live_bytes() - before;
    assert!(header > 0 && header < 4096, "a new ring allocated {header} bytes");
    assert_eq!(tx.memory_bytes(), 0);
    let ring_bytes = |tx: &pinwheel_engine::exchange::Producer<u64>| {
        assert_eq!(live_bytes() - before - header, tx.memory_bytes() as isize);
        tx.memory_bytes()
    };

    // A burst: memory follows the queue up, then back down as it drains.
    let burst = if cfg!(miri) { 20_000 } else { 50_000 };
    let mut next = 0u64;
    for _ in 0..burst {
        tx.push(next).unwrap();
        next += 1;
        ring_bytes(&tx);
    }
    let peak = ring_bytes(&tx);
    assert!(peak >= burst * 8, "{peak} bytes for {burst} values");
    let mut expect = 0u64;
    while rx.pop_batch(&mut out, 300) > 0 {
        for v in out.drain(..) {
            assert_eq!(v, expect);
            expect += 1;
        }
        ring_bytes(&tx);
    }
    // One block (of at most 64 KiB) and the spare.
    assert!(ring_bytes(&tx) <= 2 * (16 + 8192 * 8), "{} bytes after the drain", ring_bytes(&tx));
    assert!(ring_bytes(&tx) < peak);

    // Dropping the halves gives back everything, the values left in the ring included.
    for _ in 0..1_000 {
        tx.push(next).unwrap();
        next += 1;
    }
    ring_bytes(&tx);
    drop(tx);
    drop(rx);
    assert_eq!(live_bytes(), before, "the ring leaked");
}

#[cfg(not(loom))]
#[test]
fn a_busy_ring_stops_allocating() {
    use counting::{allocations, live_bytes};

    // Batches of 100 through a ring of 256: twice the queue asks for 256 slots, the largest block
    // this ring has, whatever the rate. After the first blocks, the two blocks circulate (one in
    // use, one parked as the spare) and nothing is allocated or freed any more.
    let rounds: u64 = if cfg!(miri) { 300 } else { 20_000 };
    let mut src: VecDeque<u64> = VecDeque::with_capacity(200);
    let mut out: Vec<u64> = Vec::with_capacity(200);
    let before = live_bytes();
    let (mut tx, mut rx) = ring::<u64>(256);
    let mut next = 0u64;
    let mut expect = 0u64;
    let mut settled = None;
    for round in 0..rounds {
        if round == 10 {
            settled = Some((allocations(), tx.memory_bytes()));
        }
        src.extend(next..next + 100);
        next += 100;
        assert_eq!(tx.push_batch(&mut src), 100);
        assert_eq!(rx.pop_batch(&mut out, 100), 100);
        for v in out.drain(..) {
            assert_eq!(v, expect);
            expect += 1;
        }
    }
    let (allocs, bytes) = settled.unwrap();
    assert_eq!(allocations(), allocs, "a busy ring in its steady state allocated");
    assert_eq!(tx.memory_bytes(), bytes);
    assert_eq!(bytes, 2 * (16 + 256 * 8), "two blocks of 256 slots");
    drop(tx);
    drop(rx);
    assert_eq!(live_bytes(), before, "the ring leaked");
}
